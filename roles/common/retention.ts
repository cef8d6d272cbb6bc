// The farm's retention policy: ONE place of the inventory (`vars.retention`), read by every role that keeps
// data over time. What each figure governs and which role applies it:
//
//   retention.logs.access_days     web access logs in Loki (nginx, the edge): addresses already truncated   monitoring (Loki)
//   retention.logs.audit_days      the WordPress admin audit trail (mu-plugin wpfarm-audit) in Loki          monitoring (Loki)
//   retention.logs.app_days        every other container log and the journal in Loki                        monitoring (Loki)
//   retention.logs.edge_file_days  the edge's own access log file (full addresses, read by CrowdSec only,
//                                  never shipped)                                                            traefik (logrotate)
//   retention.metrics_days         Prometheus' time series                                                   monitoring (Prometheus)
//   retention.traces_days          Tempo's traces                                                            monitoring (Tempo)
//
//   retention.backups.db_days      database dumps kept (days), every site                                    backup (prune)
//   retention.backups.files_keep_daily / _weekly / _monthly
//                                  the files' restic snapshots kept (restic forget), every site              backup (prune)
//
// A site record's backup section overrides the backups' figures for that site (roles/wp-site/site.ts); the
// controller's run logs keep theirs (settings.run_log_retention): docs/security.md has the whole table.
// Pure: parsed by the roles' var schemas before any connection (exit 4 naming file:line and field).
import { z } from 'zod';
import { int } from '../../lib/schema.ts';

export const RETENTION_DEFAULTS = {
  logs: { access_days: 14, audit_days: 365, app_days: 30, edge_file_days: 7 },
  metrics_days: 30,
  traces_days: 14,
  backups: { db_days: 30, files_keep_daily: 7, files_keep_weekly: 4, files_keep_monthly: 3 },
} as const;

// Loki applies retention in whole days of at least 1 (its compactor refuses periods under 24h)
const days = (max: number) => int(1, max);

export const RetentionSchema = z.strictObject({
  logs: z
    .strictObject({
      access_days: days(3650).optional(),
      audit_days: days(3650).optional(),
      app_days: days(3650).optional(),
      edge_file_days: days(365).optional(),
    })
    .optional(),
  metrics_days: days(3650).optional(),
  traces_days: days(3650).optional(),
  // the same bounds as a site record's backup section
  backups: z
    .strictObject({
      db_days: days(3650).optional(),
      files_keep_daily: int(1, 365).optional(),
      files_keep_weekly: int(0, 520).optional(),
      files_keep_monthly: int(0, 120).optional(),
    })
    .optional(),
});

/** For a role's `vars`: the schema of `retention`, checked before any connection. */
export const RETENTION_VARS = { retention: RetentionSchema };

export interface Retention {
  logs: { accessDays: number; auditDays: number; appDays: number; edgeFileDays: number };
  metricsDays: number;
  tracesDays: number;
  backups: BackupRetention;
}

/** The backups' retention of every site that does not set its own (its record's backup section). */
export interface BackupRetention {
  dbDays: number;
  filesDaily: number;
  filesWeekly: number;
  filesMonthly: number;
}

/** The policy with its defaults filled in (the value was checked by RETENTION_VARS before the run). */
export function retentionOf(vars: Record<string, unknown>): Retention {
  const r = RetentionSchema.parse(vars.retention ?? {});
  const d = RETENTION_DEFAULTS;
  return {
    logs: {
      accessDays: r.logs?.access_days ?? d.logs.access_days,
      auditDays: r.logs?.audit_days ?? d.logs.audit_days,
      appDays: r.logs?.app_days ?? d.logs.app_days,
      edgeFileDays: r.logs?.edge_file_days ?? d.logs.edge_file_days,
    },
    metricsDays: r.metrics_days ?? d.metrics_days,
    tracesDays: r.traces_days ?? d.traces_days,
    backups: {
      dbDays: r.backups?.db_days ?? d.backups.db_days,
      filesDaily: r.backups?.files_keep_daily ?? d.backups.files_keep_daily,
      filesWeekly: r.backups?.files_keep_weekly ?? d.backups.files_keep_weekly,
      filesMonthly: r.backups?.files_keep_monthly ?? d.backups.files_keep_monthly,
    },
  };
}
