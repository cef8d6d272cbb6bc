// Run one role, ad hoc:  npx tsx playbooks/run-role.ts <role-name|path/to/role.ts> [--limit P] [--check] ...
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { Run, loadRole } from '../lib/play.ts';

const CMD: CommandSpec = {
  name: 'run-role.ts',
  summary: `Runs one role (roles/<name>/role.ts, or a path to a role file) on the hosts it targets, restricted by --limit.
Example: npx tsx playbooks/run-role.ts traefik --limit mgr1 --check --diff`,
  positionals: { usage: 'ROLE', min: 1, max: 1 },
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const roleArg = parsed.positionals[0]!;
const run = Run.fromParsed(parsed, { name: `run-role-${roleArg.replace(/[^\w.-]+/g, '_')}` });
try {
  const role = await loadRole(roleArg);
  await run.role(role);
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
