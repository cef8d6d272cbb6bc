// Old URL → new URL in one database value, safe for PHP-serialized data (what WordPress stores with
// maybe_serialize(): options, postmeta, usermeta, widgets...). wp-cli is not available here, so this is ours.
//
// - A value that looks serialized (WordPress's is_serialized(): `N;`, `b:`, `i:`, `d:`, `s:`, `a:`, `O:`, `C:`,
//   `E:` ... ending in `;` or `}`) is parsed; every string inside (at any depth, in arrays and objects) is
//   rewritten the same way (a string that is itself serialized, as WordPress's double serialization makes, is
//   parsed in turn) and its length `s:N:` recomputed in BYTES of UTF-8 (what PHP counts in a utf8mb4 column).
//   Array keys and property names are kept as they are (as wp-cli's search-replace does).
// - A value that looks serialized but does not parse (a wrong length, a truncated value, an encoding the lengths
//   were not counted in) is LEFT AS IT IS and reported: a rewrite would break it for good.
// - `C:` (Serializable) payloads and references are opaque: kept, reported when they hold an old URL.
// - Anything else is plain text: replaced where the old URL stands as a whole origin (not `old.example.org` for
//   `old.example`), in its JSON-escaped form too (`http:\/\/old.example`, as block attributes hold it).

export interface UrlPair {
  from: string;
  to: string;
}

export interface RewriteResult {
  value: string;
  /** occurrences replaced */
  replaced: number;
  /** why (parts of) the value were left as they were; empty when all went well */
  problems: string[];
}

const MAX_DEPTH = 512;

class Malformed extends Error {}

/** The pairs to apply: each one as given, and its JSON-escaped form (`/` → `\/`) when that differs. */
export function expandPairs(pairs: readonly UrlPair[]): UrlPair[] {
  const out: UrlPair[] = [];
  const seen = new Set<string>();
  const add = (p: UrlPair) => {
    if (p.from && !seen.has(p.from)) {
      seen.add(p.from);
      out.push(p);
    }
  };
  for (const p of pairs) {
    add(p);
    add({ from: p.from.replaceAll('/', '\\/'), to: p.to.replaceAll('/', '\\/') });
  }
  // longest first: `https://old.example/blog` before `https://old.example`
  return out.sort((a, b) => b.from.length - a.from.length);
}

/**
 * Could `s` be a serialized value? WordPress's is_serialized() also wants the last character to be `;` or `}`;
 * this does not, so that a truncated serialized value is refused (left as it is) rather than replaced as text.
 */
export function looksSerialized(s: string): boolean {
  const t = s.trim();
  return t === 'N;' || /^(?:[aOCE]:\d+:|s:\d+:"|[bid]:[^;]{1,40};$)/.test(t);
}

/** A host name goes on after the match: `old.example` matched in `old.example.org` or `old.example-2`. */
function continuesHost(s: string, end: number): boolean {
  const c = s[end];
  if (c === undefined) return false;
  if (/[A-Za-z0-9_-]/.test(c)) return true;
  return c === '.' && /[A-Za-z0-9]/.test(s[end + 1] ?? '');
}

/** Plain text: every whole occurrence of each pair's `from` replaced. */
export function replacePlain(s: string, pairs: readonly UrlPair[]): { value: string; replaced: number } {
  let replaced = 0;
  let out = '';
  let i = 0;
  outer: while (i < s.length) {
    for (const p of pairs) {
      if (s.startsWith(p.from, i) && !continuesHost(s, i + p.from.length)) {
        out += p.to;
        i += p.from.length;
        replaced++;
        continue outer;
      }
    }
    out += s[i];
    i++;
  }
  return { value: replaced ? out : s, replaced };
}

/** Rewrite one value (see the header). `pairs` from expandPairs(). */
export function rewriteValue(s: string, pairs: readonly UrlPair[]): RewriteResult {
  if (!pairs.some((p) => s.includes(p.from))) return { value: s, replaced: 0, problems: [] };
  if (!looksSerialized(s)) return { ...replacePlain(s, pairs), problems: [] };
  const problems: string[] = [];
  try {
    const r = rewriteSerialized(s, pairs, problems, 0);
    return { value: r.value, replaced: r.replaced, problems };
  } catch (e) {
    if (!(e instanceof Malformed)) throw e;
    return { value: s, replaced: 0, problems: [`malformed serialized value left as it is: ${e.message}`] };
  }
}

function rewriteSerialized(s: string, pairs: readonly UrlPair[], problems: string[], depth: number): { value: string; replaced: number } {
  const lead = s.length - s.trimStart().length;
  const trail = s.trimEnd().length;
  const buf = Buffer.from(s.slice(lead, trail), 'utf8');
  const p = new Parser(buf, pairs, problems, depth);
  p.value(0);
  if (p.pos !== buf.length) throw new Malformed(`${buf.length - p.pos} byte(s) after the value at byte ${p.pos}`);
  return { value: s.slice(0, lead) + Buffer.concat(p.out).toString('utf8') + s.slice(trail), replaced: p.replaced };
}

class Parser {
  pos = 0;
  out: Buffer[] = [];
  replaced = 0;
  constructor(
    private readonly b: Buffer,
    private readonly pairs: readonly UrlPair[],
    private readonly problems: string[],
    private readonly nesting: number,
  ) {}

  private fail(what: string): never {
    throw new Malformed(`${what} at byte ${this.pos}`);
  }
  private expect(ch: string): void {
    if (this.b[this.pos] !== ch.charCodeAt(0)) this.fail(`expected '${ch}'`);
    this.pos++;
  }
  /** bytes up to (not including) `stop`, matching re */
  private until(stop: string, re: RegExp, what: string): string {
    const end = this.b.indexOf(stop, this.pos);
    if (end < 0) this.fail(`unterminated ${what}`);
    const text = this.b.toString('latin1', this.pos, end);
    if (!re.test(text)) this.fail(`bad ${what} '${text.slice(0, 20)}'`);
    this.pos = end + 1;
    return text;
  }
  private copy(from: number): void {
    this.out.push(this.b.subarray(from, this.pos));
  }
  /** `"` + len bytes + `"`; returns the bytes */
  private quoted(len: number): Buffer {
    this.expect('"');
    if (this.pos + len + 1 > this.b.length) this.fail(`string of ${len} byte(s) runs past the end`);
    const bytes = this.b.subarray(this.pos, this.pos + len);
    this.pos += len;
    this.expect('"');
    return bytes;
  }

  /** one value at nesting `depth`; `key`: copied verbatim (array keys, property names) */
  value(depth: number, key = false): void {
    if (depth + this.nesting > MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
    const start = this.pos;
    const t = String.fromCharCode(this.b[this.pos] ?? 0);
    this.pos++;
    if (key && t !== 'i' && t !== 's') this.fail(`array key of type '${t}'`);
    switch (t) {
      case 'N':
        this.expect(';');
        {
          this.copy(start);
          return;
        }
      case 'b':
        this.expect(':');
        this.until(';', /^[01]$/, 'boolean');
        {
          this.copy(start);
          return;
        }
      case 'i':
      case 'r':
      case 'R':
        this.expect(':');
        this.until(';', /^[+-]?\d+$/, 'integer');
        {
          this.copy(start);
          return;
        }
      case 'd':
        this.expect(':');
        this.until(';', /^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|-?INF|NAN)$/, 'float');
        {
          this.copy(start);
          return;
        }
      case 'E': {
        this.expect(':');
        const len = Number(this.until(':', /^\d+$/, 'length'));
        this.quoted(len);
        this.expect(';');
        {
          this.copy(start);
          return;
        }
      }
      case 's': {
        this.expect(':');
        const len = Number(this.until(':', /^\d+$/, 'length'));
        const bytes = this.quoted(len);
        this.expect(';');
        if (key) {
          this.copy(start);
          return;
        }
        {
          this.string(start, bytes);
          return;
        }
      }
      case 'a': {
        this.expect(':');
        const n = Number(this.until(':', /^\d+$/, 'count'));
        this.expect('{');
        this.copy(start);
        this.members(n, depth);
        return;
      }
      case 'O': {
        this.expect(':');
        const len = Number(this.until(':', /^\d+$/, 'length'));
        this.quoted(len);
        this.expect(':');
        const n = Number(this.until(':', /^\d+$/, 'count'));
        this.expect('{');
        this.copy(start);
        this.members(n, depth);
        return;
      }
      case 'C': {
        this.expect(':');
        const len = Number(this.until(':', /^\d+$/, 'length'));
        const cls = this.quoted(len).toString('utf8');
        this.expect(':');
        const dlen = Number(this.until(':', /^\d+$/, 'length'));
        this.expect('{');
        if (this.pos + dlen + 1 > this.b.length) this.fail(`payload of ${dlen} byte(s) runs past the end`);
        const payload = this.b.subarray(this.pos, this.pos + dlen).toString('utf8');
        this.pos += dlen;
        this.expect('}');
        if (this.pairs.some((p) => payload.includes(p.from))) this.problems.push(`custom-serialized ${cls} (C:) kept as it is`);
        {
          this.copy(start);
          return;
        }
      }
      default:
        this.pos--;
        this.fail(`unknown type '${t}'`);
    }
  }

  private members(n: number, depth: number): void {
    for (let k = 0; k < n; k++) {
      this.value(depth + 1, true);
      this.value(depth + 1);
    }
    const at = this.pos;
    this.expect('}');
    this.copy(at);
  }

  /** a string value: rewritten (recursively when itself serialized), its length recomputed */
  private string(start: number, bytes: Buffer): void {
    const text = bytes.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(bytes) || !this.pairs.some((p) => text.includes(p.from))) {
      this.copy(start);
      return;
    }
    let next: string;
    if (looksSerialized(text)) {
      try {
        const r = rewriteSerialized(text, this.pairs, this.problems, this.nesting + 1);
        next = r.value;
        this.replaced += r.replaced;
      } catch (e) {
        if (!(e instanceof Malformed)) throw e;
        this.problems.push(`malformed serialized string inside a serialized value left as it is: ${e.message}`);
        {
          this.copy(start);
          return;
        }
      }
    } else {
      const r = replacePlain(text, this.pairs);
      next = r.value;
      this.replaced += r.replaced;
    }
    const nb = Buffer.from(next, 'utf8');
    this.out.push(Buffer.from(`s:${nb.length}:"`, 'latin1'), nb, Buffer.from('";', 'latin1'));
  }
}
