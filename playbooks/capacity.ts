// Capacity planning:  node --import tsx playbooks/capacity.ts [--target-sites N] [--size SLUG] [--format json]
// Reads the inventory (node sizes), the site records and, unless --no-measure, what every site node measures
// (one round trip each: nproc, /proc/meminfo, docker stats); prints sites per node, headroom, the nodes a target
// number of sites needs and their monthly cost from the price table, saying which figures were measured and
// which assumed (the seed's figures when nothing is measured). Read-only: never takes the deploy lock.
// docs/capacity.md.
import { type CommandSpec, fail, parseOrExit } from '../lib/cli.ts';
import { Run } from '../lib/play.ts';
import { exitCodeFor } from '../lib/runner.ts';
import { DEFAULT_RESERVE_PCT, type NodeInput, plan } from '../roles/capacity/model.ts';
import { DEFAULT_PRICES_FILE, loadPriceTable } from '../roles/capacity/prices.ts';
import { renderText } from '../roles/capacity/render.ts';
import { capacityProbe, cloudGroupSizes, sizeOfHost } from '../roles/capacity/role.ts';
import { SITES_DIR_OPTION } from '../roles/wp-site/playbook-util.ts';
import { readSites } from '../roles/wp-site/reconcile.ts';

const CMD: CommandSpec = {
  name: 'capacity.ts',
  summary: `Capacity planning: sites per node, CPU and memory headroom per node, the nodes needed for --target-sites and
their monthly cost (price table), as a table and bars or JSON. Measures each site node in one round trip (nproc,
/proc/meminfo, docker stats) unless --no-measure; what is not measured is assumed from the seed's figures
(500 MiB and 300 mCPU per site) and said so. Node sizes: var droplet_size, or the node's group in a cloud: section.`,
  options: [
    { name: 'target-sites', type: 'integer', arg: 'N', min: 1, max: 1_000_000, help: 'plan the nodes for N sites' },
    {
      name: 'size',
      type: 'string',
      arg: 'SLUG',
      defaultHelp: 'the most common size of the nodes, else s-8vcpu-16gb',
      help: 'node size to plan with',
    },
    { name: 'nodes', type: 'string', arg: 'PATTERN', default: 'managers,workers', help: 'the nodes that carry sites (a host pattern)' },
    { ...SITES_DIR_OPTION, default: undefined, defaultHelp: 'vars.wp_sites_dir, else inventory/sites' },
    { name: 'prices', type: 'string', arg: 'FILE', default: DEFAULT_PRICES_FILE, help: 'price table of node sizes' },
    {
      name: 'reserve',
      type: 'integer',
      arg: 'PCT',
      min: 0,
      max: 90,
      default: DEFAULT_RESERVE_PCT,
      help: "percent of each node's CPU and memory kept back",
    },
    { name: 'mem-per-site', type: 'integer', arg: 'MiB', min: 1, max: 1_048_576, help: 'memory per site (instead of measured or assumed)' },
    {
      name: 'cpu-per-site',
      type: 'integer',
      arg: 'mCPU',
      min: 1,
      max: 1_000_000,
      help: 'CPU per site in millicores (instead of measured or assumed)',
    },
    { name: 'no-measure', type: 'boolean', help: 'do not connect: sizes from the inventory, usage assumed' },
    { name: 'format', type: 'string', arg: 'F', choices: ['table', 'json'], default: 'table', help: 'output format' },
  ],
  common: ['inventory', 'limit', 'forks', 'connect-timeout', 'accept-new-host-keys', 'extra-vars', 'verbose'],
  epilog: 'Exit codes: 0 ok, 2 a node failed to answer, 3 a node unreachable (the report is printed, its figures assumed), 4 bad input.',
};

const parsed = parseOrExit(process.argv.slice(2), CMD);
const o = parsed.opts as {
  'target-sites'?: number;
  size?: string;
  nodes: string;
  'sites-dir'?: string;
  prices: string;
  reserve: number;
  'mem-per-site'?: number;
  'cpu-per-site'?: number;
  'no-measure': boolean;
  format: 'table' | 'json';
};
const json = o.format === 'json';
let run: Run;
try {
  // --format json: the report alone on stdout (no progress, no recap); a node's failure goes to stderr
  // JSON alone on stdout: the console listener is replaced by one that prints nothing (the run log keeps every event)
  const reporter = json ? () => {} : undefined;
  run = new Run({ ...parsed, name: 'capacity', lock: false, reporter }).installSignals();
} catch (e) {
  fail(e);
}
try {
  const prices = loadPriceTable(o.prices);
  const inv = run.inventory;
  const v = inv.vars;
  const sites = readSites({
    sitesDir: o['sites-dir'] ?? (typeof v.wp_sites_dir === 'string' && v.wp_sites_dir ? v.wp_sites_dir : 'inventory/sites'),
    managementCidrs: Array.isArray(v.management_cidrs) ? v.management_cidrs.map(String) : undefined,
    only: [],
  });
  const siteIds = sites.map((s) => s.id);
  const hosts = run.hostsFor(o.nodes);
  const groupSizes = cloudGroupSizes(inv.files);
  const probes = new Map<string, NonNullable<NodeInput['probe']>>();
  if (!o['no-measure'] && hosts.length) {
    await run.role(capacityProbe(o.nodes, siteIds, probes));
    if (json)
      for (const r of run.results.filter((x) => x.status === 'failed' || x.status === 'unreachable'))
        process.stderr.write(`${r.host}: ${r.status}: ${r.error ?? ''}\n`);
  }
  const nodes: NodeInput[] = hosts.map((h) => ({
    name: h.name,
    size: sizeOfHost(h, groupSizes),
    probe: probes.get(h.name),
    unmeasured: o['no-measure'] || probes.has(h.name) ? undefined : 'no answer (see above)',
  }));
  const p = plan({
    nodes,
    siteIds,
    prices,
    reservePct: o.reserve,
    given: { memMiB: o['mem-per-site'], cpuMilli: o['cpu-per-site'] },
    targetSites: o['target-sites'],
    planSize: o.size,
  });
  process.stdout.write(json ? `${JSON.stringify(p, null, 1)}\n` : `\n${renderText(p)}`);
} catch (e) {
  await run.pool.closeAll().catch(() => undefined);
  fail(e);
}
if (json || o['no-measure']) {
  // the report alone on stdout (no recap: nothing ran, or JSON)
  await run.pool.closeAll();
  process.exit(exitCodeFor(run.hostState.values(), run.signal.interrupted));
}
await run.exit();
