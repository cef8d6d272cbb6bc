// Backups against a real Ceph RADOS Gateway (the software behind DigitalOcean Spaces) and a real
// MariaDB, both started by this test on loopback: backup a lab site, destroy its rows and files,
// restore by date, compare row checksums and file hashes; measure backup and restore times; wrong
// credentials; gateway killed mid-upload.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, mkdir, writeFile, readdir, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { startRgw, type Rgw } from '../harness/rgw.ts';
import { startMariaDb, type LocalMariaDb } from '../harness/backup-mariadb.ts';
import {
  createSiteDb,
  mutateSiteDb,
  destroySiteDb,
  createSiteFiles,
  mutateSiteFiles,
  destroySiteFiles,
  addBigTable,
} from '../harness/backup-site.ts';
import { ObjectStore, type StoreConfig } from '../../roles/backup/s3.ts';
import { ageKeygen } from '../../roles/backup/keys.ts';
import { LocalShell, runHostCommand } from '../../roles/backup/runner.ts';
import { backupSiteDb, restoreSiteDb, pruneSiteDb, type SiteDbTarget } from '../../roles/backup/db.ts';
import { backupSiteFiles, restoreSiteFiles, listSnapshots, forgetSiteFiles, type ResticAccess } from '../../roles/backup/files.ts';
import { tableChecksumsCommand, fileHashesCommand, type MariaDbConn } from '../../roles/backup/commands.ts';
import { formatStamp, listBackups, parseRestoreDate, siteDbPrefix, DB_EXT, manifestKey } from '../../roles/backup/catalog.ts';
import { BackupError, StoreCredentialsError } from '../../roles/backup/errors.ts';
import { restoreTestSite } from '../../roles/backup/verify.ts';
import { backupCluster, clusterChainAt, restoreClusterTo } from '../../roles/backup/cluster.ts';

let rgw: Rgw;
let mdb: LocalMariaDb;
let work: string;
let store: ObjectStore;
let storeCfg: StoreConfig;
let keys: { identity: string; recipient: string };
const shell = new LocalShell('lab-db1');
const resticPassword = 'restic-test-password-' + Math.random().toString(36).slice(2);
const timings: Record<string, number> = {};

const SITE = 'site1';
const DB = 'wp_site1';
let conn: MariaDbConn;
let target: SiteDbTarget;
let filesDir: string;
let access: ResticAccess;

async function dbSums(db = DB): Promise<string> {
  const r = await runHostCommand(shell, tableChecksumsCommand(db, conn), { MYSQL_PWD: 'bk-pass-123' });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.replaceAll(`${db}.`, '');
}
async function rowCounts(db = DB): Promise<string> {
  return mdb.sql(`SELECT table_name, table_rows FROM information_schema.tables WHERE table_schema='${db}' ORDER BY table_name`);
}
async function fileHashes(dir = filesDir): Promise<string> {
  const r = await runHostCommand(
    shell,
    { script: `${fileHashesCommand(dir)} && cd ${dir} && find . -printf '%y %m %p\\n' | LC_ALL=C sort`, secrets: [] },
    {},
  );
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}
const lines = (s: string) => s.trim().split('\n').filter(Boolean).length;

/** Samples every process's command line while running: secrets must never be on one. */
function argvSampler(secrets: string[]) {
  let stop = false;
  const leaks: string[] = [];
  const seenTools = new Set<string>();
  const loop = (async () => {
    while (!stop) {
      for (const pid of await readdir('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        const cmd = await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '');
        if (!cmd) continue;
        const first = cmd.split('\0')[0] ?? '';
        for (const tool of ['mariadb-dump', 'restic', 'age', 'mariadb'])
          if (first === tool || first.endsWith(`/${tool}`)) seenTools.add(tool);
        for (const x of secrets) if (cmd.includes(x)) leaks.push(cmd.replaceAll('\0', ' ').slice(0, 120));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop() {
      stop = true;
      await loop;
      return { leaks, seenTools };
    },
  };
}

before(async () => {
  const t0 = Date.now();
  [rgw, mdb] = await Promise.all([startRgw(), startMariaDb()]);
  timings.harnessStartMs = Date.now() - t0;
  timings.rgwStartMs = rgw.startupMs;
  work = await mkdtemp(join(tmpdir(), 'wpfarm-backup-test-'));
  storeCfg = {
    endpoint: rgw.endpoint,
    region: rgw.region,
    bucket: 'wpfarm-backups',
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
    partSize: 5 * 1024 * 1024,
  };
  store = new ObjectStore(storeCfg);
  await store.ensureBucket();
  keys = await ageKeygen();
  // the backup user connects over TCP with a password (given as MYSQL_PWD on stdin, never on argv)
  await mdb.sql("CREATE USER 'wpbackup'@'127.0.0.1' IDENTIFIED BY 'bk-pass-123'; GRANT ALL ON *.* TO 'wpbackup'@'127.0.0.1'");
  conn = { host: '127.0.0.1', port: mdb.port, user: 'wpbackup', password: true };
  target = { site: SITE, db: DB, conn, dbPassword: 'bk-pass-123' };
  filesDir = join(work, 'srv/sites/site1/wp-content');
  await mkdir(filesDir, { recursive: true });
  access = { store: storeCfg, password: resticPassword };
});

after(async () => {
  store?.destroy();
  await Promise.allSettled([rgw?.stop(), mdb?.stop()]);
  if (work) await rm(work, { recursive: true, force: true });
  console.log(`# backup timings (ms): ${JSON.stringify(timings)}`);
});

const T1 = new Date('2026-11-20T03:00:00Z');
const T2 = new Date('2026-11-21T03:00:00Z');
let sumsA = '';
let sumsB = '';
let filesA = '';
let filesB = '';

test('backup a lab site twice (db dump + restic files), encrypted, to the gateway', async () => {
  await createSiteDb(mdb, DB);
  await createSiteFiles(filesDir);
  sumsA = await dbSums();
  filesA = await fileHashes();
  assert.ok(lines(sumsA) >= 6, sumsA);
  const sampler = argvSampler([resticPassword, rgw.secretAccessKey, 'bk-pass-123', keys.identity]);
  let t = Date.now();
  const b1 = await backupSiteDb({ shell, store, target, recipient: keys.recipient, at: T1 });
  timings.dbBackupMs = Date.now() - t;
  t = Date.now();
  const f1 = await backupSiteFiles({ shell, access, target: { site: SITE, paths: [filesDir] }, host: 'lab-web1', time: T1 });
  timings.filesBackupFirstMs = Date.now() - t;
  assert.ok(f1.filesNew >= 20, JSON.stringify(f1));
  const seen = await sampler.stop();
  assert.deepEqual(seen.leaks, [], 'a secret appeared on a command line');
  assert.ok(seen.seenTools.has('restic'), `the sampler saw the commands run: ${[...seen.seenTools].join(',')}`);

  // the stored dump is ciphertext (age header), not SQL
  const head = (await store.getBytes(b1.manifest.key)).subarray(0, 64).toString('latin1');
  assert.match(head, /^age-encryption\.org\/v1\n-> X25519 /);
  assert.doesNotMatch(head, /CREATE TABLE|INSERT INTO/);
  timings.dbDumpBytes = b1.manifest.size;

  await mutateSiteDb(mdb, DB);
  await mutateSiteFiles(filesDir);
  sumsB = await dbSums();
  filesB = await fileHashes();
  assert.notEqual(sumsB, sumsA);
  assert.notEqual(filesB, filesA);
  await backupSiteDb({ shell, store, target, recipient: keys.recipient, at: T2 });
  t = Date.now();
  const f2 = await backupSiteFiles({ shell, access, target: { site: SITE, paths: [filesDir] }, host: 'lab-web1', time: T2 });
  timings.filesBackupIncrementalMs = Date.now() - t;
  assert.equal(f2.filesNew, 1);

  const entries = await listBackups(store, siteDbPrefix(SITE), DB_EXT);
  assert.deepEqual(
    entries.map((e) => [e.key, e.complete]),
    [
      ['db/site1/2026-11-20T030000Z.sql.gz.age', true],
      ['db/site1/2026-11-21T030000Z.sql.gz.age', true],
    ],
  );
  const snaps = await listSnapshots({ shell, access, site: SITE });
  assert.deepEqual(
    snaps.map((s) => s.time.toISOString()),
    [T1.toISOString(), T2.toISOString()],
  );
});

test('destroy rows and files, restore by date: identical row checksums and file hashes (RTO measured)', async () => {
  await destroySiteDb(mdb, DB);
  await destroySiteFiles(filesDir);
  assert.notEqual(await dbSums(), sumsA);

  // --date 2026-11-20 = the newest backup on or before that day: the first one
  const sampler = argvSampler([resticPassword, rgw.secretAccessKey, 'bk-pass-123', keys.identity]);
  let t = Date.now();
  const rdb = await restoreSiteDb({ shell, store, target, at: parseRestoreDate('2026-11-20'), ageIdentity: keys.identity });
  timings.dbRestoreMs = Date.now() - t;
  t = Date.now();
  const rf = await restoreSiteFiles({ shell, access, target: { site: SITE, paths: [filesDir] }, at: parseRestoreDate('2026-11-20') });
  timings.filesRestoreMs = Date.now() - t;
  timings.rtoSiteMs = timings.dbRestoreMs + timings.filesRestoreMs;
  const seen = await sampler.stop();
  assert.deepEqual(seen.leaks, [], 'a secret appeared on a command line');
  assert.equal(rdb.time.toISOString(), T1.toISOString());
  assert.equal(rf.time.toISOString(), T1.toISOString());
  assert.equal(await dbSums(), sumsA);
  assert.equal(await fileHashes(), filesA);

  // a time between the two backups still gives the first; "latest" gives the second
  const mid = await restoreSiteDb({ shell, store, target, at: parseRestoreDate('2026-11-21T02:59:59Z'), ageIdentity: keys.identity });
  assert.equal(mid.time.toISOString(), T1.toISOString());
  await restoreSiteDb({ shell, store, target, at: parseRestoreDate('latest'), ageIdentity: keys.identity });
  await restoreSiteFiles({ shell, access, target: { site: SITE, paths: [filesDir] }, at: parseRestoreDate('latest') });
  assert.equal(await dbSums(), sumsB);
  assert.equal(await fileHashes(), filesB);
  // the trigger came back too
  assert.match(await mdb.sql(`SHOW TRIGGERS FROM ${DB}`), /wp_posts_audit/);

  // before the first backup there is nothing: a clear error, the database untouched
  await assert.rejects(
    restoreSiteDb({ shell, store, target, at: parseRestoreDate('2026-11-19'), ageIdentity: keys.identity }),
    /no complete database backup of site site1 at or before 2026-11-19T23:59:59.999Z \(oldest is 2026-11-20T03:00:00.000Z\)/,
  );
  assert.equal(await dbSums(), sumsB);
});

test('restore into a scratch database: same checksums as the live one, live untouched', async () => {
  const t = Date.now();
  await restoreSiteDb({ shell, store, target, at: new Date(), ageIdentity: keys.identity, intoDb: 'wp_site1_restoretest' });
  timings.scratchRestoreMs = Date.now() - t;
  assert.equal(await dbSums('wp_site1_restoretest'), sumsB);
  assert.equal(await dbSums(), sumsB);
  await mdb.sql('DROP DATABASE wp_site1_restoretest');
});

test('a wrong age identity cannot restore, and the database is not touched', async () => {
  const other = await ageKeygen();
  await assert.rejects(restoreSiteDb({ shell, store, target, at: new Date(), ageIdentity: other.identity }), (e: Error) => {
    assert.ok(e instanceof BackupError);
    assert.match(e.message, /no identity matched any of the recipients/);
    assert.ok(!e.message.includes(other.identity));
    return true;
  });
  assert.equal(await dbSums(), sumsB);
});

test('wrong credentials: clear error, nothing deleted (db prune, upload, restic forget)', async () => {
  const before = (await store.list('')).map((o) => o.key).sort();
  const snapsBefore = (await listSnapshots({ shell, access, site: SITE })).map((s) => s.id);
  const bad = new ObjectStore({ ...storeCfg, secretAccessKey: 'not-the-secret-key-000', maxAttempts: 1 });
  const unknown = new ObjectStore({ ...storeCfg, accessKeyId: 'NOSUCHKEY0000000', maxAttempts: 1 });
  // a prune that WOULD delete both dumps (now = a year later, keep 1 day)
  const later = new Date('2027-12-01T00:00:00Z');
  await assert.rejects(pruneSiteDb({ store: bad, site: SITE, now: later, policy: { withinDays: 1 } }), (e: Error) => {
    assert.ok(e instanceof StoreCredentialsError, String(e));
    assert.match(
      e.message,
      /credentials rejected \(SignatureDoesNotMatch, HTTP 403\): the secret key does not match the access key id\. Check WPFARM_S3_ACCESS_KEY \/ WPFARM_S3_SECRET_KEY in \.env/,
    );
    assert.ok(!e.message.includes('not-the-secret-key-000'));
    return true;
  });
  await assert.rejects(
    pruneSiteDb({ store: unknown, site: SITE, now: later, policy: { withinDays: 1 } }),
    /InvalidAccessKeyId.*unknown to the store/,
  );
  await assert.rejects(
    backupSiteDb({ shell, store: bad, target, recipient: keys.recipient, at: new Date('2026-11-22T03:00:00Z') }),
    /credentials rejected/,
  );
  await assert.rejects(
    forgetSiteFiles({
      shell,
      access: { ...access, store: { ...storeCfg, secretAccessKey: 'not-the-secret-key-000' } },
      site: SITE,
      policy: { last: 1 },
    }),
    (e: Error) => {
      assert.ok(e instanceof StoreCredentialsError, String(e));
      return true;
    },
  );
  // a wrong restic password is a clear error too (and cannot forget anything)
  await assert.rejects(
    forgetSiteFiles({ shell, access: { ...access, password: 'wrong-restic-password' }, site: SITE, policy: { last: 1 } }),
    /wrong password or no key found/,
  );
  bad.destroy();
  unknown.destroy();
  assert.deepEqual((await store.list('')).map((o) => o.key).sort(), before);
  assert.deepEqual(
    (await listSnapshots({ shell, access, site: SITE })).map((s) => s.id),
    snapsBefore,
  );
});

test('a failing dump (wrong database password) fails the run, says why, and leaves no object behind', async () => {
  const before = (await store.list('db/')).map((o) => o.key).sort();
  await assert.rejects(
    backupSiteDb({
      shell,
      store,
      target: { ...target, dbPassword: 'wrong-db-password' },
      recipient: keys.recipient,
      at: new Date('2026-11-21T09:00:00Z'),
    }),
    (e: Error) => {
      assert.ok(e instanceof BackupError, String(e));
      assert.equal((e as BackupError).stage, 'dump');
      assert.match(e.message, /mariadb-dump of wp_site1 on lab-db1 exited 2: .*Access denied for user 'wpbackup'@'127\.0\.0\.1'/s);
      assert.ok(!e.message.includes('wrong-db-password'));
      return true;
    },
  );
  assert.deepEqual((await store.list('db/')).map((o) => o.key).sort(), before);
});

test('gateway killed mid-upload: the run fails, earlier backups stay intact and restorable', async () => {
  await addBigTable(mdb, DB, 32);
  const beforeKeys = (await store.list('db/')).map((o) => o.key).sort();
  const at = new Date('2026-11-22T03:00:00Z');
  let killed = false;
  const small = new ObjectStore({ ...storeCfg, maxAttempts: 2 });
  // kill radosgw as soon as the second part is stored
  const origPut = small.putStream.bind(small);
  small.putStream = (key, src) =>
    origPut(key, src, {
      onPart: (n) => {
        if (n === 2 && !killed) {
          killed = true;
          void rgw.killGateway();
        }
      },
    });
  const t = Date.now();
  try {
    await assert.rejects(backupSiteDb({ shell, store: small, target, recipient: keys.recipient, at }), (e: Error) => {
      assert.ok(e instanceof BackupError, String(e));
      assert.equal((e as BackupError).stage, 'upload');
      assert.match(
        e.message,
        /database backup of site site1 to db\/site1\/2026-11-22T030000Z\.sql\.gz\.age failed; earlier backups are untouched/,
      );
      return true;
    });
  } finally {
    timings.failedRunDetectedMs = Date.now() - t;
    small.destroy();
    if (killed) await rgw.startGateway();
  }
  assert.ok(killed, 'the gateway was killed during the upload');
  const afterKeys = (await store.list('db/')).map((o) => o.key).sort();
  assert.deepEqual(afterKeys, beforeKeys, 'no new object, no manifest, nothing lost');
  assert.equal(await store.head(manifestKey('db/site1/2026-11-22T030000Z.sql.gz.age')), null);
  const mp = await store.client.send(new ListMultipartUploadsCommand({ Bucket: storeCfg.bucket }));
  // the gateway was down when the run tried to abort: one interrupted upload is left; cleanup aborts it
  assert.deepEqual(
    mp.Uploads?.map((u) => u.Key),
    ['db/site1/2026-11-22T030000Z.sql.gz.age'],
  );
  assert.deepEqual(await store.abortStaleUploads('db/', 0), ['db/site1/2026-11-22T030000Z.sql.gz.age']);
  const mp2 = await store.client.send(new ListMultipartUploadsCommand({ Bucket: storeCfg.bucket }));
  assert.equal(mp2.Uploads?.length ?? 0, 0);
  // the earlier backup restores (its sha256 checked against the manifest)
  await restoreSiteDb({ shell, store, target, at: new Date(), ageIdentity: keys.identity, intoDb: 'wp_site1_after_fault' });
  assert.equal(await dbSums('wp_site1_after_fault'), sumsB);
  await mdb.sql('DROP DATABASE wp_site1_after_fault');

  // and a full run with the gateway back succeeds: many parts
  const t2 = Date.now();
  const ok = await backupSiteDb({ shell, store, target, recipient: keys.recipient, at });
  timings.bigDbBackupMs = Date.now() - t2;
  timings.bigDbBackupBytes = ok.manifest.size;
  assert.ok(ok.manifest.size > 32 * 1024 * 1024, String(ok.manifest.size));
  const t3 = Date.now();
  await restoreSiteDb({ shell, store, target, at: new Date(), ageIdentity: keys.identity, intoDb: 'wp_site1_big' });
  timings.bigDbRestoreMs = Date.now() - t3;
  assert.equal(await dbSums('wp_site1_big'), await dbSums());
  await mdb.sql('DROP DATABASE wp_site1_big');
});

test('gateway killed during a restic files backup: the run fails at its time limit, earlier snapshots intact; the next run unlocks and succeeds', async () => {
  const snapsBefore = (await listSnapshots({ shell, access, site: SITE })).map((s) => s.id);
  const big = join(filesDir, 'uploads/2026/12');
  await mkdir(big, { recursive: true });
  for (let i = 0; i < 6; i++) await writeFile(join(big, `video-${i}.mp4`), randomBytes(4 * 1024 * 1024));
  const packsBefore = (await store.list(`files/${SITE}/data/`)).length;
  let killed = false;
  let stopWatch = false;
  const watcher = (async () => {
    while (!killed && !stopWatch) {
      if ((await store.list(`files/${SITE}/data/`)).length > packsBefore) {
        killed = true;
        await rgw.killGateway();
      } else await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const t = Date.now();
  const at = new Date('2026-11-22T03:00:00Z');
  try {
    await assert.rejects(
      backupSiteFiles({ shell, access, target: { site: SITE, paths: [filesDir] }, host: 'lab-web1', time: at, timeoutSec: 20 }),
      (e: Error) => {
        assert.ok(e instanceof BackupError, String(e));
        assert.match(
          e.message,
          /^files: restic on lab-db1 did not finish within 20 s \(store unreachable or too slow\); no snapshot was written/,
        );
        return true;
      },
    );
  } finally {
    stopWatch = true;
    await watcher;
    timings.filesFailedRunMs = Date.now() - t;
    if (killed) await rgw.startGateway();
  }
  assert.ok(killed, 'the gateway was killed while restic uploaded');
  assert.deepEqual(
    (await listSnapshots({ shell, access, site: SITE })).map((s) => s.id),
    snapsBefore,
  );
  // the killed run left its lock in the repository; the next run removes it (stale: its process is gone)
  const t2 = Date.now();
  const ok = await backupSiteFiles({ shell, access, target: { site: SITE, paths: [filesDir] }, host: 'lab-web1', time: at });
  timings.filesBackupAfterFaultMs = Date.now() - t2;
  assert.equal(ok.filesNew, 6);
  const after = await listSnapshots({ shell, access, site: SITE });
  assert.deepEqual(
    after.map((s) => s.time.toISOString()),
    [T1.toISOString(), T2.toISOString(), at.toISOString()],
  );
});

test('retention on the gateway: db dumps older than 30 days deleted with their manifests; restic forget keeps what the policy says', async () => {
  // simulated dates: dumps every 6 hours from 2026-09-01 to 2026-11-19, made by uploading real dump bytes
  const src = await store.getBytes('db/site1/2026-11-20T030000Z.sql.gz.age');
  const srcManifest = JSON.parse((await store.getBytes(manifestKey('db/site1/2026-11-20T030000Z.sql.gz.age'))).toString());
  const made: string[] = [];
  for (let t = Date.UTC(2026, 8, 1); t < Date.UTC(2026, 10, 20); t += 6 * 3_600_000) {
    made.push(`db/site1/${formatStamp(new Date(t))}${DB_EXT}`);
  }
  for (let i = 0; i < made.length; i += 16) {
    await Promise.all(
      made.slice(i, i + 16).map(async (k) => {
        await store.putBytes(k, src);
        await store.putBytes(manifestKey(k), JSON.stringify({ ...srcManifest, key: k }));
      }),
    );
  }
  const now = new Date('2026-11-22T12:00:00Z');
  const dry = await pruneSiteDb({ store, site: SITE, now, dryRun: true });
  const cutoff = now.getTime() - 30 * 86_400_000; // 2026-10-23T12:00Z
  const all = await listBackups(store, siteDbPrefix(SITE), DB_EXT);
  const expectKeep = all.filter((e) => e.time.getTime() >= cutoff).map((e) => e.key);
  assert.deepEqual([...dry.kept].sort(), [...expectKeep].sort());
  assert.equal(dry.kept.length + dry.deleted.length, all.length);
  assert.equal(dry.deleted.length, made.filter((k) => k < 'db/site1/2026-10-23T120000Z').length);
  const t = Date.now();
  const real = await pruneSiteDb({ store, site: SITE, now });
  timings.dbPruneMs = Date.now() - t;
  timings.dbPruneDeleted = real.deleted.length;
  const left = (await store.list('db/site1/')).map((o) => o.key);
  assert.deepEqual(left.filter((k) => k.endsWith(DB_EXT)).sort(), [...expectKeep].sort());
  assert.deepEqual(left.filter((k) => k.endsWith('.json')).sort(), expectKeep.map(manifestKey).sort());

  // files: restic forget with the architecture policy (7 daily, 4 weekly, 3 monthly) on S3
  const snapsBefore = await listSnapshots({ shell, access, site: SITE });
  const dryF = await forgetSiteFiles({ shell, access, site: SITE, dryRun: true });
  assert.equal(dryF.keep.length + dryF.remove.length, snapsBefore.length);
  const realF = await forgetSiteFiles({ shell, access, site: SITE });
  const after = await listSnapshots({ shell, access, site: SITE });
  assert.deepEqual(after.map((s) => s.id).sort(), [...realF.keep].sort());
});

test('weekly restore test: newest backups restored into a scratch database and directory, checked, cleaned up; live untouched', async () => {
  const liveSums = await dbSums();
  const liveFiles = await fileHashes();
  const scratchDir = join(work, 'scratch-files');
  const t = Date.now();
  const rep = await restoreTestSite({
    site: SITE,
    store,
    ageIdentity: keys.identity,
    db: { shell, target },
    files: { shell, access, target: { site: SITE, paths: [filesDir] }, scratchDir },
  });
  timings.weeklyRestoreTestMs = Date.now() - t;
  assert.equal(rep.ok, true, rep.problems.join('; '));
  assert.equal(rep.db?.key, 'db/site1/2026-11-22T030000Z.sql.gz.age');
  assert.equal(rep.db?.identicalToLive, true);
  assert.equal(rep.db?.tables, 7);
  const liveFileCount = lines((await runHostCommand(shell, { script: fileHashesCommand(filesDir), secrets: [] }, {})).stdout);
  assert.equal(rep.files?.files, liveFileCount);
  assert.equal(rep.files?.identicalToLive, true);
  assert.equal(rep.files?.backupTime, '2026-11-22T03:00:00.000Z');
  assert.equal(await dbSums(), liveSums);
  assert.equal(await fileHashes(), liveFiles);
  assert.equal((await mdb.sql("SHOW DATABASES LIKE 'wp\\_site1\\_restoretest'")).trim(), '');
  assert.equal(existsSync(scratchDir), false);
  // a change made after the backup is reported (not identical to live), the restore itself still passes
  await writeFile(join(filesDir, 'uploads/after-backup.txt'), 'new');
  const rep2 = await restoreTestSite({
    site: SITE,
    store,
    ageIdentity: keys.identity,
    files: { shell, access, target: { site: SITE, paths: [filesDir] }, scratchDir },
  });
  assert.equal(rep2.ok, true, rep2.problems.join('; '));
  assert.equal(rep2.files?.identicalToLive, false);
  await rm(join(filesDir, 'uploads/after-backup.txt'));
  // a broken store (wrong secret) makes it fail loudly
  const rep3 = await restoreTestSite({
    site: SITE,
    store: new ObjectStore({ ...storeCfg, secretAccessKey: 'wrong-secret-key-1234', maxAttempts: 1 }),
    ageIdentity: keys.identity,
    db: { shell, target },
  });
  assert.equal(rep3.ok, false);
  assert.match(rep3.problems[0] ?? '', /^db: .*credentials rejected/);
});

test('mariabackup: full + incrementals (encrypted, streamed), restore at a date between them into a scratch server: identical checksums', async () => {
  const lsnRoot = join(work, 'lsn');
  const ctarget = { conn, dbPassword: 'bk-pass-123', lsnRoot };
  await mdb.sql('DROP TABLE IF EXISTS wp_big', DB); // keep the streams small for this test
  await mdb.sql('CREATE DATABASE probe');
  await mdb.sql(
    'CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(64)); INSERT INTO t SELECT seq, CONCAT("v", seq) FROM seq_1_to_1000',
    'probe',
  );
  const sums = async (c: MariaDbConn, pw: Record<string, string>) => {
    const out: string[] = [];
    for (const db of [DB, 'probe']) {
      const r = await runHostCommand(shell, tableChecksumsCommand(db, c), pw);
      assert.equal(r.code, 0, r.stderr);
      out.push(r.stdout);
    }
    return out.join('');
  };
  const live = () => sums(conn, { MYSQL_PWD: 'bk-pass-123' });
  let t = Date.now();
  const full = await backupCluster({
    shell,
    store,
    target: ctarget,
    recipient: keys.recipient,
    kind: 'full',
    at: new Date('2026-11-23T00:00:00Z'),
  });
  timings.mariabackupFullMs = Date.now() - t;
  timings.mariabackupFullBytes = full.manifest.size;
  await mdb.sql('UPDATE probe.t SET v = CONCAT(v, "-6h") WHERE id % 3 = 0; INSERT INTO probe.t VALUES (5000, "added at 6h")');
  await mdb.sql('UPDATE wp_posts SET comment_count = comment_count + 5 WHERE ID % 5 = 0', DB);
  const x1 = await live();
  t = Date.now();
  const i1 = await backupCluster({
    shell,
    store,
    target: ctarget,
    recipient: keys.recipient,
    kind: 'incr',
    at: new Date('2026-11-23T06:00:00Z'),
  });
  timings.mariabackupIncrMs = Date.now() - t;
  timings.mariabackupIncrBytes = i1.manifest.size;
  assert.equal(i1.promotedToFull, false);
  assert.equal(i1.manifest.base, full.manifest.key);
  assert.equal(i1.manifest.fromLsn, full.manifest.toLsn);
  await mdb.sql('DELETE FROM probe.t WHERE id < 500');
  const i2 = await backupCluster({
    shell,
    store,
    target: ctarget,
    recipient: keys.recipient,
    kind: 'incr',
    at: new Date('2026-11-23T12:00:00Z'),
  });
  assert.equal(i2.manifest.base, i1.manifest.key);
  assert.notEqual(await live(), x1);
  assert.deepEqual(
    (await clusterChainAt(store, new Date('2026-11-23T13:00:00Z'))).map((m) => m.key),
    [full.manifest.key, i1.manifest.key, i2.manifest.key],
  );

  t = Date.now();
  const r = await restoreClusterTo({
    shell,
    store,
    at: parseRestoreDate('2026-11-23T06:30Z'),
    dir: join(work, 'cluster-restore'),
    ageIdentity: keys.identity,
  });
  timings.mariabackupRestorePrepareMs = Date.now() - t;
  assert.deepEqual(r.chain, [full.manifest.key, i1.manifest.key]);
  const scratch = await startMariaDb({ datadir: r.datadir });
  try {
    timings.mariabackupRtoMs = Date.now() - t;
    assert.equal(await sums({ socket: scratch.socket, user: 'root' }, {}), x1);
  } finally {
    await scratch.stop();
  }
});
