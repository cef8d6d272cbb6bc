// Backup catalog: where each backup lives in the bucket, its manifest, and "restore by date"
// (= the newest complete backup at or before D).
//
//   db/<site>/<YYYY-MM-DDTHHMMSSZ>.sql.gz.age          logical per-site dump (encrypted on the host)
//   db/<site>/<YYYY-MM-DDTHHMMSSZ>.sql.gz.age.json     its manifest, written only after the upload completed
//   db/cluster/full/<stamp>.xbstream.gz.age(.json)     mariabackup full
//   db/cluster/incr/<stamp>.xbstream.gz.age(.json)     mariabackup incremental (manifest names its base)
//   files/<site>/                                      restic repository of the site's files (restic encrypts)
//
// A data object without its manifest is an interrupted or unverified run and is never restored from.
import { InputError } from '../../lib/errors.ts';
import { BackupError, NoBackupError } from './errors.ts';
import type { ObjectStore, UploadResult } from './s3.ts';

export const SITE_RE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function checkSite(site: string): string {
  if (!SITE_RE.test(site) || site === 'cluster')
    throw new InputError(`invalid site name ${JSON.stringify(site)} (lowercase letters, digits, - and _; not "cluster")`);
  return site;
}

/** 2026-11-26T102030Z (UTC, second precision, sortable, no ':' so it is safe in keys and paths). */
export function formatStamp(d: Date): string {
  if (Number.isNaN(d.getTime())) throw new InputError('invalid date');
  const iso = d.toISOString(); // 2026-11-26T10:20:30.123Z
  return `${iso.slice(0, 10)}T${iso.slice(11, 13)}${iso.slice(14, 16)}${iso.slice(17, 19)}Z`;
}

export function parseStamp(s: string): Date | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return null;
  const d = new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
  return Number.isNaN(d.getTime()) ? null : d;
}

/**
 * The `--date D` argument of the restore playbooks: `latest`, a day `YYYY-MM-DD` (= the end of that
 * UTC day: the last backup taken that day or before), an ISO timestamp, or a stamp as in the keys.
 */
export function parseRestoreDate(arg: string, now: Date = new Date()): Date {
  const a = arg.trim();
  if (a === 'latest' || a === 'now') return now;
  if (/^\d{4}-\d{2}-\d{2}$/.test(a)) {
    const d = new Date(`${a}T23:59:59.999Z`);
    if (!Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === a) return d;
  }
  const st = parseStamp(a);
  if (st) return st;
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(a)) {
    const d = new Date(a);
    if (!Number.isNaN(d.getTime())) return d;
  }
  throw new InputError(`invalid --date ${JSON.stringify(arg)}: use latest, YYYY-MM-DD, or an ISO time with zone (2026-11-26T10:00Z)`);
}

export type BackupKind = 'site-db' | 'cluster-full' | 'cluster-incr' | 'config';

export const DB_EXT = '.sql.gz.age';
export const XB_EXT = '.xbstream.gz.age';

export function siteDbKey(site: string, at: Date): string {
  return `db/${checkSite(site)}/${formatStamp(at)}${DB_EXT}`;
}
export function clusterKey(kind: 'full' | 'incr', at: Date): string {
  return `db/cluster/${kind}/${formatStamp(at)}${XB_EXT}`;
}
export const manifestKey = (dataKey: string): string => `${dataKey}.json`;
export const siteDbPrefix = (site: string): string => `db/${checkSite(site)}/`;
export const filesRepoPrefix = (site: string): string => `files/${checkSite(site)}`;

export interface Manifest {
  version: 1;
  kind: BackupKind;
  /** site name, or "cluster" */
  site: string;
  key: string;
  /** when the backup started (ISO) */
  time: string;
  /** ciphertext size and sha256 as uploaded */
  size: number;
  sha256: string;
  encryption: 'age';
  /** the age recipient (public key) it was encrypted to */
  recipient: string;
  /** mariabackup incrementals: the key of the backup this one is based on; and LSNs */
  base?: string;
  fromLsn?: string;
  toLsn?: string;
  /** timings of the run */
  dumpMs?: number;
  uploadMs?: number;
  host?: string;
}

export interface CatalogEntry {
  key: string;
  time: Date;
  size: number;
  /** false when the data object has no manifest (interrupted run) */
  complete: boolean;
}

/** Backups under a prefix with the given extension, oldest first. */
export async function listBackups(store: ObjectStore, prefix: string, ext: string): Promise<CatalogEntry[]> {
  const objects = await store.list(prefix);
  const names = new Set(objects.map((o) => o.key));
  const out: CatalogEntry[] = [];
  for (const o of objects) {
    if (!o.key.endsWith(ext)) continue;
    const base = o.key.slice(o.key.lastIndexOf('/') + 1, -ext.length);
    const time = parseStamp(base);
    if (!time) continue;
    out.push({ key: o.key, time, size: o.size, complete: names.has(manifestKey(o.key)) });
  }
  return out.sort((a, b) => a.time.getTime() - b.time.getTime());
}

/** Newest complete entry at or before `at`. */
export function pickAtOrBefore<T extends { time: Date; complete?: boolean }>(entries: T[], at: Date): T | undefined {
  let best: T | undefined;
  for (const e of entries) {
    if (e.complete === false) continue;
    if (e.time.getTime() <= at.getTime() && (!best || e.time.getTime() > best.time.getTime())) best = e;
  }
  return best;
}

export async function findSiteDbBackup(store: ObjectStore, site: string, at: Date): Promise<CatalogEntry> {
  const entries = await listBackups(store, siteDbPrefix(site), DB_EXT);
  const e = pickAtOrBefore(entries, at);
  if (!e) {
    const oldest = entries.find((x) => x.complete);
    throw new NoBackupError(
      `no complete database backup of site ${site} at or before ${at.toISOString()}` +
        (oldest ? ` (oldest is ${oldest.time.toISOString()})` : ' (none at all)'),
    );
  }
  return e;
}

export async function readManifest(store: ObjectStore, dataKey: string): Promise<Manifest> {
  const m = JSON.parse((await store.getBytes(manifestKey(dataKey))).toString('utf8')) as Manifest;
  if (m.version !== 1 || m.key !== dataKey) throw new Error(`manifest of ${dataKey} is not valid`);
  return m;
}

/** What a backup says about itself beyond its upload (kind, site, start time, recipient, where it ran...). */
export type ManifestFields = Omit<Manifest, 'version' | 'key' | 'time' | 'size' | 'sha256' | 'encryption' | 'uploadMs'> & { at: Date };

/**
 * Write the manifest of an uploaded backup beside it, with the size and sha256 the upload measured: only
 * then does the backup count for restores. A failure says so and leaves the data object unused.
 */
export async function writeManifest(store: ObjectStore, up: UploadResult, fields: ManifestFields): Promise<Manifest> {
  const { at, ...rest } = fields;
  const m: Manifest = {
    version: 1,
    key: up.key,
    time: at.toISOString(),
    size: up.size,
    sha256: up.sha256,
    encryption: 'age',
    uploadMs: up.ms,
    ...rest,
  };
  try {
    await store.putBytes(manifestKey(up.key), JSON.stringify(m, null, 2), 'application/json');
  } catch (e) {
    const why = `backup ${up.key} uploaded but its manifest could not be written (it will not be used for restores)`;
    throw new BackupError('manifest', `${why}: ${(e as Error).message}`, { cause: e });
  }
  return m;
}
