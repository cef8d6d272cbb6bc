// Lab tier: the bootstrapped lab backs its sites up by itself (issue 17). lab-up made the S3 store (Ceph RGW on
// the s3 container, keys generated in lab.env) and installed the backup schedule on the lab's controller (ctl,
// systemd): this test proves that schedule runs, with the farm's own settings and nothing passed by the test.
//   - phase 5 of bootstrap (the backup role) on the lab; node-exporter on the db host (monitoring, limited to it)
//   - a scratch site (prefix bk67): record in the lab's own site records (vars.wp_sites_dir), database on Galera,
//     files on the Gluster mount (test/harness/backup-site.ts)
//   - the real timers fire on ctl: wpfarm-backup-sites-db, -files, then the weekly -restore-test; each one's
//     service (its real ExecStart) ends in success (a drop-in OnActiveSec=1s makes each timer elapse now)
//   - list-sites shows the site's last backup; node-exporter on the db host serves BackupTooOld's series
//     (wpfarm_backup_last_success_timestamp_seconds{kind="db"|"files"}) and the restore test's
//   - everything it made is removed (site record, database, directory, its objects, its metric series)
// Prerequisites: lab-up (00-lab) with its s3 and ctl, a converged cluster (30-galera, 40-gluster).
//   node --import tsx --test test/lab/67-backup-schedule.test.ts
import { ADDR, INVENTORY, ROOT, cli, run, ssh } from '../harness/lab-sites.ts';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { CTL, PATHS, S3, containerName } from '../../scripts/lab/config.ts';
import { loadInventory } from '../../lib/inventory.ts';
import { readEnvFile, lookupEnv } from '../../lib/env.ts';
import { sh } from '../../lib/shell.ts';
import { str } from '../../lib/vars.ts';
import { ObjectStore } from '../../roles/backup/s3.ts';
import { createSiteDb, createSiteFiles } from '../harness/backup-site.ts';
import type { LocalMariaDb } from '../harness/backup-mariadb.ts';

const stamp = Date.now().toString(36).slice(-6);
const SITE = `bk67-${stamp}`;
const DB = `wp_bk67_${stamp}`;
const MOUNT = '/mnt/gluster/sites';
const SOCKET = '/run/mysqld/mysqld.sock';
const TEXTFILES = '/var/lib/prometheus/node-exporter';
const inv = loadInventory(INVENTORY);
const SITES_DIR = path.resolve(ROOT, str(inv.vars.wp_sites_dir, 'inventory/sites'));
const RECORD = path.join(SITES_DIR, `${SITE}.yml`);
const timings: Record<string, number> = {};
let work = '';
let filesHost = '';
let store: ObjectStore | undefined;

const ctl = (cmd: string) => ssh(CTL.address, cmd, { timeoutMs: 300_000 });
const galera = (): LocalMariaDb => ({
  dir: '',
  datadir: '',
  socket: SOCKET,
  port: 0,
  sql: (q: string, db?: string) =>
    ssh('db1', sh`mariadb --socket=${SOCKET} --user=root --default-character-set=utf8mb4 -N -B ${db ? [db] : []}`, { stdin: q }),
  stop: async () => undefined,
});

/** The timer elapses now (drop-in OnActiveSec=1s, restarted); waits for its service's run; the drop-in goes. */
async function fire(job: string): Promise<{ result: string; status: string; ms: number; log: string }> {
  const unit = `wpfarm-backup-${job}`;
  const dropIn = `/etc/systemd/system/${unit}.timer.d/zz-lab-test-now.conf`;
  const show = async () => {
    const out = await ctl(sh`systemctl show -p ActiveState,Result,ExecMainStatus,ExecMainExitTimestampMonotonic ${`${unit}.service`}`);
    return Object.fromEntries(out.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  };
  const before = (await show()).ExecMainExitTimestampMonotonic;
  const since = (await ctl('date +%s')).trim();
  const t0 = Date.now();
  await ctl(
    sh`mkdir -p ${path.dirname(dropIn)} && printf '[Timer]\nOnActiveSec=1s\nRandomizedDelaySec=0\nAccuracySec=1s\n' > ${dropIn}` +
      sh` && systemctl daemon-reload && systemctl restart ${`${unit}.timer`}`,
  );
  try {
    // the service runs (activating: a oneshot), then ends: a new exit time, and its result
    for (;;) {
      const st = await show();
      if (st.ActiveState !== 'activating' && st.ExecMainExitTimestampMonotonic !== before) {
        const log = await ctl(sh`journalctl -u ${`${unit}.service`} --since ${`@${since}`} -o cat --no-pager`);
        return { result: st.Result!, status: st.ExecMainStatus!, ms: Date.now() - t0, log };
      }
      if (Date.now() - t0 > 10 * 60_000) assert.fail(`${unit}: no run ended within 10 min (${JSON.stringify(st)})`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    await ctl(
      sh`rm -f ${dropIn} && rmdir --ignore-fail-on-non-empty ${path.dirname(dropIn)}` +
        sh` && systemctl daemon-reload && systemctl restart ${`${unit}.timer`}`,
    );
  }
}

before(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'wpfarm-bk67-'));
  for (const c of ['s3', 'ctl']) {
    const st = (await run('docker', ['inspect', '-f', '{{.State.Running}}', containerName(c)]).catch(() => ({ stdout: 'absent' }))).stdout;
    assert.equal(st.trim(), 'true', `the lab's ${c} container runs (lab-up makes it)`);
  }
  assert.equal(
    await ctl('systemctl is-active wpfarm-backup-sites-db.timer wpfarm-backup-files.timer wpfarm-backup-restore-test.timer'),
    'active\nactive\nactive',
  );
  // phase 5 of make bootstrap (the backup role), then node-exporter on db1 when the monitoring role has not run yet
  let t = Date.now();
  const p5 = await cli(work, 'playbooks/bootstrap.ts', ['--phase', '5']);
  assert.equal(p5.code, 0, p5.out.slice(-3000));
  timings.phase5Ms = Date.now() - t;
  if ((await ssh('db1', 'systemctl is-active prometheus-node-exporter', { nothrow: true })) !== 'active') {
    t = Date.now();
    const m = await cli(work, 'playbooks/run-role.ts', ['monitoring', '--limit', 'db1']);
    assert.equal(m.code, 0, m.out.slice(-3000));
    timings.monitoringDb1Ms = Date.now() - t;
  }
  // the scratch site: record in the lab's records, database on Galera, files on the Gluster mount
  for (const w of ['wrk1', 'wrk2']) {
    const r = await ssh(w, sh`findmnt -n -o FSTYPE -T ${MOUNT}; timeout 15 stat -c %i ${MOUNT} >/dev/null && echo answers`, {
      nothrow: true,
    });
    if (/fuse\.glusterfs/.test(r) && /answers/.test(r)) {
      filesHost = w;
      break;
    }
  }
  assert.ok(filesHost, 'a worker with the Gluster volume mounted');
  mkdirSync(SITES_DIR, { recursive: true });
  writeFileSync(RECORD, `id: ${SITE}\ndomain: ${SITE}.lab.test\n`);
  await createSiteDb(galera(), DB, 300);
  const local = path.join(work, 'content');
  await createSiteFiles(local);
  const { stdout: tar } = await run('bash', ['--norc', '-c', sh`tar -C ${local} -cf - uploads plugins themes | base64 -w0`], {
    maxBuffer: 64 << 20,
  });
  await ssh(filesHost, sh`mkdir -p ${`${MOUNT}/${SITE}`} && base64 -d | tar -C ${`${MOUNT}/${SITE}`} -xpf -`, { stdin: tar });
  const env = readEnvFile(PATHS.envFile);
  store = new ObjectStore({
    endpoint: lookupEnv('WPFARM_S3_ENDPOINT', env) ?? '',
    region: lookupEnv('WPFARM_S3_REGION', env) ?? 'us-east-1',
    bucket: lookupEnv('WPFARM_S3_BUCKET', env) ?? '',
    accessKeyId: lookupEnv('WPFARM_S3_ACCESS_KEY', env) ?? '',
    secretAccessKey: lookupEnv('WPFARM_S3_SECRET_KEY', env) ?? '',
  });
});

after(async () => {
  rmSync(RECORD, { force: true });
  await ssh('db1', sh`mariadb --socket=${SOCKET} -e ${`DROP DATABASE IF EXISTS \`${DB}\``}`, { nothrow: true });
  if (filesHost) await ssh(filesHost, sh`rm -rf -- ${`${MOUNT}/${SITE}`}`, { nothrow: true });
  // this site's series only (the others' stay)
  await ssh(
    'db1',
    sh`sed -i ${`/site="${SITE}"/d`} ${['db', 'files', 'restore-test'].map((k) => `${TEXTFILES}/wpfarm_backup_${k}.prom`)}`,
    {
      nothrow: true,
    },
  );
  if (store) {
    const keys = [...(await store.list(`db/${SITE}/`).catch(() => [])), ...(await store.list(`files/${SITE}/`).catch(() => []))].map(
      (o) => o.key,
    );
    if (keys.length) await store.deleteKeys(keys).catch(() => undefined);
    store.destroy();
  }
  if (work && existsSync(work)) rmSync(work, { recursive: true, force: true });
  console.log(`# backup schedule lab timings (ms): ${JSON.stringify(timings)}`);
});

test('the schedule on the lab controller: sites-db, files and the weekly restore test run on their timers and succeed', async (t) => {
  for (const job of ['sites-db', 'files', 'restore-test']) {
    const r = await fire(job);
    timings[job] = r.ms;
    t.diagnostic(`${job}: ${r.result} (exit ${r.status}) in ${r.ms} ms on ${CTL.name}`);
    assert.equal(`${r.result} ${r.status}`, 'success 0', `${job} on its timer:\n${r.log.slice(-4000)}`);
    assert.match(r.log, new RegExp(`"step": "(db|files|restore-test) ${SITE}",\\s*"ok": true`), r.log.slice(-4000));
  }
  // what the jobs put in the lab's store: the site's encrypted dump and its restic repository
  const objs = (await store!.list(`db/${SITE}/`)).map((o) => o.key);
  assert.ok(
    objs.some((k) => k.endsWith('.sql.gz.age')),
    objs.join(' '),
  );
  assert.ok(
    (await store!.list(`files/${SITE}/`)).some((o) => o.key.endsWith('/config')),
    'a restic repository',
  );
  t.diagnostic(`store ${S3.endpoint}: ${objs.length} objects under db/${SITE}/`);
});

test("list-sites shows the last backup; node-exporter on the db host serves BackupTooOld's series and the restore test's", async () => {
  const ls = await run(process.execPath, ['--import', 'tsx', 'playbooks/list-sites.ts', '--inventory', INVENTORY, '--format', 'json'], {
    cwd: ROOT,
    maxBuffer: 16 << 20,
  });
  const rows = JSON.parse(ls.stdout.slice(ls.stdout.indexOf('['))) as Array<{ id: string; lastBackup: string }>;
  const row = rows.find((r) => r.id === SITE);
  assert.ok(row, ls.stdout);
  const today = new Date().toISOString().slice(0, 10);
  assert.match(row.lastBackup, new RegExp(`^${today} \\d\\d:\\d\\d$`), `list-sites: ${JSON.stringify(row)}`);
  const metrics = await ssh('db1', `curl -sf http://${ADDR.db1}:9100/metrics | grep '^wpfarm_backup' || true`);
  const now = Date.now() / 1000;
  for (const re of [
    new RegExp(`^wpfarm_backup_last_success_timestamp_seconds\\{kind="db",site="${SITE}"\\} (\\S+)$`, 'm'),
    new RegExp(`^wpfarm_backup_last_success_timestamp_seconds\\{kind="files",site="${SITE}"\\} (\\S+)$`, 'm'),
    new RegExp(`^wpfarm_backup_restore_test_last_success_timestamp_seconds\\{site="${SITE}"\\} (\\S+)$`, 'm'),
  ]) {
    const m = re.exec(metrics);
    assert.ok(m, `${re}: node-exporter served:\n${metrics}`);
    assert.ok(now - Number(m[1]) < 1800, `${m[0]}: older than this test`);
  }
});
