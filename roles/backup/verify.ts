// The weekly automated restore test: restore a site's newest backups into a scratch database and a
// scratch directory, check the result (CHECKSUM TABLE, exact row counts, sha256 of every file), compare with the
// live site, clean up. Never touches the live site. The DR drill (drill.ts) runs the same test against the replica.
import {
  dbSecretValues,
  dropDatabaseCommand,
  fileHashesCommand,
  resticRestoreToCommand,
  tableChecksumsCommand,
  tableRowCountsCommand,
  type HostCommand,
} from './commands.ts';
import { restoreSiteDb, type SiteDbTarget } from './db.ts';
import { listSnapshots, siteRepo, type FilesTarget, type ResticAccess } from './files.ts';
import { pickAtOrBefore } from './catalog.ts';
import { runHostCommand, stderrTail, type Shell } from './runner.ts';
import type { ObjectStore } from './s3.ts';
import { sh } from '../../lib/shell.ts';

export interface RestoreTestReport {
  site: string;
  ok: boolean;
  problems: string[];
  db?: {
    key: string;
    backupTime: string;
    /** sha256 of the ciphertext restored (its manifest's) */
    sha256: string;
    tables: number;
    /** rows in all tables of the restored database (exact COUNT(*)) */
    rows: number;
    /** download + decrypt + load */
    restoreMs: number;
    /** CHECKSUM TABLE and row counts */
    verifyMs: number;
    identicalToLive: boolean;
    rowCountsMatchLive: boolean;
  };
  files?: {
    snapshot: string;
    backupTime: string;
    files: number;
    /** snapshot lookup + restic restore --verify */
    restoreMs: number;
    /** sha256 of every file, restored and live */
    verifyMs: number;
    identicalToLive: boolean;
  };
}

async function must(shell: Shell, cmd: HostCommand, secrets: Record<string, string>, what: string): Promise<string> {
  const r = await runHostCommand(shell, cmd, secrets);
  if (r.code !== 0) throw new Error(`${what} on ${shell.name} exited ${r.code}: ${stderrTail(r.stderr)}`);
  return r.stdout;
}

export async function restoreTestSite(o: {
  site: string;
  store: ObjectStore;
  ageIdentity: string;
  db?: { shell: Shell; target: SiteDbTarget };
  files?: { shell: Shell; access: ResticAccess; target: FilesTarget; scratchDir: string };
  now?: Date;
  /** suffix of the scratch database (default _restoretest) */
  scratchSuffix?: string;
  /**
   * Called once the site is restored and verified without a problem, before the scratch database and directory are
   * removed (the DR drill deploys a scratch stack on them); what it throws is a problem of the site.
   */
  whileRestored?: (scratch: { db?: string; dir?: string }) => Promise<void>;
}): Promise<RestoreTestReport> {
  const now = o.now ?? new Date();
  const rep: RestoreTestReport = { site: o.site, ok: true, problems: [] };
  const problem = (p: string) => {
    rep.ok = false;
    rep.problems.push(p);
  };
  // the scratch database and directory are removed last, whatever happened (also after whileRestored)
  const cleanups: Array<() => Promise<unknown>> = [];
  const made: { db?: string; dir?: string } = {};
  try {
    if (o.db) await restoreDb(o.db);
    if (o.files) await restoreFiles(o.files);
    if (o.whileRestored && rep.ok) {
      try {
        await o.whileRestored(made);
      } catch (e) {
        problem(`stack: ${(e as Error).message}`);
      }
    }
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  }
  return rep;

  async function restoreDb({ shell, target }: { shell: Shell; target: SiteDbTarget }): Promise<void> {
    const scratch = `${target.db}${o.scratchSuffix ?? '_restoretest'}`.slice(0, 64);
    const pw = dbSecretValues(target);
    cleanups.push(() => runHostCommand(shell, dropDatabaseCommand(scratch, target.conn), pw));
    made.db = scratch;
    try {
      const r = await restoreSiteDb({ shell, store: o.store, target, at: now, ageIdentity: o.ageIdentity, intoDb: scratch });
      const t1 = Date.now();
      const sums = (db: string) => must(shell, tableChecksumsCommand(db, target.conn), pw, 'CHECKSUM TABLE');
      const counts = (db: string) => must(shell, tableRowCountsCommand(db, target.conn), pw, 'COUNT(*)');
      const restored = (await sums(scratch)).replaceAll(`${scratch}.`, '');
      const live = (await sums(target.db)).replaceAll(`${target.db}.`, '');
      const restoredRows = await counts(scratch);
      const liveRows = await counts(target.db);
      const tables = restored.trim() ? restored.trim().split('\n').length : 0;
      const rows = restoredRows
        .trim()
        .split('\n')
        .filter(Boolean)
        .reduce((n, l) => n + Number(l.split('\t')[1] ?? 0), 0);
      if (tables === 0) problem(`db: the restored dump ${r.key} has no tables`);
      if (/\tNULL$/m.test(restored)) problem('db: a restored table could not be checksummed');
      rep.db = {
        key: r.key,
        backupTime: r.time.toISOString(),
        sha256: r.sha256,
        tables,
        rows,
        restoreMs: r.ms,
        verifyMs: Date.now() - t1,
        identicalToLive: restored === live,
        rowCountsMatchLive: restoredRows === liveRows,
      };
    } catch (e) {
      problem(`db: ${(e as Error).message}`);
    }
  }

  async function restoreFiles(f: NonNullable<typeof o.files>): Promise<void> {
    const { shell, access, target, scratchDir } = f;
    const t0 = Date.now();
    cleanups.push(() => runHostCommand(shell, { script: sh`rm -rf -- ${scratchDir}`, secrets: [] }, {}));
    made.dir = scratchDir;
    try {
      const snap = pickAtOrBefore(await listSnapshots({ shell, access, site: o.site }), now);
      if (!snap) throw new Error('no snapshot');
      await must(
        shell,
        resticRestoreToCommand(siteRepo(access.store, o.site), { snapshot: snap.id, target: scratchDir }),
        {
          RESTIC_PASSWORD: access.password,
          AWS_ACCESS_KEY_ID: access.store.accessKeyId,
          AWS_SECRET_ACCESS_KEY: access.store.secretAccessKey,
        },
        'restic restore --verify',
      );
      const t1 = Date.now();
      let files = 0;
      let identical = true;
      for (const p of target.paths) {
        const restored = await must(shell, { script: fileHashesCommand(`${scratchDir}${p}`), secrets: [] }, {}, 'sha256sum');
        const live = await runHostCommand(shell, { script: fileHashesCommand(p), secrets: [] }, {});
        files += restored.trim() ? restored.trim().split('\n').length : 0;
        if (live.code !== 0 || live.stdout !== restored) identical = false;
      }
      if (files === 0) problem(`files: snapshot ${snap.short_id} restored no files`);
      rep.files = {
        snapshot: snap.short_id,
        backupTime: snap.time.toISOString(),
        files,
        restoreMs: t1 - t0,
        verifyMs: Date.now() - t1,
        identicalToLive: identical,
      };
    } catch (e) {
      problem(`files: ${(e as Error).message}`);
    }
  }
}
