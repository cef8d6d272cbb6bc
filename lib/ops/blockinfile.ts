// blockinfile: ensure a block of lines between two marker lines (Ansible's semantics).
// Markers: `marker` with {mark} replaced by markerBegin/markerEnd ("# BEGIN WPFARM MANAGED BLOCK" ...);
// use a distinct marker per block in one file. state present with an empty block = absent.
//   - both markers found: the lines from the (last) begin marker to the (last) end marker are replaced;
//   - otherwise the block (with markers) is inserted: insertAfter 'EOF' (default) / a regexp (after the
//     last matching line), insertBefore 'BOF' / a regexp (before the last matching line); a regexp that
//     matches nothing means EOF.
// Like lineinfile, the new content is computed here and written atomically in one round trip.
import type { Operation, StepOptions } from '../types.ts';
import { absPath, argSpec, attrShape, defineOp, pattern } from './base.ts';
import { z } from '../schema.ts';
import { checkValidate, normAttrs, parsePathProbe, pathGather, pathProbeScript, EDIT_CONTENT_CAP, type Attrs } from './files.ts';
import { joinText, planEdit, splitText, toRe, type LineEdit } from './lineinfile.ts';

export interface BlockInFileArgs extends Attrs {
  path: string;
  /** the block's lines (a trailing newline is ignored) */
  block: string;
  /** default "# {mark} WPFARM MANAGED BLOCK" */
  marker?: string;
  markerBegin?: string;
  markerEnd?: string;
  /** 'EOF' (default) or a regexp */
  insertAfter?: string | RegExp;
  /** 'BOF' or a regexp */
  insertBefore?: string | RegExp;
  state?: 'present' | 'absent';
  /** create the file (and its missing parent directories) when missing; default false */
  create?: boolean;
  /** a blank line after the block unless one is there already or the block ends the file (Ansible 2.16) */
  appendNewline?: boolean;
  /** a blank line before the block unless one is there already or the block starts the file (Ansible 2.16) */
  prependNewline?: boolean;
  /** keep a timestamped copy before changing the file (its path: result.backup_file) */
  backup?: boolean;
  /** check the edited file before it replaces the old one ("%s" = the temp file), see file() */
  validate?: string;
}

export interface BlockSpec {
  begin: string;
  end: string;
  /** '' or empty = remove */
  block: string;
  state: 'present' | 'absent';
  insertAfter?: 'EOF' | RegExp;
  insertBefore?: 'BOF' | RegExp;
  appendNewline?: boolean;
  prependNewline?: boolean;
}

/** Pure: apply a blockinfile spec to a text. */
export function editBlock(text: string, spec: BlockSpec): LineEdit {
  const t = splitText(text);
  const lines = t.lines;
  const bare = (l: string): string => l.replace(/\r$/, '');
  const body = spec.block.replace(/\n$/, '');
  const remove = spec.state === 'absent' || body === '';
  const blockLines = remove ? [] : [spec.begin, ...body.split('\n'), spec.end];
  let n0 = -1;
  let n1 = -1;
  lines.forEach((l, i) => {
    if (bare(l) === spec.begin) n0 = i;
    if (bare(l) === spec.end) n1 = i;
  });
  let at: number;
  let what: string;
  if (n0 >= 0 && n1 >= 0) {
    const [a, b] = n0 < n1 ? [n0, n1] : [n1, n0];
    const old = lines.slice(a, b + 1).map(bare);
    if (old.length === blockLines.length && old.every((l, i) => l === blockLines[i])) return { content: text, changed: false, what: '' };
    lines.splice(a, b - a + 1);
    at = a;
    what = remove ? 'block removed' : 'block replaced';
  } else {
    if (remove) return { content: text, changed: false, what: '' };
    at = lines.length;
    const re = spec.insertBefore instanceof RegExp ? spec.insertBefore : spec.insertAfter instanceof RegExp ? spec.insertAfter : null;
    if (spec.insertBefore === 'BOF') at = 0;
    else if (re) {
      let found = -1;
      lines.forEach((l, i) => {
        if (re.test(l)) found = i;
      });
      if (found >= 0) at = spec.insertBefore ? found : found + 1;
    }
    what = 'block inserted';
  }
  if (!remove) {
    if (spec.appendNewline && at < lines.length && bare(lines[at]!).trim() !== '') blockLines.push('');
    if (spec.prependNewline && at > 0 && bare(lines[at - 1]!).trim() !== '') blockLines.unshift('');
  }
  lines.splice(at, 0, ...blockLines);
  const appended = blockLines.length > 0 && at + blockLines.length === lines.length;
  const eol = appended || t.eol;
  return { content: joinText({ lines, eol }), changed: true, what };
}

const oneLine = z.string().refine((v) => !v.includes('\n'), { error: 'must be a single line' });

export const BLOCKINFILE_ARGS = argSpec<BlockInFileArgs>()(
  'blockinfile',
  {
    ...attrShape,
    path: absPath,
    block: z.string().optional(),
    marker: oneLine.refine((m) => m.includes('{mark}'), { error: 'must contain {mark}' }).default('# {mark} WPFARM MANAGED BLOCK'),
    markerBegin: oneLine.default('BEGIN'),
    markerEnd: oneLine.default('END'),
    insertAfter: pattern.optional(),
    insertBefore: pattern.optional(),
    state: z.enum(['present', 'absent']).default('present'),
    create: z.boolean().default(false),
    appendNewline: z.boolean().optional(),
    prependNewline: z.boolean().optional(),
    backup: z.boolean().optional(),
    validate: z.string().optional(),
  },
  {
    mutuallyExclusive: [['insertAfter', 'insertBefore']],
    requiredIf: [['state', 'present', ['block']]],
    check: (a) => (a.markerBegin === a.markerEnd ? ['markerEnd', 'markerBegin and markerEnd must differ'] : null),
  },
);

export function blockinfile(input: BlockInFileArgs, opts: StepOptions = {}): Operation {
  return BLOCKINFILE_ARGS.build(input, (args) => blockinfileOp(args, opts));
}

function blockinfileOp(args: z.output<typeof BLOCKINFILE_ARGS.schema>, opts: StepOptions): Operation {
  const path = args.path;
  const what = `blockinfile ${path}`;
  const want = normAttrs(args, what);
  const state = args.state;
  const validate = checkValidate(args.validate, what);
  const begin = args.marker.replace('{mark}', args.markerBegin);
  const end = args.marker.replace('{mark}', args.markerEnd);
  const spec: BlockSpec = {
    begin,
    end,
    block: args.block ?? '',
    state,
    insertAfter:
      args.insertAfter === undefined || args.insertAfter === 'EOF' ? (args.insertAfter as 'EOF' | undefined) : toRe(args.insertAfter, what),
    insertBefore:
      args.insertBefore === undefined || args.insertBefore === 'BOF'
        ? (args.insertBefore as 'BOF' | undefined)
        : toRe(args.insertBefore, what),
    appendNewline: args.appendNewline,
    prependNewline: args.prependNewline,
  };
  return defineOp({
    kind: 'blockinfile',
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
        edit: (text) => editBlock(text, spec),
        absentOk: state === 'absent' || spec.block.replace(/\n$/, '') === '',
        validate,
        backup: args.backup,
      }),
  });
}
