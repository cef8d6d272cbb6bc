// What the backup playbooks share: flags, inventory, sites, settings from .env, and where commands run.
//
// Inventory vars (all optional):
//   backup_db_host       host that runs mariadb-dump / mariabackup (default: first host of group "db")
//   backup_files_host    host that sees the sites' files: it must have the Gluster volume MOUNTED (the gluster
//                        role mounts it on its clients, group gluster_client_group = "workers", not on the
//                        storage servers). Default: the first host of that group whose mount answers.
//   gluster_sites_path   where each site's directory lives (default gluster_mount, else /mnt/gluster/sites)
//   backup_files_require_mount  false: accept a files host where the path is not a Gluster mount (default true)
//   mariadb_socket       socket of the local MariaDB on the db host (default /run/mysqld/mysqld.sock)
//   backup_lsn_root      mariabackup checkpoints on the db host (default /var/lib/wpfarm-backup/lsn)
//   backup_replica_endpoint, backup_replica_bucket, backup_replica_region   the second region's store (replica.ts);
//                        its keys: WPFARM_S3_REPLICA_ACCESS_KEY / WPFARM_S3_REPLICA_SECRET_KEY in .env
import { existsSync } from 'node:fs';
import type { CommonFlags, OptionSpec } from '../../lib/cli.ts';
import { InputError } from '../../lib/errors.ts';
import { checkVars, loadInventory, parseExtraVars, groupMembers, type Inventory } from '../../lib/inventory.ts';
import { RETENTION_VARS, retentionOf } from '../common/retention.ts';
import { ConnectionPool, sshOptions } from '../../lib/transport.ts';
import type { HostSpec } from '../../lib/types.ts';
import { loadSites, type SiteRecord } from '../wp-site/site.ts';
import { siteDbName } from '../wp-site/stack.ts';
import { backupSettingsFromEnv, type BackupSettings } from './keys.ts';
import { ObjectStore, type StoreConfig } from './s3.ts';
import { replicaStoreConfig } from './replica.ts';
import { LocalShell, connectionShell, type Shell } from './runner.ts';
import type { SiteDbTarget } from './db.ts';
import type { FilesTarget } from './files.ts';
import type { ClusterTarget } from './cluster.ts';
import type { ResticAccess } from './files.ts';
import { BackupError } from './errors.ts';
import { isLoopbackEndpoint, openReverseTunnel, tunnelledEndpoint, type ReverseTunnel } from './tunnel.ts';
import { sh } from '../../lib/shell.ts';
import { str } from '../../lib/vars.ts';

/** The options every backup playbook takes besides its own (declared once, lib/cli.ts generates the help). */
export const BACKUP_OPTIONS: readonly OptionSpec[] = [
  { name: 'local', type: 'boolean', help: 'run the host commands on this machine (the controller is the host)' },
  { name: 'sites-dir', type: 'string', arg: 'DIR', defaultHelp: 'vars.wp_sites_dir, else inventory/sites', help: 'site records' },
];

export interface BackupCtx {
  flags: CommonFlags;
  inventory: Inventory;
  settings: BackupSettings;
  store: ObjectStore;
  sites: SiteRecord[];
  /** where the site records were read: --sites-dir, else the inventory's vars.wp_sites_dir, else inventory/sites */
  sitesDir: string;
  /** where each site's directory lives (gluster_sites_path) */
  sitesPath: string;
  dbShell(): Promise<Shell>;
  filesShell(): Promise<Shell>;
  /**
   * restic's access to the store as the files host sees it: the configured endpoint, or (a gateway on the
   * controller's loopback, as in the lab) a reverse SSH tunnel to it on the host's loopback
   */
  filesAccess(): Promise<ResticAccess>;
  /** the replica (the second region's store): its client; bad or missing settings → InputError */
  replicaStore(): ObjectStore;
  /** restic's access to the replica as the files host sees it (a tunnel when it is on the controller's loopback) */
  replicaFilesAccess(): Promise<ResticAccess>;
  site(id: string): SiteRecord;
  dbTarget(site: SiteRecord): SiteDbTarget;
  filesTarget(site: SiteRecord): FilesTarget;
  clusterTarget(): ClusterTarget;
  close(): Promise<void>;
}

export async function backupContext(flags: CommonFlags, o: { local?: boolean; sitesDir?: string }): Promise<BackupCtx> {
  const inventory = loadInventory(flags.inventory, { extraVars: parseExtraVars(flags.extraVars) });
  const settings = await backupSettingsFromEnv();
  const store = new ObjectStore(settings.store);
  // the same records as list-sites and add-site read (a lab's own directory is its inventory's wp_sites_dir)
  const sitesDir = o.sitesDir ?? str(inventory.vars.wp_sites_dir, 'inventory/sites');
  const mgmt = inventory.vars.management_cidrs;
  // the farm's backup retention (vars.retention.backups) for every record that sets none of its own
  // (checked as the roles check it: exit 4 naming file:line and the field)
  checkVars(inventory, RETENTION_VARS);
  const backupRetention = retentionOf(inventory.vars).backups;
  const sites = existsSync(sitesDir)
    ? loadSites(sitesDir, { management_cidrs: Array.isArray(mgmt) ? (mgmt as string[]) : undefined, backup_retention: backupRetention })
    : [];
  const vars = inventory.vars;
  let pool: ConnectionPool | undefined;
  const ssh = sshOptions(inventory.settings, flags);
  const connFor = async (host: HostSpec) => {
    pool ??= new ConnectionPool(ssh);
    return pool.get(host);
  };
  const sitesPath = str(vars.gluster_sites_path, str(vars.gluster_mount, '/mnt/gluster/sites')).replace(/\/+$/, '');
  const requireMount = vars.backup_files_require_mount !== false;

  let dbShell: Promise<Shell> | undefined;
  let filesHost: Promise<{ shell: Shell; host?: HostSpec }> | undefined;
  const access = new Map<string, Promise<ResticAccess>>();
  const tunnels: ReverseTunnel[] = [];
  let replica: ObjectStore | undefined;

  /** The files host: the named one, or the first Gluster client whose mount of the sites path answers. */
  const pickFilesHost = async (): Promise<{ shell: Shell; host?: HostSpec }> => {
    if (o.local) return { shell: new LocalShell('localhost') };
    const named = str(vars.backup_files_host, '');
    const group = str(vars.gluster_client_group, 'workers');
    const candidates = named ? [named] : groupMembers(inventory, group);
    if (!candidates.length)
      throw new InputError(
        `no host for file backups: set backup_files_host or put the hosts that mount the Gluster volume in group ${group} (${inventory.file})`,
      );
    const refused: string[] = [];
    for (const name of candidates) {
      const host = inventory.hosts.get(name);
      if (!host) throw new InputError(`backup_files_host ${JSON.stringify(name)} is not a host of ${inventory.file}`);
      try {
        const conn = await connFor(host);
        // findmnt -T: the filesystem the path is on; stat under a timeout: a hung FUSE mount does not answer
        const r = await conn.exec(
          sh`findmnt -n -o FSTYPE -T ${sitesPath} 2>/dev/null || true; timeout 15 stat -c %i ${sitesPath} >/dev/null 2>&1 && echo answers || echo silent`,
          { nothrow: true, timeoutMs: 30_000 },
        );
        const [fstype = '', state = ''] = r.stdout
          .trim()
          .split('\n')
          .map((l) => l.trim());
        if (state !== 'answers') refused.push(`${name}: ${sitesPath} does not answer (${fstype || 'missing'})`);
        else if (requireMount && fstype !== 'fuse.glusterfs')
          refused.push(`${name}: ${sitesPath} is on ${fstype || 'nothing'}, not a Gluster mount`);
        else return { shell: connectionShell(conn), host };
      } catch (e) {
        refused.push(`${name}: ${(e as Error).message}`);
      }
    }
    throw new BackupError(
      'files-host',
      `no host can back up the sites' files (${refused.join('; ')}); the Gluster volume must be mounted there (set backup_files_host, or backup_files_require_mount: false)`,
    );
  };
  const pickDbHost = async (): Promise<Shell> => {
    if (o.local) return new LocalShell('localhost');
    const name = str(vars.backup_db_host, '') || groupMembers(inventory, 'db')[0];
    const h = name ? inventory.hosts.get(name) : undefined;
    if (!h) throw new InputError(`no host for backups: set backup_db_host or put a host in group db (${inventory.file})`);
    return connectionShell(await connFor(h));
  };
  const pickAccess = async (cfg: StoreConfig): Promise<ResticAccess> => {
    const password = settings.resticPassword();
    const fh = await (filesHost ??= pickFilesHost());
    if (!fh.host || !isLoopbackEndpoint(cfg.endpoint)) return { store: cfg, password };
    const u = new URL(cfg.endpoint);
    const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
    const hostKeys = { knownHosts: ssh.knownHosts!, acceptNew: ssh.acceptNew }; // sshOptions always sets knownHosts
    const tunnel = await openReverseTunnel(fh.host, { host: u.hostname.replace(/^\[|\]$/g, ''), port }, hostKeys);
    tunnels.push(tunnel);
    return { store: { ...cfg, endpoint: tunnelledEndpoint(cfg.endpoint, tunnel.remotePort) }, password };
  };
  const accessFor = (cfg: StoreConfig): Promise<ResticAccess> => {
    const key = `${cfg.endpoint} ${cfg.bucket}`;
    let a = access.get(key);
    if (!a) access.set(key, (a = pickAccess(cfg)));
    return a;
  };
  const replicaStore = (): ObjectStore => (replica ??= new ObjectStore(replicaStoreConfig(vars, settings.store, inventory.file)));
  return {
    flags,
    inventory,
    settings,
    store,
    sites,
    sitesDir,
    sitesPath,
    dbShell: () => (dbShell ??= pickDbHost()),
    filesShell: async () => (await (filesHost ??= pickFilesHost())).shell,
    filesAccess: () => accessFor(settings.store),
    replicaStore,
    replicaFilesAccess: () => accessFor(replicaStore().config),
    site(id) {
      const s = sites.find((x) => x.id === id);
      if (!s) throw new InputError(`unknown site ${JSON.stringify(id)} (no ${sitesDir}/${id}.yml)`);
      return s;
    },
    dbTarget: (s) => ({
      site: s.id,
      db: siteDbName(s.id),
      conn: { socket: str(vars.mariadb_socket, '/run/mysqld/mysqld.sock'), user: 'root' },
    }),
    filesTarget: (s) => ({ site: s.id, paths: ['uploads', 'plugins', 'themes'].map((d) => `${sitesPath}/${s.id}/${d}`) }),
    clusterTarget: () => ({
      conn: { socket: str(vars.mariadb_socket, '/run/mysqld/mysqld.sock'), user: 'root' },
      lsnRoot: str(vars.backup_lsn_root, '/var/lib/wpfarm-backup/lsn'),
    }),
    async close() {
      store.destroy();
      replica?.destroy();
      for (const t of tunnels) await t.close();
      await pool?.closeAll();
    },
  };
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}
