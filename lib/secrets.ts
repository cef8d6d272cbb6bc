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

import { quote } from 'zx';

export const MIN_SECRET_LENGTH = 4;
export const MASK = '***';

const secretSet = new Set<string>();
let pattern: RegExp | null = null;

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

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
  let added = false;
  for (const f of forms) {
    if (f.length >= MIN_SECRET_LENGTH && !secretSet.has(f)) {
      secretSet.add(f);
      added = true;
    }
  }
  if (added) pattern = null;
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
  if (secretSet.size === 0 || !text) return text;
  if (!pattern) {
    const sorted = [...secretSet].sort((a, b) => b.length - a.length);
    pattern = new RegExp(sorted.map(escapeRe).join('|'), 'g');
  }
  return text.replace(pattern, MASK);
}

/** For tests only: forget every secret. */
export function clearSecretsForTests(): void {
  secretSet.clear();
  pattern = null;
}
