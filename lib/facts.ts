// Typed fact probes and a per-host cache.
//
// A fact = a read-only shell snippet + a parser. gatherFacts() joins the snippets of every requested
// fact into ONE script (sections separated by `@@f<i>` lines, see sections() in lib/shell.ts), runs
// it in one exec and parses each section. Facts are typed (`FactDef<T, A>`) and may take arguments:
// `await ctx.fact(fileStat, '/etc/x')` is a FileStat; requests made in the same tick share a round trip.
// Each snippet runs in its own subshell with stderr discarded, and the script ends with `true`, so the
// whole probe always exits 0: a missing tool shows up as data (e.g. docker.installed = false), never as
// a failed round trip.
import type { ExecResult } from './types.ts';
import { sections, sh } from './shell.ts';

/**
 * A fact: a read-only shell snippet (a function of the fact's arguments, if it takes any) and a parser.
 * `T` is the value's type, `A` the arguments' types: `ctx.fact(fileStat, '/etc/x')` is typed from both.
 */
export interface FactDef<T, A extends readonly unknown[] = []> {
  name: string;
  /** read-only shell snippet; may fail internally, its output is parsed by parse() */
  script: string | ((...args: A) => string);
  parse(out: string, ...args: A): T;
  /**
   * The value reads state that any step may change (a file's attributes): the runner forgets it after every
   * applied change, task or free command on the host, as it does its probe batch. Other facts (os, kernel...)
   * stay cached unless a change names them (Plan.invalidates).
   */
  volatile?: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry of facts of every value and argument type
type AnyFact = FactDef<unknown, any[]>;

/** One fact with its arguments, as asked for. */
export interface FactRequest {
  def: AnyFact;
  args: readonly unknown[];
}

const registry = new Map<string, AnyFact>();

/** Register a fact probe. A later definition with the same name replaces the earlier one. */
export function defineFact<T, A extends readonly unknown[] = []>(def: FactDef<T, A>): FactDef<T, A> {
  if (!/^[A-Za-z0-9_.:-]+$/.test(def.name)) throw new Error(`invalid fact name ${JSON.stringify(def.name)}`);
  registry.set(def.name, def as unknown as AnyFact);
  return def;
}

/** Names of the facts that take no argument (the ones a "gather everything" can ask for). */
export function factNames(): string[] {
  return [...registry.values()].filter((d) => typeof d.script === 'string').map((d) => d.name);
}

export function getFact(name: string): AnyFact {
  const def = registry.get(name);
  if (!def) throw new Error(`unknown fact ${JSON.stringify(name)} (known: ${[...registry.keys()].join(', ')})`);
  return def;
}

/** A request by name (for facts without arguments) or by definition and arguments. */
function request(r: string | FactRequest): FactRequest {
  return typeof r === 'string' ? { def: getFact(r), args: [] } : r;
}

/** Cache key of a request: the name, plus the arguments as JSON when there are any. */
export function factKey(r: FactRequest): string {
  return r.args.length ? `${r.def.name}${JSON.stringify(r.args)}` : r.def.name;
}

function snippet(r: FactRequest): string {
  return typeof r.def.script === 'string' ? r.def.script : r.def.script(...r.args);
}

/**
 * One script for all the requests: a `@@f<i>` marker, then the snippet in a subshell. Exits 0.
 * Markers are positional (a fact's arguments may be anything); the fact's name follows as a comment.
 */
export function factScript(reqs: readonly (string | FactRequest)[]): string {
  const parts: string[] = [];
  reqs.map(request).forEach((r, i) => {
    // printf (not echo) so that a snippet whose output lacks a final newline cannot glue onto the marker
    parts.push(`printf '\\n@@f%s\\n' ${i} # ${r.def.name}`, `( ${snippet(r)}\n) 2>/dev/null </dev/null`);
  });
  parts.push('true');
  return parts.join('\n');
}

/** Parse the output of factScript(reqs), in the same order. A section missing from the output parses as empty text. */
export function parseFacts(reqs: readonly (string | FactRequest)[], out: string): unknown[] {
  const secs = sections(out);
  return reqs.map(request).map((r, i) => r.def.parse(trimBlank(secs.get(`f${i}`) ?? ''), ...r.args));
}

export type Exec = (cmd: string) => Promise<ExecResult>;

/** Gather facts in one round trip; the values come back in the order asked. */
export async function gatherFacts(exec: Exec, reqs: readonly (string | FactRequest)[]): Promise<unknown[]> {
  const all = reqs.map(request); // fail before any round trip on an unknown name
  if (all.length === 0) return [];
  const r = await exec(factScript(all));
  return parseFacts(all, r.stdout);
}

/**
 * Per-host cache. Facts asked for in the same tick (`Promise.all([ctx.fact(a), ctx.fact(fileStat, '/x'),
 * ctx.fact(fileStat, '/y')])`) are gathered together in ONE round trip; concurrent callers share it.
 */
export class FactCache {
  private readonly values = new Map<string, unknown>();
  private readonly pending = new Map<string, Promise<unknown>>();
  private queue: { key: string; req: FactRequest; resolve(v: unknown): void; reject(e: unknown): void }[] = [];
  /** number of gathering round trips made (for tests and the bench) */
  gathers = 0;

  constructor(private readonly exec: Exec) {}

  /** One fact's value: cached, or gathered with whatever else is asked for in this tick. */
  get<T, A extends readonly unknown[]>(def: FactDef<T, A>, ...args: A): Promise<T> {
    const req: FactRequest = { def: def as unknown as AnyFact, args };
    const key = factKey(req);
    if (this.values.has(key)) return Promise.resolve(this.values.get(key) as T);
    const known = this.pending.get(key);
    if (known) return known as Promise<T>;
    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const p = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.pending.set(key, p);
    p.then(
      (v) => {
        // an invalidate() during the gather drops this promise: don't cache a stale answer then
        if (this.pending.get(key) === p) {
          this.values.set(key, v);
          this.pending.delete(key);
        }
      },
      () => {
        if (this.pending.get(key) === p) this.pending.delete(key);
      },
    );
    if (this.queue.length === 0) queueMicrotask(() => void this.flush());
    this.queue.push({ key, req, resolve, reject });
    return p as Promise<T>;
  }

  private async flush(): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    if (!batch.length) return;
    this.gathers++;
    try {
      const values = await gatherFacts(
        this.exec,
        batch.map((b) => b.req),
      );
      batch.forEach((b, i) => {
        b.resolve(values[i]);
      });
    } catch (e) {
      for (const b of batch) b.reject(e);
    }
  }

  /** Forget these facts, whatever their arguments (after a change); the next get() gathers them again. */
  invalidate(names: readonly string[]): void {
    for (const map of [this.values, this.pending]) {
      for (const key of [...map.keys()]) if (names.some((n) => key === n || key.startsWith(`${n}[`))) map.delete(key);
    }
  }

  /** Forget the volatile facts (FactDef.volatile), whatever their arguments: after anything that may change files. */
  forgetVolatile(): void {
    this.invalidate([...registry.values()].filter((d) => d.volatile).map((d) => d.name));
  }

  /** Forget everything. */
  clear(): void {
    this.values.clear();
    this.pending.clear();
  }
}

function trimBlank(s: string): string {
  return s.replace(/^\n+/, '').replace(/\n+$/, '');
}

function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.trim() !== '');
}

/** "k=v" lines → record (first '=' splits). */
function kv(s: string): Record<string, string> {
  const r: Record<string, string> = {};
  for (const l of lines(s)) {
    const i = l.indexOf('=');
    if (i > 0) r[l.slice(0, i).trim()] = l.slice(i + 1);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// The facts

export interface OsFact {
  id: string;
  idLike: string[];
  versionId: string;
  codename: string;
  prettyName: string;
}

/** /etc/os-release: KEY=value with optional shell quoting. */
export function parseOsRelease(out: string): OsFact {
  const raw = kv(out);
  const unq = (v: string | undefined): string => {
    if (v === undefined) return '';
    const t = v.trim();
    if (t.length >= 2 && (t[0] === '"' || t[0] === "'") && t[t.length - 1] === t[0]) return t.slice(1, -1).replace(/\\(["$`\\])/g, '$1');
    return t;
  };
  return {
    id: unq(raw.ID),
    idLike: unq(raw.ID_LIKE).split(/\s+/).filter(Boolean),
    versionId: unq(raw.VERSION_ID),
    codename: unq(raw.VERSION_CODENAME),
    prettyName: unq(raw.PRETTY_NAME),
  };
}

export const osFact = defineFact<OsFact>({
  name: 'os',
  script: 'cat /etc/os-release || cat /usr/lib/os-release',
  parse: parseOsRelease,
});

export const archFact = defineFact<string>({
  name: 'arch',
  script: 'uname -m',
  parse: (out) => out.trim(),
});

export const cpusFact = defineFact<number>({
  name: 'cpus',
  script: 'nproc',
  parse: (out) => {
    const n = parseInt(out.trim(), 10);
    return Number.isFinite(n) ? n : 0;
  },
});

export interface MemoryFact {
  totalMb: number;
  availableMb: number;
  swapTotalMb: number;
}

export const memoryFact = defineFact<MemoryFact>({
  name: 'memory',
  script: 'cat /proc/meminfo',
  parse: (out) => {
    const kb: Record<string, number> = {};
    for (const l of lines(out)) {
      const m = /^(\w+):\s+(\d+)/.exec(l);
      if (m) kb[m[1]!] = parseInt(m[2]!, 10);
    }
    const mb = (k: string): number => Math.floor((kb[k] ?? 0) / 1024);
    return { totalMb: mb('MemTotal'), availableMb: mb('MemAvailable'), swapTotalMb: mb('SwapTotal') };
  },
});

export interface DiskFact {
  device: string;
  mount: string;
  sizeKb: number;
  usedKb: number;
  availKb: number;
}

export const disksFact = defineFact<DiskFact[]>({
  name: 'disks',
  // POSIX format, 1K blocks; pseudo filesystems left out
  script: 'df -P -k -x tmpfs -x devtmpfs -x squashfs -x proc -x sysfs -x cgroup -x cgroup2',
  parse: (out) => {
    const res: DiskFact[] = [];
    for (const l of lines(out).slice(1)) {
      // the mount point is the last field and may contain spaces: split the first 5 fields only
      const m = /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+(.+)$/.exec(l);
      if (m) res.push({ device: m[1]!, sizeKb: +m[2]!, usedKb: +m[3]!, availKb: +m[4]!, mount: m[5]! });
    }
    return res;
  },
});

export interface PackageInfo {
  version: string;
  /** dpkg status: "install ok installed", "deinstall ok config-files", ... */
  status: string;
}

/** Parse `dpkg-query -W -f='${Package} ${Status} ${Version}\n'` lines. Status is three words. */
export function parseDpkgQuery(out: string): Record<string, PackageInfo> {
  const res: Record<string, PackageInfo> = {};
  for (const l of lines(out)) {
    const f = l.trim().split(/\s+/);
    if (f.length < 4) continue; // "name" alone: unknown to dpkg
    res[f[0]!] = { status: f.slice(1, 4).join(' '), version: f[4] ?? '' };
  }
  return res;
}

/** Installed and configured (trigger processing pending still counts); config-files, half-installed, unpacked do not. */
export const isInstalled = (p: PackageInfo | undefined): boolean =>
  !!p && /^\S+ ok (installed|triggers-awaited|triggers-pending)$/.test(p.status);

/** packages: installed package → version (config-files-only and half-installed left out). */
export const packagesFact = defineFact<Record<string, string>>({
  name: 'packages',
  script: "dpkg-query -W -f='${Package} ${Status} ${Version}\\n'",
  parse: (out) => {
    const res: Record<string, string> = {};
    for (const [name, info] of Object.entries(parseDpkgQuery(out))) if (isInstalled(info)) res[name] = info.version;
    return res;
  },
});

export interface ServiceInfo {
  load: string;
  active: string;
  sub: string;
  /** from list-unit-files: enabled, disabled, static, masked, ...; '' when not listed */
  enabled: string;
}

export interface ServicesFact {
  /** false when systemd is not the init system (nothing else is then known) */
  systemd: boolean;
  units: Record<string, ServiceInfo>;
}

export function parseServices(out: string): ServicesFact {
  const [head, units = '', files = ''] = out.split(/^%%(?:units|files)$/m);
  const systemd = /systemd=yes/.test(head ?? '');
  const res: Record<string, ServiceInfo> = {};
  for (const l of lines(units)) {
    // UNIT LOAD ACTIVE SUB DESCRIPTION ("●" marks failed units in some versions even with --plain)
    const f = l
      .replace(/^[●*]\s*/, '')
      .trim()
      .split(/\s+/);
    if (f.length < 4 || !f[0]!.includes('.')) continue;
    res[f[0]!] = { load: f[1]!, active: f[2]!, sub: f[3]!, enabled: '' };
  }
  for (const l of lines(files)) {
    const f = l.trim().split(/\s+/);
    if (f.length < 2 || !f[0]!.includes('.')) continue;
    const u = res[f[0]!];
    if (u) u.enabled = f[1]!;
    else res[f[0]!] = { load: '', active: 'inactive', sub: 'dead', enabled: f[1]! };
  }
  return { systemd, units: res };
}

export const servicesFact = defineFact<ServicesFact>({
  name: 'services',
  script: [
    'if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi',
    'echo %%units',
    'systemctl list-units --type=service --all --no-legend --no-pager --plain',
    'echo %%files',
    'systemctl list-unit-files --type=service --no-legend --no-pager',
  ].join('\n'),
  parse: parseServices,
});

export interface DockerFact {
  installed: boolean;
  clientVersion: string;
  serverVersion: string;
  /** the daemon answers */
  running: boolean;
}

export const dockerFact = defineFact<DockerFact>({
  name: 'docker',
  script: [
    'if command -v docker >/dev/null; then echo installed=yes; else echo installed=no; fi',
    "echo client=$(docker version --format '{{.Client.Version}}' 2>/dev/null)",
    "echo server=$(timeout 10 docker version --format '{{.Server.Version}}' 2>/dev/null)",
  ].join('\n'),
  parse: (out) => {
    const r = kv(out);
    const server = (r.server ?? '').trim();
    return { installed: r.installed === 'yes', clientVersion: (r.client ?? '').trim(), serverVersion: server, running: server !== '' };
  },
});

export interface SwarmFact {
  /** inactive | pending | active | error | locked; 'unavailable' when docker does not answer */
  state: string;
  nodeId: string;
  nodeAddr: string;
  isManager: boolean;
  clusterId: string;
  managers: number;
  nodes: number;
  /** manager addresses known to this node ("10.0.0.2:2377") */
  remoteManagers: string[];
  error: string;
}

/** Parse `docker info --format '{{json .Swarm}}'`. */
export function parseSwarm(out: string): SwarmFact {
  const none: SwarmFact = {
    state: 'unavailable',
    nodeId: '',
    nodeAddr: '',
    isManager: false,
    clusterId: '',
    managers: 0,
    nodes: 0,
    remoteManagers: [],
    error: '',
  };
  const text = out
    .trim()
    .split('\n')
    .find((l) => l.trim().startsWith('{'));
  if (!text) return none;
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return none;
  }
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
  const cluster = (j.Cluster ?? {}) as Record<string, unknown>;
  const rm = Array.isArray(j.RemoteManagers) ? (j.RemoteManagers as Array<Record<string, unknown>>) : [];
  return {
    state: str(j.LocalNodeState) || 'unavailable',
    nodeId: str(j.NodeID),
    nodeAddr: str(j.NodeAddr),
    isManager: j.ControlAvailable === true,
    clusterId: str(cluster.ID),
    managers: num(j.Managers),
    nodes: num(j.Nodes),
    remoteManagers: rm.map((m) => str(m.Addr)).filter(Boolean),
    error: str(j.Error),
  };
}

/**
 * The one command that reads this node's swarm state (the swarm fact, the docker operations' probes, the swarm
 * roles' probes): one command text, so that a probe batch runs it once (lib/shell.ts memo). Its second line says
 * what the daemon pulls through besides the registry itself (`pulls=` mirrors count, HTTP and HTTPS proxies: "0"
 * when nothing), for the image probes (lib/ops/docker.ts): one `docker info` per batch for both.
 */
export const SWARM_INFO = `timeout 20 docker info --format '{{json .Swarm}}{{"\\n"}}pulls={{len .RegistryConfig.Mirrors}}{{.HTTPProxy}}{{.HTTPSProxy}}'`;

export const swarmFact = defineFact<SwarmFact>({
  name: 'swarm',
  script: SWARM_INFO,
  parse: parseSwarm,
});

export interface KernelFact {
  release: string;
  /** IPVS: swarm VIPs and the routing mesh need it */
  ipvs: boolean;
  /** ESP (IPsec): encrypted overlay networks need it */
  esp: boolean;
  /** the XFRM framework (IPsec state) */
  xfrm: boolean;
  /** VXLAN (overlay networks) */
  vxlan: boolean;
}

export const kernelFact = defineFact<KernelFact>({
  name: 'kernel',
  script: [
    'echo release=$(uname -r)',
    'if [ -e /proc/net/ip_vs ] || [ -d /sys/module/ip_vs ]; then echo ipvs=yes; else echo ipvs=no; fi',
    'if grep -qw esp4 /proc/crypto || [ -d /sys/module/esp4 ]; then echo esp=yes; else echo esp=no; fi',
    'if [ -e /proc/net/xfrm_stat ]; then echo xfrm=yes; else echo xfrm=no; fi',
    'if [ -d /sys/module/vxlan ] || grep -qw vxlan /proc/modules; then echo vxlan=yes; else echo vxlan=no; fi',
  ].join('\n'),
  parse: (out) => {
    const r = kv(out);
    return {
      release: (r.release ?? '').trim(),
      ipvs: r.ipvs === 'yes',
      esp: r.esp === 'yes',
      xfrm: r.xfrm === 'yes',
      vxlan: r.vxlan === 'yes',
    };
  },
});

export interface UserInfo {
  uid: number;
  gid: number;
  comment: string;
  home: string;
  shell: string;
}

export interface UsersFact {
  users: Record<string, UserInfo>;
  /** group → gid and members (supplementary members as listed in /etc/group) */
  groups: Record<string, { gid: number; members: string[] }>;
}

/** One passwd line → [name, info]. */
export function parsePasswdLine(l: string): [string, UserInfo] | null {
  const f = l.split(':');
  if (f.length < 7) return null;
  return [f[0]!, { uid: parseInt(f[2]!, 10), gid: parseInt(f[3]!, 10), comment: f[4]!, home: f[5]!, shell: f[6]! }];
}

export const usersFact = defineFact<UsersFact>({
  name: 'users',
  script: 'getent passwd\necho %%groups\ngetent group',
  parse: (out) => {
    const [pw = '', gr = ''] = out.split(/^%%groups$/m);
    const users: UsersFact['users'] = {};
    for (const l of lines(pw)) {
      const p = parsePasswdLine(l);
      if (p) users[p[0]] = p[1];
    }
    const groups: UsersFact['groups'] = {};
    for (const l of lines(gr)) {
      const f = l.split(':');
      if (f.length < 4) continue;
      groups[f[0]!] = { gid: parseInt(f[2]!, 10), members: f[3]!.split(',').filter(Boolean) };
    }
    return { users, groups };
  },
});

export interface FileStat {
  exists: boolean;
  /** "file", "directory", "link" (the path itself is a symbolic link), "other"; '' when absent */
  type: 'file' | 'directory' | 'link' | 'other' | '';
  /** "0644"; '' when absent */
  mode: string;
  owner: string;
  group: string;
  size: number;
  /** modification time, seconds since the epoch */
  mtime: number;
}

/** Parse `stat -c '%F|%a|%U|%G|%s|%Y'` (without following links) or "absent". */
export function parseFileStat(out: string): FileStat {
  const f = out.trim().split('\n')[0]!.split('|');
  if (f.length < 6) return { exists: false, type: '', mode: '', owner: '', group: '', size: 0, mtime: 0 };
  const t = f[0]!;
  const type = t === 'directory' ? 'directory' : t === 'symbolic link' ? 'link' : /^regular/.test(t) ? 'file' : 'other';
  return { exists: true, type, mode: f[1]!.padStart(4, '0'), owner: f[2]!, group: f[3]!, size: Number(f[4]), mtime: Number(f[5]) };
}

/** The path itself (a link is not followed): `ctx.fact(fileStat, '/etc/x')`. Volatile: read again after a change. */
export const fileStat = defineFact<FileStat, [path: string]>({
  name: 'fileStat',
  volatile: true,
  script: (path) => sh`LC_ALL=C stat -c '%F|%a|%U|%G|%s|%Y' -- ${path} || echo absent`,
  parse: parseFileStat,
});
