// Capacity planning, pure: from the nodes (their size, and what a probe measured on them), the site records and
// the price table, compute sites per node, headroom, the nodes a target number of sites needs and what they
// cost. Every figure carries where it came from: measured (docker stats, nproc, /proc/meminfo), the size's
// table entry, given on the command line, or assumed (the seed's figures, below).
import { InputError } from '../../lib/errors.ts';
import type { NodeSize, PriceTable } from './prices.ts';

/**
 * The seed's figures, used when nothing is measured: ~500 MB and 300–650 mCPU per site (300 sustained, 650 at
 * peak), 20–25 sites per 16 GB node. With a quarter of each node kept back for the OS, dockerd and the node's
 * agents, a s-8vcpu-16gb node fits min(12288 MiB / 500, 6000 m / 300) = min(24, 20) = 20 sites: inside that range.
 */
export const SEED = Object.freeze({ memMiB: 500, cpuMilli: 300, cpuPeakMilli: 650, sitesPer16GbNode: [20, 25] as const });
export const DEFAULT_RESERVE_PCT = 25;
/** the size planned with when neither --size nor the fleet says one */
export const DEFAULT_PLAN_SIZE = 's-8vcpu-16gb';

export type Source = 'measured' | 'assumed' | 'given' | 'size';

export interface Usage {
  memMiB: number;
  cpuMilli: number;
}

export interface NodeInput {
  name: string;
  /** its size slug, from the inventory (var droplet_size, or its `cloud:` group) */
  size?: string;
  /** what the probe measured; absent when not measured */
  probe?: {
    cpus: number;
    memTotalMiB: number;
    /** the site containers on the node, summed by site id */
    sites: Record<string, Usage>;
    /** every other container on the node (monitoring, edge...), summed */
    other: Usage;
    /** docker stats gave nothing: why (the node's size is still measured) */
    statsError?: string;
  };
  /** why it was not measured (--no-measure, unreachable...) */
  unmeasured?: string;
}

export interface PlanInput {
  nodes: readonly NodeInput[];
  /** every site record's id */
  siteIds: readonly string[];
  prices: PriceTable;
  /** percent of each node's CPU and memory kept back (0–90) */
  reservePct: number;
  /** per-site figures given on the command line (win over measured and assumed) */
  given?: Partial<Usage>;
  targetSites?: number;
  /** the size to plan new nodes with (--size) */
  planSize?: string;
}

export interface Figure {
  value: number;
  source: Source;
  /** how it was obtained, for the output ("mean of 11 sites", "seed figure") */
  how: string;
}

export interface NodeRow {
  name: string;
  size?: string;
  capacity?: Usage & { source: 'measured' | 'size' };
  /** sites with a container on the node (measured), or an even share of the others (assumed) */
  sites: number;
  sitesSource: 'measured' | 'assumed';
  /** what the sites use on the node */
  used: Usage & { source: 'measured' | 'assumed' };
  /** other containers (measured only) */
  other: Usage;
  /** sites the node holds in total after the reserve (null: capacity unknown) */
  fits: number | null;
  /** what is left after the reserve, other containers and the sites (null: capacity unknown) */
  headroom: (Usage & { sites: number; limitedBy: 'memory' | 'cpu' }) | null;
  priceMonthly?: number;
  notes: string[];
}

export interface TargetPlan {
  sites: number;
  size: string;
  sizeSource: 'given' | 'fleet' | 'default';
  sitesPerNode: number;
  limitedBy: 'memory' | 'cpu';
  nodes: number;
  nodesWithSpare: number;
  costMonthly: number;
  costMonthlyWithSpare: number;
  /** on top of the nodes there are now: what the current fleet does not already hold */
  additionalNodes: number;
  additionalCostMonthly: number;
}

export interface Plan {
  perSite: { memMiB: Figure; cpuMilli: Figure; cpuPeakMilli: number };
  reservePct: number;
  sites: number;
  measuredSites: number;
  nodes: NodeRow[];
  totals: { fits: number; headroomSites: number; costMonthly: number; unpricedNodes: string[] };
  target?: TargetPlan;
  currency: string;
  prices: { file: string; source: string; asOf: string };
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

/** Sites of `per` that fit in `room`; the resource that binds. 0 when nothing fits, never negative. */
export function sitesThatFit(room: Usage, per: Usage): { sites: number; limitedBy: 'memory' | 'cpu' } {
  const byMem = per.memMiB > 0 ? room.memMiB / per.memMiB : Infinity;
  const byCpu = per.cpuMilli > 0 ? room.cpuMilli / per.cpuMilli : Infinity;
  const n = Math.min(byMem, byCpu);
  // 1e-9: 12288 / 512 must give 24, not 23.999999
  return { sites: Number.isFinite(n) ? Math.max(0, Math.floor(n + 1e-9)) : 0, limitedBy: byMem <= byCpu ? 'memory' : 'cpu' };
}

/** What a node keeps for sites: its capacity less the reserve. */
export function usable(cap: Usage, reservePct: number): Usage {
  const k = 1 - reservePct / 100;
  return { memMiB: cap.memMiB * k, cpuMilli: cap.cpuMilli * k };
}

export function sizeCapacity(s: NodeSize): Usage {
  return { memMiB: s.memoryMiB, cpuMilli: s.vcpus * 1000 };
}

function perSiteFigures(input: PlanInput): { mem: Figure; cpu: Figure; measured: Map<string, Usage> } {
  const measured = new Map<string, Usage>();
  for (const n of input.nodes)
    for (const [id, u] of Object.entries(n.probe?.sites ?? {})) {
      const m = measured.get(id) ?? { memMiB: 0, cpuMilli: 0 };
      measured.set(id, { memMiB: m.memMiB + u.memMiB, cpuMilli: m.cpuMilli + u.cpuMilli });
    }
  const k = measured.size;
  const mean = (f: (u: Usage) => number): number => [...measured.values()].reduce((a, u) => a + f(u), 0) / k;
  const fig = (given: number | undefined, f: (u: Usage) => number, seed: number): Figure =>
    given !== undefined
      ? { value: given, source: 'given', how: 'given on the command line' }
      : k > 0
        ? { value: round1(mean(f)), source: 'measured', how: `mean of ${k} site(s), docker stats` }
        : { value: seed, source: 'assumed', how: 'seed figure (nothing measured)' };
  return {
    mem: fig(input.given?.memMiB, (u) => u.memMiB, SEED.memMiB),
    cpu: fig(input.given?.cpuMilli, (u) => u.cpuMilli, SEED.cpuMilli),
    measured,
  };
}

/** The plan. InputError when --size is not in the price table. */
export function plan(input: PlanInput): Plan {
  if (!(input.reservePct >= 0 && input.reservePct <= 90)) throw new InputError(`--reserve must be from 0 to 90, got ${input.reservePct}`);
  const { mem, cpu, measured } = perSiteFigures(input);
  const per: Usage = { memMiB: mem.value, cpuMilli: cpu.value };
  const measuredNodes = input.nodes.filter((n) => n.probe && !n.probe.statsError);
  const unmeasuredNodes = input.nodes.filter((n) => !(n.probe && !n.probe.statsError));
  // sites nobody saw run (not deployed, or on a node that was not measured): an even share on each unmeasured node
  const unseen = input.siteIds.filter((id) => !measured.has(id)).length;
  const share = unmeasuredNodes.length ? unseen / unmeasuredNodes.length : 0;

  const rows: NodeRow[] = input.nodes.map((n) => {
    const notes: string[] = [];
    const priced = n.size ? input.prices.sizes.get(n.size) : undefined;
    if (n.size && !priced) notes.push(`size ${n.size} is not in ${input.prices.file}`);
    if (n.unmeasured) notes.push(`not measured: ${n.unmeasured}`);
    if (n.probe?.statsError) notes.push(`no container figures: ${n.probe.statsError}`);
    const capacity: NodeRow['capacity'] = n.probe
      ? { memMiB: n.probe.memTotalMiB, cpuMilli: n.probe.cpus * 1000, source: 'measured' }
      : priced
        ? { ...sizeCapacity(priced), source: 'size' }
        : undefined;
    if (!capacity) notes.push('capacity unknown: no size for this node (var droplet_size or a cloud: group) and not measured');
    const seen = measuredNodes.includes(n);
    const siteUse = Object.values(n.probe?.sites ?? {});
    const sites = seen ? siteUse.length : share;
    const used = seen
      ? {
          memMiB: siteUse.reduce((a, u) => a + u.memMiB, 0),
          cpuMilli: siteUse.reduce((a, u) => a + u.cpuMilli, 0),
          source: 'measured' as const,
        }
      : { memMiB: share * per.memMiB, cpuMilli: share * per.cpuMilli, source: 'assumed' as const };
    const other = seen ? n.probe!.other : { memMiB: 0, cpuMilli: 0 };
    let fits: number | null = null;
    let headroom: NodeRow['headroom'] = null;
    if (capacity) {
      const u = usable(capacity, input.reservePct);
      const forSites = { memMiB: u.memMiB - other.memMiB, cpuMilli: u.cpuMilli - other.cpuMilli };
      fits = sitesThatFit(forSites, per).sites;
      const room = { memMiB: forSites.memMiB - used.memMiB, cpuMilli: forSites.cpuMilli - used.cpuMilli };
      const more = sitesThatFit(room, per);
      headroom = { memMiB: Math.round(room.memMiB), cpuMilli: Math.round(room.cpuMilli), sites: more.sites, limitedBy: more.limitedBy };
    }
    return {
      name: n.name,
      size: n.size,
      capacity: capacity && { ...capacity, memMiB: Math.round(capacity.memMiB) },
      sites: round1(sites),
      sitesSource: seen ? 'measured' : 'assumed',
      used: { ...used, memMiB: Math.round(used.memMiB), cpuMilli: Math.round(used.cpuMilli) },
      other: { memMiB: Math.round(other.memMiB), cpuMilli: Math.round(other.cpuMilli) },
      fits,
      headroom,
      priceMonthly: priced?.priceMonthly,
      notes,
    };
  });

  const totals = {
    fits: rows.reduce((a, r) => a + (r.fits ?? 0), 0),
    headroomSites: rows.reduce((a, r) => a + (r.headroom?.sites ?? 0), 0),
    costMonthly: rows.reduce((a, r) => a + (r.priceMonthly ?? 0), 0),
    unpricedNodes: rows.filter((r) => r.priceMonthly === undefined).map((r) => r.name),
  };

  let target: TargetPlan | undefined;
  if (input.targetSites !== undefined) target = targetPlan(input, per, totals.fits);

  return {
    perSite: { memMiB: mem, cpuMilli: cpu, cpuPeakMilli: Math.max(SEED.cpuPeakMilli, cpu.value) },
    reservePct: input.reservePct,
    sites: input.siteIds.length,
    measuredSites: measured.size,
    nodes: rows,
    totals,
    target,
    currency: input.prices.currency,
    prices: { file: input.prices.file, source: input.prices.source, asOf: input.prices.asOf },
  };
}

/** The most common size among the nodes that the table knows; ties: the larger memory. */
export function fleetSize(nodes: readonly NodeInput[], prices: PriceTable): string | undefined {
  const count = new Map<string, number>();
  for (const n of nodes) if (n.size && prices.sizes.has(n.size)) count.set(n.size, (count.get(n.size) ?? 0) + 1);
  return [...count.entries()].sort(
    (a, b) => b[1] - a[1] || prices.sizes.get(b[0])!.memoryMiB - prices.sizes.get(a[0])!.memoryMiB || (a[0] < b[0] ? -1 : 1),
  )[0]?.[0];
}

function targetPlan(input: PlanInput, per: Usage, fleetFits: number): TargetPlan {
  const fleet = fleetSize(input.nodes, input.prices);
  const slug = input.planSize ?? fleet ?? DEFAULT_PLAN_SIZE;
  const size = input.prices.sizes.get(slug);
  if (!size)
    throw new InputError(
      `--size ${slug} is not in the price table ${input.prices.file} (sizes: ${[...input.prices.sizes.keys()].join(', ')})`,
    );
  const fit = sitesThatFit(usable(sizeCapacity(size), input.reservePct), per);
  if (fit.sites === 0)
    throw new InputError(
      `not one site (${per.memMiB} MiB, ${per.cpuMilli} mCPU) fits a ${slug} node after its ${input.reservePct}% reserve: ` +
        'plan with a larger --size',
    );
  const target = input.targetSites ?? 0;
  const nodes = Math.ceil(target / fit.sites);
  const missing = Math.max(0, target - fleetFits);
  const additional = Math.ceil(missing / fit.sites);
  return {
    sites: target,
    size: slug,
    sizeSource: input.planSize ? 'given' : fleet ? 'fleet' : 'default',
    sitesPerNode: fit.sites,
    limitedBy: fit.limitedBy,
    nodes,
    nodesWithSpare: nodes + 1,
    costMonthly: nodes * size.priceMonthly,
    costMonthlyWithSpare: (nodes + 1) * size.priceMonthly,
    additionalNodes: additional,
    additionalCostMonthly: additional * size.priceMonthly,
  };
}
