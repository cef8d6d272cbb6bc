// The DR drill: a sample of sites restored from the second region's store ONLY (the replica, replica.ts) into
// scratch (a scratch database on the db host, a scratch directory on the files host), verified as the weekly
// restore test verifies (verify.ts restoreTestSite: CHECKSUM TABLE, exact row counts, sha256 of every file,
// compared with the live site), with the recovery time of each site measured; the report in markdown and JSON.
// The drill is given the replica's client and restic access alone: it cannot read the primary store.
import { randomInt } from 'node:crypto';
import type { SiteDbTarget } from './db.ts';
import type { FilesTarget, ResticAccess } from './files.ts';
import type { Shell } from './runner.ts';
import type { ObjectStore } from './s3.ts';
import { restoreTestSite, type RestoreTestReport } from './verify.ts';

export interface DrillSite extends RestoreTestReport {
  /** recovery time: the database restore and the files restore one after the other (download, decrypt, load, restic) */
  rtoMs: number;
  /** the whole site's drill: restores, verification, clean-up */
  wallMs: number;
  /** age of the newest database backup / files snapshot restored (the recovery point), seconds */
  dbBackupAgeS?: number;
  filesBackupAgeS?: number;
}

export interface DrillReport {
  version: 1;
  startedAt: string;
  endedAt: string;
  /** endpoint/bucket of the replica restored from */
  replica: string;
  /** sites on the farm / sampled */
  sitesTotal: number;
  sampled: string[];
  ok: boolean;
  maxRtoMs: number;
  sites: DrillSite[];
}

/** `n` distinct sites at random (all of them when n ≥ their number), in the farm's order. */
export function sampleSites(ids: readonly string[], n: number, pick: (max: number) => number = randomInt): string[] {
  const pool = [...ids];
  const chosen = new Set<string>();
  while (chosen.size < Math.min(n, ids.length)) chosen.add(pool.splice(pick(pool.length), 1)[0] as string);
  return ids.filter((id) => chosen.has(id));
}

/** One site: restored from the replica into scratch, checked, cleaned up; never touches the live site. */
export async function drillSite(o: {
  site: string;
  replica: ObjectStore;
  ageIdentity: string;
  db: { shell: Shell; target: SiteDbTarget };
  files: { shell: Shell; access: ResticAccess; target: FilesTarget; scratchDir: string };
  now?: Date;
}): Promise<DrillSite> {
  const t0 = Date.now();
  const now = o.now ?? new Date();
  const r = await restoreTestSite({
    site: o.site,
    store: o.replica,
    ageIdentity: o.ageIdentity,
    db: o.db,
    files: o.files,
    now,
    scratchSuffix: '_drdrill',
  });
  const age = (iso?: string) => (iso ? Math.round((now.getTime() - new Date(iso).getTime()) / 1000) : undefined);
  return {
    ...r,
    rtoMs: (r.db?.restoreMs ?? 0) + (r.files?.restoreMs ?? 0),
    wallMs: Date.now() - t0,
    dbBackupAgeS: age(r.db?.backupTime),
    filesBackupAgeS: age(r.files?.backupTime),
  };
}

const sec = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`);
const hours = (s: number | undefined) => (s === undefined ? '—' : `${(s / 3600).toFixed(1)} h`);

/** The drill's report as a human reads it. */
export function drillMarkdown(r: DrillReport): string {
  const lines = [
    `# DR drill ${r.startedAt.slice(0, 10)}: ${r.ok ? 'PASSED' : 'FAILED'}`,
    '',
    `Restored from the replica ${r.replica} only, into scratch databases and directories; ${r.sampled.length} of ` +
      `${r.sitesTotal} site(s) sampled. Started ${r.startedAt}, ended ${r.endedAt}. Longest RTO: ${sec(r.maxRtoMs)}.`,
    '',
    '| Site | Result | RTO | DB restore | Files restore | Verify | Tables | Rows | Files | Same as live | DB backup age | Snapshot age |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const s of r.sites) {
    const verify = (s.db?.verifyMs ?? 0) + (s.files?.verifyMs ?? 0);
    const yn = (b: boolean | undefined) => (b === undefined ? '—' : b ? 'yes' : 'no');
    const same = `checksums ${yn(s.db?.identicalToLive)}, rows ${yn(s.db?.rowCountsMatchLive)}, files ${yn(s.files?.identicalToLive)}`;
    lines.push(
      `| ${s.site} | ${s.ok ? 'ok' : 'FAILED'} | ${sec(s.rtoMs)} | ${sec(s.db?.restoreMs)} | ${sec(s.files?.restoreMs)} | ` +
        `${sec(verify)} | ` +
        `${s.db?.tables ?? '—'} | ${s.db?.rows ?? '—'} | ${s.files?.files ?? '—'} | ${same} | ${hours(s.dbBackupAgeS)} | ` +
        `${hours(s.filesBackupAgeS)} |`,
    );
  }
  const bad = r.sites.filter((s) => s.problems.length);
  if (bad.length) {
    lines.push('', '## Problems', '');
    for (const s of bad) for (const p of s.problems) lines.push(`- ${s.site}: ${p}`);
  }
  lines.push(
    '',
    'RTO: the database restore (download from the replica, sha256 against the manifest, decrypt, load) plus the files',
    'restore (restic restore --verify), one after the other. Verified: CHECKSUM TABLE and exact row counts of every table,',
    'sha256 of every file, each compared with the live site (a site changed since its backup differs: reported, not a failure).',
    'Backup age: how old the restored backup was (the recovery point).',
    '',
  );
  return lines.join('\n');
}
