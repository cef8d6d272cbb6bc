// Interleaved A/B of the engine's cost: two checkouts (A: --base DIR, e.g. a worktree of main; B: this one) run the
// bench workload (bench/workload.ts) through their own fast CLI on the SAME N sshd hosts, one run each in turn, so
// that the load from elsewhere hits both alike: per repetition a first run (hosts reset) and a rerun of each, A and B
// taking turns to go first. Reports the medians of engine CPU (from --json: the run's own, process start excluded),
// process CPU and peak RSS (GNU time), wall, and the load average (1 min) at the start and end of each run.
//
//   node --import tsx bench/engine-ab.ts --base /work/wt/x-base [--n 100] [--reps 3] [--forks N] [--rerun-only]
//   [--first-reps K] [--json FILE]
// --first-reps K: first runs in the first K repetitions only (reruns in all): at N=500 a first run takes minutes.
import { execFileSync } from 'node:child_process';
import { rmSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startSshdHosts } from '../test/harness/sshd.ts';
import { median, nodeArgs, timed } from './util.ts';

const { values: o } = parseArgs({
  options: {
    base: { type: 'string' },
    n: { type: 'string', default: '100' },
    reps: { type: 'string', default: '3' },
    forks: { type: 'string' },
    'rerun-only': { type: 'boolean', default: false },
    'first-reps': { type: 'string' },
    json: { type: 'string' },
  },
});
if (!o.base) throw new Error('--base DIR: the checkout to compare with (A)');
const N = Number(o.n);
const REPS = Number(o.reps);
const FORKS = o.forks ? Number(o.forks) : N;
const FIRST_REPS = o['first-reps'] ? Number(o['first-reps']) : REPS;
const TASKS = 23;
const sides = { A: resolve(o.base), B: resolve('.') } as const;
type Side = keyof typeof sides;
const load1 = (): number => +loadavg()[0]!.toFixed(2);

interface Run {
  side: Side;
  scenario: 'first' | 'rerun';
  rep: number;
  wall_s: number;
  cpu_s: number;
  engine_cpu_s: number;
  peak_rss_mb: number;
  changed: number;
  failed: number;
  load_start: number;
  load_end: number;
}

for (const [side, dir] of Object.entries(sides)) {
  console.log(
    `engine-ab: ${side} = ${dir} (${execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()})`,
  );
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build-cli.ts', '--quiet'], { cwd: dir, stdio: 'inherit' });
}
const lab = await startSshdHosts(N, { prefix: 'ab' });
const runs: Run[] = [];
const reset = () => {
  for (const h of lab.hosts) rmSync(join(h.root, 'srv/bench'), { recursive: true, force: true });
};
const one = (side: Side, scenario: Run['scenario'], rep: number): void => {
  const json = join(lab.dir, `ab-${side}-${scenario}.json`);
  const load_start = load1();
  const cwd = process.cwd();
  process.chdir(sides[side]);
  let t: ReturnType<typeof timed>;
  try {
    const args = ['bench/workload.ts', '--inventory', lab.inventoryFile, '--forks', String(FORKS), '--json', json];
    t = timed(process.execPath, nodeArgs('fast', 'playbooks/run-role.ts', args), { CI: 'true', WPFARM_CLI_DEBUG: '1' });
  } finally {
    process.chdir(cwd);
  }
  if (!t.stdout.includes('wpfarm-cli: bundle'))
    throw new Error(`${side}: not run through its bundle: ${/wpfarm-cli: .*/.exec(t.stdout)?.[0]}`);
  if (t.code !== 0 && t.code !== 2 && t.code !== 3) throw new Error(`${side} ${scenario}: exit ${t.code}\n${t.stdout.slice(-2000)}`);
  const rep_ = JSON.parse(readFileSync(json, 'utf8')) as {
    results: { status: string }[];
    engineCpuMs: number;
    roles: { hosts: { status: string }[] }[];
  };
  const r: Run = {
    side,
    scenario,
    rep,
    wall_s: t.wall,
    cpu_s: t.cpu,
    engine_cpu_s: rep_.engineCpuMs / 1000,
    peak_rss_mb: Math.round(t.rssMb),
    changed: rep_.results.filter((x) => x.status === 'changed').length,
    failed: rep_.roles.flatMap((x) => x.hosts).filter((h) => h.status !== 'ok').length,
    load_start,
    load_end: load1(),
  };
  runs.push(r);
  const ms = (s: number) => ((s * 1000) / (TASKS * N)).toFixed(3);
  console.log(
    `engine-ab: N=${N} -f ${FORKS} rep ${rep} ${side} ${scenario}: wall ${r.wall_s.toFixed(2)} s, ` +
      `engine CPU ${r.engine_cpu_s.toFixed(2)} s (${ms(r.engine_cpu_s)} ms/task/host), ` +
      `process CPU ${r.cpu_s.toFixed(2)} s (${ms(r.cpu_s)}), peak RSS ${r.peak_rss_mb} MB, ` +
      `changed ${r.changed}, failed ${r.failed}, load ${r.load_start}→${r.load_end}`,
  );
};
try {
  for (let rep = 1; rep <= REPS; rep++) {
    const order: Side[] = rep % 2 ? ['A', 'B'] : ['B', 'A'];
    if (!o['rerun-only'] && rep <= FIRST_REPS) {
      for (const side of order) {
        reset();
        one(side, 'first', rep);
      }
    } else if (rep === 1 && o['rerun-only']) {
      reset();
      one('A', 'first', 0); // the hosts converged once; reruns only from here
    }
    for (const side of order) one(side, 'rerun', rep);
  }
} finally {
  await lab.stop();
}
const rows: string[] = [
  '| side | scenario | runs | wall s | engine CPU s (ms/task/host) | process CPU s (ms/task/host) | peak RSS MB | changed | failed ' +
    '| load avg start→end |',
  '|---|---|---:|---:|---:|---:|---:|---:|---:|---|',
];
for (const scenario of ['first', 'rerun'] as const) {
  for (const side of ['A', 'B'] as const) {
    const xs = runs.filter((r) => r.side === side && r.scenario === scenario && r.rep > 0);
    if (!xs.length) continue;
    const m = (f: (r: Run) => number) => median(xs.map(f));
    const per = (s: number) => ((s * 1000) / (TASKS * N)).toFixed(3);
    const [eng, cpu] = [m((r) => r.engine_cpu_s), m((r) => r.cpu_s)];
    const load = `${Math.min(...xs.map((r) => r.load_start))}→${Math.max(...xs.map((r) => r.load_end))}`;
    rows.push(
      `| ${side} | ${scenario} | ${xs.length} | ${m((r) => r.wall_s).toFixed(2)} | ${eng.toFixed(2)} (${per(eng)}) | ` +
        `${cpu.toFixed(2)} (${per(cpu)}) | ${m((r) => r.peak_rss_mb).toFixed(0)} | ${m((r) => r.changed)} | ` +
        `${Math.max(...xs.map((r) => r.failed))} | ${load} |`,
    );
  }
}
console.log(`\nN=${N}, -f ${FORKS}, ${REPS} repetitions (medians), A = ${sides.A}, B = ${sides.B}\n\n${rows.join('\n')}`);
if (o.json) writeFileSync(o.json, `${JSON.stringify({ n: N, forks: FORKS, reps: REPS, sides, runs }, null, 2)}\n`);
