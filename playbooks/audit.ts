// The audit log of the farm's mutating runs (lib/audit.ts), read from the lock hosts and merged:
//   node --import tsx playbooks/audit.ts [--site ID] [--host NAME] [--since WHEN] [--until WHEN] [--format text|json]
// WHEN: an ISO date/time (2025-06-01, 2025-06-01T12:00Z) or a duration back from now (30m, 12h, 7d).
// --site matches runs whose command line names the site; --host runs that touched the host.
import { type CommandSpec, fail, parseOrExit } from '../lib/cli.ts';
import { filterAudit, readAudit } from '../lib/audit.ts';
import { loadInventory, parseExtraVars } from '../lib/inventory.ts';
import { lockHosts } from '../lib/lock.ts';
import { ConnectionPool, sshOptions } from '../lib/transport.ts';

const CMD: CommandSpec = {
  name: 'audit.ts',
  summary: `The audit log of the farm's mutating runs, read from the lock hosts and merged. WHEN: an ISO date/time
(2025-06-01, 2025-06-01T12:00Z) or a duration back from now (30m, 12h, 7d).`,
  options: [
    { name: 'site', type: 'string', arg: 'ID', help: 'runs whose command line names the site' },
    { name: 'host', type: 'string', arg: 'NAME', help: 'runs that touched the host' },
    { name: 'since', type: 'string', arg: 'WHEN', help: 'runs from then on' },
    { name: 'until', type: 'string', arg: 'WHEN', help: 'runs until then' },
    { name: 'format', type: 'string', arg: 'F', choices: ['text', 'json'], default: 'text', help: 'output format' },
  ],
  common: ['inventory', 'extra-vars', 'accept-new-host-keys'],
};
let pool: ConnectionPool | undefined;
try {
  const { flags, opts } = parseOrExit(process.argv.slice(2), CMD);
  const extra = opts as { site?: string; host?: string; since?: string; until?: string; format: 'text' | 'json' };
  const inv = loadInventory(flags.inventory, { extraVars: parseExtraVars(flags.extraVars) });
  pool = new ConnectionPool(sshOptions(inv.settings, flags));
  const filter = { site: extra.site, host: extra.host, since: extra.since, until: extra.until };
  filterAudit([], filter); // bad --since/--until is bad input before any connection
  const { entries, problems } = await readAudit(lockHosts(inv), pool);
  const shown = filterAudit(entries, filter);
  if (extra.format === 'json') process.stdout.write(`${JSON.stringify(shown, null, 1)}\n`);
  else {
    for (const e of shown) {
      const hosts = Object.entries(e.hosts)
        .map(([h, s]) => `${h}:${s.changed}ch${s.failed ? `/${s.failed}F` : ''}${s.unreachable ? `/${s.unreachable}U` : ''}`)
        .join(' ');
      process.stdout.write(`${e.start}  ${e.end}  ${e.kind.padEnd(12)} ${e.outcome.padEnd(11)} ${e.who}  ${e.command}\n`);
      if (e.commit) process.stdout.write(`    commit ${e.commit}\n`);
      if (hosts) process.stdout.write(`    ${hosts}\n`);
      if (e.note) process.stdout.write(`    ${e.note}\n`);
    }
    process.stdout.write(`${shown.length} of ${entries.length} entries\n`);
  }
  for (const p of problems) process.stderr.write(`warning: ${p}\n`);
  await pool.closeAll();
} catch (e) {
  await pool?.closeAll().catch(() => undefined);
  fail(e);
}
