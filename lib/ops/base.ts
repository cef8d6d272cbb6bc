// Helpers to define operations (see lib/types.ts: probe → plan → apply unless check), their declarative
// argument specs (argSpec, like Ansible's argument_spec), and the caller's location of every step.
import { dirname, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { InputError } from '../errors.ts';
import { InputErrors, type Problem, validate, z } from '../schema.ts';
import type { Connection, Operation, Plan, Probe, StepContext, StepOptions, Task, TaskOutcome } from '../types.ts';

export interface OpDef {
  kind: string;
  title: string;
  options?: StepOptions;
  probe(ctx: StepContext): Probe | null;
  plan(ctx: StepContext, probeOutput: string): Plan | Promise<Plan>;
}

// ---------------------------------------------------------------------------------------------------
// Where a step was written

const LIB = `${dirname(dirname(fileURLToPath(import.meta.url)))}${sep}`;
const FRAME = /\(?((?:file:\/\/)?\/[^():]+):(\d+):(\d+)\)?\s*$/;

/**
 * "roles/galera/role.ts:42:7": the first frame of the current stack outside lib/ (and node_modules), i.e.
 * the role or playbook line that built the step (as zx records its caller). Relative to the working
 * directory when inside it; undefined when no such frame exists.
 */
export function callerLocation(): string | undefined {
  // The same role line builds its step once per host: the raw position of the first call site outside lib/ (cheap to
  // read: a few frames, nothing formatted) keys the location found there the first time (formatting the stack,
  // through the source maps, cost ~50 µs per step per host; a key of all the stack's raw frames ~10 µs).
  const limit = Error.stackTraceLimit;
  const prepare = Error.prepareStackTrace;
  Error.prepareStackTrace = firstOutsideLib;
  const holder: { stack?: unknown } = {};
  let key = '';
  // the role's line is a few frames up (its operation, ArgSpec.build): the whole depth only when it is not there
  for (const depth of [10, 40]) {
    Error.stackTraceLimit = depth;
    Error.captureStackTrace(holder, callerLocation);
    key = holder.stack as string;
    if (key) break;
  }
  Error.prepareStackTrace = prepare;
  const known = key ? locations.get(key) : undefined;
  if (known !== undefined) {
    Error.stackTraceLimit = limit;
    return known || undefined;
  }
  Error.stackTraceLimit = 40;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  const found = locationIn(stack);
  if (key && locations.size < 10_000) locations.set(key, found ?? '');
  return found;
}

/** the location by the raw position of the first call site outside lib/ and node_modules ('' for none) */
const locations = new Map<string, string>();
const LIB_URL = pathToFileURL(LIB).href;
const NODE_MODULES = `${sep}node_modules${sep}`;
/** a frame's file as locationIn() reads it: an absolute path or file URL without parentheses or colons */
const PLAIN_FILE = /^(?:file:\/\/)?\/[^():]+$/;
/**
 * Error.prepareStackTrace giving the raw position ('file:line:col', before source maps) of the first call site in a
 * file outside lib/ and node_modules, '' when there is none: the frame locationIn() reports from the formatted
 * stack (source maps move a position within its own file), so one key always gives one location.
 */
function firstOutsideLib(_e: Error, sites: NodeJS.CallSite[]): string {
  for (const s of sites) {
    const name = s.getScriptNameOrSourceURL() ?? s.getFileName();
    if (!name || name.startsWith(LIB_URL) || name.startsWith(LIB) || name.includes(NODE_MODULES) || !PLAIN_FILE.test(name)) continue;
    return `${name}:${s.getLineNumber()}:${s.getColumnNumber()}`;
  }
  return '';
}

function locationIn(stack: string): string | undefined {
  for (const line of stack.split('\n').slice(1)) {
    const m = FRAME.exec(line);
    if (!m) continue;
    const file = m[1]!.startsWith('file://') ? fileURLToPath(m[1]!) : m[1]!;
    if (file.startsWith(LIB) || file.includes(`${sep}node_modules${sep}`)) continue;
    const rel = relative(process.cwd(), file);
    return `${rel.startsWith('..') ? file : rel}:${m[2]}:${m[3]}`;
  }
  return undefined;
}

/** the location of the step being built by ArgSpec.build (so that defineOp does not walk the stack again) */
let building: string | undefined;

export function defineOp(def: OpDef): Operation {
  return {
    kind: def.kind,
    title: def.options?.name ?? def.title,
    options: def.options ?? {},
    location: building ?? callerLocation(),
    probe: def.probe,
    plan: def.plan,
  };
}

/**
 * An imperative step. It must report changes honestly and respect ctx.check itself. `probe`: its no-change fast
 * path (Task.probe): a read-only script the runner reads with the other steps' probes; its output is run()'s
 * second argument. Commands that only read should say so (`ctx.exec(cmd, { readOnly: true })`): the probes read
 * before them then stay valid.
 */
export function task(
  title: string,
  run: (ctx: StepContext, probed?: string) => Promise<TaskOutcome | void>,
  options: StepOptions & { probe?: (ctx: StepContext) => Probe | null } = {},
): Task {
  const { probe, ...opts } = options;
  return { kind: 'task', title: opts.name ?? title, options: opts, location: callerLocation(), run, ...(probe ? { probe } : {}) };
}

const PART = '@@@wpfarm-part';

/**
 * One probe for the operations a task runs itself (ctx.run): their probe scripts (and any other read-only probe
 * the task needs), each output after a marker line of its own. The task declares it as its probe (Task.probe), so
 * that it is read with the other probes (read ahead, one round trip), and gives each operation its part: `ctx.run(op, nestedOutputs(probed)[i])` (the runner
 * uses it only while the run has written nothing since the task started). Null when no operation has a probe.
 */
export function nestedProbe(ctx: StepContext, ops: (Operation | Probe)[]): Probe | null {
  const probes = ops.map((op) => ('script' in op ? op : op.probe(ctx)));
  if (probes.every((p) => !p)) return null;
  const parts = probes.map((p, i) => `printf '\\n%s\\n' '${PART}:${i}'\n( ${p?.script ?? ':'}\n) 2>&1 </dev/null`);
  const gather = mergeGather(probes.map((p) => p?.gather));
  return {
    script: `${parts.join('\n')}\nprintf '\\n'`,
    ...(probes.some((p) => p?.become) ? { become: true } : {}),
    ...(Object.keys(gather).length ? { gather } : {}),
  };
}

/** The gathered words of several probes (Probe.gather), by name, each once, in order. */
export function mergeGather(gathers: (Probe['gather'] | undefined)[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const g of gathers)
    for (const [name, words] of Object.entries(g ?? {})) {
      const list = (out[name] ??= []);
      for (const w of words) if (!list.includes(w)) list.push(w);
    }
  return out;
}

/** The outputs of a nestedProbe() by operation, in order (undefined: not in the output; the operation probes again). */
export function nestedOutputs(out: string | undefined, n: number): (string | undefined)[] {
  const got = new Map<string, string>();
  if (out !== undefined) {
    const parts = out.split(new RegExp(`^${PART}:(\\d+)\\n`, 'm'));
    for (let k = 1; k < parts.length; k += 2) got.set(parts[k]!, (parts[k + 1] ?? '').replace(/\n$/, '').replace(/\n$/, ''));
  }
  return Array.from({ length: n }, (_, i) => got.get(String(i)));
}

/** No change; `reason` says why ("file already has that content"), shown at -v and in the JSON report. */
export const unchanged = (result?: unknown, reason?: string): Plan => ({ changed: false, changes: [], result, reason });

/** The context's connection; a context from hostContext() learns it asynchronously, so open it if needed. */
export async function connOf(ctx: StepContext): Promise<Connection> {
  try {
    return ctx.conn;
  } catch {
    await ctx.exec(':');
    return ctx.conn;
  }
}

// ---------------------------------------------------------------------------------------------------
// Argument specs

/** Rules between fields (Ansible's mutually_exclusive, required_together, required_one_of, required_if). */
export interface ArgRules<K extends string> {
  /** at most one of each group */
  mutuallyExclusive?: K[][];
  /** all or none of each group */
  requiredTogether?: K[][];
  /** at least one of each group */
  requiredOneOf?: K[][];
  /** [field, value, fields required when field === value] */
  requiredIf?: [K, unknown, K[]][];
  /** the checks that need code: [field, message] when wrong, null when fine */
  check?: (args: Record<K, unknown>) => [K, string] | null;
}

/** a zod schema for every field of the argument interface A (a field left out is a type error) */
export type ArgShape<A> = { [K in keyof Required<A>]-?: z.ZodType };

const given = (v: unknown): boolean => v !== undefined;

/**
 * An operation's declared arguments. `build(args, make)` checks `args` against the spec and runs `make` with
 * the typed values (defaults applied); every bad argument, and any InputError `make` throws, becomes one
 * uniform InputErrors (exit 4) at the role file and line that built the step:
 *   roles/common/role.ts:42:7 lineinfile.line: is required when state is "present"
 */
export class ArgSpec<S extends z.ZodRawShape> {
  readonly schema: z.ZodType<z.output<z.ZodObject<S>>>;
  /** valid arguments already checked (by dataKey) → the checked values (the schema is pure: same data, same values) */
  private readonly checked = new Map<string, unknown>();

  constructor(
    readonly kind: string,
    readonly shape: S,
    readonly rules: ArgRules<Extract<keyof S, string>> = {},
  ) {
    const r = rules;
    this.schema = z.strictObject(shape).superRefine((raw, zctx) => {
      const a = raw as Record<string, unknown>;
      // one problem per field (the first rule that finds it)
      const seen = new Set<string>();
      const ctx = {
        addIssue(i: { code: 'custom'; path: [string]; message: string }) {
          if (seen.has(i.path[0])) return;
          seen.add(i.path[0]);
          zctx.addIssue(i);
        },
      };
      const list = (ks: string[]) => ks.join(', ');
      for (const g of r.mutuallyExclusive ?? []) {
        const set = g.filter((k) => given(a[k]));
        if (set.length > 1)
          ctx.addIssue({ code: 'custom', path: [set[1]!], message: `is mutually exclusive with ${list(set.filter((k) => k !== set[1]))}` });
      }
      for (const g of r.requiredTogether ?? []) {
        const set = g.filter((k) => given(a[k]));
        if (set.length && set.length < g.length) {
          for (const k of g.filter((f) => !given(a[f])))
            ctx.addIssue({ code: 'custom', path: [k], message: `is required together with ${list(set)}` });
        }
      }
      for (const [k, v, need] of r.requiredIf ?? []) {
        if (a[k] !== v) continue;
        for (const f of need.filter((n) => !given(a[n]))) {
          ctx.addIssue({ code: 'custom', path: [f], message: `is required when ${k} is ${JSON.stringify(v)}` });
        }
      }
      for (const g of r.requiredOneOf ?? []) {
        if (!g.some((k) => given(a[k]))) ctx.addIssue({ code: 'custom', path: [g[0]!], message: `one of ${list(g)} is required` });
      }
      const bad = r.check?.(a as Record<Extract<keyof S, string>, unknown>);
      if (bad) ctx.addIssue({ code: 'custom', path: [bad[0]], message: bad[1] });
    }) as unknown as z.ZodType<z.output<z.ZodObject<S>>>;
  }

  /** Check `args`; InputErrors at `where` (default: the caller's location) naming each bad field. */
  parse(args: unknown, where = callerLocation()): z.output<z.ZodObject<S>> {
    // the same arguments on every host (a role's line, built once per host): checked once, each host given its own copy
    const key = dataKey(args);
    const known = key === undefined ? undefined : this.checked.get(key);
    if (known !== undefined) return copyData(known) as z.output<z.ZodObject<S>>;
    try {
      const out = validate(this.schema, args, where ?? '(unknown location)', { rootName: '(arguments)' });
      if (key !== undefined && this.checked.size < MAX_CHECKED && dataKey(out) !== undefined) this.checked.set(key, copyData(out));
      return out;
    } catch (e) {
      if (e instanceof InputErrors) throw new InputErrors(e.problems.map((p) => this.located(p.field, p.message, where)));
      throw e;
    }
  }

  /** parse(), then make(values); an InputError from make() is reported at the same location, under the kind. */
  build<R>(args: unknown, make: (a: z.output<z.ZodObject<S>>) => R): R {
    const where = callerLocation();
    const a = this.parse(args, where);
    const outer = building;
    building = where;
    try {
      return make(a);
    } catch (e) {
      if (e instanceof InputError && !(e instanceof InputErrors) && !e.where) {
        throw new InputErrors([this.located('', e.message.replace(new RegExp(`^${this.kind}\\b:?\\s*`), ''), where)]);
      }
      throw e;
    } finally {
      building = outer;
    }
  }

  private located(field: string, message: string, where: string | undefined): Problem {
    const m = /^(.*):(\d+):(\d+)$/.exec(where ?? '');
    const name = field ? `${this.kind}.${field}` : this.kind;
    return m
      ? { file: m[1]!, line: +m[2]!, col: +m[3]!, field: name, message }
      : { file: where ?? '(unknown location)', line: 0, col: 0, field: name, message };
  }
}

/** arguments remembered per spec at most, and the longest (JSON text) remembered: at most ~2 MB per spec */
const MAX_CHECKED = 1000;
const MAX_KEY = 1024;

/**
 * The JSON text of `v` when it is plain data JSON keeps exactly (strings, finite numbers, booleans, null, arrays and
 * plain objects, no undefined), short enough to remember; undefined otherwise (a function, RegExp, Buffer... is never
 * remembered: checked every time).
 */
function dataKey(v: unknown): string | undefined {
  return isData(v, 0) ? ((s) => (s.length <= MAX_KEY ? s : undefined))(JSON.stringify(v)) : undefined;
}

function isData(v: unknown, depth: number): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0);
    case 'object': {
      if (v === null) return true;
      if (depth > 8) return false;
      if (Array.isArray(v)) {
        for (const x of v) if (!isData(x, depth + 1)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const k in v) if (!Object.hasOwn(v, k) || !isData((v as Record<string, unknown>)[k], depth + 1)) return false;
      return true;
    }
    default:
      return false;
  }
}

/** a deep copy of data isData() accepted */
function copyData(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(copyData);
  const o: Record<string, unknown> = {};
  for (const k in v) o[k] = copyData((v as Record<string, unknown>)[k]);
  return o;
}

/** Declare an operation's arguments: `argSpec<FileArgs>()('file', { path: ..., ... }, { mutuallyExclusive: [...] })`. */
export function argSpec<A>() {
  return <S extends ArgShape<A> & z.ZodRawShape>(kind: string, shape: S, rules: ArgRules<Extract<keyof S, string>> = {}): ArgSpec<S> =>
    new ArgSpec(kind, shape, rules);
}

// ---- field types shared by the specs

/** a string or a RegExp */
export const pattern = z.union([z.string(), z.instanceof(RegExp)]);
/** an absolute path without '..' or newlines; trailing slashes dropped */
export const absPath = z
  .string()
  .refine((p) => p.startsWith('/') && !p.split('/').includes('..') && !/[\n\0]/.test(p), {
    error: (iss) => `must be an absolute path without '..' or newlines, got ${JSON.stringify(iss.input)}`,
  })
  .transform((p) => (p.length > 1 ? p.replace(/\/+$/, '') || '/' : p));
/** a function (changedWhen, ...) */
export const fn = <F>() => z.custom<F>((v) => typeof v === 'function', { error: 'must be a function' });
/** mode/owner/group, shared by every operation that sets file attributes (checked further by normAttrs) */
export const attrShape = {
  mode: z.union([z.number(), z.string()]).optional(),
  owner: z.string().optional(),
  group: z.string().optional(),
};
