// Bench (issue 6 target): N sites deployed side by side on the lab: total time, time per add-site, memory per
// site, every site serving, and the no-change reconcile of all N (time, round trips).
//   node --import tsx bench/sites-lab.ts [--sites 20] [--keep]
// Needs the converged lab (make bootstrap). Site records go to a temporary directory; the sites are removed
// at the end unless --keep. Prints one JSON line and writes bench/results/sites-lab.json.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { quote } from 'zx';
import { ADDR, ROOT, cli, ssh } from '../test/harness/lab-sites.ts';

const N = Number(process.argv[process.argv.indexOf('--sites') + 1] ?? 20) || 20;
const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-bench-sites-'));
const dir = path.join(work, 'sites');
const stamp = Date.now().toString(36).slice(-4);
const sites = Array.from({ length: N }, (_, i) => ({ domain: `s${i}-${stamp}.lab.test`, id: `s${i}-${stamp}-lab-test` }));
const mib = (s: string): number => {
  const m = /^([\d.]+)\s*([KMG]i?B)/.exec(s.trim());
  if (!m) return 0;
  const v = Number(m[1]);
  return m[2]!.startsWith('G') ? v * 1024 : m[2]!.startsWith('K') ? v / 1024 : v;
};

const added: typeof sites = [];
try {
  const warm = await cli(work, 'playbooks/run-role.ts', ['wp-site', '-e', `wp_sites_dir=${dir}`], 30 * 60_000); // images, once
  if (warm.code !== 0) throw new Error(`warm-up failed:\n${warm.out.slice(-2000)}`);
  const perSite: number[] = [];
  const t0 = performance.now();
  for (const s of sites) {
    const t = performance.now();
    const r = await cli(work, 'playbooks/add-site.ts', ['--domain', s.domain, '--sites-dir', dir]);
    if (r.code !== 0) throw new Error(`add-site ${s.domain} failed:\n${r.out.slice(-2000)}`);
    added.push(s);
    perSite.push((performance.now() - t) / 1000);
    console.error(`${s.domain}: ${perSite.at(-1)!.toFixed(1)} s`);
  }
  const totalS = (performance.now() - t0) / 1000;
  // every site serving: GET / through one of its nginx tasks with its Host header
  let serving = 0;
  for (const s of sites) {
    const node = (
      await ssh('mgr1', `docker service ps --filter desired-state=running --format '{{.Node}}' ${quote(`wp-${s.id}_nginx`)}`)
    ).split('\n')[0]!;
    const code = await ssh(
      ADDR[node] ?? node,
      `docker exec $(docker ps -q --filter ${quote(`label=com.docker.swarm.service.name=wp-${s.id}_nginx`)} | head -n1) curl -s -o /dev/null -w '%{http_code}' -H ${quote(`Host: ${s.domain}`)} -H 'X-Forwarded-Proto: https' http://127.0.0.1:8080/`,
      { nothrow: true },
    );
    if (code === '200') serving++;
  }
  // memory: every container of these stacks on the workers (docker stats, usage as the kernel counts it)
  let totalMiB = 0;
  for (const w of ['wrk1', 'wrk2']) {
    const out = await ssh(w, `docker stats --no-stream --format '{{.Name}} {{.MemUsage}}'`);
    for (const line of out.split('\n')) {
      const [name, ...rest] = line.split(' ');
      if (name && sites.some((s) => name.startsWith(`wp-${s.id}_`))) totalMiB += mib(rest.join(' ').split('/')[0]!);
    }
  }
  const t1 = performance.now();
  const rec = await cli(work, 'playbooks/run-role.ts', ['wp-site', '-e', `wp_sites_dir=${dir}`]);
  const reconcileS = (performance.now() - t1) / 1000;
  if (!rec.report) throw new Error(`reconcile: no report:\n${rec.out.slice(-2000)}`);
  const rep = rec.report;
  const result = {
    sites: N,
    total_s: +totalS.toFixed(1),
    add_site_s: {
      min: +Math.min(...perSite).toFixed(1),
      median: +[...perSite].sort((a, b) => a - b)[Math.floor(N / 2)]!.toFixed(1),
      max: +Math.max(...perSite).toFixed(1),
    },
    serving: `${serving}/${N}`,
    memory_mib_per_site: +(totalMiB / N).toFixed(1),
    reconcile_all_s: +reconcileS.toFixed(1),
    reconcile_round_trips: rep.roundTrips,
    reconcile_changes: rep.results.filter((x) => x.status === 'changed').length,
    load_average: (await import('node:os')).loadavg().map((x) => +x.toFixed(1)),
    at: new Date().toISOString(),
  };
  console.log(JSON.stringify(result));
  writeFileSync(path.join(ROOT, 'bench/results/sites-lab.json'), `${JSON.stringify(result, null, 2)}\n`);
  if (rec.code !== 0) process.exitCode = 1;
} finally {
  if (!process.argv.includes('--keep')) {
    for (const s of added)
      await cli(work, 'playbooks/remove-site.ts', ['--domain', s.domain, '--yes', '--no-backup', '--sites-dir', dir]).catch(
        () => undefined,
      );
  }
  rmSync(work, { recursive: true, force: true });
}
