// The farm's deploy lock, for an operator (lib/lock.ts):
//   node --import tsx playbooks/lock.ts status            who holds it, since when, last heartbeat, stale or not
//   node --import tsx playbooks/lock.ts release           remove a STALE lock (its run is gone), logged in the audit log
//   node --import tsx playbooks/lock.ts release --force   remove it even when its holder looks alive
// Exit 0; 5 when release is refused (a live holder without --force); 4 on bad input.
import { type CommandSpec, fail, parseOrExit } from '../lib/cli.ts';
import { type AuditEntry, appendScript } from '../lib/audit.ts';
import { InputError } from '../lib/errors.ts';
import { loadInventory, parseExtraVars } from '../lib/inventory.ts';
import { LOCK_FILE, LockHeldError, lockHosts, lockStatus, newLockInfo, releaseScript } from '../lib/lock.ts';
import { ConnectionPool, sshOptions } from '../lib/transport.ts';

const CMD: CommandSpec = {
  name: 'lock.ts',
  summary: `The farm's deploy lock (${LOCK_FILE} on the hosts of settings.lock_group, default managers): status shows who
holds it, since when, the last heartbeat, stale or not; release removes a STALE lock (logged in the audit log).
Exit 0; 5 when release is refused (a live holder without --force); 4 on bad input.`,
  positionals: { usage: 'status|release', min: 1, max: 1 },
  options: [
    { name: 'force', type: 'boolean', help: 'with release: remove the lock even when its holder looks alive' },
    { name: 'format', type: 'string', arg: 'F', choices: ['text', 'json'], default: 'text', help: 'output format' },
  ],
  common: ['inventory', 'extra-vars', 'accept-new-host-keys'],
};

let pool: ConnectionPool | undefined;
try {
  const { flags, opts, positionals } = parseOrExit(process.argv.slice(2), CMD);
  const extra = opts as { force: boolean; format: 'text' | 'json' };
  const action = positionals[0];
  if (action !== 'status' && action !== 'release')
    throw new InputError(`expected 'status' or 'release', got '${action ?? ''}' (see --help)`);
  const inv = loadInventory(flags.inventory, { extraVars: parseExtraVars(flags.extraVars) });
  pool = new ConnectionPool(sshOptions(inv.settings, flags));
  const hosts = lockHosts(inv);
  const status = await lockStatus(hosts, pool);
  if (action === 'status') {
    if (extra.format === 'json') process.stdout.write(`${JSON.stringify(status, null, 1)}\n`);
    else {
      for (const s of status) {
        const h = s.holder;
        const line = s.error
          ? `unreachable: ${s.error.split('\n')[0]}`
          : !h
            ? 'free'
            : `held by ${h.owner} (pid ${h.pid}) since ${h.since}, heartbeat ${h.heartbeatAgeSec} s ago (ttl ${h.ttlSec} s)` +
              `${h.stale ? `, STALE: ${h.stale}` : ''}\n    ${h.command}`;
        process.stdout.write(`${s.host}: ${line}\n`);
      }
    }
  } else {
    const held = status.filter((s) => s.holder);
    const live = held.filter((s) => !s.holder!.stale);
    if (live.length && !extra.force) {
      const h = live[0]!.holder!;
      throw new LockHeldError(
        `the lock is held by a live run: ${h.owner} (pid ${h.pid}) since ${h.since}: ${h.command}. ` +
          'Use --force only if you know that run is gone.',
      );
    }
    const me = newLockInfo();
    for (const s of held) {
      const h = s.holder!;
      const entry: AuditEntry = {
        v: 1,
        kind: 'lock-release',
        id: `${h.token}-release-${me.token}`,
        who: me.owner,
        from: me.controller,
        pid: me.pid,
        command: me.command,
        start: me.since,
        end: new Date().toISOString(),
        outcome: 'released',
        hosts: {},
        note: `released the lock of ${h.owner} (pid ${h.pid}, since ${h.since}) on ${s.host}: ${h.stale ?? 'forced (holder looked alive)'}`,
      };
      const c = await pool.get(hosts.find((x) => x.name === s.host)!);
      const r = await c.exec(releaseScript(h.token, appendScript([entry])), { become: true });
      process.stdout.write(
        `${s.host}: ${r.stdout.includes('@@released') ? `released (${entry.note})` : 'changed meanwhile: not released'}\n`,
      );
    }
    if (!held.length) process.stdout.write('the lock is free: nothing to release\n');
  }
  await pool.closeAll();
} catch (e) {
  await pool?.closeAll().catch(() => undefined);
  fail(e);
}
