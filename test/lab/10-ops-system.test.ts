// Lab tier: the system and docker operations on a real lab node (systemd as PID 1, sshd, apt through
// the lab's proxy), driven by the engine's runner over SSH. For each phase: check mode first (it must
// change nothing and predict the statuses of the real run), then the real run, then a second run that
// changes nothing. Everything this file creates on the node is removed at the end (the node is shared
// with the role suites that follow): the node's accounts, packages, units and swarm state are restored.
//
// Node: st2 by default (a storage node, outside the swarm group), WPFARM_OPS_NODE to choose another.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { INVENTORY, KNOWN } from '../harness/lab-sites.ts';
import { loadInventory, type Inventory } from '../../lib/inventory.ts';
import { EventStream } from '../../lib/events.ts';
import { runRole } from '../../lib/runner.ts';
import { ConnectionPool } from '../../lib/transport.ts';
import type { Connection, HostSpec, Step, StepContext, StepResult } from '../../lib/types.ts';
import { apt } from '../../lib/ops/apt.ts';
import { systemd, unitFile } from '../../lib/ops/systemd.ts';
import { user, group, authorizedKey } from '../../lib/ops/users.ts';
import { command } from '../../lib/ops/command.ts';
import { dockerNetwork, dockerSecret, hashedName, stackDeploy, swarmFacts } from '../../lib/ops/docker.ts';
import { sh } from '../../lib/shell.ts';
import {
  FactCache,
  factNames,
  getFact,
  osFact,
  servicesFact,
  type KernelFact,
  type OsFact,
  type ServicesFact,
  type UsersFact,
} from '../../lib/facts.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const NODE = process.env.WPFARM_OPS_NODE ?? 'st2';

let inv: Inventory;
let host: HostSpec;
let pool: ConnectionPool;
let conn: Connection;

before(async () => {
  process.chdir(ROOT);
  inv = loadInventory(INVENTORY);
  const h = inv.hosts.get(NODE);
  assert.ok(h, `${NODE} in ${INVENTORY} (run lab-up first: test/lab/00-lab.test.ts)`);
  host = h;
  pool = new ConnectionPool({ knownHosts: path.resolve(inv.settings.knownHosts ?? KNOWN) });
  conn = await pool.get(host);
});

after(async () => {
  await pool?.closeAll();
});

/** Run steps on the node through the real runner; a fresh pool each time (a run is a process). */
async function play(steps: (ctx: StepContext) => Step[], check = false): Promise<StepResult[]> {
  const p = new ConnectionPool({ knownHosts: path.resolve(inv.settings.knownHosts ?? KNOWN) });
  try {
    const r = await runRole({ name: 'ops-system-test', hosts: NODE, steps }, [host], {
      pool: p,
      events: new EventStream(),
      options: { check, diff: true, forks: 1, verbose: 0 },
      allHosts: inv.hosts,
      signal: { interrupted: false },
      hostState: new Map(),
    });
    return r.results;
  } finally {
    await p.closeAll();
  }
}

/** A command on the node, independent of the operations under test. */
async function on(cmd: string): Promise<string> {
  const r = await conn.exec(cmd, { nothrow: true });
  return r.stdout.trim();
}

const statuses = (rs: StepResult[]): string[] => rs.map((r) => `${r.step}: ${r.status}${r.error ? ` (${r.error})` : ''}`);

/** check → real → second real: the check run changes nothing and predicts the real statuses. */
async function converge(
  steps: (ctx: StepContext) => Step[],
  probeState: () => Promise<string>,
  t: { diagnostic(s: string): void },
): Promise<{ check: StepResult[]; first: StepResult[]; second: StepResult[] }> {
  const before = await probeState();
  const t0 = Date.now();
  const check = await play(steps, true);
  t.diagnostic(`check run ${Date.now() - t0} ms: ${check.filter((r) => r.status === 'changed').length} would change`);
  assert.equal(await probeState(), before, 'check mode changed nothing on the node');
  assert.ok(!check.some((r) => r.status === 'failed'), statuses(check).join('\n'));
  const t1 = Date.now();
  const first = await play(steps);
  t.diagnostic(`first run ${Date.now() - t1} ms: ${first.filter((r) => r.status === 'changed').length} changed`);
  assert.deepEqual(statuses(first), statuses(check), 'check mode predicted the statuses of the real run');
  const t2 = Date.now();
  const second = await play(steps);
  t.diagnostic(`second run ${Date.now() - t2} ms`);
  assert.deepEqual(
    second
      .filter((r) => r.status !== 'ok' && r.status !== 'skipped')
      .map((r) => `${r.step}: ${r.status} ${r.changes.join('; ')} ${r.error ?? ''}`),
    [],
    'the second run changes nothing',
  );
  return { check, first, second };
}

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+eDKE09VmJ3h0xvXqtjx wpfarm-ops-test';
const UNIT = `[Unit]
Description=wpfarm ops test unit

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
`;
const MARK = '/var/tmp/wpfarm-ops-test.mark';

const systemState = () =>
  on(
    [
      'getent passwd wpfarm-ops; getent group wpfarm-opsg',
      'stat -c "%a %U" ~wpfarm-ops/.ssh/authorized_keys 2>/dev/null',
      "dpkg-query -W -f='${Status}\\n' hello 2>/dev/null",
      'cat /etc/systemd/system/wpfarm-ops-test.service 2>/dev/null | sha256sum',
      'systemctl is-active wpfarm-ops-test; systemctl is-enabled wpfarm-ops-test',
      `ls ${MARK} 2>/dev/null`,
    ].join('; '),
  );

const systemSteps = (): Step[] => [
  group({ name: 'wpfarm-opsg', gid: 2902 }),
  user({ name: 'wpfarm-ops', uid: 2901, groups: ['wpfarm-opsg'], comment: 'wpfarm ops test' }),
  authorizedKey({ user: 'wpfarm-ops', key: KEY }),
  apt({ packages: ['hello'], state: 'present', update_cache: 3600 }),
  unitFile({ name: 'wpfarm-ops-test', content: UNIT }),
  systemd({ name: 'wpfarm-ops-test', enabled: true, state: 'started' }),
  command({ cmd: sh`date +%s > ${MARK}`, creates: MARK }),
];

test('leftovers of an interrupted earlier run are removed first', { timeout: 20 * 60_000 }, async () => {
  const r = await play(removalSteps);
  assert.ok(!r.some((x) => x.status === 'failed'), statuses(r).join('\n'));
  assert.equal(await systemState().then((s) => /wpfarm-ops|install ok installed|^active/m.test(s)), false);
});

test('facts on a systemd node: every fact in one round trip, consistent with the node', async () => {
  const cache = new FactCache((cmd) => conn.exec(cmd));
  const before = conn.roundTrips;
  const names = factNames();
  const values = await Promise.all(names.map((n) => cache.get(getFact(n))));
  const f: Record<string, unknown> = Object.fromEntries(names.map((n, i) => [n, values[i]]));
  assert.equal(conn.roundTrips - before, 1, 'one round trip for all facts');
  await Promise.all([cache.get(osFact), cache.get(servicesFact)]);
  assert.equal(conn.roundTrips - before, 1, 'cached');
  const sv = f.services as ServicesFact;
  assert.equal(sv.systemd, true);
  assert.deepEqual(sv.units['ssh.service'], { load: 'loaded', active: 'active', sub: 'running', enabled: 'enabled' });
  assert.equal((f.os as OsFact).codename, await on('. /etc/os-release; echo $VERSION_CODENAME'));
  assert.equal((f.packages as Record<string, string>)['openssh-server'], await on("dpkg-query -W -f='${Version}' openssh-server"));
  const k = f.kernel as KernelFact;
  assert.equal(k.esp, (await on('grep -qw esp4 /proc/crypto && echo yes || echo no')) === 'yes');
  assert.equal(k.ipvs, (await on('test -e /proc/net/ip_vs && echo yes || echo no')) === 'yes');
  assert.equal((f.users as UsersFact).users.root?.uid, 0);
  assert.equal(f.cpus, Number(await on('nproc')));
});

test('system operations: accounts, apt, unit file + service, guarded command', { timeout: 20 * 60_000 }, async (t) => {
  const { check, first } = await converge(systemSteps, systemState, t);
  assert.ok(
    first.every((r) => r.status === 'changed' || r.step.startsWith('apt')),
    statuses(first).join('\n'),
  );
  assert.match(check.find((r) => r.kind === 'systemd')!.changes.join(';'), /not found \(an earlier step must create it\)/);
  assert.deepEqual(first.find((r) => r.kind === 'systemd')!.changes, ['enable (was disabled)', 'start (was inactive)']);
  assert.match(first.find((r) => r.kind === 'command')!.changes[0]!, /^ran \(\/var\/tmp\/wpfarm-ops-test\.mark missing\)/);
  // independent checks on the node
  assert.match(await on('id wpfarm-ops'), /^uid=2901\(wpfarm-ops\) gid=\d+\(wpfarm-ops\) groups=\d+\(wpfarm-ops\),2902\(wpfarm-opsg\)$/);
  assert.equal(await on('getent passwd wpfarm-ops | cut -d: -f5,7'), 'wpfarm ops test:/bin/bash');
  assert.equal(await on('stat -c "%a %U" ~wpfarm-ops/.ssh ~wpfarm-ops/.ssh/authorized_keys'), '700 wpfarm-ops\n600 wpfarm-ops');
  assert.equal(await on('cat ~wpfarm-ops/.ssh/authorized_keys'), KEY);
  assert.equal(await on("dpkg-query -W -f='${Status}' hello"), 'install ok installed');
  assert.equal(await on('systemctl is-active wpfarm-ops-test; systemctl is-enabled wpfarm-ops-test'), 'active\nenabled');
  // a unit change: new content, daemon-reload in the same apply, restart picks it up
  const pid1 = await on('systemctl show -p MainPID --value wpfarm-ops-test');
  const changed = await play(() => [
    unitFile({ name: 'wpfarm-ops-test', content: UNIT.replace('infinity', '86400') }),
    systemd({ name: 'wpfarm-ops-test', state: 'restarted' }),
  ]);
  assert.deepEqual(statuses(changed), [
    'unit file /etc/systemd/system/wpfarm-ops-test.service: changed',
    'systemd wpfarm-ops-test.service restarted: changed',
  ]);
  assert.match(changed[0]!.diff ?? '', /^-ExecStart=\/bin\/sleep infinity\n\+ExecStart=\/bin\/sleep 86400$/m);
  assert.equal(await on('systemctl show -p NeedDaemonReload --value wpfarm-ops-test'), 'no', 'daemon-reload ran with the write');
  assert.notEqual(await on('systemctl show -p MainPID --value wpfarm-ops-test'), pid1, 'restarted');
  assert.match(await on('cat /proc/$(systemctl show -p MainPID --value wpfarm-ops-test)/cmdline | tr "\\0" " "'), /sleep 86400/);
});

test('a start that systemd skips (a Condition...= not met) fails the step, naming the unit', async () => {
  // systemctl start exits 0 and leaves such a unit inactive (the CrowdSec firewall bouncer waits for Debian's
  // pending registration this way): the step must not report "started"
  const unit = 'wpfarm-ops-cond';
  const flag = '/run/wpfarm-ops-cond.block';
  const content = `[Unit]\nDescription=wpfarm ops test: a condition\nConditionPathExists=!${flag}\n\n[Service]\nExecStart=/bin/sleep infinity\n`;
  await on(`touch ${flag}`);
  try {
    const r = await play(() => [unitFile({ name: unit, content }), systemd({ name: unit, state: 'started' })]);
    const s = r.find((x) => x.kind === 'systemd')!;
    assert.equal(s.status, 'failed', statuses(r).join('\n'));
    assert.match(s.error ?? '', /wpfarm-ops-cond\.service was not started: a condition of the unit is not met/);
    assert.equal(await on(`systemctl is-active ${unit}`), 'inactive');
    await on(`rm -f ${flag}`);
    const again = await play(() => [systemd({ name: unit, state: 'started' })]);
    assert.deepEqual(statuses(again), [`systemd ${unit}.service started: changed`]);
    assert.equal(await on(`systemctl is-active ${unit}`), 'active');
  } finally {
    await on(`systemctl stop ${unit}; rm -f /etc/systemd/system/${unit}.service ${flag}; systemctl daemon-reload`);
  }
});

const removalSteps = (ctx: StepContext): Step[] => [
  // the systemd step only applies while the unit exists (it fails on a unit that is not there)
  systemd(
    { name: 'wpfarm-ops-test', enabled: false, state: 'stopped' },
    { when: async () => (await ctx.exec('test -f /etc/systemd/system/wpfarm-ops-test.service', { nothrow: true })).code === 0 },
  ),
  command({
    cmd: sh`rm -f /etc/systemd/system/wpfarm-ops-test.service && systemctl daemon-reload`,
    removes: '/etc/systemd/system/wpfarm-ops-test.service',
  }),
  command({ cmd: sh`rm -f ${MARK}`, removes: MARK }),
  apt({ packages: ['hello'], state: 'absent', purge: true }),
  authorizedKey({ user: 'wpfarm-ops', key: KEY, state: 'absent' }),
  user({ name: 'wpfarm-ops', state: 'absent', removeHome: true }),
  group({ name: 'wpfarm-opsg', state: 'absent' }),
];

test('system operations: removal converges too, and leaves the node as it was', { timeout: 20 * 60_000 }, async (t) => {
  const { first } = await converge(removalSteps, systemState, t);
  assert.ok(first.filter((r) => r.status === 'changed').length >= 5, statuses(first).join('\n'));
  assert.equal(await on('getent passwd wpfarm-ops; getent group wpfarm-opsg; ls -d /home/wpfarm-ops 2>/dev/null'), '');
  assert.equal(await on("dpkg-query -W -f='${Status}' hello 2>/dev/null"), '');
  assert.equal(await on('systemctl show -p LoadState --value wpfarm-ops-test'), 'not-found');
});

// ---------------------------------------------------------------------------------------------
// docker: install without autostart, start through systemd, single-node swarm, network, secret, stack

const dockerState = () =>
  on(
    [
      "dpkg-query -W -f='${Status}\\n' docker.io 2>/dev/null",
      'systemctl is-active docker 2>/dev/null',
      "docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null",
      "docker network ls --format '{{.Name}}' 2>/dev/null | sort",
      "docker secret ls --format '{{.Name}}' 2>/dev/null | sort",
      "docker stack services --format '{{.Name}}' opstest 2>/dev/null",
      'sha256sum /var/lib/wpfarm/stacks/opstest.yml 2>/dev/null',
      'ls /usr/sbin/policy-rc.d 2>/dev/null',
    ].join('; '),
  );

const IMAGE = 'wpfarm-opstest:1';
const stackFile = (secretName: string, env: string) => `version: "3.8"
services:
  app:
    image: ${IMAGE}
    command: ["/bin/sleep", "infinity"]
    environment:
      MODE: ${env}
    secrets:
      - source: db_password
        target: db_password
    networks: [net]
    deploy:
      endpoint_mode: dnsrr
      replicas: 1
networks:
  net:
    external: true
    name: opstest_net
secrets:
  db_password:
    external: true
    name: ${secretName}
`;

const dockerSteps = (password: string, env: string) => (): Step[] => [
  apt({ packages: ['docker.io'], state: 'present', autostart: false, update_cache: 3600 }),
  systemd({ name: 'docker', enabled: true, state: 'started' }),
  command({
    cmd: sh`docker swarm init --advertise-addr ${host.address}`,
    unless: "docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active",
  }),
  // a tiny local image (no registry here): sleep, cat and their libraries from the node itself
  command({
    cmd: sh`tar -C / -ch bin/sleep bin/cat lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2 | docker import - ${IMAGE}`,
    unless: sh`docker image inspect ${IMAGE}`,
  }),
  dockerNetwork({ name: 'opstest_net', driver: 'overlay', attachable: true, encrypted: 'auto', labels: { 'wpfarm.test': 'ops' } }),
  dockerSecret({ name: 'opstest_db_password', content: password, labels: { 'wpfarm.test': 'ops' } }, { register: 'pw' }),
  stackDeploy({
    name: 'opstest',
    compose: stackFile(hashedName('opstest_db_password', password), env),
    resolveImage: 'never',
    withRegistryAuth: false,
  }),
];

/** packages this file installed on the node (purged at the end; what was there before stays) */
let newPackages: string[] = [];
const installedPackages = async (): Promise<Set<string>> =>
  new Set((await on("dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' | awk '$1==\"ii\"{print $2}'")).split('\n').filter(Boolean));

test('docker: install without autostart, then systemd starts it', { timeout: 20 * 60_000 }, async (t) => {
  assert.notEqual(
    await on("docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null"),
    'active',
    `${NODE} must not be in a swarm already (choose another node with WPFARM_OPS_NODE)`,
  );
  const pre = await installedPackages();
  assert.ok(pre.has('bash') && pre.size > 50, `package list read: ${pre.size}`);
  // first only the package, to see that policy-rc.d kept the daemon from starting
  const r = await play(() => [apt({ packages: ['docker.io'], state: 'present', autostart: false, update_cache: 3600 })]);
  newPackages = [...(await installedPackages())].filter((p) => !pre.has(p));
  t.diagnostic(`installed: ${newPackages.join(' ') || 'nothing (docker.io was there)'}`);
  t.diagnostic(statuses(r).join('; '));
  assert.ok(['ok', 'changed'].includes(r[0]!.status), statuses(r).join('\n'));
  if (r[0]!.status === 'changed') {
    assert.equal(await on('systemctl is-active docker'), 'inactive', 'the daemon did not autostart');
    assert.equal(await on('systemctl is-enabled docker'), 'enabled', 'but the unit is enabled');
  }
  assert.equal(await on('ls /usr/sbin/policy-rc.d 2>/dev/null'), '', 'policy-rc.d removed after the run');
});

test('docker: swarm, overlay network, hashed secret, stack deploy converge', { timeout: 20 * 60_000 }, async (t) => {
  const pw1 = `pw-${Date.now()}-one`;
  const { first } = await converge(dockerSteps(pw1, 'one'), dockerState, t);
  assert.ok(first.filter((r) => r.status === 'changed').length >= 4, statuses(first).join('\n'));
  const secretName = hashedName('opstest_db_password', pw1);
  assert.equal((first.find((r) => r.kind === 'dockerSecret')!.result as { name: string }).name, secretName);
  assert.ok(!JSON.stringify(first).includes(pw1), 'the secret value appears in no result');
  const sw = (await play(() => [swarmFacts()]))[0]!.result as { state: string; isManager: boolean; nodeAddr: string };
  assert.deepEqual([sw.state, sw.isManager, sw.nodeAddr], ['active', true, host.address]);
  assert.equal(
    await on('docker network inspect --format \'{{.Driver}} {{.Attachable}} {{index .Labels "wpfarm.test"}}\' opstest_net'),
    'overlay true ops',
  );
  const esp = (await on('grep -cw esp4 /proc/crypto || true')) !== '0' && (await on('grep -cw esp4 /proc/crypto || true')) !== '';
  assert.equal(
    await on('docker network inspect --format \'{{if index .Options "encrypted"}}yes{{else}}no{{end}}\' opstest_net'),
    esp ? 'yes' : 'no',
    "encrypted: 'auto' follows the kernel",
  );
  assert.equal(
    await on('cat /var/lib/wpfarm/stacks/opstest.yml | sha256sum | cut -c1-64'),
    (await import('node:crypto')).createHash('sha256').update(stackFile(secretName, 'one')).digest('hex'),
  );
  assert.equal(
    await on("docker service inspect --format '{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}}{{end}}' opstest_app"),
    secretName,
  );
  // the task really runs with the secret mounted (one node, local image)
  let running = '';
  for (let i = 0; i < 60 && running === ''; i++) {
    running = await on('docker ps -q --filter label=com.docker.stack.namespace=opstest --filter status=running | head -1');
    if (!running) await new Promise((r) => setTimeout(r, 1000));
  }
  assert.notEqual(running, '', `a task of opstest_app runs: ${await on('docker service ps --no-trunc opstest_app')}`);
  assert.equal(
    await on(`docker exec ${running} /bin/cat /run/secrets/db_password`),
    pw1,
    'the service reads the secret version it was given',
  );
});

test('docker: a new secret value is a new version; the stack moves to it and the old one is removed', {
  timeout: 20 * 60_000,
}, async (t) => {
  const old = (await on("docker secret ls --format '{{.Name}}' --filter name=opstest_db_password_")).split('\n').filter(Boolean);
  assert.equal(old.length, 1);
  const pw2 = `pw-${Date.now()}-two`;
  const check = await play(dockerSteps(pw2, 'two'), true);
  const stackCheck = check.find((r) => r.kind === 'stackDeploy')!;
  assert.equal(stackCheck.status, 'changed');
  assert.match(stackCheck.diff ?? '', /^-    name: opstest_db_password_[0-9a-f]{8}\n\+    name: opstest_db_password_[0-9a-f]{8}$/m);
  const first = await play(dockerSteps(pw2, 'two'));
  t.diagnostic(statuses(first).join('; '));
  assert.deepEqual(statuses(first), statuses(check));
  const now = (await on("docker secret ls --format '{{.Name}}' --filter name=opstest_db_password_")).split('\n').filter(Boolean);
  assert.deepEqual(now, [hashedName('opstest_db_password', pw2)], `old version ${old[0]} removed once unused`);
  const second = await play(dockerSteps(pw2, 'two'));
  assert.deepEqual(
    second.filter((r) => r.status !== 'ok').map((r) => r.step),
    [],
  );
});

test('docker: an encrypted overlay on a kernel without ESP is refused with the reason', async () => {
  const esp = (await on('grep -qw esp4 /proc/crypto && echo yes || echo no')) === 'yes';
  const r = await play(() => [dockerNetwork({ name: 'opstest_enc', encrypted: true })], true);
  if (esp) assert.equal(r[0]!.status, 'changed');
  else {
    assert.equal(r[0]!.status, 'failed');
    assert.match(r[0]!.error ?? '', /has no ESP \(IPsec\): it would silently pass no traffic between nodes/);
  }
});

test('docker: clean up (stack, network, secret, swarm, package) and leave the node as it was', { timeout: 20 * 60_000 }, async (t) => {
  const r = await play(() => [
    command({
      cmd: 'docker stack rm opstest && for i in $(seq 30); do docker network inspect opstest_net >/dev/null 2>&1 || break; docker network rm opstest_net >/dev/null 2>&1 && break; sleep 1; done',
      onlyIf: 'docker stack ls --format "{{.Name}}" | grep -qx opstest',
    }),
    command({
      cmd: 'docker secret ls -q --filter name=opstest_ | xargs -r docker secret rm',
      onlyIf: 'docker secret ls -q --filter name=opstest_ | grep -q .',
    }),
    command({ cmd: 'docker swarm leave --force', onlyIf: "docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active" }),
    command({ cmd: sh`docker image rm ${IMAGE}`, onlyIf: sh`docker image inspect ${IMAGE}` }),
    command({ cmd: 'rm -f /var/lib/wpfarm/stacks/opstest.yml', removes: '/var/lib/wpfarm/stacks/opstest.yml' }),
    ...(newPackages.includes('docker.io')
      ? [systemd({ name: 'docker', state: 'stopped', enabled: false }), apt({ packages: ['docker.io'], state: 'absent', purge: true })]
      : []),
  ]);
  assert.ok(!r.some((x) => x.status === 'failed'), statuses(r).join('\n'));
  if (newPackages.length) {
    // the dependencies this file brought in and nothing needs now (roles may install packages on the
    // same node meanwhile: only what apt itself would autoremove AND this file installed goes)
    const orphans = (await on("apt-get -s autoremove | awk '/^Remv/{print $2}'")).split('\n').filter((p) => newPackages.includes(p));
    if (orphans.length) {
      const r2 = await play(() => [apt({ packages: orphans, state: 'absent', purge: true })]);
      assert.ok(!r2.some((x) => x.status === 'failed'), statuses(r2).join('\n'));
    }
    const left = await installedPackages();
    assert.equal(left.has('docker.io'), false);
    const kept = newPackages.filter((p) => left.has(p));
    if (kept.length) t.diagnostic(`kept (something else on the node needs them now): ${kept.join(' ')}`);
  }
});
