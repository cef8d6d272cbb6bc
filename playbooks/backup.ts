// Backups of the farm:  node --import tsx playbooks/backup.ts --what WHAT [--site ID,...] [--prune] [--restore-test]
//   --what sites-db      per-site logical dumps (every 6 hours)
//   --what cluster-full  mariabackup full of the db host (daily)
//   --what cluster-incr  mariabackup incremental on the previous backup (every 6 hours)
//   --what files         restic backup of each site's uploads, plugins, themes (daily)
//   --what config        git bundle of this repository (inventory, site records, rendered stacks)
//   --what replicate     copy the bucket to the second region's store (backup_replica_*), verify every copy,
//                        restic check each replica repository, the lag metric (roles/backup/replica.ts)
//   --prune              then apply the retention (db 30 days; files 7 daily, 4 weekly, 3 monthly); with
//                        replicate: the same retention on the replica
//   --verify-replica     verify the replica against the source (--deep: re-hash every object), nothing copied
//   --restore-test       the weekly restore test (scratch database and directory), nothing backed up
//   --install-timers     install the schedule on THIS machine (the controller) as systemd timers
//                        (roles/backup/schedule.ts); idempotent; --unit-dir DIR writes elsewhere; -C reports only
// Exit 0 when everything succeeded, 2 when any part failed (each failure is reported; others still run).
import { randomBytes } from 'node:crypto';
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { EXIT, InputError } from '../lib/errors.ts';
import { mask } from '../lib/secrets.ts';
import { BACKUP_OPTIONS, backupContext, printJson } from '../roles/backup/cli.ts';
import { backupSiteDb, pruneSiteDb } from '../roles/backup/db.ts';
import { backupSiteFiles, forgetSiteFiles } from '../roles/backup/files.ts';
import { backupCluster, pruneCluster, pruneLsnDirs } from '../roles/backup/cluster.ts';
import { restoreTestSite } from '../roles/backup/verify.ts';
import { backupConfig, pruneConfig } from '../roles/backup/config.ts';
import { LocalShell } from '../roles/backup/runner.ts';
import type { RetentionPolicy } from '../roles/backup/retention.ts';
import { BACKUP_TIMERS, installBackupUnits, renderBackupUnits, scheduledTimers } from '../roles/backup/schedule.ts';
import { loadInventory, parseExtraVars } from '../lib/inventory.ts';
import { checkSiteFiles } from '../roles/backup/files.ts';
import { markSuccess, readLedger, replicateBackups, replicationMetrics, retireKeys, verifyReplica } from '../roles/backup/replica.ts';
import { runHostCommand } from '../roles/backup/runner.ts';
import { writeBackupMetrics, type BackupKind, type BackupSuccess } from '../roles/backup/metrics.ts';
import { sh } from '../lib/shell.ts';
import { resolve } from 'node:path';

const WHAT = ['sites-db', 'cluster-full', 'cluster-incr', 'files', 'config', 'replicate'] as const;
const TEXTFILE_DIR = '/var/lib/prometheus/node-exporter';
const CMD: CommandSpec = {
  name: 'backup.ts',
  summary: `Backs up (encrypted on the host) to the S3 bucket of WPFARM_S3_* in .env; prints a JSON report.
  backup.ts --what WHAT [--site ID,...] [--prune]   |   backup.ts --restore-test   |   backup.ts --install-timers`,
  options: [
    {
      name: 'what',
      type: 'string',
      arg: 'WHAT',
      choices: WHAT,
      help:
        'sites-db: per-site dumps; cluster-full/-incr: mariabackup of the db host; files: restic of site files; ' +
        'config: git bundle; replicate: copy to the second region, verified',
    },
    { name: 'site', type: 'list', arg: 'ID,...', help: 'only these sites (default: every site)' },
    { name: 'prune', type: 'boolean', help: 'then apply the retention (db 30 days; files 7 daily, 4 weekly, 3 monthly)' },
    { name: 'restore-test', type: 'boolean', help: 'the weekly restore test (scratch database and directory), nothing backed up' },
    { name: 'verify-replica', type: 'boolean', help: 'verify the replica against the source and restic check it; nothing copied' },
    { name: 'deep', type: 'boolean', help: 'with replicate / --verify-replica: re-read and hash every object of the replica' },
    {
      name: 'textfile-dir',
      type: 'string',
      arg: 'DIR',
      default: TEXTFILE_DIR,
      help: "node-exporter's textfile directory on the db host: the last successful backup per site and kind, the lag metric",
    },
    { name: 'install-timers', type: 'boolean', help: 'install the schedule on THIS machine (the controller) as systemd timers' },
    { name: 'unit-dir', type: 'string', arg: 'DIR', help: 'with --install-timers: write the units there' },
    ...BACKUP_OPTIONS,
  ],
};
try {
  const p = parseOrExit(process.argv.slice(2), CMD);
  const o = p.opts;
  if (o['install-timers']) {
    // the schedule runs here, on the controller: this checkout, this node, the inventory given (absolute); the
    // second region's jobs only when the inventory names one
    const timers = scheduledTimers(loadInventory(p.flags.inventory, { extraVars: parseExtraVars(p.flags.extraVars) }).vars);
    const units = renderBackupUnits({
      repoDir: process.cwd(),
      node: process.execPath,
      inventory: p.flags.inventory.map((f) => resolve(f)),
      timers,
    });
    const rep = await installBackupUnits(units, { unitDir: o['unit-dir'] as string | undefined, check: p.flags.check });
    printJson({
      ok: true,
      check: !!p.flags.check,
      ...rep,
      timers: units.filter((u) => u.name.endsWith('.timer')).map((u) => u.name),
      // not scheduled: no second region in the inventory (backup_replica_endpoint)
      leftOut: BACKUP_TIMERS.filter((t) => !timers.includes(t)).map((t) => `wpfarm-backup-${t.name}.timer`),
    });
  } else {
    const { flags } = p;
    const what = o.what as (typeof WHAT)[number] | undefined;
    if (!o['restore-test'] && !o['verify-replica'] && !what)
      throw new InputError(`--what is required: one of ${WHAT.join(', ')} (see --help)`);
    const textfileDir = o['textfile-dir'] as string;
    if (!textfileDir.startsWith('/')) throw new InputError(`--textfile-dir must be an absolute path, got '${textfileDir}'`);
    const ctx = await backupContext(flags, { local: !!o.local, sitesDir: o['sites-dir'] as string | undefined });
    // the replica's settings are input: checked before anything runs
    const replica = what === 'replicate' || o['verify-replica'] ? ctx.replicaStore() : undefined;
    const report: Array<Record<string, unknown>> = [];
    let failed = 0;
    // what succeeded, for the textfile collector (BackupTooOld): written on the db host at the end
    const successes: BackupSuccess[] = [];
    const step = async (name: string, f: () => Promise<unknown>, success?: { kind: BackupKind; site: string }) => {
      const t0 = Date.now();
      try {
        const result = await f();
        report.push({ step: name, ok: true, ms: Date.now() - t0, result });
        if (success) successes.push({ ...success, at: new Date() });
      } catch (e) {
        failed++;
        report.push({ step: name, ok: false, ms: Date.now() - t0, error: mask((e as Error).message) });
      }
    };
    try {
      const sites = o.site ? (o.site as string[]).map((id) => ctx.site(id)) : ctx.sites;
      const now = new Date();
      if (replica) {
        const copy = what === 'replicate';
        const copyStart = new Date();
        if (copy) await step('replicate', () => replicateBackups({ source: ctx.store, replica, now }));
        if (copy && o.prune) {
          // the replica's own retention, the same policies and code as the source's; what it removes stays removed
          for (const s of sites) {
            const policy: RetentionPolicy = { withinDays: s.backup.db.retention_days };
            await step(`prune replica db ${s.id}`, async () => {
              const r = await pruneSiteDb({ store: replica, site: s.id, now, policy });
              await retireKeys(replica, r.deleted, `retention ${now.toISOString()}`);
              return r;
            });
          }
          for (const [name, prune] of [
            ['cluster', () => pruneCluster({ store: replica, now })],
            ['config', () => pruneConfig({ store: replica, now })],
          ] as const) {
            await step(`prune replica ${name}`, async () => {
              const r = await prune();
              await retireKeys(replica, r.deleted, `retention ${now.toISOString()}`);
              return r;
            });
          }
        }
        let objects = { source: 0, replica: 0 };
        await step('verify replica', async () => {
          const v = await verifyReplica({ source: ctx.store, replica, deep: !!o.deep, asOf: copy ? copyStart : undefined });
          objects = { source: v.sourceObjects, replica: v.replicaObjects };
          if (!v.ok) throw new Error(`${v.problems.length} problem(s) on the replica: ${v.problems.slice(0, 20).join('; ')}`);
          return v;
        });
        // restic's own check of every replica repository of a site (index, packs, snapshots)
        let repos = new Set<string>();
        await step('list replica repositories', async () => {
          repos = new Set((await replica.list('files/')).filter((x) => x.key.endsWith('/config')).map((x) => x.key.split('/')[1] ?? ''));
          return [...repos];
        });
        for (const s of sites.filter((x) => repos.has(x.id))) {
          await step(`restic check replica ${s.id}`, async () =>
            checkSiteFiles({ shell: await ctx.filesShell(), access: await ctx.replicaFilesAccess(), site: s.id }),
          );
        }
        if (failed === 0) await markSuccess(replica, new Date());
        await step('replication metrics', async () => {
          const ledger = await readLedger(replica);
          const text = replicationMetrics({
            replica: `${replica.endpoint}/${replica.bucket}`,
            lastSuccess: ledger.lastSuccess ? new Date(ledger.lastSuccess) : undefined,
            lastRun: new Date(),
            problems: failed,
            sourceObjects: objects.source,
            replicaObjects: objects.replica,
          });
          const file = `${textfileDir}/wpfarm_backup_replication.prom`;
          const script = sh`mkdir -p ${textfileDir} && cat > ${`${file}.tmp`} && mv ${`${file}.tmp`} ${file}`;
          const shell = await ctx.dbShell();
          const r = await runHostCommand(shell, { script, secrets: [] }, {}, Buffer.from(text));
          if (r.code !== 0) throw new Error(`writing ${file} on ${shell.name} exited ${r.code}: ${r.stderr.trim()}`);
          return { file, host: shell.name, lastSuccess: ledger.lastSuccess };
        });
      } else if (o['restore-test']) {
        for (const s of sites) {
          await step(
            `restore-test ${s.id}`,
            async () => {
              const rep = await restoreTestSite({
                site: s.id,
                store: ctx.store,
                ageIdentity: ctx.settings.identity(),
                db: { shell: await ctx.dbShell(), target: ctx.dbTarget(s) },
                files: {
                  shell: await ctx.filesShell(),
                  access: await ctx.filesAccess(),
                  target: ctx.filesTarget(s),
                  scratchDir: `/tmp/wpfarm-restoretest-${s.id}-${randomBytes(6).toString('hex')}`,
                },
              });
              if (!rep.ok) throw new Error(rep.problems.join('; '));
              return rep;
            },
            { kind: 'restore-test', site: s.id },
          );
        }
      } else if (what === 'sites-db') {
        for (const s of sites) {
          await step(
            `db ${s.id}`,
            async () =>
              (
                await backupSiteDb({
                  shell: await ctx.dbShell(),
                  store: ctx.store,
                  target: ctx.dbTarget(s),
                  recipient: ctx.settings.recipient,
                  at: now,
                })
              ).manifest,
            { kind: 'db', site: s.id },
          );
          if (o.prune) {
            const policy: RetentionPolicy = { withinDays: s.backup.db.retention_days };
            await step(`prune db ${s.id}`, () => pruneSiteDb({ store: ctx.store, site: s.id, now, policy }));
          }
        }
      } else if (what === 'cluster-full' || what === 'cluster-incr') {
        await step(
          what,
          async () =>
            backupCluster({
              shell: await ctx.dbShell(),
              store: ctx.store,
              target: ctx.clusterTarget(),
              recipient: ctx.settings.recipient,
              kind: what === 'cluster-full' ? 'full' : 'incr',
              at: now,
            }),
          { kind: what, site: 'cluster' },
        );
        if (o.prune) {
          await step('prune cluster', async () => {
            const r = await pruneCluster({ store: ctx.store, now });
            // the db host's checkpoint directories of backups no longer in the bucket
            const lsn = await pruneLsnDirs({ shell: await ctx.dbShell(), lsnRoot: ctx.clusterTarget().lsnRoot, keepKeys: r.kept });
            return { ...r, lsnDirsRemoved: lsn.removed };
          });
        }
      } else if (what === 'config') {
        // the repository of this checkout, bundled on the controller itself
        await step(
          'config',
          () =>
            backupConfig({
              shell: new LocalShell('controller'),
              store: ctx.store,
              repoDir: process.cwd(),
              recipient: ctx.settings.recipient,
              at: now,
            }),
          { kind: 'config', site: 'config' },
        );
        if (o.prune) await step('prune config', () => pruneConfig({ store: ctx.store, now }));
      } else if (what === 'files') {
        for (const s of sites) {
          await step(
            `files ${s.id}`,
            async () =>
              backupSiteFiles({
                shell: await ctx.filesShell(),
                access: await ctx.filesAccess(),
                target: ctx.filesTarget(s),
                host: s.id,
                time: now,
              }),
            { kind: 'files', site: s.id },
          );
          if (o.prune) {
            const policy: RetentionPolicy = {
              daily: s.backup.files.keep_daily,
              weekly: s.backup.files.keep_weekly,
              monthly: s.backup.files.keep_monthly,
            };
            await step(`forget files ${s.id}`, async () =>
              forgetSiteFiles({ shell: await ctx.filesShell(), access: await ctx.filesAccess(), site: s.id, policy }),
            );
          }
        }
      }
      if (successes.length) {
        await step('backup metrics', async () => ({
          host: (await ctx.dbShell()).name,
          files: await writeBackupMetrics(await ctx.dbShell(), textfileDir, successes),
        }));
      }
    } finally {
      await ctx.close();
    }
    printJson({ ok: failed === 0, failed, steps: report });
    process.exitCode = failed ? EXIT.FAILED : EXIT.OK;
  }
} catch (e) {
  fail(e);
}
