// lib/diff.ts against GNU diffutils and patch: every diff we produce must apply with `patch` and give
// exactly the new text; on texts where the shortest edit is unambiguous it must equal `diff -u`.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { unifiedDiff } from '../../lib/diff.ts';
import { ensureTools, tempDir } from './ops-files.harness.ts';

ensureTools(['diff', 'patch']);
const tmp = tempDir('wpf-diff-');
after(() => tmp.cleanup());

function gnuDiff(a: string, b: string): string {
  writeFileSync(join(tmp.dir, 'a'), a);
  writeFileSync(join(tmp.dir, 'b'), b);
  return spawnSync('diff', ['-u', '--label', 'a', '--label', 'b', 'a', 'b'], { cwd: tmp.dir, encoding: 'utf8' }).stdout;
}

function patched(a: string, patch: string): string {
  writeFileSync(join(tmp.dir, 'orig'), a);
  writeFileSync(join(tmp.dir, 'p.diff'), patch);
  const r = spawnSync('patch', ['-s', '-o', 'out', 'orig', 'p.diff'], { cwd: tmp.dir, encoding: 'utf8' });
  assert.equal(r.status, 0, `patch failed: ${r.stdout}${r.stderr}\n${patch}`);
  return readFileSync(join(tmp.dir, 'out'), 'utf8');
}

test('equal texts give an empty diff', () => {
  assert.equal(unifiedDiff('a\nb\n', 'a\nb\n'), '');
  assert.equal(unifiedDiff('', ''), '');
});

test('simple cases are identical to diff -u', () => {
  const cases: [string, string][] = [
    ['a\nb\nc\n', 'a\nB\nc\n'],
    ['', 'new\n'],
    ['old\n', ''],
    ['1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n14\n15\n', '1\n2\nX\n4\n5\n6\n7\n8\n9\n10\n11\n12\nY\n14\n15\n'],
    ['1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n', '1\n2\nX\n4\n5\n6\n7\n8\n9\nY\n'], // gap of 6: one hunk
    ['1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n', '1\n2\nX\n4\n5\n6\n7\n8\n9\n10\nY\n'], // gap of 7: two hunks
    ['a\nb', 'a\nb\n'], // only the final newline differs
    ['a\nb\n', 'a\nc'],
    ['x', 'y'],
  ];
  for (const [a, b] of cases) assert.equal(unifiedDiff(a, b, { fromLabel: 'a', toLabel: 'b' }), gnuDiff(a, b), JSON.stringify([a, b]));
});

test('60 random edits: every diff applies with patch (and most equal diff -u byte for byte)', () => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  let identical = 0;
  for (let t = 0; t < 60; t++) {
    const n = Math.floor(rnd() * 40);
    const a: string[] = [];
    for (let i = 0; i < n; i++) a.push(`l${Math.floor(rnd() * 8)}`);
    const b = a.filter(() => rnd() > 0.2).map((l) => (rnd() < 0.15 ? `x${Math.floor(rnd() * 3)}` : l));
    for (let k = Math.floor(rnd() * 3); k > 0; k--) b.splice(Math.floor(rnd() * (b.length + 1)), 0, `new${k}`);
    const A = a.join('\n') + (a.length && rnd() < 0.8 ? '\n' : '');
    const B = b.join('\n') + (b.length && rnd() < 0.8 ? '\n' : '');
    const d = unifiedDiff(A, B, { fromLabel: 'a', toLabel: 'b' });
    if (A === B) {
      assert.equal(d, '');
      continue;
    }
    assert.equal(patched(A, d), B);
    if (d === gnuDiff(A, B)) identical++;
  }
  assert.ok(identical > 30, `identical to diff -u: ${identical}/60`);
});

test('caps: too many lines, too many edits, binary, output size', () => {
  const big = Array.from({ length: 30000 }, (_, i) => `line ${i}`).join('\n');
  assert.match(unifiedDiff(big, `${big}\nmore`), /^diff omitted: too many lines/);
  const a = Array.from({ length: 3000 }, (_, i) => `a${i}`).join('\n');
  const b = Array.from({ length: 3000 }, (_, i) => `b${i}`).join('\n');
  assert.match(unifiedDiff(a, b, { maxEdits: 500 }), /^diff omitted: too many differences/);
  assert.match(unifiedDiff('a\u0000b', 'a'), /^diff omitted: binary content/);
  const cut = unifiedDiff(a.slice(0, 2000), b.slice(0, 2000), { maxChars: 1000 });
  assert.ok(cut.length < 1100, `${cut.length}`);
  assert.match(cut, /diff cut at 1000 characters/);
});

test('a large file with a small change is fast and correct', () => {
  const lines = Array.from({ length: 15000 }, (_, i) => `line ${i}`);
  const a = `${lines.join('\n')}\n`;
  lines[7000] = 'changed';
  lines.splice(100, 1);
  const b = `${lines.join('\n')}\n`;
  const t0 = performance.now();
  const d = unifiedDiff(a, b, { fromLabel: 'a', toLabel: 'b' });
  assert.ok(performance.now() - t0 < 500);
  assert.equal(d, gnuDiff(a, b));
});
