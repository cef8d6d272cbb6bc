// lineinfile: ensure one line is present (or lines absent) in a text file, with Ansible's semantics.
// The probe returns the whole file (base64, up to EDIT_CONTENT_CAP); plan() computes the new content
// here on the controller (editLines, pure) and applies it as ONE atomic content write, so check mode
// predicts exactly what the run does.
//
// state present:
//   1. regexp given and some line matches it → the LAST matching line (the first with firstMatch)
//      becomes `line` (no change when it already is).
//   2. otherwise, when `line` is already in the file exactly → no change.
//   3. otherwise `line` is inserted: insertAfter 'EOF' (default) / 'BOF' / a regexp (after the last
//      matching line, or the first with firstMatch), insertBefore 'BOF' / a regexp (before the last
//      matching line, or the first with firstMatch); a regexp that matches nothing means EOF.
// state absent: every line matching regexp (or equal to `line` when no regexp) is removed.
// Regexps are JavaScript regular expressions, tested against each line without its newline.
import type { Operation, StepOptions } from '../types.ts';
import { InputError } from '../errors.ts';
import { absPath, argSpec, attrShape, defineOp, pattern } from './base.ts';
import { z } from '../schema.ts';
import {
  checkValidate,
  normAttrs,
  parsePathProbe,
  pathGather,
  pathProbeScript,
  planWrite,
  EDIT_CONTENT_CAP,
  type Attrs,
  type PathState,
} from './files.ts';
import type { Plan, StepContext } from '../types.ts';

export interface LineInFileArgs extends Attrs {
  path: string;
  /** the line (required with state present; with absent and no regexp: the line to remove) */
  line?: string;
  regexp?: string | RegExp;
  /** 'EOF' (default), 'BOF', or a regexp */
  insertAfter?: string | RegExp;
  /** 'BOF' or a regexp */
  insertBefore?: string | RegExp;
  /** use the first match of regexp/insertAfter/insertBefore instead of the last */
  firstMatch?: boolean;
  state?: 'present' | 'absent';
  /** create the file when missing (state present); default false */
  create?: boolean;
  /** check the edited file before it replaces the old one ("%s" = the temp file), see file() */
  validate?: string;
  /** `line` is a template of regexp's groups ("\\1", "\\g<name>"); when regexp matches no line, nothing changes */
  backrefs?: boolean;
  /** a literal string instead of regexp: lines containing it */
  searchString?: string;
  /** keep a timestamped copy before changing the file (its path: result.backup_file) */
  backup?: boolean;
}

export interface LineEdit {
  content: string;
  changed: boolean;
  /** human description: "line added", "line replaced", "2 lines removed" (no line numbers: another
   *  step editing the same file earlier in the run would shift them, and check mode could not know) */
  what: string;
}

/** Python's regexp syntax (what Ansible playbooks contain) in JavaScript's: (?P<n>...), (?P=n), \\A, \\Z. */
export function pyRegExpSource(src: string): string {
  return src
    .replace(/\(\?P</g, '(?<')
    .replace(/\(\?P=(\w+)\)/g, '\\k<$1>')
    .replace(/\\A/g, '(?<![\\s\\S])')
    .replace(/\\Z/g, '(?![\\s\\S])');
}

/** A regexp argument: a RegExp, or a string in Python's syntax (as in Ansible). '' is refused. */
export const toRe = (r: string | RegExp, what: string, flags = ''): RegExp => {
  if (r instanceof RegExp) return new RegExp(r.source, r.flags.replace(/[gy]/g, '') + flags);
  if (r === '') throw new InputError(`${what}: regexp '' matches every line; give a pattern (Ansible warns and edits the last line)`);
  try {
    return new RegExp(pyRegExpSource(r), flags);
  } catch (e) {
    throw new InputError(`${what}: invalid regular expression ${JSON.stringify(r)}: ${(e as Error).message}`);
  }
};

/** Python's match.expand(): \\1..\\99, \\g<n>, \\g<name>, \\n \\t \\\\; an unmatched group is ''. */
export function pyExpand(template: string, m: RegExpExecArray): string {
  return template.replace(
    /\\(?:g<(\w+)>|(\d{1,2})|([ntr\\]))/g,
    (_all, g: string | undefined, d: string | undefined, e: string | undefined) => {
      if (e) return e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : '\\';
      const k = g ?? d!;
      const v = /^\d+$/.test(k) ? m[Number(k)] : m.groups?.[k];
      return v ?? '';
    },
  );
}

interface Text {
  lines: string[];
  /** the text ended with a newline (or was empty) */
  eol: boolean;
}

export function splitText(s: string): Text {
  if (s === '') return { lines: [], eol: true };
  const eol = s.endsWith('\n');
  return { lines: (eol ? s.slice(0, -1) : s).split('\n'), eol };
}

export function joinText(t: Text): string {
  if (!t.lines.length) return '';
  return t.lines.join('\n') + (t.eol ? '\n' : '');
}

export interface LineSpec {
  line?: string;
  regexp?: RegExp;
  searchString?: string;
  backrefs?: boolean;
  insertAfter?: 'EOF' | 'BOF' | RegExp;
  insertBefore?: 'BOF' | RegExp;
  firstMatch?: boolean;
  state: 'present' | 'absent';
}

function findLine(lines: string[], re: RegExp, first: boolean): number {
  let found = -1;
  for (let i = 0; i < lines.length; i++) {
    if (re.test(lines[i]!)) {
      found = i;
      if (first) break;
    }
  }
  return found;
}

/** Pure: apply a lineinfile spec to a text. Lines are compared without a trailing '\r'. */
export function editLines(text: string, spec: LineSpec): LineEdit {
  const t = splitText(text);
  const lines = t.lines;
  const bare = (l: string): string => l.replace(/\r$/, '');
  if (spec.state === 'absent') {
    const hit = (l: string): boolean =>
      spec.regexp ? spec.regexp.test(l) : spec.searchString !== undefined ? l.includes(spec.searchString) : bare(l) === spec.line;
    const keep = lines.filter((l) => !hit(l));
    const removed = lines.length - keep.length;
    if (!removed) return { content: text, changed: false, what: '' };
    return { content: joinText({ lines: keep, eol: t.eol }), changed: true, what: `${removed} line${removed === 1 ? '' : 's'} removed` };
  }
  let line = spec.line!;
  const lastNoEol = (i: number): boolean => i === lines.length - 1 && !t.eol;
  if (spec.regexp || spec.searchString !== undefined) {
    const i = spec.regexp
      ? findLine(lines, spec.regexp, !!spec.firstMatch)
      : findLine(lines, { test: (l: string) => l.includes(spec.searchString!) } as RegExp, !!spec.firstMatch);
    if (i >= 0) {
      if (spec.backrefs && spec.regexp) line = pyExpand(line, spec.regexp.exec(lines[i]!)!);
      // like Ansible, the replaced line always ends with a newline (a last line lacking one gets it)
      if (bare(lines[i]!) === line && !lastNoEol(i)) return { content: text, changed: false, what: '' };
      lines[i] = lines[i]!.endsWith('\r') ? `${line}\r` : line;
      return { content: joinText({ lines, eol: t.eol || lastNoEol(i) }), changed: true, what: 'line replaced' };
    }
  }
  let exact = -1;
  lines.forEach((l, i) => {
    if (bare(l) === line) exact = i;
  });
  if (exact >= 0) {
    if (!lastNoEol(exact)) return { content: text, changed: false, what: '' };
    return { content: joinText({ lines, eol: true }), changed: true, what: 'line replaced' };
  }
  if (spec.backrefs) return { content: text, changed: false, what: '' };
  let at = lines.length;
  const ins = spec.insertBefore ?? spec.insertAfter ?? 'EOF';
  if (ins === 'BOF') at = 0;
  else if (ins instanceof RegExp) {
    const i = findLine(lines, ins, !!spec.firstMatch);
    if (i >= 0) at = spec.insertBefore ? i : i + 1;
  }
  lines.splice(at, 0, line);
  // inserting anywhere but at the very end keeps the original final-newline state; appending adds one
  const eol = at === lines.length - 1 ? true : t.eol || lines.length === 1;
  return { content: joinText({ lines, eol }), changed: true, what: 'line added' };
}

/** Shared by lineinfile/blockinfile/sysctl: plan an edit of the file's current content. */
export function planEdit(
  ctx: StepContext,
  st: PathState,
  o: {
    path: string;
    create: boolean;
    what: string;
    want: ReturnType<typeof normAttrs>;
    edit: (text: string) => LineEdit;
    absentOk: boolean;
    validate?: string;
    backup?: boolean;
  },
): Plan {
  if (!st.exists) {
    if (o.absentOk) return { changed: false, changes: [], result: { path: o.path }, reason: 'file absent: nothing to remove' };
    if (!o.create) {
      if (ctx.check)
        return { changed: true, changes: [`${o.path} does not exist (assumed created by an earlier step)`], result: { path: o.path } };
      throw new Error(`${o.path} does not exist (set create: true to create it)`);
    }
    const e = o.edit('');
    // like Ansible, create: true also creates the missing parent directories
    return planWrite(ctx, st, {
      path: o.path,
      content: Buffer.from(e.content, 'utf8'),
      want: o.want,
      contentChange: e.what,
      validate: o.validate,
      parents: true,
    });
  }
  if (st.isFile && !st.content) {
    if (st.contentNote?.startsWith('toolarge'))
      throw new Error(`${o.path}: too large to edit (${st.contentNote.slice(9)} bytes > ${EDIT_CONTENT_CAP})`);
    throw new Error(`${o.path}: cannot read the current content${st.contentNote ? ` (${st.contentNote})` : ''}`);
  }
  const before = st.content ? st.content.toString('utf8') : '';
  const e = o.edit(before);
  const content = e.changed ? Buffer.from(e.content, 'utf8') : st.content;
  return planWrite(ctx, st, { path: o.path, content, want: o.want, contentChange: e.what, validate: o.validate, backup: o.backup });
}

export const LINEINFILE_ARGS = argSpec<LineInFileArgs>()(
  'lineinfile',
  {
    ...attrShape,
    path: absPath,
    line: z
      .string()
      .refine((l) => !l.includes('\n'), { error: 'must not contain a newline' })
      .optional(),
    regexp: pattern.optional(),
    insertAfter: pattern.optional(),
    insertBefore: pattern.optional(),
    firstMatch: z.boolean().optional(),
    state: z.enum(['present', 'absent']).default('present'),
    create: z.boolean().default(false),
    validate: z.string().optional(),
    backrefs: z.boolean().optional(),
    searchString: z
      .string()
      .refine((v) => v !== '', { error: "'' matches every line" })
      .optional(),
    backup: z.boolean().optional(),
  },
  {
    mutuallyExclusive: [
      ['regexp', 'searchString'],
      ['insertAfter', 'insertBefore'],
    ],
    requiredIf: [
      ['state', 'present', ['line']],
      ['backrefs', true, ['regexp']],
    ],
    requiredOneOf: [['line', 'regexp', 'searchString']],
  },
);

export function lineinfile(input: LineInFileArgs, opts: StepOptions = {}): Operation {
  return LINEINFILE_ARGS.build(input, (args) => lineinfileOp(args, opts));
}

function lineinfileOp(args: z.output<typeof LINEINFILE_ARGS.schema>, opts: StepOptions): Operation {
  const path = args.path;
  const what = `lineinfile ${path}`;
  const want = normAttrs(args, what);
  const state = args.state;
  const validate = checkValidate(args.validate, what);
  const spec: LineSpec = {
    line: args.line,
    regexp: args.regexp !== undefined ? toRe(args.regexp, what) : undefined,
    searchString: args.searchString,
    backrefs: args.backrefs,
    insertAfter:
      args.insertAfter === undefined || args.insertAfter === 'EOF' || args.insertAfter === 'BOF'
        ? (args.insertAfter as 'EOF' | 'BOF' | undefined)
        : toRe(args.insertAfter, what),
    insertBefore:
      args.insertBefore === undefined || args.insertBefore === 'BOF'
        ? (args.insertBefore as 'BOF' | undefined)
        : toRe(args.insertBefore, what),
    firstMatch: args.firstMatch,
    state,
  };
  return defineOp({
    kind: 'lineinfile',
    title: what,
    options: opts,
    probe: () => ({
      script: pathProbeScript(path, { sha: true, contentCap: EDIT_CONTENT_CAP, owner: want.owner, group: want.group }),
      gather: pathGather({ path, sha: true }),
    }),
    plan: (ctx, out) =>
      planEdit(ctx, parsePathProbe(out), {
        path,
        create: args.create,
        what,
        want,
        edit: (text) => editLines(text, spec),
        absentOk: state === 'absent',
        validate,
        backup: args.backup,
      }),
  });
}
