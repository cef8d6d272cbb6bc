// YAML with line numbers: a small shared helper for every loader that must report "file:line field".
//
// parseYamlFile() parses one file (YAML 1.2 core schema, unique keys, unknown tags refused) and returns a
// YamlSource that knows the line of every node. The typed readers (asMap, asSeq, asString, ...) throw
// InputError whose `where` is "file:line field", e.g. "inventory/lab.yml:12 hosts.db1.port".
// toPlain() converts a value node to plain JS, resolving aliases, with an optional hook that may replace
// any node (the inventory uses it for `{ env: NAME }` credential references, which need their line).

import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import {
  LineCounter,
  parseDocument,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  type Document,
  type Node as YamlNode,
  type Pair,
  type YAMLMap,
  type YAMLSeq,
} from 'yaml';
import { InputError } from './errors.ts';

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

/** One parsed YAML file with line lookup. */
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
    const problems = [...this.doc.errors, ...(opts.warningsAsErrors === false ? [] : this.doc.warnings)];
    if (problems.length) {
      const e = problems[0]!;
      const line = this.lc.linePos(e.pos[0]).line;
      const msg = e.message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
      throw new InputError(`YAML ${e.code === 'DUPLICATE_KEY' ? 'duplicate key' : 'syntax error'}: ${msg}`, `${file}:${line}`);
    }
  }

  /** top-level node (null for an empty document) */
  get root(): YamlNode | null {
    return (this.doc.contents as YamlNode | null) ?? null;
  }

  /** 1-based line of a node (or of a pair: its key) */
  lineOf(node: YamlNode | Pair | null | undefined): number {
    const n = (node && 'key' in node && !('range' in node) ? (node.key as YamlNode | null) : node) as YamlNode | null | undefined;
    const start = n?.range?.[0];
    return start === undefined ? 1 : this.lc.linePos(start).line;
  }

  /** "file:line" or "file:line field" */
  where(node: YamlNode | Pair | null | undefined, field?: string): string {
    return `${this.file}:${this.lineOf(node)}${field ? ` ${field}` : ''}`;
  }

  error(node: YamlNode | Pair | null | undefined, message: string, field?: string): InputError {
    return new InputError(message, this.where(node, field));
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

  // ---- typed readers: each throws InputError "file:line field: must be ..." ----

  isNull(node: YamlNode | null | undefined): boolean {
    const n = this.deref(node);
    return n === null || (isScalar(n) && n.value === null);
  }

  asMap(node: YamlNode | null | undefined, field: string, at?: YamlNode | Pair | null): YAMLMap<YamlNode, YamlNode | null> {
    const n = this.deref(node);
    if (!n || !isMap(n)) throw this.error(n ?? at ?? null, `must be a mapping, got ${describe(n)}`, field);
    return n as YAMLMap<YamlNode, YamlNode | null>;
  }

  asSeq(node: YamlNode | null | undefined, field: string, at?: YamlNode | Pair | null): YAMLSeq<YamlNode | null> {
    const n = this.deref(node);
    if (!n || !isSeq(n)) throw this.error(n ?? at ?? null, `must be a list, got ${describe(n)}`, field);
    return n as YAMLSeq<YamlNode | null>;
  }

  asString(node: YamlNode | null | undefined, field: string, at?: YamlNode | Pair | null): string {
    const n = this.deref(node);
    if (!n || !isScalar(n) || typeof n.value !== 'string') {
      throw this.error(n ?? at ?? null, `must be a string, got ${describe(n)}`, field);
    }
    return n.value;
  }

  asNonEmptyString(node: YamlNode | null | undefined, field: string, at?: YamlNode | Pair | null): string {
    const s = this.asString(node, field, at);
    if (!s.trim()) throw this.error(this.deref(node) ?? at ?? null, `must be a non-empty string`, field);
    return s;
  }

  asInt(node: YamlNode | null | undefined, field: string, min: number, max: number, at?: YamlNode | Pair | null): number {
    const n = this.deref(node);
    const v = n && isScalar(n) ? n.value : undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw this.error(n ?? at ?? null, `must be an integer from ${min} to ${max}, got ${describe(n)}`, field);
    }
    return v;
  }

  asBool(node: YamlNode | null | undefined, field: string, at?: YamlNode | Pair | null): boolean {
    const n = this.deref(node);
    if (!n || !isScalar(n) || typeof n.value !== 'boolean') {
      throw this.error(n ?? at ?? null, `must be true or false, got ${describe(n)}`, field);
    }
    return n.value;
  }

  /** The entries of a mapping with string keys, in order. Non-string keys are refused. */
  entries(map: YAMLMap<YamlNode, YamlNode | null>, field: string): Array<{ key: string; keyNode: YamlNode; value: YamlNode | null; pair: Pair }> {
    const out: Array<{ key: string; keyNode: YamlNode; value: YamlNode | null; pair: Pair }> = [];
    for (const pair of map.items) {
      const k = pair.key as YamlNode | null;
      if (!k || !isScalar(k) || (typeof k.value !== 'string' && typeof k.value !== 'number')) {
        throw this.error(k ?? map, `keys must be plain names, got ${describe(k)}`, field);
      }
      out.push({ key: String(k.value), keyNode: k, value: (pair.value as YamlNode | null) ?? null, pair });
    }
    return out;
  }

  /** Refuse keys not in `allowed` (typo protection), naming the key and a close allowed one. */
  checkKeys(map: YAMLMap<YamlNode, YamlNode | null>, allowed: readonly string[], field: string): void {
    for (const { key, keyNode } of this.entries(map, field)) {
      if (!allowed.includes(key)) {
        const f = field ? `${field}.${key}` : key;
        throw this.error(
          keyNode,
          `unknown key '${key}'${field ? ` in ${field}` : ' at top level'}${didYouMean(key, allowed)}; allowed: ${allowed.join(', ')}`,
          f,
        );
      }
    }
  }

  /** value node of a key in a mapping (null when absent or explicitly null) */
  get(map: YAMLMap<YamlNode, YamlNode | null>, key: string): YamlNode | null {
    for (const pair of map.items) {
      const k = pair.key as YamlNode | null;
      if (k && isScalar(k) && String(k.value) === key) return (pair.value as YamlNode | null) ?? null;
    }
    return null;
  }

  /** the key node of an entry, for line numbers */
  keyNode(map: YAMLMap<YamlNode, YamlNode | null>, key: string): YamlNode | null {
    for (const pair of map.items) {
      const k = pair.key as YamlNode | null;
      if (k && isScalar(k) && String(k.value) === key) return k;
    }
    return null;
  }

  /**
   * Plain JS value of a node. Aliases are followed (bounded: at most `maxNodes` nodes visited, so an
   * alias bomb cannot explode). `hook` may return a replacement for any node (or undefined to go on).
   */
  toPlain(
    node: YamlNode | null | undefined,
    field: string,
    hook?: (node: YamlNode, field: string) => unknown | undefined,
    budget: { left: number } = { left: 50_000 },
  ): unknown {
    if (--budget.left < 0) throw this.error(node ?? null, `value too large (alias expansion limit)`, field);
    const n = this.deref(node);
    if (!n) return null;
    if (hook) {
      const r = hook(n, field);
      if (r !== undefined) return r;
    }
    if (isScalar(n)) return n.value;
    if (isSeq(n)) return n.items.map((item, i) => this.toPlain(item as YamlNode | null, `${field}[${i}]`, hook, budget));
    if (isMap(n)) {
      const out: Record<string, unknown> = {};
      for (const { key, value } of this.entries(n as YAMLMap<YamlNode, YamlNode | null>, field)) {
        out[key] = this.toPlain(value, field ? `${field}.${key}` : key, hook, budget);
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
