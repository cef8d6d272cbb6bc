// A session channel the server refuses (OpenSSH's MaxSessions: "open failed", logged as "no more sessions") ran
// nothing: the command is retried after a pause, and only a server that keeps refusing fails it. A real SSH server
// in process (ssh2's Server) on loopback that allows MAX_SESSIONS sessions at a time, as sshd does per connection.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import ssh2 from 'ssh2';
import { ConnectionPool } from '../../lib/transport.ts';
import type { HostSpec } from '../../lib/types.ts';

const MAX_SESSIONS = 2;
const COMMAND_MS = 150;
let server: ssh2.Server;
let port = 0;
let dir = '';
let knownHosts = '';
let clientKey = '';
let open = 0;
let peak = 0;
let refused = 0;
let ran = 0;
/** refuse every session (a server that never frees one) */
let refuseAll = false;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wpfarm-cr-'));
  const hostKey = ssh2.utils.generateKeyPairSync('ed25519');
  const userKey = ssh2.utils.generateKeyPairSync('ed25519');
  clientKey = join(dir, 'id_ed25519');
  writeFileSync(clientKey, userKey.private, { mode: 0o600 });
  server = new ssh2.Server({ hostKeys: [hostKey.private] }, (client) => {
    client.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
    client.on('session', (accept, reject) => {
      if (refuseAll || open >= MAX_SESSIONS) {
        refused++;
        return reject();
      }
      open++;
      peak = Math.max(peak, open);
      const session = accept();
      session.on('close', () => open--);
      session.on('exec', (acceptExec, _rejectExec, info) => {
        const ch = acceptExec();
        ran++;
        setTimeout(() => {
          ch.write(`ran ${info.command}\n`);
          ch.exit(0);
          ch.end();
        }, COMMAND_MS);
      });
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

const host: HostSpec = { name: 'h', address: '127.0.0.1', port, user: 'root', key: '', groups: [], vars: {} };

test(`8 commands at once on a server that allows ${MAX_SESSIONS} sessions: the refused ones wait and run, each once`, async () => {
  const pool = new ConnectionPool({ knownHosts, maxChannels: 8 });
  refused = 0;
  ran = 0;
  peak = 0;
  try {
    const conn = await pool.get({ ...host, port, key: clientKey });
    const out = await Promise.all(Array.from({ length: 8 }, (_, i) => conn.exec(`echo ${i}`)));
    assert.deepEqual(
      out.map((r) => [r.code, r.stdout]),
      Array.from({ length: 8 }, (_, i) => [0, `ran echo ${i}\n`]),
      'every command ran and answered',
    );
    assert.ok(refused > 0, `the server refused channels (${refused}): the retry path was taken`);
    assert.equal(ran, 8, 'each command ran exactly once');
    assert.ok(peak <= MAX_SESSIONS, `never more than ${MAX_SESSIONS} sessions at once (${peak})`);
  } finally {
    await pool.closeAll();
  }
});

test('a server that keeps refusing: the command fails with the refusal after the retries, having run nowhere', async () => {
  const pool = new ConnectionPool({ knownHosts, maxChannels: 8 });
  refuseAll = true;
  refused = 0;
  ran = 0;
  const t = performance.now();
  try {
    const conn = await pool.get({ ...host, port, key: clientKey });
    await assert.rejects(conn.exec('echo never'), /Channel open failure/);
    assert.equal(ran, 0);
    assert.equal(refused, 10, 'the first try and 9 retries');
    assert.ok(performance.now() - t > 10_000, 'the retries paused (about 11 s in all)');
  } finally {
    refuseAll = false;
    await pool.closeAll();
  }
});
