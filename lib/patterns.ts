// Host patterns (`hosts:` of a role, `--limit`), with Ansible's semantics:
//
//   all | *            every host
//   name               a host, or a group (all its hosts, recursively)
//   web*  db?  n[1-3]  glob on host AND group names (* ? [abc] [a-z] [!x]); case-sensitive
//   ~regex             regular expression on host and group names, anchored at the start (Ansible)
//   @path              the host names in a retry file (one per line, # comments), path relative to cwd
//   !term              exclude      &term   intersect
//
// Terms are separated by commas, or by colons when there is no comma and the text does not look like an
// IPv6 address and the colon is not inside [...]. Evaluation as Ansible: the union of the plain terms
// (or `all` when there are none), then each &term intersects, then each !term removes. The result is in
// inventory order. A term that matches no host or group name is an InputError (exit 4) "unknown host
// pattern 'x'" (Ansible only warns; failing is safer); inside `!` it is allowed. A known group with no
// hosts, or a selection that ends up empty, is not an error: selectHosts() returns [] and the caller decides.
// Ansible's subscripts (web[0], web[1:3]) are NOT supported: [...] is a glob character class here.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { InputError } from './errors.ts';
import { groupMembers, NAME_RE, type Inventory } from './inventory.ts';
import type { HostSpec } from './types.ts';
import { didYouMean, displayPath } from './yamlsrc.ts';

export type TermOp = 'union' | 'intersect' | 'exclude';
export type TermKind = 'all' | 'name' | 'glob' | 'regex' | 'file';

export interface PatternTerm {
  op: TermOp;
  kind: TermKind;
  /** name, glob, regex source, or file path (absolute) */
  value: string;
  /** the term as written, e.g. "!web*" */
  raw: string;
  /** compiled matcher for glob and regex terms */
  re?: RegExp;
}

/** Split a pattern into terms (Ansible's split_host_pattern rules). */
export function splitPattern(pattern: string): string[] {
  const p = pattern.trim();
  if (p.includes(','))
    return p
      .split(',')
      .map((t) => t.trim())
      .filter((t) => t !== '');
  if (looksLikeIPv6(p)) return [p];
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of p) {
    if (ch === '[') depth++;
    else if (ch === ']' && depth > 0) depth--;
    if (ch === ':' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== '');
}

function looksLikeIPv6(p: string): boolean {
  const s = p
    .replace(/^[!&]/, '')
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/%[\w.-]+$/, '');
  if (!/^[0-9A-Fa-f:.]+$/.test(s)) return false;
  const colons = (s.match(/:/g) ?? []).length;
  return s.includes('::') || colons === 7 || (colons === 6 && s.includes('.'));
}

/**
 * Parse a host pattern (or a --limit value) into terms. Syntax errors are InputErrors. Retry-file paths
 * are resolved against the current directory (the repository root); the file is read by selectHosts.
 */
export function parseLimit(pattern: string): PatternTerm[] {
  if (typeof pattern !== 'string' || !pattern.trim()) throw new InputError('empty host pattern');
  const terms: PatternTerm[] = [];
  for (const raw of splitPattern(pattern)) {
    let op: TermOp = 'union';
    let body = raw;
    if (body.startsWith('!')) {
      op = 'exclude';
      body = body.slice(1).trim();
    } else if (body.startsWith('&')) {
      op = 'intersect';
      body = body.slice(1).trim();
    }
    if (!body || body.startsWith('!') || body.startsWith('&')) throw new InputError(`invalid host pattern term '${raw}'`);
    if (body === 'all' || body === '*') terms.push({ op, kind: 'all', value: 'all', raw });
    else if (body.startsWith('@')) {
      const file = body.slice(1).trim();
      if (!file) throw new InputError(`invalid host pattern term '${raw}': '@' needs a retry file path`);
      terms.push({ op, kind: 'file', value: path.resolve(file), raw });
    } else if (body.startsWith('~')) {
      const src = body.slice(1);
      if (!src) throw new InputError(`invalid host pattern term '${raw}': '~' needs a regular expression`);
      let re: RegExp;
      try {
        re = new RegExp(`^(?:${src})`);
      } catch (e) {
        throw new InputError(`invalid regular expression in host pattern '${raw}': ${(e as Error).message}`);
      }
      terms.push({ op, kind: 'regex', value: src, raw, re });
    } else if (/[*?[]/.test(body)) {
      terms.push({ op, kind: 'glob', value: body, raw, re: globToRegExp(body) });
    } else {
      terms.push({ op, kind: 'name', value: body, raw });
    }
  }
  if (!terms.length) throw new InputError(`empty host pattern '${pattern}'`);
  return terms;
}

/** fnmatch-style glob → anchored RegExp: * any run, ? one char, [abc] [a-z] [!x] [^x] classes. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const close = glob.indexOf(']', i + 2); // a ']' right after '[' (or '[!') is a literal member
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, close);
      let neg = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        neg = true;
        body = body.slice(1);
      }
      if (!body) {
        re += '\\[';
        continue;
      }
      re += `[${neg ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = close;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Host names listed in a retry file; each must be a host of the inventory (error names file:line). */
export function readRetryFile(inv: Inventory, file: string): string[] {
  const shown = displayPath(file);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `retry file not found: ${shown}` : `cannot read retry file ${shown}: ${(e as Error).message}`);
  }
  const out: string[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const name = line.replace(/(^|\s)#.*$/, '').trim();
    if (!name) return;
    if (!NAME_RE.test(name)) throw new InputError(`'${name}' is not a host name`, `${shown}:${i + 1}`);
    if (!inv.hosts.has(name)) {
      throw new InputError(`host '${name}' is not in inventory ${inv.file}${didYouMean(name, inv.hosts.keys())}`, `${shown}:${i + 1}`);
    }
    if (!out.includes(name)) out.push(name);
  });
  if (!out.length) throw new InputError(`retry file ${shown} lists no hosts`);
  return out;
}

/** Host names a single term designates (op ignored). Throws for an unknown name/glob unless `lenient`. */
export function matchTerm(inv: Inventory, term: PatternTerm, lenient = false): Set<string> {
  const out = new Set<string>();
  switch (term.kind) {
    case 'all':
      for (const h of inv.hosts.keys()) out.add(h);
      return out;
    case 'file':
      for (const h of readRetryFile(inv, term.value)) out.add(h);
      return out;
    case 'name': {
      if (inv.hosts.has(term.value)) out.add(term.value);
      else if (inv.groups.has(term.value)) for (const h of groupMembers(inv, term.value)) out.add(h);
      else if (!lenient) throw unknown(inv, term);
      return out;
    }
    case 'glob':
    case 'regex': {
      const re = term.re!;
      let matched = false;
      for (const h of inv.hosts.keys())
        if (re.test(h)) {
          matched = true;
          out.add(h);
        }
      for (const g of inv.groups.keys())
        if (re.test(g)) {
          matched = true;
          for (const h of groupMembers(inv, g)) out.add(h);
        }
      if (!matched && !lenient) throw unknown(inv, term);
      return out;
    }
  }
}

function unknown(inv: Inventory, term: PatternTerm): InputError {
  const hint = term.kind === 'name' ? didYouMean(term.value, [...inv.hosts.keys(), ...inv.groups.keys()]) : '';
  return new InputError(
    `unknown host pattern '${term.raw.replace(/^[!&]/, '')}': no host or group of inventory ${inv.file} matches${hint}`,
  );
}

function evaluate(inv: Inventory, pattern: string | PatternTerm[]): Set<string> {
  const terms = typeof pattern === 'string' ? parseLimit(pattern) : pattern;
  const plain = terms.filter((t) => t.op === 'union');
  let sel = new Set<string>();
  if (plain.length === 0) sel = matchTerm(inv, { op: 'union', kind: 'all', value: 'all', raw: 'all' });
  for (const t of plain) for (const h of matchTerm(inv, t)) sel.add(h);
  for (const t of terms)
    if (t.op === 'intersect') {
      const m = matchTerm(inv, t);
      sel = new Set([...sel].filter((h) => m.has(h)));
    }
  for (const t of terms) if (t.op === 'exclude') for (const h of matchTerm(inv, t, true)) sel.delete(h);
  return sel;
}

/**
 * The hosts a pattern selects, in inventory order. With `limit` (the CLI's --limit), only those hosts
 * that the limit also selects (Ansible: the play's hosts restricted by --limit).
 */
export function selectHosts(inv: Inventory, pattern: string | PatternTerm[], limit?: string | PatternTerm[]): HostSpec[] {
  const sel = evaluate(inv, pattern);
  const lim = limit === undefined ? undefined : evaluate(inv, limit);
  const out: HostSpec[] = [];
  for (const [name, h] of inv.hosts) if (sel.has(name) && (!lim || lim.has(name))) out.push(h);
  return out;
}
