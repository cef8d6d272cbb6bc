// known_hosts with OpenSSH's semantics (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT", match.c, hostfile.c):
// - a line is `[marker] patterns keytype base64-key [comment]`; blank lines and `#` comments are skipped, and so
//   are lines OpenSSH would skip (unknown marker, too few fields, a key that is not base64 of its own type);
// - patterns: comma-separated, `*` and `?` wildcards, matched case-insensitively against the host name, which is
//   `address` for port 22 and `[address]:port` otherwise; a `!pattern` that matches makes the whole line NOT
//   apply to the host, whatever else matches (negation wins);
// - hashed names `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` (ssh-keygen -H), one name per pattern;
// - `@revoked`: the key on that line is refused for the hosts the line matches, even when another line trusts it
//   (OpenSSH: "REVOKED HOST KEY DETECTED");
// - `@cert-authority`: the line names a CA that signs host certificates. wpfarm's SSH client (ssh2) does not
//   negotiate host certificates, so a host that has CA lines and no plain key line is REFUSED with a message
//   that says so (never accepted as new: that would bypass the CA the operator configured).
// The file is parsed once per run (and again when it changes): plain names indexed, the rest scanned (hundreds of
// hosts would otherwise read and parse the whole file once each).
// A presented key that matches no plain line of a host that has other keys is a changed key (refused, stricter
// than OpenSSH's per-type lookup); an unknown host is recorded only with acceptNew.
import { createHash, createHmac } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { HostSpec } from './types.ts';

export type KnownHostMarker = 'revoked' | 'cert-authority';

export interface KnownHostEntry {
  /** the line's marker, if any */
  marker?: KnownHostMarker;
  /** host patterns ("!" negations included), or one hashed "|1|salt|hash" */
  patterns: string[];
  type: string;
  /** base64 blob as written */
  key: string;
  /** 1-based line number */
  line: number;
}

/** The name a host is known by: `address` on port 22, `[address]:port` otherwise (as OpenSSH writes it). */
export function knownHostName(address: string, port: number): string {
  return port === 22 ? address : `[${address}]:${port}`;
}

/** The key type written inside an SSH public key blob (string length + name), or '' when the blob is not one. */
export function keyType(blob: Buffer): string {
  if (blob.length < 4) return '';
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || blob.length < 4 + len) return '';
  return blob.subarray(4, 4 + len).toString('ascii');
}

export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Parse a known_hosts text. Lines OpenSSH would skip are skipped. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const parts = line.split(/[ \t]+/);
    let marker: KnownHostMarker | undefined;
    if (parts[0]!.startsWith('@')) {
      const m = parts.shift()!;
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else return; // OpenSSH: invalid marker, line ignored
    }
    if (parts.length < 3) return;
    const [patterns, type, key] = parts as [string, string, string];
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(key) || keyType(Buffer.from(key, 'base64')) !== type) return;
    out.push({ marker, patterns: patterns.split(','), type, key, line: i + 1 });
  });
  return out;
}

/** OpenSSH's match_pattern: `*` any run of characters, `?` one character, the rest literal (case-insensitive here). */
export function wildcardMatch(pattern: string, name: string): boolean {
  const p = pattern.toLowerCase();
  const s = name.toLowerCase();
  // iterative glob with backtracking on the last star (linear in practice, no regular expression built from input)
  let pi = 0;
  let si = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    if (pi < p.length && (p[pi] === '?' || (p[pi] !== '*' && p[pi] === s[si]))) {
      pi++;
      si++;
    } else if (pi < p.length && p[pi] === '*') {
      star = pi++;
      mark = si;
    } else if (star >= 0) {
      pi = star + 1;
      si = ++mark;
    } else return false;
  }
  while (pi < p.length && p[pi] === '*') pi++;
  return pi === p.length;
}

function hashedMatch(pattern: string, name: string): boolean {
  const [, , salt, hash] = pattern.split('|');
  if (!salt || !hash) return false;
  return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
}

/** Does the entry apply to `name`? (match_hostname: a matching negation excludes, else any positive match.) */
export function entryMatches(e: KnownHostEntry, name: string): boolean {
  if (e.patterns.length === 1 && e.patterns[0]!.startsWith('|1|')) return hashedMatch(e.patterns[0]!, name.toLowerCase());
  let positive = false;
  for (const p of e.patterns) {
    if (p.startsWith('!')) {
      if (wildcardMatch(p.slice(1), name)) return false;
    } else if (!positive && wildcardMatch(p, name)) positive = true;
  }
  return positive;
}

/** Every entry (any marker) that applies to `name`, in file order. */
export function entriesForHost(entries: KnownHostEntry[], name: string): KnownHostEntry[] {
  return entries.filter((e) => entryMatches(e, name));
}

/** The plain (unmarked) entries that apply to `name`. */
export function keysForHost(entries: KnownHostEntry[], name: string): KnownHostEntry[] {
  return entriesForHost(entries, name).filter((e) => !e.marker);
}

/** A file's identity for caches: mtime, size, inode ('missing' when it does not exist). */
export function fileStamp(file: string): string {
  try {
    const st = statSync(file);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    return 'missing';
  }
}

interface KnownHostsIndex {
  stamp: string;
  /** entries whose patterns are all plain names (no wildcard, negation or hash), by lowercased name */
  byName: Map<string, KnownHostEntry[]>;
  /** the others, matched one by one */
  scanned: KnownHostEntry[];
}
const cache = new Map<string, KnownHostsIndex>();

function indexOf(file: string): KnownHostsIndex {
  const stamp = fileStamp(file);
  const cached = cache.get(file);
  if (cached?.stamp === stamp) return cached;
  const idx: KnownHostsIndex = { stamp, byName: new Map(), scanned: [] };
  for (const e of parseKnownHosts(stamp === 'missing' ? '' : readFileSync(file, 'utf8'))) {
    if (e.patterns.some((p) => p.startsWith('|') || p.startsWith('!') || p.includes('*') || p.includes('?'))) {
      idx.scanned.push(e);
      continue;
    }
    for (const p of new Set(e.patterns.map((x) => x.toLowerCase()))) {
      const list = idx.byName.get(p) ?? [];
      list.push(e);
      idx.byName.set(p, list);
    }
  }
  cache.set(file, idx);
  return idx;
}

/** Every entry (any marker) of a known_hosts file that applies to `name`, in file order (cached index). */
export function knownHostsFor(file: string, name: string): KnownHostEntry[] {
  const idx = indexOf(file);
  const plain = idx.byName.get(name.toLowerCase()) ?? [];
  const scanned = idx.scanned.length ? entriesForHost(idx.scanned, name) : [];
  return scanned.length ? [...plain, ...scanned].sort((a, b) => a.line - b.line) : plain;
}

/** The plain (unmarked) entries of a known_hosts file for `name` (the keys a host may present). */
export function knownKeysFor(file: string, name: string): KnownHostEntry[] {
  return knownHostsFor(file, name).filter((e) => !e.marker);
}

export type HostKeyVerdict = { ok: true; recorded?: boolean } | { ok: false; reason: string };

/** Decide on a key presented by `host`, from the known_hosts `text` (pure; `file` names it in messages). */
export function judgeHostKey(
  text: string,
  file: string,
  host: Pick<HostSpec, 'address' | 'port'>,
  blob: Buffer,
): HostKeyVerdict | 'unknown' {
  const name = knownHostName(host.address, host.port);
  return judge(entriesForHost(parseKnownHosts(text), name), file, name, blob);
}

/** The decision from the entries that apply to the host. */
function judge(mine: KnownHostEntry[], file: string, name: string, blob: Buffer): HostKeyVerdict | 'unknown' {
  const b64 = blob.toString('base64');
  const same = (e: KnownHostEntry) => Buffer.from(e.key, 'base64').equals(blob);
  const desc = `${keyType(blob) || 'unknown type'} ${fingerprint(blob)}`;
  const revoked = mine.find((e) => e.marker === 'revoked' && same(e));
  if (revoked) {
    return {
      ok: false,
      reason:
        `REVOKED HOST KEY DETECTED for ${name}: it presented ${desc}, which ${file} line ${revoked.line} marks @revoked. ` +
        `This could mean that a stolen key is being used to impersonate this host. Refused.`,
    };
  }
  const plain = mine.filter((e) => !e.marker);
  if (plain.some((e) => e.key === b64 || same(e))) return { ok: true };
  if (plain.length > 0) {
    const lines = plain.map((e) => e.line).join(', ');
    return {
      ok: false,
      reason:
        `HOST KEY CHANGED for ${name}: it presented ${desc}, which does not match ` +
        `${file} line ${lines}. This can mean a man-in-the-middle attack or a rebuilt host. ` +
        `If the host was rebuilt on purpose, remove line ${lines} of ${file} and reconnect with --accept-new-host-keys.`,
    };
  }
  const cas = mine.filter((e) => e.marker === 'cert-authority');
  if (cas.length > 0) {
    return {
      ok: false,
      reason:
        `${name} is to be trusted through a host certificate (@cert-authority, ${file} line ${cas.map((e) => e.line).join(', ')}), ` +
        `but wpfarm's SSH client does not support host certificates; it presented the plain key ${desc}. Refused. ` +
        `Add the host's own key to ${file} (ssh-keyscan, checked against the CA-signed certificate) to connect with wpfarm.`,
    };
  }
  return 'unknown';
}

/** Decide on a presented host key; an unknown host is recorded (0600 file, 0700 directory) only with acceptNew. */
export function verifyHostKey(file: string, host: HostSpec, blob: Buffer, acceptNew: boolean): HostKeyVerdict {
  const name = knownHostName(host.address, host.port);
  const v = judge(knownHostsFor(file, name), file, name, blob);
  if (v !== 'unknown') return v;
  if (!acceptNew) {
    return {
      ok: false,
      reason:
        `unknown host key for ${name} (${keyType(blob)} ${fingerprint(blob)}), not in ${file}. ` +
        `Verify the fingerprint, then rerun with --accept-new-host-keys to record it.`,
    };
  }
  const created = !existsSync(dirname(file));
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  if (created) chmodSync(dirname(file), 0o700);
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const sep = text && !text.endsWith('\n') ? '\n' : '';
  appendFileSync(file, `${sep}${name} ${keyType(blob)} ${blob.toString('base64')}\n`, { mode: 0o600 });
  cache.delete(file);
  return { ok: true, recorded: true };
}
