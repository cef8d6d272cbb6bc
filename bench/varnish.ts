// Bench (issue 15 item 2): the latency of a site's anonymous GETs with and without Varnish, on the lab.
//   node --import tsx bench/varnish.ts [--record]              (the test lab: WPFARM_LAB=test, set by the harness)
// Needs the test lab up with phase 1 (test/lab/00, 20): galera, gluster and phase 3's images are converged first.
// A new site (add-site), its record turned to `cache: { varnish: true }`, the wp-site role redeploys it. Then from
// inside the site's network (its nginx container, as lab 64 does), BENCH_VARNISH_N (200) GETs of the home page
// one after the other, each way, after a warm-up:
//   - with Varnish: to a varnish task (:6081), which answers from its cache;
//   - without: to the site's nginx (:8080), which passes every request to php-fpm (with Varnish on, nginx's own
//     cache TTL is 0: this is the site as it is without the tier).
// Prints p50/p90 of curl's time_total for each and the X-Cache hit count; --record writes the row into
// bench/results/latest.json (scenario "varnish") and bench/README.md. The site is removed afterwards.
import { appendFileSync, existsSync, mkdtempSync, rmSync, } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { cli as labCli, convergeSitePrerequisites, inService, nodesOf, ssh } from '../test/harness/lab-sites.ts';
import { median, recordScenario } from './util.ts';

const N = Number(process.env.BENCH_VARNISH_N ?? 200);
const stamp = Date.now().toString(36).slice(-5);
const S = { domain: `vb${stamp}.lab.test`, id: `vb${stamp}-lab-test` };
const stack = `wp-${S.id}`;
const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-bench-varnish-'));
const sitesDir = path.join(work, 'sites');
const cli = (script: string, args: string[]) => labCli(work, script, args, 30 * 60_000);
const load1 = (): number => +loadavg()[0]!.toFixed(2);

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
};

/** N sequential GETs of `url` from the nginx container: [time_total ms, X-Cache] per request. */
async function timed(nginxNode: string, url: string): Promise<{ ms: number[]; hits: number; codes: string[] }> {
  const loop =
    `for i in $(seq ${N}); do curl -sS -o /dev/null -D /tmp/h -w '%{http_code} %{time_total}' -H 'Host: ${S.domain}' "$1"; ` +
    `printf ' %s\\n' "$(tr -d '\\r' </tmp/h | sed -n 's/^X-Cache: //p')"; done`;
  const out = await inService(nginxNode, `${stack}_nginx`, ['sh', '-c', loop, 'loop', url]);
  const rows = out
    .split('\n')
    .filter(Boolean)
    .map((l) => l.trim().split(/\s+/));
  return {
    ms: rows.map((r) => Number(r[1]) * 1000),
    hits: rows.filter((r) => r[2] === 'HIT').length,
    codes: [...new Set(rows.map((r) => r[0]!))],
  };
}

function record(row: Record<string, unknown>): void {
  const v = (k: string): string => String(row[k]);
  const text = [
    `Measured ${v('at')} on the test lab by \`node --import tsx bench/varnish.ts --record\`: ${v('requests')} anonymous GETs`,
    "of a new site's home page, one after the other, from inside the site's network, each way after a warm-up.",
    'The machine is shared (2 cores): load average (1 min) ' + `${v('load_start')} at the start, ${v('load_end')} at the end.`,
    '',
    '| path | p50 ms | p90 ms | X-Cache HIT |',
    '|---|---:|---:|---:|',
    `| Varnish (:6081, cached) | ${v('varnish_p50_ms')} | ${v('varnish_p90_ms')} | ${v('varnish_hits')}/${v('requests')} |`,
    `| nginx → php-fpm (:8080, no cache) | ${v('nginx_p50_ms')} | ${v('nginx_p90_ms')} | — |`,
    '',
    `p50 without / with Varnish: **${v('speedup_p50')}x**.`,
  ].join('\n');
  recordScenario('varnish', row, text, 'Varnish (cache tier 2) on the lab');
}

async function main(): Promise<void> {
  const loadStart = load1();
  await convergeSitePrerequisites(work);
  const add = await cli('playbooks/add-site.ts', ['--domain', S.domain, '--sites-dir', sitesDir]);
  if (add.code !== 0) throw new Error(`add-site failed:\n${add.out.slice(-3000)}`);
  appendFileSync(path.join(sitesDir, `${S.id}.yml`), 'cache: { varnish: true }\n');
  const on = await cli('playbooks/run-role.ts', ['wp-site', '-e', `wp_sites_dir=${sitesDir}`]);
  if (on.code !== 0) throw new Error(`wp-site with Varnish failed:\n${on.out.slice(-3000)}`);
  for (let i = 0; i < 90; i++) {
    const v = await ssh('mgr1', `docker service ls --filter name=${stack}_ --format '{{.Name}} {{.Replicas}}'`);
    if (/_varnish 2\/2/.test(v) && /_nginx 2\/2/.test(v)) break;
    await new Promise((res) => setTimeout(res, 2000));
  }
  const nginxNode = (await nodesOf(`${stack}_nginx`))[0]!;
  const varnishAddr = (
    await inService(nginxNode, `${stack}_nginx`, [
      'sh',
      '-c',
      `getent ahostsv4 tasks.${stack}_varnish | awk '{print $1}' | sort -u | head -n1`,
    ])
  ).trim();
  const viaVarnish = `http://${varnishAddr}:6081/`;
  const direct = 'http://127.0.0.1:8080/';
  for (const u of [viaVarnish, direct]) await timed(nginxNode, u); // warm-up (OPcache, Varnish's cache)
  const withV = await timed(nginxNode, viaVarnish);
  const without = await timed(nginxNode, direct);
  if (withV.codes.join() !== '200' || without.codes.join() !== '200')
    throw new Error(`not every request answered 200: Varnish ${withV.codes.join(',')}, nginx ${without.codes.join(',')}`);
  const r1 = (x: number): number => +x.toFixed(1);
  const row = {
    tool: 'wpfarm',
    scenario: 'varnish',
    requests: N,
    varnish_p50_ms: r1(median(withV.ms)),
    varnish_p90_ms: r1(quantile(withV.ms, 0.9)),
    varnish_hits: withV.hits,
    nginx_p50_ms: r1(median(without.ms)),
    nginx_p90_ms: r1(quantile(without.ms, 0.9)),
    speedup_p50: r1(median(without.ms) / median(withV.ms)),
    load_start: loadStart,
    load_end: load1(),
    at: new Date().toISOString(),
  };
  console.log(JSON.stringify(row));
  if (process.argv.includes('--record')) record(row);
}

try {
  await main();
} finally {
  if (existsSync(path.join(sitesDir, `${S.id}.yml`)))
    await cli('playbooks/remove-site.ts', ['--domain', S.domain, '--yes', '--no-backup', '--sites-dir', sitesDir]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
}
