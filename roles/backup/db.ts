// Database backups: per-site logical dumps (restore one site alone) and their pruning.
// The dump is encrypted on the host; the controller only relays ciphertext to the store.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { mariadbDumpCommand, mariadbRestoreCommand, dbSecretValues, type MariaDbConn, AGE_IDENTITY_ENV } from './commands.ts';
import {
  DB_EXT,
  findSiteDbBackup,
  type CatalogEntry,
  listBackups,
  manifestKey,
  readManifest,
  writeManifest,
  siteDbKey,
  siteDbPrefix,
  type Manifest,
} from './catalog.ts';
import { BackupError } from './errors.ts';
import { prune, type RetentionPolicy, DB_POLICY } from './retention.ts';
import { startHostCommand, stderrTail, uploadHostOutput, type Shell } from './runner.ts';
import type { ObjectStore } from './s3.ts';

export interface SiteDbTarget {
  site: string;
  /** database name of the site */
  db: string;
  conn: MariaDbConn;
  /** MariaDB password when conn.password is set */
  dbPassword?: string;
}

export interface DbBackupResult {
  manifest: Manifest;
  ms: number;
}

/**
 * Dump → gzip → age on the host, streamed into a multipart upload; then the manifest.
 * A failed dump or upload leaves no manifest (and the data object is removed when it got written),
 * so earlier backups stay the newest complete ones and the run throws BackupError.
 */
export async function backupSiteDb(o: {
  shell: Shell;
  store: ObjectStore;
  target: SiteDbTarget;
  recipient: string;
  at?: Date;
}): Promise<DbBackupResult> {
  const t0 = Date.now();
  const at = o.at ?? new Date();
  const key = siteDbKey(o.target.site, at);
  const cmd = mariadbDumpCommand(o.target.db, { conn: o.target.conn, recipient: o.recipient });
  const upload = await uploadHostOutput({
    shell: o.shell,
    store: o.store,
    key,
    cmd,
    secrets: dbSecretValues(o.target),
    upload: `database backup of site ${o.target.site}`,
    exit: { stage: 'dump', what: `mariadb-dump of ${o.target.db} on ${o.shell.name}` },
  });
  const manifest = await writeManifest(o.store, upload, {
    kind: 'site-db',
    site: o.target.site,
    at,
    recipient: o.recipient,
    dumpMs: Date.now() - t0,
    host: o.shell.name,
  });
  return { manifest, ms: Date.now() - t0 };
}

/** Download an object to a private temp file while checking size and sha256 against the manifest. */
export async function downloadVerified(store: ObjectStore, m: Manifest): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'wpfarm-dl-'));
  const path = join(dir, 'obj');
  const cleanup = () => rm(dir, { recursive: true, force: true });
  try {
    const hash = createHash('sha256');
    let size = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    await pipeline(await store.getStream(m.key), tap, createWriteStream(path, { mode: 0o600 }));
    const sha = hash.digest('hex');
    if (size !== m.size || sha !== m.sha256) {
      throw new BackupError('verify', `${m.key}: downloaded ${size} bytes sha256 ${sha}, manifest says ${m.size} bytes sha256 ${m.sha256}`);
    }
    return { path, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

export interface DbRestoreResult {
  key: string;
  time: Date;
  bytes: number;
  /** of the ciphertext, checked against the manifest */
  sha256: string;
  downloadMs: number;
  restoreMs: number;
  ms: number;
}

/**
 * Restore a site's database (or a scratch database: `intoDb`) from the newest complete backup at or
 * before `at`. The ciphertext is verified against its manifest before the database is touched.
 */
export async function restoreSiteDb(o: {
  shell: Shell;
  store: ObjectStore;
  target: SiteDbTarget;
  at: Date;
  ageIdentity: string;
  intoDb?: string;
}): Promise<DbRestoreResult> {
  const t0 = Date.now();
  const entry = await findSiteDbBackup(o.store, o.target.site, o.at);
  const m = await readManifest(o.store, entry.key);
  const dl = await downloadVerified(o.store, m);
  const downloadMs = Date.now() - t0;
  try {
    const cmd = mariadbRestoreCommand(o.intoDb ?? o.target.db, { conn: o.target.conn });
    const secrets = { [AGE_IDENTITY_ENV]: o.ageIdentity, ...dbSecretValues(o.target) };
    const t1 = Date.now();
    const run = startHostCommand(o.shell, cmd, secrets, createReadStream(dl.path));
    run.stdout.resume();
    const fin = await run.done;
    if (fin.code !== 0)
      throw new BackupError(
        'restore',
        `restore of ${m.key} into ${o.intoDb ?? o.target.db} on ${o.shell.name} exited ${fin.code}: ${stderrTail(fin.stderr)}`,
      );
    return { key: m.key, time: entry.time, bytes: m.size, sha256: m.sha256, downloadMs, restoreMs: Date.now() - t1, ms: Date.now() - t0 };
  } finally {
    await dl.cleanup();
  }
}

export interface PruneReport {
  kept: string[];
  deleted: string[];
  /** keys of interrupted multipart uploads (older than a day) that were aborted */
  abortedUploads: string[];
  dryRun: boolean;
}

/** Apply the database retention policy to one site's dumps (data objects and their manifests). */
export async function pruneSiteDb(o: {
  store: ObjectStore;
  site: string;
  now: Date;
  policy?: RetentionPolicy;
  dryRun?: boolean;
}): Promise<PruneReport> {
  const entries = await listBackups(o.store, siteDbPrefix(o.site), DB_EXT);
  return pruneSiteDbLike(o.store, entries, o.policy ?? DB_POLICY, o.now, siteDbPrefix(o.site), o.dryRun);
}

/** Prune catalog entries (with optional base links): delete data + manifest; abort stale uploads. */
export async function pruneSiteDbLike(
  store: ObjectStore,
  entries: Array<CatalogEntry & { base?: string }>,
  policy: RetentionPolicy,
  now: Date,
  prefix: string,
  dryRun?: boolean,
): Promise<PruneReport> {
  const r = prune(entries, policy, now);
  const deleted = r.delete.map((e) => e.key);
  if (!dryRun && deleted.length) await store.deleteKeys(deleted.flatMap((k) => [k, manifestKey(k)]));
  const abortedUploads = dryRun ? [] : await store.abortStaleUploads(prefix, 86_400_000, new Date());
  return { kept: r.keep.map((e) => e.key), deleted, abortedUploads, dryRun: !!dryRun };
}
