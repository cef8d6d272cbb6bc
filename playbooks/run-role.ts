// Run one role, ad hoc:  npx tsx playbooks/run-role.ts <role-name|path/to/role.ts> [--limit P] [--check] ...
import { fail } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run, loadRole } from '../lib/play.ts';

const USAGE = `Usage: npx tsx playbooks/run-role.ts <role-name|path/to/role.ts> [options]

Runs one role (roles/<name>/role.ts) on the hosts it targets, restricted by --limit.
Example: npx tsx playbooks/run-role.ts traefik --limit mgr1 --check --diff`;

const argv = process.argv.slice(2);
const valueFlag = /^-(i|l|t|f|e)$|^--(inventory|limit|tags|skip-tags|forks|json|timeline|extra-vars)$/;
const roleArg = argv.find((a, i) => !a.startsWith('-') && (i === 0 || !(valueFlag.test(argv[i - 1]!) || (argv[i - 1] === '--wait-lock' && /^\d+$/.test(a)))));
const run = Run.fromArgv(argv.filter((a) => a !== roleArg), { usage: USAGE, name: roleArg ? `run-role-${roleArg.replace(/[^\w.-]+/g, '_')}` : 'run-role' });
try {
  if (!roleArg) throw new InputError('missing role name (see --help)');
  const role = await loadRole(roleArg);
  await run.role(role);
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
