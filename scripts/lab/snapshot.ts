// What the lab may change on the host, captured before lab-up and compared after lab-down:
// docker containers, networks and volumes, iptables/ip6tables rules, the FORWARD policy, network links.
import { BRIDGE, CONTAINER_PREFIX, LABEL_FILTER, NETWORK, PROFILE, PROFILES, SUBNET } from './config.ts';
import { forwardPolicy } from './docker.ts';
import { tryOut } from './util.ts';

export interface HostSnapshot {
  at: string;
  containers: string[];
  networks: string[];
  volumes: string[];
  iptables: string[];
  ip6tables: string[];
  forwardPolicy: string;
  links: string[];
}

const lines = (s: string | undefined): string[] =>
  (s ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

/** iptables-save without comments, counters and the FORWARD policy (compared on its own). */
export function normalizeRules(text: string | undefined): string[] {
  return lines(text)
    .filter((l) => !l.startsWith('#') && !/^:FORWARD /.test(l))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, '').replace(/^\[\d+:\d+\] /, ''));
}

const subnetPrefix = SUBNET.split('/')[0]!.replace(/\.0$/, '.');

/** A rule, link or object that belongs to the lab (used to keep lab leftovers out of a "before"). */
export function isLabThing(s: string): boolean {
  return s.includes(BRIDGE) || s.includes(subnetPrefix) || s.includes(CONTAINER_PREFIX) || new RegExp(`\\b${NETWORK}\\b`).test(s);
}

const otherProfiles = Object.values(PROFILES).filter((p) => p.name !== PROFILE.name);

/**
 * A rule, link or object of the OTHER lab profile (the user's lab beside the test lab, or the other way round):
 * its bridge, subnet, containers or network. That lab may change while this one runs (its owner uses it); this
 * lab's snapshots leave it out of their comparison (test/lab/99-lab-down.test.ts checks it is untouched).
 */
export function isOtherLabThing(s: string): boolean {
  return otherProfiles.some(
    (p) => s.includes(p.bridge) || s.includes(`${p.net}.`) || s.includes(p.containerPrefix) || new RegExp(`\\b${p.network}\\b`).test(s),
  );
}

async function labIds(kind: 'ps -a' | 'network ls' | 'volume ls'): Promise<Set<string>> {
  const args = kind.split(' ');
  const fmt = kind === 'volume ls' ? '{{.Name}}' : '{{.ID}}';
  return new Set(lines(await tryOut`docker ${args} --filter ${LABEL_FILTER} --format ${fmt}`));
}

/**
 * The host's current state. With `excludeLab`, objects labelled wpfarm.lab=1 and rules or links naming the
 * lab's bridge/subnet are left out: a "before" taken over leftovers of an earlier lab is still the clean state.
 */
export async function takeSnapshot(opts: { excludeLab?: boolean; forwardPolicy?: string } = {}): Promise<HostSnapshot> {
  const ex = opts.excludeLab ?? false;
  const [cIds, nIds, vIds] = ex
    ? await Promise.all([labIds('ps -a'), labIds('network ls'), labIds('volume ls')])
    : [new Set<string>(), new Set<string>(), new Set<string>()];
  const containers = lines(await tryOut`docker ps -a --no-trunc --format ${'{{.ID}} {{.Names}}'}`).filter(
    (l) => !cIds.has(l.split(' ')[0]!.slice(0, 12)) && !cIds.has(l.split(' ')[0]!),
  );
  const networks = lines(await tryOut`docker network ls --no-trunc --format ${'{{.ID}} {{.Name}}'}`).filter(
    (l) => !nIds.has(l.split(' ')[0]!.slice(0, 12)) && !nIds.has(l.split(' ')[0]!),
  );
  const volumes = lines(await tryOut`docker volume ls --format ${'{{.Name}}'}`).filter((v) => !vIds.has(v));
  const keep = (l: string): boolean => !ex || !isLabThing(l);
  const iptables = normalizeRules(await tryOut`iptables-save`).filter(keep);
  const ip6tables = normalizeRules(await tryOut`ip6tables-save`).filter(keep);
  // links: name and master; veths of lab containers are attached to the lab bridge
  const links = lines(await tryOut`ip -o link show`)
    .map((l) => {
      const m = l.match(/^\d+:\s+([^:@]+)(?:@[^:]+)?:.*?(?:master (\S+))?\s/);
      const name = m?.[1] ?? l;
      const master = l.match(/ master (\S+)/)?.[1];
      return master ? `${name} master ${master}` : name;
    })
    .filter(keep)
    .sort();
  return {
    at: new Date().toISOString(),
    containers: containers.map((c) => c.split(' ')[1] ?? c).sort(),
    networks: networks.map((n) => n.split(' ')[1] ?? n).sort(),
    volumes: volumes.sort(),
    iptables,
    ip6tables,
    forwardPolicy: opts.forwardPolicy ?? (await forwardPolicy()) ?? 'unknown',
    links,
  };
}

export interface SnapshotDiff {
  field: keyof HostSnapshot;
  added: string[];
  removed: string[];
}

function multisetDiff(a: string[], b: string[]): { added: string[]; removed: string[] } {
  const count = new Map<string, number>();
  for (const x of a) count.set(x, (count.get(x) ?? 0) + 1);
  const added: string[] = [];
  for (const x of b) {
    const n = count.get(x) ?? 0;
    if (n > 0) count.set(x, n - 1);
    else added.push(x);
  }
  const removed: string[] = [];
  for (const [x, n] of count) for (let i = 0; i < n; i++) removed.push(x);
  return { added, removed };
}

/** Differences from `before` to `after` (empty when the host is as it was), the other lab's objects left out. */
export function compareSnapshots(before: HostSnapshot, after: HostSnapshot): SnapshotDiff[] {
  const out: SnapshotDiff[] = [];
  const mine = (xs: string[]): string[] => xs.filter((x) => !isOtherLabThing(x));
  for (const field of ['containers', 'networks', 'volumes', 'iptables', 'ip6tables', 'links'] as const) {
    const d = multisetDiff(mine(before[field]), mine(after[field]));
    if (d.added.length || d.removed.length) out.push({ field, ...d });
  }
  if (before.forwardPolicy !== after.forwardPolicy) {
    out.push({ field: 'forwardPolicy', added: [after.forwardPolicy], removed: [before.forwardPolicy] });
  }
  return out;
}

/** One line per difference; those that do not name the lab are marked (something else changed the host). */
export function formatDiff(diffs: SnapshotDiff[]): string {
  const mark = (x: string): string => (isLabThing(x) ? x : `${x}   (not the lab's)`);
  return diffs
    .map((d) => [`${d.field}:`, ...d.added.map((x) => `  + ${mark(x)}`), ...d.removed.map((x) => `  - ${mark(x)}`)].join('\n'))
    .join('\n');
}
