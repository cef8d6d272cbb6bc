// Restore one site's files by date:  node --import tsx playbooks/restore-files.ts --site N --date D
// restic restores the newest snapshot at or before D into a staging directory next to each live one
// (uploads, plugins, themes), then swaps it into place; a failed restore leaves the live files as they were.
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { BACKUP_OPTIONS, backupContext, printJson } from '../roles/backup/cli.ts';
import { parseRestoreDate, checkSite } from '../roles/backup/catalog.ts';
import { restoreSiteFiles } from '../roles/backup/files.ts';

const CMD: CommandSpec = {
  name: 'restore-files.ts',
  summary: `Restores the files of site ID (uploads, plugins, themes) from the newest restic snapshot at or before D
(latest, YYYY-MM-DD, or an ISO time with zone). It REPLACES the live directories: --yes is required.`,
  options: [
    { name: 'site', type: 'string', arg: 'ID', help: 'the site (required)' },
    { name: 'date', type: 'string', arg: 'D', help: 'latest, YYYY-MM-DD or an ISO time with zone (required)' },
    { name: 'yes', type: 'boolean', help: 'confirm replacing the live directories' },
    ...BACKUP_OPTIONS,
  ],
};
try {
  const p = parseOrExit(process.argv.slice(2), CMD);
  const { flags } = p;
  const extra = p.opts as { site?: string; date?: string; yes: boolean; local: boolean; 'sites-dir'?: string };
  if (!extra.site) throw new InputError('--site is required (see --help)');
  if (!extra.date) throw new InputError('--date is required: latest, YYYY-MM-DD or an ISO time (see --help)');
  checkSite(extra.site);
  const at = parseRestoreDate(extra.date);
  if (!extra.yes) throw new InputError(`this replaces the live files of site ${extra.site}: add --yes`);
  const ctx = await backupContext(flags, { local: extra.local, sitesDir: extra['sites-dir'] });
  try {
    const site = ctx.site(extra.site);
    const r = await restoreSiteFiles({ shell: await ctx.filesShell(), access: await ctx.filesAccess(), target: ctx.filesTarget(site), at });
    printJson({ site: site.id, snapshot: r.snapshotId, backupTime: r.time.toISOString(), totalMs: r.ms });
  } finally {
    await ctx.close();
  }
} catch (e) {
  fail(e);
}
