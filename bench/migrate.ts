// Bench (issue 14): sites per hour of playbooks/migrate-sites.ts on the test lab, at concurrency 1, 2 and 4.
//   node --import tsx bench/migrate.ts [--record]            (the test lab: WPFARM_LAB=test, set by the harness)
// Needs the test lab up with phase 1 (test/lab/00, 20); galera, gluster and phase 3's images are converged first,
// and the legacy host made (scripts/lab.ts legacy-up, as lab 66 does). BENCH_MIGRATE_SITES (10) small sites are
// seeded on it (bench01..bench10.legacy.test: plain trees, BENCH_MIGRATE_MB (3) MB of uploads each; kept for the
// next run). Each round migrates all of them through every state (inspect → copy → rewrite → verify with the
// HTTP comparison and the admin login → cutover → done) with one migrate-sites.ts run at the round's concurrency,
// then rolls the sources back (their maintenance flags) and removes the farm sites (remove-site.ts) before the
// next round. Prints sites per hour per round and the median time of each state; --record writes the row into
// bench/results/latest.json (scenario "migrate") and bench/README.md.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { KEY, LEGACY_HOSTS, ROOT, cli as labCli, convergeSitePrerequisites, run } from '../test/harness/lab-sites.ts';
import { seedBenchSites, labEnvValue } from '../scripts/lab/legacy.ts';
import { siteIdFor } from '../roles/wp-site/playbook-util.ts';
import { median, recordScenario } from './util.ts';

const N = Number(process.env.BENCH_MIGRATE_SITES ?? 10);
const MB = Number(process.env.BENCH_MIGRATE_MB ?? 3);
const ROUNDS = (process.env.BENCH_MIGRATE_CONCURRENCY ?? '1,2,4').split(',').map(Number);
const STATES = ['inspect', 'copy', 'rewrite', 'verify', 'cutover', 'done'] as const;
const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-bench-migrate-'));
const sitesDir = path.join(work, 'sites');
const cli = (script: string, args: string[]) => labCli(work, script, args, 60 * 60_000);
const load1 = (): number => +loadavg()[0]!.toFixed(2);
const r1 = (x: number): number => +x.toFixed(1);
let domains: string[] = [];

interface Round {
  concurrency: number;
  sites: number;
  wall_s: number;
  sites_per_hour: number;
  /** median seconds of each state over the round's sites */
  state_s: Record<string, number>;
  load_start: number;
  load_end: number;
}

/** remove the farm sites of a round (and take the sources out of maintenance): the next round starts from nothing */
async function cleanup(plan: string, stateDir: string): Promise<void> {
  if (existsSync(stateDir)) {
    const rb = await cli('playbooks/migrate-sites.ts', ['--plan', plan, '--rollback', '--state-dir', stateDir, '--key', KEY]);
    if (rb.code !== 0) console.error(`rollback: exit ${rb.code}\n${rb.out.slice(-2000)}`);
  }
  for (const d of domains) {
    if (!existsSync(path.join(sitesDir, `${siteIdFor(d)}.yml`))) continue;
    const r = await cli('playbooks/remove-site.ts', ['--domain', d, '--yes', '--no-backup', '--sites-dir', sitesDir]);
    if (r.code !== 0) throw new Error(`remove-site ${d} failed:\n${r.out.slice(-2000)}`);
  }
}

async function round(concurrency: number): Promise<Round> {
  const dir = path.join(work, `c${concurrency}`);
  mkdirSync(dir, { recursive: true });
  const plan = path.join(dir, 'migrations.yml');
  const legacy = LEGACY_HOSTS[0]!;
  writeFileSync(
    plan,
    `sites:\n${domains.map((d) => `  - { from: "ssh://root@${legacy.address}/srv/www/${d.split('.')[0]}", domain: ${d} }`).join('\n')}\n`,
  );
  const stateDir = path.join(dir, 'state');
  const loadStart = load1();
  const t0 = performance.now();
  const r = await cli('playbooks/migrate-sites.ts', [
    ...['--plan', plan, '--concurrency', String(concurrency), '--state-dir', stateDir],
    ...['--sites-dir', sitesDir, '--key', KEY, '--verify-login', 'admin'],
  ]);
  const wall = (performance.now() - t0) / 1000;
  const loadEnd = load1();
  try {
    if (r.code !== 0) throw new Error(`migrate-sites --concurrency ${concurrency} failed (exit ${r.code}):\n${r.out.slice(-4000)}`);
    const ms = new Map<string, number[]>(STATES.map((s) => [s, []]));
    for (const d of domains) {
      const st = JSON.parse(readFileSync(path.join(stateDir, `${d}.json`), 'utf8')) as {
        status: string;
        history: { state: string; ok?: boolean; ms?: number }[];
      };
      if (st.status !== 'done') throw new Error(`${d}: ${st.status}, not done`);
      for (const h of st.history) if (h.ok && h.ms !== undefined) ms.get(h.state)?.push(h.ms);
    }
    const row: Round = {
      concurrency,
      sites: domains.length,
      wall_s: r1(wall),
      sites_per_hour: r1((domains.length / wall) * 3600),
      state_s: Object.fromEntries(STATES.map((s) => [s, r1(median(ms.get(s)!) / 1000)])),
      load_start: loadStart,
      load_end: loadEnd,
    };
    console.log(JSON.stringify(row));
    return row;
  } finally {
    await cleanup(plan, stateDir);
  }
}

function record(row: Record<string, unknown>, rounds: Round[]): void {
  const v = (k: string): string => String(row[k]);
  const text = [
    `Measured ${v('at')} on the test lab by \`node --import tsx bench/migrate.ts --record\`: ${v('sites')} small legacy sites`,
    `(plain WordPress trees on the lab's legacy host, ${v('uploads_mb')} MB of uploads each) migrated by one`,
    '`migrate-sites.ts` run per concurrency through every state (verify with the HTTP comparison and the admin login;',
    'the stack deployed by the wp-site role, one site at a time), the farm sites removed between rounds. The machine is',
    `shared (2 cores): load average (1 min) ${v('load_start')} at the start, ${v('load_end')} at the end.`,
    '',
    `| concurrency | sites | wall s | sites/hour | ${STATES.map((s) => `${s} s`).join(' | ')} | load start → end |`,
    `|---:|---:|---:|---:|${STATES.map(() => '---:').join('|')}|---|`,
    ...rounds.map(
      (x) =>
        `| ${x.concurrency} | ${x.sites} | ${x.wall_s} | ${x.sites_per_hour} | ${STATES.map((s) => x.state_s[s]).join(' | ')} | ` +
        `${x.load_start} → ${x.load_end} |`,
    ),
    '',
    'State times are medians over the sites of a round (each site’s own time in that state).',
  ].join('\n');
  recordScenario('migrate', row, text, 'Migrations (issue 14) on the lab');
}

async function main(): Promise<void> {
  const loadStart = load1();
  const t0 = performance.now();
  await run(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', 'legacy-up'], { cwd: ROOT, timeout: 20 * 60_000 });
  await convergeSitePrerequisites(work);
  domains = (await seedBenchSites(N, MB)).domains;
  const pw = labEnvValue('LEGACY_WP_ADMIN_PASSWORD');
  if (!pw) throw new Error('LEGACY_WP_ADMIN_PASSWORD is not in the lab env file');
  process.env.WPFARM_MIGRATE_LOGIN_PASSWORD = pw;
  const rounds: Round[] = [];
  for (const c of ROUNDS) rounds.push(await round(c));
  const row = {
    tool: 'wpfarm',
    scenario: 'migrate',
    sites: N,
    uploads_mb: MB,
    rounds,
    total_s: r1((performance.now() - t0) / 1000),
    load_start: loadStart,
    load_end: load1(),
    at: new Date().toISOString(),
  };
  console.log(JSON.stringify(row));
  if (process.argv.includes('--record')) record(row, rounds);
}

try {
  await main();
} finally {
  rmSync(work, { recursive: true, force: true });
}
