// The backups' textfile metrics (roles/backup/metrics.ts): BackupTooOld's series, merged run after run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  BACKUP_SUCCESS_METRIC,
  backupMetricsFile,
  backupMetricsText,
  parseBackupMetrics,
  type BackupSuccess,
} from '../../roles/backup/metrics.ts';

const at = (s: number) => new Date(s * 1000);

test('one kind: HELP/TYPE, a series per site with kind and site labels, sorted; other kinds ignored', () => {
  const runs: BackupSuccess[] = [
    { kind: 'db', site: 'shop', at: at(1_800_000_100.9) },
    { kind: 'db', site: 'blog', at: at(1_800_000_050) },
    { kind: 'files', site: 'shop', at: at(1_800_000_200) },
  ];
  assert.equal(
    backupMetricsText('db', '', runs),
    [
      `# HELP ${BACKUP_SUCCESS_METRIC} End of the last successful backup of its kind.`,
      `# TYPE ${BACKUP_SUCCESS_METRIC} gauge`,
      `${BACKUP_SUCCESS_METRIC}{kind="db",site="blog"} 1800000050`,
      `${BACKUP_SUCCESS_METRIC}{kind="db",site="shop"} 1800000100`,
      '',
    ].join('\n'),
  );
  assert.equal(
    backupMetricsFile('/var/lib/prometheus/node-exporter/', 'cluster-full'),
    '/var/lib/prometheus/node-exporter/wpfarm_backup_cluster-full.prom',
  );
});

test('a later run of some sites keeps the others; a series never goes back in time', () => {
  const first = backupMetricsText('files', '', [
    { kind: 'files', site: 'a', at: at(100) },
    { kind: 'files', site: 'b', at: at(200) },
  ]);
  const second = backupMetricsText('files', first, [
    { kind: 'files', site: 'b', at: at(150) },
    { kind: 'files', site: 'c', at: at(300) },
  ]);
  assert.deepEqual(
    [...parseBackupMetrics(second, 'files')],
    [
      ['a', 100],
      ['b', 200],
      ['c', 300],
    ],
  );
  // lines of another kind or metric in the earlier file are not taken over
  const foreign = `${BACKUP_SUCCESS_METRIC}{kind="db",site="x"} 5\nother_metric{site="y"} 6\n`;
  assert.deepEqual([...parseBackupMetrics(foreign, 'files')], []);
});

test("restore tests: their own metric (weekly: not BackupTooOld's 26 hours), labelled by site only; odd site names escaped", () => {
  const t = backupMetricsText('restore-test', '', [{ kind: 'restore-test', site: 'we"ird\\id', at: at(42) }]);
  assert.match(t, /^wpfarm_backup_restore_test_last_success_timestamp_seconds\{site="we\\"ird\\\\id"\} 42$/m);
  assert.doesNotMatch(t, new RegExp(BACKUP_SUCCESS_METRIC));
  assert.deepEqual([...parseBackupMetrics(t, 'restore-test')], [['we"ird\\id', 42]]);
});
