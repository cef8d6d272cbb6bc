// The lab's browser test runs Chromium in a network namespace of its own (test/harness/browser.ts). The reason,
// proved here on this machine: while a bridge and a veth come and go on the host (what each sshd lab of the engine
// tier does, beside the lab tier in CI), Chromium fails the https loads whose connect or TLS handshake is in flight
// with net::ERR_NETWORK_CHANGED; the same loads from the isolated browser all succeed. The server (TLS on a bridge
// address this file creates) holds each connection 1 s before its handshake, so that every load has one in flight.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';
import { launchIsolatedBrowser } from '../harness/browser.ts';

const tag = (process.pid % 10000).toString();
const BR = `wpfbt${tag}`; // the server's bridge
const CHURN = `wpfbc${tag}`; // the bridge that comes and goes
const NS = `wpfbn${tag}`;
const ADDRESS = `10.79.${process.pid % 200}.1`;
const PORT = 8443;
const LOADS = 6;
let dir = '';
let server: net.Server | undefined;
let churn: ChildProcess | undefined;

const sh = (script: string) => spawnSync('bash', ['-c', script], { encoding: 'utf8' });

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-browser-netns-'));
  const r = sh(
    `set -e; cd ${dir}; openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 1 -subj /CN=site.test 2>/dev/null; ` +
      `ip link add ${BR} type bridge; ip addr add ${ADDRESS}/24 dev ${BR}; ip link set ${BR} up; ip netns add ${NS}`,
  );
  assert.equal(r.status, 0, r.stderr);
  const tls = https.createServer(
    { key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) },
    (_q, res) => res.end('<html><title>ok</title></html>'),
  );
  server = net.createServer({ pauseOnConnect: true }, (s) => {
    setTimeout(() => {
      tls.emit('connection', s);
      s.resume();
    }, 1000);
  });
  await new Promise<void>((res) => server!.listen(PORT, ADDRESS, res));
  churn = spawn(
    'bash',
    [
      '-c',
      `i=0; while true; do i=$((i+1)); ip link add ${CHURN} type bridge; ip addr add 10.98.$((i%200)).1/24 dev ${CHURN}; ` +
        `ip link set ${CHURN} up; ip link add ${CHURN}v type veth peer name eth0 netns ${NS}; ip link set ${CHURN}v master ${CHURN} up; ` +
        `ip -n ${NS} link set eth0 up; sleep 0.5; ip link del ${CHURN}v; ip link del ${CHURN}; sleep 0.2; done`,
    ],
    { stdio: 'ignore' },
  );
});

after(() => {
  churn?.kill();
  server?.close();
  sh(`ip link del ${CHURN}v; ip link del ${CHURN}; ip link del ${BR}; ip netns del ${NS}`);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function loads(browser: Browser): Promise<string[]> {
  const errors: string[] = [];
  for (let k = 0; k < LOADS; k++) {
    const ctx = await browser.createBrowserContext(); // a new connection each time
    const page = await ctx.newPage();
    try {
      await page.goto(`https://site.test:${PORT}/?${k}`, { timeout: 20_000 });
      assert.equal(await page.title(), 'ok');
    } catch (e) {
      errors.push(e instanceof Error ? e.message : String(e));
    }
    await ctx.close();
  }
  return errors;
}

const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--ignore-certificate-errors'];

test('beside a bridge coming and going, Chromium on the host fails https loads with ERR_NETWORK_CHANGED', {
  timeout: 120_000,
}, async (t) => {
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [...ARGS, `--host-resolver-rules=MAP site.test ${ADDRESS}, MAP * ~NOTFOUND`],
  });
  try {
    const errors = await loads(browser);
    t.diagnostic(
      `${LOADS - errors.length} of ${LOADS} loads succeeded: ${[...new Set(errors.map((e) => e.replace(/ at .*/, '')))].join(', ')}`,
    );
    assert.ok(errors.length > 0, 'the churn disturbs a browser on the host (else this file proves nothing)');
    assert.ok(
      errors.every((e) => e.includes('net::ERR_NETWORK_CHANGED')),
      errors.join('\n'),
    );
  } finally {
    await browser.close();
  }
});

test('the same loads from the isolated browser (its own namespace, a relay to the server) all succeed', { timeout: 120_000 }, async (t) => {
  const isolated = await launchIsolatedBrowser(
    { address: ADDRESS, port: PORT },
    { args: [...ARGS, `--host-resolver-rules=MAP site.test 127.0.0.1, MAP * ~NOTFOUND`] },
  );
  try {
    const errors = await loads(isolated.browser);
    t.diagnostic(`${LOADS - errors.length} of ${LOADS} loads succeeded`);
    assert.deepEqual(errors, []);
  } finally {
    await isolated.close();
  }
  assert.ok(!sh('ip netns list').stdout.includes(isolated.netns), 'its namespace is gone after close()');
});
