// The inventory: one or more YAML files (see docs/inventory.md for the format), validated on load.
//
// Every file is read by lib/yamlsrc.ts and checked by the zod schema below (lib/schema.ts); every problem
// is reported at once as an InputError (exit 4), each line starting with "file:line:col field", e.g.
//   inventory/lab.yml:14:11 hosts.db1.port: must be an integer from 1 to 65535, got the number 70000
//
// SEVERAL FILES (-i a.yml -i b.yml) are merged as Ansible does: hosts and groups are unioned (a group's
// hosts and children lists too), and for the same host, group, settings or vars key a later file wins.
//
// VARS PRECEDENCE (lowest first; a later level replaces a whole top-level key of an earlier one, no deep merge):
//   1. all         top-level `vars`
//   2. groups      every group the host belongs to (directly or through `children`), ordered by depth
//                  (a group's depth = 1 + the largest depth of its parents; groups nobody lists as a child
//                  have depth 1), so ancestors always come before their descendants; groups of the same
//                  depth are ordered alphabetically by name, and later wins (Ansible's order)
//   3. host        the host's own `vars`
//   4. extra vars  from the CLI (`-e key=value`), loadInventory(files, { extraVars }); they also override the
//                  farm-wide Inventory.vars (what playbooks read), as Ansible's extra vars win everywhere
//
// CREDENTIALS: a mapping with the single key `env` ({ env: NAME }) anywhere inside vars, or as a host's
// become_password, is replaced by the value of NAME from the environment or `.env` (lib/env.ts) and
// registered as a secret (lib/secrets.ts). A literal become_password, or a literal string in a var whose
// name ends in password/passwd/secret/token/api_key/private_key, is refused: credentials are never
// written into the inventory.

import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InputError } from './errors.ts';
import { readEnvFile, requireCredential, setInventoryEnvFile, type EnvSource } from './env.ts';
import { describeValue, InputErrors, int, nonEmpty, nullAsAbsent, problemAt, validate, z, type Path, type Problem } from './schema.ts';
import type { HostSpec, Vars } from './types.ts';
import { didYouMean, parseYamlFile, type YamlSource } from './yamlsrc.ts';

export interface GroupSpec {
  name: string;
  /** hosts listed directly in the group, in declaration order */
  hosts: string[];
  /** child groups, in declaration order */
  children: string[];
  /** the group's own vars (credentials resolved) */
  vars: Vars;
  /** "inventory/lab.yml:30" */
  source: string;
}

export interface Inventory {
  /** the first file as shown in messages (relative to cwd when inside it) */
  file: string;
  /** every file, in the order given (later ones win) */
  files: string[];
  /** in declaration order */
  hosts: Map<string, HostSpec>;
  /** in declaration order; the implicit group `all` is not in this map */
  groups: Map<string, GroupSpec>;
  settings: {
    knownHosts?: string;
    acceptNewHostKeys: boolean;
    envFile?: string;
    lockGroup?: string;
    connectTimeoutS?: number;
    /** SSH handshakes in flight at once (--handshakes wins; default: 8 per core) */
    handshakes?: number;
    /** where each run's directory (NDJSON log, report, timeline) goes (default .wpfarm/runs) */
    runLogDir?: string;
    /** where the retry file of a run with failed hosts goes (default .wpfarm/retry) */
    retryDir?: string;
    /** run directories kept: at most `count`, none older than `days` (lib/events.ts pruneRuns) */
    runLogRetention?: { count?: number; days?: number };
  };
  /** level "all" (top-level vars, credentials resolved) with the extra vars (-e) over it: the farm-wide view */
  vars: Vars;
}

export interface LoadOptions {
  /** highest precedence vars (CLI -e) */
  extraVars?: Vars;
  /** dotenv file; default `.env` in the current directory (missing is fine then) */
  envFile?: string;
}

/** host and group names: usable in patterns (no , : ! & @ * ? [ ] ~ or spaces) */
export const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
export const VAR_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const USER_RE = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/;
/** var names that hold credentials: a literal string there is refused */
export const CREDENTIAL_NAME_RE = /(?:^|_)(?:password|passwd|secret|token|api_?key|private_?key)$/i;
const DEFAULT_PORT = 22;
const DEFAULT_USER = 'root';

// ---- the schema of one inventory file

function nameCheck(what: 'host' | 'group') {
  return (name: string, ctx: z.core.$RefinementCtx<string>) => {
    let why: string | undefined;
    if (name === 'all') {
      why =
        what === 'group'
          ? `'all' is implicit (every host); put its vars under the top-level vars:`
          : `'all' is reserved for the implicit group of every host and cannot name a host`;
    } else if (!NAME_RE.test(name)) {
      why = `${what} name '${name}' may only contain letters, digits, '_', '.' and '-' (and not start with '.' or '-')`;
    }
    if (why) ctx.addIssue({ code: 'custom', message: why, input: name });
  };
}

const VarsSchema = nullAsAbsent(
  z
    .record(
      z.string().regex(VAR_NAME_RE, {
        error: (iss) => `var name '${String(iss.input)}' may only contain letters, digits and '_' (and not start with a digit)`,
      }),
      z.unknown(),
    )
    .optional(),
);

const opt = <T extends z.ZodType>(s: T) => nullAsAbsent(s.optional());

const HostSchema = z.strictObject(
  {
    address: z
      .string({ error: (iss) => (iss.input === undefined ? 'is required: every host needs an address' : undefined) })
      .refine((a) => a.trim() !== '', { error: 'must be a non-empty string' })
      .refine((a) => !/\s|[\x00-\x1f\x7f]/.test(a) && !a.startsWith('-'), {
        error: `must be a host name or IP address without spaces and not starting with '-'`,
      }),
    port: opt(int(1, 65535)),
    user: opt(nonEmpty.refine((u) => USER_RE.test(u), { error: (iss) => `'${String(iss.input)}' is not a valid user name` })),
    key: opt(nonEmpty),
    // never echo the value: it is a credential
    become_password: opt(
      z.unknown().refine(isEnvRef, {
        error: 'must be a credential reference { env: NAME } (credentials come from .env, never from the inventory)',
        params: { secret: true },
      }),
    ),
    vars: VarsSchema,
  },
  { error: (iss) => (iss.code === 'invalid_type' && iss.input == null ? 'a host needs at least an address' : undefined) },
);

const NameList = opt(z.array(nonEmpty));
const GroupSchema = z.strictObject({ hosts: NameList, children: NameList, vars: VarsSchema });

/** top-level sections read by other loaders from the same file, skipped here and checked there:
 *  cloud, cloudflare → lib/cloud/config.ts (provisioning). Add a section here when a loader owns it. */
export const OTHER_SECTIONS: readonly string[] = ['cloud', 'cloudflare'];

const InventoryFileSchema = z.strictObject({
  settings: opt(
    z.strictObject({
      known_hosts: opt(nonEmpty),
      accept_new_host_keys: opt(z.boolean()),
      key: opt(nonEmpty),
      env_file: opt(nonEmpty),
      lock_group: opt(nonEmpty),
      /** seconds a host may stay silent during its SSH connect + login, from its own start (--connect-timeout wins) */
      connect_timeout: opt(int(1, 3600)),
      /** SSH handshakes in flight at once, whatever --forks is (--handshakes wins) */
      handshakes: opt(int(1, 1000)),
      run_log_dir: opt(nonEmpty),
      retry_dir: opt(nonEmpty),
      run_log_retention: opt(z.strictObject({ count: opt(z.number().int().min(1)), days: opt(z.number().positive()) })),
    }),
  ),
  vars: VarsSchema,
  hosts: opt(z.record(z.string().superRefine(nameCheck('host')), HostSchema)),
  groups: opt(z.record(z.string().superRefine(nameCheck('group')), opt(GroupSchema))),
  ...Object.fromEntries(OTHER_SECTIONS.map((k) => [k, z.unknown().optional()])),
});

type InventoryFile = z.output<typeof InventoryFileSchema>;

function isEnvRef(v: unknown): v is { env: unknown } {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 1 && 'env' in v;
}

// ---- loading

interface RawHost {
  spec: HostSpec;
  ownVars: Vars;
}

/** where a group lists a host or a child: for messages about the reference */
interface Ref {
  y: YamlSource;
  path: Path;
  group: string;
  name: string;
}

/**
 * Load and validate one or more inventory files (merged in order, later wins). Synchronous; throws
 * InputErrors (exit 4) listing every problem as "file:line:col field: message".
 */
export function loadInventory(files: string | readonly string[], opts: LoadOptions = {}): Inventory {
  const list = typeof files === 'string' ? [files] : [...files];
  if (!list.length) throw new InputError('no inventory file given');

  // ---- every file read and checked against the schema; problems of all files reported together
  const problems: Problem[] = [];
  const parsed: Array<{ y: YamlSource; data: InventoryFile }> = [];
  for (const file of list) {
    try {
      const y = parseYamlFile(file);
      const root = y.toPlain();
      if (root === null)
        throw y.error(y.root, 'inventory is empty: expected a mapping with hosts: (and optionally settings:, vars:, groups:)');
      parsed.push({ y, data: validate(InventoryFileSchema, root, y, { rootName: 'inventory' }) });
    } catch (e) {
      if (!(e instanceof InputErrors)) throw e;
      problems.push(...e.problems);
    }
  }
  if (problems.length) throw new InputErrors(problems);

  // ---- settings (later file wins per key)
  const settings: Inventory['settings'] = { acceptNewHostKeys: false };
  let defaultKey: string | undefined;
  for (const { data } of parsed) {
    const s = data.settings ?? {};
    if (s.known_hosts !== undefined) settings.knownHosts = resolvePath(s.known_hosts);
    if (s.accept_new_host_keys !== undefined) settings.acceptNewHostKeys = s.accept_new_host_keys;
    if (s.key !== undefined) defaultKey = resolvePath(s.key);
    if (s.env_file !== undefined) settings.envFile = resolvePath(s.env_file);
    // the group whose hosts hold the deploy lock and the audit log (lib/lock.ts; default: managers)
    if (s.lock_group !== undefined) settings.lockGroup = s.lock_group;
    if (s.connect_timeout !== undefined) settings.connectTimeoutS = s.connect_timeout;
    if (s.handshakes !== undefined) settings.handshakes = s.handshakes;
    if (s.run_log_dir !== undefined) settings.runLogDir = resolvePath(s.run_log_dir);
    if (s.retry_dir !== undefined) settings.retryDir = resolvePath(s.retry_dir);
    if (s.run_log_retention !== undefined) settings.runLogRetention = s.run_log_retention;
  }
  // settings.env_file: where this inventory's credentials are (e.g. the lab's generated ones) instead of
  // .env. It becomes the run's default for every credential lookup (roles, backups), not only the inventory's.
  setInventoryEnvFile(settings.envFile);
  const creds = new Credentials(opts.envFile);
  if (defaultKey === undefined) {
    const home = path.join(os.homedir(), '.ssh', 'id_ed25519');
    if (existsSync(home)) defaultKey = home;
  }

  // ---- merge: hosts and groups unioned, later file wins per host field, group var and top-level var
  const allVars: Vars = {};
  const raw = new Map<string, RawHost & { set: Partial<Record<'port' | 'user' | 'key', boolean>> }>();
  const groups = new Map<string, GroupSpec>();
  const groupAt = new Map<string, { y: YamlSource; path: Path }>();
  const hostRefs: Ref[] = [];
  const childRefs: Ref[] = [];
  for (const { y, data } of parsed) {
    Object.assign(allVars, creds.vars(y, data.vars, ['vars']));
    for (const [name, h] of Object.entries(data.hosts ?? {})) {
      const at = ['hosts', name];
      const prev = raw.get(name);
      const spec: HostSpec = prev?.spec ?? { name, address: h.address, port: DEFAULT_PORT, user: DEFAULT_USER, groups: [], vars: {} };
      spec.address = h.address;
      spec.source ??= `${y.file}:${y.positionOf(at, true).line}`;
      if (h.port !== undefined) spec.port = h.port;
      if (h.user !== undefined) spec.user = h.user;
      if (h.key !== undefined) spec.key = resolvePath(h.key);
      if (h.become_password !== undefined) spec.becomePassword = creds.resolve(y, h.become_password, [...at, 'become_password']) as string;
      const ownVars = { ...prev?.ownVars, ...creds.vars(y, h.vars, [...at, 'vars']) };
      raw.set(name, { spec, ownVars, set: { ...prev?.set, key: prev?.set.key || h.key !== undefined } });
    }
    for (const [name, g] of Object.entries(data.groups ?? {})) {
      const at = ['groups', name];
      let spec = groups.get(name);
      if (!spec) {
        spec = { name, hosts: [], children: [], vars: {}, source: `${y.file}:${y.positionOf(at, true).line}` };
        groups.set(name, spec);
        groupAt.set(name, { y, path: at });
      }
      for (const [i, h] of (g?.hosts ?? []).entries()) hostRefs.push({ y, path: [...at, 'hosts', i], group: name, name: h });
      for (const [i, c] of (g?.children ?? []).entries()) childRefs.push({ y, path: [...at, 'children', i], group: name, name: c });
      Object.assign(spec.vars, creds.vars(y, g?.vars, [...at, 'vars']));
    }
  }
  for (const { spec, set } of raw.values()) if (!set.key && defaultKey !== undefined) spec.key = defaultKey;

  // ---- references between entries (checked on the merged inventory: a file may name another's hosts)
  for (const [name, at] of groupAt) {
    if (raw.has(name))
      problems.push(problemAt(at.y, at.path, `group '${name}' has the same name as a host; host patterns could not tell them apart`, true));
  }
  const seenIn = new Map<string, Set<string>>(); // "file group" → names listed, for duplicates within one list
  const listed = (r: Ref, kind: string): boolean => {
    const k = `${r.y.file}\0${r.group}\0${kind}`;
    const seen = seenIn.get(k) ?? new Set<string>();
    seenIn.set(k, seen);
    if (seen.has(r.name)) return true;
    seen.add(r.name);
    return false;
  };
  for (const r of hostRefs) {
    const g = groups.get(r.group)!;
    if (!raw.has(r.name)) {
      problems.push(
        problemAt(
          r.y,
          r.path,
          `group '${r.group}' lists host '${r.name}', which is not declared under hosts${didYouMean(r.name, raw.keys())}`,
        ),
      );
    } else if (listed(r, 'hosts')) {
      problems.push(problemAt(r.y, r.path, `group '${r.group}' lists host '${r.name}' twice`));
    } else if (!g.hosts.includes(r.name)) g.hosts.push(r.name);
  }
  for (const r of childRefs) {
    const g = groups.get(r.group)!;
    if (listed(r, 'children')) problems.push(problemAt(r.y, r.path, `group '${r.group}' lists child group '${r.name}' twice`));
    else if (!groups.has(r.name)) {
      const why =
        r.name === 'all'
          ? `'all' is implicit and contains every host; it cannot be a child`
          : raw.has(r.name)
            ? `'${r.name}' is a host, not a group; list it under hosts`
            : `child group '${r.name}' is not declared under groups${didYouMean(r.name, groups.keys())}`;
      problems.push(problemAt(r.y, r.path, `group '${r.group}': ${why}`));
    } else if (!g.children.includes(r.name)) g.children.push(r.name);
  }
  if (!problems.length) problems.push(...cycles(groups, childRefs));
  problems.push(...creds.problems);
  if (problems.length) throw new InputErrors(problems);

  // ---- membership, depth, merged vars
  const parents = new Map<string, string[]>();
  for (const g of groups.values())
    for (const c of g.children) {
      const p = parents.get(c);
      if (p) p.push(g.name);
      else parents.set(c, [g.name]);
    }
  const depth = new Map<string, number>();
  const depthOf = (g: string): number => {
    let d = depth.get(g);
    if (d !== undefined) return d;
    d = 1 + Math.max(0, ...(parents.get(g) ?? []).map(depthOf));
    depth.set(g, d);
    return d;
  };
  const directGroups = new Map<string, string[]>();
  for (const g of groups.values())
    for (const h of g.hosts) {
      const l = directGroups.get(h);
      if (l) l.push(g.name);
      else directGroups.set(h, [g.name]);
    }
  const extra = opts.extraVars ?? {};
  const hosts = new Map<string, HostSpec>();
  for (const [name, { spec, ownVars }] of raw) {
    const all = new Set<string>();
    const stack = [...(directGroups.get(name) ?? [])];
    while (stack.length) {
      const g = stack.pop()!;
      if (all.has(g)) continue;
      all.add(g);
      stack.push(...(parents.get(g) ?? []));
    }
    const ordered = [...all].sort((a, b) => depthOf(a) - depthOf(b) || (a < b ? -1 : a > b ? 1 : 0));
    const vars: Vars = { ...allVars };
    for (const g of ordered) Object.assign(vars, groups.get(g)!.vars);
    Object.assign(vars, ownVars, extra);
    spec.groups = ordered;
    // each host gets its own copy: a role that changes a nested value on one host must not change it
    // on every other host (the merge above is shallow and would share nested objects)
    spec.vars = structuredClone(vars);
    hosts.set(name, spec);
  }

  const shown = parsed.map(({ y }) => y.file);
  // the farm-wide vars a playbook reads (sites dir, management ranges, retention...): -e wins there as on every host
  const inv: Inventory = { file: shown[0]!, files: shown, hosts, groups, settings, vars: { ...allVars, ...extra } };
  varSources.set(inv, { parsed, extra: opts.extraVars ?? {} });
  return inv;
}

/** where each vars mapping of a loaded inventory came from, for checkVars */
const varSources = new WeakMap<Inventory, { parsed: Array<{ y: YamlSource; data: InventoryFile }>; extra: Vars }>();

/** The schemas a role declares for its inventory variables (Role.vars): one per var name. */
export type VarSchemas = Record<string, z.ZodType>;

/**
 * Check every place the inventory sets one of `schemas`' variables (top-level vars, each group's and each
 * host's vars, -e extra vars) against its schema. Throws InputErrors (exit 4) naming file:line:col and the
 * field, e.g. "inventory/lab.yml:12:5 vars.firewall_extra_rules[0].from[0]: must be an IPv4 ... CIDR". Runs on
 * the loaded files, before any connection. Credential references ({ env: NAME }) are not checked here.
 */
export function checkVars(inv: Inventory, schemas: VarSchemas): void {
  const src = varSources.get(inv);
  if (!src) return;
  // a credential reference is resolved later (and is not the role's to check); null is "absent" as elsewhere
  const vars = z.looseObject(
    Object.fromEntries(
      Object.entries(schemas).map(([k, s]) => [k, z.preprocess((v) => (v === null || isEnvRef(v) ? undefined : v), s.optional())]),
    ),
  );
  const level = z.looseObject({ vars: vars.nullish() }).nullish();
  const file = z.looseObject({
    vars: vars.nullish(),
    groups: z.record(z.string(), level).nullish(),
    hosts: z.record(z.string(), level).nullish(),
  });
  const problems: Problem[] = [];
  for (const { y } of src.parsed) {
    try {
      validate(file, y.toPlain(), y);
    } catch (e) {
      if (!(e instanceof InputErrors)) throw e;
      problems.push(...e.problems);
    }
  }
  try {
    validate(vars, src.extra, '(command line -e)');
  } catch (e) {
    if (!(e instanceof InputErrors)) throw e;
    problems.push(...e.problems);
  }
  if (problems.length) throw new InputErrors(problems);
}

const membersCache = new WeakMap<Inventory, Map<string, string[]>>();

/**
 * All hosts of a group, recursively (its own hosts first, then each child's, depth first), in
 * declaration order without duplicates. `all` gives every host in inventory order.
 */
export function groupMembers(inv: Inventory, group: string): string[] {
  if (group === 'all') return [...inv.hosts.keys()];
  let cache = membersCache.get(inv);
  if (!cache) membersCache.set(inv, (cache = new Map()));
  const hit = cache.get(group);
  if (hit) return [...hit];
  if (!inv.groups.has(group))
    throw new InputError(`unknown group '${group}' in inventory ${inv.file}${didYouMean(group, inv.groups.keys())}`);
  const out: string[] = [];
  const seen = new Set<string>();
  const visiting = new Set<string>();
  const walk = (g: string): void => {
    if (visiting.has(g)) return; // cycles are refused at load; stay safe for hand-built inventories
    visiting.add(g);
    const spec = inv.groups.get(g);
    if (!spec) return;
    for (const h of spec.hosts)
      if (!seen.has(h)) {
        seen.add(h);
        out.push(h);
      }
    for (const c of spec.children) walk(c);
    visiting.delete(g);
  };
  walk(group);
  cache.set(group, out);
  return [...out];
}

/** Parse CLI extra vars: each "key=value" (value kept as a string; the first '=' splits). */
export function parseExtraVars(args: readonly string[]): Vars {
  const out: Vars = {};
  for (const a of args) {
    const i = a.indexOf('=');
    const k = i < 0 ? '' : a.slice(0, i).trim();
    if (i < 0 || !VAR_NAME_RE.test(k)) {
      throw new InputError(
        `extra var '${a.length > 60 ? `${a.slice(0, 57)}...` : a}' must be key=value with a key of letters, digits and _`,
      );
    }
    out[k] = a.slice(i + 1);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------

function resolvePath(p: string): string {
  if (p === '~') return os.homedir();
  if (p.startsWith('~/')) return path.join(os.homedir(), p.slice(2));
  return path.resolve(p);
}

/** A cycle through children, named at the reference that closes it. */
function cycles(groups: Map<string, GroupSpec>, childRefs: readonly Ref[]): Problem[] {
  const state = new Map<string, 1 | 2>(); // 1 on the stack, 2 done
  const stack: string[] = [];
  const found: Problem[] = [];
  const visit = (g: string): void => {
    state.set(g, 1);
    stack.push(g);
    for (const c of groups.get(g)!.children) {
      const s = state.get(c);
      if (s === 1 && !found.length) {
        const cycle = [...stack.slice(stack.indexOf(c)), c];
        const ref = childRefs.find((r) => r.group === g && r.name === c)!;
        found.push(problemAt(ref.y, ref.path, `groups form a cycle through children: ${cycle.join(' -> ')}`));
      }
      if (s === undefined) visit(c);
    }
    stack.pop();
    state.set(g, 2);
  };
  for (const g of groups.keys()) if (!state.has(g)) visit(g);
  return found;
}

/** Credential references resolved, literal credentials refused; every problem collected (file:line of each). */
class Credentials {
  private env: EnvSource | undefined;
  readonly problems: Problem[] = [];

  constructor(envFile: string | undefined) {
    // an explicit env file must exist even if nothing references it (a typo would go unnoticed)
    if (envFile !== undefined) this.env = readEnvFile(envFile);
  }

  /** a vars mapping (already checked by the schema) with every credential reference resolved */
  vars(y: YamlSource, vars: Record<string, unknown> | undefined, at: Path): Vars {
    const out: Vars = {};
    for (const [k, v] of Object.entries(vars ?? {})) out[k] = this.resolve(y, v, [...at, k]);
    return out;
  }

  /** `value` with { env: NAME } replaced by the credential ('' after recording why it could not be) */
  resolve(y: YamlSource, value: unknown, at: Path): unknown {
    if (isEnvRef(value)) {
      const name = value.env;
      if (typeof name !== 'string' || !name.trim()) {
        this.problems.push(
          problemAt(
            y,
            [...at, 'env'],
            typeof name === 'string' ? 'must be a non-empty string' : `must be a string, got ${describeValue(name)}`,
          ),
        );
        return '';
      }
      try {
        this.env ??= readEnvFile();
        return requireCredential(name.trim(), undefined, this.env);
      } catch (e) {
        if (!(e instanceof InputError)) throw e;
        this.problems.push(problemAt(y, at, e.message));
        return '';
      }
    }
    if (Array.isArray(value)) return value.map((v, i) => this.resolve(y, v, [...at, i]));
    if (typeof value === 'object' && value !== null) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.resolve(y, v, [...at, k]);
      return out;
    }
    const last = at[at.length - 1];
    if (typeof value === 'string' && value !== '' && typeof last === 'string' && CREDENTIAL_NAME_RE.test(last)) {
      // never echo the value
      this.problems.push(problemAt(y, at, `looks like a credential written into the inventory; put it in .env and write { env: NAME }`));
    }
    return value;
  }
}
