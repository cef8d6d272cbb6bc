// Build the farm, in the roadmap's phases. `make bootstrap` runs it on the lab; with INVENTORY=... on droplets.
//   npx tsx playbooks/bootstrap.ts [--phase N | --from-phase N] [common options]   (--help: every option)
import { existsSync } from 'node:fs';
import { fail, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run, loadRole } from '../lib/play.ts';
import type { Role } from '../lib/types.ts';
import { PHASES } from './phases.ts';

export { PHASES };

const PHASE_NUMBERS = PHASES.map((p) => String(p.n));
const CMD: CommandSpec = {
  name: 'bootstrap.ts',
  summary: `Builds the farm phase by phase (each phase printed):
${PHASES.map((p) => `  ${p.n}. ${p.title}: ${p.roles.join(', ')}`).join('\n')}
A host that fails stops only its own work; the next phases still run on the healthy hosts.`,
  options: [
    { name: 'phase', type: 'string', arg: 'N', choices: PHASE_NUMBERS, help: 'run only phase N' },
    { name: 'from-phase', type: 'string', arg: 'N', choices: PHASE_NUMBERS, help: `run phases N..${PHASES.length}` },
  ],
};

const run = Run.fromArgv(process.argv.slice(2), { command: CMD });
try {
  const phaseArg = run.config.opts?.phase as string | undefined;
  const fromArg = run.config.opts?.['from-phase'] as string | undefined;
  if (phaseArg && fromArg) throw new InputError('use --phase or --from-phase, not both');
  const only = phaseArg ? Number(phaseArg) : undefined;
  const from = fromArg ? Number(fromArg) : 1;
  const phases = PHASES.filter((p) => (only !== undefined ? p.n === only : p.n >= from));
  const roles = new Map<string, Role>();
  for (const phase of phases)
    for (const name of phase.roles) if (existsSync(`roles/${name}/role.ts`)) roles.set(name, await loadRole(name));
  // controller-side work (the images) starts now, beside the hosts' work of the first phases (Role.warmup)
  await run.warmup([...roles.values()]);
  for (const [i, phase] of phases.entries()) {
    run.phase(`phase ${phase.n}: ${phase.title}`);
    // the probes of this phase's roles and the later ones', on every host, in one round trip per host; read
    // again at a later phase only if something changed since (a no-change rerun reads them once)
    await run.prefetch(phases.slice(i).flatMap((p) => p.roles.flatMap((n) => roles.get(n) ?? [])));
    for (const name of phase.roles) {
      if (run.signal.interrupted) break;
      const role = roles.get(name);
      if (!role) {
        run.say(`  (role ${name}: not in this version of wpfarm, skipped)`);
        continue;
      }
      await run.role(role);
    }
  }
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
