// The backup playbooks end to end, as an operator runs them (`--local`: this machine is the db and
// files host), against a real Ceph RGW and a real MariaDB started here; settings from the environment.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, mkdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRgw, type Rgw } from '../harness/rgw.ts';
import { startMariaDb, type LocalMariaDb } from '../harness/backup-mariadb.ts';
import { createSiteDb, createSiteFiles, destroySiteDb, destroySiteFiles } from '../harness/backup-site.ts';
import { ageKeygen, ageRecipientOf } from '../../roles/backup/keys.ts';
import { LocalShell, runHostCommand } from '../../roles/backup/runner.ts';
import { fileHashesCommand, tableChecksumsCommand } from '../../roles/backup/commands.ts';

let rgw: Rgw;
let mdb: LocalMariaDb;
let work: string;
let inv: string;
let sitesDir: string;
let siteFiles: string;
let env: NodeJS.ProcessEnv;
const shell = new LocalShell();
const timings: Record<string, number> = {};

function play(script: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [
        ...['--no-warnings', '--import', 'tsx', `playbooks/${script}`, '-i', inv, '--sites-dir', sitesDir, '--local'],
        // --local: the controller is the db host; its textfile directory is this test's
        ...(script === 'backup.ts' ? ['--textfile-dir', join(work, 'textfile')] : []),
        ...args,
      ],
      { env: { ...env, ...extraEnv }, maxBuffer: 16 << 20, timeout: 300_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}
const sums = async () => (await runHostCommand(shell, tableChecksumsCommand('wp_shop1', { socket: mdb.socket, user: 'root' }), {})).stdout;
const hashes = async () => {
  let out = '';
  for (const d of ['uploads', 'plugins', 'themes'])
    out += (await runHostCommand(shell, { script: fileHashesCommand(join(siteFiles, d)), secrets: [] }, {})).stdout;
  return out;
};

before(async () => {
  [rgw, mdb] = await Promise.all([startRgw(), startMariaDb()]);
  work = await mkdtemp(join(tmpdir(), 'wpfarm-backup-play-'));
  sitesDir = join(work, 'sites');
  await mkdir(sitesDir);
  await writeFile(join(sitesDir, 'shop1.yml'), 'id: shop1\ndomain: shop1.lab.test\nadmin_allowlist: [10.77.0.0/24]\n');
  siteFiles = join(work, 'gluster/sites/shop1');
  inv = join(work, 'inventory.yml');
  await writeFile(
    inv,
    [
      'vars:',
      `  gluster_sites_path: ${join(work, 'gluster/sites')}`,
      `  mariadb_socket: ${mdb.socket}`,
      `  backup_lsn_root: ${join(work, 'lsn')}`,
      'hosts:',
      '  db1: { address: 127.0.0.1, port: 22, user: root }',
      'groups:',
      '  db: { hosts: [db1] }',
      '  storage: { hosts: [db1] }',
      '',
    ].join('\n'),
  );
  const keys = await ageKeygen();
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    WPFARM_S3_ENDPOINT: rgw.endpoint,
    WPFARM_S3_REGION: rgw.region,
    WPFARM_S3_BUCKET: 'wpfarm-play',
    WPFARM_S3_ACCESS_KEY: rgw.accessKeyId,
    WPFARM_S3_SECRET_KEY: rgw.secretAccessKey,
    WPFARM_BACKUP_AGE_IDENTITY: keys.identity,
    WPFARM_RESTIC_PASSWORD: 'play-restic-password',
  };
  // the bucket is created by the operator once (or by the provisioning role); here through the SDK
  const { ObjectStore } = await import('../../roles/backup/s3.ts');
  const s = new ObjectStore({
    endpoint: rgw.endpoint,
    region: rgw.region,
    bucket: 'wpfarm-play',
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  });
  await s.ensureBucket();
  s.destroy();
  await createSiteDb(mdb, 'wp_shop1', 400);
  for (const d of ['uploads', 'plugins', 'themes']) await mkdir(join(siteFiles, d), { recursive: true });
  await createSiteFiles(join(work, 'tmp-content'));
  await rm(join(siteFiles), { recursive: true });
  await mkdir(siteFiles, { recursive: true });
  for (const d of ['uploads', 'plugins', 'themes']) await shellCp(join(work, 'tmp-content', d), join(siteFiles, d));
});

async function shellCp(from: string, to: string) {
  const r = await runHostCommand(shell, { script: `cp -a ${from} ${to}`, secrets: [] }, {});
  assert.equal(r.code, 0, r.stderr);
}

after(async () => {
  await Promise.allSettled([rgw?.stop(), mdb?.stop()]);
  if (work) await rm(work, { recursive: true, force: true });
  console.log(`# playbook timings (ms): ${JSON.stringify(timings)}`);
});

test('backup.ts: sites-db, files and cluster-full succeed with a JSON report (exit 0)', async () => {
  for (const what of ['sites-db', 'files', 'cluster-full']) {
    const t = Date.now();
    const r = await play('backup.ts', ['--what', what, '--prune']);
    timings[`backup_${what}`] = Date.now() - t;
    assert.equal(r.code, 0, `${what}: ${r.stderr}\n${r.stdout}`);
    const rep = JSON.parse(r.stdout) as { ok: boolean; steps: Array<{ step: string; ok: boolean }> };
    assert.equal(rep.ok, true);
    assert.ok(rep.steps.length >= 1 && rep.steps.every((s) => s.ok), r.stdout);
  }
  // BackupTooOld's series, one textfile per kind (node-exporter's textfile collector)
  const now = Date.now() / 1000;
  for (const [kind, site] of [
    ['db', 'shop1'],
    ['files', 'shop1'],
    ['cluster-full', 'cluster'],
  ]) {
    const prom = await readFile(join(work, 'textfile', `wpfarm_backup_${kind}.prom`), 'utf8');
    const m = new RegExp(`^wpfarm_backup_last_success_timestamp_seconds\\{kind="${kind}",site="${site}"\\} (\\d+)$`, 'm').exec(prom);
    assert.ok(m, `${kind}: ${prom}`);
    assert.ok(now - Number(m[1]) < 600, `${kind}: last success ${m[1]}, now ${now}`);
  }
});

test('restore-db.ts / restore-files.ts --date latest bring back destroyed rows and files (identical)', async () => {
  const s0 = await sums();
  const h0 = await hashes();
  await destroySiteDb(mdb, 'wp_shop1');
  await destroySiteFiles(join(siteFiles, 'uploads'));
  assert.notEqual(await sums(), s0);
  // refuses to replace the live database without --yes (bad input, exit 4)
  const no = await play('restore-db.ts', ['--site', 'shop1', '--date', 'latest']);
  assert.equal(no.code, 4);
  assert.match(no.stderr, /replaces the live database of site shop1: add --yes/);
  const bad = await play('restore-db.ts', ['--site', 'shop1', '--date', 'last tuesday', '--yes']);
  assert.equal(bad.code, 4);
  assert.match(bad.stderr, /invalid --date "last tuesday"/);
  let t = Date.now();
  const rdb = await play('restore-db.ts', ['--site', 'shop1', '--date', 'latest', '--yes']);
  timings.restoreDbPlaybook = Date.now() - t;
  assert.equal(rdb.code, 0, rdb.stderr);
  assert.match(JSON.parse(rdb.stdout).restored, /^db\/shop1\/\d{4}-\d{2}-\d{2}T\d{6}Z\.sql\.gz\.age$/);
  t = Date.now();
  const rf = await play('restore-files.ts', ['--site', 'shop1', '--date', 'latest', '--yes']);
  timings.restoreFilesPlaybook = Date.now() - t;
  assert.equal(rf.code, 0, rf.stderr);
  assert.equal(await sums(), s0);
  assert.equal(await hashes(), h0);
});

test('backup.ts --restore-test passes; wrong credentials fail the run (exit 2) with a clear message and no secret', async () => {
  const t = Date.now();
  const rt = await play('backup.ts', ['--restore-test']);
  timings.restoreTestPlaybook = Date.now() - t;
  assert.equal(rt.code, 0, rt.stderr + rt.stdout);
  const rep = JSON.parse(rt.stdout) as {
    steps: Array<{ result: { db: { identicalToLive: boolean }; files: { identicalToLive: boolean } } }>;
  };
  assert.equal(rep.steps[0]?.result.db.identicalToLive, true);
  assert.equal(rep.steps[0]?.result.files.identicalToLive, true);
  const prom = await readFile(join(work, 'textfile', 'wpfarm_backup_restore-test.prom'), 'utf8');
  assert.match(prom, /^wpfarm_backup_restore_test_last_success_timestamp_seconds\{site="shop1"\} \d+$/m);
  // a failed run leaves the last success as it was
  const dbBefore = await readFile(join(work, 'textfile', 'wpfarm_backup_db.prom'), 'utf8');

  const wrong = 'wrong-secret-key-for-test-0001';
  const r = await play('backup.ts', ['--what', 'sites-db'], { WPFARM_S3_SECRET_KEY: wrong });
  assert.equal(r.code, 2, r.stderr);
  const j = JSON.parse(r.stdout) as { ok: boolean; steps: Array<{ ok: boolean; error?: string }> };
  assert.equal(j.ok, false);
  assert.match(j.steps[0]?.error ?? '', /credentials rejected \(SignatureDoesNotMatch/);
  assert.ok(!r.stdout.includes(wrong) && !r.stderr.includes(wrong));
  assert.equal(await readFile(join(work, 'textfile', 'wpfarm_backup_db.prom'), 'utf8'), dbBefore);
});

test("a recipient that is not the identity's is refused before anything is written (exit 4, both names, no secret)", async () => {
  const other = await ageKeygen();
  const dbBefore = await readFile(join(work, 'textfile', 'wpfarm_backup_db.prom'), 'utf8').catch(() => '');
  const r = await play('backup.ts', ['--what', 'sites-db'], { WPFARM_BACKUP_AGE_RECIPIENT: other.recipient });
  assert.equal(r.code, 4, r.stderr + r.stdout);
  const out = r.stdout + r.stderr;
  assert.match(out, /WPFARM_BACKUP_AGE_RECIPIENT \(age1\S+\) is not the public key of WPFARM_BACKUP_AGE_IDENTITY/);
  assert.ok(!out.includes(env.WPFARM_BACKUP_AGE_IDENTITY as string) && !out.includes(other.identity), 'no identity in the output');
  assert.equal(await readFile(join(work, 'textfile', 'wpfarm_backup_db.prom'), 'utf8').catch(() => ''), dbBefore, 'no backup ran');
  // the identity's own recipient is accepted
  const own = await ageRecipientOf(env.WPFARM_BACKUP_AGE_IDENTITY as string);
  const same = await play('backup.ts', ['--what', 'sites-db'], { WPFARM_BACKUP_AGE_RECIPIENT: own });
  assert.equal(same.code, 0, same.stderr + same.stdout);
});

test('backup.ts --what config: the repository as an encrypted git bundle; restored clone has the commits', async () => {
  const head = (await runHostCommand(shell, { script: 'git rev-parse HEAD', secrets: [] }, {})).stdout.trim();
  const r = await play('backup.ts', ['--what', 'config', '--prune']);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const key = (JSON.parse(r.stdout) as { steps: Array<{ result: { key: string } }> }).steps[0]?.result.key ?? '';
  assert.match(key, /^config\/\d{4}-\d{2}-\d{2}T\d{6}Z\.bundle\.age$/);
  const { ObjectStore } = await import('../../roles/backup/s3.ts');
  const { restoreConfig } = await import('../../roles/backup/config.ts');
  const store = new ObjectStore({
    endpoint: rgw.endpoint,
    region: rgw.region,
    bucket: 'wpfarm-play',
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  });
  try {
    assert.match((await store.getBytes(key)).subarray(0, 22).toString('latin1'), /^age-encryption\.org\/v1/);
    const dir = join(work, 'config-restore');
    assert.equal(await restoreConfig({ shell, store, at: new Date(), dir, ageIdentity: env.WPFARM_BACKUP_AGE_IDENTITY as string }), key);
    const has = await runHostCommand(shell, { script: `git -C ${dir} cat-file -e ${head}^{commit}`, secrets: [] }, {});
    assert.equal(has.code, 0, has.stderr);
  } finally {
    store.destroy();
  }
});
