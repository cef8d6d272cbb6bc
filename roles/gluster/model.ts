// Pure helpers of the gluster role: settings from the inventory, brick layout, command lines, parsers of
// the gluster CLI's output, the fstab line, systemd path escaping and the per-site directory operations.
// Nothing here talks to a host; roles/gluster/role.ts does. Unit tests: test/unit/gluster.test.ts.
import { InputError } from '../../lib/errors.ts';
import { directory } from '../../lib/ops/files.ts';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';
import { sh } from '../../lib/shell.ts';
import type { HostSpec, Operation, StepOptions, Vars } from '../../lib/types.ts';
import { str } from '../../lib/vars.ts';

/** Volume options for a web farm (many small PHP/media files, read-mostly, several clients). See docs/roles/gluster.md. */
export const DEFAULT_OPTIONS: Readonly<Record<string, string>> = {
  // a dead server is declared gone after 10 s instead of 42 s (the clients block I/O meanwhile)
  'network.ping-timeout': '10',
  // client quorum: writes need 2 of the 3 bricks (the arbiter counts): no split brain
  'cluster.quorum-type': 'auto',
  // server quorum: a glusterd that loses contact with the majority of the pool stops its bricks
  'cluster.server-quorum-type': 'server',
  // read cache per client (io-cache)
  'performance.cache-size': '128MB',
  // metadata cache with upcall invalidation: PHP stat()s every included file on each request
  'features.cache-invalidation': 'on',
  'features.cache-invalidation-timeout': '600',
  'performance.cache-invalidation': 'on',
  'performance.stat-prefetch': 'on',
  'performance.md-cache-timeout': '600',
  'network.inode-lru-limit': '200000',
  // directory listings (media library, plugin scans)
  'performance.readdir-ahead': 'on',
  'performance.parallel-readdir': 'on',
  // small files: copying a whole file heals faster than computing checksums of its blocks
  'cluster.data-self-heal-algorithm': 'full',
  'cluster.self-heal-daemon': 'on',
  // no gNFS server (FUSE clients only)
  'nfs.disable': 'on',
};

export interface Settings {
  volume: string;
  brickDir: string;
  mount: string;
  force: boolean;
  dataGroup: string;
  arbiterGroup: string;
  clientGroup: string;
  /**
   * groups that also mount the volume (gluster_extra_client_groups, default [managers]: Portainer's data lives on the
   * volume so its single replica can move between managers); no docker.service drop-in for them (the swarm's
   * control plane never waits for storage at boot), no site tasks (those follow the clientGroup's node label)
   */
  extraClientGroups: string[];
  options: Record<string, string>;
  /** extra mount options (after defaults,_netdev,backup-volfile-servers=...) */
  mountOptions: string[];
  /** the docker.service drop-in that orders dockerd after the mount (clients) */
  dockerAfterMount: boolean;
  prepTimeoutMs: number;
  /** owner of the site directories (uid of www-data in the WordPress images) */
  siteOwner: string;
  ports: PortRange;
}

const VOLUME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const OPTION_KEY_RE = /^[a-z][a-z0-9_.-]*$/;
/** a boolean var; extra vars from the CLI (-e k=v) arrive as strings */
const bool = (v: unknown, d: boolean): boolean => (v === true || v === 'true' ? true : v === false || v === 'false' ? false : d);

function absPath(p: string, what: string): string {
  if (!p.startsWith('/') || p.includes('\n') || /(^|\/)\.\.?(\/|$)/.test(p))
    throw new InputError(`gluster: ${what} must be an absolute path without . or .. (got ${JSON.stringify(p)})`);
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

function groupList(v: unknown, d: string[]): string[] {
  if (v === undefined) return d;
  const l =
    typeof v === 'string'
      ? v
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean)
      : v;
  if (!Array.isArray(l) || !l.every((x) => typeof x === 'string' && /^[A-Za-z0-9_-]+$/.test(x)))
    throw new InputError(`gluster: gluster_extra_client_groups must be a list of group names (got ${JSON.stringify(v)})`);
  return l as string[];
}

export function settings(vars: Vars): Settings {
  const volume = str(vars.gluster_volume, 'wpfarm-sites');
  if (!VOLUME_RE.test(volume)) throw new InputError(`gluster: invalid gluster_volume ${JSON.stringify(volume)} (letters, digits, - and _)`);
  const options: Record<string, string> = { ...DEFAULT_OPTIONS };
  if (typeof vars.gluster_cache_size === 'string') options['performance.cache-size'] = vars.gluster_cache_size;
  const extra = vars.gluster_volume_options;
  if (extra !== undefined) {
    if (typeof extra !== 'object' || extra === null || Array.isArray(extra))
      throw new InputError('gluster: gluster_volume_options must be a mapping option → value');
    for (const [k, v] of Object.entries(extra as Record<string, unknown>)) {
      if (!OPTION_KEY_RE.test(k)) throw new InputError(`gluster: invalid volume option name ${JSON.stringify(k)}`);
      if (v === null) delete options[k];
      else options[k] = String(v);
    }
  }
  const mountOptions = Array.isArray(vars.gluster_mount_options) ? vars.gluster_mount_options.map(String) : [];
  for (const o of mountOptions)
    if (!/^[A-Za-z0-9_.=:/-]+$/.test(o)) throw new InputError(`gluster: invalid mount option ${JSON.stringify(o)}`);
  return {
    volume,
    brickDir: absPath(str(vars.gluster_brick_dir, `/srv/gluster/bricks/${volume}`), 'gluster_brick_dir'),
    mount: absPath(str(vars.gluster_mount, '/mnt/gluster/sites'), 'gluster_mount'),
    force: bool(vars.gluster_brick_force, false),
    dataGroup: str(vars.gluster_data_group, 'storage'),
    arbiterGroup: str(vars.gluster_arbiter_group, 'storage_arbiter'),
    clientGroup: str(vars.gluster_client_group, 'workers'),
    extraClientGroups: groupList(vars.gluster_extra_client_groups, ['managers']),
    options,
    mountOptions,
    dockerAfterMount: bool(vars.gluster_docker_after_mount, true),
    prepTimeoutMs: (Number(vars.gluster_prep_timeout ?? 900) || 900) * 1000,
    siteOwner: str(vars.gluster_site_owner, '33'),
    ports: portRange(vars),
  };
}

/** The address glusterd and the clients use for a host: its private address when the inventory gives one. */
export const nodeAddress = (h: Pick<HostSpec, 'address' | 'vars'>): string => str(h.vars.private_address, h.address);

export interface Brick {
  host: string;
  address: string;
  path: string;
  arbiter: boolean;
}

/**
 * Bricks in creation order: replica sets of (data, data, arbiter). 2 data hosts + 1 arbiter = one set
 * (`replica 3 arbiter 1`); 4 + 2 = a distributed-replicated volume of two sets, and so on.
 */
export function brickLayout(
  data: Pick<HostSpec, 'name' | 'address' | 'vars'>[],
  arbiters: Pick<HostSpec, 'name' | 'address' | 'vars'>[],
  brickDir: string,
): Brick[] {
  if (!arbiters.length || data.length !== 2 * arbiters.length) {
    throw new InputError(
      `gluster: replica 3 arbiter 1 needs two data hosts per arbiter host (got ${data.length} data, ${arbiters.length} arbiter)`,
    );
  }
  const names = new Set<string>();
  for (const h of [...data, ...arbiters]) {
    if (names.has(h.name)) throw new InputError(`gluster: ${h.name} is both a data and an arbiter host`);
    names.add(h.name);
  }
  const out: Brick[] = [];
  for (let i = 0; i < arbiters.length; i++) {
    for (const h of [data[2 * i]!, data[2 * i + 1]!]) out.push({ host: h.name, address: nodeAddress(h), path: brickDir, arbiter: false });
    const a = arbiters[i]!;
    out.push({ host: a.name, address: nodeAddress(a), path: brickDir, arbiter: true });
  }
  return out;
}

export const brickName = (b: Pick<Brick, 'address' | 'path'>): string => `${b.address}:${b.path}`;

export function createVolumeCommand(s: Pick<Settings, 'volume' | 'force'>, bricks: Brick[]): string {
  const args = ['volume', 'create', s.volume, 'replica', '3', 'arbiter', '1', ...bricks.map(brickName), ...(s.force ? ['force'] : [])];
  return sh`gluster --mode=script ${args}`;
}

export function setOptionsCommand(volume: string, changes: [string, string][]): string {
  return changes.map(([k, v]) => sh`gluster --mode=script volume set ${volume} ${k} ${v}`).join(' && ');
}

// ---------------------------------------------------------------------------------------------------
// Parsers of the gluster CLI (10.x plain text output)

export interface Peer {
  uuid: string;
  hostname: string;
  state: string;
  otherNames: string[];
}

/** `gluster peer status` */
export function parsePeerStatus(out: string): Peer[] {
  const peers: Peer[] = [];
  let cur: Peer | null = null;
  let inOther = false;
  for (const raw of out.split('\n')) {
    const line = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^Hostname:\s*(.+)$/.exec(line))) {
      cur = { hostname: m[1]!, uuid: '', state: '', otherNames: [] };
      peers.push(cur);
      inOther = false;
    } else if (cur && (m = /^Uuid:\s*(.+)$/.exec(line))) cur.uuid = m[1]!;
    else if (cur && (m = /^State:\s*(.+)$/.exec(line))) {
      cur.state = m[1]!;
      inOther = false;
    } else if (cur && /^Other names:$/.test(line)) inOther = true;
    else if (cur && inOther && line) cur.otherNames.push(line);
    else if (!line) inOther = false;
  }
  return peers;
}

export const peerConnected = (p: Peer): boolean => /Peer in Cluster/.test(p.state) && /\(Connected\)/.test(p.state);
export const peerKnows = (peers: Peer[], address: string): Peer | undefined =>
  peers.find((p) => p.hostname === address || p.otherNames.includes(address));

export interface VolumeInfo {
  name: string;
  type: string;
  status: string;
  bricks: { name: string; arbiter: boolean }[];
  options: Record<string, string>;
}

/** `gluster volume info VOL`; null when the output holds no volume. */
export function parseVolumeInfo(out: string): VolumeInfo | null {
  let v: VolumeInfo | null = null;
  let inOptions = false;
  for (const raw of out.split('\n')) {
    const line = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^Volume Name:\s*(.+)$/.exec(line))) {
      if (v) break; // one volume only
      v = { name: m[1]!, type: '', status: '', bricks: [], options: {} };
      inOptions = false;
    } else if (!v) continue;
    else if ((m = /^Type:\s*(.+)$/.exec(line))) v.type = m[1]!;
    else if ((m = /^Status:\s*(.+)$/.exec(line))) v.status = m[1]!;
    else if ((m = /^Brick\d+:\s*(\S+)(\s+\(arbiter\))?$/.exec(line))) v.bricks.push({ name: m[1]!, arbiter: !!m[2] });
    else if (/^Options Reconfigured:$/.test(line)) inOptions = true;
    else if (inOptions && (m = /^([a-z][\w.-]*):\s*(.*)$/.exec(line))) v.options[m[1]!] = m[2]!;
    else if (!line) inOptions = false;
  }
  return v;
}

/** Options to set: wanted ones whose value differs (case-insensitive) or that are not set yet. */
export function optionChanges(want: Record<string, string>, have: Record<string, string>): [string, string][] {
  return Object.entries(want).filter(([k, v]) => (have[k] ?? '').toLowerCase() !== v.toLowerCase());
}

/** Differences between the wanted bricks and the volume's (empty when equal, order included). */
export function brickDifferences(want: Brick[], have: VolumeInfo): string[] {
  const diffs: string[] = [];
  const n = Math.max(want.length, have.bricks.length);
  for (let i = 0; i < n; i++) {
    const w = want[i];
    const h = have.bricks[i];
    const wn = w ? `${brickName(w)}${w.arbiter ? ' (arbiter)' : ''}` : '(none)';
    const hn = h ? `${h.name}${h.arbiter ? ' (arbiter)' : ''}` : '(none)';
    if (wn !== hn) diffs.push(`brick ${i + 1}: wanted ${wn}, volume has ${hn}`);
  }
  return diffs;
}

export interface HealBrick {
  brick: string;
  status: string;
  /** null when the brick did not answer ("-") */
  entries: number | null;
}

/** `gluster volume heal VOL info`: per brick, the number of entries that need healing. */
export function parseHealInfo(out: string): { bricks: HealBrick[]; total: number | null } {
  const bricks: HealBrick[] = [];
  let cur: HealBrick | null = null;
  for (const raw of out.split('\n')) {
    const line = raw.trim();
    let m: RegExpExecArray | null;
    if ((m = /^Brick\s+(\S+)$/.exec(line))) {
      cur = { brick: m[1]!, status: '', entries: null };
      bricks.push(cur);
    } else if (cur && (m = /^Status:\s*(.+)$/.exec(line))) cur.status = m[1]!;
    else if (cur && (m = /^Number of entries:\s*(\S+)$/.exec(line))) cur.entries = /^\d+$/.test(m[1]!) ? Number(m[1]) : null;
  }
  const total = bricks.length && bricks.every((b) => b.entries !== null) ? bricks.reduce((a, b) => a + (b.entries ?? 0), 0) : null;
  return { bricks, total };
}

export interface BrickStatus {
  brick: string;
  /** 0 when not listening (N/A) */
  port: number;
  online: boolean;
  pid: string;
}

/**
 * `gluster volume status VOL`: the brick lines ("Brick ADDR:/path  TCP-port  RDMA-port  Online  Pid").
 * The CLI wraps a long brick name inside the name: the rest of the name and the numbers are then on the next line.
 */
export function parseVolumeStatus(out: string): BrickStatus[] {
  const res: BrickStatus[] = [];
  const lines = out.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (!line.startsWith('Brick ')) continue;
    const first = line.slice(6).trim().split(/\s+/);
    let brick = first[0]!;
    let fields = first.slice(1);
    if (fields.length < 4 && i + 1 < lines.length) {
      const next = lines[++i]!.trim().split(/\s+/);
      if (next.length >= 5) brick += next.shift();
      fields = [...fields, ...next];
    }
    const [port, , online, pid] = fields;
    res.push({ brick, port: /^\d+$/.test(port ?? '') ? Number(port) : 0, online: online === 'Y', pid: pid ?? '' });
  }
  return res;
}

export interface PortRange {
  base: number;
  max: number;
}

/** The brick port range (glusterd.vol base-port/max-port); the firewall of roles/common opens 49152-49251. */
export function portRange(vars: Vars): PortRange {
  const raw = str(vars.gluster_brick_ports, '49152-49251');
  const m = /^(\d+)-(\d+)$/.exec(raw.trim());
  const base = m ? Number(m[1]) : NaN;
  const max = m ? Number(m[2]) : NaN;
  if (!m || base < 1024 || max > 65535 || max < base)
    throw new InputError(`gluster: invalid gluster_brick_ports ${JSON.stringify(raw)} (e.g. 49152-49251)`);
  return { base, max };
}

// ---------------------------------------------------------------------------------------------------
// Clients

/** The /etc/fstab line of the FUSE mount: first server for the volfile, the others as backups. */
export function fstabLine(s: Pick<Settings, 'volume' | 'mount' | 'mountOptions'>, servers: string[]): string {
  if (!servers.length) throw new InputError('gluster: no server to mount the volume from');
  const [first, ...backup] = servers;
  const opts = ['defaults', '_netdev', ...(backup.length ? [`backup-volfile-servers=${backup.join(':')}`] : []), ...s.mountOptions];
  return `${first}:/${s.volume} ${s.mount} glusterfs ${opts.join(',')} 0 0`;
}

/** A regexp matching any fstab line that mounts something on this mount point (to replace it). */
export function fstabRegexp(mount: string): RegExp {
  return new RegExp(`^\\s*[^#\\s]\\S*\\s+${mount.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/*\\s`);
}

/** systemd's path escaping (`systemd-escape --path --suffix=mount`), for the mount unit's name. */
export function mountUnitName(p: string): string {
  const trimmed = p.replace(/^\/+|\/+$/g, '').replace(/\/+/g, '/');
  if (!trimmed) return '-.mount';
  let out = '';
  const bytes = Buffer.from(trimmed, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    const c = String.fromCharCode(bytes[i]!);
    if (c === '/') out += '-';
    else if (/[A-Za-z0-9:_]/.test(c) || (c === '.' && i > 0)) out += c;
    else out += `\\x${bytes[i]!.toString(16).padStart(2, '0')}`;
  }
  return `${out}.mount`;
}

/** The docker.service drop-in: dockerd starts after the Gluster mount (containers bind site directories). */
export function dockerDropIn(mount: string): string {
  return renderTemplate(templatePath('gluster', 'docker-after-gluster.conf.ejs'), { mount_unit: mountUnitName(mount) });
}

const SITE_ID_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
export const SITE_SUBDIRS = ['uploads', 'plugins', 'themes'] as const;

/**
 * The directories of one site on the Gluster volume, for the wp-site role to run on ONE client (the
 * volume is shared: every worker sees them): <gluster_mount>/<site-id>/{uploads,plugins,themes},
 * owned by www-data (uid 33 in the WordPress images).
 */
export function siteDirSteps(siteId: string, vars: Vars = {}, options: StepOptions = {}): Operation[] {
  if (!SITE_ID_RE.test(siteId)) throw new InputError(`gluster: invalid site id ${JSON.stringify(siteId)}`);
  const s = settings(vars);
  const base = `${s.mount}/${siteId}`;
  const attrs = { owner: s.siteOwner, group: s.siteOwner, mode: '0755' };
  return [base, ...SITE_SUBDIRS.map((d) => `${base}/${d}`)].map((p) => directory({ path: p, ...attrs }, options));
}
