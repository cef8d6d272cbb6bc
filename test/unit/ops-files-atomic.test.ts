// The one atomic-write script (lib/shell.ts atomicWriteScript), used by the file operations' apply and by
// Connection.put (lib/transport.ts): run for real with bash in a temp dir. The same script over SSH is in
// test/engine/ops-files.test.ts.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import { atomicWriteScript, tempBeside, type AtomicWrite } from '../../lib/shell.ts';
import { bash, ensureTools, tempDir } from './ops-files.harness.ts';

ensureTools(['getent']);
const tmp = tempDir();
after(() => tmp.cleanup());
const fresh = tmp.fresh;
const modeOf = (p: string): string => (statSync(p).mode & 0o7777).toString(8).padStart(4, '0');
const sha = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');
const NOBODY = Number((await bash('id -u nobody')).stdout.trim());
const NOGROUP = Number((await bash('getent group nogroup | cut -d: -f3')).stdout.trim());

/** write `content` to `path` with the script; `sent` is what actually arrives on stdin (default: all of it) */
async function write(path: string, content: string, o: Omit<AtomicWrite, 'sha'> = {}, sent = content) {
  return bash(atomicWriteScript(path, { ...o, sha: sha(content) }), { stdin: sent, nothrow: true });
}
const leftovers = (d: string): string[] => readdirSync(d).filter((f) => f.startsWith('.wpfarm.'));

describe('atomicWriteScript (file operations and Connection.put)', () => {
  test('exists unknown (put): a new file gets the default mode, an existing one keeps its mode and owner', async () => {
    const d = fresh();
    const p = join(d, 'new.conf');
    assert.equal((await write(p, 'a=1\n')).code, 0);
    assert.equal(readFileSync(p, 'utf8'), 'a=1\n');
    assert.equal(modeOf(p), '0644');
    assert.equal((await write(join(d, 'new2'), 'x', { defaultMode: 0o600 })).code, 0);
    assert.equal(modeOf(join(d, 'new2')), '0600');

    chmodSync(p, 0o640);
    chownSync(p, NOBODY, NOGROUP);
    assert.equal((await write(p, 'a=2\n')).code, 0);
    assert.equal(readFileSync(p, 'utf8'), 'a=2\n');
    assert.equal(modeOf(p), '0640');
    assert.deepEqual([statSync(p).uid, statSync(p).gid], [NOBODY, NOGROUP]);
    assert.deepEqual(leftovers(d), []);
  });

  test('asked attributes win; an owner alone keeps the existing group', async () => {
    const d = fresh();
    const p = join(d, 'f');
    writeFileSync(p, 'old');
    chmodSync(p, 0o644);
    chownSync(p, 0, NOGROUP);
    assert.equal((await write(p, 'new', { mode: 0o600, owner: 'nobody' })).code, 0);
    assert.equal(modeOf(p), '0600');
    assert.deepEqual([statSync(p).uid, statSync(p).gid], [NOBODY, NOGROUP]);
    assert.equal((await write(p, 'newer', { mode: '0640', group: 'root', exists: true })).code, 0);
    assert.equal(modeOf(p), '0640');
    assert.deepEqual([statSync(p).uid, statSync(p).gid], [NOBODY, 0]);
  });

  test('a transfer cut short never lands: the target is left as it was, no temp file remains', async () => {
    const d = fresh();
    const p = join(d, 'f');
    writeFileSync(p, 'keep me\n');
    const r = await write(p, 'the whole new content\n', {}, 'the whole');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /transfer to .*\/f incomplete: left unchanged/);
    assert.equal(readFileSync(p, 'utf8'), 'keep me\n');
    assert.deepEqual(leftovers(d), []);
    assert.throws(() => atomicWriteScript(p, { sha: 'not-a-sha' }), /sha must be sha256 hex/);
  });

  test('stopped mid-transfer (Ctrl-C: TERM to its process group, stdin still open): temp file removed, nothing lands', async () => {
    const d = fresh();
    const p = join(d, 'big');
    // as sshd runs a command: its own session (process group), stdin a pipe that stays open
    const child = spawn('bash', ['-c', atomicWriteScript(p, { sha: sha('x'.repeat(1000)) })], {
      detached: true,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    const exited = new Promise((r) => child.on('exit', r));
    child.stdin.write('x'.repeat(500));
    for (let i = 0; i < 200 && !leftovers(d).some((f) => statSync(join(d, f)).size === 500); i++) await sleep(10);
    assert.equal(leftovers(d).length, 1, 'the transfer is under way (a temp file with the bytes sent so far)');
    process.kill(-child.pid!, 'SIGTERM');
    await exited; // sshd's bash -c dies of the TERM; the script's subshell traps it and cleans up
    child.stdin.destroy();
    for (let i = 0; i < 100 && leftovers(d).length; i++) await sleep(10);
    assert.deepEqual(leftovers(d), [], 'the temp file is removed');
    assert.equal(existsSync(p), false, 'nothing lands at the final path');
  });

  test('stopped by two TERMs to its process group in a row (Ctrl-C, then the quit): the temp file is still removed', async () => {
    // the second TERM used to kill the EXIT trap's rm before it unlinked the file (5 in 100 with the TERMs 2 ms apart)
    const d = fresh();
    const p = join(d, 'big');
    const script = atomicWriteScript(p, { sha: sha('x') });
    let left = 0;
    for (let i = 0; i < 60; i++) {
      const child = spawn('bash', ['-c', script], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
      const exited = new Promise((r) => child.on('exit', r));
      child.stdin.on('error', () => undefined);
      child.stdin.write('x'.repeat(4096));
      for (let k = 0; k < 200 && !leftovers(d).length; k++) await sleep(2);
      process.kill(-child.pid!, 'SIGTERM');
      await sleep(i % 4); // 0-3 ms: the second one lands anywhere in the first one's cleanup
      try {
        process.kill(-child.pid!, 'SIGTERM');
      } catch {
        /* the group is gone already */
      }
      await exited;
      child.stdin.destroy();
      for (let k = 0; k < 50 && leftovers(d).length; k++) await sleep(2);
      left += leftovers(d).length;
      await bash(`rm -f -- ${d}/.wpfarm.*`);
    }
    assert.equal(left, 0, 'no temp file left in 60 double stops');
    assert.equal(existsSync(p), false);
  });

  test('stopped after its channel is closed (its output gone, then the TERM): the temp file is still removed', async () => {
    // Ctrl-C: TERM to the group, then the channel closed, and sshd closes the command's stdout and stderr. On a busy
    // host the script's shell woke up only after that: its first write (bash's "Terminated" for the cat killed under
    // it) hit the closed pipe and SIGPIPE killed it before its traps ran, the temp file stayed (CI-like run 15; the
    // fast CLI's docker-in-flight engine test, 1 in 15 under load). Here the output is closed before the TERM.
    const d = fresh();
    const p = join(d, 'big');
    const child = spawn('bash', ['-c', atomicWriteScript(p, { sha: sha('x'.repeat(1000)) })], {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise((r) => child.on('exit', r));
    child.stdin.on('error', () => undefined);
    child.stdin.write('x'.repeat(500));
    for (let i = 0; i < 200 && !leftovers(d).some((f) => statSync(join(d, f)).size === 500); i++) await sleep(10);
    assert.equal(leftovers(d).length, 1, 'the transfer is under way (a temp file with the bytes sent so far)');
    // the channel closed: nobody reads the command's output any more
    child.stdout.destroy();
    child.stderr.destroy();
    process.kill(-child.pid!, 'SIGTERM');
    await exited;
    child.stdin.destroy();
    for (let i = 0; i < 100 && leftovers(d).length; i++) await sleep(10);
    assert.deepEqual(leftovers(d), [], 'the temp file is removed');
    assert.equal(existsSync(p), false, 'nothing lands at the final path');
  });

  test('validation failure leaves the target; a path with shell metacharacters is one quoted word', async () => {
    const d = fresh();
    const p = join(d, "it's $(touch pwned) `x` a;b");
    writeFileSync(p, 'valid: yes\n');
    const bad = await write(p, 'garbage\n', { validate: "grep -q '^valid:' %s", exists: true });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /validation failed \(grep -q '\^valid:' %s\)/);
    assert.equal(readFileSync(p, 'utf8'), 'valid: yes\n');
    assert.equal((await write(p, 'valid: still\n', { validate: "grep -q '^valid:' %s", exists: true })).code, 0);
    assert.equal(readFileSync(p, 'utf8'), 'valid: still\n');
    assert.equal(existsSync(join(d, 'pwned')), false);
    assert.equal(existsSync('pwned'), false);
    assert.deepEqual(leftovers(d), []);
  });

  test('a missing directory fails without creating anything', async () => {
    const d = fresh();
    const r = await write(join(d, 'no/such/f'), 'x');
    assert.notEqual(r.code, 0);
    assert.deepEqual(readdirSync(d), []);
  });
});

test('the traps are set, and the name is in $t, before the temp file is made: a signal at any point removes it', () => {
  const s = atomicWriteScript('/etc/x.conf', { sha: sha('x') });
  const at = (line: string) => s.split('\n').findIndex((l) => l.startsWith(line));
  const make = at('for _ in');
  const onExit = at(`trap $'trap \\'\\' HUP INT TERM; rm -f -- "$t"' EXIT`);
  const onSignal = at(`trap $'trap \\'\\' HUP INT TERM; exit 143' HUP INT TERM`);
  assert.ok(onExit >= 0 && onSignal >= 0 && make >= 0, s);
  assert.ok(onExit < make, 'the EXIT trap before the file');
  assert.ok(onSignal < make, 'the signal trap before the file');
  // the name assigned first, the file made after (mktemp made it, then the assignment: a signal between left it)
  assert.match(s.split('\n')[make]!, /t="\$d\/\.wpfarm\.[^"]*"; if \(umask 077; set -C; : > "\$t"\)/);
  assert.ok(!s.includes('mktemp'), s);
});

test('tempBeside: a new empty file of mode 0600 beside the target, never an existing one, removed at exit', async () => {
  const d = fresh();
  const script = (body: string) => `p=${d}/target\n${tempBeside().join('\n')}\n${body}`;
  const r = await bash(script('stat -c "%a %s %n" -- "$t"; ls -a "$d" | grep -c "^\\.wpfarm\\."'));
  assert.equal(r.code, 0, r.stderr);
  const [mode, size, name] = r.stdout.split('\n')[0]!.split(' ');
  assert.equal(mode, '600', 'not readable by others before its mode is set (secrets go through it)');
  assert.equal(size, '0');
  assert.match(name!, new RegExp(`^${d}/\\.wpfarm\\.\\d+\\.\\d+$`));
  assert.equal(r.stdout.split('\n')[1], '1');
  assert.deepEqual(leftovers(d), [], 'removed when the script ends without taking it');
  // a name already there (noclobber): another is made, the existing file is left as it was. RANDOM seeded: the
  // first name tempBeside will try is made beforehand, by "someone else"
  const seeded = `p=${d}/target\nRANDOM=7; d=${d}; echo theirs > "$d/.wpfarm.$BASHPID.$RANDOM$RANDOM"; RANDOM=7\n`;
  const r2 = await bash(`${seeded}${tempBeside().join('\n')}\necho "$t"; cat "$d"/.wpfarm.*`);
  assert.equal(r2.code, 0, r2.stderr);
  const [made, theirs] = r2.stdout.split('\n');
  assert.equal(theirs, 'theirs', 'the existing file kept its content (not truncated)');
  const left = leftovers(d);
  assert.equal(left.length, 1, `only the other's file stays: ${left.join(', ')}`);
  assert.equal(readFileSync(join(d, left[0]!), 'utf8'), 'theirs\n');
  assert.notEqual(join(d, left[0]!), made, 'a second name was made');
});
