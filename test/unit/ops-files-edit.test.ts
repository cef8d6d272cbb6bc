// lineinfile / blockinfile: the pure edit functions (Ansible's semantics) and the operations run with
// bash on real files (check predicts exactly, rerun changes nothing, mode/owner preserved).
import assert from 'node:assert/strict';
import { chmodSync, chownSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { editLines, lineinfile } from '../../lib/ops/lineinfile.ts';
import { blockinfile, editBlock } from '../../lib/ops/blockinfile.ts';
import { bash, cycle, runOp, snapshot, tempDir } from './ops-files.harness.ts';

const tmp = tempDir('wpf-edit-');
after(() => tmp.cleanup());
const fresh = tmp.fresh;

describe('editLines (pure)', () => {
  const present = (text: string, o: Omit<Parameters<typeof editLines>[1], 'state'>) => editLines(text, { ...o, state: 'present' });

  test('regexp matches: the last matching line is replaced', () => {
    const r = present('a=1\nport=80\nb=2\nport=81\n', { line: 'port=8080', regexp: /^port=/ });
    assert.deepEqual(r, { content: 'a=1\nport=80\nb=2\nport=8080\n', changed: true, what: 'line replaced' });
    const f = present('a=1\nport=80\nb=2\nport=81\n', { line: 'port=8080', regexp: /^port=/, firstMatch: true });
    assert.equal(f.content, 'a=1\nport=8080\nb=2\nport=81\n');
  });

  test('regexp matches a line already equal: no change', () => {
    assert.equal(present('port=8080\n', { line: 'port=8080', regexp: /^port=/ }).changed, false);
  });

  test('no regexp match and the line exists: no change; else appended at EOF', () => {
    assert.equal(present('x\nport=1\n', { line: 'x', regexp: /^nomatch/ }).changed, false);
    assert.deepEqual(present('a\nb\n', { line: 'c' }), { content: 'a\nb\nc\n', changed: true, what: 'line added' });
  });

  test('a final line without newline gets one before the appended line', () => {
    assert.equal(present('a\nb', { line: 'c' }).content, 'a\nb\nc\n');
    assert.equal(present('', { line: 'c' }).content, 'c\n');
  });

  test('insertAfter / insertBefore / BOF, first and last match, unmatched = EOF', () => {
    const t = '[a]\nx=1\n[b]\ny=2\n[a]\nz=3\n';
    assert.equal(present(t, { line: 'new', insertAfter: /^\[a\]/ }).content, '[a]\nx=1\n[b]\ny=2\n[a]\nnew\nz=3\n');
    assert.equal(present(t, { line: 'new', insertAfter: /^\[a\]/, firstMatch: true }).content, '[a]\nnew\nx=1\n[b]\ny=2\n[a]\nz=3\n');
    assert.equal(present(t, { line: 'new', insertBefore: /^\[a\]/ }).content, '[a]\nx=1\n[b]\ny=2\nnew\n[a]\nz=3\n');
    assert.equal(present(t, { line: 'new', insertBefore: /^\[a\]/, firstMatch: true }).content, 'new\n[a]\nx=1\n[b]\ny=2\n[a]\nz=3\n');
    assert.equal(present(t, { line: 'new', insertBefore: 'BOF' }).content, `new\n${t}`);
    assert.equal(present(t, { line: 'new', insertAfter: 'BOF' }).content, `new\n${t}`);
    assert.equal(present(t, { line: 'new', insertAfter: /^\[zz\]/ }).content, `${t}new\n`);
    // inserting after the last line of a file without final newline
    assert.equal(present('a\nb', { line: 'new', insertAfter: /^b$/ }).content, 'a\nb\nnew\n');
    // inserting before keeps a missing final newline as it was
    assert.equal(present('a\nb', { line: 'new', insertBefore: /^b$/ }).content, 'a\nnew\nb');
  });

  test('regexp has priority over insertAfter when it matches', () => {
    assert.equal(present('k=1\n[s]\n', { line: 'k=2', regexp: /^k=/, insertAfter: /^\[s\]/ }).content, 'k=2\n[s]\n');
  });

  test('absent removes every line matching regexp, or equal to line', () => {
    assert.deepEqual(editLines('a\n#x\nb\n#y\n', { regexp: /^#/, state: 'absent' }), {
      content: 'a\nb\n',
      changed: true,
      what: '2 lines removed',
    });
    assert.deepEqual(editLines('a\nb\na\n', { line: 'a', state: 'absent' }), { content: 'b\n', changed: true, what: '2 lines removed' });
    assert.equal(editLines('a\n', { line: 'zz', state: 'absent' }).changed, false);
    assert.equal(editLines('a\n', { line: 'a', state: 'absent' }).content, '');
  });

  test('CRLF files: lines compare without \\r and keep it when replaced', () => {
    assert.equal(present('a\r\nb\r\n', { line: 'a' }).changed, false);
    assert.equal(present('k=1\r\nb\r\n', { line: 'k=2', regexp: /^k=/ }).content, 'k=2\r\nb\r\n');
  });
});

describe('editBlock (pure)', () => {
  const M = { begin: '# BEGIN X', end: '# END X' };
  test('inserted at EOF with markers; replaced in place; unchanged when equal', () => {
    const r = editBlock('a\n', { ...M, block: 'one\ntwo\n', state: 'present' });
    assert.deepEqual(r, { content: 'a\n# BEGIN X\none\ntwo\n# END X\n', changed: true, what: 'block inserted' });
    const again = editBlock(r.content, { ...M, block: 'one\ntwo', state: 'present' });
    assert.equal(again.changed, false);
    const rep = editBlock(`${r.content}tail\n`, { ...M, block: 'three', state: 'present' });
    assert.deepEqual(rep, { content: 'a\n# BEGIN X\nthree\n# END X\ntail\n', changed: true, what: 'block replaced' });
  });

  test('insertBefore BOF, insertAfter/insertBefore regexp (last match), unmatched = EOF', () => {
    assert.equal(editBlock('a\n', { ...M, block: 'b', state: 'present', insertBefore: 'BOF' }).content, '# BEGIN X\nb\n# END X\na\n');
    assert.equal(
      editBlock('s\nx\ns\ny\n', { ...M, block: 'b', state: 'present', insertAfter: /^s$/ }).content,
      's\nx\ns\n# BEGIN X\nb\n# END X\ny\n',
    );
    assert.equal(
      editBlock('s\nx\ns\ny\n', { ...M, block: 'b', state: 'present', insertBefore: /^s$/ }).content,
      's\nx\n# BEGIN X\nb\n# END X\ns\ny\n',
    );
    assert.equal(editBlock('a\n', { ...M, block: 'b', state: 'present', insertAfter: /^zz/ }).content, 'a\n# BEGIN X\nb\n# END X\n');
  });

  test('absent, or an empty block, removes markers and content; nothing to remove = unchanged', () => {
    const t = 'a\n# BEGIN X\nb\n# END X\nc\n';
    assert.deepEqual(editBlock(t, { ...M, block: '', state: 'absent' }), { content: 'a\nc\n', changed: true, what: 'block removed' });
    assert.equal(editBlock(t, { ...M, block: '', state: 'present' }).content, 'a\nc\n');
    assert.equal(editBlock('a\n', { ...M, block: 'x', state: 'absent' }).changed, false);
  });

  test('a file without final newline: the appended block starts on its own line', () => {
    assert.equal(editBlock('a', { ...M, block: 'b', state: 'present' }).content, 'a\n# BEGIN X\nb\n# END X\n');
  });

  test('only one marker present: the block is inserted (Ansible does the same)', () => {
    assert.equal(editBlock('# BEGIN X\na\n', { ...M, block: 'b', state: 'present' }).content, '# BEGIN X\na\n# BEGIN X\nb\n# END X\n');
  });
});

describe('lineinfile / blockinfile on real files', () => {
  test('lineinfile: check predicts, run edits (mode/owner kept), rerun ok, diff shown', async () => {
    const d = fresh();
    const p = join(d, 'sshd_config');
    writeFileSync(p, 'Port 22\n#PermitRootLogin yes\nX11Forwarding yes\n');
    chmodSync(p, 0o600);
    chownSync(p, 65534, 65534);
    const before = await snapshot(d);
    const make = () => lineinfile({ path: p, regexp: '^#?PermitRootLogin', line: 'PermitRootLogin prohibit-password' });
    const check = await runOp(make(), { check: true, diff: true });
    assert.equal(await snapshot(d), before);
    assert.deepEqual(check.plan.changes, ['line replaced']);
    assert.equal(
      check.plan.diff,
      `--- ${p}\n+++ ${p}\n@@ -1,3 +1,3 @@\n Port 22\n-#PermitRootLogin yes\n+PermitRootLogin prohibit-password\n X11Forwarding yes\n`,
    );
    const run = await runOp(make());
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), 'Port 22\nPermitRootLogin prohibit-password\nX11Forwarding yes\n');
    assert.equal(statSync(p).mode & 0o7777, 0o600);
    assert.equal(statSync(p).uid, 65534);
    assert.equal((await runOp(make())).status, 'ok');
  });

  test('lineinfile with validate: a line that breaks the check is refused', async () => {
    const d = fresh();
    const p = join(d, 'kv.conf');
    writeFileSync(p, 'a=1\n');
    await assert.rejects(runOp(lineinfile({ path: p, line: 'garbage', validate: "! grep -qv '=' %s" })), /validation failed/);
    assert.equal(readFileSync(p, 'utf8'), 'a=1\n');
    const r = await runOp(lineinfile({ path: p, line: 'b=2', validate: "! grep -qv '=' %s" }));
    assert.equal(r.status, 'changed');
    assert.equal(readFileSync(p, 'utf8'), 'a=1\nb=2\n');
  });

  test('lineinfile: missing file: error, or created with create: true (mode given); absent on a missing file is ok', async () => {
    const d = fresh();
    const p = join(d, 'new.conf');
    await assert.rejects(runOp(lineinfile({ path: p, line: 'a' })), /does not exist \(set create: true/);
    const c = await runOp(lineinfile({ path: p, line: 'a' }), { check: true });
    assert.match(c.plan.changes[0]!, /does not exist \(assumed created by an earlier step\)/);
    const { check, run, rerun } = await cycle(() => lineinfile({ path: p, line: 'a', create: true, mode: '0640' }));
    assert.deepEqual(check.plan.changes, ['line added']);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), 'a\n');
    assert.equal(statSync(p).mode & 0o7777, 0o640);
    assert.equal(rerun.status, 'ok');
    assert.equal((await runOp(lineinfile({ path: join(d, 'nope'), line: 'a', state: 'absent' }))).status, 'ok');
    assert.equal(existsSync(join(d, 'nope')), false);
  });

  test('several steps creating and editing one new file: check (nothing applied) predicts the run line for line', async () => {
    const d = fresh();
    const p = join(d, 'lines.conf');
    const steps = () => [
      lineinfile({ path: p, regexp: '^max=', line: 'max=10', create: true }),
      lineinfile({ path: p, regexp: '^beta=', line: 'beta=20', create: true }),
      lineinfile({ path: p, line: 'zeta=6', insertBefore: 'BOF', create: true }),
      blockinfile({ path: p, block: 'server one', create: true }),
    ];
    const check: string[][] = [];
    for (const op of steps()) check.push((await runOp(op, { check: true })).plan.changes);
    assert.equal(existsSync(p), false);
    const run: string[][] = [];
    for (const op of steps()) run.push((await runOp(op)).plan.changes);
    assert.deepEqual(run, check);
    assert.deepEqual(run, [['line added'], ['line added'], ['line added'], ['block inserted']]);
    assert.equal(
      readFileSync(p, 'utf8'),
      'zeta=6\nmax=10\nbeta=20\n# BEGIN WPFARM MANAGED BLOCK\nserver one\n# END WPFARM MANAGED BLOCK\n',
    );
    for (const op of steps()) assert.equal((await runOp(op)).status, 'ok');
  });

  test('lineinfile: absent by regexp', async () => {
    const d = fresh();
    const p = join(d, 'hosts');
    writeFileSync(p, '127.0.0.1 localhost\n10.0.0.5 old-db\n10.0.0.6 old-db2\n');
    const { check, run, rerun } = await cycle(() => lineinfile({ path: p, regexp: /old-db/, state: 'absent' }));
    assert.deepEqual(check.plan.changes, ['2 lines removed']);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), '127.0.0.1 localhost\n');
    assert.equal(rerun.status, 'ok');
  });

  test('lineinfile: bad input', () => {
    assert.throws(() => lineinfile({ path: '/x' }), /lineinfile\.line: is required when state is "present"/);
    assert.throws(() => lineinfile({ path: '/x', line: 'a\nb' }), /newline/);
    assert.throws(() => lineinfile({ path: '/x', line: 'a', regexp: '(' }), /invalid regular expression/);
    assert.throws(() => lineinfile({ path: '/x', line: 'a', insertAfter: 'EOF', insertBefore: 'BOF' }), /exclusive/);
  });

  test('lineinfile: a file above the edit cap is an error, not a silent truncation', async () => {
    const d = fresh();
    const p = join(d, 'huge');
    await bash(`head -c 9000000 /dev/zero | tr '\\0' 'a' > ${p}`);
    await assert.rejects(runOp(lineinfile({ path: p, line: 'x' })), /too large to edit/);
  });

  test('lineinfile on a file over the diff cap: edited, diff omitted', async () => {
    const d = fresh();
    const p = join(d, 'big.conf');
    writeFileSync(p, 'x=1\n'.repeat(80000));
    const r = await runOp(lineinfile({ path: p, line: 'y=2' }), { diff: true });
    assert.deepEqual(r.plan.changes, ['line added']);
    assert.equal(r.plan.diff, 'diff omitted: file too large');
    assert.equal(readFileSync(p, 'utf8').endsWith('x=1\ny=2\n'), true);
  });

  test('blockinfile: insert, replace, remove; each: check predicts, rerun ok', async () => {
    const d = fresh();
    const p = join(d, 'my.cnf');
    writeFileSync(p, '[mysqld]\nbind-address=127.0.0.1\n');
    const one = await cycle(
      () => blockinfile({ path: p, block: 'wsrep_on=ON\nwsrep_cluster_name=wp\n', marker: '# {mark} galera', insertAfter: /^\[mysqld\]/ }),
      { diff: true },
    );
    assert.deepEqual(one.check.plan.changes, ['block inserted']);
    assert.deepEqual(one.run.plan.changes, one.check.plan.changes);
    assert.match(one.check.plan.diff!, /\+# BEGIN galera\n\+wsrep_on=ON\n\+wsrep_cluster_name=wp\n\+# END galera\n/);
    assert.equal(
      readFileSync(p, 'utf8'),
      '[mysqld]\n# BEGIN galera\nwsrep_on=ON\nwsrep_cluster_name=wp\n# END galera\nbind-address=127.0.0.1\n',
    );
    assert.equal(one.rerun.status, 'ok');
    const two = await cycle(() => blockinfile({ path: p, block: 'wsrep_on=OFF', marker: '# {mark} galera' }));
    assert.deepEqual(two.run.plan.changes, ['block replaced']);
    assert.equal(readFileSync(p, 'utf8'), '[mysqld]\n# BEGIN galera\nwsrep_on=OFF\n# END galera\nbind-address=127.0.0.1\n');
    assert.equal(two.rerun.status, 'ok');
    const three = await cycle(() => blockinfile({ path: p, block: '', marker: '# {mark} galera', state: 'absent' }));
    assert.deepEqual(three.run.plan.changes, ['block removed']);
    assert.equal(readFileSync(p, 'utf8'), '[mysqld]\nbind-address=127.0.0.1\n');
    assert.equal(three.rerun.status, 'ok');
  });

  test('blockinfile: bad input', () => {
    assert.throws(() => blockinfile({ path: '/x', block: 'a', marker: '# no mark' }), /\{mark\}/);
    assert.throws(() => blockinfile({ path: '/x', block: 'a', markerBegin: 'S', markerEnd: 'S' }), /must differ/);
  });
});
