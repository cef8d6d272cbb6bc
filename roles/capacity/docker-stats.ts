// What one swarm node says about its size and its containers, in one round trip: its CPUs (nproc), its memory
// (/proc/meminfo) and `docker stats --no-stream` of every running container on it (docker stats only sees
// the node it runs on, so every node that may carry sites is asked, once). Pure: the script and its parser.
//
// The stats line is docker's own `{{json .}}` of a stats entry, e.g.
//   {"BlockIO":"0B / 0B","CPUPerc":"1.23%","Container":"c1d2","ID":"c1d2","MemPerc":"0.41%",
//    "MemUsage":"31.46MiB / 7.654GiB","Name":"wp-blog_nginx.1.x8k2","NetIO":"1.2kB / 0B","PIDs":"3"}
// CPUPerc: percent of ONE core (200% = two cores busy); MemUsage: "<used> / <limit>" in binary units
// (B, KiB, MiB, GiB, TiB; docker's units.BytesSize). A container that is starting or gone shows "--"; one whose
// cgroup docker cannot read shows "0B / 0B" (both are left out: no figures).

/** The format string given to docker stats: one JSON object per container. */
export const STATS_FORMAT = '{{json .}}';

/** The node probe: one command, sections marked %%name. */
export function nodeProbeScript(): string {
  return [
    'echo %%nproc',
    'nproc',
    'echo %%meminfo',
    "grep -E '^(MemTotal|MemAvailable):' /proc/meminfo",
    'echo %%stats',
    // no docker (not a swarm node yet) is a finding, not a failure: say so and go on
    `if command -v docker >/dev/null 2>&1; then docker stats --no-stream --format '${STATS_FORMAT}' 2>&1 || echo "%%docker-failed $?"; ` +
      'else echo "%%no-docker"; fi',
  ].join('\n');
}

export interface ContainerStats {
  name: string;
  /** millicores (100% = 1000) */
  cpuMilli: number;
  memMiB: number;
}

export interface NodeProbe {
  cpus: number;
  memTotalMiB: number;
  memAvailableMiB?: number;
  containers: ContainerStats[];
  /** why there are no container figures: no docker, or docker stats failed (its message) */
  statsError?: string;
}

const UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
  PiB: 1024 ** 5,
  // decimal units (docker's HumanSize, used by older CLIs and by NetIO/BlockIO)
  kB: 1e3,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
};

/** "31.46MiB" → bytes; NaN when it is not a size ("--"). */
export function parseDockerSize(s: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?(?:e[+-]?[0-9]+)?)\s*([A-Za-z]+)\s*$/.exec(s);
  const unit = m ? UNITS[m[2]!] : undefined;
  return m && unit !== undefined ? Number(m[1]) * unit : NaN;
}

/** "12.34%" → 12.34; NaN for "--". */
export function parsePercent(s: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)%\s*$/.exec(s);
  return m ? Number(m[1]) : NaN;
}

/** The lines of `docker stats --no-stream --format '{{json .}}'`; a container without figures ("--") is left out. */
export function parseDockerStats(out: string): ContainerStats[] {
  const rows: ContainerStats[] = [];
  for (const line of out.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    let e: { Name?: unknown; CPUPerc?: unknown; MemUsage?: unknown };
    try {
      e = JSON.parse(t) as typeof e;
    } catch {
      throw new Error(`docker stats: not a JSON line: ${t.slice(0, 120)}`);
    }
    if (typeof e.Name !== 'string' || typeof e.CPUPerc !== 'string' || typeof e.MemUsage !== 'string')
      throw new Error(`docker stats: a line without Name, CPUPerc and MemUsage: ${t.slice(0, 120)}`);
    const cpu = parsePercent(e.CPUPerc);
    const [used = '', limit = ''] = e.MemUsage.split('/');
    const mem = parseDockerSize(used);
    // "0B / 0B": docker could not read the container's cgroup (seen for the lab's node containers on this
    // machine's cgroup v1 host): no figures, not an idle container (a real one always has a memory limit)
    if (Number.isNaN(cpu) || Number.isNaN(mem) || !(parseDockerSize(limit) > 0)) continue;
    rows.push({ name: e.Name.replace(/^\//, ''), cpuMilli: Math.round(cpu * 10), memMiB: mem / 1024 ** 2 });
  }
  return rows;
}

/** The probe's output → the node's figures. Throws when nproc or MemTotal is missing (not a Linux node?). */
export function parseNodeProbe(out: string): NodeProbe {
  const sections = new Map<string, string>();
  let cur = '';
  for (const line of out.split('\n')) {
    const m = /^%%(nproc|meminfo|stats)$/.exec(line.trim());
    if (m) {
      cur = m[1]!;
      sections.set(cur, '');
    } else if (cur) sections.set(cur, `${sections.get(cur)}${line}\n`);
  }
  const cpus = Number((sections.get('nproc') ?? '').trim());
  const mem = (k: string): number | undefined => {
    const m = new RegExp(`^${k}:\\s+([0-9]+) kB`, 'm').exec(sections.get('meminfo') ?? '');
    return m ? Number(m[1]) / 1024 : undefined;
  };
  const total = mem('MemTotal');
  if (!Number.isInteger(cpus) || cpus < 1 || total === undefined)
    throw new Error(`node probe: no CPU count or MemTotal in:\n${out.slice(0, 400)}`);
  const stats = sections.get('stats') ?? '';
  const failed = /^%%docker-failed (\d+)$/m.exec(stats);
  const statsError = /^%%no-docker$/m.test(stats)
    ? 'docker is not installed'
    : failed
      ? `docker stats failed (exit ${failed[1]}): ${
          stats
            .replace(/^%%docker-failed.*$/m, '')
            .trim()
            .split('\n')[0] ?? ''
        }`
      : undefined;
  const containers = statsError ? [] : parseDockerStats(stats);
  const lines = stats.split('\n').filter((l) => l.trim().startsWith('{')).length;
  const noFigures = !statsError && lines > 0 && containers.length === 0;
  return {
    cpus,
    memTotalMiB: total,
    memAvailableMiB: mem('MemAvailable'),
    containers,
    statsError: noFigures ? `docker stats gave no figures for its ${lines} container(s) ("--" or "0B / 0B")` : statsError,
  };
}

/** The site a swarm task's container belongs to: "wp-blog_nginx.1.x8k2" → "blog" (stacks are wp-<id>). */
export function siteOfContainer(name: string, stackOf: (id: string) => string, siteIds: readonly string[]): string | undefined {
  const i = name.indexOf('_');
  if (i <= 0) return undefined;
  const stack = name.slice(0, i);
  return siteIds.find((id) => stackOf(id) === stack);
}
