// The inventory: one YAML file (see docs/inventory.md for the format), validated on load.
//
// Every error is an InputError (exit 4) whose text starts with "file:line field", e.g.
//   inventory/lab.yml:14 hosts.db1.port: hosts.db1.port must be an integer from 1 to 65535, got the number 70000
//
// VARS PRECEDENCE (lowest first; a later level replaces a whole top-level key of an earlier one, no deep merge):
//   1. all         top-level `vars`
//   2. groups      every group the host belongs to (directly or through `children`), ordered by depth
//                  (a group's depth = 1 + the largest depth of its parents; groups nobody lists as a child
//                  have depth 1), so ancestors always come before their descendants; groups of the same
//                  depth are ordered alphabetically by name, and later wins (Ansible's order)
//   3. host        the host's own `vars`
//   4. extra vars  from the CLI (`-e key=value`), loadInventory(file, { extraVars })
//
// CREDENTIALS: a mapping with the single key `env` ({ env: NAME }) anywhere inside vars, or as a host's
// become_password, is replaced by the value of NAME from the environment or `.env` (lib/env.ts) and
// registered as a secret (lib/secrets.ts). A literal become_password, or a literal string in a var whose
// name ends in password/passwd/secret/token/api_key/private_key, is refused: credentials are never
// written into the inventory.

import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMap, isScalar } from 'yaml';
import { InputError } from './errors.ts';
import { readEnvFile, requireCredential, setInventoryEnvFile, type EnvSource } from './env.ts';
import type { HostSpec, Vars } from './types.ts';
import { didYouMean, parseYamlFile, type YamlNode, type YamlSource } from './yamlsrc.ts';

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
  /** the file as shown in messages (relative to cwd when inside it) */
  file: string;
  /** in declaration order */
  hosts: Map<string, HostSpec>;
  /** in declaration order; the implicit group `all` is not in this map */
  groups: Map<string, GroupSpec>;
  settings: { knownHosts?: string; acceptNewHostKeys: boolean; envFile?: string };
  /** level "all" (top-level vars), credentials resolved */
  vars: Vars;
}

export interface LoadOptions {
  /** highest precedence vars (CLI -e) */
  extraVars?: Vars;
  /** dotenv file; default `.env` in the current directory (missing is fine then) */
  envFile?: string;
}

/** top-level sections read by other loaders from the same file, skipped here and checked there:
 *  cloud, cloudflare → lib/cloud/config.ts (provisioning). Add a section here when a loader owns it. */
export const OTHER_SECTIONS: readonly string[] = ['cloud', 'cloudflare'];
const TOP_KEYS = ['settings', 'vars', 'hosts', 'groups', ...OTHER_SECTIONS] as const;
const SETTINGS_KEYS = ['known_hosts', 'accept_new_host_keys', 'key', 'env_file'] as const;
const HOST_KEYS = ['address', 'port', 'user', 'key', 'become_password', 'vars'] as const;
const GROUP_KEYS = ['hosts', 'children', 'vars'] as const;

/** host and group names: usable in patterns (no , : ! & @ * ? [ ] ~ or spaces) */
export const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
export const VAR_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const USER_RE = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/;
/** var names that hold credentials: a literal string there is refused */
export const CREDENTIAL_NAME_RE = /(?:^|_)(?:password|passwd|secret|token|api_?key|private_?key)$/i;
const DEFAULT_PORT = 22;
const DEFAULT_USER = 'root';

const membersCache = new WeakMap<Inventory, Map<string, string[]>>();

/** Load and validate an inventory file. Synchronous; throws InputError (exit 4) naming file:line field. */
export function loadInventory(file: string, opts: LoadOptions = {}): Inventory {
  const y = parseYamlFile(file);

  if (y.isNull(y.root)) throw y.error(y.root, 'inventory is empty: expected a mapping with hosts: (and optionally settings:, vars:, groups:)');
  const top = y.asMap(y.root, 'inventory');
  y.checkKeys(top, TOP_KEYS, '');

  // ---- settings
  const settings: Inventory['settings'] = { acceptNewHostKeys: false };
  let defaultKey: string | undefined;
  const settingsNode = y.get(top, 'settings');
  if (!y.isNull(settingsNode)) {
    const s = y.asMap(settingsNode, 'settings', y.keyNode(top, 'settings'));
    y.checkKeys(s, SETTINGS_KEYS, 'settings');
    for (const { key, value, keyNode } of y.entries(s, 'settings')) {
      const f = `settings.${key}`;
      if (key === 'known_hosts') settings.knownHosts = resolvePath(y.asNonEmptyString(value, f, keyNode));
      else if (key === 'accept_new_host_keys') settings.acceptNewHostKeys = y.asBool(value, f, keyNode);
      else if (key === 'key') defaultKey = resolvePath(y.asNonEmptyString(value, f, keyNode));
      else if (key === 'env_file') settings.envFile = resolvePath(y.asNonEmptyString(value, f, keyNode));
    }
  }
  // settings.env_file: where this inventory's credentials are (e.g. the lab's generated ones) instead of
  // .env. It becomes the run's default for every credential lookup (roles, backups), not only the inventory's.
  setInventoryEnvFile(settings.envFile);
  const ctx = new LoadContext(y, opts.envFile);
  if (defaultKey === undefined) {
    const home = path.join(os.homedir(), '.ssh', 'id_ed25519');
    if (existsSync(home)) defaultKey = home;
  }

  // ---- vars (level all)
  const allVars = ctx.vars(y.get(top, 'vars'), 'vars', y.keyNode(top, 'vars'));

  // ---- hosts
  interface RawHost {
    spec: HostSpec;
    ownVars: Vars;
  }
  const raw = new Map<string, RawHost>();
  const hostsNode = y.get(top, 'hosts');
  if (!y.isNull(hostsNode)) {
    const hm = y.asMap(hostsNode, 'hosts', y.keyNode(top, 'hosts'));
    for (const { key: name, keyNode, value } of y.entries(hm, 'hosts')) {
      const field = `hosts.${name}`;
      checkName(y, name, keyNode, field, 'host');
      if (y.isNull(value)) throw y.error(keyNode, `host '${name}' needs at least an address`, field);
      const h = y.asMap(value, field, keyNode);
      y.checkKeys(h, HOST_KEYS, field);
      const addrNode = y.get(h, 'address');
      if (addrNode === null) throw y.error(keyNode, `host '${name}' has no address`, `${field}.address`);
      const address = y.asNonEmptyString(addrNode, `${field}.address`, y.keyNode(h, 'address'));
      if (/\s|[\x00-\x1f\x7f]/.test(address) || address.startsWith('-')) {
        throw y.error(addrNode, `must be a host name or IP address without spaces and not starting with '-'`, `${field}.address`);
      }
      const portNode = y.get(h, 'port');
      const port = portNode === null ? DEFAULT_PORT : y.asInt(portNode, `${field}.port`, 1, 65535, y.keyNode(h, 'port'));
      const userNode = y.get(h, 'user');
      let user = DEFAULT_USER;
      if (userNode !== null) {
        user = y.asNonEmptyString(userNode, `${field}.user`, y.keyNode(h, 'user'));
        if (!USER_RE.test(user)) throw y.error(userNode, `'${user}' is not a valid user name`, `${field}.user`);
      }
      const keyValNode = y.get(h, 'key');
      const key = keyValNode === null ? defaultKey : resolvePath(y.asNonEmptyString(keyValNode, `${field}.key`, y.keyNode(h, 'key')));
      const bpNode = y.get(h, 'become_password');
      let becomePassword: string | undefined;
      if (bpNode !== null) {
        const ref = ctx.envRef(bpNode, `${field}.become_password`);
        if (ref === undefined) {
          // never echo the value: it is a credential
          throw y.error(bpNode, `must be a credential reference { env: NAME } (credentials come from .env, never from the inventory)`, `${field}.become_password`);
        }
        becomePassword = ref;
      }
      const ownVars = ctx.vars(y.get(h, 'vars'), `${field}.vars`, y.keyNode(h, 'vars'));
      const spec: HostSpec = { name, address, port, user, groups: [], vars: {}, source: `${y.file}:${y.lineOf(keyNode)}` };
      if (key !== undefined) spec.key = key;
      if (becomePassword !== undefined) spec.becomePassword = becomePassword;
      raw.set(name, { spec, ownVars });
    }
  }

  // ---- groups
  const groups = new Map<string, GroupSpec>();
  const childRefs: Array<{ group: string; child: string; node: YamlNode | null; field: string }> = [];
  const groupsNode = y.get(top, 'groups');
  if (!y.isNull(groupsNode)) {
    const gm = y.asMap(groupsNode, 'groups', y.keyNode(top, 'groups'));
    for (const { key: name, keyNode, value } of y.entries(gm, 'groups')) {
      const field = `groups.${name}`;
      checkName(y, name, keyNode, field, 'group');
      if (raw.has(name)) {
        throw y.error(keyNode, `group '${name}' has the same name as a host; host patterns could not tell them apart`, field);
      }
      const g: GroupSpec = { name, hosts: [], children: [], vars: {}, source: `${y.file}:${y.lineOf(keyNode)}` };
      if (!y.isNull(value)) {
        const gmap = y.asMap(value, field, keyNode);
        y.checkKeys(gmap, GROUP_KEYS, field);
        const hl = y.get(gmap, 'hosts');
        if (!y.isNull(hl)) {
          const seq = y.asSeq(hl, `${field}.hosts`, y.keyNode(gmap, 'hosts'));
          seq.items.forEach((item, i) => {
            const f = `${field}.hosts[${i}]`;
            const h = y.asNonEmptyString(item, f, seq);
            if (!raw.has(h)) {
              throw y.error(item ?? seq, `group '${name}' lists host '${h}', which is not declared under hosts${didYouMean(h, raw.keys())}`, f);
            }
            if (g.hosts.includes(h)) throw y.error(item ?? seq, `group '${name}' lists host '${h}' twice`, f);
            g.hosts.push(h);
          });
        }
        const cl = y.get(gmap, 'children');
        if (!y.isNull(cl)) {
          const seq = y.asSeq(cl, `${field}.children`, y.keyNode(gmap, 'children'));
          seq.items.forEach((item, i) => {
            const f = `${field}.children[${i}]`;
            const c = y.asNonEmptyString(item, f, seq);
            if (g.children.includes(c)) throw y.error(item ?? seq, `group '${name}' lists child group '${c}' twice`, f);
            g.children.push(c);
            childRefs.push({ group: name, child: c, node: item, field: f });
          });
        }
        g.vars = ctx.vars(y.get(gmap, 'vars'), `${field}.vars`, y.keyNode(gmap, 'vars'));
      }
      groups.set(name, g);
    }
  }
  // children must exist (checked after all groups are known: a child may be declared later)
  for (const r of childRefs) {
    if (!groups.has(r.child)) {
      const why = r.child === 'all'
        ? `'all' is implicit and contains every host; it cannot be a child`
        : raw.has(r.child)
          ? `'${r.child}' is a host, not a group; list it under hosts`
          : `child group '${r.child}' is not declared under groups${didYouMean(r.child, groups.keys())}`;
      throw y.error(r.node, `group '${r.group}': ${why}`, r.field);
    }
  }
  checkCycles(y, groups, childRefs);

  ctx.throwMissing();

  // ---- membership, depth, merged vars
  const parents = new Map<string, string[]>();
  for (const g of groups.values()) for (const c of g.children) {
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
  for (const g of groups.values()) for (const h of g.hosts) {
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

  return { file: y.file, hosts, groups, settings, vars: allVars };
}

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
  if (!inv.groups.has(group)) throw new InputError(`unknown group '${group}' in inventory ${inv.file}${didYouMean(group, inv.groups.keys())}`);
  const out: string[] = [];
  const seen = new Set<string>();
  const visiting = new Set<string>();
  const walk = (g: string): void => {
    if (visiting.has(g)) return; // cycles are refused at load; stay safe for hand-built inventories
    visiting.add(g);
    const spec = inv.groups.get(g);
    if (!spec) return;
    for (const h of spec.hosts) if (!seen.has(h)) {
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
      throw new InputError(`extra var '${a.length > 60 ? `${a.slice(0, 57)}...` : a}' must be key=value with a key of letters, digits and _`);
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

function checkName(y: YamlSource, name: string, keyNode: YamlNode, field: string, what: 'host' | 'group'): void {
  if (name === 'all') {
    throw y.error(keyNode, what === 'group'
      ? `'all' is implicit (every host); put its vars under the top-level vars:`
      : `'all' is reserved for the implicit group of every host and cannot name a host`, field);
  }
  if (!NAME_RE.test(name)) {
    throw y.error(keyNode, `${what} name '${name}' may only contain letters, digits, '_', '.' and '-' (and not start with '.' or '-')`, field);
  }
}

function checkCycles(
  y: YamlSource,
  groups: Map<string, GroupSpec>,
  childRefs: Array<{ group: string; child: string; node: YamlNode | null; field: string }>,
): void {
  const state = new Map<string, 1 | 2>(); // 1 on the stack, 2 done
  const stack: string[] = [];
  const visit = (g: string): void => {
    state.set(g, 1);
    stack.push(g);
    for (const c of groups.get(g)!.children) {
      const s = state.get(c);
      if (s === 1) {
        const cycle = [...stack.slice(stack.indexOf(c)), c];
        const ref = childRefs.find((r) => r.group === g && r.child === c)!;
        throw y.error(ref.node, `groups form a cycle through children: ${cycle.join(' -> ')}`, ref.field);
      }
      if (s === undefined) visit(c);
    }
    stack.pop();
    state.set(g, 2);
  };
  for (const g of groups.keys()) if (!state.has(g)) visit(g);
}

/** Per-load state: the env source (read lazily) and the missing credentials collected for one error. */
class LoadContext {
  private env: EnvSource | undefined;
  private readonly missing: InputError[] = [];

  constructor(
    private readonly y: YamlSource,
    private readonly envFile: string | undefined,
  ) {
    // an explicit env file must exist even if nothing references it (a typo would go unnoticed)
    if (envFile !== undefined) this.env = readEnvFile(envFile);
  }

  /**
   * If `node` is a credential reference { env: NAME }, its value (or '' after recording why it could not
   * be resolved); otherwise undefined.
   */
  envRef(node: YamlNode, field: string): string | undefined {
    const y = this.y;
    const n = y.deref(node);
    if (!n || !isMap(n) || n.items.length !== 1) return undefined;
    const k = n.items[0]!.key as YamlNode | null;
    if (!k || !isScalar(k) || k.value !== 'env') return undefined;
    const v = n.items[0]!.value as YamlNode | null;
    const name = y.asNonEmptyString(v, `${field}.env`, k).trim();
    try {
      this.env ??= readEnvFile();
      return requireCredential(name, y.where(n, field), this.env);
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      this.missing.push(e);
      return '';
    }
  }

  /** a vars mapping: names checked, credentials resolved, literal credentials refused */
  vars(node: YamlNode | null, field: string, at: YamlNode | null): Vars {
    const y = this.y;
    if (y.isNull(node)) return {};
    const m = y.asMap(node, field, at);
    const out: Vars = {};
    for (const { key, keyNode, value } of y.entries(m, field)) {
      const f = `${field}.${key}`;
      if (!VAR_NAME_RE.test(key)) {
        throw y.error(keyNode, `var name '${key}' may only contain letters, digits and '_' (and not start with a digit)`, f);
      }
      out[key] = y.toPlain(value, f, (n, nf) => {
        const r = this.envRef(n, nf);
        if (r !== undefined) return r;
        const last = nf.slice(nf.lastIndexOf('.') + 1);
        if (isScalar(n) && typeof n.value === 'string' && n.value !== '' && CREDENTIAL_NAME_RE.test(last)) {
          // never echo the value
          throw y.error(n, `looks like a credential written into the inventory; put it in .env and write { env: NAME }`, nf);
        }
        return undefined;
      });
    }
    return out;
  }

  /** one InputError listing every unresolved credential (the first one's place as `where`) */
  throwMissing(): void {
    if (!this.missing.length) return;
    const [first, ...rest] = this.missing;
    if (!rest.length) throw first!;
    const own = first!.where ? first!.message.slice(first!.where.length + 2) : first!.message;
    throw new InputError(`${own}\n  and ${rest.length} more unresolved credential(s):\n  ${rest.map((e) => e.message).join('\n  ')}`, first!.where);
  }
}
