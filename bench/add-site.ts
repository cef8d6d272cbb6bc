// Bench (issue 17 item 3): add-site on the lab until the site serves, target ≤ 20 s (median of BENCH_ADD_SITE_REPS, 5).
//   node --import tsx bench/add-site.ts [--keep] [--record]       (WPFARM_LAB=test: the test lab)
// Needs the converged lab (phase 1, galera, gluster) and phase 3's images: the images role is run first (built and
// pushed once, content-hashed; its time is reported apart, it is not part of add-site). Each repetition: a new
// domain, `add-site` through the fast CLI as `make add-site` runs it (process start included), then one GET
// through the site's nginx (its Host header) must answer 200; the site is removed afterwards (not timed) unless
// --keep. Reports the median, every run, the median time of each step (from the run's JSON report: where the
// seconds go), the rerun of the last site and the load average. --record writes the row into
// bench/results/latest.json (scenario "add-site", replacing the previous one) and bench/README.md.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { quote } from 'zx';
import { buildCli } from '../scripts/build-cli.ts';
import { INVENTORY_FILE, NODES, PATHS } from '../scripts/lab/config.ts';
import { median, nodeArgs, recordScenario } from './util.ts';

const run = promisify(execFile);
const INV = INVENTORY_FILE;
const REPS = Number(process.env.BENCH_ADD_SITE_REPS ?? 5);
const TARGET_S = 20;
const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-bench-sites-'));
const node = (script: string, args: string[]) =>
  run(process.execPath, nodeArgs('fast', script, ['--inventory', INV, ...args]), { maxBuffer: 64 << 20, timeout: 30 * 60_000 });
const ssh = (addr: string, cmd: string) =>
  run('ssh', ['-i', PATHS.clientKey, '-o', `UserKnownHostsFile=${PATHS.knownHosts}`, '-o', 'LogLevel=ERROR', `root@${addr}`, cmd], {
    maxBuffer: 16 << 20,
  });
const ADDR: Record<string, string> = Object.fromEntries(NODES.map((n) => [n.name, n.address]));
const load1 = (): number => +loadavg()[0]!.toFixed(2);

interface Report {
  wallMs: number;
  roundTrips: number;
  results: { host: string; step: string; status: string; reason?: string; startMs?: number; endMs?: number }[];
}

/** Seconds per step of the run (the host that ran each run-once step), plus the process start and the rest. */
function stepTimes(r: Report, wallS: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of r.results) {
    if (x.startMs === undefined || x.endMs === undefined || /ran once on/.test(x.reason ?? '')) continue;
    out[x.step] = Math.max(out[x.step] ?? 0, (x.endMs - x.startMs) / 1000);
  }
  const inSteps = Object.values(out).reduce((a, b) => a + b, 0);
  out['(process start, checks, lock, connections, report)'] = Math.max(0, wallS - inSteps);
  return out;
}

async function serves(id: string, domain: string): Promise<string> {
  const { stdout } = await ssh(
    ADDR.mgr1!,
    `docker service ps --filter desired-state=running --format '{{.Node}}' ${quote(`wp-${id}_nginx`)}`,
  );
  const n = stdout.trim().split('\n')[0]!;
  const get = await ssh(
    ADDR[n] ?? n,
    `docker exec $(docker ps -q --filter ${quote(`label=com.docker.swarm.service.name=wp-${id}_nginx`)} | head -n1) ` +
      `curl -s -o /dev/null -w '%{http_code}' -H ${quote(`Host: ${domain}`)} -H 'X-Forwarded-Proto: https' http://127.0.0.1:8080/`,
  );
  return get.stdout.trim();
}

interface One {
  add_site_s: number;
  serving_s: number;
  http: string;
  round_trips: number;
  steps: Record<string, number>;
  load_start: number;
  load_end: number;
}

const created: { domain: string }[] = [];
try {
  await buildCli();
  // phase 3's images (built and pushed once; a no-op when present): not part of add-site
  const ti = performance.now();
  const img = await node('playbooks/run-role.ts', ['images']);
  const imagesS = (performance.now() - ti) / 1000;
  const built = /built/.test(img.stdout);
  const runs: One[] = [];
  let last = { domain: '', id: '' };
  for (let i = 0; i < REPS; i++) {
    const stamp = `${Date.now().toString(36).slice(-5)}${i}`;
    const domain = `bench${stamp}.lab.test`;
    const id = `bench${stamp}-lab-test`;
    const json = path.join(dir, `add-${i}.json`);
    const l0 = load1();
    const t0 = performance.now();
    await node('playbooks/add-site.ts', ['--domain', domain, '--sites-dir', dir, '--json', json]);
    const addS = (performance.now() - t0) / 1000;
    created.push({ domain });
    const http = await serves(id, domain);
    const servingS = (performance.now() - t0) / 1000;
    const rep = JSON.parse(readFileSync(json, 'utf8')) as Report;
    runs.push({
      add_site_s: +addS.toFixed(1),
      serving_s: +servingS.toFixed(1),
      http,
      round_trips: rep.roundTrips,
      steps: stepTimes(rep, addS),
      load_start: l0,
      load_end: load1(),
    });
    console.error(`add-site ${i + 1}/${REPS}: ${addS.toFixed(1)} s (serving ${servingS.toFixed(1)} s, HTTP ${http}), load ${l0}`);
    last = { domain, id };
  }
  const t1 = performance.now();
  await node('playbooks/add-site.ts', ['--domain', last.domain, '--sites-dir', dir]);
  const rerunS = (performance.now() - t1) / 1000;
  const stepNames = [...new Set(runs.flatMap((r) => Object.keys(r.steps)))];
  const row = {
    tool: 'wpfarm',
    scenario: 'add-site',
    hosts: NODES.length,
    reps: REPS,
    add_site_s: +median(runs.map((r) => r.add_site_s)).toFixed(1),
    serving_s: +median(runs.map((r) => r.serving_s)).toFixed(1),
    http: runs.map((r) => r.http),
    runs_s: runs.map((r) => r.add_site_s),
    steps_median_s: Object.fromEntries(stepNames.map((s) => [s, +median(runs.map((r) => r.steps[s] ?? 0)).toFixed(2)])),
    round_trips: median(runs.map((r) => r.round_trips)),
    rerun_s: +rerunS.toFixed(1),
    images_role_s: +imagesS.toFixed(1),
    images_built: built,
    load_start: runs[0]?.load_start,
    load_end: runs.at(-1)?.load_end,
    target_s: TARGET_S,
    at: new Date().toISOString(),
  };
  console.log(JSON.stringify(row));
  if (process.argv.includes('--record')) record(row);
} finally {
  if (!process.argv.includes('--keep'))
    for (const c of created)
      await node('playbooks/remove-site.ts', ['--domain', c.domain, '--yes', '--no-backup', '--sites-dir', dir]).catch((e: Error) =>
        console.error(`cleanup of ${c.domain}: ${e.message.split('\n')[0]}`),
      );
  rmSync(dir, { recursive: true, force: true });
}

/** The row in bench/results/latest.json (replacing the previous add-site row) and its section of bench/README.md. */
function record(row: Record<string, unknown> & { steps_median_s: Record<string, number> }): void {
  const steps = Object.entries(row.steps_median_s)
    .sort((a, b) => b[1] - a[1])
    .map(([s, v]) => `| ${s} | ${v.toFixed(2)} |`)
    .join('\n');
  const v = (k: string): string => String(row[k]);
  const text = [
    `Measured ${v('at')} on the test lab (${v('hosts')} nodes) by \`node --import tsx bench/add-site.ts --record\``,
    `(\`BENCH_ADD_SITE=1 make bench\`): add-site through the fast CLI until the site answers 200, median of ${v('reps')}:`,
    `**${v('add_site_s')} s** (serving ${v('serving_s')} s; runs ${(row.runs_s as number[]).join(', ')} s; target ≤ ${TARGET_S} s),`,
    `rerun ${v('rerun_s')} s, ${v('round_trips')} round trips. The machine is shared (2 cores, other jobs running):`,
    `load average (1 min) ${v('load_start')} at the start, ${v('load_end')} at the end. Phase 3's images role before it:`,
    `${v('images_role_s')} s (${row.images_built ? 'built' : 'nothing built'}).`,
  ].join('\n');
  recordScenario('add-site', row, `${text}\n\n| step (median) | s |\n|---|---|\n${steps}`, 'add-site on the lab');
}
