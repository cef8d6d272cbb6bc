// The sites' backups as roles/backup keeps them (db/<site>/<stamp>.sql.gz.age in the bucket): the last
// complete one per site, for list-sites. Registration needs no call: roles/backup reads the site records.
import type { BackupSettings } from '../backup/keys.ts';
import { DB_EXT, listBackups, siteDbPrefix } from '../backup/catalog.ts';
import { ObjectStore } from '../backup/s3.ts';

/** site id → ISO time of its newest complete database backup. */
export async function lastSiteBackups(settings: BackupSettings | Promise<BackupSettings>, ids: string[]): Promise<Map<string, string>> {
  const store = new ObjectStore((await settings).store);
  const out = new Map<string, string>();
  for (const id of ids) {
    const entries = (await listBackups(store, siteDbPrefix(id), DB_EXT)).filter((e) => e.complete);
    const last = entries[entries.length - 1];
    if (last) out.set(id, last.time.toISOString().slice(0, 16).replace('T', ' '));
  }
  return out;
}
