// What the backup playbooks share: flags, inventory, sites, settings from .env, and where commands run.
//
// Inventory vars (all optional):
//   backup_db_host       host that runs mariadb-dump / mariabackup (default: first host of group "db")
//   backup_files_host    host that sees the sites' files (default: first host of group "storage")
//   gluster_sites_path   where each site's directory lives (default /mnt/gluster/sites)
//   mariadb_socket       socket of the local MariaDB on the db host (default /run/mysqld/mysqld.sock)
//   backup_lsn_root      mariabackup checkpoints on the db host (default /var/lib/wpfarm-backup/lsn)
import { resolve, isAbsolute } from 'node:path';
import { existsSync } from 'node:fs';
import { parseCli, COMMON_HELP, type CommonFlags } from '../cli.ts';
import { InputError } from '../errors.ts';
import { loadInventory, parseExtraVars, groupMembers, type Inventory } from '../inventory.ts';
import { ConnectionPool } from '../transport.ts';
import type { HostSpec } from '../types.ts';
import { loadSites, type SiteRecord } from '../../roles/wp-site/site.ts';
import { siteDbName } from '../../roles/wp-site/stack.ts';
import { backupSettingsFromEnv, type BackupSettings } from './keys.ts';
import { ObjectStore } from './s3.ts';
import { LocalShell, connectionShell, type Shell } from './runner.ts';
import type { SiteDbTarget } from './db.ts';
import type { FilesTarget } from './files.ts';
import type { ClusterTarget } from './cluster.ts';

type OptSpec = NonNullable<Parameters<typeof parseCli>[1]>;

export const BACKUP_HELP_COMMON = `Backup options:
      --local                 run the host commands on this machine (the controller is the host)
      --sites-dir DIR         site records (default inventory/sites)
${COMMON_HELP}`;

export interface BackupCtx {
  flags: CommonFlags;
  inventory: Inventory;
  settings: BackupSettings;
  store: ObjectStore;
  sites: SiteRecord[];
  dbShell(): Promise<Shell>;
  filesShell(): Promise<Shell>;
  site(id: string): SiteRecord;
  dbTarget(site: SiteRecord): SiteDbTarget;
  filesTarget(site: SiteRecord): FilesTarget;
  clusterTarget(): ClusterTarget;
  close(): Promise<void>;
}

export function parseBackupArgs<E extends Record<string, unknown>>(argv: string[], options: OptSpec, usage: string): { flags: CommonFlags; extra: E & { local?: boolean; 'sites-dir'?: string } } | null {
  const { flags, extra } = parseCli<E & { local?: boolean; 'sites-dir'?: string }>(argv, {
    ...options,
    local: { type: 'boolean' },
    'sites-dir': { type: 'string' },
  });
  if (flags.help) {
    process.stdout.write(`${usage}\n\n${BACKUP_HELP_COMMON}\n`);
    return null;
  }
  return { flags, extra };
}

function str(v: unknown, dflt: string): string {
  return typeof v === 'string' && v ? v : dflt;
}

export async function backupContext(flags: CommonFlags, o: { local?: boolean; sitesDir?: string }): Promise<BackupCtx> {
  const inventory = loadInventory(flags.inventory, { extraVars: parseExtraVars(flags.extraVars) });
  const settings = await backupSettingsFromEnv();
  const store = new ObjectStore(settings.store);
  const sitesDir = o.sitesDir ?? 'inventory/sites';
  const mgmt = inventory.vars.management_cidrs;
  const sites = existsSync(sitesDir) ? loadSites(sitesDir, { management_cidrs: Array.isArray(mgmt) ? (mgmt as string[]) : undefined }) : [];
  const vars = inventory.vars;
  const pick = (varName: string, group: string): HostSpec => {
    const name = str(vars[varName], '') || groupMembers(inventory, group)[0];
    const h = name ? inventory.hosts.get(name) : undefined;
    if (!h) throw new InputError(`no host for backups: set ${varName} or put a host in group ${group} (${inventory.file})`);
    return h;
  };
  let pool: ConnectionPool | undefined;
  const shellFor = async (varName: string, group: string): Promise<Shell> => {
    if (o.local) return new LocalShell('localhost');
    const host = pick(varName, group);
    const kh = inventory.settings.knownHosts;
    pool ??= new ConnectionPool({
      knownHosts: kh ? (isAbsolute(kh) ? kh : resolve(kh)) : resolve('.wpfarm/known_hosts'),
      acceptNew: flags.acceptNewHostKeys || inventory.settings.acceptNewHostKeys,
    });
    return connectionShell(await pool.get(host));
  };
  const sitesPath = str(vars.gluster_sites_path, '/mnt/gluster/sites').replace(/\/+$/, '');
  return {
    flags,
    inventory,
    settings,
    store,
    sites,
    dbShell: () => shellFor('backup_db_host', 'db'),
    filesShell: () => shellFor('backup_files_host', 'storage'),
    site(id) {
      const s = sites.find((x) => x.id === id);
      if (!s) throw new InputError(`unknown site ${JSON.stringify(id)} (no ${sitesDir}/${id}.yml)`);
      return s;
    },
    dbTarget: (s) => ({ site: s.id, db: siteDbName(s.id), conn: { socket: str(vars.mariadb_socket, '/run/mysqld/mysqld.sock'), user: 'root' } }),
    filesTarget: (s) => ({ site: s.id, paths: ['uploads', 'plugins', 'themes'].map((d) => `${sitesPath}/${s.id}/${d}`) }),
    clusterTarget: () => ({ conn: { socket: str(vars.mariadb_socket, '/run/mysqld/mysqld.sock'), user: 'root' }, lsnRoot: str(vars.backup_lsn_root, '/var/lib/wpfarm-backup/lsn') }),
    async close() {
      store.destroy();
      await pool?.closeAll();
    },
  };
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}
