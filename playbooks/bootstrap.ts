// Build the farm, in the roadmap's phases. `make bootstrap` runs it on the lab; with INVENTORY=... on droplets.
//   npx tsx playbooks/bootstrap.ts [--inventory F] [--phase N | --from-phase N] [--check] [--limit P] ...
import { existsSync } from 'node:fs';
import { fail } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run, loadRole } from '../lib/play.ts';
import { PHASES } from './phases.ts';

export { PHASES };

const USAGE = `Usage: npx tsx playbooks/bootstrap.ts [--phase N | --from-phase N] [options]

Builds the farm phase by phase (each phase printed):
${PHASES.map((p) => `  ${p.n}. ${p.title}: ${p.roles.join(', ')}`).join('\n')}

  --phase N        run only phase N
  --from-phase N   run phases N..5
A host that fails stops only its own work; the next phases still run on the healthy hosts.`;

const run = Run.fromArgv(process.argv.slice(2), {
  usage: USAGE,
  name: 'bootstrap',
  options: { phase: { type: 'string' }, 'from-phase': { type: 'string' } },
});
try {
  const phaseArg = run.config.extra?.phase as string | undefined;
  const fromArg = run.config.extra?.['from-phase'] as string | undefined;
  const num = (v: string, flag: string) => {
    const n = Number(v);
    if (!PHASES.some((p) => p.n === n)) throw new InputError(`${flag} must be one of ${PHASES.map((p) => p.n).join(', ')}, got '${v}'`);
    return n;
  };
  if (phaseArg && fromArg) throw new InputError('use --phase or --from-phase, not both');
  const only = phaseArg ? num(phaseArg, '--phase') : undefined;
  const from = fromArg ? num(fromArg, '--from-phase') : 1;
  for (const phase of PHASES) {
    if (only !== undefined ? phase.n !== only : phase.n < from) continue;
    run.phase(`phase ${phase.n}: ${phase.title}`);
    for (const name of phase.roles) {
      if (run.signal.interrupted) break;
      if (!existsSync(`roles/${name}/role.ts`)) {
        run.reporter.say(`  (role ${name}: not in this version of wpfarm, skipped)`);
        continue;
      }
      await run.role(await loadRole(name));
    }
  }
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
