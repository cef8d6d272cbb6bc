// `make bench`: wpfarm vs Ansible (Debian's ansible-core, best settings) vs the batched floor, on the same N
// real sshd hosts (test/harness/sshd.ts) and the same 20-task workload (bench/workload.ts,
// bench/ansible/playbook.yml, bench/floor.sh). First run and idempotent rerun, N = 1, 10, 30, three
// repetitions each, medians. Writes bench/results/latest.json and the table in bench/README.md.
// The machine is shared: each row carries the load average (1 min) at the start and end of its runs.
//
//   BENCH_N=1,10 BENCH_REPS=1 make bench     (a quicker subset)
//   BENCH_N=100,300,500 BENCH_REPS=1 BENCH_ANSIBLE_MAX_N=30 make bench   (scale; Ansible only up to 30 hosts)
//   BENCH_KEEP=1 keeps the rows of other N already in bench/results/latest.json
//   BENCH_FORKS=50,N runs wpfarm at each --forks (N: the number of hosts, the default; values above N count as N)
//   BENCH_ADD_SITE=1 also runs bench/add-site.ts --record (add-site on the converged lab, median of 5; its row is kept)
//   BENCH_RERUN_ONLY=1: the first run only at the first of BENCH_FORKS, the reruns at each (a first run at -f 50 and
//   N=500 takes minutes on 2 shared cores)
import { execFileSync, spawnSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { buildCli } from '../scripts/build-cli.ts';
import { startSshdHosts, type SshdLab } from '../test/harness/sshd.ts';
import { type CliMode, median, nodeArgs, timed } from './util.ts';

interface Row {
  tool: 'wpfarm' | 'ansible' | 'floor';
  scenario: 'first' | 'rerun';
  hosts: number;
  /** wpfarm's --forks (rows without it ran at --forks = hosts) */
  forks?: number;
  tasks: number;
  wall_s: number;
  cpu_s: number;
  peak_rss_mb: number;
  changed?: number;
  /** wpfarm only: CPU of the run itself (from --json), process start and module loading excluded */
  engine_cpu_s?: number;
  /** hosts that failed or were unreachable (wpfarm), ssh commands that failed (floor) */
  failed?: number;
  /** load average (1 min) at the start and end of the run (the median run's) */
  load_start?: number;
  load_end?: number;
}

const TASKS = 23;
const NS = (process.env.BENCH_N ?? '1,10,30').split(',').map(Number);
const REPS = Number(process.env.BENCH_REPS ?? 3);
/** Ansible takes minutes per run from ~100 hosts on: compared up to this N (default: every N) */
const ANSIBLE_MAX_N = Number(process.env.BENCH_ANSIBLE_MAX_N ?? Number.POSITIVE_INFINITY);
const FORKS = (process.env.BENCH_FORKS ?? 'N').split(',');
const forksFor = (n: number): number[] => [...new Set(FORKS.map((f) => (f === 'N' ? n : Math.min(Number(f), n))))];
const load1 = (): number => +loadavg()[0]!.toFixed(2);
/** how wpfarm is started: the prebuilt fast CLI (scripts/build-cli.ts; BENCH_CLI=tsx: `node --import tsx`, as before) */
const CLI: CliMode = process.env.BENCH_CLI === 'tsx' ? 'tsx' : 'fast';
const repo = resolve('.');

function ensureAnsible(): void {
  if (existsSync('/usr/bin/ansible-playbook')) return;
  console.log('bench: installing ansible-core (Debian package) for the comparison');
  execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-q', '--no-install-recommends', 'ansible-core'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
}

function resetHosts(lab: SshdLab): void {
  for (const h of lab.hosts) rmSync(join(h.root, 'srv/bench'), { recursive: true, force: true });
}

function ansibleSetup(lab: SshdLab, n: number): { env: NodeJS.ProcessEnv; dir: string } {
  const dir = join(lab.dir, 'ansible');
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'inventory.ini'),
    `${lab.hosts.map((h) => `${h.name} ansible_host=${h.address} ansible_user=root ansible_ssh_private_key_file=${lab.keyFile}`).join('\n')}\n`,
  );
  writeFileSync(
    join(dir, 'ansible.cfg'),
    [
      '[defaults]',
      `inventory = ${join(dir, 'inventory.ini')}`,
      `forks = ${n}`,
      'gathering = explicit',
      'host_key_checking = True',
      'interpreter_python = /usr/bin/python3',
      'retry_files_enabled = False',
      `local_tmp = ${join(dir, 'tmp')}`,
      '[ssh_connection]',
      'pipelining = True',
      `ssh_args = -o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=${lab.knownHosts} -o IdentitiesOnly=yes`,
      `control_path_dir = ${join(dir, 'cp')}`,
      '',
    ].join('\n'),
  );
  return { env: { ANSIBLE_CONFIG: join(dir, 'ansible.cfg'), ANSIBLE_NOCOLOR: '1' }, dir };
}

const sumChanged = (text: string): number => [...text.matchAll(/changed=(\d+)/g)].reduce((a, m) => a + Number(m[1]), 0);

async function benchN(n: number, rows: Row[]): Promise<void> {
  console.log(`\nbench: N=${n}: starting ${n} sshd hosts`);
  const lab = await startSshdHosts(n, { prefix: 'b' });
  const ans = ansibleSetup(lab, n);
  const raw: Row[] = [];
  const wpfarm = async (scenario: Row['scenario'], forks: number) => {
    const json = join(lab.dir, `wpfarm-${scenario}-f${forks}.json`);
    let t: ReturnType<typeof timed>;
    let load0 = load1();
    for (let attempt = 1; ; attempt++) {
      load0 = load1();
      // sources edited meanwhile (others work in this checkout): rebuilt, never measured through the fallback
      if (CLI === 'fast') await buildCli({ quiet: true });
      if (attempt > 1 && scenario === 'first') resetHosts(lab);
      t = timed(
        process.execPath,
        nodeArgs(CLI, 'playbooks/run-role.ts', [
          'bench/workload.ts',
          '--inventory',
          lab.inventoryFile,
          '--forks',
          String(forks),
          '--json',
          json,
        ]),
        {
          CI: 'true',
          WPFARM_CLI_DEBUG: '1',
        },
      );
      // hosts failed (2) or unreachable (3): counted in the row (failed), the bench goes on; anything else stops it
      if (t.code !== 0 && t.code !== 2 && t.code !== 3)
        throw new Error(`wpfarm ${scenario} failed (exit ${t.code}):\n${t.stdout.slice(-3000)}`);
      if (t.code !== 0) console.log(`bench: N=${n} -f ${forks}: wpfarm ${scenario} exit ${t.code}:\n${t.stdout.slice(-1500)}`);
      if (CLI === 'tsx' || t.stdout.includes('wpfarm-cli: bundle')) break;
      if (attempt >= 5)
        throw new Error(`wpfarm ${scenario}: the fast CLI fell back to tsx ${attempt} times: ${/wpfarm-cli: .*/.exec(t.stdout)?.[0]}`);
    }
    const load_end = load1();
    const rep = JSON.parse(readFileSync(json, 'utf8')) as {
      results: { status: string }[];
      engineCpuMs: number;
      roles: { hosts: { status: string }[] }[];
    };
    raw.push({
      tool: 'wpfarm',
      scenario,
      hosts: n,
      forks,
      tasks: TASKS,
      wall_s: t.wall,
      cpu_s: t.cpu,
      peak_rss_mb: t.rssMb,
      changed: rep.results.filter((r) => r.status === 'changed').length,
      engine_cpu_s: rep.engineCpuMs / 1000,
      failed: rep.roles.flatMap((r) => r.hosts).filter((h) => h.status !== 'ok').length,
      load_start: load0,
      load_end,
    });
  };
  const ansible = (scenario: Row['scenario']) => {
    const load_start = load1();
    const t = timed('ansible-playbook', [join(repo, 'bench/ansible/playbook.yml')], ans.env);
    if (t.code !== 0) throw new Error(`ansible ${scenario} failed (exit ${t.code}):\n${t.stdout.slice(-3000)}`);
    raw.push({
      tool: 'ansible',
      scenario,
      hosts: n,
      tasks: TASKS,
      wall_s: t.wall,
      cpu_s: t.cpu,
      peak_rss_mb: t.rssMb,
      changed: sumChanged(t.stdout),
      load_start,
      load_end: load1(),
    });
  };
  const floor = () => {
    const script = [
      'pids=""',
      ...lab.hosts.map(
        (h) =>
          `ssh -q -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=${lab.knownHosts} -i ${lab.keyFile} root@${h.address} bash -s < ${join(repo, 'bench/floor.sh')} > /dev/null & pids="$pids $!"`,
      ),
      'failed=0; for p in $pids; do wait $p || failed=$((failed+1)); done; echo "floor-failed=$failed"',
    ].join('\n');
    const load_start = load1();
    const t = timed('bash', ['-c', script]);
    const failed = Number(/floor-failed=(\d+)/.exec(t.stdout)?.[1] ?? -1);
    if (t.code !== 0 || failed !== 0)
      console.log(`bench: N=${n}: the floor had ${failed} failed ssh (exit ${t.code}): ${t.stdout.slice(-600)}`);
    raw.push({
      tool: 'floor',
      scenario: 'rerun',
      hosts: n,
      tasks: TASKS,
      wall_s: t.wall,
      cpu_s: t.cpu,
      peak_rss_mb: t.rssMb,
      failed,
      load_start,
      load_end: load1(),
    });
  };
  try {
    for (let rep = 1; rep <= REPS; rep++) {
      for (const [i, f] of forksFor(n).entries()) {
        if (i === 0 || !process.env.BENCH_RERUN_ONLY) {
          resetHosts(lab);
          await wpfarm('first', f);
        }
        await wpfarm('rerun', f);
      }
      floor();
      if (n <= ANSIBLE_MAX_N) {
        resetHosts(lab);
        ansible('first');
        ansible('rerun');
      }
      const runs = process.env.BENCH_RERUN_ONLY ? forksFor(n).length + 1 : 2 * forksFor(n).length;
      const last = raw.slice(-(runs + 1 + (n <= ANSIBLE_MAX_N ? 2 : 0)));
      console.log(
        `bench: N=${n} rep ${rep}: ` +
          last
            .map(
              (r) =>
                `${r.tool}/${r.scenario}${r.forks ? ` -f ${r.forks}` : ''} ${r.wall_s.toFixed(2)} s${r.changed !== undefined ? ` (changed ${r.changed})` : ''} load ${r.load_start}→${r.load_end}`,
            )
            .join(', '),
      );
    }
  } finally {
    spawnSync('bash', ['-c', `for s in ${join(ans.dir, 'cp')}/*; do ssh -o ControlPath="$s" -O exit x 2>/dev/null; done`]);
    await lab.stop();
  }
  for (const tool of ['wpfarm', 'ansible', 'floor'] as const) {
    for (const scenario of ['first', 'rerun'] as const) {
      for (const forks of tool === 'wpfarm' ? forksFor(n) : [undefined]) {
        const xs = raw.filter((r) => r.tool === tool && r.scenario === scenario && r.forks === forks);
        if (!xs.length) continue;
        rows.push({
          tool,
          scenario,
          hosts: n,
          ...(forks !== undefined ? { forks } : {}),
          tasks: TASKS,
          wall_s: +median(xs.map((r) => r.wall_s)).toFixed(3),
          cpu_s: +median(xs.map((r) => r.cpu_s)).toFixed(3),
          peak_rss_mb: +median(xs.map((r) => r.peak_rss_mb)).toFixed(1),
          ...(xs[0]!.changed !== undefined ? { changed: median(xs.map((r) => r.changed!)) } : {}),
          ...(xs[0]!.engine_cpu_s !== undefined ? { engine_cpu_s: +median(xs.map((r) => r.engine_cpu_s!)).toFixed(3) } : {}),
          ...(xs[0]!.failed !== undefined ? { failed: Math.max(...xs.map((r) => r.failed!)) } : {}),
          load_start: Math.min(...xs.map((r) => r.load_start ?? 0)),
          load_end: Math.max(...xs.map((r) => r.load_end ?? 0)),
        });
      }
    }
  }
}

function table(rows: Row[]): string {
  const out = [
    '| hosts | -f | scenario | wpfarm wall s | Ansible wall s | floor wall s | speed-up vs Ansible | × floor | wpfarm CPU ms/task/host (process / engine) | Ansible CPU ms/task/host | wpfarm peak RSS MB | changed (wpfarm / Ansible) | failed hosts (wpfarm / floor) | load avg start→end (wpfarm) |',
    '|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|',
  ];
  for (const n of [...new Set(rows.map((r) => r.hosts))].sort((a, b) => a - b)) {
    const forksOf = (r: Row) => r.forks ?? r.hosts;
    const forks = [...new Set(rows.filter((r) => r.tool === 'wpfarm' && r.hosts === n).map(forksOf))].sort((a, b) => b - a);
    for (const [fk, scenario] of forks.flatMap((f) => (['first', 'rerun'] as const).map((s) => [f, s] as const))) {
      const w = rows.find((r) => r.tool === 'wpfarm' && r.hosts === n && r.scenario === scenario && forksOf(r) === fk);
      const a = rows.find((r) => r.tool === 'ansible' && r.hosts === n && r.scenario === scenario);
      const f = rows.find((r) => r.tool === 'floor' && r.hosts === n);
      if (!w) continue;
      out.push(
        `| ${n} | ${fk} | ${scenario} | ${w.wall_s.toFixed(2)} | ${a ? a.wall_s.toFixed(2) : 'not run'} | ${f ? f.wall_s.toFixed(2) : ''} | ` +
          `${a ? `${(a.wall_s / w.wall_s).toFixed(1)}x` : ''} | ${f ? `${(w.wall_s / f.wall_s).toFixed(2)}x` : ''} | ` +
          `${((w.cpu_s * 1000) / (TASKS * n)).toFixed(2)} / ${(((w.engine_cpu_s ?? 0) * 1000) / (TASKS * n)).toFixed(2)} | ` +
          `${a ? ((a.cpu_s * 1000) / (TASKS * n)).toFixed(1) : ''} | ${w.peak_rss_mb.toFixed(0)} | ${w.changed} / ${a ? a.changed : '-'} | ` +
          `${w.failed ?? ''} / ${f?.failed ?? ''} | ${w.load_start !== undefined ? `${w.load_start}→${w.load_end}` : ''} |`,
      );
    }
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  ensureAnsible();
  if (CLI === 'fast') await buildCli();
  const rows: Row[] = [];
  const previous = existsSync('bench/results/latest.json') ? (JSON.parse(readFileSync('bench/results/latest.json', 'utf8')) as Row[]) : [];
  // the add-site row (bench/add-site.ts, on the lab) is not this bench's: always kept as it is
  const addSiteRows = previous.filter((r) => (r.scenario as string) === 'add-site');
  const keptRows: Row[] = process.env.BENCH_KEEP ? previous.filter((r) => !NS.includes(r.hosts) && !addSiteRows.includes(r)) : [];
  mkdirSync('bench/results', { recursive: true });
  for (const n of NS) {
    await benchN(n, rows);
    rows.push(...keptRows.splice(0)); // written after every N: a long scale run that dies keeps what it measured
    rows.sort((a, b) => a.hosts - b.hosts);
    writeFileSync('bench/results/latest.json', `${JSON.stringify([...rows, ...addSiteRows], null, 2)}\n`);
  }
  const t = table(rows);
  console.log(`\n${t}\n`);
  let sites = '';
  if (existsSync('bench/sites-render.ts')) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/sites-render.ts'], { encoding: 'utf8' });
    sites = `Sites: rendering and diffing 500 site stacks (bench/sites-render.ts):\n\n\`\`\`\n${(r.stdout + r.stderr).trim()}\n\`\`\``;
    console.log(sites);
  }
  const readme = existsSync('bench/README.md') ? readFileSync('bench/README.md', 'utf8') : '';
  const start = '<!-- results:start -->';
  const end = '<!-- results:end -->';
  const kept = process.env.BENCH_KEEP ? ' (rows of other N kept from the previous results)' : '';
  const block =
    `${start}\nMeasured ${new Date().toISOString()} on this machine (${NS.join(', ')} hosts${kept}, ${REPS} repetitions, medians; wpfarm ` +
    `started ${CLI === 'fast' ? 'through the fast CLI' : 'through tsx'}; \`make bench\`; Ansible ${Number.isFinite(ANSIBLE_MAX_N) ? `up to ${ANSIBLE_MAX_N} hosts` : 'at every N'}). The machine is ` +
    `shared with other jobs: the load average (1 min) at the start and end of each run is in the table and in latest.json; ` +
    `wall times under a high load are the machine's, not the tool's.\n\n${t}\n\n${sites}\n${end}`;
  writeFileSync(
    'bench/README.md',
    readme.includes(start) ? readme.replace(new RegExp(`${start}[\\s\\S]*${end}`), block) : `${readme}\n${block}\n`,
  );
  console.log('bench: wrote bench/results/latest.json and bench/README.md');
  // BENCH_ADD_SITE=1: add-site on the (converged) lab too, median of 5 (bench/add-site.ts --record)
  if (process.env.BENCH_ADD_SITE) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/add-site.ts', '--record'], { stdio: 'inherit' });
    if (r.status !== 0) console.error(`bench: bench/add-site.ts exited ${r.status}`);
  }
}

await main();
