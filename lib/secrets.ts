// The process-wide set of secret strings, and mask() that hides them in any text before it is printed
// or written to a log.
//
// Decisions (documented in docs/inventory.md):
// - A secret must be at least MIN_SECRET_LENGTH (4) characters. Shorter values are REFUSED:
//   registerSecret() throws a RangeError. Masking "ab" everywhere would garble all output, and not masking
//   it would print it, so neither is acceptable; a credential that short is a configuration mistake
//   (the inventory turns it into an InputError naming the env var and the file:line of the reference).
// - Each secret is also registered in the forms it commonly takes in output: shell-quoted by zx's quote()
//   (e.g. $'it\'s'), JSON-escaped, and URL-encoded, when those differ from the raw value.
// - mask() replaces every occurrence with "***", longest secret first (so a secret that contains another
//   one is hidden whole).

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
  const forms = new Set<string>([value]);
  try {
    forms.add(quote(value));
  } catch {
    /* quote() refuses nothing today; keep going if it ever does */
  }
  forms.add(JSON.stringify(value).slice(1, -1));
  forms.add(encodeURIComponent(value));
  for (const f of forms) {
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

/** For tests only: forget every secret. */
export function clearSecretsForTests(): void {
  secretSet.clear();
  byPrefix.clear();
  first2.clear();
}
