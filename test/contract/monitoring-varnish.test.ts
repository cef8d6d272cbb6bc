// Contract: the Varnish collector (templates/monitoring/wpfarm-varnish-stats, run on every Swarm node by the monitoring
// role) against Debian's real varnishd 7.1: a varnishd on loopback with two nginx-like backends (one answers, one
// port is closed), a few requests (1 miss, then hits), then the collector through a stand-in of `docker` (`ps` lists
// the site's varnish task and a task of another service; `exec` runs the command against this varnishd). Its
// wpfarm_varnish.prom passes promtool's exposition linter and holds the numbers varnishd counted; a task whose
// `docker exec` fails is reported as up 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { templatePath } from '../../lib/ops/template.ts';

const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-varnish-stats-'));
chmodSync(work, 0o755); // varnishd's worker runs as Debian's vcache user: it must reach its working directory
const COLLECTOR = templatePath('monitoring', 'wpfarm-varnish-stats');
let backend: Server;
let varnishd: ChildProcess | undefined;
let http = 0;
let admin = 0;
let varnishLog = '';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

before(async () => {
  backend = createServer((_q, r) => {
    r.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'max-age=300' });
    r.end('hello from nginx0\n');
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  const up = (backend.address() as AddressInfo).port;
  const closed = await freePort();
  http = await freePort();
  admin = await freePort();
  // the shape of the site VCL's backends (wpfarm-varnish-backends): nginxN probed, a round-robin director "nginx"
  writeFileSync(
    path.join(work, 'site.vcl'),
    `vcl 4.1;
import directors;
probe nginx_probe { .url = "/"; .interval = 1s; .timeout = 1s; .window = 3; .threshold = 2; }
backend nginx0 { .host = "127.0.0.1"; .port = "${up}"; .probe = nginx_probe; }
backend nginx1 { .host = "127.0.0.1"; .port = "${closed}"; .probe = nginx_probe; }
sub vcl_init { new nginx = directors.round_robin(); nginx.add_backend(nginx0); nginx.add_backend(nginx1); }
sub vcl_recv { set req.backend_hint = nginx.backend(); }
`,
  );
  writeFileSync(path.join(work, 'secret'), 'contract-test-secret\n', { mode: 0o600 });
  varnishd = spawn(
    'varnishd',
    [
      '-F',
      '-n',
      path.join(work, 'n'),
      '-a',
      `127.0.0.1:${http}`,
      '-T',
      `127.0.0.1:${admin}`,
      '-S',
      path.join(work, 'secret'),
      '-f',
      path.join(work, 'site.vcl'),
      '-s',
      'malloc,16m',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  varnishd.stderr?.on('data', (d: Buffer) => {
    varnishLog += d.toString();
  });
  // the stand-in of docker: the collector's fixed management address and secret are mapped to this varnishd's
  writeFileSync(
    path.join(work, 'docker'),
    `#!/bin/sh
case "$1" in
  ps) echo "c0ffee01 wp-demo_varnish wp-demo_varnish.1.x1y2"
      echo "c0ffee02 wp-demo_nginx wp-demo_nginx.1.a1b2"
      echo "c0ffee03 wp-broken_varnish wp-broken_varnish.1.z9" ;;
  exec) shift; id=$1; shift; cmd=$1; shift
      [ "$id" = c0ffee01 ] || { echo "Error: No such container: $id" >&2; exit 1; }
      for a in "$@"; do
        case "$a" in 127.0.0.1:6082) a=127.0.0.1:${admin} ;; /etc/varnish/secret) a=${path.join(work, 'secret')} ;; esac
        set -- "$@" "$a"; shift
      done
      [ "$cmd" = varnishstat ] && exec varnishstat -n ${path.join(work, 'n')} "$@"
      exec "$cmd" "$@" ;;
  *) exit 2 ;;
esac
`,
    { mode: 0o755 },
  );
});

after(async () => {
  varnishd?.kill('SIGTERM');
  await new Promise((r) => backend.close(r));
  rmSync(work, { recursive: true, force: true });
});

const adm = (...args: string[]) =>
  spawnSync('varnishadm', ['-T', `127.0.0.1:${admin}`, '-S', path.join(work, 'secret'), ...args], { encoding: 'utf8' });

test('wpfarm-varnish-stats: hits, misses, requests and backend health of a real varnishd, promtool-clean', async () => {
  // varnishd up, the probes have decided (nginx0 healthy, nginx1 sick)
  const end = Date.now() + 30_000;
  for (;;) {
    const l = adm('backend.list').stdout;
    if (/nginx0\s+\S+\s+\S+\s+healthy/.test(l) && /nginx1\s+\S+\s+\S+\s+sick/.test(l)) break;
    assert.ok(Date.now() < end, `varnishd's probes did not settle: ${l}\n${varnishLog}`);
    await sleep(300);
  }
  for (let i = 0; i < 5; i++) {
    const r = await fetch(`http://127.0.0.1:${http}/page`);
    assert.equal(r.status, 200);
    await r.text();
  }
  // varnishd publishes its worker threads' counters to the shared statistics a moment after a request ends:
  // wait until varnish itself shows all five, then check that the collector reports exactly what varnish has
  const counted = () => {
    const j = JSON.parse(spawnSync('varnishstat', ['-n', path.join(work, 'n'), '-1', '-j'], { encoding: 'utf8' }).stdout || '{}');
    const c = (j.counters ?? j) as Record<string, { value?: number }>;
    return (c['MAIN.cache_hit']?.value ?? 0) + (c['MAIN.cache_miss']?.value ?? 0);
  };
  for (const stop = Date.now() + 10_000; counted() < 5; await sleep(100)) {
    assert.ok(Date.now() < stop, `varnishstat shows ${counted()} of the 5 lookups after 10 s`);
  }
  const textfile = path.join(work, 'textfile');
  const r = spawnSync(COLLECTOR, [], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', WPFARM_DOCKER: path.join(work, 'docker'), TEXTFILE_DIR: textfile },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /wp-broken_varnish\.1\.z9: .*No such container/, 'the failing task is said on stderr');
  assert.deepEqual(readdirSync(textfile), ['wpfarm_varnish.prom'], 'no temporary file left');
  const text = readFileSync(path.join(textfile, 'wpfarm_varnish.prom'), 'utf8');
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}\n${text}`);
  const l = 'stack="wp-demo",task="wp-demo_varnish.1.x1y2"';
  const value = (series: string) => {
    const m = new RegExp(`^${series.replace(/[{}()[\]."+]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
    assert.ok(m, `${series} in\n${text}`);
    return Number(m[1]);
  };
  assert.equal(value(`wpfarm_varnish_up{${l}}`), 1);
  assert.equal(value(`wpfarm_varnish_cache_miss_total{${l}}`), 1, 'the first request missed');
  assert.equal(value(`wpfarm_varnish_cache_hit_total{${l}}`), 4, 'the four after it hit');
  assert.ok(value(`wpfarm_varnish_client_requests_total{${l}}`) >= 5);
  assert.equal(value(`wpfarm_varnish_backend_healthy{${l},backend="nginx0"}`), 1);
  assert.equal(value(`wpfarm_varnish_backend_healthy{${l},backend="nginx1"}`), 0);
  assert.doesNotMatch(text, /backend="nginx"}/, 'the director is not a backend');
  assert.equal(value('wpfarm_varnish_up{stack="wp-broken",task="wp-broken_varnish.1.z9"}'), 0);
  assert.doesNotMatch(text, /wp-demo_nginx/, 'only varnish tasks');
  assert.ok(Math.abs(value('wpfarm_varnish_stats_timestamp_seconds') - Date.now() / 1000) < 60);
});
