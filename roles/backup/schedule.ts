// Backup schedules as systemd timers on the controller: rendering (pure) and installing (installBackupUnits).
// The controller runs the playbooks; the hosts only run the commands they send.
//   sites-db       every 6 hours (per-site logical dumps) + prune (30 days)
//   cluster-full   daily 00:30 (mariabackup full) + prune
//   cluster-incr   06:30, 12:30, 18:30 (mariabackup incremental on the previous backup)
//   files          daily 03:00 (restic) + forget/prune (7 daily, 4 weekly, 3 monthly)
//   config         daily 04:00 (git bundle of the repository: inventory, site records, rendered stacks)
//   restore-test   weekly, Sunday 05:00 (scratch database and directory)
//   replicate      every 6 hours at :45 (after the dumps): copy to the second region, verify, its retention
//   dr-drill       quarterly, the first day of Jan/Apr/Jul/Oct 06:00 (playbooks/dr-drill.ts: restores from the replica)
// Database jobs share one lock (flock) so a full and an incremental never overlap.
// The unit files come from templates/backup/controller-job.{service,timer}.ejs.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';

const run = promisify(execFile);

export interface TimerSpec {
  name: string;
  onCalendar: string;
  args: string[];
  lock: string;
  description: string;
  /** the playbook it runs (default playbooks/backup.ts) */
  playbook?: string;
  /** a job of the second region (backup_replica_*): scheduled only when the inventory names a replica */
  replica?: boolean;
}

export const BACKUP_TIMERS: readonly TimerSpec[] = Object.freeze([
  {
    name: 'sites-db',
    onCalendar: '*-*-* 00/6:15:00',
    args: ['--what', 'sites-db', '--prune'],
    lock: 'db',
    description: 'per-site database dumps',
  },
  {
    name: 'cluster-full',
    onCalendar: '*-*-* 00:30:00',
    args: ['--what', 'cluster-full', '--prune'],
    lock: 'db',
    description: 'mariabackup full',
  },
  {
    name: 'cluster-incr',
    onCalendar: '*-*-* 06,12,18:30:00',
    args: ['--what', 'cluster-incr'],
    lock: 'db',
    description: 'mariabackup incremental',
  },
  { name: 'files', onCalendar: '*-*-* 03:00:00', args: ['--what', 'files', '--prune'], lock: 'files', description: 'site files (restic)' },
  {
    name: 'config',
    onCalendar: '*-*-* 04:00:00',
    args: ['--what', 'config'],
    lock: 'config',
    description: 'configuration repository (git bundle)',
  },
  { name: 'restore-test', onCalendar: 'Sun *-*-* 05:00:00', args: ['--restore-test'], lock: 'files', description: 'weekly restore test' },
  {
    name: 'replicate',
    onCalendar: '*-*-* 00/6:45:00',
    args: ['--what', 'replicate', '--prune'],
    lock: 'replica',
    description: 'copy to the second region, verified, and its retention',
    replica: true,
  },
  {
    name: 'dr-drill',
    onCalendar: '*-01,04,07,10-01 06:00:00',
    args: [],
    lock: 'files',
    description: 'quarterly DR drill (sites restored from the second region into scratch)',
    playbook: 'playbooks/dr-drill.ts',
    replica: true,
  },
]);

export interface UnitFile {
  name: string;
  content: string;
}

/**
 * One argument of an ExecStart= line. systemd's own quoting, not a shell's: a safe word as is, else in double
 * quotes with `\` and `"` escaped; `$` and `%` doubled (systemd expands $VAR and %-specifiers even in quotes).
 * (A shell's $'...' quoting is not understood by systemd: it would pass `$'a,b'` on literally.)
 */
export function systemdArg(a: string): string {
  if (/^[\w/.,:=@+-]+$/.test(a)) return a;
  return `"${a.replace(/[\\"]/g, '\\$&').replace(/\n/g, '\\n').replace(/\$/g, '$$$$').replace(/%/g, '%%')}"`;
}

/** A oneshot service run from the wpfarm checkout on the controller, and the timer that starts it. */
export function controllerTimerUnits(o: {
  name: string;
  description: string;
  timerDescription: string;
  repoDir: string;
  /** the command's argv (quoted here for systemd) */
  exec: string[];
  /** [Service] lines after Nice=10 */
  service: string[];
  /** [Timer] lines */
  timer: string[];
}): UnitFile[] {
  const service = renderTemplate(templatePath('backup', 'controller-job.service.ejs'), {
    description: o.description,
    repoDir: o.repoDir,
    exec: o.exec.map(systemdArg).join(' '),
    service: o.service,
  });
  const timer = renderTemplate(templatePath('backup', 'controller-job.timer.ejs'), {
    timerDescription: o.timerDescription,
    timer: o.timer,
  });
  return [
    { name: `${o.name}.service`, content: service },
    { name: `${o.name}.timer`, content: timer },
  ];
}

/**
 * The jobs an inventory schedules: all of them when it names a second region (backup_replica_endpoint), else all
 * but the replica's (a replicate job without a replica could only fail, every 6 hours).
 */
export function scheduledTimers(vars: Record<string, unknown>, timers: readonly TimerSpec[] = BACKUP_TIMERS): TimerSpec[] {
  const replica = typeof vars.backup_replica_endpoint === 'string' && vars.backup_replica_endpoint !== '';
  return timers.filter((t) => replica || !t.replica);
}

/** systemd service + timer units for every schedule. `repoDir`: the wpfarm checkout; `node`: absolute path. */
export function renderBackupUnits(o: {
  repoDir: string;
  node: string;
  inventory?: string | readonly string[];
  timers?: readonly TimerSpec[];
}): UnitFile[] {
  if (!o.repoDir.startsWith('/') || !o.node.startsWith('/')) throw new Error('repoDir and node must be absolute paths');
  const out: UnitFile[] = [];
  for (const t of o.timers ?? BACKUP_TIMERS) {
    const args = [...t.args, ...[o.inventory ?? []].flat().flatMap((f) => ['--inventory', f])];
    const playbook = t.playbook ?? 'playbooks/backup.ts';
    const exec = ['/usr/bin/flock', `/run/wpfarm-backup-${t.lock}.lock`, o.node, '--import', 'tsx', playbook, ...args];
    out.push(
      ...controllerTimerUnits({
        name: `wpfarm-backup-${t.name}`,
        description: `wpfarm backup: ${t.description}`,
        timerDescription: `wpfarm backup schedule: ${t.description}`,
        repoDir: o.repoDir,
        exec,
        service: ['IOSchedulingClass=idle', 'TimeoutStartSec=6h', 'PrivateTmp=true'],
        timer: [`OnCalendar=${t.onCalendar}`, 'Persistent=true', 'RandomizedDelaySec=300', 'AccuracySec=1min'],
      }),
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Installing the units on the controller: `node --import tsx playbooks/backup.ts --install-timers`.
// Idempotent: files are written only when their content differs (atomically), wpfarm-backup-* units that
// are no longer rendered are disabled and removed, systemd is reloaded only after a change, and a timer is
// enabled/started only when it is not already. A rerun reports no change.

export interface InstallReport {
  unitDir: string;
  changed: boolean;
  changes: string[];
  /** false when systemd is not running here (units written, not enabled: e.g. a container) */
  systemd: boolean;
}

const BACKUP_UNIT_RE = /^wpfarm-backup-[a-z0-9-]+\.(service|timer)$/;

export async function installBackupUnits(
  units: UnitFile[],
  o: { unitDir?: string; systemctl?: boolean; check?: boolean /** the unit family (default wpfarm-backup-*) */; names?: RegExp } = {},
): Promise<InstallReport> {
  const UNIT_RE = o.names ?? BACKUP_UNIT_RE;
  const unitDir = o.unitDir ?? '/etc/systemd/system';
  const useSystemd = (o.systemctl ?? unitDir === '/etc/systemd/system') && existsSync('/run/systemd/system');
  const systemctl = async (...args: string[]) => (await run('systemctl', args, { timeout: 60_000 })).stdout.trim();
  const changes: string[] = [];
  const wanted = new Set(units.map((u) => u.name));
  for (const u of units) if (!UNIT_RE.test(u.name)) throw new Error(`unexpected unit name ${u.name}`);
  if (!o.check) await mkdir(unitDir, { recursive: true });
  // stale units (a timer removed from BACKUP_TIMERS): stop, disable, remove
  const present = existsSync(unitDir) ? (await readdir(unitDir)).filter((n) => UNIT_RE.test(n)) : [];
  for (const n of present.filter((x) => !wanted.has(x))) {
    changes.push(`remove ${join(unitDir, n)}`);
    if (o.check) continue;
    if (useSystemd && n.endsWith('.timer')) await systemctl('disable', '--now', n).catch(() => '');
    await unlink(join(unitDir, n));
  }
  for (const u of units) {
    const p = join(unitDir, u.name);
    const cur = await readFile(p, 'utf8').catch(() => null);
    if (cur === u.content) continue;
    changes.push(`${cur === null ? 'create' : 'update'} ${p}`);
    if (o.check) continue;
    const tmp = join(unitDir, `.${u.name}.wpfarm-tmp`);
    await writeFile(tmp, u.content, { mode: 0o644 });
    await rename(tmp, p);
  }
  if (useSystemd) {
    if (changes.length) {
      if (!o.check) await systemctl('daemon-reload');
      changes.push('systemctl daemon-reload');
    }
    for (const u of units.filter((x) => x.name.endsWith('.timer'))) {
      const enabled = await systemctl('is-enabled', u.name).catch(() => 'disabled');
      const active = await systemctl('is-active', u.name).catch(() => 'inactive');
      if (enabled === 'enabled' && active === 'active') continue;
      changes.push(`enable --now ${u.name} (was ${enabled}, ${active})`);
      if (!o.check) await systemctl('enable', '--now', u.name);
    }
  }
  return { unitDir, changed: changes.length > 0, changes, systemd: useSystemd };
}
