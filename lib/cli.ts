// Command-line parsing shared by every playbook. Unknown flags are bad input (exit 4).
import { parseArgs } from 'node:util';
import { EXIT, InputError } from './errors.ts';
import { mask } from './secrets.ts';

export interface CommonFlags {
  /** every -i, in order (merged by loadInventory, later wins) */
  inventory: string[];
  limit?: string;
  tags?: string[];
  skipTags?: string[];
  check: boolean;
  diff: boolean;
  forks: number;
  /** seconds; per host, counted from the start of its SSH handshake (default: the inventory's, else 10) */
  connectTimeout?: number;
  json?: string;
  /** HTML timeline of the run (also written beside --json) */
  timeline?: string;
  /** seconds to wait for the deploy lock (0: refuse at once) */
  waitLock: number;
  /** run without the deploy lock (an operator's explicit choice) */
  noLock: boolean;
  verbose: number;
  extraVars: string[];
  acceptNewHostKeys: boolean;
  help: boolean;
}

export const COMMON_HELP = `Common options:
  -i, --inventory FILE        inventory file (default: $WPFARM_INVENTORY, inventory/production.yml if present, else inventory/lab.yml)
  -l, --limit PATTERN         restrict to hosts: name, group, glob, !exclude, &intersect, @retryfile (comma separated)
  -t, --tags T1,T2            only steps with these tags;  --skip-tags T1,T2  skip steps with these tags
  -C, --check                 dry run: report what would change, change nothing
  -D, --diff                  show diffs of changed content
  -f, --forks N               hosts in parallel (default 50)
      --connect-timeout S     seconds for one host's SSH connect and login, counted from its own start
                              (default: the inventory's settings.connect_timeout, else 10)
  -e, --extra-vars k=v        extra vars, highest precedence (repeatable)
      --json FILE             write every step's result and diff to FILE (secrets masked)
      --timeline FILE         write an HTML timeline of the run (also written beside --json FILE as FILE.html)
      --wait-lock [SECONDS]   wait for the deploy lock held by another run (default 600 s) instead of refusing
      --no-lock               run without taking the deploy lock (mutating runs take it; --check never does)
      --accept-new-host-keys  record the key of hosts seen for the first time in known_hosts
  -v, --verbose               more output (-vv: every step as it starts)
  -h, --help                  this help
Exit codes: 0 all ok, 2 a host failed, 3 a host unreachable, 4 bad input, 5 the deploy lock is held, 130 interrupted.`;

type OptSpec = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

const COMMON_OPTIONS = {
  inventory: { type: 'string', short: 'i', multiple: true },
  limit: { type: 'string', short: 'l' },
  tags: { type: 'string', short: 't' },
  'skip-tags': { type: 'string' },
  check: { type: 'boolean', short: 'C' },
  diff: { type: 'boolean', short: 'D' },
  forks: { type: 'string', short: 'f' },
  'connect-timeout': { type: 'string' },
  json: { type: 'string' },
  timeline: { type: 'string' },
  'wait-lock': { type: 'string' },
  'no-lock': { type: 'boolean' },
  verbose: { type: 'boolean', short: 'v', multiple: true },
  'extra-vars': { type: 'string', short: 'e', multiple: true },
  'accept-new-host-keys': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export function defaultInventory(): string {
  if (process.env.WPFARM_INVENTORY) return process.env.WPFARM_INVENTORY;
  return 'inventory/lab.yml';
}

export interface Parsed<E> {
  flags: CommonFlags;
  extra: E;
  positionals: string[];
}

/**
 * Parse argv (without node and script). `extraOptions` are the playbook's own flags (node:util parseArgs specs).
 */
export function parseCli<E extends Record<string, unknown> = Record<string, unknown>>(
  argv: string[],
  extraOptions: OptSpec = {},
): Parsed<E> {
  let values: Record<string, unknown>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: withWaitLockDefault(argv),
      options: { ...COMMON_OPTIONS, ...extraOptions } as OptSpec,
      allowPositionals: true,
      strict: true,
    }) as { values: Record<string, unknown>; positionals: string[] });
  } catch (e) {
    throw new InputError(`${(e as Error).message} (see --help)`);
  }
  const list = (v: unknown): string[] | undefined =>
    typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
  const forksRaw = values.forks as string | undefined;
  const forks = forksRaw === undefined ? 50 : Number(forksRaw);
  if (!Number.isInteger(forks) || forks < 1 || forks > 1000) throw new InputError(`--forks must be an integer 1..1000, got '${forksRaw}'`);
  const ctRaw = values['connect-timeout'] as string | undefined;
  const connectTimeout = ctRaw === undefined ? undefined : Number(ctRaw);
  if (connectTimeout !== undefined && !(Number.isInteger(connectTimeout) && connectTimeout >= 1 && connectTimeout <= 3600)) {
    throw new InputError(`--connect-timeout must be an integer number of seconds 1..3600, got '${ctRaw}'`);
  }
  const flags: CommonFlags = {
    inventory: (values.inventory as string[] | undefined) ?? [defaultInventory()],
    limit: values.limit as string | undefined,
    tags: list(values.tags),
    skipTags: list(values['skip-tags']),
    check: !!values.check,
    diff: !!values.diff,
    forks,
    connectTimeout,
    json: values.json as string | undefined,
    timeline: values.timeline as string | undefined,
    waitLock: waitLockSeconds(values['wait-lock'] as string | undefined),
    noLock: !!values['no-lock'],
    verbose: ((values.verbose as boolean[] | undefined) ?? []).length,
    extraVars: (values['extra-vars'] as string[] | undefined) ?? [],
    acceptNewHostKeys: !!values['accept-new-host-keys'],
    help: !!values.help,
  };
  const extra: Record<string, unknown> = {};
  for (const k of Object.keys(extraOptions ?? {})) extra[k] = values[k];
  return { flags, extra: extra as E, positionals };
}

/** `--wait-lock` takes an optional number of seconds: without one (end of argv or another flag next) it means 600. */
function withWaitLockDefault(argv: string[]): string[] {
  return argv.map((a, i) => (a === '--wait-lock' && !/^\d+$/.test(argv[i + 1] ?? '') ? '--wait-lock=600' : a));
}

function waitLockSeconds(raw: string | undefined): number {
  if (raw === undefined) return 0;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n > 86_400) throw new InputError(`--wait-lock must be a number of seconds 0..86400, got '${raw}'`);
  return n;
}

/** Print an error the way every playbook does and exit with its code. */
export function fail(e: unknown): never {
  const code = (e as { exitCode?: number }).exitCode ?? EXIT.FAILED;
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`error: ${mask(msg)}\n`);
  process.exit(code);
}
