// The connect timeout counts from the start of a host's own handshake: a connection queued behind others (the
// pool's handshake bound) does not time out while it waits, and a handshake that itself outlasts the timeout does.
// A real SSH server in process (ssh2's Server) on loopback, whose login takes LOGIN_MS.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import ssh2 from 'ssh2';
import { ConnectionPool, sshOptions } from '../../lib/transport.ts';
import type { HostSpec } from '../../lib/types.ts';

const LOGIN_MS = 400;
let server: ssh2.Server;
let port = 0;
let dir = '';
let knownHosts = '';
let clientKey = '';
let hostKey: ReturnType<typeof ssh2.utils.generateKeyPairSync>;
/** connections accepted by the server and not yet logged in: the handshakes in flight, as the server sees them */
let pending = 0;
let maxPending = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wpfarm-ct-'));
  hostKey = ssh2.utils.generateKeyPairSync('ed25519');
  const userKey = ssh2.utils.generateKeyPairSync('ed25519');
  clientKey = join(dir, 'id_ed25519');
  writeFileSync(clientKey, userKey.private, { mode: 0o600 });
  server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    pending++;
    maxPending = Math.max(maxPending, pending);
    let counted = true;
    const done = () => {
      if (counted) pending--;
      counted = false;
    };
    client.once('ready', done);
    client.once('close', done);
    client.on('authentication', (ctx) => {
      if (ctx.method !== 'publickey') return ctx.reject(['publickey']);
      setTimeout(() => ctx.accept(), LOGIN_MS); // a slow login: the handshake holds its turn this long
    });
    client.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostKey.public}\n`);
});
after(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

const host = (name: string): HostSpec => ({ name, address: '127.0.0.1', port, user: 'root', key: clientKey, groups: [], vars: {} });

test('queued connections do not time out: 3 handshakes one at a time outlast the timeout, each within it', async () => {
  const timeoutMs = 3 * LOGIN_MS; // one login fits; three in a row (what the third waits + takes) do not
  const pool = new ConnectionPool({ knownHosts, maxHandshakes: 1, connectTimeoutMs: timeoutMs });
  maxPending = 0;
  const t = performance.now();
  try {
    const conns = await Promise.all(['a', 'b', 'c'].map((n) => pool.get(host(n))));
    const wall = performance.now() - t;
    assert.equal(conns.length, 3);
    assert.equal(maxPending, 1, 'one handshake at a time');
    assert.deepEqual(
      conns.map((c) => c.host.name),
      ['a', 'b', 'c'],
      'all three logged in',
    );
    assert.ok(wall >= 3 * LOGIN_MS, `the three logins ran one after another (${Math.round(wall)} ms)`);
    assert.ok(wall > timeoutMs, `the last one waited + connected longer than the timeout (${Math.round(wall)} > ${timeoutMs} ms)`);
  } finally {
    await pool.closeAll();
  }
});

test('a handshake that itself outlasts the timeout fails, naming the host and the timeout', async () => {
  const pool = new ConnectionPool({ knownHosts, maxHandshakes: 1, connectTimeoutMs: LOGIN_MS / 2 });
  try {
    await assert.rejects(pool.get(host('slow')), (e: Error) => {
      assert.match(e.message, /slow.*timed out: no answer for 200 ms \(key exchange and login\)/s);
      return true;
    });
  } finally {
    await pool.closeAll();
  }
});

test('the handshake bound holds: with 2 in flight, 4 logins take two rounds', async () => {
  const pool = new ConnectionPool({ knownHosts, maxHandshakes: 2, connectTimeoutMs: 10_000 });
  maxPending = 0;
  const t = performance.now();
  try {
    await Promise.all(['a', 'b', 'c', 'd'].map((n) => pool.get(host(n))));
    const wall = performance.now() - t;
    assert.equal(maxPending, 2, `the server saw 2 handshakes at a time, never more (saw ${maxPending})`);
    assert.deepEqual(pool.handshakes, { inFlight: 0, peak: 2, started: 4 }, "the pool's own count agrees");
    assert.ok(wall >= 2 * LOGIN_MS, `at least two rounds of ${LOGIN_MS} ms (${Math.round(wall)} ms)`);
  } finally {
    await pool.closeAll();
  }
});

/** A TCP relay to the server on `to` that holds each chunk the server sends for `delayMs` (in order): a slow host. */
async function slowRelay(to: number, delayMs: number): Promise<{ port: number; close(): void }> {
  const socks = new Set<net.Socket>();
  const relay = net.createServer((c) => {
    const s = net.connect({ host: '127.0.0.1', port: to });
    socks.add(c).add(s);
    c.pipe(s);
    let last = Promise.resolve();
    s.on('data', (d) => {
      last = last.then(() => new Promise<void>((r) => setTimeout(r, delayMs))).then(() => void (c.destroyed || c.write(d)));
    });
    const end = () => {
      c.destroy();
      s.destroy();
    };
    c.on('error', end).on('close', end);
    s.on('error', end).on('close', () => void last.then(end));
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  return {
    port: (relay.address() as AddressInfo).port,
    close: () => {
      for (const x of socks) x.destroy();
      relay.close();
    },
  };
}

test('a slow host that keeps answering is not timed out, though its whole handshake outlasts the timeout', async () => {
  const DELAY = 250; // every packet of the server held this long: the longest silence is the login (400) + 250 ms
  const timeoutMs = 900;
  const relay = await slowRelay(port, DELAY);
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostKey.public}\n[127.0.0.1]:${relay.port} ${hostKey.public}\n`);
  const pool = new ConnectionPool({ knownHosts, maxHandshakes: 1, connectTimeoutMs: timeoutMs });
  const t = performance.now();
  try {
    const c = await pool.get({ ...host('slow-but-alive'), port: relay.port });
    const wall = performance.now() - t;
    assert.equal(c.host.name, 'slow-but-alive', 'logged in');
    assert.ok(wall > timeoutMs, `the handshake took ${Math.round(wall)} ms, longer than the timeout (${timeoutMs} ms), and got in`);
  } finally {
    await pool.closeAll();
    relay.close();
  }
});

test('a host that accepts the TCP connection and never speaks times out, naming the phase', async () => {
  const silent = net.createServer(() => undefined);
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const pool = new ConnectionPool({ knownHosts, maxHandshakes: 1, connectTimeoutMs: 300 });
  try {
    await assert.rejects(pool.get({ ...host('mute'), port: (silent.address() as AddressInfo).port }), (e: Error) => {
      assert.match(e.message, /mute.*timed out: no answer for 300 ms \(waiting for the server's banner\)/s);
      return true;
    });
  } finally {
    await pool.closeAll();
    silent.close();
  }
});

test('handshakes in flight: --handshakes wins over settings.handshakes; bad values are bad input', async () => {
  const { parseCli } = await import('../../lib/cli.ts');
  const { loadInventory } = await import('../../lib/inventory.ts');
  assert.equal(parseCli(['--handshakes', '4']).flags.handshakes, 4);
  for (const bad of ['0', 'x']) assert.throws(() => parseCli(['--handshakes', bad]), /--handshakes must be an integer/);
  const inv = join(dir, 'inv-hs.yml');
  writeFileSync(inv, 'settings:\n  handshakes: 6\n  connect_timeout: 20\nhosts:\n  a: { address: 127.0.0.1 }\n');
  const settings = loadInventory(inv).settings;
  assert.equal(settings.handshakes, 6);
  const o = sshOptions(settings, parseCli([]).flags);
  assert.equal(o.maxHandshakes, 6);
  assert.equal(o.connectTimeoutMs, 20_000);
  const f = sshOptions(settings, parseCli(['--handshakes', '3', '--connect-timeout', '7']).flags);
  assert.equal(f.maxHandshakes, 3);
  assert.equal(f.connectTimeoutMs, 7_000);
  writeFileSync(inv, 'settings:\n  handshakes: 0\nhosts:\n  a: { address: 127.0.0.1 }\n');
  assert.throws(() => loadInventory(inv), /settings\.handshakes/);
});

test('the connect timeout is set by --connect-timeout or the inventory (seconds); bad values are bad input', async () => {
  const { parseCli } = await import('../../lib/cli.ts');
  const { loadInventory } = await import('../../lib/inventory.ts');
  assert.equal(parseCli(['--connect-timeout', '30']).flags.connectTimeout, 30);
  assert.equal(parseCli([]).flags.connectTimeout, undefined);
  for (const bad of ['0', '2.5', 'x']) assert.throws(() => parseCli(['--connect-timeout', bad]), /--connect-timeout must be an integer/);
  const inv = join(dir, 'inv.yml');
  writeFileSync(inv, 'settings:\n  connect_timeout: 45\nhosts:\n  a: { address: 127.0.0.1 }\n');
  assert.equal(loadInventory(inv).settings.connectTimeoutS, 45);
  writeFileSync(inv, 'settings:\n  connect_timeout: 0\nhosts:\n  a: { address: 127.0.0.1 }\n');
  assert.throws(() => loadInventory(inv), /settings\.connect_timeout/);
});
