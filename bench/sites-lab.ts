// Bench (issue 17 item 6, farm): N sites side by side on the lab, created by add-sites (--from FILE) in batches at a
// bounded concurrency: total time, memory per site, every site serving, the no-change reconcile of all N (time and
// round trips per manager; target ≤ 3 s, O(1) round trips per manager), list-sites (target ≤ 2 s), and with --update
// a rolling image update across all of them (playbooks/update.ts; total time).
//   node --import tsx bench/sites-lab.ts [--sites 100] [--batch 25] [--concurrency 4] [--max-minutes M]
//     [--var k=v ...] [--update] [--keep] [--record]
// --var: an extra var for every playbook the bench runs (`-e k=v`), e.g. --var wp_health_interval=30s (recorded).
// The lab is $WPFARM_LAB's (scripts/lab/config.ts: the user's lab by default, as `make bootstrap` makes it;
// WPFARM_LAB=test: the test lab). Needs the converged lab and phase 3's images. Playbooks run through the fast CLI
// as `make add-site` runs them. Site records go to a temporary directory; the sites are removed at the end unless
// --keep. Between batches the machine's available memory is read: the bench stops adding sites (and says so) when
// the next batch would leave less than MIN_AVAILABLE_GIB available (the machine is shared). Prints one JSON line;
// --record writes the row into bench/results/latest.json (scenario "sites-lab") and bench/README.md, and
// bench/results/sites-lab.json.
import { execFile } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { quote } from 'zx';
import { IMAGES_DIR } from '../roles/wp-site/images.ts';
import { buildCli } from '../scripts/build-cli.ts';
import { INVENTORY_FILE, NODES, PATHS, PROFILE, ROOT } from '../scripts/lab/config.ts';
import { median, nodeArgs, recordScenario } from './util.ts';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? dflt : Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} ${process.argv[i + 1]}: a positive integer is expected`);
  return v;
};
const N = arg('sites', 100);
const BATCH = arg('batch', 25);
const CONCURRENCY = arg('concurrency', 4);
/** stop adding batches when the next one would end past this many minutes of adding (0: no budget) */
const MAX_MINUTES = process.argv.includes('--max-minutes') ? arg('max-minutes', 1) : 0;
/** the machine is shared: never leave less available than this */
const MIN_AVAILABLE_GIB = 4;
const RECONCILE_TARGET_S = 3;
const LIST_TARGET_S = 2;
const execP = promisify(execFile);
/** --var k=v (repeatable): passed to every playbook as -e k=v */
const VARS = process.argv.flatMap((a, i) => (a === '--var' ? [process.argv[i + 1] ?? ''] : []));
for (const v of VARS) if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(v)) throw new Error(`--var ${v}: k=v is expected`);
const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-bench-sites-'));
const dir = path.join(work, 'sites');
const stamp = Date.now().toString(36).slice(-4);
const sites = Array.from({ length: N }, (_, i) => ({ domain: `s${i}-${stamp}.lab.test`, id: `s${i}-${stamp}-lab-test` }));
const ADDR: Record<string, string> = Object.fromEntries(NODES.map((n) => [n.name, n.address]));
const SWARM = NODES.filter((n) => n.groups.includes('managers') || n.groups.includes('workers')).map((n) => n.name);
const MANAGERS = NODES.filter((n) => n.groups.includes('managers')).map((n) => n.name);
const load1 = (): number => +loadavg()[0]!.toFixed(2);
const secs = (t0: number): number => +((performance.now() - t0) / 1000).toFixed(2);
const say = (s: string): void => console.error(`[sites-lab ${new Date().toISOString().slice(11, 19)}] ${s}`);

interface Report {
  exitCode: number;
  wallMs: number;
  roundTrips: number;
  roundTripsAt?: Record<string, number[]>;
  results: { host: string; step: string; status: string }[];
}

/** A playbook through the fast CLI on this lab's inventory, with its JSON report; never throws on a non-zero exit. */
async function cli(
  script: string,
  args: string[],
  timeoutMs = 60 * 60_000,
): Promise<{ code: number; out: string; s: number; report?: Report }> {
  const json = path.join(work, `r-${Math.random().toString(36).slice(2)}.json`);
  const t0 = performance.now();
  let code = 0;
  let out = '';
  try {
    const r = await execP(process.execPath, nodeArgs('fast', script, ['--inventory', INVENTORY_FILE, '--json', json, ...VARS.flatMap((v) => ['-e', v]), ...args]), {
      cwd: ROOT,
      timeout: timeoutMs,
      maxBuffer: 256 << 20,
    });
    out = r.stdout + r.stderr;
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    code = typeof err.code === 'number' ? err.code : -1;
    out = `${err.stdout ?? ''}${err.stderr ?? ''}`;
  }
  const s = secs(t0);
  return { code, out, s, report: existsSync(json) ? (JSON.parse(readFileSync(json, 'utf8')) as Report) : undefined };
}

async function ssh(host: string, cmd: string): Promise<string> {
  const r = await execP(
    'ssh',
    [
      '-i',
      PATHS.clientKey,
      '-o',
      `UserKnownHostsFile=${PATHS.knownHosts}`,
      '-o',
      'LogLevel=ERROR',
      '-o',
      'BatchMode=yes',
      `root@${ADDR[host] ?? host}`,
      cmd,
    ],
    { maxBuffer: 64 << 20, timeout: 10 * 60_000 },
  );
  return r.stdout.trim();
}

/** MemAvailable of this machine (the lab's nodes are containers on it), GiB */
const availableGiB = (): number => Number(/MemAvailable:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) / 1024 / 1024;

const mib = (s: string): number => {
  const m = /^([\d.]+)\s*([KMG]i?B|B)/.exec(s.trim());
  if (!m) return 0;
  const v = Number(m[1]);
  return m[2]!.startsWith('G') ? v * 1024 : m[2]!.startsWith('K') ? v / 1024 : m[2] === 'B' ? v / 1048576 : v;
};

/** Every site's home page through one of its nginx tasks (its Host header): one ssh per swarm node. */
async function serving(of: typeof sites): Promise<number> {
  const ok = new Set<string>();
  const script = of
    .map(
      (s) =>
        `c=$(docker ps -q --filter ${quote(`label=com.docker.swarm.service.name=wp-${s.id}_nginx`)} | head -n1); ` +
        `[ -n "$c" ] && echo ${s.id} $(docker exec "$c" curl -s -o /dev/null -w '%{http_code}' -H ${quote(`Host: ${s.domain}`)} ` +
        `-H 'X-Forwarded-Proto: https' http://127.0.0.1:8080/)`,
    )
    .join('\n');
  for (const n of SWARM) {
    const out = await ssh(n, `bash -s <<'EOF'\n${script}\nEOF`).catch((e: Error) => `ERROR ${e.message}`);
    for (const line of out.split('\n')) {
      const [id, code] = line.split(' ');
      if (code === '200') ok.add(id!);
    }
  }
  return ok.size;
}

/** The sites' home pages through the lab's edge (the request path a user takes: TLS with the lab CA, a manager's :443). */
async function servingAtEdge(of: typeof sites): Promise<number> {
  const ca = path.join(PATHS.stateDir, 'ca', 'ca.crt');
  const edge = ADDR[MANAGERS[0]!]!;
  let ok = 0;
  for (const s of of) {
    const r = await execP('curl', [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '20',
      '--cacert',
      ca,
      '--resolve',
      `${s.domain}:443:${edge}`,
      `https://${s.domain}/`,
    ]).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
    if (r.stdout.trim() === '200') ok++;
  }
  return ok;
}

/** Memory of the sites' containers (docker stats on every swarm node), MiB, and how many containers. */
async function siteMemory(of: typeof sites): Promise<{ mib: number; containers: number; perNode: Record<string, number> }> {
  let total = 0;
  let containers = 0;
  const perNode: Record<string, number> = {};
  const ids = new Set(of.map((s) => `wp-${s.id}_`));
  for (const n of SWARM) {
    const out = await ssh(n, `docker stats --no-stream --format '{{.Name}} {{.MemUsage}}'`);
    let node = 0;
    for (const line of out.split('\n')) {
      const [name, ...rest] = line.split(' ');
      const stack = name?.slice(0, name.indexOf('_') + 1);
      if (!stack || !ids.has(stack)) continue;
      node += mib(rest.join(' ').split('/')[0]!);
      containers++;
    }
    perNode[n] = +node.toFixed(0);
    total += node;
  }
  return { mib: total, containers, perNode };
}

const perManager = (r?: Report): Record<string, number> => Object.fromEntries(MANAGERS.map((m) => [m, r?.roundTripsAt?.[m]?.length ?? 0]));

const added: typeof sites = [];
try {
  say(`lab profile ${PROFILE.name} (${INVENTORY_FILE}); ${N} sites in batches of ${BATCH}, ${CONCURRENCY} at once`);
  await buildCli();
  const img = await cli('playbooks/run-role.ts', ['images']);
  if (img.code !== 0) throw new Error(`the images role failed:\n${img.out.slice(-3000)}`);
  say(`phase 3's images: ${img.s} s`);
  const availStart = availableGiB();
  const load0 = load1();
  const batches: {
    sites: number;
    s: number;
    code: number;
    failed_first: number;
    failed_after_rerun: number;
    available_gib: number;
    load: number;
  }[] = [];
  let stopped = '';
  const t0 = performance.now();
  for (let i = 0; i < N; i += BATCH) {
    const batch = sites.slice(i, i + BATCH);
    const elapsed = (performance.now() - t0) / 60_000;
    const last = (batches.at(-1)?.s ?? 0) / 60;
    if (MAX_MINUTES && elapsed + last > MAX_MINUTES) {
      stopped = `stopped at ${added.length} sites: the time budget (--max-minutes ${MAX_MINUTES}) would be exceeded by the next batch`;
      say(stopped);
      break;
    }
    const avail = availableGiB();
    const perSite = added.length ? (availStart - avail) / added.length : 0.1;
    if (avail - perSite * batch.length < MIN_AVAILABLE_GIB) {
      stopped =
        `stopped at ${added.length} sites: ${avail.toFixed(1)} GiB available, ` +
        `the next ${batch.length} would leave < ${MIN_AVAILABLE_GIB} GiB`;
      say(stopped);
      break;
    }
    const file = path.join(work, `batch-${i}.yml`);
    writeFileSync(file, batch.map((s) => `- domain: ${s.domain}\n`).join(''));
    const args = ['--from', file, '--concurrency', String(CONCURRENCY), '--sites-dir', dir];
    let r = await cli('playbooks/add-sites.ts', args);
    added.push(...batch);
    let s = r.s;
    let failed = 0;
    if (r.code === 2) {
      // some sites failed (named in the output): a rerun of the same file resumes them, as an operator would
      failed = (r.out.match(/^FAILED /gm) ?? []).length;
      say(
        `batch ${i / BATCH + 1}: ${failed} site(s) failed in ${r.s} s:\n` +
          `${(r.out.match(/^FAILED .*$/gm) ?? []).join('\n')}\nrerunning the file`,
      );
      r = await cli('playbooks/add-sites.ts', args);
      s += r.s;
    }
    batches.push({
      sites: batch.length,
      s: +s.toFixed(2),
      code: r.code,
      failed_first: failed,
      failed_after_rerun: r.code === 2 ? (r.out.match(/^FAILED /gm) ?? []).length : 0,
      available_gib: +availableGiB().toFixed(1),
      load: load1(),
    });
    say(
      `batch ${i / BATCH + 1}: ${batch.length} sites in ${s.toFixed(1)} s (exit ${r.code}); ` +
        `${batches.at(-1)!.available_gib} GiB available, load ${load1()}`,
    );
    if (r.code === 2) say(`still failed after the rerun:\n${(r.out.match(/^FAILED .*$/gm) ?? []).join('\n')}`);
    else if (r.code !== 0) throw new Error(`add-sites failed (exit ${r.code}):\n${r.out.slice(-4000)}`);
  }
  const totalS = secs(t0);
  const availEnd = availableGiB();
  const nginx = await serving(added);
  const edge = await servingAtEdge(added);
  const mem = await siteMemory(added);
  say(`serving ${nginx}/${added.length} (nginx), ${edge}/${added.length} (edge); ${(mem.mib / added.length).toFixed(1)} MiB per site`);

  // the no-change reconcile of every site (the wp-site role on the records), then list-sites: 3 runs each, medians
  const recs: { s: number; wall_s: number; rt: number; per: Record<string, number>; changed: number; code: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await cli('playbooks/run-role.ts', ['wp-site', '-e', `wp_sites_dir=${dir}`]);
    recs.push({
      s: r.s,
      wall_s: +((r.report?.wallMs ?? 0) / 1000).toFixed(2),
      rt: r.report?.roundTrips ?? -1,
      per: perManager(r.report),
      changed: r.report?.results.filter((x) => x.status === 'changed').length ?? -1,
      code: r.code,
    });
    say(
      `reconcile ${i + 1}: ${r.s} s (run ${recs.at(-1)!.wall_s} s), ${recs.at(-1)!.rt} round trips ` +
        `${JSON.stringify(recs.at(-1)!.per)}, ${recs.at(-1)!.changed} changed, exit ${r.code}`,
    );
  }
  const lists: { s: number; rows: number; code: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await cli('playbooks/list-sites.ts', ['--sites-dir', dir, '--format', 'json']);
    let rows = -1;
    try {
      rows = (JSON.parse(r.out.slice(r.out.indexOf('['), r.out.lastIndexOf(']') + 1)) as unknown[]).length;
    } catch {}
    lists.push({ s: r.s, rows, code: r.code });
    say(`list-sites ${i + 1}: ${r.s} s, ${rows} rows, exit ${r.code}`);
  }

  const row = {
    tool: 'wpfarm',
    scenario: 'sites-lab',
    lab: PROFILE.name,
    hosts: NODES.length,
    sites: added.length,
    sites_asked: N,
    stopped: stopped || undefined,
    batch: BATCH,
    concurrency: CONCURRENCY,
    vars: VARS.length ? VARS : undefined,
    total_s: totalS,
    sites_per_minute: +((added.length / totalS) * 60).toFixed(1),
    batches,
    images_role_s: img.s,
    serving_nginx: `${nginx}/${added.length}`,
    serving_edge: `${edge}/${added.length}`,
    memory_mib_per_site: +(mem.mib / added.length).toFixed(1),
    memory_containers: mem.containers,
    memory_mib_per_node: mem.perNode,
    host_available_gib: { start: +availStart.toFixed(1), end: +availEnd.toFixed(1) },
    host_mib_per_site: +(((availStart - availEnd) * 1024) / added.length).toFixed(1),
    reconcile_s: median(recs.map((r) => r.s)),
    reconcile_run_s: median(recs.map((r) => r.wall_s)),
    reconcile_runs_s: recs.map((r) => r.s),
    reconcile_round_trips: median(recs.map((r) => r.rt)),
    reconcile_round_trips_per_manager: recs[0]!.per,
    reconcile_changes: Math.max(...recs.map((r) => r.changed)),
    reconcile_target_s: RECONCILE_TARGET_S,
    list_sites_s: median(lists.map((r) => r.s)),
    list_sites_runs_s: lists.map((r) => r.s),
    list_sites_rows: lists[0]!.rows,
    list_sites_target_s: LIST_TARGET_S,
    update: undefined as Record<string, unknown> | undefined,
    load_start: load0,
    load_end: load1(),
    at: new Date().toISOString(),
  };
  console.log(JSON.stringify(row));
  if (process.argv.includes('--record')) record(row);
  // recorded first: an update cut short leaves the rest recorded
  let update: Record<string, unknown> | undefined;
  if (process.argv.includes('--update')) {
    // a new wordpress-fpm image (one more LABEL: new content-hashed tags), rolled across every site in waves
    const images = path.join(work, 'images-new');
    cpSync(IMAGES_DIR, images, { recursive: true });
    appendFileSync(path.join(images, 'wordpress-fpm', 'Dockerfile'), `\nLABEL org.wpfarm.bench.update="${stamp}"\n`);
    const l = load1();
    const r = await cli('playbooks/update.ts', ['--images', images, '--sites-dir', dir, '--state', path.join(work, 'update.json')]);
    const waves = [...r.out.matchAll(/^.*wave \d+.*$/gm)].map((m) => m[0].trim()).slice(0, 20);
    update = { s: r.s, code: r.code, round_trips: r.report?.roundTrips, load_start: l, load_end: load1(), waves: waves.length };
    say(`update: ${r.s} s, exit ${r.code}`);
    if (r.code !== 0) say(r.out.slice(-4000));
    update.serving_after = await serving(added);
  }

  if (update) {
    row.update = update;
    row.load_end = load1();
    console.log(JSON.stringify(row));
    if (process.argv.includes('--record')) record(row);
  }
  if (recs.some((r) => r.code !== 0) || lists.some((r) => r.code !== 0)) process.exitCode = 1;
} finally {
  if (!process.argv.includes('--keep')) {
    const t = performance.now();
    for (const s of added) {
      const r = await cli('playbooks/remove-site.ts', ['--domain', s.domain, '--yes', '--no-backup', '--sites-dir', dir]);
      if (r.code !== 0) say(`cleanup of ${s.domain}: exit ${r.code}`);
    }
    say(`removed ${added.length} sites in ${secs(t)} s`);
  }
  if (process.argv.includes('--keep')) say(`kept: the sites and their records in ${dir}`);
  else rmSync(work, { recursive: true, force: true });
}

function record(row: Record<string, unknown>): void {
  writeFileSync(path.join(ROOT, 'bench/results/sites-lab.json'), `${JSON.stringify(row, null, 2)}\n`);
  const v = (k: string): string => JSON.stringify(row[k]).replace(/^"|"$/g, '');
  const u = row.update as { s: number; code: number; serving_after: number } | undefined;
  const text = [
    `Measured ${v('at')} on the ${v('lab')} lab (${v('hosts')} nodes) by`,
    `\`node --import tsx bench/sites-lab.ts --record${u ? ' --update' : ''}\`:`,
    `${v('sites')} sites created by add-sites (batches of ${v('batch')}, ${v('concurrency')} at once), then measured on the lab.`,
    `The machine is shared (2 cores): load average (1 min) ${v('load_start')} at the start, ${v('load_end')} at the end.`,
  ].join('\n');
  const rows = [
    `| sites created | ${v('sites')} in ${v('total_s')} s (${v('sites_per_minute')} per minute)${row.stopped ? `; ${v('stopped')}` : ''} |`,
    `| serving (GET / through nginx; through the edge with TLS) | ${v('serving_nginx')}; ${v('serving_edge')} |`,
    `| memory per site (docker stats of its containers; machine's available memory drop) | ` +
      `${v('memory_mib_per_site')} MiB; ${v('host_mib_per_site')} MiB |`,
    `| no-change reconcile of all (median of 3; runs) | ${v('reconcile_s')} s (${v('reconcile_runs_s')}); ` +
      `target ≤ ${RECONCILE_TARGET_S} s |`,
    `| its round trips (total; per manager) | ${v('reconcile_round_trips')}; ${v('reconcile_round_trips_per_manager')} |`,
    `| its changes | ${v('reconcile_changes')} |`,
    `| list-sites (median of 3; runs) | ${v('list_sites_s')} s (${v('list_sites_runs_s')}); target ≤ ${LIST_TARGET_S} s |`,
    u ? `| rolling image update of all (update.ts) | ${u.s} s, exit ${u.code}; serving after: ${u.serving_after} |` : '',
  ].filter(Boolean);
  recordScenario('sites-lab', row, `${text}\n\n| measure | value |\n|---|---|\n${rows.join('\n')}`, `${v('sites')} sites on the lab`);
}
