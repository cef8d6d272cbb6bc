// Pure Galera decisions (roles/galera/recovery.ts): grastate.dat and --wsrep-recover outputs → which node
// bootstraps, which nodes join. The texts below are in the exact formats MariaDB 10.11 / galera-4 write.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decide,
  parseGrastate,
  parseRecoveredPosition,
  positionOf,
  withSafeToBootstrap,
  type NodeView,
} from '../../roles/galera/recovery.ts';
import { cidrToMysqlHost, grantedPrivileges, parseSecretsFile, settings, userSpecs } from '../../roles/galera/role.ts';

const UUID = '5f2a3c1e-9b7d-11ef-8a42-2b1f3c4d5e6f';
const OTHER = '0a0b0c0d-1111-11ef-aaaa-bbbbccccdddd';

const grastate = (seqno: number, safe: 0 | 1, uuid = UUID) =>
  `# GALERA saved state\nversion: 2.1\nuuid:    ${uuid}\nseqno:   ${seqno}\nsafe_to_bootstrap: ${safe}\n`;

const node = (name: string, o: Partial<NodeView> & { gs?: string | null } = {}): NodeView => ({
  name,
  running: o.running ?? false,
  primary: o.primary ?? false,
  grastate: o.gs === undefined ? null : o.gs === null ? null : parseGrastate(o.gs),
  recovered: o.recovered,
});

test('parseGrastate: the file as galera-4 writes it, after a clean stop and after a crash', () => {
  assert.deepEqual(parseGrastate(grastate(1042, 1)), { uuid: UUID, seqno: 1042, safeToBootstrap: true });
  assert.deepEqual(parseGrastate(grastate(-1, 0)), { uuid: UUID, seqno: -1, safeToBootstrap: false });
  // an old (v2.1 without safe_to_bootstrap) file: not safe
  assert.deepEqual(parseGrastate(`# GALERA saved state\nversion: 2.1\nuuid:    ${UUID}\nseqno:   7\n`), {
    uuid: UUID,
    seqno: 7,
    safeToBootstrap: false,
  });
  assert.equal(parseGrastate(''), null);
  assert.equal(parseGrastate('garbage\n'), null);
  assert.equal(parseGrastate('uuid: not-a-uuid\nseqno: 3\n'), null);
});

test('parseRecoveredPosition: mariadbd --wsrep-recover log and galera_recovery output; the last one wins', () => {
  const log = [
    '2026-11-26 11:02:03 0 [Note] InnoDB: Starting crash recovery from checkpoint LSN=46846',
    `2026-11-26 11:02:03 0 [Note] WSREP: Recovered position: ${UUID}:17`,
    '2026-11-26 11:02:04 0 [Note] InnoDB: Buffer pool(s) load completed',
    `2026-11-26 11:09:10 0 [Note] WSREP: Recovered position: ${UUID}:1043`,
  ].join('\n');
  assert.deepEqual(parseRecoveredPosition(log), { uuid: UUID, seqno: 1043 });
  assert.deepEqual(parseRecoveredPosition(`--wsrep_start_position=${UUID}:88\n`), { uuid: UUID, seqno: 88 });
  assert.deepEqual(parseRecoveredPosition(`WSREP: Recovered position: 00000000-0000-0000-0000-000000000000:-1`), {
    uuid: '00000000-0000-0000-0000-000000000000',
    seqno: -1,
  });
  assert.equal(parseRecoveredPosition('[ERROR] Aborting\n'), null);
});

test('withSafeToBootstrap sets the flag and keeps the rest of the file', () => {
  assert.equal(withSafeToBootstrap(grastate(-1, 0)), grastate(-1, 1));
  assert.equal(
    withSafeToBootstrap(`version: 2.1\nuuid: ${UUID}\nseqno: -1`),
    `version: 2.1\nuuid: ${UUID}\nseqno: -1\nsafe_to_bootstrap: 1\n`,
  );
});

test('new cluster: no grastate anywhere → the first node of the group bootstraps, the others join', () => {
  const d = decide([node('db1'), node('db2'), node('db3')]);
  assert.equal(d.kind, 'bootstrap');
  assert.ok(d.kind === 'bootstrap');
  assert.equal(d.node, 'db1');
  assert.deepEqual(d.start, ['db2', 'db3']);
  assert.equal(d.setSafe, false);
  // a fresh install writes no grastate, but an all-zero uuid (provider never connected) counts as none
  const z = decide([node('db1', { gs: grastate(-1, 0, '00000000-0000-0000-0000-000000000000') }), node('db2'), node('db3')]);
  assert.ok(z.kind === 'bootstrap' && z.node === 'db1');
});

test('a primary component runs somewhere → never bootstrap; stopped nodes start and join', () => {
  const d = decide([
    node('db1', { gs: grastate(-1, 0) }), // crashed, stopped
    node('db2', { running: true, primary: true, gs: grastate(-1, 0) }),
    node('db3', { running: true, primary: true, gs: grastate(-1, 0) }),
  ]);
  assert.equal(d.kind, 'running');
  assert.ok(d.kind === 'running');
  assert.equal(d.via, 'db2');
  assert.deepEqual(d.start, ['db1']);
  // converged: nothing to start
  const all = decide(['db1', 'db2', 'db3'].map((n) => node(n, { running: true, primary: true, gs: grastate(-1, 0) })));
  assert.ok(all.kind === 'running' && all.start.length === 0);
  // even a node that says safe_to_bootstrap must not bootstrap a second cluster while one runs
  const safe = decide([
    node('db1', { gs: grastate(50, 1) }),
    node('db2', { running: true, primary: true, gs: grastate(-1, 0) }),
    node('db3'),
  ]);
  assert.ok(safe.kind === 'running' && safe.via === 'db2');
  assert.deepEqual(safe.kind === 'running' && safe.start, ['db1', 'db3']);
});

test('no primary but nodes running (waiting for a primary that is gone) → stop them first', () => {
  const d = decide([
    node('db1', { running: true, gs: grastate(-1, 0) }),
    node('db2', { gs: grastate(-1, 0) }),
    node('db3', { running: true, gs: grastate(-1, 0) }),
  ]);
  assert.deepEqual(d, { kind: 'stop-first', nodes: ['db1', 'db3'], reason: 'no primary component; db1, db3 run without one' });
});

test('full clean shutdown → the node that left last (safe_to_bootstrap: 1) bootstraps, even when not first', () => {
  const d = decide([node('db1', { gs: grastate(100, 0) }), node('db2', { gs: grastate(120, 0) }), node('db3', { gs: grastate(130, 1) })]);
  assert.ok(d.kind === 'bootstrap');
  assert.equal(d.node, 'db3');
  assert.deepEqual(d.start, ['db1', 'db2']);
  assert.equal(d.setSafe, false);
});

test('crash: all seqno -1 → recover the positions first, then bootstrap the most advanced', () => {
  const views = [node('db1', { gs: grastate(-1, 0) }), node('db2', { gs: grastate(-1, 0) }), node('db3', { gs: grastate(-1, 0) })];
  const d1 = decide(views);
  assert.deepEqual(d1.kind === 'recover' && d1.nodes, ['db1', 'db2', 'db3']);
  views[0]!.recovered = { uuid: UUID, seqno: 40 };
  views[1]!.recovered = { uuid: UUID, seqno: 57 };
  views[2]!.recovered = { uuid: UUID, seqno: 52 };
  const d2 = decide(views);
  assert.ok(d2.kind === 'bootstrap');
  assert.equal(d2.node, 'db2');
  assert.deepEqual(d2.start, ['db1', 'db3']);
  assert.equal(d2.setSafe, true, 'the chosen node gets safe_to_bootstrap: 1 (a crashed node has 0)');
  assert.match(d2.reason, /db1=40 db2=57 db3=52/);
});

test('crash with a mix: a clean seqno on one node does not beat a higher recovered seqno on another', () => {
  // db1 crashed first, db3 left cleanly at 80 (but not last: db2 kept writing alone, then crashed)
  const views = [node('db1', { gs: grastate(-1, 0) }), node('db2', { gs: grastate(-1, 0) }), node('db3', { gs: grastate(80, 0) })];
  const d1 = decide(views);
  assert.deepEqual(d1.kind === 'recover' && d1.nodes, ['db1', 'db2'], 'only the unknown positions are recovered');
  views[0]!.recovered = { uuid: UUID, seqno: 61 };
  views[1]!.recovered = { uuid: UUID, seqno: 95 };
  const d2 = decide(views);
  assert.ok(d2.kind === 'bootstrap' && d2.node === 'db2');
  // ties go to the first node in group order
  views[1]!.recovered = { uuid: UUID, seqno: 80 };
  const d3 = decide(views);
  assert.ok(d3.kind === 'bootstrap' && d3.node === 'db2', 'recovered 80 on db2 ties with db3=80; db2 comes first');
  assert.equal(positionOf(views[2]!)?.seqno, 80);
});

test('a position that cannot be recovered blocks the decision unless forced', () => {
  const views = [
    node('db1', { gs: grastate(-1, 0), recovered: { uuid: UUID, seqno: 10 } }),
    node('db2', { gs: grastate(-1, 0), recovered: null }),
    node('db3', { gs: grastate(-1, 0), recovered: { uuid: UUID, seqno: 12 } }),
  ];
  const d = decide(views);
  assert.equal(d.kind, 'unknown');
  assert.match(d.reason, /db2 cannot be recovered/);
  const f = decide(views, { force: 'db3' });
  assert.ok(f.kind === 'bootstrap' && f.node === 'db3' && f.setSafe);
  assert.equal(decide(views, { force: 'db9' }).kind, 'unknown');
});

test('nodes without any state next to nodes with state: only the nodes with state can bootstrap', () => {
  const d = decide([node('db1'), node('db2', { gs: grastate(33, 1) }), node('db3')]);
  assert.ok(d.kind === 'bootstrap' && d.node === 'db2');
  assert.deepEqual(d.kind === 'bootstrap' && d.start, ['db1', 'db3']);
});

test('two nodes claim safe_to_bootstrap (split history): the higher seqno among them wins', () => {
  const d = decide([
    node('db1', { gs: grastate(10, 1, OTHER) }),
    node('db2', { gs: grastate(20, 1) }),
    node('db3', { gs: grastate(30, 0) }),
  ]);
  assert.ok(d.kind === 'bootstrap' && d.node === 'db2', 'db3 is not safe; of the safe ones db2 is ahead');
});

test('settings and users: CIDR to a MariaDB host netmask, exporter and SST privileges', () => {
  assert.equal(cidrToMysqlHost('10.77.0.0/24'), '10.77.0.0/255.255.255.0');
  assert.equal(cidrToMysqlHost('10.110.16.7/20'), '10.110.16.0/255.255.240.0');
  assert.equal(cidrToMysqlHost('fd00::/64'), undefined);
  const s = settings({ private_cidr: '10.77.0.0/24' });
  assert.equal(s.adminHost, '10.77.0.0/255.255.255.0');
  assert.equal(s.autostart, false);
  assert.equal(settings({}).adminHost, 'localhost');
  const specs = userSpecs(s, { sst_password: 'sst-pw-1', admin_password: 'adm-pw-1', exporter_password: 'exp-pw-1' }, [
    '10.77.0.31',
    '10.77.0.32',
  ]);
  const exp = specs.find((u) => u.user === 'exporter')!;
  assert.deepEqual(exp.privileges, ['PROCESS', 'REPLICATION CLIENT', 'SELECT']);
  assert.equal(specs.filter((u) => u.user === 'haproxy_check').length, 2);
  assert.equal(specs.find((u) => u.user === 'haproxy_check')!.password, undefined);
});

test('grantedPrivileges reads SHOW GRANTS lines as MariaDB 10.11 prints them', () => {
  const g = grantedPrivileges(["GRANT SELECT, PROCESS, BINLOG MONITOR ON *.* TO `exporter`@`localhost` IDENTIFIED BY PASSWORD '*ABC'"]);
  assert.ok(g.privileges.has('REPLICATION CLIENT'), 'BINLOG MONITOR is what 10.5+ shows for REPLICATION CLIENT');
  assert.ok(g.privileges.has('PROCESS') && g.privileges.has('SELECT'));
  assert.equal(g.grantOption, false);
  const a = grantedPrivileges([
    "GRANT ALL PRIVILEGES ON *.* TO `wpfarm_admin`@`10.77.0.0/255.255.255.0` IDENTIFIED BY PASSWORD '*X' WITH GRANT OPTION",
  ]);
  assert.ok(a.privileges.has('ALL PRIVILEGES') && a.grantOption);
  assert.equal(grantedPrivileges(['GRANT USAGE ON *.* TO `haproxy_check`@`10.77.0.31`']).privileges.has('USAGE'), true);
});

test('parseSecretsFile keeps only known keys with values', () => {
  assert.deepEqual(parseSecretsFile('sst_password=abc123\nadmin_password=\nother=1\nexporter_password=x y z\n'), {
    sst_password: 'abc123',
    exporter_password: 'x y z',
  });
});
