// Drift: has anything changed on the farm since the last run? The farm's roles in CHECK mode (nothing is
// changed, no deploy lock), then, on every host reached, node-exporter's textfile collector gets
// /var/lib/prometheus/node-exporter/wpfarm_drift.prom (written to a temporary file and renamed: atomic):
//   wpfarm_drift_changes{role,host}   steps that would change, per role, on this host (0 = no drift)
//   wpfarm_drift_check_success{host}  1 when every step of the check ran (no failed or unreachable step), else 0
//   wpfarm_last_run_timestamp{host}   when this check ran (seconds since the epoch)
// The alert WpfarmDriftPersists (roles/monitoring/prometheus.ts) fires when drift stays for 2 hours.
//
//   node --import tsx playbooks/drift.ts [--roles common,traefik|path.ts,...] [--textfile-dir DIR] [common options]
//   node --import tsx playbooks/drift.ts --install-timer [--period SECONDS] [--roles ...] [--limit P] [--unit-dir DIR] [--check]
// The schedule (hourly; --period: every SECONDS) runs on the controller, like the backups (playbooks/backup.ts --install-timers): it needs
// this checkout, the inventory and the SSH key, which only the controller has.
// Exit: 0 the check ran (drift or not: drift is a metric, not an error), 2/3 a host failed/unreachable, 4 bad input.
import { resolve } from 'node:path';
import { fail, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run, loadRole } from '../lib/play.ts';
import { controllerTimerUnits, installBackupUnits, type UnitFile } from '../roles/backup/schedule.ts';
import { TEXTFILE_DIR, labelValue as l, textfileWriteCmd } from '../roles/monitoring/textfile.ts';
import { PHASES } from './phases.ts';

/**
 * The timer and its service on the controller: hourly (a random delay of up to 5 min), or every `periodSec`
 * seconds from the timer's start (the lab test's short period). `roles`, `limit` and a non-default
 * `textfileDir` are passed on to the scheduled check.
 */
export function driftUnits(o: {
  repoDir: string;
  node: string;
  inventory: string[];
  roles?: string[];
  limit?: string;
  textfileDir?: string;
  periodSec?: number;
}): UnitFile[] {
  const args = ['playbooks/drift.ts', ...o.inventory.flatMap((f) => ['--inventory', f])];
  if (o.roles?.length) args.push('--roles', o.roles.join(','));
  if (o.limit) args.push('--limit', o.limit);
  if (o.textfileDir && o.textfileDir !== TEXTFILE_DIR) args.push('--textfile-dir', o.textfileDir);
  const p = o.periodSec;
  return controllerTimerUnits({
    name: 'wpfarm-drift',
    description: 'wpfarm drift check (roles in check mode, metrics to the hosts)',
    timerDescription: p ? `wpfarm drift check, every ${p} s` : 'wpfarm drift check, hourly',
    repoDir: o.repoDir,
    exec: [o.node, '--import', 'tsx', ...args],
    service: ['TimeoutStartSec=50min'],
    // start to start: the first check one period after the timer starts, then one period after each start
    timer: p
      ? [`OnActiveSec=${p}s`, `OnUnitActiveSec=${p}s`, 'AccuracySec=1s', `RandomizedDelaySec=${Math.min(300, Math.floor(p / 10))}`]
      : ['OnCalendar=hourly', 'RandomizedDelaySec=300', 'Persistent=true'],
  });
}

/** The .prom text of one host. */
export function driftMetrics(host: string, perRole: Map<string, number>, success: boolean, at: Date): string {
  return [
    '# HELP wpfarm_drift_changes Steps of a role that would change on this host (wpfarm check mode).',
    '# TYPE wpfarm_drift_changes gauge',
    ...[...perRole.entries()].map(([role, n]) => `wpfarm_drift_changes{role="${l(role)}",host="${l(host)}"} ${n}`),
    '# HELP wpfarm_drift_check_success 1 when every step of the drift check ran on this host.',
    '# TYPE wpfarm_drift_check_success gauge',
    `wpfarm_drift_check_success{host="${l(host)}"} ${success ? 1 : 0}`,
    '# HELP wpfarm_last_run_timestamp When the drift check ran (seconds since the epoch).',
    '# TYPE wpfarm_last_run_timestamp gauge',
    `wpfarm_last_run_timestamp{host="${l(host)}"} ${Math.floor(at.getTime() / 1000)}`,
    '',
  ].join('\n');
}

const CMD: CommandSpec = {
  name: 'drift.ts',
  summary: `Runs the farm's roles in check mode and writes wpfarm_drift_changes{role,host}, wpfarm_drift_check_success and
wpfarm_last_run_timestamp to node-exporter's textfile collector on every host.
  drift.ts [--roles R1,R2] [--textfile-dir DIR]   |   drift.ts --install-timer [--period SECONDS] [--unit-dir DIR] [--check]`,
  options: [
    { name: 'roles', type: 'list', arg: 'R1,R2', defaultHelp: PHASES.flatMap((p) => p.roles).join(','), help: 'role names or role files' },
    { name: 'textfile-dir', type: 'string', arg: 'DIR', default: TEXTFILE_DIR, help: "node-exporter's textfile collector directory" },
    { name: 'install-timer', type: 'boolean', help: 'install the schedule on THIS machine (the controller) as systemd units' },
    { name: 'unit-dir', type: 'string', arg: 'DIR', help: 'with --install-timer: write the units there' },
    {
      name: 'period',
      type: 'integer',
      arg: 'SECONDS',
      min: 10,
      max: 86_400,
      defaultHelp: 'hourly',
      help: 'with --install-timer: check every SECONDS instead of hourly',
    },
  ],
};
const argv = process.argv.slice(2);
const run = Run.fromArgv(argv.includes('--install-timer') ? argv : [...argv, '--check'], { command: CMD, lock: false });
const extra = run.config.opts as {
  roles?: string[];
  'textfile-dir': string;
  'install-timer': boolean;
  'unit-dir'?: string;
  period?: number;
};
try {
  if (extra['install-timer']) {
    const units = driftUnits({
      repoDir: process.cwd(),
      node: process.execPath,
      inventory: run.config.flags.inventory.map((f) => resolve(f)),
      roles: extra.roles?.map((r) => (r.includes('/') ? resolve(r) : r)),
      limit: run.config.flags.limit,
      textfileDir: extra['textfile-dir'],
      periodSec: extra.period,
    });
    const rep = await installBackupUnits(units, {
      unitDir: extra['unit-dir'],
      check: run.config.flags.check,
      names: /^wpfarm-drift\.(service|timer)$/,
    });
    process.stdout.write(`${JSON.stringify({ ok: true, ...rep, timers: ['wpfarm-drift.timer'] }, null, 1)}\n`);
    process.exit(0);
  }
  const dir = extra['textfile-dir'];
  if (!dir.startsWith('/')) throw new InputError(`--textfile-dir must be an absolute path, got '${dir}'`);
  const names = extra.roles ?? PHASES.flatMap((p) => p.roles);
  const roles = await Promise.all(names.map((n) => loadRole(n)));
  const at = new Date();
  const changes = new Map<string, Map<string, number>>();
  for (const role of roles) {
    if (run.signal.interrupted) break;
    const r = await run.role(role);
    for (const h of r.hosts) (changes.get(h.host) ?? changes.set(h.host, new Map()).get(h.host)!).set(role.name, 0);
    for (const x of r.results)
      if (x.status === 'changed') changes.get(x.host)?.set(role.name, (changes.get(x.host)?.get(role.name) ?? 0) + 1);
  }
  const bad = new Set(run.results.filter((x) => x.status === 'failed' || x.status === 'unreachable').map((x) => x.host));
  for (const [host, perRole] of changes) {
    const spec = run.inventory.hosts.get(host);
    if (!spec || run.hostState.get(host)?.unreachable) continue;
    const text = driftMetrics(host, perRole, !bad.has(host), at);
    const file = `${dir}/wpfarm_drift.prom`;
    try {
      const c = await run.pool.get(spec);
      // atomic for the collector: it never reads a half-written file
      await c.exec(textfileWriteCmd(file), { stdin: text, become: true });
      const total = [...perRole.values()].reduce((a, b) => a + b, 0);
      run.say(`${host}: drift ${total} change(s) → ${file}`);
    } catch (e) {
      run.say(`${host}: metrics not written: ${(e as Error).message.split('\n')[0]}`);
    }
  }
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
