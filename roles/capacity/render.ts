// The plan as text: a table per node, bars of each node's memory and CPU, the target, and which figures were
// measured and which assumed. Pure (strings in, strings out); the JSON form is the Plan itself.
import type { NodeRow, Plan } from './model.ts';

export const BAR_WIDTH = 30;

const gib = (mib: number): string => (Math.abs(mib) >= 1024 ? `${(mib / 1024).toFixed(1)}G` : `${Math.round(mib)}M`);
/** millicores: cores when 1 or more ("5.7"), else "300m" */
const milli = (m: number): string => (Math.abs(m) >= 1000 ? `${Math.round(m / 10) / 100}` : `${Math.round(m)}m`);
export const money = (n: number, cur: string): string => `${Number.isInteger(n) ? n : n.toFixed(2)} ${cur}`;

function table(head: string[], body: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), ...body.map(line)].join('\n');
}

/**
 * One bar: `parts` (value, character) laid end to end over `total`, the rest ' '. Each part gets its rounded
 * share, at least one cell when it is not zero, so a small but present part is seen.
 */
export function bar(total: number, parts: ReadonlyArray<readonly [number, string]>, width = BAR_WIDTH): string {
  if (!(total > 0)) return `[${'?'.repeat(width)}]`;
  let out = '';
  for (const [v, ch] of parts) {
    if (!(v > 0)) continue;
    const cells = Math.max(1, Math.round((v / total) * width));
    out += ch.repeat(Math.min(cells, width - out.length));
  }
  return `[${out.padEnd(width, '.')}]`;
}

function nodeBars(r: NodeRow, reservePct: number, nameW: number): string[] {
  if (!r.capacity) return [`${r.name.padEnd(nameW)}  capacity unknown`];
  const lines: string[] = [];
  for (const [label, cap, used, other, fmt] of [
    ['mem', r.capacity.memMiB, r.used.memMiB, r.other.memMiB, gib],
    ['cpu', r.capacity.cpuMilli, r.used.cpuMilli, r.other.cpuMilli, milli],
  ] as const) {
    const reserve = (cap * reservePct) / 100;
    const pct = Math.round(((used + other) / cap) * 100);
    const b = bar(cap, [
      [used, '#'],
      [other, '+'],
    ]);
    // the reserve is the bar's end: marked over the free cells that fall in it
    const start = BAR_WIDTH - Math.round((reserve / cap) * BAR_WIDTH);
    const cells = [...b.slice(1, -1)].map((c, i) => (i >= start && c === '.' ? '~' : c)).join('');
    lines.push(
      `${(label === 'mem' ? r.name : '').padEnd(nameW)}  ${label} [${cells}] ${String(pct).padStart(3)}% of ${fmt(cap)}` +
        (label === 'cpu' ? ' CPUs' : ''),
    );
  }
  return lines;
}

/** The text report. */
export function renderText(p: Plan): string {
  const cur = p.currency;
  const out: string[] = [];
  const ps = p.perSite;
  out.push(
    `${p.sites} site(s), ${p.nodes.length} node(s); per site ${ps.memMiB.value} MiB (${ps.memMiB.source}: ${ps.memMiB.how}), ` +
      `${ps.cpuMilli.value} mCPU (${ps.cpuMilli.source}: ${ps.cpuMilli.how}); reserve ${p.reservePct}% of each node`,
    '',
  );
  const head = ['NODE', 'SIZE', 'CPUS', 'MEMORY', 'FROM', 'SITES', 'FROM', 'FITS', 'CPU LEFT', 'MEM LEFT', '+SITES', `${cur}/MONTH`];
  const body = p.nodes.map((r) => [
    r.name,
    r.size ?? '-',
    r.capacity ? milli(r.capacity.cpuMilli) : '?',
    r.capacity ? gib(r.capacity.memMiB) : '?',
    r.capacity?.source ?? '-',
    String(r.sites),
    r.sitesSource,
    r.fits === null ? '?' : String(r.fits),
    r.headroom ? milli(r.headroom.cpuMilli) : '?',
    r.headroom ? gib(r.headroom.memMiB) : '?',
    r.headroom ? `${r.headroom.sites}${r.headroom.sites === 0 ? ` (${r.headroom.limitedBy})` : ''}` : '?',
    r.priceMonthly === undefined ? '?' : money(r.priceMonthly, '').trim(),
  ]);
  body.push([
    'total',
    '',
    '',
    '',
    '',
    String(Math.round(p.nodes.reduce((a, r) => a + r.sites, 0) * 10) / 10),
    '',
    String(p.totals.fits),
    '',
    '',
    String(p.totals.headroomSites),
    p.totals.unpricedNodes.length === p.nodes.length
      ? '?'
      : `${money(p.totals.costMonthly, '').trim()}${p.totals.unpricedNodes.length ? '+?' : ''}`,
  ]);
  out.push(table(head, body), '');
  out.push(`usage per node (# sites, + other containers, . free, ~ free but reserved):`);
  const nameW = Math.max(...p.nodes.map((r) => r.name.length));
  for (const r of p.nodes) out.push(...nodeBars(r, p.reservePct, nameW));
  out.push('');
  const t = p.target;
  if (t) {
    out.push(
      `target ${t.sites} site(s): ${t.nodes} x ${t.size} (${t.sitesPerNode} sites each, bound by ${t.limitedBy}; size ${t.sizeSource}) ` +
        `= ${money(t.costMonthly, cur)}/month; with one spare node ${t.nodesWithSpare} = ${money(t.costMonthlyWithSpare, cur)}/month`,
      t.additionalNodes
        ? `  beyond what the current nodes hold (${p.totals.fits} sites): ${t.additionalNodes} more ${t.size} ` +
            `= +${money(t.additionalCostMonthly, cur)}/month`
        : `  the current nodes hold it (${p.totals.fits} sites fit)`,
      '',
    );
  }
  const measured = [
    ps.memMiB.source === 'measured' || ps.cpuMilli.source === 'measured' ? `per-site usage (${p.measuredSites} site(s))` : '',
    p.nodes.some((r) => r.capacity?.source === 'measured') ? 'node CPUs and memory (nproc, /proc/meminfo)' : '',
    p.nodes.some((r) => r.sitesSource === 'measured') ? 'sites and containers per node (docker stats)' : '',
  ].filter(Boolean);
  const assumed = [
    ps.memMiB.source === 'assumed' ? `${ps.memMiB.value} MiB per site` : '',
    ps.cpuMilli.source === 'assumed' ? `${ps.cpuMilli.value} mCPU per site (peak ${ps.cpuPeakMilli})` : '',
    p.nodes.some((r) => r.sitesSource === 'assumed') ? 'sites spread evenly over the nodes not measured' : '',
    p.nodes.some((r) => r.capacity?.source === 'size') ? 'node size from its slug in the price table' : '',
    `${p.reservePct}% reserve per node`,
    `prices: ${p.prices.file} (${p.prices.source}, ${p.prices.asOf})`,
  ].filter(Boolean);
  out.push(`measured: ${measured.length ? measured.join('; ') : 'nothing'}`);
  out.push(`assumed:  ${assumed.join('; ')}`);
  const notes = p.nodes.flatMap((r) => r.notes.map((n) => `  ${r.name}: ${n}`));
  if (notes.length) out.push('notes:', ...notes);
  return `${out.join('\n')}\n`;
}
