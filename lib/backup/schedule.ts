// Backup schedules as systemd timers on the controller (pure rendering; installing them is a role's job).
// The controller runs the playbooks; the hosts only run the commands they send.
//   sites-db       every 6 hours (per-site logical dumps) + prune (30 days)
//   cluster-full   daily 00:30 (mariabackup full) + prune
//   cluster-incr   06:30, 12:30, 18:30 (mariabackup incremental on the previous backup)
//   files          daily 03:00 (restic) + forget/prune (7 daily, 4 weekly, 3 monthly)
//   config         daily 04:00 (git bundle of the repository: inventory, site records, rendered stacks)
//   restore-test   weekly, Sunday 05:00 (scratch database and directory)
// Database jobs share one lock (flock) so a full and an incremental never overlap.
import { quote } from 'zx';

export interface TimerSpec {
  name: string;
  onCalendar: string;
  args: string[];
  lock: string;
  description: string;
}

export const BACKUP_TIMERS: readonly TimerSpec[] = Object.freeze([
  { name: 'sites-db', onCalendar: '*-*-* 00/6:15:00', args: ['--what', 'sites-db', '--prune'], lock: 'db', description: 'per-site database dumps' },
  { name: 'cluster-full', onCalendar: '*-*-* 00:30:00', args: ['--what', 'cluster-full', '--prune'], lock: 'db', description: 'mariabackup full' },
  { name: 'cluster-incr', onCalendar: '*-*-* 06,12,18:30:00', args: ['--what', 'cluster-incr'], lock: 'db', description: 'mariabackup incremental' },
  { name: 'files', onCalendar: '*-*-* 03:00:00', args: ['--what', 'files', '--prune'], lock: 'files', description: 'site files (restic)' },
  { name: 'config', onCalendar: '*-*-* 04:00:00', args: ['--what', 'config'], lock: 'config', description: 'configuration repository (git bundle)' },
  { name: 'restore-test', onCalendar: 'Sun *-*-* 05:00:00', args: ['--restore-test'], lock: 'files', description: 'weekly restore test' },
]);

export interface UnitFile {
  name: string;
  content: string;
}

/** systemd service + timer units for every schedule. `repoDir`: the wpfarm checkout; `node`: absolute path. */
export function renderBackupUnits(o: { repoDir: string; node: string; inventory?: string; timers?: readonly TimerSpec[] }): UnitFile[] {
  if (!o.repoDir.startsWith('/') || !o.node.startsWith('/')) throw new Error('repoDir and node must be absolute paths');
  const out: UnitFile[] = [];
  for (const t of o.timers ?? BACKUP_TIMERS) {
    const args = [...t.args, ...(o.inventory ? ['--inventory', o.inventory] : [])];
    const exec = ['/usr/bin/flock', `/run/wpfarm-backup-${t.lock}.lock`, o.node, '--import', 'tsx', 'playbooks/backup.ts', ...args].map((a) => quote(a)).join(' ');
    out.push({
      name: `wpfarm-backup-${t.name}.service`,
      content: [
        '[Unit]',
        `Description=wpfarm backup: ${t.description}`,
        'Wants=network-online.target',
        'After=network-online.target',
        '',
        '[Service]',
        'Type=oneshot',
        `WorkingDirectory=${o.repoDir}`,
        `ExecStart=${exec}`,
        'Nice=10',
        'IOSchedulingClass=idle',
        'TimeoutStartSec=6h',
        'PrivateTmp=true',
        '',
      ].join('\n'),
    });
    out.push({
      name: `wpfarm-backup-${t.name}.timer`,
      content: [
        '[Unit]',
        `Description=wpfarm backup schedule: ${t.description}`,
        '',
        '[Timer]',
        `OnCalendar=${t.onCalendar}`,
        'Persistent=true',
        'RandomizedDelaySec=300',
        'AccuracySec=1min',
        '',
        '[Install]',
        'WantedBy=timers.target',
        '',
      ].join('\n'),
    });
  }
  return out;
}
