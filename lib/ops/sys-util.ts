// Small helpers shared by the system and docker operations (apt, systemd, users, command, docker).
//
// Probe output format inside ONE operation's probe: `%%name` lines start named parts (the runner's own
// section markers are `@@...` lines, so the two never collide), and `key=value` lines carry scalars.
// Binary-safe content travels base64-encoded on one line.
import { createHash } from 'node:crypto';
import { InputError } from '../errors.ts';
import { unifiedDiff } from '../diff.ts';

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

export const nonEmptyLines = (s: string): string[] =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

export const b64decode = (s: string): string => Buffer.from(s.replace(/\s+/g, ''), 'base64').toString('utf8');

export const sha256 = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

/** Throw an InputError unless the value matches. */
export function check(ok: boolean, what: string, value: unknown): void {
  if (!ok) throw new InputError(`invalid ${what}: ${JSON.stringify(value)}`);
}

const NAME = /^[a-z_][a-z0-9_.-]*\$?$/i;
/** POSIX-ish user/group name as accepted by Debian's useradd (no leading '-'). */
export const validAccountName = (s: string): boolean => NAME.test(s) && s.length <= 32;

/** Unified diff (lib/diff.ts), both sides labelled with the path. */
export function lineDiff(oldText: string, newText: string, label = 'file'): string {
  return unifiedDiff(oldText, newText, { fromLabel: label, toLabel: label });
}
