// Facts: the probes run for real in bash on this machine (Debian 12, systemd not PID 1, docker may or
// may not run); systemd/docker texts that only exist on the lab nodes were captured there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import {
  FactCache,
  archFact,
  cpusFact,
  factNames,
  fileStat,
  memoryFact,
  osFact,
  packagesFact,
  gatherFacts,
  parseDpkgQuery,
  parseOsRelease,
  parseServices,
  parseSwarm,
  getFact,
  defineFact,
  isInstalled,
  type DiskFact,
  type KernelFact,
  type MemoryFact,
  type OsFact,
  type ServicesFact,
  type UsersFact,
} from '../../lib/facts.ts';
import { localExec } from './ops-sys.harness.ts';

function countingExec() {
  const calls: string[] = [];
  const exec = (cmd: string) => {
    calls.push(cmd);
    return localExec(cmd); // throws on non-zero: the fact script must exit 0
  };
  return { exec, calls };
}

test('all facts in one round trip, exit 0, typed values that match this machine', async () => {
  const { exec, calls } = countingExec();
  const names = factNames();
  const values = await gatherFacts(exec, names);
  const f: Record<string, unknown> = Object.fromEntries(names.map((n, i) => [n, values[i]]));
  assert.equal(calls.length, 1);
  const osf = f.os as OsFact;
  const osText = fs.readFileSync('/etc/os-release', 'utf8');
  assert.equal(osf.id, /^ID=(.*)$/m.exec(osText)![1]!.replace(/"/g, ''));
  assert.equal(osf.versionId, (/^VERSION_ID=(.*)$/m.exec(osText)?.[1] ?? '').replace(/"/g, ''));
  assert.equal(f.cpus, os.cpus().length);
  assert.equal(f.arch, os.arch() === 'x64' ? 'x86_64' : f.arch);
  const mem = f.memory as MemoryFact;
  assert.ok(Math.abs(mem.totalMb - Math.floor(os.totalmem() / 1048576)) <= 1, `${mem.totalMb} vs ${os.totalmem()}`);
  const disks = f.disks as DiskFact[];
  const root = disks.find((d) => d.mount === '/');
  assert.ok(root && root.sizeKb > 0 && root.availKb <= root.sizeKb, JSON.stringify(disks));
  const pk = f.packages as Record<string, string>;
  const bashVersion = (await localExec("dpkg-query -W -f='${Version}' bash")).stdout;
  assert.equal(pk.bash, bashVersion);
  const users = f.users as UsersFact;
  assert.deepEqual(users.users.root, {
    uid: 0,
    gid: 0,
    comment: 'root',
    home: '/root',
    shell: (await localExec('getent passwd root | cut -d: -f7')).stdout.trim(),
  });
  assert.equal(users.groups.root?.gid, 0);
  const k = f.kernel as KernelFact;
  assert.equal(k.release, os.release());
  assert.equal(k.esp, /\besp4\b/.test(fs.readFileSync('/proc/crypto', 'utf8')) || fs.existsSync('/sys/module/esp4'));
  assert.equal(k.ipvs, fs.existsSync('/proc/net/ip_vs') || fs.existsSync('/sys/module/ip_vs'));
  assert.equal(k.xfrm, fs.existsSync('/proc/net/xfrm_stat'));
  const sv = f.services as ServicesFact;
  assert.equal(sv.systemd, fs.existsSync('/run/systemd/system'));
  const d = f.docker as { installed: boolean; running: boolean; serverVersion: string };
  const dockerAnswers = (await localExec("timeout 10 docker version --format '{{.Server.Version}}'", { nothrow: true })).stdout.trim();
  assert.equal(d.running, dockerAnswers !== '');
  assert.equal(d.serverVersion, dockerAnswers);
  const sw = f.swarm as { state: string };
  assert.equal(sw.state, d.running ? (await localExec("docker info --format '{{.Swarm.LocalNodeState}}'")).stdout.trim() : 'unavailable');
});

test('a failing snippet is data, not a failed round trip; markers keep sections apart', async () => {
  defineFact({ name: 'test.failing', script: 'echo partial; ls /nonexistent-dir; exit 3', parse: (s) => s });
  defineFact({ name: 'test.noeol', script: 'printf no-newline', parse: (s) => s });
  const { exec, calls } = countingExec();
  const [failing, noeol, arch] = await gatherFacts(exec, ['test.failing', 'test.noeol', 'arch']); // localExec throws on exit != 0
  assert.equal(calls.length, 1);
  assert.equal(failing, 'partial', 'stderr is discarded, the exit stays inside the subshell');
  assert.equal(noeol, 'no-newline');
  assert.equal(arch, (await localExec('uname -m')).stdout.trim());
});

test('FactCache: typed values, one gather for what is asked together, cached, invalidate re-gathers only what was dropped', async () => {
  const { exec, calls } = countingExec();
  const c = new FactCache(exec);
  const [osv, cpus, pk] = await Promise.all([c.get(osFact), c.get(cpusFact), c.get(packagesFact)]);
  assert.equal(calls.length, 1);
  assert.ok(pk.bash, 'typed: Record<string, string>');
  assert.equal(typeof cpus, 'number');
  const again = await c.get(osFact);
  assert.equal(calls.length, 1, 'cached facts cost no round trip');
  assert.deepEqual(again, osv);
  c.invalidate(['packages']);
  await Promise.all([c.get(osFact), c.get(packagesFact)]);
  assert.equal(calls.length, 2);
  assert.match(calls[1]!, /# packages$/m);
  assert.doesNotMatch(calls[1]!, /# os$/m, 'only the invalidated fact is gathered again');
  // concurrent callers share one gather
  c.invalidate(['memory', 'arch']);
  const m1 = c.get(memoryFact);
  await Promise.all([m1, c.get(memoryFact), c.get(archFact)]);
  assert.equal(calls.length, 3, 'memory and arch, asked in the same tick, are one gather; the repeated memory waits for it');
  await Promise.all([c.get(memoryFact), c.get(archFact)]);
  assert.equal(c.gathers, 3);
});

test('facts with arguments: fileStat of two paths in one round trip, each parsed with its own argument, cached per argument', async () => {
  const d = fs.mkdtempSync(`${os.tmpdir()}/facts-`);
  fs.writeFileSync(`${d}/a`, 'hello');
  fs.chmodSync(`${d}/a`, 0o640);
  fs.symlinkSync(`${d}/a`, `${d}/l`);
  const { exec, calls } = countingExec();
  const c = new FactCache(exec);
  const [a, l, none] = await Promise.all([c.get(fileStat, `${d}/a`), c.get(fileStat, `${d}/l`), c.get(fileStat, `${d}/no such`)]);
  assert.equal(calls.length, 1, 'three fileStat requests, one round trip');
  const want = { exists: true, type: 'file', mode: '0640', owner: os.userInfo().username, group: a.group, size: 5, mtime: 0 };
  assert.deepEqual({ ...a, mtime: 0 }, want);
  assert.equal(a.mtime, Math.floor(fs.statSync(`${d}/a`).mtimeMs / 1000));
  assert.equal(l.type, 'link');
  assert.equal(none.exists, false);
  await c.get(fileStat, `${d}/a`);
  assert.equal(calls.length, 1, 'cached per argument');
  c.invalidate(['fileStat']);
  await c.get(fileStat, `${d}/l`);
  assert.equal(calls.length, 2, 'invalidating a fact by name drops it for every argument');
  // volatile (file attributes): forgotten after any change; the os fact stays cached
  await Promise.all([c.get(osFact), c.get(fileStat, `${d}/a`)]);
  assert.equal(calls.length, 3);
  fs.writeFileSync(`${d}/a`, 'hello, world');
  assert.equal((await c.get(fileStat, `${d}/a`)).size, 5, 'cached until forgotten');
  c.forgetVolatile();
  assert.equal((await c.get(fileStat, `${d}/a`)).size, 12, 'read again after forgetVolatile()');
  assert.equal(calls.length, 4);
  assert.doesNotMatch(calls[3]!, /# os$/m, 'only the volatile fact is gathered again');
  assert.equal(fileStat.volatile, true);
  assert.equal(osFact.volatile, undefined);
  fs.rmSync(d, { recursive: true });
});

test('unknown fact: error before any round trip', async () => {
  const { exec, calls } = countingExec();
  await assert.rejects(() => gatherFacts(exec, ['os', 'nonsense']), /unknown fact "nonsense"/);
  assert.equal(calls.length, 0);
});

test('a failed gather is not cached', async () => {
  let n = 0;
  const c = new FactCache(async (cmd) => {
    if (n++ === 0) throw new Error('connection dropped');
    return localExec(cmd);
  });
  await assert.rejects(() => c.get(archFact), /connection dropped/);
  assert.equal(typeof (await c.get(archFact)), 'string');
});

test('os-release parsing: quotes, ID_LIKE, missing codename', () => {
  const o = parseOsRelease(
    'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\nVERSION_CODENAME=noble\nID=ubuntu\nID_LIKE=debian\n',
  );
  assert.deepEqual(o, { id: 'ubuntu', idLike: ['debian'], versionId: '24.04', codename: 'noble', prettyName: 'Ubuntu 24.04.1 LTS' });
  assert.equal(parseOsRelease('ID=debian\n').codename, '');
});

test('dpkg-query parsing: installed vs config-files vs half-configured', () => {
  const p = parseDpkgQuery(
    [
      'bash install ok installed 5.2.15-2+b8',
      'nginx deinstall ok config-files 1.22.1-9',
      'mariadb-server install ok half-configured 1:10.11.6-0',
      'libc-bin install ok triggers-pending 2.36-9',
      '',
    ].join('\n'),
  );
  assert.equal(isInstalled(p.bash), true);
  assert.equal(isInstalled(p.nginx), false);
  assert.equal(isInstalled(p['mariadb-server']), false);
  assert.equal(isInstalled(p['libc-bin']), true);
  assert.equal(p['mariadb-server']?.version, '1:10.11.6-0');
  assert.equal(
    getFact('packages').parse('nginx deinstall ok config-files 1.22.1-9\nbash install ok installed 5.2\n') instanceof Object,
    true,
  );
  assert.deepEqual(getFact('packages').parse('nginx deinstall ok config-files 1.22.1-9\nbash install ok installed 5.2\n'), { bash: '5.2' });
});

test('disks: mount points with spaces', () => {
  const d = getFact('disks').parse(
    'Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda 100 40 60 40% /\n/dev/vdb 10 1 9 10% /mnt/my data\n',
  ) as DiskFact[];
  assert.deepEqual(d[1], { device: '/dev/vdb', sizeKb: 10, usedKb: 1, availKb: 9, mount: '/mnt/my data' });
});

// captured on the lab node st2 (systemd 252 in a container), November 2026
const LAB_SERVICES = `systemd=yes
%%units
console-getty.service                masked    inactive dead    console-getty.service
dbus.service                         loaded    active   running D-Bus System Message Bus
display-manager.service              not-found inactive dead    display-manager.service
ssh.service                          loaded    active   running OpenBSD Secure Shell server
systemd-journal-flush.service        loaded    active   exited  Flush Journal to Persistent Storage
systemd-logind.service               masked    inactive dead    systemd-logind.service
%%files
apt-daily.service                      static   -
console-getty.service                  masked   disabled
dbus.service                           static   -
debug-shell.service                    disabled disabled
e2scrub_reap.service                   enabled  enabled
ssh.service                            enabled  enabled
systemd-logind.service                 masked   enabled`;

test('services: list-units + list-unit-files as captured on a lab node', () => {
  const s = parseServices(LAB_SERVICES);
  assert.equal(s.systemd, true);
  assert.deepEqual(s.units['ssh.service'], { load: 'loaded', active: 'active', sub: 'running', enabled: 'enabled' });
  assert.deepEqual(s.units['systemd-logind.service'], { load: 'masked', active: 'inactive', sub: 'dead', enabled: 'masked' });
  assert.equal(s.units['display-manager.service']?.load, 'not-found');
  assert.deepEqual(s.units['debug-shell.service'], { load: '', active: 'inactive', sub: 'dead', enabled: 'disabled' });
  assert.equal(s.units['systemd-journal-flush.service']?.sub, 'exited');
});

test('swarm: inactive, active manager, and docker not answering', () => {
  assert.equal(parseSwarm('').state, 'unavailable');
  assert.equal(parseSwarm('Cannot connect to the Docker daemon').state, 'unavailable');
  const inactive = parseSwarm(
    '{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null}',
  );
  assert.equal(inactive.state, 'inactive');
  assert.equal(inactive.isManager, false);
  const active = parseSwarm(
    '{"NodeID":"q3v0l6tq2zm5yu4qkx4xzn3yv","NodeAddr":"10.77.0.42","LocalNodeState":"active","ControlAvailable":true,"Error":"","RemoteManagers":[{"NodeID":"q3v0l6tq2zm5yu4qkx4xzn3yv","Addr":"10.77.0.42:2377"}],"Nodes":1,"Managers":1,"Cluster":{"ID":"mz3b0vn1d0h7r8y0x2l1k6j5e"}}',
  );
  assert.deepEqual(active, {
    state: 'active',
    nodeId: 'q3v0l6tq2zm5yu4qkx4xzn3yv',
    nodeAddr: '10.77.0.42',
    isManager: true,
    clusterId: 'mz3b0vn1d0h7r8y0x2l1k6j5e',
    managers: 1,
    nodes: 1,
    remoteManagers: ['10.77.0.42:2377'],
    error: '',
  });
});
