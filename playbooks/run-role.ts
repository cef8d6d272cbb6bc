// Run roles, ad hoc:  npx tsx playbooks/run-role.ts <role-name|path/to/role.ts>... [--limit P] [--check] ...
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { Run, loadRole } from '../lib/play.ts';

const CMD: CommandSpec = {
  name: 'run-role.ts',
  summary: `Runs a role (roles/<name>/role.ts, or a path to a role file) on the hosts it targets, restricted by --limit.
Several roles run one after another, their probes read together first (one round trip per host).
Example: npx tsx playbooks/run-role.ts traefik --limit mgr1 --check --diff`,
  positionals: { usage: 'ROLE...', min: 1 },
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const name = parsed.positionals.map((r) => r.replace(/[^\w.-]+/g, '_')).join('+');
const run = Run.fromParsed(parsed, { name: `run-role-${name}` });
try {
  const roles = [];
  for (const r of parsed.positionals) roles.push(await loadRole(r));
  // their controller-side work (Role.warmup: image builds) starts now, beside the hosts' work
  await run.warmup(roles);
  if (roles.length > 1) await run.prefetch(roles);
  for (const role of roles) {
    if (run.interrupted) break;
    await run.role(role);
  }
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
