// The one command-line parser of every playbook. A command declares its options once (OptionSpec: name, short
// flag, type, default, help, choices, repeatable); the parser (node:util parseArgs) and `--help` are both made
// from that declaration, so the help cannot drift from the code. Unknown options and bad values are bad
// input (InputError, exit 4) naming the option. One inventory default for every command: defaultInventory().
import { parseArgs } from 'node:util';
import { EXIT, InputError } from './errors.ts';
import { mask } from './secrets.ts';
import { splitList } from './vars.ts';

/**
 * One option. Types: `string`; `boolean` (a flag; repeatable: counted, as -vv); `integer` (with min/max);
 * `list` (comma separated, see lib/vars.ts splitList(); repeatable: the lists are joined). A repeatable `string` gives
 * every value in order.
 */
export interface OptionSpec {
  /** long name, without the dashes: --sites-dir → 'sites-dir' */
  name: string;
  /** one letter: -i */
  short?: string;
  type: 'string' | 'boolean' | 'integer' | 'list';
  /** one line for --help */
  help: string;
  /** the value's placeholder in --help (FILE, N, DOMAIN); default by type */
  arg?: string;
  /** value when the option is not given (a function: read when parsing, e.g. from the environment) */
  default?: string | number | (() => string);
  /** the text shown for the default in --help, when the value itself would mislead */
  defaultHelp?: string;
  /** the allowed values */
  choices?: readonly string[];
  /** may be given several times */
  repeatable?: boolean;
  /** integer bounds */
  min?: number;
  max?: number;
}

/** A command (a playbook): its own options and positional arguments, and which common options it takes. */
export interface CommandSpec {
  /** the script, as shown in usage: 'add-site.ts' */
  name: string;
  /** what it does: the lines after the usage line in --help */
  summary: string;
  options?: readonly OptionSpec[];
  /** positional arguments: their usage text (ROLE, NAME...) and how many; none accepted when absent */
  positionals?: { usage: string; min?: number; max?: number };
  /** the common options it takes: all of them (a run over an inventory), or only these names */
  common?: 'all' | readonly string[];
  /** extra text after the options (examples, exit codes of its own) */
  epilog?: string;
}

/** $WPFARM_INVENTORY, else inventory/lab.yml: the default of every command. */
export function defaultInventory(): string {
  return process.env.WPFARM_INVENTORY || 'inventory/lab.yml';
}

export const COMMON_OPTIONS: readonly OptionSpec[] = [
  {
    name: 'inventory',
    short: 'i',
    type: 'string',
    arg: 'FILE',
    repeatable: true,
    default: defaultInventory,
    defaultHelp: '$WPFARM_INVENTORY, else inventory/lab.yml',
    help: 'inventory file (repeatable: the inventories are merged, later ones win)',
  },
  {
    name: 'limit',
    short: 'l',
    type: 'string',
    arg: 'PATTERN',
    help: 'restrict to hosts: name, group, glob, !exclude, &intersect, @retryfile (comma separated)',
  },
  { name: 'tags', short: 't', type: 'list', arg: 'T1,T2', repeatable: true, help: 'only steps with these tags' },
  { name: 'skip-tags', type: 'list', arg: 'T1,T2', repeatable: true, help: 'skip steps with these tags' },
  { name: 'check', short: 'C', type: 'boolean', help: 'dry run: report what would change, change nothing' },
  { name: 'diff', short: 'D', type: 'boolean', help: 'show diffs of changed content' },
  { name: 'forks', short: 'f', type: 'integer', arg: 'N', default: 50, min: 1, max: 1000, help: 'hosts in parallel' },
  {
    name: 'connect-timeout',
    type: 'integer',
    arg: 'S',
    min: 1,
    max: 3600,
    defaultHelp: "the inventory's settings.connect_timeout, else 10",
    help: "seconds a host may stay silent during its SSH connect and login (TCP connect, then between packets)",
  },
  {
    name: 'handshakes',
    type: 'integer',
    arg: 'N',
    min: 1,
    max: 1000,
    defaultHelp: "the inventory's settings.handshakes, else 8 per CPU core",
    help: 'SSH handshakes in flight at once, whatever --forks is (the others wait for a turn, their timeout not started)',
  },
  { name: 'extra-vars', short: 'e', type: 'string', arg: 'k=v', repeatable: true, help: 'extra vars, highest precedence' },
  { name: 'json', type: 'string', arg: 'FILE', help: "write every step's result and diff to FILE (secrets masked)" },
  {
    name: 'timeline',
    type: 'string',
    arg: 'FILE',
    help: 'write an HTML timeline of the run (also written beside --json FILE as FILE.html)',
  },
  { name: 'plan-out', type: 'string', arg: 'FILE', help: 'check mode, and record per host and step the planned change in FILE' },
  { name: 'apply', type: 'string', arg: 'FILE', help: 'apply exactly the plan in FILE (exit 4 when a host or an input changed since)' },
  {
    name: 'wait-lock',
    type: 'integer',
    arg: '[SECONDS]',
    min: 0,
    max: 86_400,
    defaultHelp: '600 when given without SECONDS',
    help: 'wait for the deploy lock held by another run instead of refusing',
  },
  { name: 'no-lock', type: 'boolean', help: 'run without taking the deploy lock (mutating runs take it; --check never does)' },
  { name: 'accept-new-host-keys', type: 'boolean', help: 'record the key of hosts seen for the first time in known_hosts' },
  {
    name: 'verbose',
    short: 'v',
    type: 'boolean',
    repeatable: true,
    help: 'more output (-vv: every step as it starts; -vvv: every command)',
  },
  { name: 'help', short: 'h', type: 'boolean', help: 'this help' },
];

export const EXIT_HELP =
  'Exit codes: 0 all ok, 2 a host failed, 3 a host unreachable, 4 bad input, 5 the deploy lock is held, 130 interrupted.';

export interface CommonFlags {
  /** every -i, in order (merged by loadInventory, later wins); [defaultInventory()] when none */
  inventory: string[];
  limit?: string;
  tags?: string[];
  skipTags?: string[];
  check: boolean;
  diff: boolean;
  forks: number;
  /** seconds; per host, counted from the start of its SSH handshake (default: the inventory's, else 10) */
  connectTimeout?: number;
  /** SSH handshakes in flight at once (default: the inventory's, else 8 per core; lib/transport.ts) */
  handshakes?: number;
  json?: string;
  /** HTML timeline of the run (also written beside --json) */
  timeline?: string;
  /** record the plan (check mode) in this file (lib/plan.ts) */
  planOut?: string;
  /** apply exactly the plan in this file */
  apply?: string;
  /** seconds to wait for the deploy lock (0: refuse at once) */
  waitLock: number;
  /** run without the deploy lock (an operator's explicit choice) */
  noLock: boolean;
  verbose: number;
  extraVars: string[];
  acceptNewHostKeys: boolean;
  help: boolean;
}

/** A parsed value, by option name (the long name, dashes kept): string, boolean, number, string[] or undefined. */
export type OptionValue = string | boolean | number | string[] | undefined;

export interface Parsed {
  flags: CommonFlags;
  /** every option of the command by its long name (its own and the common ones), defaults applied */
  opts: Record<string, OptionValue>;
  positionals: string[];
}

function commonOf(cmd: CommandSpec): OptionSpec[] {
  const c = cmd.common ?? 'all';
  const names = c === 'all' ? COMMON_OPTIONS.map((o) => o.name) : [...c, 'help'];
  return COMMON_OPTIONS.filter((o) => names.includes(o.name));
}

/** Every option of a command, its own first; a name or short flag declared twice is a programming error. */
export function optionsOf(cmd: CommandSpec): OptionSpec[] {
  const all = [...(cmd.options ?? []), ...commonOf(cmd)];
  const seen = new Set<string>();
  for (const o of all) {
    for (const k of [`--${o.name}`, o.short ? `-${o.short}` : '']) {
      if (k && seen.has(k)) throw new Error(`${cmd.name}: option ${k} declared twice`);
      seen.add(k);
    }
  }
  return all;
}

/** The one usage line: `usage: add-site.ts [options] ROLE`. */
export function usageLine(cmd: CommandSpec): string {
  return `usage: ${cmd.name} [options]${cmd.positionals ? ` ${cmd.positionals.usage}` : ''}`;
}

function optionHelpLine(o: OptionSpec): [string, string] {
  const arg = o.type === 'boolean' ? '' : ` ${o.arg ?? (o.type === 'integer' ? 'N' : o.type === 'list' ? 'A,B' : 'VALUE')}`;
  const left = `${o.short ? `-${o.short}, ` : '    '}--${o.name}${arg}`;
  const notes: string[] = [];
  if (o.choices) notes.push(`one of ${o.choices.join(', ')}`);
  if (o.min !== undefined || o.max !== undefined) notes.push(`${o.min ?? '...'}..${o.max ?? '...'}`);
  const dflt = o.defaultHelp ?? (o.default === undefined || typeof o.default === 'function' ? undefined : String(o.default));
  if (dflt !== undefined) notes.push(`default: ${dflt}`);
  if (o.repeatable && o.type !== 'boolean') notes.push('repeatable');
  return [left, `${o.help}${notes.length ? ` (${notes.join('; ')})` : ''}`];
}

/** --help, generated from the command's declaration. */
export function helpText(cmd: CommandSpec): string {
  const own = cmd.options ?? [];
  const common = commonOf(cmd);
  const lines = [...own, ...common].map(optionHelpLine);
  const w = Math.min(34, Math.max(...lines.map(([l]) => l.length)) + 2);
  const fmt = ([l, r]: [string, string]) => `  ${l.padEnd(w)}${l.length >= w ? `\n  ${' '.repeat(w)}` : ''}${r}`;
  const out = [usageLine(cmd), '', cmd.summary.trimEnd()];
  if (own.length) out.push('', 'Options:', ...lines.slice(0, own.length).map(fmt));
  out.push('', own.length ? 'Common options:' : 'Options:', ...lines.slice(own.length).map(fmt));
  if (cmd.epilog) out.push('', cmd.epilog.trimEnd());
  else if ((cmd.common ?? 'all') === 'all') out.push('', EXIT_HELP);
  return `${out.join('\n')}\n`;
}

function bad(cmd: CommandSpec, msg: string): InputError {
  return new InputError(`${msg}\n${usageLine(cmd)} (see --help)`);
}

/** What parseArgs said, as one short sentence naming the option. */
function parseArgsMessage(e: unknown): string {
  const msg = (e as Error).message;
  const code = (e as { code?: string }).code;
  const opt = /'(-[^' ]+)/.exec(msg)?.[1];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && opt) return `unknown option '${opt}'`;
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && opt) {
    return /argument missing/.test(msg) ? `option '${opt}' needs a value` : `option '${opt}' takes no value`;
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
    return `unexpected argument ${/'([^']*)'/.exec(msg)?.[1] ? `'${/'([^']*)'/.exec(msg)![1]}'` : ''}`.trim();
  return msg;
}

/** Parse argv (without node and the script) against the command's declaration. Bad input: InputError. */
export function parseCli(argv: string[], cmd: CommandSpec = { name: 'wpfarm', summary: '' }): Parsed {
  const specs = optionsOf(cmd);
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const o of specs) {
    options[o.name] = {
      type: o.type === 'boolean' ? 'boolean' : 'string',
      ...(o.short ? { short: o.short } : {}),
      ...(o.repeatable ? { multiple: true } : {}),
    };
  }
  let raw: Record<string, string | boolean | (string | boolean)[] | undefined>;
  let positionals: string[];
  try {
    ({ values: raw, positionals } = parseArgs({
      args: withWaitLockDefault(argv),
      options,
      allowPositionals: !!cmd.positionals,
      strict: true,
    }));
  } catch (e) {
    throw bad(cmd, parseArgsMessage(e));
  }
  const opts: Record<string, OptionValue> = {};
  for (const o of specs) {
    const flag = `--${o.name}`;
    const given = raw[o.name];
    const many = given === undefined ? [] : Array.isArray(given) ? given : [given];
    if (o.type === 'boolean') {
      opts[o.name] = o.repeatable ? many.length : many.length > 0;
      continue;
    }
    const texts = many.map(String);
    if (o.choices)
      for (const t of texts) if (!o.choices.includes(t)) throw bad(cmd, `${flag} must be one of ${o.choices.join(', ')}, got '${t}'`);
    if (o.type === 'list') {
      opts[o.name] = texts.length ? texts.flatMap(splitList) : undefined;
    } else if (o.type === 'integer') {
      const text = texts.at(-1);
      const n =
        text === undefined ? (typeof o.default === 'number' ? o.default : undefined) : /^-?\d+$/.test(text.trim()) ? Number(text) : NaN;
      if (n !== undefined && (!Number.isSafeInteger(n) || (o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max))) {
        throw bad(
          cmd,
          `${flag} must be an integer${o.min !== undefined || o.max !== undefined ? ` from ${o.min ?? '...'} to ${o.max ?? '...'}` : ''}, got '${text}'`,
        );
      }
      opts[o.name] = n;
    } else {
      const dflt = typeof o.default === 'function' ? o.default() : o.default === undefined ? undefined : String(o.default);
      if (o.repeatable) opts[o.name] = texts.length ? texts : dflt === undefined ? [] : [dflt];
      else opts[o.name] = texts.at(-1) ?? dflt;
    }
  }
  const p = cmd.positionals;
  if (p && !opts.help) {
    if (p.min !== undefined && positionals.length < p.min) throw bad(cmd, `missing ${p.usage}`);
    if (p.max !== undefined && positionals.length > p.max) throw bad(cmd, `unexpected argument '${positionals[p.max]}'`);
  }
  const flags: CommonFlags = {
    inventory: (opts.inventory as string[] | undefined) ?? [defaultInventory()],
    limit: opts.limit as string | undefined,
    tags: opts.tags as string[] | undefined,
    skipTags: opts['skip-tags'] as string[] | undefined,
    check: !!opts.check || opts['plan-out'] !== undefined,
    diff: !!opts.diff,
    forks: (opts.forks as number | undefined) ?? 50,
    connectTimeout: opts['connect-timeout'] as number | undefined,
    handshakes: opts.handshakes as number | undefined,
    json: opts.json as string | undefined,
    timeline: opts.timeline as string | undefined,
    planOut: opts['plan-out'] as string | undefined,
    apply: opts.apply as string | undefined,
    waitLock: (opts['wait-lock'] as number | undefined) ?? 0,
    noLock: !!opts['no-lock'],
    verbose: (opts.verbose as number | undefined) ?? 0,
    extraVars: (opts['extra-vars'] as string[] | undefined) ?? [],
    acceptNewHostKeys: !!opts['accept-new-host-keys'],
    help: !!opts.help,
  };
  if (flags.planOut && flags.apply) throw bad(cmd, '--plan-out and --apply exclude each other');
  if (flags.apply && opts.check) throw bad(cmd, '--apply changes the hosts: it cannot be combined with --check');
  return { flags, opts, positionals };
}

/** `--wait-lock` takes an optional number of seconds: without one (end of argv or another flag next) it means 600. */
function withWaitLockDefault(argv: string[]): string[] {
  return argv.map((a, i) => (a === '--wait-lock' && !/^\d+$/.test(argv[i + 1] ?? '') ? '--wait-lock=600' : a));
}

/**
 * Parse, and on --help print the generated help and exit 0; on bad input print the error and exit 4.
 * The playbooks' entry point.
 */
export function parseOrExit(argv: string[], cmd: CommandSpec): Parsed {
  try {
    const p = parseCli(argv, cmd);
    if (p.flags.help) {
      process.stdout.write(helpText(cmd));
      process.exit(EXIT.OK);
    }
    return p;
  } catch (e) {
    fail(e);
  }
}

/**
 * For commands that return their exit code and write through an io (run in-process by tests): the parsed command
 * line, or the code to return at once: 4 after printing the error (bad input), 0 after printing --help.
 */
export function parseForIo(argv: string[], cmd: CommandSpec, io: { out(s: string): void; err(s: string): void }): Parsed | number {
  let parsed: Parsed;
  try {
    parsed = parseCli(argv, cmd);
  } catch (err) {
    io.err(`error: ${(err as Error).message}`);
    return EXIT.BAD_INPUT;
  }
  if (parsed.flags.help) {
    io.out(helpText(cmd).trimEnd());
    return EXIT.OK;
  }
  return parsed;
}

/** Print an error the way every playbook does and exit with its code. */
export function fail(e: unknown): never {
  const code = (e as { exitCode?: number }).exitCode ?? EXIT.FAILED;
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`error: ${mask(msg)}\n`);
  process.exit(code);
}
