// Unified diff of two texts (Myers' O(ND) algorithm, linear-space variant not needed at our sizes).
// Written for the engine's --diff output: `diff -u` compatible hunks, 3 lines of context by default,
// "\ No newline at end of file" markers, and caps so that a huge or wildly different file never
// burns the controller's CPU: beyond the caps the diff is replaced by a one-line note.

export interface DiffOptions {
  /** label of the old text ("--- label"); default "before" */
  fromLabel?: string;
  /** label of the new text ("+++ label"); default "after" */
  toLabel?: string;
  /** lines of context around each change; default 3 */
  context?: number;
  /** max total lines (old + new) to diff; default 40000 */
  maxLines?: number;
  /** max edit distance explored before giving up (memory grows with its square); default 1500 */
  maxEdits?: number;
  /** max output characters; default 200000 (the rest is cut with a note) */
  maxChars?: number;
}

/** One edit script entry: ' ' kept, '-' removed, '+' added, with the line text (no newline). */
interface Edit {
  op: ' ' | '-' | '+';
  text: string;
  /** the line lacks a final newline (last line of a text that does not end with one) */
  noEol: boolean;
}

interface Lines {
  lines: string[];
  /** last line has no trailing newline */
  noEol: boolean;
}

function splitLines(text: string): Lines {
  if (text === '') return { lines: [], noEol: false };
  const noEol = !text.endsWith('\n');
  const body = noEol ? text : text.slice(0, -1);
  return { lines: body.split('\n'), noEol };
}

/**
 * Myers' greedy shortest edit script. Returns null when the edit distance exceeds maxEdits.
 * Lines are compared as strings, except that the last line of each side also carries its "no newline"
 * flag (so "a" vs "a\n" is a change, as in diff -u).
 */
function myers(a: string[], b: string[], maxEdits: number): Edit[] | null {
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, maxEdits);
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  // trace[d] holds V[-d-1 .. d+1] as it was before step d (memory ~ D², hence the maxEdits cap)
  const trace: Int32Array[] = [];
  let found = -1;
  outer: for (let d = 0; d <= max; d++) {
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x: number;
      if (k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!)) x = v[offset + k + 1]!;
      else x = v[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break outer;
      }
    }
  }
  if (found < 0) return null;
  // Backtrack through the saved V arrays.
  const edits: Edit[] = [];
  let x = n;
  let y = m;
  for (let d = found; d > 0; d--) {
    const vd = trace[d]!; // V before step d was computed = V after step d-1
    const at = (kk: number): number => vd[kk + d + 1]!;
    const k = x - y;
    let prevK: number;
    if (k === -d || (k !== d && at(k - 1) < at(k + 1))) prevK = k + 1;
    else prevK = k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      edits.push({ op: ' ', text: a[x - 1]!, noEol: false });
      x--;
      y--;
    }
    if (x === prevX) edits.push({ op: '+', text: b[y - 1]!, noEol: false });
    else edits.push({ op: '-', text: a[x - 1]!, noEol: false });
    x = prevX;
    y = prevY;
  }
  while (x > 0 && y > 0) {
    edits.push({ op: ' ', text: a[x - 1]!, noEol: false });
    x--;
    y--;
  }
  edits.reverse();
  // Within each run of changes put removals before additions, as diff -u does.
  for (let i = 0; i < edits.length; ) {
    if (edits[i]!.op === ' ') {
      i++;
      continue;
    }
    let j = i;
    while (j < edits.length && edits[j]!.op !== ' ') j++;
    const run = edits.slice(i, j);
    edits.splice(i, j - i, ...run.filter((e) => e.op === '-'), ...run.filter((e) => e.op === '+'));
    i = j;
  }
  return edits;
}

const NO_EOL = '\u0000noeol'; // sentinel appended to a last line without newline (never in real text lines)

/** Is the text binary (contains NUL)? */
export function isBinary(text: string | Buffer): boolean {
  return typeof text === 'string' ? text.includes('\u0000') : text.includes(0);
}

/**
 * Unified diff of two texts. Returns '' when they are equal. When the caps are exceeded the result is
 * a single line starting with "diff omitted:".
 */
export function unifiedDiff(before: string, after: string, opts: DiffOptions = {}): string {
  if (before === after) return '';
  const from = opts.fromLabel ?? 'before';
  const to = opts.toLabel ?? 'after';
  const ctxN = opts.context ?? 3;
  const maxLines = opts.maxLines ?? 40000;
  const maxEdits = opts.maxEdits ?? 1500;
  const maxChars = opts.maxChars ?? 200000;
  if (isBinary(before) || isBinary(after)) return `diff omitted: binary content (${byteLen(before)} -> ${byteLen(after)} bytes)`;
  const A = splitLines(before);
  const B = splitLines(after);
  if (A.lines.length + B.lines.length > maxLines) {
    return `diff omitted: too many lines (${A.lines.length} -> ${B.lines.length}, cap ${maxLines})`;
  }
  const a = A.lines.slice();
  const b = B.lines.slice();
  if (A.noEol && a.length) a[a.length - 1] += NO_EOL;
  if (B.noEol && b.length) b[b.length - 1] += NO_EOL;
  // Trim the common prefix and suffix first: cheap and keeps Myers' work to the changed region.
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const mid = myers(a.slice(pre, a.length - suf), b.slice(pre, b.length - suf), maxEdits);
  if (!mid) return `diff omitted: too many differences (more than ${maxEdits} edits)`;
  const edits: Edit[] = [
    ...a.slice(0, pre).map((text): Edit => ({ op: ' ', text, noEol: false })),
    ...mid,
    ...a.slice(a.length - suf).map((text): Edit => ({ op: ' ', text, noEol: false })),
  ];
  for (const e of edits) {
    if (e.text.endsWith(NO_EOL)) {
      e.text = e.text.slice(0, -NO_EOL.length);
      e.noEol = true;
    }
  }
  const out: string[] = [`--- ${from}`, `+++ ${to}`];
  // Positions (1-based line numbers) of each edit in the old and new texts.
  const posA: number[] = [];
  const posB: number[] = [];
  let ia = 0;
  let ib = 0;
  for (const e of edits) {
    posA.push(ia);
    posB.push(ib);
    if (e.op !== '+') ia++;
    if (e.op !== '-') ib++;
  }
  const changedIdx: number[] = [];
  edits.forEach((e, i) => {
    if (e.op !== ' ') changedIdx.push(i);
  });
  let chars = out[0]!.length + out[1]!.length + 2;
  let i = 0;
  while (i < changedIdx.length) {
    // Group changes whose context windows overlap into one hunk.
    let start = Math.max(0, changedIdx[i]! - ctxN);
    let endChange = changedIdx[i]!;
    let j = i + 1;
    while (j < changedIdx.length && changedIdx[j]! - endChange - 1 <= 2 * ctxN) {
      endChange = changedIdx[j]!;
      j++;
    }
    const end = Math.min(edits.length - 1, endChange + ctxN);
    let countA = 0;
    let countB = 0;
    const body: string[] = [];
    for (let k = start; k <= end; k++) {
      const e = edits[k]!;
      if (e.op !== '+') countA++;
      if (e.op !== '-') countB++;
      body.push(`${e.op}${e.text}`);
      if (e.noEol) body.push('\\ No newline at end of file');
    }
    const startA = countA === 0 ? posA[start]! : posA[start]! + 1;
    const startB = countB === 0 ? posB[start]! : posB[start]! + 1;
    const header = `@@ -${range(startA, countA)} +${range(startB, countB)} @@`;
    for (const line of [header, ...body]) {
      chars += line.length + 1;
      if (chars > maxChars) {
        out.push(`... diff cut at ${maxChars} characters`);
        return out.join('\n') + '\n';
      }
      out.push(line);
    }
    start = end + 1;
    i = j;
  }
  return out.join('\n') + '\n';
}

function range(start: number, count: number): string {
  return count === 1 ? `${start}` : `${start},${count}`;
}

function byteLen(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}
