// The file operations through the real runner and transport, on real OpenSSH sshd hosts
// (test/harness/sshd.ts): for every operation, check mode predicts exactly the changes the run then
// makes while changing nothing itself, the run makes them, and a rerun changes nothing (in one round
// trip per host, since all probes are batched).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';
import { ensureTools } from '../unit/ops-files.harness.ts';
import { runRole, newHostState, type RoleRunResult } from '../../lib/runner.ts';
import { ConnectionPool } from '../../lib/transport.ts';
import { EventStream } from '../../lib/events.ts';
import type { HostSpec, Role, Step } from '../../lib/types.ts';
import { copy, directory, file } from '../../lib/ops/files.ts';
import { template } from '../../lib/ops/template.ts';
import { lineinfile } from '../../lib/ops/lineinfile.ts';
import { blockinfile } from '../../lib/ops/blockinfile.ts';
import { sysctl } from '../../lib/ops/sysctl.ts';
import { download } from '../../lib/ops/download.ts';

let lab: SshdLab;
let server: Server;
let baseUrl = '';
const local = join(process.cwd(), '.wpfarm', `test-engine-files-${process.pid}`);
const payload = Buffer.from(Array.from({ length: 100000 }, (_, i) => (i * 13) % 256));
const payloadSha = createHash('sha256').update(payload).digest('hex');
const blob = Buffer.from([0, 1, 2, 3, 254, 255, 10]);
let hosts: HostSpec[] = [];
const controllerKeepalive = readFileSync('/proc/sys/net/ipv4/tcp_keepalive_time', 'utf8');

const onHost = (name: string, path: string): string => join(lab.hosts.find((h) => h.name === name)!.root, path);
const liveSysctl = (name: string): string =>
  execFileSync('ip', ['netns', 'exec', lab.hosts.find((h) => h.name === name)!.netns, 'cat', '/proc/sys/net/ipv4/tcp_keepalive_time'], {
    encoding: 'utf8',
  }).trim();

before(async () => {
  ensureTools(['curl', 'getent']); // the test hosts' filesystems are overlays of this machine's
  lab = await startSshdHosts(2, { prefix: 'f' });
  mkdirSync(local, { recursive: true });
  writeFileSync(
    join(local, 'app.conf.ejs'),
    'name=<%= inventory_hostname %>\nport=<%= app.port %>\n<% for (const u of app.upstreams) { %>upstream <%= u %>\n<% } %>',
  );
  writeFileSync(join(local, 'broken.ejs'), 'ok\n<%= app.nope %>\n');
  writeFileSync(join(local, 'blob.bin'), blob);
  server = createServer((req, res) => {
    if (req.url === '/pkg.bin') {
      res.writeHead(200);
      res.end(payload);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  // the hosts reach this machine at the bridge address of their network
  const bridge = lab.hosts[0]!.address.replace(/\.\d+$/, '.1');
  await new Promise<void>((r) => server.listen(0, bridge, r));
  baseUrl = `http://${bridge}:${(server.address() as AddressInfo).port}`;
  hosts = lab.hosts.map((h) => ({
    ...h.spec,
    vars: { ...h.spec.vars, inventory_hostname: h.name, app: { port: 8080, upstreams: ['10.0.0.1', '10.0.0.2'] } },
  }));
  for (const h of lab.hosts) {
    writeFileSync(onHost(h.name, '/srv/seed.conf'), '[main]\nlisten = 80\n#keepalive = on\n');
    writeFileSync(onHost(h.name, '/srv/old.txt'), 'obsolete\n');
  }
});

after(async () => {
  await new Promise((r) => (server ? server.close(r) : r(undefined)));
  await lab?.stop();
  rmSync(local, { recursive: true, force: true });
});

async function run(role: Role, o: { check?: boolean; diff?: boolean } = {}): Promise<RoleRunResult & { roundTrips: number }> {
  const pool = new ConnectionPool({ knownHosts: lab.knownHosts });
  const hostState = new Map(hosts.map((h) => [h.name, newHostState()]));
  try {
    const r = await runRole(role, hosts, {
      pool,
      events: new EventStream(),
      options: { check: !!o.check, diff: !!o.diff, forks: 4, verbose: 0 },
      allHosts: new Map(hosts.map((h) => [h.name, h])),
      signal: { interrupted: false },
      hostState,
    });
    return { ...r, roundTrips: await pool.totalRoundTrips() };
  } finally {
    await pool.closeAll();
  }
}

const roleOf = (name: string, steps: (host: string) => Step[]): Role => ({ name, hosts: 'all', steps: (ctx) => steps(ctx.host.name) });

/** "host | step | change; change" for every changed step, sorted */
const changes = (r: RoleRunResult): string[] =>
  r.results
    .filter((x) => x.status === 'changed')
    .map((x) => `${x.host} | ${x.step} | ${x.changes.join('; ')}`)
    .sort();

const failures = (r: RoleRunResult): string[] =>
  r.results.filter((x) => x.status === 'failed').map((x) => `${x.host} | ${x.step} | ${x.error}`);

const all = (): Role =>
  roleOf('opsfiles', (host) => [
    directory({ path: '/srv/opsfiles/conf', mode: '0750', owner: 'nobody', group: 'nogroup' }),
    file({ path: '/srv/opsfiles/conf/motd', content: `hello from ${host}\n`, mode: '0644' }),
    copy({ path: '/srv/opsfiles/conf/blob.bin', src: relative(process.cwd(), join(local, 'blob.bin')), mode: '0600' }),
    template({
      path: '/srv/opsfiles/conf/app.conf',
      src: relative(process.cwd(), join(local, 'app.conf.ejs')),
      mode: '0640',
      group: 'nogroup',
    }),
    lineinfile({ path: '/srv/seed.conf', regexp: '^#?keepalive', line: 'keepalive = off' }),
    blockinfile({ path: '/srv/seed.conf', block: 'cache = 64m\nworkers = 4', insertAfter: /^\[main\]/ }),
    sysctl({ name: 'net.ipv4.tcp_keepalive_time', value: 1234, file: '/srv/opsfiles/sysctl.conf' }),
    // a second key in the same (new) file: check mode sees no file at all, yet predicts the same lines
    sysctl({ name: 'net.ipv4.tcp_fin_timeout', value: 17, file: '/srv/opsfiles/sysctl.conf' }),
    lineinfile({ path: '/srv/seed.conf', line: 'backlog = 511', insertAfter: /^listen/ }),
    download({ url: `${baseUrl}/pkg.bin`, dest: '/srv/opsfiles/pkg.bin', sha256: payloadSha, mode: '0644' }),
    file({ path: '/srv/old.txt', state: 'absent' }),
    file({ path: '/srv/opsfiles/marker', state: 'touch', modificationTime: 'preserve', accessTime: 'preserve' }), // create only
  ]);

describe('file operations on real sshd hosts, through the runner', () => {
  test('check predicts exactly, changes nothing; the run makes those changes; the rerun changes nothing in 1 round trip per host', async () => {
    const liveBefore = lab.hosts.map((h) => liveSysctl(h.name));
    assert.ok(liveBefore.every((v) => v !== '1234'));

    const check = await run(all(), { check: true, diff: true });
    assert.deepEqual(failures(check), []);
    const predicted = changes(check);
    assert.equal(predicted.length, 2 * 12, predicted.join('\n'));
    for (const h of lab.hosts) {
      assert.equal(existsSync(onHost(h.name, '/srv/opsfiles')), false, 'check created nothing');
      assert.equal(readFileSync(onHost(h.name, '/srv/seed.conf'), 'utf8'), '[main]\nlisten = 80\n#keepalive = on\n');
      assert.equal(existsSync(onHost(h.name, '/srv/old.txt')), true);
    }
    assert.deepEqual(
      lab.hosts.map((h) => liveSysctl(h.name)),
      liveBefore,
      'check set no live value',
    );
    const tdiff = check.results.find((x) => x.host === 'f01' && x.kind === 'template')!.diff!;
    assert.match(tdiff, /^--- \/dev\/null\n\+\+\+ \/srv\/opsfiles\/conf\/app\.conf\n@@ -0,0 \+1,4 @@\n\+name=f01\n\+port=8080\n/);

    const first = await run(all());
    assert.deepEqual(failures(first), []);
    assert.deepEqual(changes(first), predicted, 'the run made exactly the predicted changes');

    for (const h of lab.hosts) {
      const p = (x: string) => onHost(h.name, x);
      assert.equal((statSync(p('/srv/opsfiles/conf')).mode & 0o7777).toString(8), '750');
      assert.equal(statSync(p('/srv/opsfiles/conf')).uid, 65534);
      assert.equal(readFileSync(p('/srv/opsfiles/conf/motd'), 'utf8'), `hello from ${h.name}\n`);
      assert.deepEqual(readFileSync(p('/srv/opsfiles/conf/blob.bin')), blob);
      assert.equal(
        readFileSync(p('/srv/opsfiles/conf/app.conf'), 'utf8'),
        `name=${h.name}\nport=8080\nupstream 10.0.0.1\nupstream 10.0.0.2\n`,
      );
      assert.equal((statSync(p('/srv/opsfiles/conf/app.conf')).mode & 0o7777).toString(8), '640');
      assert.equal(statSync(p('/srv/opsfiles/conf/app.conf')).gid, 65534);
      assert.equal(
        readFileSync(p('/srv/seed.conf'), 'utf8'),
        '[main]\n# BEGIN WPFARM MANAGED BLOCK\ncache = 64m\nworkers = 4\n# END WPFARM MANAGED BLOCK\nlisten = 80\nbacklog = 511\nkeepalive = off\n',
      );
      assert.equal(
        readFileSync(p('/srv/opsfiles/sysctl.conf'), 'utf8'),
        'net.ipv4.tcp_keepalive_time = 1234\nnet.ipv4.tcp_fin_timeout = 17\n',
      );
      assert.equal(liveSysctl(h.name), '1234');
      assert.deepEqual(readFileSync(p('/srv/opsfiles/pkg.bin')), payload);
      assert.equal(existsSync(p('/srv/old.txt')), false);
      assert.equal(readFileSync(p('/srv/opsfiles/marker'), 'utf8'), '');
    }
    assert.equal(
      readFileSync('/proc/sys/net/ipv4/tcp_keepalive_time', 'utf8'),
      controllerKeepalive,
      "this machine's own value did not move",
    );

    const rerun = await run(all());
    assert.deepEqual(failures(rerun), []);
    assert.deepEqual(changes(rerun), [], 'the rerun changed nothing');
    assert.equal(rerun.results.filter((x) => x.status === 'ok').length, 2 * 12);
    assert.equal(rerun.roundTrips, lab.hosts.length, 'one round trip per host: every probe batched');

    const recheck = await run(all(), { check: true, diff: true });
    assert.deepEqual(changes(recheck), []);
  });

  test('a change after a rerun: only the changed steps apply, with a diff; drift is repaired', async () => {
    for (const h of lab.hosts) {
      writeFileSync(onHost(h.name, '/srv/opsfiles/conf/motd'), 'tampered\n');
      execFileSync('chmod', ['0777', onHost(h.name, '/srv/opsfiles/conf/app.conf')]);
    }
    const check = await run(all(), { check: true, diff: true });
    const predicted = changes(check);
    assert.deepEqual(
      predicted.map((l) => l.replace(/sha256 \w+ -> \w+/, 'sha256 X -> Y')),
      [
        'f01 | file /srv/opsfiles/conf/motd | content changed (9 -> 15 bytes, sha256 X -> Y)',
        'f01 | template .wpfarm/' + `test-engine-files-${process.pid}/app.conf.ejs -> /srv/opsfiles/conf/app.conf | mode 0777 -> 0640`,
        'f02 | file /srv/opsfiles/conf/motd | content changed (9 -> 15 bytes, sha256 X -> Y)',
        'f02 | template .wpfarm/' + `test-engine-files-${process.pid}/app.conf.ejs -> /srv/opsfiles/conf/app.conf | mode 0777 -> 0640`,
      ],
    );
    const motdDiff = check.results.find((x) => x.host === 'f02' && x.step === 'file /srv/opsfiles/conf/motd')!.diff;
    assert.equal(motdDiff, '--- /srv/opsfiles/conf/motd\n+++ /srv/opsfiles/conf/motd\n@@ -1 +1 @@\n-tampered\n+hello from f02\n');
    const fix = await run(all());
    assert.deepEqual(changes(fix), predicted);
    assert.deepEqual(changes(await run(all())), []);
  });

  test('150 file steps per host already in place: probed in batches (3 round trips per host), nothing changes', async () => {
    // The files are laid down directly (a first run that creates 150 files re-probes the following batch
    // after every change: ~220 s here, see the report), then the role finds them all as wanted.
    for (const h of lab.hosts) {
      mkdirSync(onHost(h.name, '/srv/many'), { recursive: true, mode: 0o755 });
      for (let i = 0; i < 149; i++) writeFileSync(onHost(h.name, `/srv/many/f${i}.conf`), `host=${h.name}\nindex=${i}\n`, { mode: 0o640 });
    }
    const many = roleOf('opsfiles-many', (host) => [
      directory({ path: '/srv/many', mode: '0755' }),
      ...Array.from({ length: 149 }, (_, i) => file({ path: `/srv/many/f${i}.conf`, content: `host=${host}\nindex=${i}\n`, mode: '0640' })),
    ]);
    const t0 = performance.now();
    const r = await run(many);
    const ms = performance.now() - t0;
    assert.deepEqual(failures(r), []);
    assert.deepEqual(changes(r), []);
    assert.equal(r.results.filter((x) => x.status === 'ok').length, 2 * 150);
    assert.equal(r.roundTrips, 2 * 3, 'ceil(150 / 64) probe batches per host');
    console.log(`# 150 unchanged file steps on 2 hosts: ${Math.round(ms)} ms, ${r.roundTrips} round trips`);
  });

  test('errors fail the step with a clear message and leave the host as it was', async () => {
    const bad = roleOf('opsfiles-bad', () => [
      template({ path: '/srv/opsfiles/broken.conf', src: relative(process.cwd(), join(local, 'broken.ejs')) }),
    ]);
    const r = await run(bad);
    const f = failures(r);
    assert.equal(f.length, 2);
    for (const line of f)
      assert.match(line, new RegExp(`test-engine-files-${process.pid}/broken\\.ejs:2: undefined variable 'app\\.nope'`));
    const dl = roleOf('opsfiles-dl', () => [
      download({ url: `${baseUrl}/pkg.bin`, dest: '/srv/opsfiles/wrong.bin', sha256: 'b'.repeat(64) }),
    ]);
    const r2 = await run(dl);
    for (const line of failures(r2)) assert.match(line, /sha256 mismatch/);
    assert.equal(failures(r2).length, 2);
    for (const h of lab.hosts) {
      assert.equal(existsSync(onHost(h.name, '/srv/opsfiles/broken.conf')), false);
      assert.equal(existsSync(onHost(h.name, '/srv/opsfiles/wrong.bin')), false);
      const leftovers = execFileSync('ls', ['-A', onHost(h.name, '/srv/opsfiles')], { encoding: 'utf8' });
      assert.doesNotMatch(leftovers, /\.wpfarm\./, 'no temp file left behind');
    }
  });

  test('Connection.put writes with the same atomic script over SSH: asked attributes, then kept ones, one round trip each', async () => {
    const pool = new ConnectionPool({ knownHosts: lab.knownHosts });
    const p = '/srv/put/state.json';
    mkdirSync(onHost('f01', '/srv/put'), { recursive: true });
    try {
      const conn = await pool.get(hosts[0]!);
      await conn.put(p, '{"a":1}\n', { mode: 0o600, owner: 'nobody', group: 'nogroup' });
      const st1 = statSync(onHost('f01', p));
      assert.equal(readFileSync(onHost('f01', p), 'utf8'), '{"a":1}\n');
      assert.equal((st1.mode & 0o7777).toString(8), '600');
      assert.equal(st1.uid, Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' })));
      await conn.put(p, '{"a":2}\n');
      const st2 = statSync(onHost('f01', p));
      assert.equal(readFileSync(onHost('f01', p), 'utf8'), '{"a":2}\n');
      assert.deepEqual([(st2.mode & 0o7777).toString(8), st2.uid, st2.gid], ['600', st1.uid, st1.gid], 'mode and owner kept');
      await conn.put('/srv/put/new.txt', 'x');
      assert.equal((statSync(onHost('f01', '/srv/put/new.txt')).mode & 0o7777).toString(8), '644');
      assert.equal(conn.roundTrips, 3);
      await assert.rejects(conn.put('/srv/no/such/dir/f', 'x'), /exit/);
      assert.deepEqual(
        execFileSync('ls', ['-A', onHost('f01', '/srv/put')], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean)
          .sort(),
        ['new.txt', 'state.json'],
      );
    } finally {
      await pool.closeAll();
    }
  });
});
