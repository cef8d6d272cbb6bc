// One validation path for every YAML input (inventory, site records, cloud config): a zod schema checks the
// plain value read by lib/yamlsrc.ts, and every problem found (not only the first) is reported at once as
// "file:line:col field: message", the line and column being those of the YAML node the issue's path names.
//
//   const y = parseYamlFile(file);                      // duplicate keys refused, positions kept
//   const value = validate(Schema, y.toPlain(y.root), y); // typed output (z.output<typeof Schema>) or InputErrors
//
// Checks that need more than one field (references between entries, a value relative to another) are
// superRefine()s in the schema, or post-passes that build Problems with problemAt(): the same locations and
// the same error class either way.

import { z } from 'zod';
import { InputError } from './errors.ts';
import { didYouMean, type YamlSource } from './yamlsrc.ts';

export { z };

export type Path = readonly PropertyKey[];

/** One problem in one input file. `line` 0: the file as a whole (no position known). */
export interface Problem {
  file: string;
  line: number;
  col: number;
  field: string;
  message: string;
}

/** "php.memory_limit", "hosts.db1.port", "aliases[1]" */
export function fieldOf(path: Path): string {
  return path.map((s, i) => (typeof s === 'number' ? `[${s}]` : i ? `.${String(s)}` : String(s))).join('');
}

/** "file:line:col field: message" (parts left out when unknown) */
export function formatProblem(p: Problem): string {
  return `${p.file}${p.line ? `:${p.line}:${p.col}` : ''}${p.field ? ` ${p.field}` : ''}: ${p.message}`;
}

/**
 * Bad input with one or more problems, sorted by file and line. An InputError (exit 4): `where` is the
 * first problem's place, and the message lists every problem, one a line.
 */
export class InputErrors extends InputError {
  readonly problems: readonly Problem[];
  constructor(problems: readonly Problem[]) {
    const sorted = [...problems].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col));
    const [first, ...rest] = sorted;
    if (!first) throw new Error('InputErrors needs at least one problem');
    const where = formatProblem({ ...first, message: '' }).slice(0, -2);
    const more = rest.length ? `\n  and ${rest.length} more problem(s):\n  ${rest.map(formatProblem).join('\n  ')}` : '';
    super(`${first.message}${more}`, where);
    this.name = 'InputErrors';
    this.problems = sorted;
  }

  /** each problem as "file:line:col field: message" */
  get messages(): string[] {
    return this.problems.map(formatProblem);
  }
}

/** A problem at the YAML node `path` names (its key's line when `atKey`, or when the value is absent). */
export function problemAt(y: YamlSource | string, path: Path, message: string, atKey = false): Problem {
  if (typeof y === 'string') return { file: y, line: 0, col: 0, field: fieldOf(path), message };
  const pos = y.positionOf(path, atKey);
  return { file: y.file, line: pos.line, col: pos.col, field: fieldOf(path), message };
}

export interface ValidateOptions {
  /** field name for the document itself in messages ("inventory", "(document)"); default none */
  rootName?: string;
  /** problems found before (they are reported together with the schema's) */
  problems?: Problem[];
}

/**
 * Check `value` (read from `src`: a YamlSource for positions, or just a file name) against `schema`.
 * Returns the typed output, or throws InputErrors listing every problem.
 */
export function validate<S extends z.ZodType>(
  schema: S,
  value: unknown,
  src: YamlSource | string,
  opts: ValidateOptions = {},
): z.output<S> {
  const r = schema.safeParse(value, { error: errorMap, reportInput: true });
  const problems = [...(opts.problems ?? [])];
  if (!r.success) problems.push(...issuesToProblems(r.error.issues, src, opts.rootName));
  if (problems.length) throw new InputErrors(problems);
  return r.data as z.output<S>;
}

/** zod issues → problems: unknown keys one problem each, at the key, with a suggestion and the allowed keys */
export function issuesToProblems(issues: readonly z.core.$ZodIssue[], src: YamlSource | string, rootName = ''): Problem[] {
  const out: Problem[] = [];
  const name = (path: Path) => (path.length ? fieldOf(path) : rootName);
  for (const iss of issues) {
    const path = iss.path;
    if (iss.code === 'unrecognized_keys') {
      const allowed = iss.message.startsWith(ALLOWED) ? iss.message.slice(ALLOWED.length).split(', ') : [];
      const where = path.length ? ` in ${fieldOf(path)}` : ' at top level';
      for (const k of iss.keys) {
        const list = allowed.length ? `; allowed: ${allowed.join(', ')}` : '';
        out.push(problemAt(src, [...path, k], `unknown key '${k}'${where}${didYouMean(k, allowed)}${list}`, true));
      }
      continue;
    }
    const p = problemAt(src, path, iss.message, iss.code === 'invalid_key' || (iss.code === 'custom' && iss.params?.['at'] === 'key'));
    out.push({ ...p, field: name(path) });
  }
  return out;
}

const ALLOWED = 'allowed: ';

/** The one wording of the schema's messages ("must be an integer from 1 to 65535, got the number 70000"). */
function errorMap(iss: z.core.$ZodRawIssue): string | undefined {
  const got = describeValue(iss.input);
  switch (iss.code) {
    case 'invalid_type': {
      if (iss.input === undefined) return 'is required';
      const want: Record<string, string> = {
        object: 'a mapping',
        record: 'a mapping',
        array: 'a list',
        string: 'a string',
        number: 'a number',
        int: 'an integer',
        boolean: 'true or false',
      };
      return `must be ${want[iss.expected] ?? iss.expected}, got ${got}`;
    }
    case 'unrecognized_keys': {
      const shape = (iss.inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def?.shape;
      return shape ? `${ALLOWED}${Object.keys(shape).join(', ')}` : undefined;
    }
    case 'invalid_key':
      return iss.issues[0]?.message ?? `invalid key ${got}`;
    case 'too_small':
      if (iss.origin === 'string') return 'must be a non-empty string';
      if (iss.origin === 'array') return `must have at least ${iss.minimum} item(s)`;
      return `must be at least ${iss.minimum}, got ${got}`;
    case 'too_big':
      return `must be at most ${iss.maximum}, got ${got}`;
    case 'invalid_value':
      return `must be ${iss.values.map((v) => JSON.stringify(v)).join(' or ')}, got ${got}`;
    case 'invalid_format':
    case 'invalid_union':
      return `invalid value ${JSON.stringify(iss.input)}`;
    default:
      return undefined;
  }
}

/** "a mapping", "a list", "the string 'x'", "the number 3", "nothing (null)" ... for messages */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'nothing (null)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `the string '${v.length > 40 ? `${v.slice(0, 37)}...` : v}'`;
  if (typeof v === 'number') return `the number ${v}`;
  if (typeof v === 'boolean') return `the boolean ${v}`;
  return typeof v;
}

// ---- field builders shared by the schemas (one wording for the common checks)

/** an integer from min to max: "must be an integer from 1 to 65535, got the number 70000" */
export function int(min: number, max: number) {
  const error = (iss: { input?: unknown }) => `must be an integer from ${min} to ${max}, got ${describeValue(iss.input)}`;
  return z
    .int({ error: (iss) => (iss.input === undefined ? 'is required' : error(iss)) })
    .min(min, { error })
    .max(max, { error });
}

/** a number from min to max */
export function num(min: number, max: number) {
  const error = (iss: { input?: unknown }) => `must be a number from ${min} to ${max}, got ${describeValue(iss.input)}`;
  return z
    .number({ error: (iss) => (iss.input === undefined ? 'is required' : error(iss)) })
    .min(min, { error })
    .max(max, { error });
}

/** a string that is not blank */
export const nonEmpty = z.string().refine((s) => s.trim() !== '', { error: 'must be a non-empty string' });

/** a string matching `re`; `what` describes it ("a size like 64M") */
export function matching(re: RegExp, what?: string) {
  return z.string().regex(re, {
    error: (iss) => (what ? `must be ${what}, got ${describeValue(iss.input)}` : `invalid value ${JSON.stringify(iss.input)}`),
  });
}

/** `schema`, with an explicit YAML null (`key:` with nothing after it) taken as absent */
export function nullAsAbsent<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === null ? undefined : v), schema);
}

/** a check function returning null or the reason, as a zod refinement (the reason is the message) */
export function checkedBy(check: (v: string) => string | null) {
  return (v: string, ctx: z.core.$RefinementCtx<string>) => {
    const why = check(v);
    if (why) ctx.addIssue({ code: 'custom', message: why, input: v });
  };
}
