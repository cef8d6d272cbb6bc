// Small helpers shared by the system and docker operations (apt, systemd, users, command, docker).
//
// Probe output format inside ONE operation's probe: `%%name` lines start named parts (the runner's own
// section markers are `@@...` lines, so the two never collide), and `key=value` lines carry scalars.
// Binary-safe content travels base64-encoded on one line.
import { createHash } from 'node:crypto';
import { InputError } from '../errors.ts';

/** Split a probe's output into `%%name` parts (text before the first marker is part ''). */
export function parts(out: string): Map<string, string> {
  const map = new Map<string, string>();
  let name = '';
  let buf: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^%%([A-Za-z0-9_.:-]+)$/.exec(line);
    if (m) {
      map.set(name, buf.join('\n'));
      name = m[1]!;
      buf = [];
    } else buf.push(line);
  }
  map.set(name, buf.join('\n'));
  return map;
}

/** `key=value` lines → record (first '=' splits; later duplicates win). */
export function keyValues(s: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const l of s.split('\n')) {
    const i = l.indexOf('=');
    if (i > 0) r[l.slice(0, i).trim()] = l.slice(i + 1).trim();
  }
  return r;
}

export const nonEmptyLines = (s: string): string[] => s.split('\n').map((l) => l.trim()).filter(Boolean);

export const b64decode = (s: string): string => Buffer.from(s.replace(/\s+/g, ''), 'base64').toString('utf8');

export const sha256 = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

/** Throw an InputError unless the value matches. */
export function check(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw new InputError(`invalid ${what}: ${JSON.stringify(value)}`);
}

const NAME = /^[a-z_][a-z0-9_.-]*\$?$/i;
/** POSIX-ish user/group name as accepted by Debian's useradd (no leading '-'). */
export const validAccountName = (s: string): boolean => NAME.test(s) && s.length <= 32;

/**
 * Unified diff of two texts (line based, 3 lines of context). Small inputs only (unit files, stack
 * files): LCS table, bounded; beyond the bound a one-line summary is returned instead.
 */
export function lineDiff(oldText: string, newText: string, label = 'file'): string {
  if (oldText === newText) return '';
  const a = splitLines(oldText);
  const b = splitLines(newText);
  const n = a.length;
  const m = b.length;
  if (n * m > 4_000_000) return `--- ${label}\n+++ ${label}\n@@ ${n} lines -> ${m} lines (too large to diff) @@\n`;
  // lcs[i][j] = LCS length of a[i..], b[j..]
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  type L = { t: ' ' | '-' | '+'; s: string; ai: number; bi: number };
  const ops: L[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) ops.push({ t: ' ', s: a[i]!, ai: i++, bi: j++ });
    else if (j < m && (i >= n || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) ops.push({ t: '+', s: b[j]!, ai: i, bi: j++ });
    else ops.push({ t: '-', s: a[i]!, ai: i++, bi: j });
  }
  const out = [`--- ${label}`, `+++ ${label}`];
  const C = 3;
  let k = 0;
  while (k < ops.length) {
    if (ops[k]!.t === ' ') {
      k++;
      continue;
    }
    let start = Math.max(0, k - C);
    let end = k;
    // extend the hunk while changes are within 2*C lines of each other
    let last = k;
    for (let x = k; x < ops.length; x++) {
      if (ops[x]!.t !== ' ') last = x;
      else if (x - last > 2 * C) break;
      end = x;
    }
    end = Math.min(ops.length - 1, last + C);
    const h = ops.slice(start, end + 1);
    const aStart = h[0]!.ai;
    const bStart = h[0]!.bi;
    const aLen = h.filter((o) => o.t !== '+').length;
    const bLen = h.filter((o) => o.t !== '-').length;
    out.push(`@@ -${aLen ? aStart + 1 : aStart},${aLen} +${bLen ? bStart + 1 : bStart},${bLen} @@`);
    for (const o of h) out.push(o.t + o.s);
    k = end + 1;
    start = k;
  }
  return out.join('\n') + '\n';
}

function splitLines(s: string): string[] {
  if (s === '') return [];
  const l = s.split('\n');
  if (l[l.length - 1] === '') l.pop();
  return l;
}
