// The DR drill: a sample of sites restored from the second region's store ONLY (the replica, replica.ts) into
// scratch (a scratch database on the db host, a scratch directory on the files host), verified as the weekly
// restore test verifies (verify.ts restoreTestSite: CHECKSUM TABLE, exact row counts, sha256 of every file,
// compared with the live site), then served by a scratch stack of the site on the farm (roles/wp-site/scratch.ts:
// home page and newest post through its nginx), with the recovery time of each site measured (restore start →
// scratch site answering); the report in markdown and JSON.
// The drill is given the replica's client and restic access alone: it cannot read the primary store.
import { randomInt } from 'node:crypto';
import { posix } from 'node:path';
import type { ScratchSiteCheck } from '../wp-site/scratch.ts';
import type { SiteDbTarget } from './db.ts';
import type { FilesTarget, ResticAccess } from './files.ts';
import type { Shell } from './runner.ts';
import type { ObjectStore } from './s3.ts';
import { restoreTestSite, type RestoreTestReport } from './verify.ts';
import { SCRATCH_DB_SUFFIX } from '../wp-site/scratch.ts';

export interface DrillSite extends RestoreTestReport {
  /**
   * recovery time: restore start → the scratch site answering (rtoUntil 'site answering'); without a scratch stack
   * (--no-stack), the database restore and the files restore one after the other (rtoUntil 'data restored')
   */
  rtoMs: number;
  rtoUntil?: 'site answering' | 'data restored';
  /** the scratch stack's check (absent with --no-stack, or when the restore already failed) */
  stack?: ScratchSiteCheck;
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
  /** deploys, checks and removes the scratch stack on the restored database and site directory */
  scratchStack?: (a: { db: string; filesDir: string }) => Promise<ScratchSiteCheck>;
}): Promise<DrillSite> {
  const t0 = Date.now();
  const now = o.now ?? new Date();
  const siteDirs = [...new Set(o.files.target.paths.map((p) => posix.dirname(p)))];
  if (siteDirs.length !== 1) throw new Error(`${o.site}: the site's paths are not in one directory: ${o.files.target.paths.join(' ')}`);
  let stack: ScratchSiteCheck | undefined;
  const r = await restoreTestSite({
    site: o.site,
    store: o.replica,
    ageIdentity: o.ageIdentity,
    db: o.db,
    files: o.files,
    now,
    scratchSuffix: SCRATCH_DB_SUFFIX,
    whileRestored: o.scratchStack
      ? async (made) => {
          if (!made.db || !made.dir) throw new Error('nothing restored to serve');
          stack = await o.scratchStack!({ db: made.db, filesDir: `${made.dir}${siteDirs[0]}` });
          if (!stack.ok) throw new Error([...stack.problems, ...stack.leftovers.map((l) => `left behind: ${l}`)].join('; '));
        }
      : undefined,
  });
  const age = (iso?: string) => (iso ? Math.round((now.getTime() - new Date(iso).getTime()) / 1000) : undefined);
  const answered = stack?.ok ? stack.answeredAt - t0 : undefined;
  return {
    ...r,
    // a site whose scratch stack did not answer has not recovered: no RTO (0, shown as —)
    rtoMs: o.scratchStack ? (answered ?? 0) : (r.db?.restoreMs ?? 0) + (r.files?.restoreMs ?? 0),
    rtoUntil: o.scratchStack ? 'site answering' : 'data restored',
    ...(stack ? { stack } : {}),
    wallMs: Date.now() - t0,
    dbBackupAgeS: age(r.db?.backupTime),
    filesBackupAgeS: age(r.files?.backupTime),
  };
}

const sec = (ms: number | undefined) => (ms === undefined ? '—' : `${(ms / 1000).toFixed(1)} s`);
const hours = (s: number | undefined) => (s === undefined ? '—' : `${(s / 3600).toFixed(1)} h`);

/** The drill's report as a human reads it. */
export function drillMarkdown(r: DrillReport): string {
  const stacks = r.sites.some((s) => s.rtoUntil === 'site answering');
  const lines = [
    `# DR drill ${r.startedAt.slice(0, 10)}: ${r.ok ? 'PASSED' : 'FAILED'}`,
    '',
    `Restored from the replica ${r.replica} only, into scratch databases and directories` +
      `${stacks ? ' served by scratch stacks on the farm' : ''}; ${r.sampled.length} of ` +
      `${r.sitesTotal} site(s) sampled. Started ${r.startedAt}, ended ${r.endedAt}. Longest RTO: ${sec(r.maxRtoMs)}.`,
    '',
    '| Site | Result | RTO | DB restore | Files restore | Verify | Stack ready | Answering | Home page | Newest post | Tables | Rows | ' +
      'Files | Same as live | DB backup age | Snapshot age |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const page = (p: { path: string; code: number; found: boolean } | undefined) =>
    p ? `${p.code}${p.found ? ', title found' : ', title MISSING'} (${p.path})` : '—';
  for (const s of r.sites) {
    const verify = (s.db?.verifyMs ?? 0) + (s.files?.verifyMs ?? 0);
    const yn = (b: boolean | undefined) => (b === undefined ? '—' : b ? 'yes' : 'no');
    const same = `checksums ${yn(s.db?.identicalToLive)}, rows ${yn(s.db?.rowCountsMatchLive)}, files ${yn(s.files?.identicalToLive)}`;
    const st = s.stack;
    lines.push(
      `| ${s.site} | ${s.ok ? 'ok' : 'FAILED'} | ${s.rtoMs ? sec(s.rtoMs) : '—'} | ` +
        `${sec(s.db?.restoreMs)} | ${sec(s.files?.restoreMs)} | ` +
        `${sec(verify)} | ${st?.readyMs ? sec(st.readyMs) : '—'} | ${st?.answerMs ? sec(st.answerMs) : '—'} | ` +
        `${page(st?.home)} | ${page(st?.post)} | ` +
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
    stacks
      ? 'RTO: from the start of the restore to the scratch site answering: the database restore (download from the replica, ' +
          'sha256 against the manifest, decrypt, load), the files restore (restic restore --verify), their verification, ' +
          'the scratch stack deployed and healthy, its home page and newest post answering 200 with their titles through its nginx.'
      : 'RTO: the database restore (download from the replica, sha256 against the manifest, decrypt, load) plus the files ' +
          'restore (restic restore --verify), one after the other (no scratch stack: --no-stack).',
    'Verified: CHECKSUM TABLE and exact row counts of every table,',
    'sha256 of every file, each compared with the live site (a site changed since its backup differs: reported, not a failure).',
    'Backup age: how old the restored backup was (the recovery point).',
    '',
  );
  return lines.join('\n');
}
