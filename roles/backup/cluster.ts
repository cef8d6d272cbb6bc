// Whole-server physical backups with mariabackup: a full daily, incrementals every 6 hours, each
// encrypted on the host and streamed to the store. An incremental's manifest names its base (the
// previous backup of the chain); restoring at date D = the newest complete backup at or before D plus
// its chain back to the full, unpacked and prepared into a datadir on the host.
import { createReadStream } from 'node:fs';
import {
  type CatalogEntry,
  clusterKey,
  formatStamp,
  listBackups,
  parseStamp,
  pickAtOrBefore,
  readManifest,
  writeManifest,
  XB_EXT,
  type Manifest,
} from './catalog.ts';
import {
  AGE_IDENTITY_ENV,
  checkpointsCommand,
  dbSecretValues,
  mariabackupCommand,
  mariabackupPrepareCommand,
  mariabackupUnpackCommand,
  parseCheckpoints,
  type MariaDbConn,
} from './commands.ts';
import { downloadVerified, pruneSiteDbLike } from './db.ts';
import { BackupError, NoBackupError } from './errors.ts';
import { DB_POLICY, type RetentionPolicy } from './retention.ts';
import { runHostCommand, startHostCommand, stderrTail, uploadHostOutput, type Shell } from './runner.ts';
import type { ObjectStore } from './s3.ts';
import { sh } from '../../lib/shell.ts';

export interface ClusterTarget {
  conn: MariaDbConn;
  dbPassword?: string;
  /** directory on the host keeping each backup's checkpoints (base of the next incremental) */
  lsnRoot: string;
}

interface ClusterEntry extends CatalogEntry {
  kind: 'full' | 'incr';
}

export async function listClusterBackups(store: ObjectStore): Promise<ClusterEntry[]> {
  const full = (await listBackups(store, 'db/cluster/full/', XB_EXT)).map((e) => ({ ...e, kind: 'full' as const }));
  const incr = (await listBackups(store, 'db/cluster/incr/', XB_EXT)).map((e) => ({ ...e, kind: 'incr' as const }));
  return [...full, ...incr].sort((a, b) => a.time.getTime() - b.time.getTime());
}

export interface ClusterBackupResult {
  manifest: Manifest;
  ms: number;
  /** an incremental was asked but no usable base existed: a full was taken instead */
  promotedToFull?: boolean;
}

export async function backupCluster(o: {
  shell: Shell;
  store: ObjectStore;
  target: ClusterTarget;
  recipient: string;
  kind: 'full' | 'incr';
  at?: Date;
}): Promise<ClusterBackupResult> {
  const t0 = Date.now();
  const at = o.at ?? new Date();
  let kind = o.kind;
  let base: ClusterEntry | undefined;
  let baseLsnDir: string | undefined;
  let promotedToFull = false;
  if (kind === 'incr') {
    base = pickAtOrBefore(await listClusterBackups(o.store), new Date(at.getTime() - 1));
    if (base) {
      baseLsnDir = `${o.target.lsnRoot}/${formatStamp(base.time)}`;
      const probe = await runHostCommand(o.shell, { script: sh`test -s ${`${baseLsnDir}/xtrabackup_checkpoints`}`, secrets: [] }, {});
      if (probe.code !== 0) base = undefined; // checkpoints not on this host (new host, cleaned): take a full
    }
    if (!base) {
      kind = 'full';
      promotedToFull = true;
      baseLsnDir = undefined;
    }
  }
  const key = clusterKey(kind, at);
  const lsnDir = `${o.target.lsnRoot}/${formatStamp(at)}`;
  const cmd = mariabackupCommand({ conn: o.target.conn, recipient: o.recipient, lsnDir, baseLsnDir });
  const upload = await uploadHostOutput({
    shell: o.shell,
    store: o.store,
    key,
    cmd,
    secrets: dbSecretValues(o.target),
    upload: `mariabackup ${kind}`,
    exit: { stage: 'mariabackup', what: `mariabackup ${kind} on ${o.shell.name}` },
  });
  const cp = parseCheckpoints((await runHostCommand(o.shell, { script: checkpointsCommand(lsnDir), secrets: [] }, {})).stdout);
  const manifest = await writeManifest(o.store, upload, {
    kind: kind === 'full' ? 'cluster-full' : 'cluster-incr',
    site: 'cluster',
    at,
    recipient: o.recipient,
    base: base?.key,
    fromLsn: cp.from_lsn,
    toLsn: cp.to_lsn,
    dumpMs: Date.now() - t0,
    host: o.shell.name,
  });
  return { manifest, ms: Date.now() - t0, promotedToFull };
}

/** The chain to restore at `at`: [full, incr, incr, ...] (manifests, oldest first). */
export async function clusterChainAt(store: ObjectStore, at: Date): Promise<Manifest[]> {
  const top = pickAtOrBefore(await listClusterBackups(store), at);
  if (!top) throw new NoBackupError(`no complete mariabackup backup at or before ${at.toISOString()}`);
  const chain: Manifest[] = [];
  let m: Manifest | undefined = await readManifest(store, top.key);
  while (m) {
    chain.unshift(m);
    if (chain.length > 1000) throw new BackupError('restore', 'mariabackup chain longer than 1000: broken manifests?');
    if (m.kind === 'cluster-full') break;
    if (!m.base) throw new BackupError('restore', `incremental ${m.key} names no base`);
    m = await readManifest(store, m.base).catch((e: unknown) => {
      throw new BackupError('restore', `base ${String(m?.base)} of ${m?.key} is missing: ${(e as Error).message}`);
    });
  }
  return chain;
}

export interface ClusterRestoreResult {
  /** prepared datadir on the host (start mariadbd on it, or copy-back) */
  datadir: string;
  chain: string[];
  ms: number;
}

/** Download (verified), unpack and prepare the chain into `dir` on the host: `dir`/full is the datadir. */
export async function restoreClusterTo(o: {
  shell: Shell;
  store: ObjectStore;
  at: Date;
  dir: string;
  ageIdentity: string;
}): Promise<ClusterRestoreResult> {
  const t0 = Date.now();
  const chain = await clusterChainAt(o.store, o.at);
  const dirs: string[] = [];
  for (const [i, m] of chain.entries()) {
    const target = i === 0 ? `${o.dir}/full` : `${o.dir}/incr-${String(i).padStart(3, '0')}`;
    dirs.push(target);
    const dl = await downloadVerified(o.store, m);
    try {
      const run = startHostCommand(
        o.shell,
        mariabackupUnpackCommand(target),
        { [AGE_IDENTITY_ENV]: o.ageIdentity },
        createReadStream(dl.path),
      );
      run.stdout.resume();
      const fin = await run.done;
      if (fin.code !== 0)
        throw new BackupError('restore', `unpacking ${m.key} on ${o.shell.name} exited ${fin.code}: ${stderrTail(fin.stderr)}`);
    } finally {
      await dl.cleanup();
    }
  }
  const prep = await runHostCommand(o.shell, { script: mariabackupPrepareCommand(dirs[0] as string, dirs.slice(1)), secrets: [] }, {});
  if (prep.code !== 0) throw new BackupError('prepare', `mariabackup --prepare exited ${prep.code}: ${stderrTail(prep.stderr)}`);
  return { datadir: dirs[0] as string, chain: chain.map((m) => m.key), ms: Date.now() - t0 };
}

/** Retention for mariabackup backups (30 days; a kept incremental keeps its chain). */
export async function pruneCluster(o: { store: ObjectStore; now: Date; policy?: RetentionPolicy; dryRun?: boolean }) {
  const entries = await listClusterBackups(o.store);
  const withBase = await Promise.all(
    entries.map(async (e) => ({ ...e, base: e.complete && e.kind === 'incr' ? (await readManifest(o.store, e.key)).base : undefined })),
  );
  return pruneSiteDbLike(o.store, withBase, o.policy ?? DB_POLICY, o.now, 'db/cluster/', o.dryRun);
}

/**
 * Remove the host's checkpoint directories (`<lsnRoot>/<stamp>`) of backups that are no longer in the
 * bucket (pruned, or never completed). Only directories named like a stamp are considered; the others
 * are left alone. `keepKeys`: the cluster backups still in the bucket (the kept list of pruneCluster).
 */
export async function pruneLsnDirs(o: {
  shell: Shell;
  lsnRoot: string;
  keepKeys: string[];
  dryRun?: boolean;
}): Promise<{ removed: string[] }> {
  const keep = new Set(o.keepKeys.map((k) => k.slice(k.lastIndexOf('/') + 1).replace(/\.xbstream\.gz\.age$/, '')));
  const ls = await runHostCommand(
    o.shell,
    { script: sh`if [ -d ${o.lsnRoot} ]; then cd ${o.lsnRoot} && find . -mindepth 1 -maxdepth 1 -type d -printf '%f\\n'; fi`, secrets: [] },
    {},
  );
  if (ls.code !== 0) throw new BackupError('prune', `listing ${o.lsnRoot} on ${o.shell.name} exited ${ls.code}: ${stderrTail(ls.stderr)}`);
  const stale = ls.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((n) => parseStamp(n) !== null && !keep.has(n))
    .sort();
  if (stale.length && !o.dryRun) {
    const r = await runHostCommand(o.shell, { script: sh`cd ${o.lsnRoot} && rm -rf -- ${stale}`, secrets: [] }, {});
    if (r.code !== 0)
      throw new BackupError('prune', `removing checkpoint directories on ${o.shell.name} exited ${r.code}: ${stderrTail(r.stderr)}`);
  }
  return { removed: stale.map((n) => `${o.lsnRoot}/${n}`) };
}
