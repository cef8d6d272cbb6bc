// backup: phase 5 (automation). What the backup playbooks (playbooks/backup.ts, restore-db.ts,
// restore-files.ts; the modules beside this file) need on the hosts they drive over SSH. See docs/backups.md.
//
// db hosts (group db): the galera role already installs mariadb-client (mariadb, mariadb-dump) and
// mariadb-backup (mariabackup, mbstream); gzip is Essential. Added here: age (encryption to the backup
// recipient, decryption on restore) and the mariabackup checkpoint directory (backup_lsn_root, root 0700).
//
// files hosts (the Gluster clients, group gluster_client_group = workers): the sites' files are on the
// FUSE mount of the volume, which the gluster role mounts on its clients only (the storage servers hold
// bricks, never the mounted volume). Any of them may be the files host (roles/backup/cli.ts takes the first
// whose mount answers, or backup_files_host), so each gets restic and age.
//
// The schedule runs on the controller (it holds the checkout, .env and the age identity; hosts never get a
// secret at rest): `node --import tsx playbooks/backup.ts --install-timers` (roles/backup/schedule.ts).
//
// Variables: backup_lsn_root (/var/lib/wpfarm-backup/lsn), gluster_client_group (workers),
// backup_db_host / backup_files_host (each must be in db or workers to be prepared by this role).
import type { Role, Step } from '../../lib/types.ts';
import { apt } from '../../lib/ops/apt.ts';
import { directory } from '../../lib/ops/files.ts';
import { InputError } from '../../lib/errors.ts';
import { str } from '../../lib/vars.ts';

/** Packages the backup commands need that the galera role does not install already. */
export const DB_PACKAGES = ['age'];
export const FILES_PACKAGES = ['restic', 'age'];
export const DEFAULT_LSN_ROOT = '/var/lib/wpfarm-backup/lsn';

const role: Role = {
  name: 'backup',
  hosts: 'db:workers',
  tags: ['backup'],
  description: 'backup tools on the db hosts (age, mariabackup checkpoints) and the Gluster clients (restic, age)',
  steps(ctx) {
    const v = ctx.vars;
    const me = ctx.host.name;
    const lsnRoot = str(v.backup_lsn_root, DEFAULT_LSN_ROOT).replace(/\/+$/, '');
    if (!lsnRoot.startsWith('/') || lsnRoot.split('/').includes('..'))
      throw new InputError(`backup_lsn_root must be an absolute path: ${JSON.stringify(lsnRoot)}`);
    const inGroup = (g: string) => ctx.hosts(g).some((h) => h.name === me);
    const isDb = inGroup('db') || str(v.backup_db_host, '') === me;
    const isFiles = inGroup(str(v.gluster_client_group, 'workers')) || str(v.backup_files_host, '') === me;
    const pkgs = [...new Set([...(isDb ? DB_PACKAGES : []), ...(isFiles ? FILES_PACKAGES : [])])];
    const steps: Step[] = [];
    // retried: another apt (unattended-upgrades, a parallel role) may hold the lock for a while
    if (pkgs.length) steps.push(apt({ packages: pkgs, update_cache: 3600 }, { retries: 3, delayMs: 15_000, tags: ['packages'] }));
    if (isDb) {
      // only the directory itself: its parent may be shared (/var/lib); missing parents are created 0755
      steps.push(
        directory(
          { path: lsnRoot, mode: '0700', owner: 'root', group: 'root' },
          { name: `directory ${lsnRoot} (mariabackup checkpoints)` },
        ),
      );
    }
    return steps;
  },
};

export default role;
