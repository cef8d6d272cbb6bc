// The process-wide set of secret strings, and mask() that hides them in any text before it is printed
// or written to a log, a report or a host.
//
// Decisions (documented in docs/inventory.md and docs/security.md):
// - A secret must be at least MIN_SECRET_LENGTH (4) characters. Shorter values are REFUSED:
//   registerSecret() throws a RangeError. Masking "ab" everywhere would garble all output, and not masking
//   it would print it, so neither is acceptable; a credential that short is a configuration mistake
//   (the inventory turns it into an InputError naming the env var and the file:line of the reference).
// - Each secret is also registered in every form it can take in what wpfarm prints or writes (encodings()):
//   shell-quoted by zx's quote() (the escaped body of $'...', so a quoted secret inside a larger quoted
//   command is caught too), JSON-escaped, URL-encoded, HTML-escaped (the timeline), each of those encoded
//   once more (a quoted secret in a JSON report, a JSON string inside a shell command...), and base64 at
//   each of the three byte alignments (only the characters that depend on the secret alone, >= 8 of them);
//   each line (>= 8 characters) of a multiline secret on its own, so that a key printed with other line ends
//   or only in part is hidden too.
// - mask() replaces every occurrence with "***", longest form first (so a secret that contains another
//   one is hidden whole). maskDeep() masks every string (and key) of a value BEFORE it is serialised:
//   serialising first would create encodings of encodings that no list can foresee.
import { quote } from 'zx/core';

export const MIN_SECRET_LENGTH = 4;
export const MASK = '***';

const secretSet = new Set<string>();
/** secrets indexed by their first MIN_SECRET_LENGTH characters, each bucket longest first. A scan with
 *  this index costs one map lookup per character of text, whatever the number of secrets (a regular
 *  expression alternation of 2,800 secrets was ~25x slower, measured here). */
const byPrefix = new Map<string, string[]>();
/** the first two UTF-16 units of every secret as one number: a cheap first filter per position */
const first2 = new Set<number>();
const pair = (s: string, i: number): number => s.charCodeAt(i) * 65536 + s.charCodeAt(i + 1);

/** Register a secret; returns the value for convenience. Throws RangeError for values shorter than 4. */
export function registerSecret(value: string): string {
  if (typeof value !== 'string') throw new TypeError('registerSecret: value must be a string');
  if (value.length < MIN_SECRET_LENGTH) {
    // never include the value itself in the message
    throw new RangeError(`a secret must be at least ${MIN_SECRET_LENGTH} characters long (got ${value.length})`);
  }
  for (const f of encodings(value)) {
    if (f.length >= MIN_SECRET_LENGTH && !secretSet.has(f)) {
      secretSet.add(f);
      first2.add(pair(f, 0));
      const key = f.slice(0, MIN_SECRET_LENGTH);
      const bucket = byPrefix.get(key);
      if (bucket) {
        bucket.push(f);
        bucket.sort((a, b) => b.length - a.length);
      } else byPrefix.set(key, [f]);
    }
  }
  return value;
}

/** The body of zx's quote(): what stands between $' and ' (quote() returns safe words as they are). */
export function shellEscaped(s: string): string {
  const q = quote(s);
  return q.startsWith("$'") && q.endsWith("'") ? q.slice(2, -1) : q;
}
const jsonEscaped = (s: string): string => JSON.stringify(s).slice(1, -1);
const htmlEscaped = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
const ENCODERS: ReadonlyArray<(s: string) => string> = [shellEscaped, jsonEscaped, encodeURIComponent, htmlEscaped];

/** The base64 text of `value` at each byte alignment, keeping only the characters no neighbour changes. */
function base64Forms(value: string): string[] {
  const bytes = Buffer.from(value, 'utf8');
  const out = [bytes.toString('base64')];
  for (let k = 0; k < 3; k++) {
    const b = Buffer.concat([Buffer.alloc(k), bytes]).toString('base64');
    const core = b.slice(k ? 4 : 0, 4 * Math.floor((k + bytes.length) / 3));
    if (core.length >= 8) out.push(core);
  }
  return out;
}

/** Lines of a multiline secret this long are hidden on their own too (a key printed with other line ends, or cut). */
export const MIN_SECRET_LINE = 8;

/** Every form of `value` that mask() hides: raw, each encoding, each encoding of an encoding, base64. */
export function encodings(value: string): Set<string> {
  const forms = new Set<string>([value, quote(value)]); // quote() whole first: `echo ***` rather than `echo $'***'`
  if (/[\r\n]/.test(value)) for (const l of value.split(/\r?\n|\r/)) if (l.trim().length >= MIN_SECRET_LINE) forms.add(l);
  for (const e1 of ENCODERS) {
    const once = e1(value);
    forms.add(once);
    for (const e2 of ENCODERS) forms.add(e2(once));
  }
  for (const b of base64Forms(value)) forms.add(b);
  return forms;
}

/** true when `value` is a registered secret (raw form) */
export function isSecret(value: string): boolean {
  return secretSet.has(value);
}

/** number of registered strings (including the derived forms) */
export function secretCount(): number {
  return secretSet.size;
}

/** Replace every registered secret in `text` with "***", longest first. */
export function mask(text: string): string {
  if (secretSet.size === 0 || !text || text.length < MIN_SECRET_LENGTH) return text;
  let out = '';
  let last = 0;
  let found = false;
  const end = text.length - MIN_SECRET_LENGTH;
  for (let i = 0; i <= end; i++) {
    if (!first2.has(pair(text, i))) continue;
    const bucket = byPrefix.get(text.slice(i, i + MIN_SECRET_LENGTH));
    if (!bucket) continue;
    for (const s of bucket) {
      if (text.startsWith(s, i)) {
        out += text.slice(last, i) + MASK;
        last = i + s.length;
        i = last - 1;
        found = true;
        break;
      }
    }
  }
  return found ? out + text.slice(last) : text;
}

/** true when `text` holds a registered secret in any of its forms */
export function containsSecret(text: string): boolean {
  return mask(text) !== text;
}

/**
 * A copy of `value` with every string (and object key) masked, to serialise afterwards (JSON report,
 * timeline, audit and lock lines). Functions and symbols are left out as JSON.stringify would; Maps, Sets
 * and class instances become plain objects/arrays of their enumerable fields.
 */
export function maskDeep<T>(value: T): T {
  // every event of a run goes through here: no Object.entries arrays, and the map of objects already copied (shared
  // references and cycles keep their shape) only made for a value that holds objects
  let seen: Map<object, unknown> | undefined;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return mask(v);
    if (v === null || typeof v !== 'object') return v;
    const toJSON = (v as { toJSON?: unknown }).toJSON;
    if (typeof toJSON === 'function') return walk(toJSON.call(v)); // Date, Buffer...: what JSON.stringify would write
    seen ??= new Map();
    const copied = seen.get(v);
    if (copied !== undefined) return copied;
    if (Array.isArray(v) || v instanceof Set) {
      const arr: unknown[] = [];
      seen.set(v, arr);
      for (const x of v) arr.push(walk(x));
      return arr;
    }
    const o: Record<string, unknown> = {};
    seen.set(v, o);
    if (v instanceof Map) for (const [k, x] of v) o[mask(String(k))] = walk(x);
    else {
      const rec = v as Record<string, unknown>;
      for (const k in rec) if (Object.hasOwn(rec, k)) o[mask(k)] = walk(rec[k]);
    }
    return o;
  };
  return walk(value) as T;
}

/**
 * `value` itself when maskDeep() would give an equal copy (no registered secret in any string or key, and nothing
 * that maskDeep converts: no Map, Set or toJSON), else maskDeep(value). For values that are read or serialised,
 * never mutated: a run's ~80 events per host and its report are walked without being copied.
 */
export function maskedView<T>(value: T): T {
  if (secretSet.size === 0) return plainTree(value, 0) ? value : maskDeep(value);
  return unchangedByMask(value, 0) ? value : maskDeep(value);
}

/** deeper than this, maskDeep() copies (a cycle or a very deep value: its own `seen` handles it) */
const MAX_VIEW_DEPTH = 64;

/** nothing in `v` is converted by maskDeep (no Map, Set, toJSON), whatever the strings */
function plainTree(v: unknown, depth: number): boolean {
  if (v === null || typeof v !== 'object') return true;
  if (depth > MAX_VIEW_DEPTH || v instanceof Map || v instanceof Set) return false;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return false;
  if (Array.isArray(v)) {
    for (const x of v) if (!plainTree(x, depth + 1)) return false;
    return true;
  }
  const rec = v as Record<string, unknown>;
  for (const k in rec) if (Object.hasOwn(rec, k) && !plainTree(rec[k], depth + 1)) return false;
  return true;
}

/** plainTree(), and mask() leaves every string and key of `v` as it is */
function unchangedByMask(v: unknown, depth: number): boolean {
  if (typeof v === 'string') return mask(v) === v;
  if (v === null || typeof v !== 'object') return true;
  if (depth > MAX_VIEW_DEPTH || v instanceof Map || v instanceof Set) return false;
  if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return false;
  if (Array.isArray(v)) {
    for (const x of v) if (!unchangedByMask(x, depth + 1)) return false;
    return true;
  }
  const rec = v as Record<string, unknown>;
  for (const k in rec) if (Object.hasOwn(rec, k) && (mask(k) !== k || !unchangedByMask(rec[k], depth + 1))) return false;
  return true;
}

/** For tests only: forget every secret. */
export function clearSecretsForTests(): void {
  secretSet.clear();
  byPrefix.clear();
  first2.clear();
}
