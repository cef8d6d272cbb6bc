// template: render a local EJS template on the controller and write it like `file` (atomic, sha256).
//
// Variables: ctx.vars (the host's merged vars) < the step's own `vars`. Templates use them by name
// (`<%= site.domain %>`). A missing variable is an error, never an empty string: the data object is a
// Proxy (ejs runs templates inside `with (data)`), so an unknown top-level name raises a ReferenceError
// and an unknown property of a var (`site.domian`) raises our MissingVariable. Both become an InputError
// "templates/x.conf.ejs:12: undefined variable 'site.domian'". Optional values: test with
// `typeof name !== 'undefined'` or `'key' in obj`.
//
// Where templates live: the project's top-level `templates/` folder, one subfolder per role
// (templates/<role>/<name>.ejs). Roles name them with templatePath(role, name), which finds the folder from
// this file's location (not the working directory), so playbooks run from anywhere. A relative `src`
// given directly is relative to the working directory (tests, ad-hoc use).
import { readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { fileURLToPath } from 'node:url';
import ejs from 'ejs';
import type { Operation, StepContext, StepOptions, Vars } from '../types.ts';
import { InputError } from '../errors.ts';
import { displayPath } from '../yamlsrc.ts';
import { absPath, argSpec, attrShape, defineOp } from './base.ts';
import { z } from '../schema.ts';
import { checkValidate, normAttrs, parsePathProbe, pathGather, pathProbeScript, planWrite, DIFF_CONTENT_CAP, type Attrs } from './files.ts';

export interface TemplateArgs extends Attrs {
  /** remote destination */
  path: string;
  /** local .ejs file (relative to the working directory); for the project's templates: templatePath(role, name) */
  src: string;
  /** extra vars, over ctx.vars */
  vars?: Vars;
  /** hide the rendered content: no diff, no hash in the change lines */
  secret?: boolean;
  /** check the rendered file before it replaces the old one ("%s" = the temp file), see file() */
  validate?: string;
  /** create the missing parent directories of a new file */
  create?: boolean;
  /** keep a timestamped copy before replacing the content (its path: result.backup_file) */
  backup?: boolean;
}

class MissingVariable extends Error {
  constructor(readonly variable: string) {
    super(`undefined variable '${variable}'`);
    this.name = 'MissingVariable';
  }
}

/** Property names that libraries probe for and that must read as undefined, not throw. */
const PROBED = new Set([
  'toJSON',
  'then',
  'inspect',
  'asymmetricMatch',
  'nodeType',
  '$$typeof',
  '@@__IMMUTABLE_ITERABLE__@@',
  'constructor',
]);

const isPlainish = (v: unknown): v is object =>
  typeof v === 'object' &&
  v !== null &&
  (Array.isArray(v) || Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);

/** Wrap a var so that reading an unknown property throws MissingVariable(path.prop). */
function strict<T>(value: T, path: string): T {
  if (!isPlainish(value)) return value;
  return new Proxy(value, {
    get(target, prop, receiver) {
      if (typeof prop === 'symbol') return Reflect.get(target, prop, receiver);
      if (Reflect.has(target, prop))
        return strict(Reflect.get(target, prop, receiver), Array.isArray(target) ? `${path}[${prop}]` : `${path}.${prop}`);
      if (PROBED.has(prop)) return undefined;
      throw new MissingVariable(`${path}.${prop}`);
    },
  });
}

/** Names of ejs's generated code inside `with (data)`: a var with one of these names must not shadow them. */
const EJS_INTERNALS = new Set(['__output', '__append', '__line', '__lines', '__filename', 'escapeFn', 'include', 'rethrow', 'locals']);

/** The top-level data object: own keys only (no Object.prototype names leak into `with`). */
function strictRoot(vars: Vars): Vars {
  const data: Vars = Object.create(null) as Vars;
  // (left out, not only hidden by `has`: ejs's include() copies the data into a plain object)
  for (const [k, v] of Object.entries(vars)) if (!EJS_INTERNALS.has(k)) data[k] = v;
  return new Proxy(data, {
    has(target, prop) {
      return typeof prop === 'string' && !EJS_INTERNALS.has(prop) && Object.prototype.hasOwnProperty.call(target, prop);
    },
    get(target, prop) {
      if (typeof prop === 'symbol') return undefined; // Symbol.unscopables etc.
      if (Object.prototype.hasOwnProperty.call(target, prop)) return strict(target[prop], prop);
      if (PROBED.has(prop)) return undefined;
      throw new MissingVariable(prop); // `locals.foo` with foo missing
    },
  });
}

/** The project's `templates/` folder (text configs an operator edits, one subfolder per role). */
export const TEMPLATES_DIR = resolvePath(dirname(fileURLToPath(import.meta.url)), '../../templates');

/**
 * `templates/<role>/<name>` as a `src` for template() or renderTemplate(), whatever the working directory:
 * relative to the working directory when under it (short step titles and error locations), else absolute.
 */
export function templatePath(role: string, name: string): string {
  return displayPath(join(TEMPLATES_DIR, role, name));
}

type Compiled = (data: Vars) => string;
const cache = new Map<string, { mtimeMs: number; size: number; fn: Compiled }>();

function compile(abs: string): Compiled {
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(abs);
  } catch (e) {
    throw new InputError(`template not found: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, displayPath(abs));
  }
  const hit = cache.get(abs);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.fn;
  const text = readFileSync(abs, 'utf8');
  let fn: Compiled;
  try {
    fn = ejs.compile(text, { filename: abs, strict: false, _with: true, async: false, compileDebug: true, cache: false }) as Compiled;
  } catch (e) {
    const m = e instanceof Error ? e.message : String(e);
    throw new InputError(`template syntax error: ${m.split('\n')[0]}`, displayPath(abs));
  }
  cache.set(abs, { mtimeMs: st.mtimeMs, size: st.size, fn });
  return fn;
}

/**
 * Render a template file with vars; every error is an InputError naming the file and line
 * (of the innermost included template, when the error happened inside an include).
 */
export function renderTemplate(src: string, vars: Vars): string {
  const abs = resolvePath(src);
  const fn = compile(abs);
  try {
    return fn(strictRoot(vars));
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    // ejs prefixes the message with "<file>:<line>\n<context>\n\n" once per template level.
    const locs = [...err.message.matchAll(/^(\S.*):(\d+)$/gm)];
    const last = locs[locs.length - 1];
    const where = last ? `${displayPath(last[1]!)}:${last[2]}` : displayPath(abs);
    const original = err.message.split('\n\n').pop() ?? err.message;
    let message: string;
    if (err instanceof MissingVariable) message = `undefined variable '${err.variable}'`;
    else if (err instanceof ReferenceError) {
      const m = /^(\S+) is not defined/.exec(original);
      message = m ? `undefined variable '${m[1]}'` : original;
    } else message = `template error: ${original.split('\n')[0]}`;
    throw new InputError(message, where);
  }
}

export const TEMPLATE_ARGS = argSpec<TemplateArgs>()('template', {
  ...attrShape,
  path: absPath,
  src: z.string().min(1),
  vars: z.record(z.string(), z.unknown()).optional(),
  secret: z.boolean().optional(),
  validate: z.string().optional(),
  create: z.boolean().optional(),
  backup: z.boolean().optional(),
});

export function template(input: TemplateArgs, opts: StepOptions = {}): Operation {
  return TEMPLATE_ARGS.build(input, (args) => templateOp(args, opts));
}

function templateOp(args: z.output<typeof TEMPLATE_ARGS.schema>, opts: StepOptions): Operation {
  const path = args.path;
  const what = `template ${path}`;
  const want = normAttrs(args, what);
  const validate = checkValidate(args.validate, what);
  return defineOp({
    kind: 'template',
    title: `template ${args.src} -> ${path}`,
    options: opts,
    probe: (ctx) => ({
      script: pathProbeScript(path, {
        sha: true,
        contentCap: ctx.diff && !args.secret ? DIFF_CONTENT_CAP : 0,
        owner: want.owner,
        group: want.group,
      }),
      gather: pathGather({ path, sha: true }),
    }),
    plan: (ctx: StepContext, out: string) => {
      const text = renderTemplate(args.src, { ...ctx.vars, ...(args.vars ?? {}) });
      const st = parsePathProbe(out);
      const content = Buffer.from(text, 'utf8');
      return planWrite(ctx, st, {
        path,
        content,
        want,
        secret: args.secret,
        validate,
        parents: args.create,
        backup: args.backup,
        result: { src: args.src },
      });
    },
  });
}
