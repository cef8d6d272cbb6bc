// Site files (uploads, plugins, themes) with restic: one repository per site on the bucket
// (files/<site>), encrypted by restic with RESTIC_PASSWORD before anything leaves the host.
import {
  RESTIC_SECRETS,
  TIMEOUT_EXIT,
  resticBackupCommand,
  resticCheckCommand,
  resticForgetCommand,
  resticInitCommand,
  resticRepoUrl,
  resticRestoreDirCommand,
  resticSnapshotsCommand,
  type ResticRepo,
  type HostCommand,
} from './commands.ts';
import { checkSite, filesRepoPrefix, pickAtOrBefore } from './catalog.ts';
import { BackupError, NoBackupError, StoreCredentialsError } from './errors.ts';
import { FILES_POLICY, resticForgetArgs, type RetentionPolicy } from './retention.ts';
import { runHostCommand, stderrTail, type Shell } from './runner.ts';
import type { StoreConfig } from './s3.ts';

export interface FilesTarget {
  site: string;
  /** absolute directories of the site (e.g. its wp-content) */
  paths: string[];
}

export interface ResticAccess {
  store: StoreConfig;
  password: string;
}

export const siteTag = (site: string): string => `site-${checkSite(site)}`;

export function siteRepo(store: StoreConfig, site: string): ResticRepo {
  return { url: resticRepoUrl(store.endpoint, store.bucket, filesRepoPrefix(site)) };
}

function secretsOf(a: ResticAccess): Record<string, string> {
  const s: Record<string, string> = {
    RESTIC_PASSWORD: a.password,
    AWS_ACCESS_KEY_ID: a.store.accessKeyId,
    AWS_SECRET_ACCESS_KEY: a.store.secretAccessKey,
  };
  for (const n of RESTIC_SECRETS) if (!s[n]) throw new Error(`missing ${n}`);
  return s;
}

const CRED_RE =
  /InvalidAccessKeyId|SignatureDoesNotMatch|Access Denied|AccessDenied|access key Id you provided does not exist|signature we calculated does not match/i;

async function run(shell: Shell, a: ResticAccess, stage: string, cmd: HostCommand, timeoutSec?: number): Promise<string> {
  const r = await runHostCommand(shell, cmd, secretsOf(a));
  if ((r.code === TIMEOUT_EXIT || r.code === 137) && timeoutSec) {
    throw new BackupError(
      stage,
      `restic on ${shell.name} did not finish within ${timeoutSec} s (store unreachable or too slow); no snapshot was written: ${stderrTail(r.stderr, 3)}`,
    );
  }
  if (r.code !== 0) {
    const m = CRED_RE.exec(r.stderr);
    if (m) {
      const code = /SignatureDoesNotMatch|signature we calculated/i.test(m[0])
        ? 'SignatureDoesNotMatch'
        : /InvalidAccessKeyId|does not exist/i.test(m[0])
          ? 'InvalidAccessKeyId'
          : 'AccessDenied';
      throw new StoreCredentialsError(a.store.endpoint, a.store.bucket, code, 403);
    }
    throw new BackupError(stage, `restic on ${shell.name} exited ${r.code}: ${stderrTail(r.stderr)}`);
  }
  return r.stdout;
}

export interface FilesBackupResult {
  snapshotId: string;
  filesNew: number;
  filesChanged: number;
  bytesAdded: number;
  ms: number;
}

export async function backupSiteFiles(o: {
  shell: Shell;
  access: ResticAccess;
  target: FilesTarget;
  host: string;
  time?: Date;
  timeoutSec?: number;
}): Promise<FilesBackupResult> {
  const t0 = Date.now();
  const repo = siteRepo(o.access.store, o.target.site);
  await run(o.shell, o.access, 'init', resticInitCommand(repo));
  const timeoutSec = o.timeoutSec ?? 4 * 3600;
  const out = await run(
    o.shell,
    o.access,
    'files',
    resticBackupCommand(repo, { paths: o.target.paths, host: o.host, tags: [siteTag(o.target.site)], time: o.time, timeoutSec }),
    timeoutSec,
  );
  const summary = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map(
      (l) =>
        JSON.parse(l) as { message_type?: string; snapshot_id?: string; files_new?: number; files_changed?: number; data_added?: number },
    )
    .find((j) => j.message_type === 'summary');
  if (!summary?.snapshot_id) throw new BackupError('files', `restic gave no summary for site ${o.target.site}`);
  return {
    snapshotId: summary.snapshot_id,
    filesNew: summary.files_new ?? 0,
    filesChanged: summary.files_changed ?? 0,
    bytesAdded: summary.data_added ?? 0,
    ms: Date.now() - t0,
  };
}

export interface Snapshot {
  id: string;
  short_id: string;
  time: Date;
  paths: string[];
  hostname: string;
  tags: string[];
}

export async function listSnapshots(o: { shell: Shell; access: ResticAccess; site: string }): Promise<Snapshot[]> {
  const repo = siteRepo(o.access.store, o.site);
  const out = await run(o.shell, o.access, 'snapshots', resticSnapshotsCommand(repo, { tags: [siteTag(o.site)] }));
  const arr = JSON.parse(out || '[]') as Array<{
    id: string;
    short_id: string;
    time: string;
    paths: string[];
    hostname: string;
    tags?: string[];
  }>;
  return arr.map((s) => ({ ...s, tags: s.tags ?? [], time: new Date(s.time) })).sort((a, b) => a.time.getTime() - b.time.getTime());
}

export interface FilesRestoreResult {
  snapshotId: string;
  time: Date;
  ms: number;
}

/** Restore every directory of the site from the newest snapshot at or before `at` (swap into place). */
export async function restoreSiteFiles(o: {
  shell: Shell;
  access: ResticAccess;
  target: FilesTarget;
  at: Date;
}): Promise<FilesRestoreResult> {
  const t0 = Date.now();
  const snaps = await listSnapshots({ shell: o.shell, access: o.access, site: o.target.site });
  const snap = pickAtOrBefore(snaps, o.at);
  if (!snap) throw new NoBackupError(`no files snapshot of site ${o.target.site} at or before ${o.at.toISOString()}`);
  const repo = siteRepo(o.access.store, o.target.site);
  for (const p of o.target.paths) {
    if (!snap.paths.some((sp) => p === sp || p.startsWith(sp.endsWith('/') ? sp : `${sp}/`))) {
      throw new BackupError('restore', `snapshot ${snap.short_id} of site ${o.target.site} does not contain ${p}`);
    }
    await run(o.shell, o.access, 'restore', resticRestoreDirCommand(repo, { snapshot: snap.id, path: p }));
  }
  return { snapshotId: snap.id, time: snap.time, ms: Date.now() - t0 };
}

/** `restic check` of the site's repository (structure; `readDataSubset` re-reads that part of the data too). */
export async function checkSiteFiles(o: {
  shell: Shell;
  access: ResticAccess;
  site: string;
  readDataSubset?: string;
}): Promise<{ site: string; ok: true; ms: number }> {
  const t0 = Date.now();
  await run(o.shell, o.access, 'check', resticCheckCommand(siteRepo(o.access.store, o.site), { readDataSubset: o.readDataSubset }));
  return { site: o.site, ok: true, ms: Date.now() - t0 };
}

export interface ForgetResult {
  keep: string[];
  remove: string[];
}

/** restic forget (+ prune) with the files policy; dryRun only reports. */
export async function forgetSiteFiles(o: {
  shell: Shell;
  access: ResticAccess;
  site: string;
  policy?: RetentionPolicy;
  dryRun?: boolean;
}): Promise<ForgetResult> {
  const repo = siteRepo(o.access.store, o.site);
  const out = await run(
    o.shell,
    o.access,
    'forget',
    resticForgetCommand(repo, {
      policyArgs: resticForgetArgs(o.policy ?? FILES_POLICY),
      tags: [siteTag(o.site)],
      prune: !o.dryRun,
      dryRun: o.dryRun,
    }),
  );
  const line = out.split('\n').find((l) => l.startsWith('['));
  const groups = JSON.parse(line ?? '[]') as Array<{ keep?: Array<{ id: string }>; remove?: Array<{ id: string }> | null }>;
  return { keep: groups.flatMap((g) => (g.keep ?? []).map((s) => s.id)), remove: groups.flatMap((g) => (g.remove ?? []).map((s) => s.id)) };
}
