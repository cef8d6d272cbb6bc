// Lab tier: backups and restores of a site on the lab's real hosts, over SSH (issue 7), and the backup role.
//   - the backup role (phase 5) through run-role on the lab; its rerun reports no change
//   - a real Ceph RGW on this machine's loopback (test/harness/rgw.ts); the files host reaches it through
//     the reverse SSH tunnel roles/backup opens (the gateway is never exposed on the lab bridge)
//   - a scratch site of its own (prefix bk65): record in a temp --sites-dir, database on the Galera cluster
//     (through the engine, on db1), files in its directory on the Gluster mount of the files host
//   - backed up twice with the playbooks (no --local); rows and files destroyed; restored by date (the
//     first backup), then latest: identical CHECKSUM TABLE on two Galera nodes, identical sha256 and modes
//   - wrong S3 credentials: clear error, exit 2, nothing deleted in the bucket, live files untouched
//   - backup and restore times (RTO) as diagnostics; everything it created is removed (db, dir, bucket)
// Prerequisites: a converged farm (30-galera, 40-gluster). Runnable alone when the lab is up:
//   node --import tsx --test test/lab/65-backup.test.ts
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { DeleteBucketCommand } from '@aws-sdk/client-s3';
import { INVENTORY, KNOWN, SUBNET } from '../harness/lab-sites.ts';
import { loadInventory, type Inventory } from '../../lib/inventory.ts';
import { connect } from '../../lib/transport.ts';
import { sh } from '../../lib/shell.ts';
import type { Connection } from '../../lib/types.ts';
import { ageKeygen } from '../../roles/backup/keys.ts';
import { ObjectStore } from '../../roles/backup/s3.ts';
import { connectionShell, runHostCommand } from '../../roles/backup/runner.ts';
import { fileHashesCommand, tableChecksumsCommand } from '../../roles/backup/commands.ts';
import { startRgw, type Rgw } from '../harness/rgw.ts';
import { createSiteDb, createSiteFiles, destroySiteDb, mutateSiteDb } from '../harness/backup-site.ts';
import type { LocalMariaDb } from '../harness/backup-mariadb.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const SOCKET = '/run/mysqld/mysqld.sock';
const MOUNT = '/mnt/gluster/sites';
const stamp = Date.now().toString(36).slice(-6);
const SITE = `bk65-${stamp}`;
const DB = `wp_bk65_${stamp}`;
const BUCKET = `bk65-${stamp}`;
const SITE_DIR = `${MOUNT}/${SITE}`;
const PARTS = ['uploads', 'plugins', 'themes'];

let inv: Inventory;
let rgw: Rgw | undefined;
let store: ObjectStore | undefined;
let work = '';
let sitesDir = '';
let env: NodeJS.ProcessEnv = {};
let secretValues: string[] = [];
const conns = new Map<string, Connection>();
let filesHost = '';
const timings: Record<string, number> = {};
const LSN_ROOT = '/var/lib/wpfarm-backup/lsn';
const lsnDirs: string[] = [];

async function conn(name: string): Promise<Connection> {
  const c = conns.get(name);
  if (c) return c;
  const h = inv.hosts.get(name);
  assert.ok(h, `${name} in ${INVENTORY}`);
  const n = await connect(h, {
    knownHosts: path.resolve(ROOT, inv.settings.knownHosts ?? KNOWN),
    connectTimeoutMs: 10_000,
  });
  conns.set(name, n);
  return n;
}

async function exec(name: string, cmd: string, stdin?: string | Buffer): Promise<string> {
  const r = await (await conn(name)).exec(cmd, { stdin, timeoutMs: 300_000, nothrow: true });
  if (r.code !== 0) throw new Error(`${name}: exit ${r.code}: ${r.stderr.trim().split('\n').slice(-5).join('\n')}`);
  return r.stdout;
}

/** SQL as root over db1's socket, through the engine's SSH connection (the harness's site builders use it). */
function galera(host = 'db1'): LocalMariaDb {
  const sql = (query: string, db?: string) => exec(host, sh`mariadb --socket=${SOCKET} --user=root -N -B ${db ? [db] : []}`, query);
  // the site builders (test/harness/backup-site.ts) only call sql(); the rest of LocalMariaDb is for a local server
  return { dir: '', datadir: '', socket: SOCKET, port: 0, sql, stop: async () => undefined };
}

async function checksums(host: string): Promise<string> {
  const r = await runHostCommand(connectionShell(await conn(host)), tableChecksumsCommand(DB, { socket: SOCKET, user: 'root' }), {});
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}

/** sha256 of every file, and the mode of every entry, under the site's directories (sorted). */
async function fileState(): Promise<string> {
  let out = '';
  for (const d of PARTS) {
    out += `## ${d}\n${await exec(filesHost, fileHashesCommand(`${SITE_DIR}/${d}`))}`;
    out += await exec(filesHost, sh`cd ${`${SITE_DIR}/${d}`} && find . -printf '%m %y %p\\n' | LC_ALL=C sort`);
  }
  return out;
}

interface Play {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A backup playbook as an operator runs it: lab inventory, no --local; settings from the environment. */
async function play(script: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<Play> {
  const t0 = Date.now();
  const r = await run(
    process.execPath,
    ['--no-warnings', '--import', 'tsx', `playbooks/${script}`, '--inventory', INVENTORY, '--sites-dir', sitesDir, ...args],
    {
      cwd: ROOT,
      env: { ...env, ...extraEnv },
      timeout: 15 * 60_000,
      maxBuffer: 64 << 20,
    },
  ).then(
    (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: typeof e.code === 'number' ? e.code : -1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  );
  const out = { ...r, ms: Date.now() - t0 };
  for (const s of secretValues)
    assert.ok(!out.stdout.includes(s) && !out.stderr.includes(s), `${script} ${args.join(' ')}: a secret value is in its output`);
  return out;
}

interface RoleReport {
  exitCode: number;
  results: Array<{ host: string; step: string; status: string; changes: string[]; error?: string }>;
}

async function role(name: string): Promise<RoleReport & { ms: number }> {
  const json = path.join(work, `role-${Date.now()}.json`);
  const t0 = Date.now();
  await run(
    process.execPath,
    ['--no-warnings', '--import', 'tsx', 'playbooks/run-role.ts', name, '--inventory', INVENTORY, '--json', json],
    { cwd: ROOT, timeout: 20 * 60_000, maxBuffer: 64 << 20 },
  ).catch(() => undefined);
  assert.ok(existsSync(json), `run-role ${name} wrote no report`);
  return { ...(JSON.parse(readFileSync(json, 'utf8')) as RoleReport), ms: Date.now() - t0 };
}

const allObjects = async () => (await store!.list('')).map((o) => `${o.key} ${o.size}`).sort();

before(async () => {
  process.chdir(ROOT);
  inv = loadInventory(INVENTORY);
  work = mkdtempSync(path.join(os.tmpdir(), 'wpfarm-bk65-'));
  sitesDir = path.join(work, 'sites');
  mkdirSync(sitesDir);
  writeFileSync(path.join(sitesDir, `${SITE}.yml`), `id: ${SITE}\ndomain: ${SITE}.lab.test\nadmin_allowlist: [${SUBNET}]\n`);
  rgw = await startRgw();
  timings.rgwStartMs = rgw.startupMs;
  const keys = await ageKeygen();
  const resticPassword = `bk65-restic-${Math.random().toString(36).slice(2)}-${Date.now()}`;
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    WPFARM_S3_ENDPOINT: rgw.endpoint,
    WPFARM_S3_REGION: rgw.region,
    WPFARM_S3_BUCKET: BUCKET,
    WPFARM_S3_ACCESS_KEY: rgw.accessKeyId,
    WPFARM_S3_SECRET_KEY: rgw.secretAccessKey,
    WPFARM_BACKUP_AGE_IDENTITY: keys.identity,
    // the process environment wins over the lab's env file, which has a recipient of its own since the lab has a
    // store (lab.env): without this the dumps were encrypted to the lab's key and this identity could not restore them
    WPFARM_BACKUP_AGE_RECIPIENT: keys.recipient,
    WPFARM_RESTIC_PASSWORD: resticPassword,
  };
  secretValues = [rgw.secretAccessKey, keys.identity, resticPassword];
  store = new ObjectStore({
    endpoint: rgw.endpoint,
    region: rgw.region,
    bucket: BUCKET,
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  });
  await store.ensureBucket();
});

after(async () => {
  // everything this test created, and only that
  await exec('db1', sh`mariadb --socket=${SOCKET} --user=root -e ${`DROP DATABASE IF EXISTS \`${DB}\``}`).catch((e: unknown) =>
    console.log(`# cleanup db: ${String(e)}`),
  );
  // only the checkpoint directories of this test's mariabackup runs (named after their stamps)
  if (lsnDirs.length) await exec('db1', sh`rm -rf -- ${lsnDirs}`).catch((e: unknown) => console.log(`# cleanup lsn: ${String(e)}`));
  if (filesHost) await exec(filesHost, sh`rm -rf -- ${SITE_DIR}`).catch((e: unknown) => console.log(`# cleanup dir: ${String(e)}`));
  if (store) {
    const keys = (await store.list('').catch(() => [])).map((o) => o.key);
    if (keys.length) await store.deleteKeys(keys).catch(() => undefined);
    await store.abortStaleUploads('', 0).catch(() => undefined);
    await store.client
      .send(new DeleteBucketCommand({ Bucket: BUCKET }))
      .catch((e: unknown) => console.log(`# cleanup bucket: ${String(e)}`));
    store.destroy();
  }
  for (const c of conns.values()) await c.close().catch(() => undefined);
  await rgw?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
  console.log(`# backup lab timings (ms): ${JSON.stringify(timings)}`);
});

test('backup role: converges the db hosts and Gluster clients; the rerun changes nothing', async (t) => {
  const first = await role('backup');
  const bad = first.results.filter((r) => r.status === 'failed' || r.status === 'unreachable');
  assert.deepEqual(
    bad.map((r) => `${r.host} ${r.step}: ${r.error ?? r.status}`),
    [],
  );
  assert.equal(first.exitCode, 0);
  const hosts = new Set(first.results.map((r) => r.host));
  for (const h of ['db1', 'db2', 'db3', 'wrk1', 'wrk2']) assert.ok(hosts.has(h), `${h} in the run`);
  const again = await role('backup');
  const changed = again.results.filter((r) => r.status !== 'ok' && r.status !== 'skipped');
  assert.deepEqual(
    changed.map((r) => `${r.host} ${r.step}: ${r.status} ${r.changes.join('; ')}`),
    [],
  );
  timings.roleFirstMs = first.ms;
  timings.roleRerunMs = again.ms;
  t.diagnostic(
    `role: first ${first.ms} ms (${first.results.filter((r) => r.status === 'changed').length} changed), rerun ${again.ms} ms, 0 changed`,
  );
  // what the role is for
  assert.match(
    await exec('db1', 'command -v age mariadb-dump mariadb-backup mbstream gzip; stat -c %a /var/lib/wpfarm-backup/lsn'),
    /age[\s\S]*mariadb-dump[\s\S]*mariadb-backup[\s\S]*mbstream[\s\S]*gzip[\s\S]*\n700\n?$/,
  );
  for (const w of ['wrk1', 'wrk2']) assert.match(await exec(w, 'command -v restic age'), /restic\n.*age/);
});

test('a scratch site on the farm: backed up twice over SSH, destroyed, restored by date and latest (identical)', async (t) => {
  // the files host: the first worker whose Gluster mount answers (what roles/backup/cli.ts picks)
  for (const w of ['wrk1', 'wrk2']) {
    const r = await exec(
      w,
      sh`findmnt -n -o FSTYPE --mountpoint ${MOUNT} || true; timeout 15 stat -c %i ${MOUNT} >/dev/null 2>&1 && echo answers`,
    ).catch(() => '');
    if (/fuse\.glusterfs/.test(r) && /answers/.test(r)) {
      filesHost = w;
      break;
    }
  }
  assert.ok(filesHost, 'a worker with the Gluster volume mounted');
  t.diagnostic(`files host: ${filesHost}`);

  // state A: database on Galera, files on the Gluster mount (built here, streamed as a tar)
  await createSiteDb(galera(), DB, 1500);
  const local = path.join(work, 'content');
  await createSiteFiles(local);
  const { stdout: tarB64 } = await run('bash', ['-c', sh`tar -C ${local} -cf - ${PARTS} | base64 -w0`], { maxBuffer: 64 << 20 });
  await exec(filesHost, sh`mkdir -p ${SITE_DIR} && base64 -d | tar -C ${SITE_DIR} -xpf -`, tarB64);
  const dbA = await checksums('db1');
  const filesA = await fileState();
  assert.match(dbA, /wp_posts\t\d+/);
  assert.match(filesA, /photo-3\.jpg/);

  const backup = async (label: string) => {
    const db = await play('backup.ts', ['--what', 'sites-db', '--site', SITE]);
    assert.equal(db.code, 0, `sites-db: ${db.stderr}\n${db.stdout}`);
    const files = await play('backup.ts', ['--what', 'files', '--site', SITE]);
    assert.equal(files.code, 0, `files: ${files.stderr}\n${files.stdout}`);
    const dbRep = JSON.parse(db.stdout) as {
      ok: boolean;
      steps: Array<{ ok: boolean; result: { key: string; size: number; host: string } }>;
    };
    const fRep = JSON.parse(files.stdout) as {
      ok: boolean;
      steps: Array<{ ok: boolean; result: { snapshotId: string; filesNew: number } }>;
    };
    assert.equal(dbRep.steps[0]?.result.host, 'db1');
    timings[`${label}DbMs`] = db.ms;
    timings[`${label}FilesMs`] = files.ms;
    t.diagnostic(
      `${label}: sites-db ${db.ms} ms (${dbRep.steps[0]?.result.size} bytes ciphertext), files ${files.ms} ms (snapshot ${fRep.steps[0]?.result.snapshotId.slice(0, 8)}, ${fRep.steps[0]?.result.filesNew} new files)`,
    );
    return { key: dbRep.steps[0]!.result.key, snapshot: fRep.steps[0]!.result.snapshotId };
  };

  const b1 = await backup('backup1');
  const dateA = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 1100)); // stamps have second precision
  // state B
  await mutateSiteDb(galera(), DB);
  await exec(
    filesHost,
    sh`cd ${SITE_DIR} && head -c 21000 /dev/urandom > uploads/2026/11/photo-0.jpg && rm uploads/2026/11/photo-1.jpg && head -c 9000 /dev/urandom > uploads/2026/11/new-after-first-backup.webp && echo 'a{color:red}' >> themes/twentytwentyfour/style.css`,
  );
  const dbB = await checksums('db1');
  const filesB = await fileState();
  assert.notEqual(dbB, dbA);
  assert.notEqual(filesB, filesA);
  // while the second backup runs, every process's command line on the db and files hosts is sampled:
  // no secret value may appear in any of them
  let sampling = true;
  let samples = 0;
  const leaks: string[] = [];
  const sampler = (async () => {
    while (sampling) {
      for (const h of ['db1', filesHost]) {
        const args = await exec(h, 'ps -eo args=').catch(() => '');
        samples++;
        for (const v of secretValues) if (args.includes(v)) leaks.push(h);
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  const b2 = await backup('backup2').finally(() => (sampling = false));
  await sampler;
  assert.deepEqual(leaks, [], 'a secret on a command line of a host');
  assert.ok(samples > 10, `${samples} samples`);
  t.diagnostic(`${samples} process-list samples on db1 and ${filesHost} during backup 2: no secret on any command line`);
  assert.notEqual(b2.key, b1.key);
  assert.notEqual(b2.snapshot, b1.snapshot);
  // the bucket holds ciphertext only
  assert.match((await store!.getBytes(b1.key)).subarray(0, 22).toString('latin1'), /^age-encryption\.org\/v1/);

  // disaster: rows and files destroyed
  await destroySiteDb(galera(), DB);
  await exec(filesHost, sh`cd ${SITE_DIR} && rm -rf uploads/* plugins themes && echo '<h1>owned</h1>' > uploads/defaced.html`);
  assert.notEqual(await checksums('db1'), dbA);

  // restore by date: the first backup
  const rdb = await play('restore-db.ts', ['--site', SITE, '--date', dateA, '--yes']);
  assert.equal(rdb.code, 0, rdb.stderr + rdb.stdout);
  assert.equal((JSON.parse(rdb.stdout) as { restored: string }).restored, b1.key);
  const rf = await play('restore-files.ts', ['--site', SITE, '--date', dateA, '--yes']);
  assert.equal(rf.code, 0, rf.stderr + rf.stdout);
  // restic 0.14's backup summary gives the short id; the restore reports the full one
  const restoredSnap = (JSON.parse(rf.stdout) as { snapshot: string }).snapshot;
  assert.ok(restoredSnap.startsWith(b1.snapshot), `restored snapshot ${restoredSnap}, first backup ${b1.snapshot}`);
  assert.equal(await checksums('db1'), dbA);
  assert.equal(await checksums('db2'), dbA, 'the restore replicated to another Galera node');
  assert.equal(await fileState(), filesA);
  timings.restoreDbByDateMs = rdb.ms;
  timings.restoreFilesByDateMs = rf.ms;
  timings.rtoByDateMs = rdb.ms + rf.ms;
  t.diagnostic(`restore by date ${dateA}: db ${rdb.ms} ms, files ${rf.ms} ms, RTO ${rdb.ms + rf.ms} ms (playbooks, node start included)`);

  // then latest: state B
  const rdb2 = await play('restore-db.ts', ['--site', SITE, '--date', 'latest', '--yes']);
  assert.equal(rdb2.code, 0, rdb2.stderr);
  const rf2 = await play('restore-files.ts', ['--site', SITE, '--date', 'latest', '--yes']);
  assert.equal(rf2.code, 0, rf2.stderr);
  assert.equal(await checksums('db1'), dbB);
  assert.equal(await checksums('db3'), dbB);
  assert.equal(await fileState(), filesB);
  timings.restoreDbLatestMs = rdb2.ms;
  timings.restoreFilesLatestMs = rf2.ms;
  t.diagnostic(`restore latest: db ${rdb2.ms} ms, files ${rf2.ms} ms, RTO ${rdb2.ms + rf2.ms} ms`);
  // the weekly restore test (its timer's job) on the lab: scratch database on db1, scratch dir on the files host
  const rt = await play('backup.ts', ['--restore-test', '--site', SITE]);
  assert.equal(rt.code, 0, rt.stderr + rt.stdout);
  const rtRep = JSON.parse(rt.stdout) as {
    steps: Array<{ result: { db: { identicalToLive: boolean; tables: number }; files: { identicalToLive: boolean; files: number } } }>;
  };
  assert.equal(rtRep.steps[0]?.result.db.identicalToLive, true);
  assert.equal(rtRep.steps[0]?.result.files.identicalToLive, true);
  assert.equal(await checksums('db1'), dbB, 'the restore test leaves the live site alone');
  assert.equal((await exec('db1', sh`mariadb -N -e ${`SHOW DATABASES LIKE '${DB}%'`}`)).trim(), DB, 'scratch database removed');
  timings.restoreTestMs = rt.ms;
  t.diagnostic(
    `weekly restore test: ${rt.ms} ms (${rtRep.steps[0]?.result.db.tables} tables, ${rtRep.steps[0]?.result.files.files} files identical to live)`,
  );
  // no staging directory or pre-restore copy left on the mount
  assert.equal((await exec(filesHost, sh`ls -A ${SITE_DIR}`)).trim().split('\n').sort().join(' '), PARTS.slice().sort().join(' '));
});

test('wrong S3 credentials: clear error, exit 2, nothing deleted in the bucket, live files untouched', async () => {
  assert.ok(filesHost, 'the previous test ran');
  const before = await allObjects();
  const filesBefore = await fileState();
  const wrong = { WPFARM_S3_SECRET_KEY: 'bk65-wrong-secret-key-0000000000' };
  secretValues.push(wrong.WPFARM_S3_SECRET_KEY);
  for (const what of ['sites-db', 'files']) {
    const r = await play('backup.ts', ['--what', what, '--site', SITE, '--prune'], wrong);
    assert.equal(r.code, 2, `${what}: ${r.stderr}\n${r.stdout}`);
    const rep = JSON.parse(r.stdout) as { ok: boolean; steps: Array<{ step: string; ok: boolean; error?: string }> };
    assert.equal(rep.ok, false);
    assert.match(rep.steps[0]?.error ?? '', /credentials rejected \(SignatureDoesNotMatch/, `${what}: ${r.stdout}`);
  }
  const rf = await play('restore-files.ts', ['--site', SITE, '--date', 'latest', '--yes'], wrong);
  assert.equal(rf.code, 2, rf.stderr);
  assert.match(rf.stderr, /credentials rejected/);
  const rdb = await play('restore-db.ts', ['--site', SITE, '--date', 'latest', '--yes'], wrong);
  assert.equal(rdb.code, 2, rdb.stderr);
  assert.match(rdb.stderr, /credentials rejected/);
  assert.deepEqual(await allObjects(), before);
  assert.equal(await fileState(), filesBefore);
});

test("mariabackup of the db host over SSH: a full, then an incremental on it (checkpoints in the role's backup_lsn_root)", async (t) => {
  const runs: Array<{ kind: string; key: string; base?: string; fromLsn?: string; toLsn?: string; size: number; host: string }> = [];
  // a checkpoint directory of a backup that is not in the bucket (pruned long ago), and a foreign directory
  const stale = `${LSN_ROOT}/2020-01-01T000000Z`;
  const foreign = `${LSN_ROOT}/bk65-not-a-stamp-${stamp}`;
  lsnDirs.push(stale, foreign);
  for (const what of ['cluster-full', 'cluster-incr']) {
    if (what === 'cluster-incr') await exec('db1', sh`mkdir -p ${stale} ${foreign} && touch ${`${stale}/xtrabackup_checkpoints`}`);
    const r = await play('backup.ts', ['--what', what, ...(what === 'cluster-incr' ? ['--prune'] : [])]);
    const rep = JSON.parse(r.stdout || '{}') as {
      steps?: Array<{ ok: boolean; error?: string; result?: { manifest: (typeof runs)[number]; promotedToFull: boolean } }>;
    };
    const m = rep.steps?.[0]?.result?.manifest;
    if (m) lsnDirs.push(`${LSN_ROOT}/${path.basename(m.key).replace(/\.xbstream\.gz\.age$/, '')}`);
    assert.equal(r.code, 0, `${what}: ${r.stderr}\n${r.stdout}`);
    assert.ok(m);
    assert.equal(rep.steps?.[0]?.result?.promotedToFull, false);
    runs.push(m);
    timings[`${what}Ms`] = r.ms;
    t.diagnostic(`${what}: ${r.ms} ms, ${m.size} bytes ciphertext, LSN ${m.fromLsn} → ${m.toLsn}`);
  }
  const [full, incr] = runs;
  assert.equal(full?.kind, 'cluster-full');
  assert.equal(incr?.kind, 'cluster-incr');
  assert.equal(incr?.base, full?.key);
  assert.equal(incr?.fromLsn, full?.toLsn);
  assert.equal(full?.host, 'db1');
  assert.match((await store!.getBytes(full!.key)).subarray(0, 22).toString('latin1'), /^age-encryption\.org\/v1/);
  const incrDir = lsnDirs[lsnDirs.length - 1]!;
  assert.match(
    await exec('db1', sh`stat -c %a ${LSN_ROOT}; cat ${`${incrDir}/xtrabackup_checkpoints`}`),
    /^700\n[\s\S]*backup_type = incremental/,
  );
  // --prune removed the checkpoints of the backup that is not in the bucket, kept the chain's and the foreign one
  const left = (await exec('db1', sh`ls -1 ${LSN_ROOT}`)).trim().split('\n');
  assert.ok(!left.includes('2020-01-01T000000Z'), left.join(' '));
  for (const d of [lsnDirs[2]!, incrDir, foreign]) assert.ok(left.includes(path.basename(d)), `${d} kept: ${left.join(' ')}`);
});
