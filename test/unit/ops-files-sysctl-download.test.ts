// sysctl (in a private network namespace, so that this machine's own values are never touched) and
// download (from an HTTP server on 127.0.0.1, with curl and with wget), run for real with bash.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { procPath, sysctl } from '../../lib/ops/sysctl.ts';
import { parseProbes, probeScript } from '../../lib/runner.ts';
import { download } from '../../lib/ops/download.ts';
import { bash, cycle, ensureTools, runOp, snapshot, tempDir, type BashOptions } from './ops-files.harness.ts';

ensureTools(['ip', 'curl', 'wget', 'getent']);
const tmp = tempDir('wpf-sysdl-');
const fresh = tmp.fresh;

describe('sysctl (in a private network namespace)', () => {
  const ns = `wpffiles-${process.pid}`;
  const inNs: BashOptions = { wrap: ['ip', 'netns', 'exec', ns] };
  const hostValue = () => readFileSync('/proc/sys/net/ipv4/tcp_keepalive_time', 'utf8');
  let hostBefore = '';
  before(async () => {
    hostBefore = hostValue();
    // namespaces left by an earlier run of this file that was killed (its pid is gone)
    for (const line of (await bash('ip netns list')).stdout.split('\n')) {
      const m = /^wpffiles-(\d+)\b/.exec(line);
      if (m && !existsSync(`/proc/${m[1]}`)) await bash(`ip netns del wpffiles-${m[1]}`, { nothrow: true });
    }
    await bash(`ip netns add ${ns}`);
  });
  after(async () => {
    await bash(`ip netns del ${ns}`, { nothrow: true });
    assert.equal(hostValue(), hostBefore, "this machine's own value was not touched");
  });

  test('procPath maps dots to slashes and slashes to dots', () => {
    assert.equal(procPath('net.ipv4.ip_forward'), '/proc/sys/net/ipv4/ip_forward');
    assert.equal(procPath('net.ipv4.conf.eth0/1.forwarding'), '/proc/sys/net/ipv4/conf/eth0.1/forwarding');
  });

  test('persist + live: check predicts, run sets both, rerun ok', async () => {
    const d = fresh();
    const file = join(d, '99-wpfarm.conf');
    writeFileSync(file, '# managed\nnet.core.somaxconn = 4096\n');
    const live = async () => (await bash('cat /proc/sys/net/ipv4/tcp_keepalive_time', inNs)).stdout.trim();
    const before = await live();
    assert.notEqual(before, '1234');
    const snap = await snapshot(d);
    const make = () => sysctl({ name: 'net.ipv4.tcp_keepalive_time', value: 1234, file });
    const check = await runOp(make(), { check: true, bashOpts: inNs });
    assert.equal(await snapshot(d), snap);
    assert.equal(await live(), before, 'check mode did not set the live value');
    assert.deepEqual(check.plan.changes, [`${file}: add net.ipv4.tcp_keepalive_time = 1234`, `live value ${before} -> 1234`]);
    const run = await runOp(make(), { bashOpts: inNs });
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(file, 'utf8'), '# managed\nnet.core.somaxconn = 4096\nnet.ipv4.tcp_keepalive_time = 1234\n');
    assert.equal(await live(), '1234');
    assert.equal((await runOp(make(), { bashOpts: inNs })).status, 'ok');
    // a changed value replaces the line
    const again = await cycle(() => sysctl({ name: 'net.ipv4.tcp_keepalive_time', value: '1300', file }), { bashOpts: inNs });
    assert.deepEqual(again.run.plan.changes, [`${file}: net.ipv4.tcp_keepalive_time = 1234 -> 1300`, 'live value 1234 -> 1300']);
    assert.equal(again.rerun.status, 'ok');
  });

  test('multi-field values compare with whitespace normalised (tabs in /proc)', async () => {
    const d = fresh();
    const file = join(d, 'ports.conf');
    const { check, run, rerun } = await cycle(() => sysctl({ name: 'net.ipv4.ip_local_port_range', value: '20000   60000', file }), {
      bashOpts: inNs,
    });
    assert.equal(check.plan.changes[0], `${file}: add net.ipv4.ip_local_port_range = 20000 60000`);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(file, 'utf8'), 'net.ipv4.ip_local_port_range = 20000 60000\n');
    assert.equal((await bash('cat /proc/sys/net/ipv4/ip_local_port_range', inNs)).stdout, '20000\t60000\n');
    assert.equal(rerun.status, 'ok');
  });

  test('only persisted when reload is false; absent removes the line', async () => {
    const d = fresh();
    const file = join(d, 'x.conf');
    const live = (await bash('cat /proc/sys/net/ipv4/tcp_fin_timeout', inNs)).stdout.trim();
    const r = await cycle(() => sysctl({ name: 'net.ipv4.tcp_fin_timeout', value: 17, file, reload: false }), { bashOpts: inNs });
    assert.deepEqual(r.run.plan.changes, [`${file}: add net.ipv4.tcp_fin_timeout = 17`]);
    assert.equal((await bash('cat /proc/sys/net/ipv4/tcp_fin_timeout', inNs)).stdout.trim(), live);
    assert.equal(r.rerun.status, 'ok');
    const a = await cycle(() => sysctl({ name: 'net.ipv4.tcp_fin_timeout', file, state: 'absent' }), { bashOpts: inNs });
    assert.deepEqual(a.run.plan.changes, [`${file}: remove net.ipv4.tcp_fin_timeout`]);
    assert.equal(readFileSync(file, 'utf8'), '');
    assert.equal(a.rerun.status, 'ok');
  });

  test('in one probe batch, the sysctl steps on one file read it once (memo), each its own live value', async () => {
    const d = fresh();
    const file = join(d, '99-wpfarm.conf');
    writeFileSync(file, 'net.ipv4.tcp_fin_timeout = 17\nnet.ipv4.tcp_keepalive_time = 300\n');
    // sha256sum through a wrapper that counts its calls (the file part's one process that always runs)
    const bin = join(d, 'bin');
    mkdirSync(bin);
    const calls = join(d, 'calls');
    writeFileSync(join(bin, 'sha256sum'), `#!/bin/sh\necho x >> ${calls}\nexec /usr/bin/sha256sum "$@"\n`, { mode: 0o755 });
    const ops = [
      sysctl({ name: 'net.ipv4.tcp_fin_timeout', value: 17, file }),
      sysctl({ name: 'net.ipv4.tcp_keepalive_time', value: 300, file }),
    ];
    const ctx = { check: false } as unknown as Parameters<NonNullable<(typeof ops)[0]['probe']>>[0];
    const script = probeScript(ops.map((op, i) => ({ id: i, script: (op.probe!(ctx) as { script: string }).script })));
    const r = await bash(script, { ...inNs, env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    assert.equal(readFileSync(calls, 'utf8'), 'x\n', 'the file read once for both steps');
    const outs = parseProbes(r.stdout);
    const fileSection = (o: string) => o.split('@@live')[0];
    assert.equal(fileSection(outs.get('0')!), fileSection(outs.get('1')!), 'both steps see the same file state');
    assert.match(outs.get('0')!, /@@sha\n[0-9a-f]{64}\n/);
    // each step's own live value, as the namespace has it
    const live = async (k: string) => (await bash(`cat /proc/sys/net/ipv4/${k}`, inNs)).stdout.trim();
    assert.ok(outs.get('0')!.endsWith(`@@live\nok ${await live('tcp_fin_timeout')}\n`), outs.get('0'));
    assert.ok(outs.get('1')!.endsWith(`@@live\nok ${await live('tcp_keepalive_time')}\n`), outs.get('1'));
  });

  test('an unknown key is an error; bad names are rejected', async () => {
    const d = fresh();
    await assert.rejects(
      runOp(sysctl({ name: 'net.ipv4.no_such_key_wpf', value: 1, file: join(d, 'f') }), { bashOpts: inNs }),
      /unknown key/,
    );
    assert.throws(() => sysctl({ name: 'net/../../etc', value: 1 }), /invalid name/);
    assert.throws(() => sysctl({ name: 'a b', value: 1 }), /invalid name/);
    assert.throws(() => sysctl({ name: 'net.x' }), /sysctl\.value: is required when state is "present"/);
  });
});

describe('download', () => {
  const payload = Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 31) % 256));
  const sha = createHash('sha256').update(payload).digest('hex');
  let server: Server;
  let base = '';
  let hits = 0;
  before(async () => {
    server = createServer((req, res) => {
      hits++;
      if (req.url === '/pkg.tar.gz') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(payload);
      } else if (req.url === '/redirect') {
        res.writeHead(302, { location: '/pkg.tar.gz' });
        res.end();
      } else {
        res.writeHead(404);
        res.end('not found');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    tmp.cleanup();
  });

  test('with curl: check downloads nothing, run downloads and verifies, rerun downloads nothing', async () => {
    const d = fresh();
    const dest = join(d, 'pkg.tar.gz');
    const h0 = hits;
    const { check, run, rerun } = await cycle(() => download({ url: `${base}/redirect`, dest, sha256: sha, mode: '0600' }));
    assert.deepEqual(check.plan.changes, [`download (sha256 ${sha.slice(0, 12)}, mode 0600)`]);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.deepEqual(readFileSync(dest), payload);
    assert.equal(statSync(dest).mode & 0o7777, 0o600);
    assert.equal(rerun.status, 'ok');
    assert.equal(hits - h0, 2, 'one download (redirect + file), none in check mode or in the rerun');
    assert.deepEqual(readdirSync(d), ['pkg.tar.gz']);
  });

  test('a sha256 mismatch fails and leaves dest untouched, no temp file left', async () => {
    const d = fresh();
    const dest = join(d, 'pkg.tar.gz');
    writeFileSync(dest, 'old');
    await assert.rejects(
      runOp(download({ url: `${base}/pkg.tar.gz`, dest, sha256: 'a'.repeat(64) })),
      /sha256 mismatch: expected a{64}, got [0-9a-f]{64}/,
    );
    assert.equal(readFileSync(dest, 'utf8'), 'old');
    assert.deepEqual(readdirSync(d), ['pkg.tar.gz']);
    await assert.rejects(runOp(download({ url: `${base}/missing`, dest, sha256: sha })), /exit 22|404/);
    assert.deepEqual(readdirSync(d), ['pkg.tar.gz']);
  });

  test('an existing file with another sha is replaced, keeping its mode', async () => {
    const d = fresh();
    const dest = join(d, 'f');
    writeFileSync(dest, 'old', { mode: 0o640 });
    const { check, run, rerun } = await cycle(() => download({ url: `${base}/pkg.tar.gz`, dest, sha256: sha.toUpperCase() }));
    assert.match(check.plan.changes[0]!, new RegExp(`^replace \\(sha256 [0-9a-f]{12} -> ${sha.slice(0, 12)}\\)$`));
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(statSync(dest).mode & 0o7777, 0o640);
    assert.equal(rerun.status, 'ok');
    const m = await cycle(() => download({ url: `${base}/pkg.tar.gz`, dest, sha256: sha, mode: 0o644 }));
    assert.deepEqual(m.run.plan.changes, ['mode 0640 -> 0644']);
    assert.equal(m.rerun.status, 'ok');
  });

  test('with wget only (no curl on PATH), and file:// URLs with curl', async () => {
    const bin = fresh();
    for (const tool of [
      'bash',
      'mktemp',
      'dirname',
      'wget',
      'sha256sum',
      'cut',
      'chmod',
      'chown',
      'mv',
      'rm',
      'cat',
      'stat',
      'readlink',
      'getent',
    ]) {
      const r = (await bash(`command -v ${tool}`)).stdout.trim();
      symlinkSync(r, join(bin, tool));
    }
    const env = { ...process.env, PATH: bin };
    assert.equal((await bash('command -v curl', { env, nothrow: true })).code, 1, 'curl is hidden');
    const d = fresh();
    const dest = join(d, 'w.bin');
    const { check, run, rerun } = await cycle(() => download({ url: `${base}/pkg.tar.gz`, dest, sha256: sha }), { bashOpts: { env } });
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.deepEqual(readFileSync(dest), payload);
    assert.equal(rerun.status, 'ok');
    const src = join(d, 'local.bin');
    writeFileSync(src, payload);
    const f = await cycle(() => download({ url: `file://${src}`, dest: join(d, 'copy.bin'), sha256: sha }));
    assert.deepEqual(readFileSync(join(d, 'copy.bin')), payload);
    assert.equal(f.rerun.status, 'ok');
  });

  test('neither curl nor wget: an error in a run, a note in check mode', async () => {
    const bin = fresh();
    for (const tool of ['bash', 'stat', 'readlink', 'dirname', 'sha256sum', 'cut'])
      symlinkSync((await bash(`command -v ${tool}`)).stdout.trim(), join(bin, tool));
    const bashOpts = { env: { ...process.env, PATH: bin } };
    const dest = join(fresh(), 'x');
    const check = await runOp(download({ url: `${base}/pkg.tar.gz`, dest, sha256: sha }), { check: true, bashOpts });
    assert.deepEqual(check.plan.changes, [`download (sha256 ${sha.slice(0, 12)}, mode 0644)`]);
    assert.match(
      check.logs.join('\n'),
      /check mode: download .*: neither curl nor wget is installed; assuming an earlier step provides it/,
    );
    await assert.rejects(runOp(download({ url: `${base}/pkg.tar.gz`, dest, sha256: sha }), { bashOpts }), /neither curl nor wget/);
    assert.equal(existsSync(dest), false);
  });

  test('bad input', () => {
    assert.throws(() => download({ url: 'ftp//x', dest: '/x', sha256: sha }), /url must be/);
    assert.throws(() => download({ url: 'http://x/$(id)', dest: '/x', sha256: 'abc' }), /64 hex digits/);
    assert.throws(() => download({ url: 'http://x', dest: 'x', sha256: sha }), /absolute/);
  });
});
