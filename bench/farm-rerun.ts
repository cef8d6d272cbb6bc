// Bench (issue 17 item 5): the whole-farm no-change rerun on the test lab: `bootstrap.ts` (all phases, or
// --phases 1-2) run as an operator runs it (`make bootstrap`: through the fast CLI), then the same with --check; wall time, round trips per role and per
// host, changes, and the load average. Needs a lab converged through the phases measured (make bootstrap, or
// test/lab/20-cluster for phase 1). Wrap it in the lab lock:
//   flock /run/wpfarm-lab.lock node --import tsx bench/farm-rerun.ts [--phases 1-2] [--reps 3] [--no-check] [--checkout DIR]
// --checkout: run the playbooks of another checkout (e.g. a worktree of main, for a before/after comparison) on
// this test lab. --inventory FILE: another converged lab instead of the test lab's (your own: inventory/lab.yml;
// then no lab lock is needed). Prints a table and one JSON line; writes bench/results/farm-rerun.json (not with
// --checkout or --inventory).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { INVENTORY, ROOT } from '../test/harness/lab-sites.ts';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const [fromPhase, toPhase] = (arg('--phases') ?? '1-5').split('-').map(Number) as [number, number];
const REPS = Number(arg('--reps') ?? 3) || 3;
const CHECK = !process.argv.includes('--no-check');
const CHECKOUT = path.resolve(arg('--checkout') ?? ROOT);
/** the lab's inventory: the test lab's unless --inventory (relative to the current directory) */
const INV = arg('--inventory') ? path.resolve(arg('--inventory')!) : INVENTORY;

/** bootstrap.ts of CHECKOUT on the test lab, as an operator runs it; its JSON report. */
async function bootstrap(work: string, args: string[]): Promise<{ code: number; out: string; processMs: number; report?: Report }> {
  const json = path.join(work, `r-${Math.random().toString(36).slice(2)}.json`);
  // through the fast CLI (scripts/build-cli.ts), as `make bootstrap` runs it; through tsx when it is not built
  const launcher = path.join(CHECKOUT, '.wpfarm/cli/wpfarm.mjs');
  const argv = [
    ...(existsSync(launcher) ? [launcher] : ['--import', 'tsx']),
    'playbooks/bootstrap.ts',
    '--inventory',
    INV,
    '--json',
    json,
    ...args,
  ];
  const t0 = performance.now();
  const r = await promisify(execFile)(process.execPath, argv, { cwd: CHECKOUT, maxBuffer: 64 << 20, timeout: 30 * 60_000 }).then(
    (x) => ({ code: 0, out: x.stdout + x.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
  );
  const processMs = performance.now() - t0;
  return { ...r, processMs, report: existsSync(json) ? (JSON.parse(readFileSync(json, 'utf8')) as Report) : undefined };
}

/**
 * CPU time (s) used so far by the lab's host containers, each by its cgroup (v1 cpuacct, or v2 cpu.stat), summed:
 * their sshd, shells and probes, and the daemons inside (dockerd, glusterd, ...) for what the run asks of them, plus
 * whatever they do on their own meanwhile. null when not readable (another lab kind, no docker here).
 */
async function hostsCpu(ids: string[]): Promise<number | null> {
  if (!ids.length) return null;
  let total = 0;
  for (const id of ids) {
    const v1 = `/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`;
    const v2 = [`/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`, `/sys/fs/cgroup/docker/${id}/cpu.stat`].find(existsSync);
    if (existsSync(v1)) total += Number(readFileSync(v1, 'utf8')) / 1e9;
    else if (v2) total += Number(/^usage_usec (\d+)/m.exec(readFileSync(v2, 'utf8'))?.[1] ?? Number.NaN) / 1e6;
    else return null;
  }
  return Number.isFinite(total) ? total : null;
}

/** The host containers of the lab: wpfarm-lab-<host> / wpfarm-testlab-<host> for the inventory's hosts. */
async function hostContainers(): Promise<string[]> {
  const names = Object.keys((parseYaml(readFileSync(INV, 'utf8')) as { hosts?: Record<string, unknown> }).hosts ?? {});
  const r = await promisify(execFile)('docker', ['ps', '--no-trunc', '--format', '{{.ID}} {{.Names}}']).catch(() => ({ stdout: '' }));
  return r.stdout
    .split('\n')
    .map((l) => l.split(' '))
    .filter(([, n]) => n && names.some((h) => n === `wpfarm-lab-${h}` || n === `wpfarm-testlab-${h}`))
    .map(([id]) => id!);
}

/** CPU time (s) of this process's waited-for children (/proc/self/stat cutime + cstime, clock ticks of 10 ms) */
function childrenCpu(): number {
  const f = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // after "pid (comm) ": field 3 is state; cutime and cstime are fields 16 and 17 (indexes 13, 14 here)
  return (Number(f[13]) + Number(f[14])) / 100;
}

interface Ev {
  kind: string;
  t: number;
  role?: string;
  host?: string;
}

export interface Breakdown {
  /** round trips per role (commands between its role.start and role.end) */
  roles: Record<string, number>;
  /** round trips per role and host */
  perHost: Record<string, Record<string, number>>;
  /** hosts each role ran on */
  hosts: Record<string, number>;
}

/** Round trips per role from a run's events.ndjson (roles run one after another). */
export function breakdown(ndjson: string): Breakdown {
  const out: Breakdown = { roles: {}, perHost: {}, hosts: {} };
  let role = '(outside roles)';
  for (const line of ndjson.split('\n')) {
    if (!line.trim()) continue;
    const e = JSON.parse(line) as Ev & { hosts?: string[] };
    if (e.kind === 'role.start') {
      role = e.role!;
      out.hosts[role] = e.hosts?.length ?? 0;
    } else if (e.kind === 'role.end') role = '(outside roles)';
    else if (e.kind === 'command.start') {
      out.roles[role] = (out.roles[role] ?? 0) + 1;
      const h = (out.perHost[role] ??= {});
      h[e.host!] = (h[e.host!] ?? 0) + 1;
    }
  }
  return out;
}

interface Report {
  exitCode: number;
  wallMs: number;
  roundTrips: number;
  log: string;
  results: { status: string; host: string; step: string; changes: string[] }[];
}

async function once(work: string, check: boolean) {
  const phases = Array.from({ length: toPhase - fromPhase + 1 }, (_, i) => fromPhase + i);
  const args = fromPhase === 1 && toPhase === 5 ? [] : toPhase === 5 ? ['--from-phase', String(fromPhase)] : null;
  // bootstrap takes --phase N or --from-phase N: a range that ends before 5 runs its phases one by one
  const runs = args ? [args] : phases.map((p) => ['--phase', String(p)]);
  let wall = 0;
  let processWall = 0;
  let trips = 0;
  const roles: Record<string, number> = {};
  const hosts: Record<string, number> = {};
  const changed: string[] = [];
  const load0 = loadavg()[0]!;
  let hostCpu: number | null = 0;
  let ctlCpu = 0;
  for (const a of runs) {
    const h0 = await hostsCpu(containers);
    const c0 = childrenCpu();
    const r = await bootstrap(work, [...a, ...(check ? ['--check'] : [])]);
    ctlCpu += childrenCpu() - c0;
    const h1 = await hostsCpu(containers);
    hostCpu = hostCpu === null || h0 === null || h1 === null ? null : hostCpu + (h1 - h0);
    const rep = r.report;
    if (!rep) throw new Error(`bootstrap ${a.join(' ')}: no report (exit ${r.code}):\n${r.out.slice(-3000)}`);
    if (rep.exitCode !== 0) throw new Error(`bootstrap ${a.join(' ')}: exit ${rep.exitCode}:\n${r.out.slice(-3000)}`);
    wall += rep.wallMs;
    processWall += r.processMs;
    trips += rep.roundTrips;
    const b = breakdown(readFileSync(rep.log, 'utf8'));
    for (const [k, v] of Object.entries(b.roles)) roles[k] = (roles[k] ?? 0) + v;
    Object.assign(hosts, b.hosts);
    for (const x of rep.results) if (x.status === 'changed') changed.push(`${x.host}: ${x.step}: ${x.changes.join('; ')}`);
  }
  return { wallMs: wall, processMs: processWall, roundTrips: trips, roles, hosts, changed, load: [load0, loadavg()[0]!], hostCpu, ctlCpu };
}

const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-bench-farm-'));
let containers: string[] = [];
try {
  // the fast CLI built first (its build is not part of a rerun; the launcher checks it is current)
  if (existsSync(path.join(CHECKOUT, 'scripts/build-cli.ts')))
    await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/build-cli.ts', '--quiet'], { cwd: CHECKOUT });
  containers = await hostContainers();
  const results: Record<string, Awaited<ReturnType<typeof once>>[]> = { rerun: [], check: [] };
  for (let i = 0; i < REPS; i++) {
    results.rerun!.push(await once(work, false));
    if (CHECK) results.check!.push(await once(work, true));
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const summary = Object.fromEntries(
    Object.entries(results)
      .filter(([, rs]) => rs.length)
      .map(([k, rs]) => [
        k,
        {
          wall_s: +(median(rs.map((r) => r.wallMs)) / 1000).toFixed(2),
          walls_s: rs.map((r) => +(r.wallMs / 1000).toFixed(2)),
          // the command's whole time, as the operator waits for it: node's start, module loading, the run, its report
          process_wall_s: +(median(rs.map((r) => r.processMs)) / 1000).toFixed(2),
          process_walls_s: rs.map((r) => +(r.processMs / 1000).toFixed(2)),
          round_trips: median(rs.map((r) => r.roundTrips)),
          // CPU the run cost: the command (the controller: its node process and what it ran) and the lab's hosts
          // (their containers' cgroups: null when not readable); on 2 cores, (controller + hosts) / 2 bounds the wall
          controller_cpu_s: +median(rs.map((r) => r.ctlCpu)).toFixed(2),
          hosts_cpu_s: rs.every((r) => r.hostCpu !== null) ? +median(rs.map((r) => r.hostCpu!)).toFixed(2) : null,
          per_role: rs[0]!.roles,
          hosts_per_role: rs[0]!.hosts,
          changed: rs.flatMap((r) => r.changed),
          load_average: rs.map((r) => r.load.map((x) => +x.toFixed(1))),
        },
      ]),
  );
  for (const [k, s] of Object.entries(summary)) {
    console.log(
      `\n${k}: phases ${fromPhase}-${toPhase}: median ${s.wall_s} s (${s.walls_s.join(', ')}), the command ${s.process_wall_s} s ` +
        `(${s.process_walls_s.join(', ')}), ${s.round_trips} round trips, CPU: controller ${s.controller_cpu_s} s, hosts ${s.hosts_cpu_s ?? '?'} s`,
    );
    console.log('| role | hosts | round trips | per host |\n|---|---:|---:|---:|');
    for (const [role, n] of Object.entries(s.per_role)) {
      const h = s.hosts_per_role[role] ?? 0;
      console.log(`| ${role} | ${h} | ${n} | ${h ? (n / h).toFixed(2) : ''} |`);
    }
    if (s.changed.length) console.log(`CHANGED (not a no-change rerun):\n  ${s.changed.join('\n  ')}`);
  }
  const result = {
    phases: `${fromPhase}-${toPhase}`,
    reps: REPS,
    checkout: CHECKOUT,
    inventory: INV,
    ...summary,
    at: new Date().toISOString(),
  };
  console.log(JSON.stringify(result));
  if (CHECKOUT === ROOT && INV === INVENTORY)
    writeFileSync(path.join(ROOT, 'bench/results/farm-rerun.json'), `${JSON.stringify(result, null, 2)}\n`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
