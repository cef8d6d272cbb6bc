// Cross-region copies of the backups: every object of the backup bucket (encrypted dumps and their manifests,
// mariabackup streams, configuration bundles, restic repositories) copied to a second store in another region,
// verified after each copy, with the same retention applied there. The DR drill (roles/backup/drill.ts) restores
// from this replica alone.
//
// - Copy: an object missing on the replica, changed at the source, or no longer as it was copied (replaced,
//   corrupted) is streamed source → controller → replica; its sha256 is computed on the way and the replica's
//   bytes are read back and hashed: they must match. restic names every file but `config` by the sha256 of its
//   content, so a restic file whose bytes do not hash to its name is refused (corrupt at the source). A database
//   or configuration backup must hash to the sha256 of its manifest.
// - The ledger (replication/ledger.json on the replica) records per key: size, sha256, the source's and the
//   replica's ETag when copied. Verification needs no download: every source object must be on the replica with
//   the same size and the ETag recorded at its copy (anything else was replaced or corrupted there); --deep
//   re-reads every replica object and compares its sha256 with the ledger. `restic check` runs on each replica
//   repository (roles/backup/files.ts checkSiteFiles).
// - Deletions: a restic repository is consistent only as a whole (index ↔ packs), so each is mirrored: what the
//   source's `forget --prune` removed goes from the replica too, but only while the source repository still has
//   its config and a snapshot (a wiped source is never mirrored). Dumps and bundles are never deleted because
//   the source lost them: the replica's own retention (the same policy, the same prune code) removes them, and
//   the keys it removed are retired in the ledger (not copied again, not reported missing).
// - restic's locks/ are transient and never copied.
import { createHash } from 'node:crypto';
import { InputError } from '../../lib/errors.ts';
import { lookupEnv, requireCredential, type EnvSource } from '../../lib/env.ts';
import { str } from '../../lib/vars.ts';
import { manifestKey, type Manifest } from './catalog.ts';
import { BackupError } from './errors.ts';
import type { ObjectStore, StoreConfig, StoredObject } from './s3.ts';

export const LEDGER_KEY = 'replication/ledger.json';
export const REPLICA_ACCESS_KEY_ENV = 'WPFARM_S3_REPLICA_ACCESS_KEY';
export const REPLICA_SECRET_KEY_ENV = 'WPFARM_S3_REPLICA_SECRET_KEY';

/**
 * The replica store: where from the inventory (backup_replica_endpoint, backup_replica_bucket, backup_replica_region),
 * the keys from .env (WPFARM_S3_REPLICA_ACCESS_KEY / _SECRET_KEY). Refuses a replica that is the primary bucket.
 */
export function replicaStoreConfig(vars: Record<string, unknown>, primary: StoreConfig, where: string, src?: EnvSource): StoreConfig {
  const endpoint = str(vars.backup_replica_endpoint, '');
  const bucket = str(vars.backup_replica_bucket, '');
  if (!endpoint || !bucket) {
    const missing = [!endpoint && 'backup_replica_endpoint', !bucket && 'backup_replica_bucket'].filter(Boolean).join(', ');
    throw new InputError(`${where}: no replica store: set ${missing} (the second region's S3 endpoint and bucket)`);
  }
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new InputError(
      `${where}: backup_replica_endpoint ${JSON.stringify(endpoint)} is not a URL (https://ams3.digitaloceanspaces.com)`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new InputError(`${where}: backup_replica_endpoint must be http(s), got ${JSON.stringify(endpoint)}`);
  if (endpoint.replace(/\/+$/, '') === primary.endpoint.replace(/\/+$/, '') && bucket === primary.bucket)
    throw new InputError(`${where}: backup_replica_endpoint/bucket name the primary bucket itself: a replica must be another store`);
  return {
    endpoint,
    bucket,
    region: str(vars.backup_replica_region, '') || lookupEnv('WPFARM_S3_REPLICA_REGION', src) || 'us-east-1',
    accessKeyId: requireCredential(REPLICA_ACCESS_KEY_ENV, undefined, src),
    secretAccessKey: requireCredential(REPLICA_SECRET_KEY_ENV, undefined, src),
  };
}

export interface LedgerEntry {
  size: number;
  sha256: string;
  /** the source's ETag when copied (a different one now: changed at the source) */
  sourceEtag?: string;
  /** the replica's ETag right after the copy (a different one now: replaced or corrupted on the replica) */
  replicaEtag?: string;
  copiedAt: string;
  /** removed from the replica by its retention: never copied again, not missing */
  retired?: string;
}

export interface Ledger {
  version: 1;
  objects: Record<string, LedgerEntry>;
  /** end of the last run whose copy and verification were both clean (ISO) */
  lastSuccess?: string;
  lastRun?: string;
}

export async function readLedger(replica: ObjectStore): Promise<Ledger> {
  if (!(await replica.head(LEDGER_KEY))) return { version: 1, objects: {} };
  const l = JSON.parse((await replica.getBytes(LEDGER_KEY)).toString('utf8')) as Ledger;
  if (l.version !== 1 || typeof l.objects !== 'object') throw new BackupError('replicate', `${LEDGER_KEY} on the replica is not a ledger`);
  return l;
}

export async function writeLedger(replica: ObjectStore, l: Ledger): Promise<void> {
  await replica.putBytes(LEDGER_KEY, JSON.stringify(l), 'application/json');
}

/** Keys that are replicated: everything but the ledger and restic's transient locks. */
export function replicated(key: string): boolean {
  if (key.startsWith('replication/')) return false;
  return !/^files\/[^/]+\/locks\//.test(key);
}

/** The restic repository (files/<site>) a key belongs to, or undefined. */
export const resticRepoOf = (key: string): string | undefined => /^(files\/[^/]+)\//.exec(key)?.[1];

/** restic names every file but config by the sha256 of its content: the name, or undefined. */
export function contentAddress(key: string): string | undefined {
  return /^files\/[^/]+\/(?:data\/[0-9a-f]{2}\/|index\/|snapshots\/|keys\/)([0-9a-f]{64})$/.exec(key)?.[1];
}

async function sha256Of(store: ObjectStore, key: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of await store.getStream(key)) {
    const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
    h.update(b);
    size += b.length;
  }
  return { sha256: h.digest('hex'), size };
}

const listReplicated = async (store: ObjectStore): Promise<Map<string, StoredObject>> =>
  new Map((await store.list('')).filter((o) => replicated(o.key)).map((o) => [o.key, o]));

/** Copy one object and check it end to end; the ledger entry of the copy. */
export async function copyVerified(source: ObjectStore, replica: ObjectStore, src: StoredObject): Promise<LedgerEntry> {
  const up = await replica.putStream(src.key, await source.getStream(src.key));
  const addr = contentAddress(src.key);
  if (addr && addr !== up.sha256) {
    await replica.deleteKeys([src.key]).catch(() => undefined);
    throw new BackupError(
      'replicate',
      `${src.key} on the source hashes to ${up.sha256}, not to its name: corrupt at the source, not copied`,
    );
  }
  const back = await sha256Of(replica, src.key);
  if (back.sha256 !== up.sha256 || back.size !== up.size) {
    throw new BackupError(
      'verify',
      `${src.key} on the replica reads back as ${back.size} bytes sha256 ${back.sha256}, copied ${up.size} bytes sha256 ${up.sha256}`,
    );
  }
  return { size: up.size, sha256: up.sha256, sourceEtag: src.etag, replicaEtag: up.etag, copiedAt: new Date().toISOString() };
}

export interface ReplicateReport {
  source: string;
  replica: string;
  sourceObjects: number;
  copied: number;
  bytesCopied: number;
  /** copied again because the replica's object was missing or no longer as copied */
  repaired: string[];
  /** removed from the replica's restic repositories because the source's prune removed them */
  mirroredDeletes: number;
  inSync: number;
  problems: string[];
  ms: number;
}

/** Copy what the replica lacks, mirror the restic repositories' deletions; the ledger is written at the end. */
export async function replicateBackups(o: { source: ObjectStore; replica: ObjectStore; now?: Date }): Promise<ReplicateReport> {
  const t0 = Date.now();
  const [src, rep, ledger] = await Promise.all([listReplicated(o.source), listReplicated(o.replica), readLedger(o.replica)]);
  const report: ReplicateReport = {
    source: `${o.source.endpoint}/${o.source.bucket}`,
    replica: `${o.replica.endpoint}/${o.replica.bucket}`,
    sourceObjects: src.size,
    copied: 0,
    bytesCopied: 0,
    repaired: [],
    mirroredDeletes: 0,
    inSync: 0,
    problems: [],
    ms: 0,
  };
  // manifests first would let a restore see a backup whose data is not there yet: data objects go first
  const order = [...src.values()].sort(
    (a, b) => Number(a.key.endsWith('.json')) - Number(b.key.endsWith('.json')) || (a.key < b.key ? -1 : 1),
  );
  const copiedData = new Set<string>();
  try {
    for (const s of order) {
      const l = ledger.objects[s.key];
      if (l?.retired) continue;
      const r = rep.get(s.key);
      const sameAtSource = l && l.size === s.size && (!s.etag || !l.sourceEtag || s.etag === l.sourceEtag);
      const sameOnReplica = l && r && r.size === l.size && (!r.etag || !l.replicaEtag || r.etag === l.replicaEtag);
      if (sameAtSource && sameOnReplica) {
        report.inSync++;
        continue;
      }
      if (l && sameAtSource && !sameOnReplica) report.repaired.push(s.key);
      try {
        ledger.objects[s.key] = await copyVerified(o.source, o.replica, s);
        report.copied++;
        report.bytesCopied += s.size;
        copiedData.add(s.key);
      } catch (e) {
        report.problems.push((e as Error).message);
      }
    }
    // a database or configuration backup copied now must hash to its manifest's sha256
    for (const key of copiedData) {
      if (key.endsWith('.json') || !copiedData.has(manifestKey(key)) || !ledger.objects[key]) continue;
      const m = JSON.parse((await o.replica.getBytes(manifestKey(key))).toString('utf8')) as Manifest;
      if (m.sha256 !== ledger.objects[key]?.sha256 || m.size !== ledger.objects[key]?.size)
        report.problems.push(`${key}: the copy (sha256 ${ledger.objects[key]?.sha256}) differs from its manifest (sha256 ${m.sha256})`);
    }
    // restic repositories are mirrored, while the source repository is whole
    const repos = new Set([...rep.keys()].map(resticRepoOf).filter((r): r is string => !!r));
    for (const repo of repos) {
      const extra = [...rep.keys()].filter((k) => k.startsWith(`${repo}/`) && !src.has(k));
      if (!extra.length) continue;
      const intact = src.has(`${repo}/config`) && [...src.keys()].some((k) => k.startsWith(`${repo}/snapshots/`));
      if (!intact) {
        report.problems.push(`${repo} on the source has no config or no snapshot: its deletions are not mirrored (${extra.length} kept)`);
        continue;
      }
      await o.replica.deleteKeys(extra);
      for (const k of extra) delete ledger.objects[k];
      report.mirroredDeletes += extra.length;
    }
    // entries of keys gone from both sides
    for (const k of Object.keys(ledger.objects)) if (!src.has(k) && !rep.has(k)) delete ledger.objects[k];
  } finally {
    ledger.lastRun = (o.now ?? new Date()).toISOString();
    await writeLedger(o.replica, ledger);
  }
  report.ms = Date.now() - t0;
  return report;
}

/** Mark keys the replica's retention removed (they stay removed there). */
export async function retireKeys(replica: ObjectStore, keys: string[], why: string): Promise<void> {
  if (!keys.length) return;
  const ledger = await readLedger(replica);
  for (const k of keys)
    for (const key of [k, manifestKey(k)]) {
      const e = ledger.objects[key];
      if (e) e.retired = why;
    }
  await writeLedger(replica, ledger);
}

export interface VerifyReport {
  ok: boolean;
  sourceObjects: number;
  replicaObjects: number;
  verified: number;
  /** objects per top-level prefix (db, config, files), source and replica */
  counts: Record<string, { source: number; replica: number }>;
  deep: boolean;
  problems: string[];
  ms: number;
}

/**
 * Compare the replica with the source and the ledger: every source object there with its size and the ETag of
 * its copy; restic repositories hold nothing the source does not; deep: every replica object re-hashed. `asOf`: the
 * start of the copy just made: source objects written after it (a backup running meanwhile) wait for the next copy.
 */
export async function verifyReplica(o: { source: ObjectStore; replica: ObjectStore; deep?: boolean; asOf?: Date }): Promise<VerifyReport> {
  const t0 = Date.now();
  const [src, rep, ledger] = await Promise.all([listReplicated(o.source), listReplicated(o.replica), readLedger(o.replica)]);
  const problems: string[] = [];
  const counts: VerifyReport['counts'] = {};
  const count = (key: string, side: 'source' | 'replica') => {
    const top = key.split('/')[0] as string;
    counts[top] ??= { source: 0, replica: 0 };
    counts[top][side]++;
  };
  for (const k of src.keys()) count(k, 'source');
  for (const k of rep.keys()) count(k, 'replica');
  let verified = 0;
  const newer = (s: StoredObject) => !!(o.asOf && s.lastModified && s.lastModified.getTime() > o.asOf.getTime());
  for (const s of src.values()) {
    if (newer(s)) continue;
    const l = ledger.objects[s.key];
    const r = rep.get(s.key);
    if (l?.retired) continue;
    if (!r) problems.push(`${s.key}: missing on the replica`);
    else if (!l) problems.push(`${s.key}: on the replica but never copied by the replication (no ledger entry)`);
    else if (r.size !== l.size || r.size !== s.size)
      problems.push(`${s.key}: ${r.size} bytes on the replica, ${s.size} at the source, ${l.size} when copied`);
    else if (l.replicaEtag && r.etag && r.etag !== l.replicaEtag)
      problems.push(`${s.key}: replaced or corrupted on the replica (ETag ${r.etag}, ${l.replicaEtag} when copied)`);
    else if (l.sourceEtag && s.etag && s.etag !== l.sourceEtag) problems.push(`${s.key}: changed at the source since it was copied`);
    else verified++;
  }
  for (const k of rep.keys())
    if (resticRepoOf(k) && !src.has(k)) problems.push(`${k}: on the replica only (the source's prune removed it)`);
  if (o.deep) {
    for (const r of rep.values()) {
      const l = ledger.objects[r.key];
      if (!l || l.retired) continue;
      const h = await sha256Of(o.replica, r.key);
      if (h.sha256 !== l.sha256) problems.push(`${r.key}: its bytes on the replica hash to ${h.sha256}, ${l.sha256} when copied`);
      const addr = contentAddress(r.key);
      if (addr && addr !== h.sha256) problems.push(`${r.key}: does not hash to its restic name`);
    }
  }
  return {
    ok: problems.length === 0,
    sourceObjects: src.size,
    replicaObjects: rep.size,
    verified,
    counts,
    deep: !!o.deep,
    problems,
    ms: Date.now() - t0,
  };
}

/** Record a clean run (copy and verification): what the lag metric is measured from. */
export async function markSuccess(replica: ObjectStore, at: Date): Promise<void> {
  const ledger = await readLedger(replica);
  ledger.lastSuccess = at.toISOString();
  await writeLedger(replica, ledger);
}

/**
 * The textfile collector's metrics of the replication (node-exporter on the db host):
 *   wpfarm_backup_replication_last_success_timestamp_seconds  end of the last clean run (copy + verification)
 *   wpfarm_backup_replication_last_run_timestamp_seconds      end of the last run
 *   wpfarm_backup_replication_ok                               1 when the last run was clean
 *   wpfarm_backup_replication_problems                         parts of the last run that failed
 *   wpfarm_backup_replication_objects{store}                  objects replicated, on the source and the replica
 * The alert BackupReplicationLagging (roles/monitoring/prometheus.ts) fires when the last clean run is too old.
 */
export function replicationMetrics(o: {
  replica: string;
  lastSuccess?: Date;
  lastRun: Date;
  problems: number;
  sourceObjects: number;
  replicaObjects: number;
}): string {
  const l = o.replica.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
  const s = (d: Date) => Math.floor(d.getTime() / 1000);
  const g = (name: string, help: string, lines: string[]) => [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, ...lines];
  const lines = [
    ...(o.lastSuccess
      ? g('wpfarm_backup_replication_last_success_timestamp_seconds', 'End of the last clean replication (copy and verification).', [
          `wpfarm_backup_replication_last_success_timestamp_seconds{replica="${l}"} ${s(o.lastSuccess)}`,
        ])
      : []),
    ...g('wpfarm_backup_replication_last_run_timestamp_seconds', 'End of the last replication run.', [
      `wpfarm_backup_replication_last_run_timestamp_seconds{replica="${l}"} ${s(o.lastRun)}`,
    ]),
    ...g('wpfarm_backup_replication_ok', '1 when the last replication run was clean.', [
      `wpfarm_backup_replication_ok{replica="${l}"} ${o.problems ? 0 : 1}`,
    ]),
    ...g('wpfarm_backup_replication_problems', 'Parts of the last replication run that failed (copy, verification, restic check).', [
      `wpfarm_backup_replication_problems{replica="${l}"} ${o.problems}`,
    ]),
    ...g('wpfarm_backup_replication_objects', 'Objects replicated, on the source and on the replica.', [
      `wpfarm_backup_replication_objects{replica="${l}",store="source"} ${o.sourceObjects}`,
      `wpfarm_backup_replication_objects{replica="${l}",store="replica"} ${o.replicaObjects}`,
    ]),
    '',
  ];
  return lines.join('\n');
}
