// file / copy / directory: plan() on probe outputs produced by really running the probe scripts with
// bash in a temp dir, and the apply scripts run for real: check predicts exactly the changes the run
// makes, check changes nothing, a rerun changes nothing.
import assert from 'node:assert/strict';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { copy, directory, file, parsePathProbe, pathProbeScript, planWrite } from '../../lib/ops/files.ts';
import { clearSecretsForTests, registerSecret } from '../../lib/secrets.ts';
import { bash, context, cycle, ensureTools, runOp, snapshot, tempDir } from './ops-files.harness.ts';
import { tempBeside } from '../../lib/shell.ts';

ensureTools(['getent']);
const tmp = tempDir();
after(() => tmp.cleanup());
const fresh = tmp.fresh;
const modeOf = (p: string): string => (statSync(p).mode & 0o7777).toString(8).padStart(4, '0');
const NOBODY = Number((await bash('id -u nobody')).stdout.trim());
const NOGROUP = Number((await bash('getent group nogroup | cut -d: -f3')).stdout.trim());

describe('probe parsing (real probe output)', () => {
  test('regular file, with sha and content', async () => {
    const d = fresh();
    writeFileSync(join(d, 'f'), 'hello\n');
    chmodSync(join(d, 'f'), 0o640);
    const out = (await bash(`( ${pathProbeScript(join(d, 'f'), { sha: true, contentCap: 1024 })}\n) 2>&1`)).stdout;
    const st = parsePathProbe(out);
    assert.equal(st.exists, true);
    assert.equal(st.isFile, true);
    assert.equal(st.mode, '0640');
    assert.equal(st.user, 'root');
    assert.equal(st.size, 6);
    assert.equal(st.sha, '5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03');
    assert.equal(st.content?.toString(), 'hello\n');
    assert.equal(st.parentExists, true);
    assert.equal(st.real, join(d, 'f'));
  });

  test('missing file, missing parent, symlink, too large, empty file', async () => {
    const d = fresh();
    const probe = async (p: string, o = {}) => parsePathProbe((await bash(`( ${pathProbeScript(p, o)}\n) 2>&1`)).stdout);
    const missing = await probe(join(d, 'nope'));
    assert.equal(missing.exists, false);
    assert.equal(missing.parentExists, true);
    const deep = await probe(join(d, 'a/b/c'));
    assert.equal(deep.exists, false);
    assert.equal(deep.parentExists, false);
    writeFileSync(join(d, 'target'), 'x'.repeat(100));
    symlinkSync(join(d, 'target'), join(d, 'link'));
    const link = await probe(join(d, 'link'), { contentCap: 10, sha: true });
    assert.equal(link.isLink, true);
    assert.equal(link.isFile, true);
    assert.equal(link.real, join(d, 'target'));
    assert.equal(link.contentNote, 'toolarge 100');
    assert.equal(link.content, undefined);
    writeFileSync(join(d, 'empty'), '');
    const empty = await probe(join(d, 'empty'), { contentCap: 10, sha: true });
    assert.equal(empty.isFile, true);
    assert.equal(empty.content?.length, 0);
    const dir = await probe(d);
    assert.equal(dir.isDir, true);
    const owner = await probe(d, { owner: 'no-such-user-wpf', group: 'root' });
    assert.equal(owner.ownerKnown, false);
    assert.equal(owner.groupKnown, undefined, 'not looked up: the directory already has that group');
    const other = await probe(d, { owner: 'root', group: 'nogroup' });
    assert.equal(other.ownerKnown, undefined);
    assert.equal(other.groupKnown, true);
  });

  test('a path with spaces, quotes and $ is probed safely', async () => {
    const d = fresh();
    const p = join(d, `we'ird $(touch pwned) "x"`);
    writeFileSync(p, 'z');
    const st = parsePathProbe((await bash(`( ${pathProbeScript(p, { sha: true })}\n) 2>&1`)).stdout);
    assert.equal(st.exists, true);
    assert.equal(st.size, 1);
    assert.equal(existsSync(join(d, 'pwned')), false);
    assert.equal(existsSync('pwned'), false);
  });

  test('garbage or empty probe output parses as "absent", never throws', () => {
    for (const out of ['', 'garbage', '@@stat\n', '@@stat\nabsent\n@@sha\nzz']) {
      const st = parsePathProbe(out);
      assert.equal(st.exists, false);
    }
  });
});

describe('file', () => {
  test('create with content, mode, owner: check predicts, run does, rerun is ok', async () => {
    const d = fresh();
    const p = join(d, 'app.conf');
    const before = await snapshot(d);
    let checkSnap = '';
    const make = () => file({ path: p, content: 'a=1\n', mode: '0640', owner: 'nobody', group: 'nogroup' });
    const check = await runOp(make(), { check: true, diff: true });
    checkSnap = await snapshot(d);
    assert.equal(checkSnap, before, 'check mode changed nothing');
    assert.equal(check.status, 'changed');
    assert.deepEqual(check.plan.changes, ['create (4 bytes, mode 0640, owner nobody, group nogroup)']);
    assert.equal(check.plan.diff, `--- /dev/null\n+++ ${p}\n@@ -0,0 +1 @@\n+a=1\n`);
    const run = await runOp(make());
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), 'a=1\n');
    assert.equal(modeOf(p), '0640');
    assert.equal(statSync(p).uid, NOBODY);
    assert.equal(statSync(p).gid, NOGROUP);
    assert.deepEqual(readdirSync(d), ['app.conf'], 'no temp file left');
    const rerun = await runOp(make());
    assert.equal(rerun.status, 'ok');
    assert.deepEqual(rerun.plan.changes, []);
  });

  test('content change keeps mode and owner, shows a diff, writes atomically (new inode)', async () => {
    const d = fresh();
    const p = join(d, 'f');
    writeFileSync(p, 'one\ntwo\nthree\n');
    chmodSync(p, 0o600);
    chownSync(p, NOBODY, NOGROUP);
    const ino = statSync(p).ino;
    const { check, run, rerun } = await cycle(() => file({ path: p, content: 'one\n2\nthree\n' }), { diff: true });
    assert.equal(check.status, 'changed');
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.match(check.plan.changes[0]!, /^content changed \(14 -> 12 bytes, sha256 [0-9a-f]{12} -> [0-9a-f]{12}\)$/);
    assert.equal(check.plan.diff, `--- ${p}\n+++ ${p}\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n`);
    assert.equal(readFileSync(p, 'utf8'), 'one\n2\nthree\n');
    assert.equal(modeOf(p), '0600');
    assert.equal(statSync(p).uid, NOBODY);
    assert.notEqual(statSync(p).ino, ino, 'replaced by rename');
    assert.equal(rerun.status, 'ok');
  });

  test('attributes only: mode and owner change without rewriting content', async () => {
    const d = fresh();
    const p = join(d, 'f');
    writeFileSync(p, 'keep');
    chmodSync(p, 0o644);
    const ino = statSync(p).ino;
    const { check, run, rerun } = await cycle(() => file({ path: p, mode: 0o600, owner: 'nobody' }));
    assert.deepEqual(check.plan.changes, ['mode 0644 -> 0600', 'owner root -> nobody']);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(modeOf(p), '0600');
    assert.equal(statSync(p).uid, NOBODY);
    assert.equal(statSync(p).ino, ino);
    assert.equal(rerun.status, 'ok');
  });

  test('numeric owner/group compare by id', async () => {
    const d = fresh();
    const p = join(d, 'f');
    writeFileSync(p, '');
    chownSync(p, NOBODY, NOGROUP);
    const r = await runOp(file({ path: p, owner: String(NOBODY), group: String(NOGROUP) }));
    assert.equal(r.status, 'ok');
  });

  test('validate: the new content is checked before it replaces the file; a failure leaves it untouched', async () => {
    const d = fresh();
    const p = join(d, 'sudoers-like');
    writeFileSync(p, 'valid: old\n');
    const ok = await cycle(() => file({ path: p, content: 'valid: new\n', validate: "grep -q '^valid:' %s" }));
    assert.deepEqual(ok.run.plan.changes, ok.check.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), 'valid: new\n');
    assert.equal(ok.rerun.status, 'ok');
    await assert.rejects(
      runOp(file({ path: p, content: 'broken\n', validate: "grep -q '^valid:' %s" })),
      /validation failed \(grep -q '\^valid:' %s\)/,
    );
    assert.equal(readFileSync(p, 'utf8'), 'valid: new\n');
    assert.deepEqual(readdirSync(d), ['sudoers-like'], 'temp file removed');
    // a new file that fails validation is not created
    await assert.rejects(runOp(file({ path: join(d, 'new'), content: 'x', validate: 'false %s' })), /validation failed/);
    assert.deepEqual(readdirSync(d), ['sudoers-like']);
    assert.throws(() => file({ path: p, content: 'x', validate: 'visudo -c' }), /must be a command containing %s/);
  });

  test('secret content: no diff, no hash in the change lines', async () => {
    const d = fresh();
    const p = join(d, 'secret');
    writeFileSync(p, 'old-password');
    const { check, run } = await cycle(() => file({ path: p, content: 'new-password', mode: '0600', secret: true }), { diff: true });
    assert.equal(check.plan.diff, 'content hidden (secret)');
    assert.deepEqual(check.plan.changes, ['content changed (secret, 12 -> 12 bytes)', 'mode 0644 -> 0600']);
    assert.ok(!JSON.stringify(check.plan.changes).includes('password'));
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), 'new-password');
  });

  test('content containing a registered secret (ctx.secret) is treated as secret automatically', async () => {
    const d = fresh();
    const p = join(d, 'db.env');
    writeFileSync(p, 'DB_PASSWORD=old\n');
    registerSecret('Very-Secret-Pw-42');
    try {
      const r = await runOp(file({ path: p, content: 'DB_PASSWORD=Very-Secret-Pw-42\n' }), { check: true, diff: true });
      assert.equal(r.plan.diff, 'content hidden (secret)');
      assert.deepEqual(r.plan.changes, ['content changed (secret, 16 -> 30 bytes)']);
    } finally {
      clearSecretsForTests();
    }
  });

  test('state absent removes a file, a symlink (not its target), a directory tree', async () => {
    const d = fresh();
    writeFileSync(join(d, 'f'), 'x\n');
    writeFileSync(join(d, 'target'), 't');
    symlinkSync(join(d, 'target'), join(d, 'link'));
    mkdirSync(join(d, 'tree/sub'), { recursive: true });
    writeFileSync(join(d, 'tree/sub/x'), 'x');
    const f = await cycle(() => file({ path: join(d, 'f'), state: 'absent' }), { diff: true });
    assert.deepEqual(f.check.plan.changes, ['remove (regular file)']);
    assert.equal(f.check.plan.diff, `--- ${join(d, 'f')}\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n`);
    assert.deepEqual(f.run.plan.changes, f.check.plan.changes);
    assert.equal(f.rerun.status, 'ok');
    const l = await cycle(() => file({ path: join(d, 'link'), state: 'absent' }));
    assert.deepEqual(l.run.plan.changes, ['remove (symlink)']);
    assert.equal(existsSync(join(d, 'target')), true);
    assert.equal(l.rerun.status, 'ok');
    const t = await cycle(() => file({ path: join(d, 'tree'), state: 'absent' }));
    assert.deepEqual(t.run.plan.changes, ['remove directory (recursively)']);
    assert.equal(existsSync(join(d, 'tree')), false);
    assert.equal(t.rerun.status, 'ok');
  });

  test('touch creates an empty file, then bumps its times (Ansible); preserve/preserve = create only', async () => {
    const d = fresh();
    const p = join(d, 'marker');
    const { check, run, rerun } = await cycle(() => file({ path: p, state: 'touch' }));
    assert.deepEqual(check.plan.changes, ['create (0 bytes, mode 0644)']);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), '');
    assert.deepEqual([rerun.status, rerun.plan.changes], ['changed', ['times updated']]);
    writeFileSync(p, 'data');
    utimesSync(p, new Date('2001-01-01'), new Date('2001-01-01'));
    const bump = await runOp(file({ path: p, state: 'touch' }));
    assert.equal(bump.status, 'changed');
    assert.ok(statSync(p).mtimeMs > Date.parse('2002-01-01'), 'mtime bumped');
    assert.equal(readFileSync(p, 'utf8'), 'data', 'content untouched');
    utimesSync(p, new Date('2001-01-01'), new Date('2001-01-01'));
    const keep = () => file({ path: p, state: 'touch', modificationTime: 'preserve', accessTime: 'preserve' });
    assert.equal((await runOp(keep())).status, 'ok');
    assert.equal(statSync(p).mtimeMs, Date.parse('2001-01-01'));
    const m = await runOp(file({ path: p, state: 'touch', accessTime: 'preserve' }));
    assert.deepEqual(m.plan.changes, ['mtime updated']);
    assert.equal(statSync(p).atimeMs, Date.parse('2001-01-01'));
  });

  test('a symlink is followed: the target is written, the link stays', async () => {
    const d = fresh();
    writeFileSync(join(d, 'real.conf'), 'old\n');
    symlinkSync('real.conf', join(d, 'link.conf'));
    const { check, run, rerun } = await cycle(() => file({ path: join(d, 'link.conf'), content: 'new\n' }));
    assert.match(check.plan.changes[0]!, new RegExp(`\\(via symlink -> ${join(d, 'real.conf').replace(/[/.]/g, '\\$&')}\\)$`));
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(lstatSync(join(d, 'link.conf')).isSymbolicLink(), true);
    assert.equal(readFileSync(join(d, 'real.conf'), 'utf8'), 'new\n');
    assert.equal(rerun.status, 'ok');
  });

  test('binary content (Buffer) round-trips exactly; diff says binary', async () => {
    const d = fresh();
    const p = join(d, 'bin');
    const bytes = Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 7) % 256));
    writeFileSync(p, 'text\n');
    const { check, rerun } = await cycle(() => file({ path: p, content: bytes }), { diff: true });
    assert.match(check.plan.diff!, /^diff omitted: binary content \(5 -> 512 bytes\)$/);
    assert.deepEqual(readFileSync(p), bytes);
    assert.equal(rerun.status, 'ok');
  });

  test('missing parent: an error in a real run, a note in check mode; create: true makes the parents', async () => {
    const d = fresh();
    const p = join(d, 'no/such/dir/f');
    const check = await runOp(file({ path: p, content: 'x' }), { check: true });
    assert.equal(check.status, 'changed');
    assert.deepEqual(check.plan.changes, ['create (1 bytes, mode 0644)'], 'the same change lines as the run that follows a directory step');
    assert.match(
      check.logs.join('\n'),
      /check mode: parent directory of .* does not exist \(set create: true to create it\); assuming an earlier step provides it/,
    );
    await assert.rejects(runOp(file({ path: p, content: 'x' })), /parent directory of .* does not exist/);
    const { check: c2, run, rerun } = await cycle(() => file({ path: p, content: 'x', create: true }));
    assert.deepEqual(c2.plan.changes, ['create (1 bytes, mode 0644, with parents)']);
    assert.deepEqual(c2.logs, [], 'nothing assumed');
    assert.deepEqual(run.plan.changes, c2.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), 'x');
    assert.equal(statSync(join(d, 'no/such')).mode & 0o7777, 0o755);
    assert.equal(rerun.status, 'ok');
  });

  test('errors: a directory where a file is wanted, unknown user, state present on a missing file without content', async () => {
    const d = fresh();
    await assert.rejects(runOp(file({ path: d, content: 'x' })), /is a directory/);
    writeFileSync(join(d, 'f'), '');
    await assert.rejects(runOp(file({ path: join(d, 'f'), owner: 'no-such-user-wpf' })), /user no-such-user-wpf does not exist/);
    await assert.rejects(runOp(file({ path: join(d, 'missing'), mode: '0600' })), /does not exist/);
  });

  test('bad input is rejected when the step is built', () => {
    assert.throws(() => file({ path: 'relative/path', content: 'x' }), /file\.path: must be an absolute path/);
    assert.throws(() => file({ path: '/etc/../x', content: 'x' }), /without '\.\.'/);
    assert.throws(() => file({ path: '/etc/a\nb', content: 'x' }), /newlines/);
    assert.throws(() => file({ path: '/x', content: 'a', src: 'b' }), /file\.src: is mutually exclusive with content/);
    assert.throws(() => file({ path: '/x', mode: 'u+y' }), /invalid mode/);
    assert.throws(() => file({ path: '/x', mode: 'k=r' }), /invalid mode/);
    assert.throws(() => file({ path: '/x', owner: 'bad;user' }), /invalid owner/);
    assert.throws(() => file({ path: '/', state: 'absent' }), /refusing/);
  });

  test('diff of a file larger than the cap is omitted; content is still compared by sha256', async () => {
    const d = fresh();
    const p = join(d, 'big');
    writeFileSync(p, 'x'.repeat(300 * 1024));
    const r = await runOp(file({ path: p, content: 'small\n' }), { check: true, diff: true });
    assert.equal(r.plan.diff, 'diff omitted: file too large');
    assert.match(r.plan.changes[0]!, /^content changed \(307200 -> 6 bytes/);
  });

  test('plan is pure: the same probe output gives the same plan', async () => {
    const d = fresh();
    const op = file({ path: join(d, 'x'), content: 'abc' });
    const ctx = context({ check: true });
    const out = (await bash(`( ${op.probe(ctx)!.script}\n) 2>&1`)).stdout;
    const a = await op.plan(ctx, out);
    const b = await op.plan(ctx, out);
    assert.deepEqual(a, b);
    // planWrite on a hand-written probe output (as captured on a Debian host)
    const st = parsePathProbe(
      '@@stat\nregular file|644|0|root|0|root|4\n@@link\n@@real\n/etc/motd\n@@parent\nyes\n@@sha\n' + '0'.repeat(64),
    );
    const plan = planWrite(ctx, st, { path: '/etc/motd', content: Buffer.from('new\n'), want: { mode: '0644' } });
    assert.equal(plan.changed, true);
    assert.match(plan.changes[0]!, /^content changed \(4 -> 4 bytes/);
  });
});

describe('plan() as a pure function of given probe outputs', () => {
  // probe outputs as printed on a Debian 12 host (www-data = 33)
  const existing = (stat: string, extra = '') => `@@stat\n${stat}\n@@link\n@@real\n/etc/app.conf\n@@parent\nyes\n${extra}`;
  const sha = (t: string) => createHash('sha256').update(t).digest('hex');

  test('same content and attributes: unchanged, no apply', async () => {
    const out = existing('regular file|640|33|www-data|33|www-data|4', `@@sha\n${sha('a=1\n')}`);
    const op = file({ path: '/etc/app.conf', content: 'a=1\n', mode: '0640', owner: 'www-data', group: '33' });
    const plan = await op.plan(context(), out);
    assert.deepEqual(plan, {
      changed: false,
      changes: [],
      result: { path: '/etc/app.conf', state: 'present' },
      reason: 'file already has that content and attributes',
    });
  });

  test('content differs: one atomic write script, content on stdin; check and run plans are identical', async () => {
    const out = existing(
      'regular file|640|33|www-data|33|www-data|4',
      `@@sha\n${sha('a=0\n')}\n@@content\nb64 ${Buffer.from('a=0\n').toString('base64')}`,
    );
    const op = file({ path: '/etc/app.conf', content: 'a=1\n', mode: '0600' });
    const run = await op.plan(context({ diff: true }), out);
    const check = await op.plan(context({ check: true, diff: true }), out);
    assert.deepEqual(check, run);
    assert.deepEqual(run.changes, [
      `content changed (4 -> 4 bytes, sha256 ${sha('a=0\n').slice(0, 12)} -> ${sha('a=1\n').slice(0, 12)})`,
      'mode 0640 -> 0600',
    ]);
    assert.equal(run.diff, '--- /etc/app.conf\n+++ /etc/app.conf\n@@ -1 +1 @@\n-a=0\n+a=1\n');
    const apply = run.apply as { script: string; stdin: Buffer };
    assert.deepEqual(apply.stdin, Buffer.from('a=1\n'));
    // the traps are set, and the temp file's name is in $t, before the file is made (lib/shell.ts tempBeside)
    assert.ok(apply.script.startsWith(`( set -e\np=/etc/app.conf\n${tempBeside().join('\n')}\n`), apply.script);
    assert.match(
      apply.script,
      /cp --attributes-only --preserve=mode,ownership,xattr -- "\$p" "\$t" 2>\/dev\/null \|\| \{ chmod --reference="\$p" -- "\$t"; chown --reference="\$p" -- "\$t"; \}; \}\nchmod 00600 -- "\$t"\nmv -f -- "\$t" "\$p"/,
    );
  });

  test('attributes only: chmod/chown, no content in the apply', async () => {
    const out = existing('regular empty file|644|0|root|0|root|0', '@@owner\nok\n');
    const plan = await file({ path: '/etc/app.conf', owner: 'www-data', mode: 0o640 }).plan(context(), out);
    assert.deepEqual(plan.changes, ['mode 0644 -> 0640', 'owner root -> www-data']);
    assert.deepEqual(plan.apply, { script: 'chmod 00640 -- /etc/app.conf && chown www-data -- /etc/app.conf' });
  });

  test('unknown owner: error in a run; in check mode logged and same changes', async () => {
    const out = '@@stat\nabsent\n@@link\n@@real\n/srv/x\n@@parent\nyes\n@@owner\nmissing\n@@sha\n';
    const op = file({ path: '/srv/x', content: 'x', owner: 'wpuser' });
    assert.throws(() => op.plan(context(), out), /user wpuser does not exist/);
    const logs: string[] = [];
    const plan = await op.plan(context({ check: true, logs }), out);
    assert.deepEqual(plan.changes, ['create (1 bytes, mode 0644, owner wpuser)']);
    assert.deepEqual(logs, ['check mode: user wpuser does not exist; assuming an earlier step provides it']);
  });

  test('a path with shell metacharacters is quoted in every script', async () => {
    const path = "/srv/a b/$(reboot)'x";
    const out = `@@stat\nabsent\n@@link\n@@real\n${path}\n@@parent\nyes\n@@sha\n`;
    const plan = await file({ path, content: 'x' }).plan(context(), out);
    const script = (plan.apply as { script: string }).script;
    assert.ok(script.includes("p=$'/srv/a b/$(reboot)\\'x'"), script);
    const d = await directory({ path, mode: '0700' }).plan(context(), '@@stat\nabsent\n@@parent\nyes');
    assert.equal(
      (d.apply as { script: string }).script,
      `for d in /srv $'/srv/a b' $'/srv/a b/$(reboot)\\'x'; do [ -d "$d" ] || { mkdir -- "$d" && chmod 00700 -- "$d"; } || exit 1; done`,
    );
  });
});

describe('copy', () => {
  test('copies a local file byte for byte', async () => {
    const d = fresh();
    writeFileSync(join(d, 'src.bin'), Buffer.from([0, 1, 2, 255, 10]));
    const dest = join(d, 'dest.bin');
    const { check, run, rerun } = await cycle(() => copy({ path: dest, src: join(d, 'src.bin'), mode: '0755' }));
    assert.deepEqual(check.plan.changes, ['create (5 bytes, mode 0755)']);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.deepEqual(readFileSync(dest), Buffer.from([0, 1, 2, 255, 10]));
    assert.equal(modeOf(dest), '0755');
    assert.equal(rerun.status, 'ok');
    assert.equal(copy({ path: dest, src: 'x' }).kind, 'copy');
  });

  test('a missing src is an InputError at plan time', async () => {
    const d = fresh();
    await assert.rejects(
      runOp(copy({ path: join(d, 'x'), src: join(d, 'nope') })),
      (e: Error) => e.name === 'InputError' && /cannot read src/.test(e.message),
    );
  });
});

describe('directory', () => {
  test('create with parents and mode; rerun ok', async () => {
    const d = fresh();
    const p = join(d, 'a/b/c');
    const before = await snapshot(d);
    const check = await runOp(directory({ path: p, mode: '0750', owner: 'nobody' }), { check: true });
    assert.equal(await snapshot(d), before);
    assert.deepEqual(check.plan.changes, ['create (mode 0750, owner nobody, with parents)']);
    const run = await runOp(directory({ path: p, mode: '0750', owner: 'nobody' }));
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(modeOf(p), '0750');
    assert.equal(statSync(p).uid, NOBODY);
    assert.equal((await runOp(directory({ path: p, mode: '0750', owner: 'nobody' }))).status, 'ok');
  });

  test('default mode 0755, setgid mode kept as 4 digits', async () => {
    const d = fresh();
    const r = await cycle(() => directory({ path: join(d, 'x') }));
    assert.deepEqual(r.run.plan.changes, ['create (mode 0755)']);
    assert.equal(modeOf(join(d, 'x')), '0755');
    assert.equal(r.rerun.status, 'ok');
    const s = await cycle(() => directory({ path: join(d, 'x'), mode: '2775' }));
    assert.deepEqual(s.check.plan.changes, ['mode 0755 -> 2775']);
    assert.deepEqual(s.run.plan.changes, s.check.plan.changes);
    assert.equal(modeOf(join(d, 'x')), '2775');
    assert.equal(s.rerun.status, 'ok');
    // GNU chmod keeps a directory's setgid bit on a 4-digit mode: the op must still converge
    const c = await cycle(() => directory({ path: join(d, 'x'), mode: '0755' }));
    assert.deepEqual(c.run.plan.changes, ['mode 2775 -> 0755']);
    assert.equal(modeOf(join(d, 'x')), '0755');
    assert.equal(c.rerun.status, 'ok');
  });

  test('recurse applies owner/group below; counts the entries that differ', async () => {
    const d = fresh();
    const p = join(d, 'site');
    mkdirSync(join(p, 'wp-content/uploads'), { recursive: true });
    writeFileSync(join(p, 'wp-content/uploads/a.jpg'), 'a');
    writeFileSync(join(p, 'index.php'), 'x');
    chownSync(p, NOBODY, NOGROUP);
    const make = () => directory({ path: p, owner: 'nobody', group: 'nogroup', recurse: true });
    const { check, run, rerun } = await cycle(make);
    assert.deepEqual(check.plan.changes, ['owner/group of 4 entries below -> nobody:nogroup']);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(statSync(join(p, 'wp-content/uploads/a.jpg')).uid, NOBODY);
    assert.equal(statSync(join(p, 'wp-content/uploads/a.jpg')).gid, NOGROUP);
    assert.equal(rerun.status, 'ok');
  });

  test('absent removes the tree; a file in the way is an error', async () => {
    const d = fresh();
    mkdirSync(join(d, 'x/y'), { recursive: true });
    const r = await cycle(() => directory({ path: join(d, 'x'), state: 'absent' }));
    assert.deepEqual(r.run.plan.changes, ['remove directory (recursively)']);
    assert.equal(existsSync(join(d, 'x')), false);
    assert.equal(r.rerun.status, 'ok');
    writeFileSync(join(d, 'file'), '');
    await assert.rejects(runOp(directory({ path: join(d, 'file') })), /exists and is not a directory/);
  });
});
