// A command longer than the kernel takes as one argument (MAX_ARG_STRLEN, 128 KiB) still runs (lib/transport.ts
// SCRIPT_ARG_MAX): sshd has the login shell run the command line as `bash -c CMD`, and a longer CMD failed to exec
// without a word (a manager's probe batch of 148 KB came back empty, and every role probed again on its own). On a
// real sshd host: exec and execStream, with and without stdin of their own, exit status and stderr kept.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ConnectionPool, SCRIPT_ARG_MAX } from '../../lib/transport.ts';
import { outlivingOutput } from '../../lib/shell.ts';
import type { HostSpec } from '../../lib/types.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

let lab: SshdLab;
let host: HostSpec;
let pool: ConnectionPool;

before(async () => {
  lab = await startSshdHosts(1, { prefix: 'lc' });
  host = lab.hosts[0]!.spec;
  pool = new ConnectionPool({ knownHosts: lab.knownHosts });
});
after(async () => {
  await pool?.closeAll();
  await lab?.stop();
});

/** a script of about `bytes` bytes: `lines` assignments, then what it prints; its own length is in $n at the end */
function longScript(bytes: number, tail: string): string {
  const line = (i: number) => `v${i}='${'x'.repeat(60)}'; n=$((n + 1))`;
  const lines = ['n=0'];
  for (let i = 0; Buffer.byteLength(lines.join('\n')) < bytes; i++) lines.push(line(i));
  return `${lines.join('\n')}\n${tail}`;
}

describe('commands longer than one exec argument', () => {
  test('exec: a 300 KB script runs whole; its output, stderr and exit status come back; one round trip', async () => {
    const conn = await pool.get(host);
    const before = conn.roundTrips;
    const script = longScript(300 * 1024, 'echo "ran $n"; echo "to stderr" >&2; exit 7');
    assert.ok(Buffer.byteLength(script) > 2 * SCRIPT_ARG_MAX);
    const lines = script.split('\n').length - 2;
    const r = await conn.exec(script, { nothrow: true });
    assert.deepEqual([r.stdout, r.stderr, r.code], [`ran ${lines}\n`, 'to stderr\n', 7]);
    assert.equal(conn.roundTrips - before, 1);
    // the error of a failing one names the command as written (its first line), not how it was sent
    await assert.rejects(conn.exec(longScript(200 * 1024, 'false')), (e: Error) => {
      assert.match(e.message, /: n=0/);
      assert.doesNotMatch(e.message, /head -c/);
      return true;
    });
  });

  test('exec: the stdin given to a long command reaches it after the script, byte for byte', async () => {
    const conn = await pool.get(host);
    const data = Buffer.from(Array.from({ length: 70000 }, (_, i) => (i * 7) % 256));
    const r = await conn.exec(longScript(150 * 1024, 'sha256sum | cut -c1-64; echo "$n"'), { stdin: data });
    const { createHash } = await import('node:crypto');
    assert.equal(r.stdout.split('\n')[0], createHash('sha256').update(data).digest('hex'));
    // and a short command still goes as the command line, with the same stdin
    const s = await conn.exec('sha256sum | cut -c1-64', { stdin: data });
    assert.equal(s.stdout.trim(), createHash('sha256').update(data).digest('hex'));
  });

  test('execStream: a long command with streamed stdin', async () => {
    const conn = await pool.get(host);
    const { Readable } = await import('node:stream');
    const s = conn.execStream!(longScript(140 * 1024, 'wc -c; echo "$n lines"'), {
      stdin: [Buffer.from('abc'), Readable.from([Buffer.from('defg'), Buffer.from('h')])],
    });
    let out = '';
    s.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const done = await s.done;
    assert.equal(done.code, 0, done.stderr);
    assert.match(out, /^8\n\d+ lines\n$/);
  });

  test('sent ahead of stdin, a long command that runs apt or docker still says so on the host (kept on Ctrl-C)', async () => {
    const conn = await pool.get(host);
    const wrap = (c: string) => (conn as unknown as { wrap(c: string, o: object): { command: string; shown: string } }).wrap(c, {});
    const long = longScript(120 * 1024, 'docker info >/dev/null');
    const w = wrap(long);
    assert.equal(w.shown, long);
    // read back by the host's shell, and (a command left to finish on Ctrl-C) its output through relays that outlive
    // the channel (lib/shell.ts outlivingOutput)
    assert.equal(w.command, outlivingOutput(`eval "$(head -c ${Buffer.byteLength(long)})" # runs docker`));
    assert.doesNotMatch(wrap(longScript(120 * 1024, 'echo hi')).command, /#/);
    assert.equal(wrap('echo short').command, 'echo short');
  });
});
