// Headless Chromium in a network namespace of its own, reaching one target (an address and port) through a relay.
//
// Why: Chromium fails the connects and TLS handshakes it has in flight with net::ERR_NETWORK_CHANGED whenever an
// address on any interface of its network namespace comes or goes, loopback targets included. The engine tests do
// that all the time (each sshd lab adds a bridge with an address and a veth per host), and CI runs them beside the
// lab tier: stop 25's CI failed on it (the wp-admin login's redirect, `net::ERR_NETWORK_CHANGED`). Measured here
// with a bridge and a veth brought up and down every 0.7 s: 12 of 12 https loads failed, to a bridge address and to
// 127.0.0.61 alike; in a namespace of its own, none (test/engine/browser-netns.test.ts keeps that proof).
//
// The path: Chromium → 127.0.0.1:<port> in its namespace → a relay process in that namespace → a unix socket (the
// file system is not namespaced) → this process → the target. The target sees this machine's connection, as it
// saw Chromium's own before. DevTools talks over pipes (`pipe: true`), which `ip netns exec` hands down.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import puppeteer, { type Browser } from 'puppeteer-core';

const PREFIX = 'wpfbrowser-';

export interface IsolatedBrowser {
  browser: Browser;
  /** the address:port Chromium must be pointed at (e.g. by --host-resolver-rules) to reach the target */
  local: { address: string; port: number };
  /** the namespace's name (for a test that wants to change its network) */
  netns: string;
  close(): Promise<void>;
}

function ip(args: string[], nothrow = false): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0 && !nothrow) throw new Error(`ip ${args.join(' ')}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Namespaces left by a process that is gone (a killed test run). */
function removeStale(): void {
  for (const line of ip(['netns', 'list'], true).split('\n')) {
    // the whole name (prefix, pid, suffix): `ip netns list` may add " (id: N)" after it
    const m = new RegExp(`^(${PREFIX}(\\d+)-\\S+)`).exec(line);
    if (m && !existsSync(`/proc/${m[2]}`)) ip(['netns', 'del', m[1]!], true);
  }
}

// Runs in the namespace: every connection to 127.0.0.1:PORT is piped to the unix socket SOCK.
const INNER_RELAY = `
const net = require('node:net');
const [port, sock] = process.argv.slice(1);
net.createServer((c) => {
  const u = net.connect(sock);
  c.pipe(u).pipe(c);
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
}).listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

/** Launch Chromium (Debian's) alone in a new network namespace whose only way out is to `target`. */
export async function launchIsolatedBrowser(
  target: { address: string; port: number },
  opts: { args?: string[]; executablePath?: string } = {},
): Promise<IsolatedBrowser> {
  removeStale();
  const netns = `${PREFIX}${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-browser-'));
  const sock = path.join(dir, 'relay.sock');
  const local = { address: '127.0.0.1', port: target.port };
  let outer: net.Server | undefined;
  let inner: ChildProcess | undefined;
  const cleanup = () => {
    inner?.kill();
    outer?.close();
    ip(['netns', 'del', netns], true);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    ip(['netns', 'add', netns]);
    ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    outer = net.createServer((c) => {
      const t = net.connect(target.port, target.address);
      c.pipe(t).pipe(c);
      c.on('error', () => t.destroy());
      t.on('error', () => c.destroy());
    });
    await new Promise<void>((res, rej) => outer!.once('error', rej).listen(sock, res));
    const relay = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', INNER_RELAY, String(local.port), sock], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    inner = relay;
    await new Promise<void>((res, rej) => {
      let err = '';
      relay.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      relay.stdout!.once('data', () => res());
      relay.once('exit', (code) => rej(new Error(`the relay in ${netns} exited (${code}): ${err.trim()}`)));
    });
    const wrapper = path.join(dir, 'chromium');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${netns} ${opts.executablePath ?? '/usr/bin/chromium'} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const browser = await puppeteer.launch({ executablePath: wrapper, headless: true, pipe: true, args: opts.args ?? [] });
    return {
      browser,
      local,
      netns,
      close: async () => {
        await browser.close().catch(() => {});
        cleanup();
      },
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}
