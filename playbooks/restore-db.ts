// Restore one site's database by date:  node --import tsx playbooks/restore-db.ts --site N --date D
// D: latest | YYYY-MM-DD (the last backup of that UTC day or before) | ISO time with zone.
// The newest complete backup at or before D is downloaded, checked against its manifest (sha256),
// decrypted on the db host into a private temp file, then the database is dropped, recreated, loaded.
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { BACKUP_OPTIONS, backupContext, printJson } from '../roles/backup/cli.ts';
import { parseRestoreDate, checkSite } from '../roles/backup/catalog.ts';
import { restoreSiteDb } from '../roles/backup/db.ts';
import { checkDbName } from '../roles/backup/commands.ts';

const CMD: CommandSpec = {
  name: 'restore-db.ts',
  summary: `Restores the database of site ID from the newest backup at or before D (latest, YYYY-MM-DD, or an ISO
time with zone). Without --into it REPLACES the site's database: --yes is required.`,
  options: [
    { name: 'site', type: 'string', arg: 'ID', help: 'the site (required)' },
    { name: 'date', type: 'string', arg: 'D', help: 'latest, YYYY-MM-DD or an ISO time with zone (required)' },
    { name: 'into', type: 'string', arg: 'DB', help: 'restore into another (scratch) database instead; the live one is not touched' },
    { name: 'yes', type: 'boolean', help: "confirm replacing the site's live database (without --into)" },
    ...BACKUP_OPTIONS,
  ],
};
try {
  const p = parseOrExit(process.argv.slice(2), CMD);
  const { flags } = p;
  const extra = p.opts as { site?: string; date?: string; into?: string; yes: boolean; local: boolean; 'sites-dir'?: string };
  if (!extra.site) throw new InputError('--site is required (see --help)');
  if (!extra.date) throw new InputError('--date is required: latest, YYYY-MM-DD or an ISO time (see --help)');
  checkSite(extra.site);
  const at = parseRestoreDate(extra.date);
  if (extra.into) checkDbName(extra.into);
  else if (!extra.yes)
    throw new InputError(`this replaces the live database of site ${extra.site}: add --yes (or --into DB for a scratch copy)`);
  const ctx = await backupContext(flags, { local: extra.local, sitesDir: extra['sites-dir'] });
  try {
    const site = ctx.site(extra.site);
    const r = await restoreSiteDb({
      shell: await ctx.dbShell(),
      store: ctx.store,
      target: ctx.dbTarget(site),
      at,
      ageIdentity: ctx.settings.identity(),
      intoDb: extra.into,
    });
    printJson({
      site: site.id,
      restored: r.key,
      backupTime: r.time.toISOString(),
      into: extra.into ?? ctx.dbTarget(site).db,
      bytes: r.bytes,
      downloadMs: r.downloadMs,
      restoreMs: r.restoreMs,
      totalMs: r.ms,
    });
  } finally {
    await ctx.close();
  }
} catch (e) {
  fail(e);
}
