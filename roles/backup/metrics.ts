// The backups' own metrics for node-exporter's textfile collector (on the db host, beside the replication's):
//   wpfarm_backup_last_success_timestamp_seconds{kind,site}        end of the last successful backup
//       kind: db (per-site dump), files (restic), cluster-full, cluster-incr (site="cluster"), config (site="config")
//   wpfarm_backup_restore_test_last_success_timestamp_seconds{site}  end of the last restore test that passed
// The alert BackupTooOld (roles/monitoring/prometheus.ts) fires when a backup's last success is too old.
// One file per kind (wpfarm_backup_<kind>.prom): jobs of one kind are serialized by the schedule's lock, and a
// run of some sites (--site) keeps the others' series: the new file is the old one with this run's successes.
import { sh } from '../../lib/shell.ts';
import { runHostCommand, type Shell } from './runner.ts';

export const BACKUP_SUCCESS_METRIC = 'wpfarm_backup_last_success_timestamp_seconds';
export const RESTORE_TEST_METRIC = 'wpfarm_backup_restore_test_last_success_timestamp_seconds';
export const BACKUP_KINDS = ['db', 'files', 'cluster-full', 'cluster-incr', 'config', 'restore-test'] as const;
export type BackupKind = (typeof BACKUP_KINDS)[number];

export interface BackupSuccess {
  kind: BackupKind;
  site: string;
  at: Date;
}

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const unesc = (v: string) => v.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));

/** The textfile of one kind. */
export function backupMetricsFile(dir: string, kind: BackupKind): string {
  return `${dir.replace(/\/+$/, '')}/wpfarm_backup_${kind}.prom`;
}

/** Series of `kind` in an earlier file: site → epoch seconds (lines of other metrics or kinds are ignored). */
export function parseBackupMetrics(text: string, kind: BackupKind): Map<string, number> {
  const metric = kind === 'restore-test' ? RESTORE_TEST_METRIC : BACKUP_SUCCESS_METRIC;
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{(.*)\} (\d+(?:\.\d+)?)$/.exec(line.trim());
    if (!m || m[1] !== metric) continue;
    const labels = new Map<string, string>();
    for (const l of m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels.set(l[1]!, unesc(l[2]!));
    const site = labels.get('site');
    if (site === undefined || (kind !== 'restore-test' && labels.get('kind') !== kind)) continue;
    out.set(site, Number(m[3]));
  }
  return out;
}

/**
 * The new text of one kind's file: the earlier series (`previous`, the file as it was; '' when absent) with this
 * run's successes of that kind (a series never goes back in time), sorted by site.
 */
export function backupMetricsText(kind: BackupKind, previous: string, successes: readonly BackupSuccess[]): string {
  const series = parseBackupMetrics(previous, kind);
  for (const s of successes) {
    if (s.kind !== kind) continue;
    const t = Math.floor(s.at.getTime() / 1000);
    series.set(s.site, Math.max(t, series.get(s.site) ?? 0));
  }
  const restore = kind === 'restore-test';
  const metric = restore ? RESTORE_TEST_METRIC : BACKUP_SUCCESS_METRIC;
  const help = restore ? 'End of the last restore test of a site that passed.' : 'End of the last successful backup of its kind.';
  const lines = [...series.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([site, t]) => `${metric}{${restore ? '' : `kind="${kind}",`}site="${esc(site)}"} ${t}`);
  return [`# HELP ${metric} ${help}`, `# TYPE ${metric} gauge`, ...lines, ''].join('\n');
}

/** Write this run's successes to the db host's textfile directory (one file per kind, replaced atomically). */
export async function writeBackupMetrics(shell: Shell, dir: string, successes: readonly BackupSuccess[]): Promise<string[]> {
  const files: string[] = [];
  for (const kind of BACKUP_KINDS) {
    if (!successes.some((s) => s.kind === kind)) continue;
    const file = backupMetricsFile(dir, kind);
    const prev = await runHostCommand(shell, { script: sh`cat ${file} 2>/dev/null || true`, secrets: [] }, {});
    const text = backupMetricsText(kind, prev.code === 0 ? prev.stdout : '', successes);
    const script = sh`mkdir -p ${dir} && cat > ${`${file}.tmp`} && chmod 0644 ${`${file}.tmp`} && mv ${`${file}.tmp`} ${file}`;
    const r = await runHostCommand(shell, { script, secrets: [] }, {}, Buffer.from(text));
    if (r.code !== 0) throw new Error(`writing ${file} on ${shell.name} exited ${r.code}: ${r.stderr.trim()}`);
    files.push(file);
  }
  return files;
}
