// Update progress as Prometheus metrics: the text of wpfarm_update.prom, which update.ts (and rollback.ts) write to
// node-exporter's textfile collector on every manager (roles/monitoring/textfile.ts) when a run starts, after each
// wave and at its end. Pure: derived from the update state file (plan.ts) and the run's own progress.
//   wpfarm_update_sites{status}                      total (every site of the update's waves), updated, failed,
//                                                    rolled_back (by rollback.ts), pending (not reached yet)
//   wpfarm_update_wave / wpfarm_update_waves         the wave running or last run (0 = the canary) / waves planned
//   wpfarm_update_running                            1 while a run is between its plan and its end
//   wpfarm_update_outcome{outcome}                   1 for the outcome of the last run (running while it runs)
//   wpfarm_update_last_run_timestamp_seconds         when the last run started
//   wpfarm_update_last_progress_timestamp_seconds    when this file was written (a running update that stops
//                                                    writing it is stalled: alert WpfarmUpdateStalled)
// Alerts: roles/monitoring/prometheus.ts (WpfarmUpdateSitesFailed, WpfarmUpdateStalled).
import type { UpdateState } from './plan.ts';

export const UPDATE_METRICS_FILE = 'wpfarm_update.prom';

export const OUTCOMES = ['running', 'ok', 'failed', 'stopped', 'interrupted', 'rolled-back'] as const;
export type UpdateOutcome = (typeof OUTCOMES)[number];

export interface UpdateProgress {
  state: UpdateState;
  /** the wave running now or run last (its index in state.waves); null: none started */
  wave: number | null;
  outcome: UpdateOutcome;
  /** when this run started */
  started: Date;
  now?: Date;
}

/** Counts of the update's sites by status. */
export function updateCounts(state: UpdateState): Record<'total' | 'updated' | 'failed' | 'rolled_back' | 'pending', number> {
  const ids = new Set(state.waves.flat());
  for (const id of Object.keys(state.sites)) ids.add(id);
  const by = (s: string) => Object.values(state.sites).filter((e) => e.status === s).length;
  const recorded = Object.keys(state.sites).length;
  return { total: ids.size, updated: by('done'), failed: by('failed'), rolled_back: by('rolled-back'), pending: ids.size - recorded };
}

const secs = (d: Date) => Math.floor(d.getTime() / 1000);

/** The .prom text. */
export function updateMetrics(p: UpdateProgress): string {
  const c = updateCounts(p.state);
  const now = p.now ?? new Date();
  return [
    '# HELP wpfarm_update_sites Sites of the last farm update (playbooks/update.ts) by status; total = every site of its waves.',
    '# TYPE wpfarm_update_sites gauge',
    ...Object.entries(c).map(([s, n]) => `wpfarm_update_sites{status="${s}"} ${n}`),
    '# HELP wpfarm_update_wave The wave running now or run last (0 = the canary; -1 = none started).',
    '# TYPE wpfarm_update_wave gauge',
    `wpfarm_update_wave ${p.wave ?? -1}`,
    '# HELP wpfarm_update_waves Waves of the update (every run of the same target included).',
    '# TYPE wpfarm_update_waves gauge',
    `wpfarm_update_waves ${p.state.waves.length}`,
    '# HELP wpfarm_update_running 1 while an update runs.',
    '# TYPE wpfarm_update_running gauge',
    `wpfarm_update_running ${p.outcome === 'running' ? 1 : 0}`,
    '# HELP wpfarm_update_outcome Outcome of the last update run (1 = this one).',
    '# TYPE wpfarm_update_outcome gauge',
    ...OUTCOMES.map((o) => `wpfarm_update_outcome{outcome="${o}"} ${o === p.outcome ? 1 : 0}`),
    '# HELP wpfarm_update_last_run_timestamp_seconds When the last update run started.',
    '# TYPE wpfarm_update_last_run_timestamp_seconds gauge',
    `wpfarm_update_last_run_timestamp_seconds ${secs(p.started)}`,
    '# HELP wpfarm_update_last_progress_timestamp_seconds When the last update run last reported progress.',
    '# TYPE wpfarm_update_last_progress_timestamp_seconds gauge',
    `wpfarm_update_last_progress_timestamp_seconds ${secs(now)}`,
    '',
  ].join('\n');
}
