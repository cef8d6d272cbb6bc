// The backup playbooks against a REMOTE host over SSH (no --local): a real OpenSSH sshd host in its own
// network namespace (test/harness/sshd.ts), a real Ceph RGW on this machine's loopback, real restic, age
// and MariaDB. The host cannot reach the controller's loopback: restic reaches the gateway through the
// reverse SSH tunnel roles/backup opens (proved: a direct request from the host fails). The lab tier
// (test/lab/65-backup.test.ts) does the same on the farm's db and Gluster hosts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, mkdir, writeFile, cp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { startRgw, type Rgw } from '../harness/rgw.ts';
import { startSshdHosts, type SshdLab } from '../harness/sshd.ts';
import { startMariaDb, type LocalMariaDb } from '../harness/backup-mariadb.ts';
import { createSiteDb, createSiteFiles, destroySiteDb, destroySiteFiles } from '../harness/backup-site.ts';
import { ageKeygen } from '../../roles/backup/keys.ts';
import { ObjectStore } from '../../roles/backup/s3.ts';
import { LocalShell, runHostCommand } from '../../roles/backup/runner.ts';
import { fileHashesCommand, tableChecksumsCommand } from '../../roles/backup/commands.ts';

let rgw: Rgw;
let lab: SshdLab;
let mdb: LocalMariaDb;
let work: string;
let env: NodeJS.ProcessEnv;
let secrets: string[] = [];
const local = new LocalShell();
const SITE = 'remote1';
const timings: Record<string, number> = {};

function inventory(name: string, vars: string[]): Promise<string> {
  const h = lab.hosts[0]!;
  const file = join(work, `${name}.yml`);
  return writeFile(
    file,
    [
      'settings:',
      `  known_hosts: ${lab.knownHosts}`,
      'vars:',
      ...vars.map((v) => `  ${v}`),
      'hosts:',
      `  ${h.name}: { address: ${h.address}, port: 22, user: root, key: ${lab.keyFile} }`,
      'groups:',
      `  db: { hosts: [${h.name}] }`,
      `  workers: { hosts: [${h.name}] }`,
      '',
    ].join('\n'),
  ).then(() => file);
}

function play(
  script: string,
  inv: string,
  args: string[],
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--no-warnings', '--import', 'tsx', `playbooks/${script}`, '-i', inv, '--sites-dir', join(work, 'sites'), ...args],
      { env: { ...env, ...extraEnv }, maxBuffer: 16 << 20, timeout: 300_000 },
      (err, stdout, stderr) => {
        for (const s of secrets) assert.ok(!stdout.includes(s) && !stderr.includes(s), `${script}: a secret value is in its output`);
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
      },
    );
  });
}

/** the site's files as the remote host sees them (through /proc/<sshd pid>/root) */
const siteRoot = () => join(lab.hosts[0]!.root, 'srv/sites', SITE);
const hashes = async () => {
  let out = '';
  for (const d of ['uploads', 'plugins', 'themes'])
    out += (await runHostCommand(local, { script: fileHashesCommand(join(siteRoot(), d)), secrets: [] }, {})).stdout;
  return out;
};
const sums = async () =>
  (await runHostCommand(local, tableChecksumsCommand('wp_remote1', { socket: mdb.socket, user: 'root' }), {})).stdout;

before(async () => {
  [rgw, lab, mdb] = await Promise.all([startRgw(), startSshdHosts(1, { prefix: 'bk' }), startMariaDb()]);
  // the host's root is an overlay of / (a socket seen through it refuses connections): bind the real
  // socket directory into the host's mount namespace, where the db host's MariaDB socket would be
  const h = lab.hosts[0]!;
  const target = join(lab.dir, h.name, 'merged/run/mysqld-test');
  const bind = await runHostCommand(
    local,
    {
      script: `nsenter -t ${h.pid} -m -- sh -c 'mkdir -p "$1" && mount --bind "$2" "$1"' sh ${target} ${dirname(mdb.socket)}`,
      secrets: [],
    },
    {},
  );
  assert.equal(bind.code, 0, bind.stderr);
  work = await mkdtemp(join(tmpdir(), 'wpfarm-backup-remote-'));
  await mkdir(join(work, 'sites'));
  await writeFile(join(work, 'sites', `${SITE}.yml`), `id: ${SITE}\ndomain: ${SITE}.lab.test\nadmin_allowlist: [10.77.0.0/24]\n`);
  const keys = await ageKeygen();
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    WPFARM_S3_ENDPOINT: rgw.endpoint,
    WPFARM_S3_REGION: rgw.region,
    WPFARM_S3_BUCKET: 'wpfarm-remote',
    WPFARM_S3_ACCESS_KEY: rgw.accessKeyId,
    WPFARM_S3_SECRET_KEY: rgw.secretAccessKey,
    WPFARM_BACKUP_AGE_IDENTITY: keys.identity,
    WPFARM_RESTIC_PASSWORD: 'remote-restic-password-0001',
  };
  secrets = [rgw.secretAccessKey, keys.identity, 'remote-restic-password-0001'];
  const s = new ObjectStore({
    endpoint: rgw.endpoint,
    region: rgw.region,
    bucket: 'wpfarm-remote',
    accessKeyId: rgw.accessKeyId,
    secretAccessKey: rgw.secretAccessKey,
  });
  await s.ensureBucket();
  s.destroy();
  await createSiteDb(mdb, 'wp_remote1', 300);
  const content = join(work, 'content');
  await createSiteFiles(content);
  await mkdir(siteRoot(), { recursive: true });
  for (const d of ['uploads', 'plugins', 'themes'])
    await cp(join(content, d), join(siteRoot(), d), { recursive: true, preserveTimestamps: true });
});

after(async () => {
  await Promise.allSettled([rgw?.stop(), lab?.stop(), mdb?.stop()]);
  if (work) await rm(work, { recursive: true, force: true });
  console.log(`# remote backup timings (ms): ${JSON.stringify(timings)}`);
});

test('the host cannot reach the gateway on the controller loopback by itself', async () => {
  const h = lab.hosts[0]!;
  const r = await runHostCommand(
    local,
    { script: `ip netns exec ${h.netns} curl -s -m 3 -o /dev/null -w '%{http_code}' ${rgw.endpoint}/ || echo unreachable`, secrets: [] },
    {},
  );
  assert.match(r.stdout, /unreachable|000/);
});

test('files: backup over SSH (restic through the reverse tunnel), destroy, restore: identical; db: dump and restore over SSH', async () => {
  const inv = await inventory('ok', [
    'gluster_sites_path: /srv/sites',
    'backup_files_require_mount: false',
    `mariadb_socket: /run/mysqld-test/${basename(mdb.socket)}`,
  ]);
  let t = Date.now();
  const f = await play('backup.ts', inv, ['--what', 'files']);
  timings.filesBackup = Date.now() - t;
  assert.equal(f.code, 0, f.stderr + f.stdout);
  assert.match(f.stdout, /"snapshotId": "[0-9a-f]{8,64}"/);
  t = Date.now();
  const d = await play('backup.ts', inv, ['--what', 'sites-db']);
  timings.dbBackup = Date.now() - t;
  assert.equal(d.code, 0, d.stderr + d.stdout);
  assert.match(d.stdout, /"host": "bk01"/);
  const h0 = await hashes();
  const s0 = await sums();
  await destroySiteFiles(join(siteRoot(), 'uploads'));
  await destroySiteDb(mdb, 'wp_remote1');
  assert.notEqual(await hashes(), h0);
  t = Date.now();
  const rf = await play('restore-files.ts', inv, ['--site', SITE, '--date', 'latest', '--yes']);
  timings.filesRestore = Date.now() - t;
  assert.equal(rf.code, 0, rf.stderr + rf.stdout);
  t = Date.now();
  const rd = await play('restore-db.ts', inv, ['--site', SITE, '--date', 'latest', '--yes']);
  timings.dbRestore = Date.now() - t;
  assert.equal(rd.code, 0, rd.stderr + rd.stdout);
  assert.equal(await hashes(), h0);
  assert.equal(await sums(), s0);
});

test('a files host where the sites path is not a Gluster mount is refused (exit 2, clear error)', async () => {
  const inv = await inventory('nomount', ['gluster_sites_path: /srv/sites']);
  const r = await play('backup.ts', inv, ['--what', 'files']);
  assert.equal(r.code, 2, r.stderr + r.stdout);
  assert.match(r.stdout, /no host can back up the sites' files \(bk01: \/srv\/sites is on \w+, not a Gluster mount\)/);
});
