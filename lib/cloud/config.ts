// The `cloud:` and `cloudflare:` sections of an inventory file: parse and check, with errors naming the field.
import { readFileSync } from 'node:fs';
import { parseDocument, LineCounter } from 'yaml';
import { InputError } from '../errors.ts';

export interface GroupSpec {
  name: string;
  count: number;
  size: string;
  /** droplet name prefix: mgr, wrk, db, st, mon, or the group name */
  prefix: string;
  image?: string;
  volumeGb?: number;
  tags: string[];
}

export interface CloudSpec {
  provider: 'digitalocean';
  region: string;
  vpc: { name: string; ipRange?: string };
  sshKeys: (string | number)[];
  image: string;
  tags: string[];
  groups: GroupSpec[];
  reservedIp?: { group: string };
  loadBalancer: { enabled: boolean; name: string; group: string };
  spaces?: { bucket: string; region: string };
  managementCidrs: string[];
  /** the tag that marks every resource wpfarm owns (first of tags) */
  ownerTag: string;
  /** the firewall's name */
  firewallName: string;
  /** the group behind the edge (reserved IP, 80/443) */
  edgeGroup: string;
  user: string;
  key?: string;
}

export interface CloudflareSpec {
  zone: string;
}

const PREFIXES: Record<string, string> = { managers: 'mgr', workers: 'wrk', db: 'db', storage: 'st', monitoring: 'mon', edge: 'edge' };
const NAME_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const SLUG_RE = /^[a-z0-9][a-z0-9-]*$/;
const TAG_RE = /^[A-Za-z0-9:_-]{1,255}$/;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** IPv4 CIDR check (a.b.c.d/n) or IPv6 CIDR (loose). */
export function isCidr(s: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (m) return m.slice(1, 5).every((x) => Number(x) <= 255) && Number(m[5]) <= 32;
  const m6 = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(s);
  return !!m6 && m6[1]!.includes(':') && Number(m6[2]) <= 128;
}

class Checker {
  constructor(private readonly file: string, private readonly where: (path: string[]) => string | undefined) {}
  fail(path: string[], msg: string): never {
    const loc = this.where(path);
    throw new InputError(`${path.join('.')}: ${msg}`, loc ? `${this.file}:${loc}` : this.file);
  }
  str(obj: Record<string, unknown>, path: string[], key: string, opts: { re?: RegExp; optional?: boolean; def?: string } = {}): string {
    const v = obj[key];
    if (v === undefined || v === null || v === '') {
      if (opts.def !== undefined) return opts.def;
      if (opts.optional) return '';
      this.fail([...path, key], 'missing');
    }
    if (typeof v !== 'string') this.fail([...path, key], `must be a string, got ${typeof v}`);
    if (opts.re && !opts.re.test(v)) this.fail([...path, key], `invalid value ${JSON.stringify(v)}`);
    return v;
  }
  int(obj: Record<string, unknown>, path: string[], key: string, min: number, max: number, def?: number): number {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (def !== undefined) return def;
      this.fail([...path, key], 'missing');
    }
    if (typeof v !== 'number' || !Number.isInteger(v)) this.fail([...path, key], `must be an integer, got ${JSON.stringify(v)}`);
    if (v < min || v > max) this.fail([...path, key], `must be between ${min} and ${max}, got ${v}`);
    return v;
  }
  strList(obj: Record<string, unknown>, path: string[], key: string, re?: RegExp, optional = false): string[] {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (optional) return [];
      this.fail([...path, key], 'missing');
    }
    if (!Array.isArray(v)) this.fail([...path, key], 'must be a list');
    return v.map((x, i) => {
      if (typeof x !== 'string' && typeof x !== 'number') this.fail([...path, key, String(i)], 'must be a string');
      const s = String(x);
      if (re && !re.test(s)) this.fail([...path, key, String(i)], `invalid value ${JSON.stringify(s)}`);
      return s;
    });
  }
}

/** Check a `cloud:` section (already parsed). `where` maps a field path to a line for messages. */
export function parseCloudSection(raw: unknown, file = 'inventory', where: (path: string[]) => string | undefined = () => undefined): CloudSpec {
  const c: Checker = new Checker(file, where);
  if (!isObj(raw)) c.fail(['cloud'], 'missing (a mapping is required)');
  const p = ['cloud'];
  const provider = c.str(raw, p, 'provider', { def: 'digitalocean' });
  if (provider !== 'digitalocean') c.fail([...p, 'provider'], `unsupported provider ${JSON.stringify(provider)} (only digitalocean)`);
  const region = c.str(raw, p, 'region', { re: SLUG_RE });
  const vpcRaw = raw['vpc'];
  if (!isObj(vpcRaw)) c.fail([...p, 'vpc'], 'missing (a mapping with name and ip_range)');
  const vpcName = c.str(vpcRaw, [...p, 'vpc'], 'name', { re: NAME_RE });
  const ipRange = c.str(vpcRaw, [...p, 'vpc'], 'ip_range', { optional: true });
  if (ipRange && !isCidr(ipRange)) c.fail([...p, 'vpc', 'ip_range'], `not a CIDR: ${JSON.stringify(ipRange)}`);
  const sshKeysRaw = raw['ssh_keys'];
  if (!Array.isArray(sshKeysRaw) || sshKeysRaw.length === 0) c.fail([...p, 'ssh_keys'], 'missing (at least one key id or fingerprint)');
  const sshKeys = sshKeysRaw.map((k, i) => {
    if (typeof k === 'number' && Number.isInteger(k)) return k;
    if (typeof k === 'string' && /^([0-9a-f]{2}:){15}[0-9a-f]{2}$|^\d+$|^SHA256:/i.test(k)) return /^\d+$/.test(k) ? Number(k) : k;
    return c.fail([...p, 'ssh_keys', String(i)], `not a key id or fingerprint: ${JSON.stringify(k)}`);
  });
  const image = c.str(raw, p, 'image', { re: SLUG_RE });
  const tags = c.strList(raw, p, 'tags', TAG_RE, true);
  if (tags.length === 0) tags.push('wpfarm');
  const ownerTag = tags[0]!;
  const groupsRaw = raw['groups'];
  if (!isObj(groupsRaw) || Object.keys(groupsRaw).length === 0) c.fail([...p, 'groups'], 'missing (a mapping of group name to {count, size})');
  const groups: GroupSpec[] = [];
  const prefixes = new Set<string>();
  for (const [gname, graw] of Object.entries(groupsRaw)) {
    const gp = [...p, 'groups', gname];
    if (!NAME_RE.test(gname)) c.fail(gp, 'group name must be lowercase letters, digits, dashes');
    if (!isObj(graw)) c.fail(gp, 'must be a mapping with count and size');
    const count = c.int(graw, gp, 'count', 0, 100);
    const size = c.str(graw, gp, 'size', { re: SLUG_RE });
    const prefix = c.str(graw, gp, 'prefix', { re: NAME_RE, def: PREFIXES[gname] ?? gname });
    if (prefixes.has(prefix)) c.fail([...gp, 'prefix'], `duplicate droplet name prefix ${JSON.stringify(prefix)}`);
    prefixes.add(prefix);
    const gimage = c.str(graw, gp, 'image', { re: SLUG_RE, optional: true }) || undefined;
    const volumeGb = graw['volume_gb'] === undefined ? undefined : c.int(graw, gp, 'volume_gb', 1, 16 * 1024);
    groups.push({ name: gname, count, size, prefix, image: gimage, volumeGb, tags: [...tags, `${ownerTag}-${gname}`] });
  }
  const groupNames = new Set(groups.map((g) => g.name));
  let reservedIp: CloudSpec['reservedIp'];
  if (raw['reserved_ip'] !== undefined && raw['reserved_ip'] !== null && raw['reserved_ip'] !== false) {
    const r = raw['reserved_ip'];
    if (!isObj(r)) c.fail([...p, 'reserved_ip'], 'must be a mapping {group: <name>}');
    const g = c.str(r, [...p, 'reserved_ip'], 'group');
    if (!groupNames.has(g)) c.fail([...p, 'reserved_ip', 'group'], `unknown group ${JSON.stringify(g)}`);
    reservedIp = { group: g };
  }
  const edgeGroup = reservedIp?.group ?? (groupNames.has('managers') ? 'managers' : groups[0]!.name);
  const edgeSpec = groups.find((g) => g.name === edgeGroup)!;
  if (edgeSpec.count < 1) c.fail([...p, 'groups', edgeGroup, 'count'], 'the edge group needs at least one droplet');
  const lbRaw = raw['load_balancer'];
  let loadBalancer = { enabled: false, name: `${ownerTag}-lb`, group: edgeGroup };
  if (lbRaw !== undefined && lbRaw !== null) {
    if (!isObj(lbRaw)) c.fail([...p, 'load_balancer'], 'must be a mapping {enabled: bool}');
    const en = lbRaw['enabled'];
    if (en !== undefined && typeof en !== 'boolean') c.fail([...p, 'load_balancer', 'enabled'], 'must be true or false');
    const g = c.str(lbRaw, [...p, 'load_balancer'], 'group', { def: edgeGroup });
    if (!groupNames.has(g)) c.fail([...p, 'load_balancer', 'group'], `unknown group ${JSON.stringify(g)}`);
    loadBalancer = { enabled: en === true, name: c.str(lbRaw, [...p, 'load_balancer'], 'name', { re: NAME_RE, def: `${ownerTag}-lb` }), group: g };
  }
  let spaces: CloudSpec['spaces'];
  if (raw['spaces'] !== undefined && raw['spaces'] !== null) {
    const s = raw['spaces'];
    if (!isObj(s)) c.fail([...p, 'spaces'], 'must be a mapping {bucket, region}');
    // S3 bucket naming rules (3-63, lowercase, digits, dots, dashes)
    spaces = { bucket: c.str(s, [...p, 'spaces'], 'bucket', { re: /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/ }), region: c.str(s, [...p, 'spaces'], 'region', { re: SLUG_RE, def: region }) };
  }
  const managementCidrs = c.strList(raw, p, 'management_cidrs');
  if (managementCidrs.length === 0) c.fail([...p, 'management_cidrs'], 'at least one address range is required (SSH would be closed)');
  managementCidrs.forEach((m, i) => {
    if (!isCidr(m)) c.fail([...p, 'management_cidrs', String(i)], `not a CIDR: ${JSON.stringify(m)}`);
  });
  const firewallName = c.str(raw, p, 'firewall_name', { re: NAME_RE, def: `${ownerTag}-fw` });
  const user = c.str(raw, p, 'user', { def: 'root' });
  const key = c.str(raw, p, 'key', { optional: true }) || '~/.ssh/id_ed25519';
  return { provider: 'digitalocean', region, vpc: { name: vpcName, ipRange: ipRange || undefined }, sshKeys, image, tags, groups, reservedIp, loadBalancer, spaces, managementCidrs, ownerTag, firewallName, edgeGroup, user, key };
}

export function parseCloudflareSection(raw: unknown, file = 'inventory', where: (path: string[]) => string | undefined = () => undefined): CloudflareSpec {
  const c: Checker = new Checker(file, where);
  if (!isObj(raw)) c.fail(['cloudflare'], 'missing (a mapping with zone)');
  const zone = c.str(raw, ['cloudflare'], 'zone', { re: /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/ });
  return { zone };
}

/** Read an inventory file and return its cloud + cloudflare sections (checked). */
export function loadCloudInventory(file: string): { cloud: CloudSpec; cloudflare?: CloudflareSpec; doc: Record<string, unknown> } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InputError(`cannot read: ${(err as Error).message}`, file);
  }
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  if (doc.errors.length) throw new InputError(`YAML: ${doc.errors[0]!.message}`, file);
  const js = doc.toJS() as unknown;
  if (!isObj(js)) throw new InputError('not a mapping', file);
  const where = (path: string[]): string | undefined => {
    for (let n = path.length; n > 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node && node.range) return String(lc.linePos(node.range[0]).line);
      // a key that exists with a scalar value returns the scalar; missing ones fall back to the parent
    }
    return undefined;
  };
  const cloud = parseCloudSection(js['cloud'], file, where);
  const cloudflare = js['cloudflare'] === undefined ? undefined : parseCloudflareSection(js['cloudflare'], file, where);
  return { cloud, cloudflare, doc: js };
}
