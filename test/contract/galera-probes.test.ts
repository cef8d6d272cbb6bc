// Contract: the users' no-change answers read from a real MariaDB (Debian's mariadbd, test/harness/backup-mariadb.ts):
// the galera role's users probe (usersProbeScript, run by bash as a probe runs) read by usersInPlace, and the
// monitoring role's exporter-user probe: the SHA-256 of MariaDB's stored hash matches PASSWORD() computed on the
// controller (nativePasswordHash) for the users as MariaDB 10.11 stores and grants them; a changed password or a
// revoked privilege is seen. A plain server is 'Disconnected' from any cluster (no answer from the probe then): its
// status line is the one thing set here, to Galera's 'Primary'.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { type LocalMariaDb, startMariaDb } from '../harness/backup-mariadb.ts';
import { settings, userSpecs, usersInPlace, usersProbeScript } from '../../roles/galera/role.ts';
import { EXPORTER_USER_PROBE, exporterUserInPlace } from '../../roles/monitoring/role.ts';

let db: LocalMariaDb;
before(async () => {
  db = await startMariaDb();
});
after(async () => {
  await db?.stop();
});

/** a probe script as the runner runs it (bash, stderr with stdout), the client on this server's socket (~/.my.cnf) */
async function probe(script: string): Promise<string> {
  writeFileSync(join(db.dir, '.my.cnf'), `[client]\nsocket=${db.socket}\n`);
  const r = await promisify(execFile)('bash', ['--norc', '-c', `( ${script}\n) 2>&1 </dev/null`], {
    env: { ...process.env, HOME: db.dir },
  });
  return r.stdout;
}

const SECRETS = { sst_password: 'sst-pw-1', admin_password: "adm'pw\\2", exporter_password: 'exp-pw-3' };
const specs = userSpecs(settings({ private_cidr: '127.0.0.0/8' }), SECRETS, ['127.0.0.1']);
const lit = (v: string) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
/** a plain server's wsrep_cluster_status is 'Disconnected': as a primary Galera node's would be */
const asPrimary = (out: string) => out.replace(/^@@status\nDisconnected$/m, '@@status\nPrimary');

test('usersProbeScript on MariaDB: the users as the role creates them are in place; a changed password or grant is not', async () => {
  for (const u of specs) {
    const pw = u.password === undefined ? '' : ` IDENTIFIED BY ${lit(u.password)}`;
    const privs = u.privileges.filter((p) => p !== 'USAGE');
    await db.sql(`CREATE USER ${lit(u.user)}@${lit(u.host)}${pw}`);
    if (privs.length)
      await db.sql(`GRANT ${privs.join(', ')} ON *.* TO ${lit(u.user)}@${lit(u.host)}${u.grantOption ? ' WITH GRANT OPTION' : ''}`);
  }
  const script = usersProbeScript(specs);
  const out = await probe(script);
  assert.match(out, /^@@users$/m);
  assert.equal(usersInPlace(out, specs), false, 'not a primary node: no answer from the probe');
  assert.equal(usersInPlace(asPrimary(out), specs), true, asPrimary(out));
  const admin = specs.find((u) => u.grantOption)!;
  await db.sql(`ALTER USER ${lit(admin.user)}@${lit(admin.host)} IDENTIFIED BY 'another'`);
  assert.equal(usersInPlace(asPrimary(await probe(script)), specs), false, 'a changed password');
  await db.sql(`ALTER USER ${lit(admin.user)}@${lit(admin.host)} IDENTIFIED BY ${lit(admin.password!)}`);
  assert.equal(usersInPlace(asPrimary(await probe(script)), specs), true);
  await db.sql("REVOKE PROCESS ON *.* FROM 'exporter'@'localhost'");
  assert.equal(usersInPlace(asPrimary(await probe(script)), specs), false, 'a revoked privilege');
});

test("the exporter user's probe on MariaDB: its password seen through the stored hash's SHA-256", async () => {
  assert.equal(exporterUserInPlace(await probe(EXPORTER_USER_PROBE), SECRETS.exporter_password), true);
  assert.equal(exporterUserInPlace(await probe(EXPORTER_USER_PROBE), 'other'), false);
  await db.sql("DROP USER 'exporter'@'localhost'");
  assert.equal(exporterUserInPlace(await probe(EXPORTER_USER_PROBE), SECRETS.exporter_password), false, 'no such user');
});

test('a locked mysql.user: the probes give up after their 5 s lock wait and leave no query waiting on the server', {
  timeout: 60_000,
}, async () => {
  // another session holds mysql.user, as the applier and mysql_upgrade did on a joiner in the lab (2026-12-07)
  const holder = spawn('mariadb', ['--no-defaults', `--socket=${db.socket}`, '-uroot', '-N', '-B', '--unbuffered'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const locked = new Promise<void>((ok, fail) => {
    holder.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && ok());
    holder.on('exit', (code) => fail(new Error(`the lock holder exited (${code})`)));
  });
  holder.stdin.write("LOCK TABLES mysql.user WRITE, mysql.global_priv WRITE; SELECT 'locked';\n");
  try {
    await locked;
    for (const [name, script] of [
      ['exporter user', EXPORTER_USER_PROBE],
      ['users', usersProbeScript(specs)],
    ] as const) {
      const t0 = Date.now();
      const out = await probe(script);
      const ms = Date.now() - t0;
      // the users probe: the status (no lock), the users (locked: gives up after 5 s), the grants (from the server's
      // privilege cache, no lock); no user read means not in place
      assert.ok(ms >= 4_500 && ms < 9_000, `${name}: waited 5 s for the lock (${ms} ms)`);
      const users = name === 'users' ? (/^@@users\n([\s\S]*?)^@@g0$/m.exec(out)?.[1] ?? 'missing') : out;
      assert.equal(users, '', `${name}: no user read while the table is locked: ${out}`);
      if (name === 'users') assert.equal(usersInPlace(asPrimary(out), specs), false);
      const waiting = await db.sql(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%mysql.user%' AND INFO NOT LIKE '%PROCESSLIST%'",
      );
      assert.equal(waiting.trim(), '0', `${name}: no probe query left waiting on the server`);
    }
    assert.equal(exporterUserInPlace(await probe(EXPORTER_USER_PROBE), SECRETS.exporter_password), false, 'locked: not seen in place');
  } finally {
    holder.stdin.end('UNLOCK TABLES;\n');
    await new Promise((ok) => holder.once('close', ok));
  }
});
