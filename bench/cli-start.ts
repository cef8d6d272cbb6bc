// The CLI's process cost, tsx vs the prebuilt fast CLI (scripts/build-cli.ts): `run-role.ts --help`
// (start-up alone), then the bench workload (bench/workload.ts, 20 tasks) first run and idempotent rerun
// on N real sshd hosts (test/harness/sshd.ts). GNU time of the whole process tree: wall, CPU (user+sys),
// peak RSS; engine CPU from --json. Medians of BENCH_REPS. Smaller than `make bench` (no Ansible, no
// floor): for a loaded machine. Writes bench/results/cli-start.json.
//
//   node --import tsx bench/cli-start.ts                 (BENCH_N=1,10,30 BENCH_REPS=3 BENCH_HELP_REPS=9)
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { buildCli } from '../scripts/build-cli.ts';
import { startSshdHosts } from '../test/harness/sshd.ts';
import { type CliMode, median, nodeArgs, timed } from './util.ts';

interface Row {
  mode: CliMode;
  what: 'help' | 'first' | 'rerun';
  hosts: number;
  reps: number;
  wall_s: number;
  cpu_s: number;
  peak_rss_mb: number;
  engine_cpu_s?: number;
  changed?: number;
}

const NS = (process.env.BENCH_N ?? '1,10,30').split(',').map(Number);
const REPS = Number(process.env.BENCH_REPS ?? 3);
const HELP_REPS = Number(process.env.BENCH_HELP_REPS ?? 9);
const MODES: CliMode[] = ['tsx', 'fast'];
const rows: Row[] = [];
const load0 = loadavg()[0]!;

/**
 * One timed run. The fast CLI falls back to tsx when a source changed after the build (others edit this
 * checkout meanwhile): such a run is not measured; `before` (resetting the hosts) runs again and so does the
 * run, after a rebuild.
 */
async function run(mode: CliMode, args: string[], before: () => void = () => {}) {
  for (let attempt = 1; ; attempt++) {
    if (mode === 'fast') await buildCli({ quiet: true });
    before();
    const t = timed(process.execPath, nodeArgs(mode, 'playbooks/run-role.ts', args), { CI: 'true', WPFARM_CLI_DEBUG: '1' });
    if (mode === 'tsx' || t.stdout.includes('wpfarm-cli: bundle')) return t;
    const why = /wpfarm-cli: .*/.exec(t.stdout)?.[0] ?? t.stdout.slice(-400);
    if (attempt >= 5) throw new Error(`the fast CLI fell back to tsx ${attempt} times: ${why}`);
    console.log(`cli-start: not measured (${why}); again`);
  }
}

function push(mode: CliMode, what: Row['what'], hosts: number, xs: ReturnType<typeof timed>[], extra: Partial<Row> = {}) {
  rows.push({
    mode,
    what,
    hosts,
    reps: xs.length,
    wall_s: +median(xs.map((x) => x.wall)).toFixed(3),
    cpu_s: +median(xs.map((x) => x.cpu)).toFixed(3),
    peak_rss_mb: +median(xs.map((x) => x.rssMb)).toFixed(1),
    ...extra,
  });
  const r = rows.at(-1)!;
  console.log(
    `cli-start: ${mode.padEnd(4)} ${what.padEnd(5)} N=${hosts}: wall ${r.wall_s} s, cpu ${r.cpu_s} s, rss ${r.peak_rss_mb} MB${r.changed !== undefined ? `, changed ${r.changed}` : ''}`,
  );
}

await buildCli();
// --help: start-up and module loading alone (interleaved, so load from elsewhere hits both alike)
const help: Record<CliMode, ReturnType<typeof timed>[]> = { tsx: [], fast: [] };
for (let i = 0; i < HELP_REPS; i++) {
  for (const mode of MODES) {
    const t = await run(mode, ['--help']);
    if (t.code !== 0 || !t.stdout.includes('Usage: npx tsx playbooks/run-role.ts')) throw new Error(`--help failed (${mode}): ${t.stdout}`);
    help[mode].push(t);
  }
}
for (const mode of MODES) push(mode, 'help', 0, help[mode]);

for (const n of NS) {
  const lab = await startSshdHosts(n, { prefix: 'c' });
  try {
    const res: Record<string, { t: ReturnType<typeof timed>; engine: number; changed: number }[]> = {};
    for (let rep = 0; rep < REPS; rep++) {
      for (const mode of MODES) {
        const reset = () => {
          for (const h of lab.hosts) rmSync(join(h.root, 'srv/bench'), { recursive: true, force: true });
        };
        for (const what of ['first', 'rerun'] as const) {
          const json = join(lab.dir, `cli-${mode}-${what}.json`);
          const t = await run(
            mode,
            ['bench/workload.ts', '--inventory', lab.inventoryFile, '--forks', String(n), '--json', json],
            what === 'first' ? reset : undefined,
          );
          if (t.code !== 0) throw new Error(`${mode} ${what} N=${n} failed (exit ${t.code}):\n${t.stdout.slice(-2000)}`);
          const rep = JSON.parse(readFileSync(json, 'utf8')) as { results: { status: string }[]; engineCpuMs: number };
          (res[`${mode}/${what}`] ??= []).push({
            t,
            engine: rep.engineCpuMs / 1000,
            changed: rep.results.filter((r) => r.status === 'changed').length,
          });
        }
      }
    }
    for (const mode of MODES) {
      for (const what of ['first', 'rerun'] as const) {
        const xs = res[`${mode}/${what}`]!;
        push(
          mode,
          what,
          n,
          xs.map((x) => x.t),
          { engine_cpu_s: +median(xs.map((x) => x.engine)).toFixed(3), changed: median(xs.map((x) => x.changed)) },
        );
      }
    }
  } finally {
    await lab.stop();
  }
}

const perTask = (r: Row) => (r.hosts ? ((r.cpu_s * 1000) / (20 * r.hosts)).toFixed(2) : '');
const lines = [
  `| run | hosts | tsx wall s | fast wall s | tsx CPU s | fast CPU s | CPU saved | tsx / fast CPU ms/task/host | engine CPU s (tsx / fast) | peak RSS MB (tsx / fast) | changed (tsx / fast) |`,
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
];
for (const what of ['help', 'first', 'rerun'] as const) {
  for (const n of what === 'help' ? [0] : NS) {
    const a = rows.find((r) => r.mode === 'tsx' && r.what === what && r.hosts === n)!;
    const b = rows.find((r) => r.mode === 'fast' && r.what === what && r.hosts === n)!;
    lines.push(
      `| ${what === 'help' ? 'run-role.ts --help' : what} | ${n || ''} | ${a.wall_s.toFixed(2)} | ${b.wall_s.toFixed(2)} | ${a.cpu_s.toFixed(2)} | ${b.cpu_s.toFixed(2)} | ` +
        `${Math.round((1 - b.cpu_s / a.cpu_s) * 100)}% | ${what === 'help' ? '' : `${perTask(a)} / ${perTask(b)}`} | ` +
        `${a.engine_cpu_s !== undefined ? `${a.engine_cpu_s.toFixed(2)} / ${b.engine_cpu_s!.toFixed(2)}` : ''} | ${a.peak_rss_mb.toFixed(0)} / ${b.peak_rss_mb.toFixed(0)} | ` +
        `${a.changed !== undefined ? `${a.changed} / ${b.changed}` : ''} |`,
    );
  }
}
const table = lines.join('\n');
console.log(`\n${table}\n\nload average (1 min) at start ${load0.toFixed(1)}, at end ${loadavg()[0]!.toFixed(1)}`);
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/cli-start.json',
  `${JSON.stringify({ measured: new Date().toISOString(), loadavg: [+load0.toFixed(1), +loadavg()[0]!.toFixed(1)], reps: REPS, helpReps: HELP_REPS, rows }, null, 2)}\n`,
);
