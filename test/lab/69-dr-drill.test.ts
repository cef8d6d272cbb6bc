// Lab tier: the DR drill into scratch STACKS (issue 18, item 4), on the lab's real farm.
//   - a real WordPress site of its own (add-site, prefix dr66) with a post written through WordPress
//   - two real Ceph RGWs on this machine's loopback (test/harness/rgw.ts): the primary region's store and the second
//     region's; the site backed up to the primary (backup.ts, over SSH), copied and verified to the replica
//     (--what replicate), then the PRIMARY GATEWAY KILLED
//   - dr-drill.ts --site: restored from the replica alone into a scratch database (db host) and a scratch directory on
//     the Gluster volume, identical to the live site (CHECKSUM TABLE, row counts, sha256 of every file), then served
//     by a scratch stack on the swarm (the site's own stack, no public router): its home page answers 200 with the
//     site's title and the post answers 200 with its title, through its nginx; RTO = restore start → answering
//   - afterwards nothing scratch is left: stacks, services, networks, secrets (manager), databases and users (Galera),
//     directories on the Gluster volume, the deploy record; the live site still serves
// Prerequisites: a converged farm with the site images (30-galera, 40-gluster, 50-site-images; 60-sites proves
// add-site). Runnable alone when the lab is up:
//   flock /run/wpfarm-lab.lock env WPFARM_LAB=test node --import tsx --test --test-concurrency=1 test/lab/69-dr-drill.test.ts
import { assertLabUp, cli as labCli, inService, INVENTORY, KEY, KNOWN, nodesOf, ROOT, run, ssh } from '../harness/lab-sites.ts';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { quote } from 'zx';
import { ageKeygen } from '../../roles/backup/keys.ts';
import type { DrillReport } from '../../roles/backup/drill.ts';
import { startRgw, type Rgw } from '../harness/rgw.ts';

const stamp = Date.now().toString(36).slice(-5);
const S = { domain: `dr66${stamp}.lab.test`, id: `dr66${stamp}-lab-test`, title: `DR drill site ${stamp}` };
const POST = `Post ${stamp} before the disaster`;
const DB = `wp_${S.id.replace(/-/g, '_')}`;
const MOUNT = '/mnt/gluster/sites';
let work = '';
let sitesDir = '';
let a: Rgw | undefined; // the primary region
let b: Rgw | undefined; // the second region
let env: NodeJS.ProcessEnv = {};
let inventory = '';
let secrets: string[] = [];
let added = false;
const timings: Record<string, number> = {};

/** A playbook as an operator runs it on the lab (no --local), settings from the environment. */
async function play(script: string, args: string[]): Promise<{ code: number; out: string; stdout: string; ms: number }> {
  const t0 = Date.now();
  const r = await run(
    process.execPath,
    ['--no-warnings', '--import', 'tsx', `playbooks/${script}`, '--inventory', inventory, '--sites-dir', sitesDir, ...args],
    { cwd: ROOT, env, timeout: 15 * 60_000, maxBuffer: 64 << 20 },
  ).then(
    (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );
  const out = `${r.stdout}${r.stderr}`;
  for (const s of secrets) assert.ok(!out.includes(s), `${script}: a secret value is in its output`);
  return { code: r.code, out, stdout: r.stdout, ms: Date.now() - t0 };
}

/** Everything scratch of the drill on the farm, one line per kind (empty lines: nothing left). */
async function scratchLeft(): Promise<Record<string, string>> {
  const mgr = await ssh(
    'mgr1',
    'echo "stacks=$(docker stack ls --format {{.Name}} | grep drdrill | tr "\\n" " ")"; ' +
      'echo "services=$(docker service ls --format {{.Name}} | grep drdrill | tr "\\n" " ")"; ' +
      'echo "networks=$(docker network ls --format {{.Name}} | grep drdrill | tr "\\n" " ")"; ' +
      'echo "secrets=$(docker secret ls --format {{.Name}} | grep drdrill | tr "\\n" " ")"; ' +
      'echo "records=$(ls /var/lib/wpfarm/stacks 2>/dev/null | grep drdrill | tr "\\n" " ")"',
  );
  const db = await ssh(
    'db1',
    `mariadb -N -B -e ${quote(
      "SELECT CONCAT('db:', SCHEMA_NAME) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '%drdrill%' " +
        "UNION ALL SELECT CONCAT('user:', User, '@', Host) FROM mysql.user WHERE User LIKE '%drdrill%'",
    )} | tr '\\n' ' '`,
  );
  const dirs = await ssh('wrk1', `ls -A ${MOUNT} | grep drdrill | tr '\\n' ' '; true`);
  const out: Record<string, string> = { database: db.trim(), directories: dirs.trim() };
  for (const line of mgr.split('\n')) {
    const [k = '', v = ''] = line.split('=');
    out[k] = v.trim();
  }
  return out;
}

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'wpfarm-dr66-'));
  sitesDir = path.join(work, 'sites');
  await assertLabUp(['mgr1', 'wrk1', 'wrk2', 'db1']);
  // the backup role's tools (65-backup converges it): converged here only when missing
  const tools = [
    await ssh('db1', 'command -v age mariadb-dump', { nothrow: true }),
    await ssh('wrk1', 'command -v restic age', { nothrow: true }),
  ];
  if (tools.some((x) => x.startsWith('ERROR') || x.split('\n').length < 2)) {
    const r = await labCli(work, 'playbooks/run-role.ts', ['backup'], 20 * 60_000);
    assert.equal(r.code, 0, `run-role backup: ${r.out.slice(-3000)}`);
  }
  const t0 = Date.now();
  [a, b] = await Promise.all([startRgw(), startRgw()]);
  timings.rgwStartMs = Date.now() - t0;
  const keys = await ageKeygen();
  const restic = `dr66-restic-${Math.random().toString(36).slice(2)}-${stamp}`;
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    WPFARM_S3_ENDPOINT: a.endpoint,
    WPFARM_S3_REGION: a.region,
    WPFARM_S3_BUCKET: `dr66-fra1-${stamp}`,
    WPFARM_S3_ACCESS_KEY: a.accessKeyId,
    WPFARM_S3_SECRET_KEY: a.secretAccessKey,
    WPFARM_S3_REPLICA_ACCESS_KEY: b.accessKeyId,
    WPFARM_S3_REPLICA_SECRET_KEY: b.secretAccessKey,
    WPFARM_BACKUP_AGE_IDENTITY: keys.identity,
    // the process environment wins over the lab's env file, which has a recipient of its own
    WPFARM_BACKUP_AGE_RECIPIENT: keys.recipient,
    WPFARM_RESTIC_PASSWORD: restic,
  };
  // an inventory of its own: the replica's settings, the lab's key and known_hosts
  const inv = parseYaml(readFileSync(INVENTORY, 'utf8')) as {
    vars: Record<string, unknown>;
    settings: Record<string, unknown>;
    hosts: Record<string, { key?: string }>;
  };
  inv.vars.backup_replica_endpoint = b.endpoint;
  inv.vars.backup_replica_bucket = `dr66-ams3-${stamp}`;
  inv.settings.known_hosts = KNOWN;
  for (const h of Object.values(inv.hosts)) h.key = KEY;
  inventory = path.join(work, 'inventory.yml');
  writeFileSync(inventory, stringifyYaml(inv));
  secrets = [a.secretAccessKey, b.secretAccessKey, keys.identity, restic];
  // the buckets (the playbooks never create a bucket: an operator's store has it)
  const { ObjectStore } = await import('../../roles/backup/s3.ts');
  for (const [g, bucket] of [
    [a, `dr66-fra1-${stamp}`],
    [b, `dr66-ams3-${stamp}`],
  ] as const) {
    const st = new ObjectStore({
      endpoint: g.endpoint,
      region: g.region,
      bucket,
      accessKeyId: g.accessKeyId,
      secretAccessKey: g.secretAccessKey,
    });
    await st.ensureBucket();
    st.destroy();
  }
});

after(async () => {
  if (added) {
    const r = await labCli(work, 'playbooks/remove-site.ts', ['--domain', S.domain, '--yes', '--no-backup', '--sites-dir', sitesDir]);
    if (r.code !== 0) console.log(`# remove-site: exit ${r.code}: ${r.out.slice(-1500)}`);
  }
  await Promise.allSettled([a?.stop(), b?.stop()]);
  if (work) rmSync(work, { recursive: true, force: true });
  console.log(`# dr drill lab timings (ms): ${JSON.stringify(timings)}`);
});

test('DR drill from the replica alone into a scratch stack: identical, answering with its title and post, nothing left', {
  timeout: 30 * 60_000,
}, async (t) => {
  assert.deepEqual(Object.values(await scratchLeft()).filter(Boolean), [], 'no scratch of an earlier drill on the farm');
  // a real WordPress site with a post written through WordPress
  let t0 = Date.now();
  // without the WordPress exporter (lab 76 covers it): its probes would change the live database between backup and drill
  const add = await labCli(work, 'playbooks/add-site.ts', [
    '--domain',
    S.domain,
    '--title',
    S.title,
    '--sites-dir',
    sitesDir,
    '--skip-tags',
    'exporter',
  ]);
  added = existsSync(path.join(sitesDir, `${S.id}.yml`));
  timings.addSiteMs = Date.now() - t0;
  assert.equal(add.code, 0, add.out.slice(-4000));
  const fpm = (await nodesOf(`wp-${S.id}_php-fpm`))[0];
  assert.ok(fpm, 'php-fpm runs');
  const php =
    "require '/var/www/html/wp-load.php'; " +
    "$id = wp_insert_post(['post_title' => $argv[1], 'post_status' => 'publish', 'post_content' => 'x']); " +
    "echo is_wp_error($id) ? 'ERR' : $id;";
  assert.match(await inService(fpm, `wp-${S.id}_php-fpm`, ['php', '-r', php, POST]), /^[0-9]+$/);

  // backed up to the primary, copied and verified to the second region; then the primary region is lost
  t0 = Date.now();
  for (const what of ['sites-db', 'files']) {
    const r = await play('backup.ts', ['--what', what, '--site', S.id]);
    assert.equal(r.code, 0, `${what}: ${r.out.slice(-3000)}`);
  }
  const rep = await play('backup.ts', ['--what', 'replicate']);
  assert.equal(rep.code, 0, rep.out.slice(-3000));
  timings.backupAndReplicateMs = Date.now() - t0;
  await a!.killGateway();
  const liveRows = Number(await ssh('db1', `mariadb -N -e ${quote(`SELECT COUNT(*) FROM \`${DB}\`.wp_posts`)}`));

  // the drill
  const json = path.join(work, 'drill.json');
  const md = path.join(work, 'drill.md');
  const d = await play('dr-drill.ts', ['--site', S.id, '--json', json, '--markdown', md]);
  timings.drillMs = d.ms;
  assert.equal(d.code, 0, d.out.slice(-4000));
  const report = (JSON.parse(readFileSync(json, 'utf8')) as { data: { drDrill: DrillReport } }).data.drDrill;
  assert.equal(report.ok, true, JSON.stringify(report.sites.map((s) => s.problems)));
  assert.match(report.replica, new RegExp(`/dr66-ams3-${stamp}$`));
  const s = report.sites[0]!;
  assert.equal(s.site, S.id);
  // identical to the live site, as the restore test checks
  assert.equal(s.db?.identicalToLive, true, 'CHECKSUM TABLE of every table as live');
  assert.equal(s.db?.rowCountsMatchLive, true, 'row counts as live');
  assert.ok((s.db?.rows ?? 0) > liveRows, `rows of every table (${s.db?.rows}) > the posts alone (${liveRows})`);
  assert.equal(s.files?.identicalToLive, true, 'sha256 of every file as live');
  // served by the scratch stack: the home page with the site's title, the post with its title
  assert.equal(s.stack?.stack, `wp-${S.id}-drdrill`);
  assert.equal(s.stack?.home?.code, 200);
  assert.equal(s.stack?.home?.title, S.title);
  assert.equal(s.stack?.home?.found, true);
  assert.equal(s.stack?.post?.code, 200);
  assert.equal(s.stack?.post?.title, POST);
  assert.equal(s.stack?.post?.found, true);
  assert.deepEqual(s.stack?.leftovers, []);
  // RTO: restore start → answering, so at least the restores plus the stack's time to answer
  assert.equal(s.rtoUntil, 'site answering');
  const parts = (s.db?.restoreMs ?? 0) + (s.files?.restoreMs ?? 0) + (s.stack?.answerMs ?? 0);
  assert.ok(s.rtoMs >= parts && s.rtoMs <= s.wallMs, `RTO ${s.rtoMs} ms: restores + stack ${parts} ms, wall ${s.wallMs} ms`);
  assert.equal(report.maxRtoMs, s.rtoMs);
  const text = readFileSync(md, 'utf8');
  assert.match(text, /^# DR drill \d{4}-\d{2}-\d{2}: PASSED$/m);
  assert.match(text, new RegExp(`^\\| ${S.id} \\| ok \\| \\d+\\.\\d s \\|.*\\| 200, title found \\(/\\) \\| 200, title found `, 'm'));
  t.diagnostic(
    `drill ${d.ms} ms: RTO ${s.rtoMs} ms (db restore ${s.db?.restoreMs}, files restore ${s.files?.restoreMs}, ` +
      `stack ready ${s.stack?.readyMs}, answering ${s.stack?.answerMs}); ` +
      `${s.db?.tables} tables, ${s.db?.rows} rows, ${s.files?.files} files`,
  );
  timings.rtoMs = s.rtoMs;

  // nothing scratch left on the farm; the live site untouched and serving
  const left = await scratchLeft();
  assert.deepEqual(
    Object.entries(left).filter(([, v]) => v),
    [],
    `scratch left: ${JSON.stringify(left)}`,
  );
  const nginx = (await nodesOf(`wp-${S.id}_nginx`))[0]!;
  const page = await inService(nginx, `wp-${S.id}_nginx`, [
    'curl',
    '-sS',
    '-w',
    '\n%{http_code}',
    '-H',
    `Host: ${S.domain}`,
    '-H',
    'X-Forwarded-Proto: https',
    'http://127.0.0.1:8080/',
  ]);
  assert.equal(page.split('\n').pop(), '200');
  assert.ok(page.includes(S.title));
});
