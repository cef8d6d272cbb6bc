// replace: every match of a regexp over the whole file (Ansible's replace module), optionally only in the
// section after the first match of `after` and/or before `before`. Like lineinfile, the probe reads the
// file, plan() computes the new content on the controller and one atomic write applies it.
//
// Regexps are Python's syntax as in Ansible ((?P<name>...) and \A/\Z are translated), multiline (^ and $ at
// every line); `replace` may use \1, \g<1>, \g<name>. `after`/`before` select the section exactly as
// Ansible: `after(?P<s>.*)`, `(?P<s>.*)before`, `after(?P<s>.*?)before`, with "." matching newlines; a
// section pattern that matches nothing changes nothing.
import type { Operation, StepOptions } from '../types.ts';
import { absPath, argSpec, attrShape, defineOp, pattern } from './base.ts';
import { z } from '../schema.ts';
import { checkValidate, normAttrs, parsePathProbe, pathGather, pathProbeScript, EDIT_CONTENT_CAP, type Attrs } from './files.ts';
import { planEdit, pyExpand, pyRegExpSource, toRe, type LineEdit } from './lineinfile.ts';

export interface ReplaceArgs extends Attrs {
  path: string;
  /** a regexp (Python syntax) */
  regexp: string | RegExp;
  /** the replacement ('' removes the matches) */
  replace?: string;
  /** only the text after the first match of this regexp */
  after?: string;
  /** only the text before the (last, or first after `after`) match of this regexp */
  before?: string;
  /** check the edited file before it replaces the old one ("%s" = the temp file), see file() */
  validate?: string;
  /** keep a timestamped copy before changing the file (its path: result.backup_file) */
  backup?: boolean;
}

export interface ReplaceSpec {
  regexp: RegExp;
  replace: string;
  after?: string;
  before?: string;
}

/** Pure: Ansible's replace on a text. */
export function editReplace(text: string, spec: ReplaceSpec): LineEdit {
  let start = 0;
  let end = text.length;
  if (spec.after !== undefined || spec.before !== undefined) {
    const a = spec.after !== undefined ? pyRegExpSource(spec.after) : '';
    const b = spec.before !== undefined ? pyRegExpSource(spec.before) : '';
    const src = a && b ? `${a}(?<subsection>.*?)${b}` : a ? `${a}(?<subsection>.*)` : `(?<subsection>.*)${b}`;
    const m = new RegExp(src, 'sd').exec(text);
    if (!m) return { content: text, changed: false, what: '' };
    [start, end] = m.indices!.groups!.subsection!;
  }
  const section = text.slice(start, end);
  const re = new RegExp(spec.regexp.source, `${spec.regexp.flags.replace(/[gmy]/g, '')}gm`);
  let n = 0;
  const out = section.replace(re, (...args: unknown[]) => {
    n++;
    // rebuild the match array for pyExpand: [whole, ...groups], with named groups
    const hasGroups = typeof args[args.length - 1] === 'object' && args[args.length - 1] !== null;
    const groups = hasGroups ? (args[args.length - 1] as Record<string, string>) : undefined;
    const caps = args.slice(0, hasGroups ? -3 : -2) as string[];
    const m = Object.assign([...caps], { index: 0, input: section, groups }) as unknown as RegExpExecArray;
    return pyExpand(spec.replace, m);
  });
  if (!n || out === section) return { content: text, changed: false, what: '' };
  return { content: text.slice(0, start) + out + text.slice(end), changed: true, what: `${n} replacement${n === 1 ? '' : 's'}` };
}

const nonEmptyRe = z.string().refine((v) => v !== '', { error: 'must be a non-empty regexp' });

export const REPLACE_ARGS = argSpec<ReplaceArgs>()('replace', {
  ...attrShape,
  path: absPath,
  regexp: pattern,
  replace: z.string().default(''),
  after: nonEmptyRe.optional(),
  before: nonEmptyRe.optional(),
  validate: z.string().optional(),
  backup: z.boolean().optional(),
});

export function replace(input: ReplaceArgs, opts: StepOptions = {}): Operation {
  return REPLACE_ARGS.build(input, (args) => replaceOp(args, opts));
}

function replaceOp(args: z.output<typeof REPLACE_ARGS.schema>, opts: StepOptions): Operation {
  const path = args.path;
  const what = `replace ${path}`;
  const want = normAttrs(args, what);
  const validate = checkValidate(args.validate, what);
  for (const k of ['after', 'before'] as const) if (args[k] !== undefined) toRe(args[k], `${what}: ${k}`);
  const spec: ReplaceSpec = { regexp: toRe(args.regexp, what, 'm'), replace: args.replace, after: args.after, before: args.before };
  return defineOp({
    kind: 'replace',
    title: what,
    options: opts,
    probe: () => ({
      script: pathProbeScript(path, { sha: true, contentCap: EDIT_CONTENT_CAP, owner: want.owner, group: want.group }),
      gather: pathGather({ path, sha: true }),
    }),
    plan: (ctx, out) => {
      const st = parsePathProbe(out);
      if (!st.exists && !ctx.check) throw new Error(`${path} does not exist`);
      return planEdit(ctx, st, {
        path,
        create: false,
        what,
        want,
        edit: (text) => editReplace(text, spec),
        absentOk: false,
        validate,
        backup: args.backup,
      });
    },
  });
}
