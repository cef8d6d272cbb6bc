// The one YAML reader of every input file (inventory, site records, cloud config): positions kept.
//
// parseYamlFile() parses one file (YAML 1.2 core schema, duplicate keys and unknown tags refused, every
// syntax error reported at once) and returns a YamlSource. toPlain() gives the plain value a schema checks
// (lib/schema.ts); positionOf(path) gives the line and column of the node a schema issue's path names.

import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { LineCounter, parseDocument, isAlias, isMap, isScalar, isSeq, type Document, type Node as YamlNode, type Pair } from 'yaml';
import { InputError } from './errors.ts';
import { InputErrors } from './schema.ts';

export type { YamlNode };

/** A path for messages: relative to the current directory (the repository root) when inside it. */
export function displayPath(file: string): string {
  const abs = path.resolve(file);
  const rel = path.relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
}

/** " (did you mean 'x'?)" when one candidate is close to `word` (edit distance), else "". */
export function didYouMean(word: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  let bestD = Infinity;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  // close enough: at most a third of the word's letters wrong (at least 1, at most 3), or a prefix match
  const limit = Math.min(3, Math.max(1, Math.floor(word.length / 3)));
  if (best !== undefined && (bestD <= limit || (w.length >= 3 && best.toLowerCase().startsWith(w)))) {
    return ` (did you mean '${best}'?)`;
  }
  return '';
}

/** Damerau-Levenshtein distance (optimal string alignment), small strings only. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (Math.abs(a.length - b.length) > 8) return Math.abs(a.length - b.length);
  const m = a.length;
  const n = b.length;
  const d: number[][] = Array.from({ length: m + 1 }, (_, i) => {
    const row = new Array<number>(n + 1).fill(0);
    row[0] = i;
    return row;
  });
  for (let j = 0; j <= n; j++) d[0]![j] = j;
  for (let i = 1; i <= m; i++) {
    for (let j = 1; j <= n; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[m]![n]!;
}

export interface ParseOptions {
  /** treat the parser's warnings (e.g. an unknown tag like `!vault`) as errors; default true */
  warningsAsErrors?: boolean;
}

/** One parsed YAML file with positions: the one YAML reader of every input (inventory, site records, cloud). */
export class YamlSource {
  readonly doc: Document.Parsed;
  private readonly lc: LineCounter;
  private readonly aliases = new Map<YamlNode, YamlNode | null>();

  constructor(
    /** path for messages (relative to cwd when inside it) */
    readonly file: string,
    readonly text: string,
    opts: ParseOptions = {},
  ) {
    this.lc = new LineCounter();
    this.doc = parseDocument(text, {
      lineCounter: this.lc,
      prettyErrors: false,
      uniqueKeys: true,
      version: '1.2',
      schema: 'core',
      merge: false,
    });
    const found = [...this.doc.errors, ...(opts.warningsAsErrors === false ? [] : this.doc.warnings)];
    if (found.length) {
      throw new InputErrors(
        found.map((e) => {
          const { line, col } = this.lc.linePos(e.pos[0]);
          const msg = e.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
          return { file, line, col, field: '', message: `YAML ${e.code === 'DUPLICATE_KEY' ? 'duplicate key' : 'syntax error'}: ${msg}` };
        }),
      );
    }
  }

  /** top-level node (null for an empty document) */
  get root(): YamlNode | null {
    return (this.doc.contents as YamlNode | null) ?? null;
  }

  /** 1-based line of a node (or of a pair: its key) */
  lineOf(node: YamlNode | Pair | null | undefined): number {
    return this.posOf(node).line;
  }

  private posOf(node: YamlNode | Pair | null | undefined): { line: number; col: number } {
    const n = (node && 'key' in node && !('range' in node) ? (node.key as YamlNode | null) : node) as YamlNode | null | undefined;
    const start = n?.range?.[0];
    return start === undefined ? { line: 1, col: 1 } : this.lc.linePos(start);
  }

  /**
   * Line and column of the node a path names (aliases followed). The value's position, or its key's when
   * `atKey`, when the value is empty, or when the path ends at a key that is absent (then the nearest
   * existing parent's key). Paths are those of toPlain()'s value: keys and list indexes.
   */
  positionOf(path: readonly PropertyKey[], atKey = false): { line: number; col: number } {
    let node: YamlNode | null = this.root;
    let key: YamlNode | null = null;
    for (let i = 0; i < path.length; i++) {
      const n = this.deref(node);
      const seg = path[i];
      let next: YamlNode | null | undefined;
      let nextKey: YamlNode | null = null;
      if (n && isMap(n)) {
        const pair = n.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
        if (pair) {
          next = (pair.value as YamlNode | null) ?? null;
          nextKey = pair.key as YamlNode;
        }
      } else if (n && isSeq(n) && typeof seg === 'number' && seg < n.items.length) {
        next = (n.items[seg] as YamlNode | null) ?? null;
      }
      if (next === undefined && nextKey === null) return this.posOf(key ?? n); // absent: the parent
      node = next ?? null;
      key = nextKey;
    }
    const v = this.deref(node);
    const empty = !v || (isScalar(v) && v.value === null && !v.source);
    return this.posOf((atKey || empty) && key ? key : (v ?? key));
  }

  /** one problem at a node, as the InputErrors every loader throws */
  error(node: YamlNode | Pair | null | undefined, message: string, field = ''): InputErrors {
    return new InputErrors([{ file: this.file, ...this.posOf(node), field, message }]);
  }

  /** follow an alias to its target (Alias.resolve walks the whole document, so results are cached) */
  deref(node: YamlNode | null | undefined): YamlNode | null {
    if (node && isAlias(node)) {
      let t = this.aliases.get(node);
      if (t === undefined) {
        t = (node.resolve(this.doc) as YamlNode | undefined) ?? null;
        this.aliases.set(node, t);
      }
      return t;
    }
    return node ?? null;
  }

  /**
   * Plain JS value of a node (the input of a schema). Aliases are followed (bounded: at most `maxNodes`
   * nodes visited, so an alias bomb cannot explode). Mapping keys must be plain names (strings or numbers).
   */
  toPlain(node: YamlNode | null | undefined = this.root, field = '', budget: { left: number } = { left: 50_000 }): unknown {
    if (--budget.left < 0) throw this.error(node ?? null, `value too large (alias expansion limit)`, field);
    const n = this.deref(node);
    if (!n) return null;
    if (isScalar(n)) return n.value;
    if (isSeq(n)) return n.items.map((item, i) => this.toPlain(item as YamlNode | null, `${field}[${i}]`, budget));
    if (isMap(n)) {
      const out: Record<string, unknown> = {};
      for (const pair of n.items) {
        const k = pair.key as YamlNode | null;
        if (!k || !isScalar(k) || (typeof k.value !== 'string' && typeof k.value !== 'number')) {
          throw this.error(k ?? n, `keys must be plain names, got ${describe(k)}`, field);
        }
        const key = String(k.value);
        const f = field ? `${field}.${key}` : key;
        // defineProperty: a key named __proto__ is data, not the prototype
        Object.defineProperty(out, key, {
          value: this.toPlain(pair.value as YamlNode | null, f, budget),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    }
    throw this.error(n, `unsupported YAML node`, field);
  }
}

/** Parse YAML text (`file` is used in messages only). */
export function parseYamlText(text: string, file: string, opts?: ParseOptions): YamlSource {
  return new YamlSource(file, text, opts);
}

/** Read and parse a YAML file; a missing or unreadable file is an InputError naming it. */
export function parseYamlFile(file: string, opts?: ParseOptions): YamlSource {
  const shown = displayPath(file);
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw new InputError(`${shown} is a directory, expected a YAML file`);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof InputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `file not found: ${shown}` : `cannot read ${shown}: ${(e as Error).message}`);
  }
  return new YamlSource(shown, text, opts);
}

/** "a mapping", "a list", "the string 'x'", "the number 3", "nothing" ... for messages */
export function describe(node: YamlNode | null | undefined): string {
  if (!node) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'nothing (null)';
    if (typeof v === 'string') return `the string '${v.length > 40 ? `${v.slice(0, 37)}...` : v}'`;
    if (typeof v === 'number') return `the number ${v}`;
    if (typeof v === 'boolean') return `the boolean ${v}`;
    return typeof v;
  }
  if (isAlias(node)) return 'an alias';
  return 'an unsupported value';
}
