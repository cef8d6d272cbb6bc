// Cross-region backups and the DR drill against TWO real Ceph RADOS Gateways (two independent clusters on
// loopback: the primary region's store and the second region's) and a real MariaDB, through the playbooks as an
// operator runs them (`--local`: this machine is the db and files host):
// - backup.ts --what replicate: every object copied, verified (counts; each object's sha256 checked here by the
//   test itself, source against replica), restic check of each replica repository, the lag metric written;
// - a replica object corrupted and another deleted: --verify-replica and restic check detect them (exit 2), the
//   next replicate repairs both;
// - retention on both: an expired dump pruned on the source stays on the replica until the replica's own retention
//   removes it (and it is not copied back); restic forget on the source is mirrored (same snapshots on both);
// - dr-drill.ts with the PRIMARY GATEWAY KILLED: the sites restored from the replica alone into scratch, identical
//   to the live sites (CHECKSUM TABLE, row counts counted here, sha256 of every file), RTO per site in the JSON
//   report and the markdown; a corrupted replica dump fails the drill (exit 2).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, mkdir, writeFile, readFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRgw, type Rgw } from '../harness/rgw.ts';
import { startMariaDb, type LocalMariaDb } from '../harness/backup-mariadb.ts';
import { createSiteDb, createSiteFiles } from '../harness/backup-site.ts';
import { ageKeygen } from '../../roles/backup/keys.ts';
import { ObjectStore, type StoreConfig } from '../../roles/backup/s3.ts';
import { LocalShell } from '../../roles/backup/runner.ts';
import { backupSiteDb, pruneSiteDb } from '../../roles/backup/db.ts';
import { forgetSiteFiles, listSnapshots, backupSiteFiles, type ResticAccess } from '../../roles/backup/files.ts';
import { DB_EXT, listBackups, manifestKey, siteDbPrefix } from '../../roles/backup/catalog.ts';
import { LEDGER_KEY, readLedger } from '../../roles/backup/replica.ts';
import type { DrillReport } from '../../roles/backup/drill.ts';

let a: Rgw; // the primary region
let b: Rgw; // the second region
let mdb: LocalMariaDb;
let work: string;
let inv: string;
let sitesDir: string;
let env: NodeJS.ProcessEnv;
let src: ObjectStore;
let rep: ObjectStore;
let srcCfg: StoreConfig;
let repCfg: StoreConfig;
const SITES = ['shop1', 'blog2'];
const RESTIC_PASSWORD = 'replica-restic-password';
const shell = new LocalShell('db1');
const timings: Record<string, number> = {};

type Step = { step: string; ok: boolean; ms: number; result?: Record<string, unknown>; error?: string };
type Rep = { ok: boolean; failed: number; steps: Step[] };

function play(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--no-warnings', '--import', 'tsx', `playbooks/${script}`, '-i', inv, '--sites-dir', sitesDir, '--local', ...args],
      { env, maxBuffer: 16 << 20, timeout: 300_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}
async function backup(args: string[]): Promise<Rep> {
  const t = Date.now();
  const r = await play('backup.ts', args);
  timings[args.filter((x) => !x.startsWith('/')).join(' ')] = Date.now() - t;
  try {
    return JSON.parse(r.stdout) as Rep;
  } catch {
    throw new Error(`backup.ts ${args.join(' ')} exited ${r.code}: ${r.stderr}\n${r.stdout}`);
  }
}
const stepOf = (r: Rep, name: string): Step => {
  const s = r.steps.find((x) => x.step === name);
  assert.ok(s, `no step ${name} in ${JSON.stringify(r.steps.map((x) => x.step))}`);
  return s;
};
const failures = (r: Rep) =>
  r.steps
    .filter((s) => !s.ok)
    .map((s) => `${s.step}: ${s.error}`)
    .join('\n');

async function sha(store: ObjectStore, key: string): Promise<string> {
  return createHash('sha256')
    .update(await store.getBytes(key))
    .digest('hex');
}
/** the replicated set (restic locks and the ledger aside), key → sha256 */
async function contents(store: ObjectStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const o of await store.list('')) {
    if (o.key.startsWith('replication/') || /^files\/[^/]+\/locks\//.test(o.key)) continue;
    out.set(o.key, await sha(store, o.key));
  }
  return out;
}
async function rowCounts(db: string): Promise<number> {
  const tables = (await mdb.sql(`SELECT table_name FROM information_schema.tables WHERE table_schema='${db}' AND table_type='BASE TABLE'`))
    .trim()
    .split('\n')
    .filter(Boolean);
  let n = 0;
  for (const t of tables) n += Number((await mdb.sql(`SELECT COUNT(*) FROM \`${t}\``, db)).trim());
  return n;
}

before(async () => {
  const t0 = Date.now();
  [a, b, mdb] = await Promise.all([startRgw({ memstoreBytes: 1024 ** 3 }), startRgw({ memstoreBytes: 1024 ** 3 }), startMariaDb()]);
  timings.harnessStartMs = Date.now() - t0;
  work = await mkdtemp(join(tmpdir(), 'wpfarm-replica-'));
  sitesDir = join(work, 'sites');
  await mkdir(sitesDir);
  for (const id of SITES) {
    await writeFile(join(sitesDir, `${id}.yml`), `id: ${id}\ndomain: ${id}.lab.test\nadmin_allowlist: [10.77.0.0/24]\n`);
    await createSiteDb(mdb, `wp_${id}`, id === 'shop1' ? 400 : 250);
    await createSiteFiles(join(work, 'gluster/sites', id));
  }
  srcCfg = {
    endpoint: a.endpoint,
    region: a.region,
    bucket: 'wpfarm-fra1',
    accessKeyId: a.accessKeyId,
    secretAccessKey: a.secretAccessKey,
  };
  repCfg = {
    endpoint: b.endpoint,
    region: b.region,
    bucket: 'wpfarm-ams3',
    accessKeyId: b.accessKeyId,
    secretAccessKey: b.secretAccessKey,
  };
  src = new ObjectStore(srcCfg);
  rep = new ObjectStore(repCfg);
  await Promise.all([src.ensureBucket(), rep.ensureBucket()]);
  inv = join(work, 'inventory.yml');
  await writeFile(
    inv,
    [
      'vars:',
      `  gluster_sites_path: ${join(work, 'gluster/sites')}`,
      `  mariadb_socket: ${mdb.socket}`,
      `  backup_replica_endpoint: ${b.endpoint}`,
      '  backup_replica_bucket: wpfarm-ams3',
      '  backup_replica_region: us-east-1',
      'hosts:',
      '  db1: { address: 127.0.0.1, port: 22, user: root }',
      'groups:',
      '  db: { hosts: [db1] }',
      '',
    ].join('\n'),
  );
  const keys = await ageKeygen();
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    WPFARM_S3_ENDPOINT: a.endpoint,
    WPFARM_S3_BUCKET: 'wpfarm-fra1',
    WPFARM_S3_ACCESS_KEY: a.accessKeyId,
    WPFARM_S3_SECRET_KEY: a.secretAccessKey,
    WPFARM_S3_REPLICA_ACCESS_KEY: b.accessKeyId,
    WPFARM_S3_REPLICA_SECRET_KEY: b.secretAccessKey,
    WPFARM_BACKUP_AGE_IDENTITY: keys.identity,
    WPFARM_RESTIC_PASSWORD: RESTIC_PASSWORD,
  };
});

after(async () => {
  src?.destroy();
  rep?.destroy();
  await Promise.allSettled([a?.stop(), b?.stop(), mdb?.stop()]);
  if (work) await rm(work, { recursive: true, force: true });
  console.log(`# replica timings (ms): ${JSON.stringify(timings)}`);
});

test('replicate: every object of the primary bucket on the second gateway, byte for byte; restic check; the lag metric', async () => {
  for (const what of ['sites-db', 'files']) {
    const r = await backup(['--what', what]);
    assert.equal(r.ok, true, failures(r));
  }
  const textfiles = join(work, 'textfile');
  const r = await backup(['--what', 'replicate', '--prune', '--textfile-dir', textfiles]);
  assert.equal(r.ok, true, failures(r));
  const copy = stepOf(r, 'replicate').result as { copied: number; sourceObjects: number; problems: string[]; bytesCopied: number };
  assert.deepEqual(copy.problems, []);
  const source = await contents(src);
  const replica = await contents(rep);
  assert.ok(source.size >= 2 * 2 + 2 * 4, `dumps, manifests and two restic repositories: ${source.size} objects`);
  assert.equal(copy.copied, source.size);
  // the test's own check, independent of the ledger: same keys, same sha256 for each
  assert.deepEqual([...replica.entries()].sort(), [...source.entries()].sort());
  const ver = stepOf(r, 'verify replica').result as { verified: number; counts: Record<string, { source: number; replica: number }> };
  assert.equal(ver.verified, source.size);
  for (const [top, c] of Object.entries(ver.counts)) assert.equal(c.replica, c.source, `${top}: ${JSON.stringify(c)}`);
  for (const id of SITES) assert.equal(stepOf(r, `restic check replica ${id}`).ok, true);
  // the dumps on the replica are ciphertext (age), never plaintext SQL
  const dump = [...replica.keys()].find((k) => k.endsWith(DB_EXT)) as string;
  assert.match((await rep.getBytes(dump)).subarray(0, 22).toString('latin1'), /^age-encryption\.org\/v1/);
  // the lag metric, for node-exporter's textfile collector
  const prom = await readFile(join(textfiles, 'wpfarm_backup_replication.prom'), 'utf8');
  const last = Number(/^wpfarm_backup_replication_last_success_timestamp_seconds\{replica="[^"]+"\} (\d+)$/m.exec(prom)?.[1]);
  assert.ok(Math.abs(last - Date.now() / 1000) < 600, prom);
  assert.match(prom, /^wpfarm_backup_replication_ok\{replica="http:\/\/127\.0\.0\.1:\d+\/wpfarm-ams3"\} 1$/m);
  assert.match(prom, new RegExp(`^wpfarm_backup_replication_objects\\{replica="[^"]+",store="replica"\\} ${source.size}$`, 'm'));
  // a rerun copies nothing
  const again = await backup(['--what', 'replicate', '--textfile-dir', textfiles]);
  assert.equal(again.ok, true, failures(again));
  const c2 = stepOf(again, 'replicate').result as { copied: number; inSync: number };
  assert.equal(c2.copied, 0);
  assert.equal(c2.inSync, source.size);
});

test('a corrupted and a missing replica object are detected (verify, restic check: exit 2), then repaired by the next copy', async () => {
  const dump = (await rep.list(siteDbPrefix('shop1'))).find((o) => o.key.endsWith(DB_EXT))?.key as string;
  const pack = (await rep.list('files/blog2/data/'))[0]?.key as string;
  assert.ok(dump && pack);
  const good = await sha(rep, dump);
  // the dump overwritten with other bytes of the same size, a restic pack deleted
  const bytes = await rep.getBytes(dump);
  const bad = Buffer.from(bytes);
  bad[bad.length >> 1] = (bad[bad.length >> 1] ?? 0) ^ 0xff;
  await rep.putBytes(dump, bad);
  await rep.deleteKeys([pack]);
  const textfiles = join(work, 'textfile');
  const v = await play('backup.ts', ['--verify-replica', '--textfile-dir', textfiles]);
  assert.equal(v.code, 2, v.stderr + v.stdout);
  const vr = JSON.parse(v.stdout) as Rep;
  const err = stepOf(vr, 'verify replica').error ?? '';
  assert.match(err, /2 problem\(s\) on the replica/);
  assert.ok(err.includes(`${dump}: replaced or corrupted on the replica`), err);
  assert.ok(err.includes(`${pack}: missing on the replica`), err);
  // restic's own check of the replica repository sees the pack gone too; the other repository is fine
  assert.equal(stepOf(vr, 'restic check replica blog2').ok, false);
  assert.equal(stepOf(vr, 'restic check replica shop1').ok, true);
  const prom = await readFile(join(textfiles, 'wpfarm_backup_replication.prom'), 'utf8');
  assert.match(prom, /^wpfarm_backup_replication_ok\{[^}]+\} 0$/m);
  // --deep re-reads every object: a corruption that kept the size is found by its sha256 too
  const deep = JSON.parse((await play('backup.ts', ['--verify-replica', '--deep', '--textfile-dir', textfiles])).stdout) as Rep;
  assert.ok((stepOf(deep, 'verify replica').error ?? '').includes(`${dump}: its bytes on the replica hash to`));

  const fix = await backup(['--what', 'replicate', '--textfile-dir', textfiles]);
  assert.equal(fix.ok, true, failures(fix));
  const c = stepOf(fix, 'replicate').result as { copied: number; repaired: string[] };
  assert.deepEqual(c.repaired.sort(), [dump, pack].sort());
  assert.equal(c.copied, 2);
  assert.equal(await sha(rep, dump), good);
  assert.equal(stepOf(fix, 'restic check replica blog2').ok, true);
  assert.match(await readFile(join(textfiles, 'wpfarm_backup_replication.prom'), 'utf8'), /^wpfarm_backup_replication_ok\{[^}]+\} 1$/m);
});

test('retention on both stores: an expired dump stays on the replica until its own retention; restic forget is mirrored', async () => {
  const now = Date.now();
  const old = new Date(now - 40 * 86_400_000);
  const access: ResticAccess = { store: srcCfg, password: RESTIC_PASSWORD };
  const repAccess: ResticAccess = { store: repCfg, password: RESTIC_PASSWORD };
  const keys = await ageKeygen();
  // an old dump (40 days > 30) and an old snapshot on the source, replicated
  const target = { site: 'shop1', db: 'wp_shop1', conn: { socket: mdb.socket, user: 'root' } };
  const oldDump = (await backupSiteDb({ shell, store: src, target, recipient: keys.recipient, at: old })).manifest.key;
  const paths = ['uploads', 'plugins', 'themes'].map((d) => join(work, 'gluster/sites/shop1', d));
  const oldSnap = await backupSiteFiles({ shell, access, target: { site: 'shop1', paths }, host: 'shop1', time: old });
  let r = await backup(['--what', 'replicate']);
  assert.equal(r.ok, true, failures(r));
  assert.ok(await rep.head(oldDump), 'the old dump reached the replica');
  // the source's retention: the dump pruned, the old snapshot forgotten (keep the newest only) and pruned
  const p = await pruneSiteDb({ store: src, site: 'shop1', now: new Date() });
  assert.deepEqual(p.deleted, [oldDump]);
  const f = await forgetSiteFiles({ shell, access, site: 'shop1', policy: { last: 1 } });
  // restic 0.14's backup summary gives the short id
  assert.ok(
    f.remove.some((id) => id.startsWith(oldSnap.snapshotId)),
    JSON.stringify(f),
  );
  // replicate WITHOUT the replica's retention: the dump stays there (the source's loss is never mirrored for dumps),
  // the restic repository follows the source (its deletions are mirrored, the repository stays whole)
  r = await backup(['--what', 'replicate']);
  assert.equal(r.ok, true, failures(r));
  assert.ok(await rep.head(oldDump));
  assert.ok((stepOf(r, 'replicate').result as { mirroredDeletes: number }).mirroredDeletes > 0);
  const ids = async (acc: ResticAccess) => (await listSnapshots({ shell, access: acc, site: 'shop1' })).map((s) => s.id);
  assert.deepEqual(await ids(repAccess), await ids(access));
  assert.ok(!(await ids(repAccess)).some((id) => id.startsWith(oldSnap.snapshotId)));
  // the replica's own retention (--prune): the same 30 days; the dump and its manifest go, and are not copied back
  r = await backup(['--what', 'replicate', '--prune']);
  assert.equal(r.ok, true, failures(r));
  assert.deepEqual((stepOf(r, 'prune replica db shop1').result as { deleted: string[] }).deleted, [oldDump]);
  assert.equal(await rep.head(oldDump), null);
  assert.equal(await rep.head(manifestKey(oldDump)), null);
  assert.match((await readLedger(rep)).objects[oldDump]?.retired ?? '', /^retention /);
  r = await backup(['--what', 'replicate']);
  assert.equal((stepOf(r, 'replicate').result as { copied: number }).copied, 0);
  assert.equal((await readLedger(rep)).objects[oldDump], undefined, 'gone from both sides: out of the ledger');
  // both stores now hold the same dumps and the same snapshots
  const dumps = async (s: ObjectStore) => (await listBackups(s, siteDbPrefix('shop1'), DB_EXT)).map((e) => e.key);
  assert.deepEqual(await dumps(rep), await dumps(src));
  assert.ok(await rep.head(LEDGER_KEY));
});

test('dr-drill.ts, primary gateway DOWN: restored from the replica alone, identical, RTO per site; a bad replica fails it', async () => {
  const live: Record<string, { rows: number; files: number }> = {};
  for (const id of SITES) {
    let files = 0;
    for (const d of ['uploads', 'plugins', 'themes'])
      files += (await readdir(join(work, 'gluster/sites', id, d), { recursive: true, withFileTypes: true })).filter((e) =>
        e.isFile(),
      ).length;
    live[id] = { rows: await rowCounts(`wp_${id}`), files };
  }
  await a.killGateway();
  const json = join(work, 'drill.json');
  const md = join(work, 'drill.md');
  const t = Date.now();
  // --local: this machine is the db and files host, there is no swarm for scratch stacks (lab 69 runs them)
  const d = await play('dr-drill.ts', ['--sample', '5', '--no-stack', '--json', json, '--markdown', md]);
  timings.drillPlaybook = Date.now() - t;
  assert.equal(d.code, 0, d.stderr + d.stdout);
  const report = (JSON.parse(await readFile(json, 'utf8')) as { data: { drDrill: DrillReport } }).data.drDrill;
  assert.equal(report.ok, true);
  assert.deepEqual([...report.sampled].sort(), [...SITES].sort(), 'a sample of 5 of 2 sites is both');
  assert.match(report.replica, /\/wpfarm-ams3$/);
  for (const s of report.sites) {
    assert.equal(s.ok, true, s.problems.join('; '));
    assert.equal(s.db?.identicalToLive, true, `${s.site}: CHECKSUM TABLE differs`);
    assert.equal(s.db?.rowCountsMatchLive, true);
    assert.equal(s.db?.rows, live[s.site]?.rows, `${s.site}: rows restored vs counted here`);
    assert.equal(s.files?.identicalToLive, true);
    assert.equal(s.files?.files, live[s.site]?.files, `${s.site}: every file of uploads, plugins and themes`);
    assert.ok(s.rtoMs > 0 && s.rtoMs === (s.db?.restoreMs ?? 0) + (s.files?.restoreMs ?? 0));
    assert.equal(s.rtoUntil, 'data restored');
    timings[`rto_${s.site}`] = s.rtoMs;
  }
  const text = await readFile(md, 'utf8');
  assert.match(text, /^# DR drill \d{4}-\d{2}-\d{2}: PASSED$/m);
  for (const id of SITES) assert.match(text, new RegExp(`^\\| ${id} \\| ok \\| \\d+\\.\\d s \\|`, 'm'));
  // scratch only: no scratch database or directory left, the live databases untouched
  assert.doesNotMatch(await mdb.sql('SHOW DATABASES'), /_drdrill/);
  assert.deepEqual(
    (await readdir('/tmp')).filter((n) => n.startsWith('wpfarm-drdrill-')),
    [],
  );
  // the drill fails on a replica whose newest dump does not match its manifest (exit 2), names the site
  const dump = (await rep.list(siteDbPrefix('blog2'))).filter((o) => o.key.endsWith(DB_EXT)).pop()?.key as string;
  await rep.putBytes(dump, Buffer.from('not the backup'));
  const bad = await play('dr-drill.ts', ['--site', 'blog2', '--no-stack', '--json', json]);
  assert.equal(bad.code, 2, bad.stderr + bad.stdout);
  const br = (JSON.parse(await readFile(json, 'utf8')) as { data: { drDrill: DrillReport } }).data.drDrill;
  assert.equal(br.ok, false);
  assert.match(br.sites[0]?.problems.join('; ') ?? '', /manifest says/);
});
