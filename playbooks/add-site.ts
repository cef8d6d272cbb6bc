// Add a WordPress site:  npx tsx playbooks/add-site.ts --domain example.com [options]   (--help: every option)
// Validates (bad input: exit 4, nothing written), checks that phase 3 of bootstrap put this version's site images
// in the farm's registry (add-site never builds; missing: exit 2 saying so, nothing written), writes the site
// record, then runs the wp-site role for that site: secrets, database + user, Gluster directories, stack, wait until healthy, WordPress install
// (the generated admin password is printed once, here), DNS when the inventory has a cloudflare section.
// Backups: roles/backup reads the site records (the record's `backup:` policy), so writing the record
// registers the site's backups. A rerun changes nothing. --check predicts every change (writes nothing).
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run } from '../lib/play.ts';
import traefik from '../roles/traefik/role.ts';
import { standinOf } from '../roles/traefik/standin-steps.ts';
import wpSite from '../roles/wp-site/role.ts';
import { installs } from '../roles/wp-site/reconcile.ts';
import {
  checkAdminEmail,
  checkAdminUser,
  checkSiteImages,
  checkTitle,
  printAdminPassword,
  siteDns,
  SITES_DIR_OPTION,
  siteIdFor,
  validateNewSite,
  writeRecord,
} from '../roles/wp-site/playbook-util.ts';
import { checkDomain } from '../roles/wp-site/site.ts';

const CMD: CommandSpec = {
  name: 'add-site.ts',
  summary: `Adds a WordPress site: validates (bad input: exit 4, nothing written), writes the site record, then runs the
wp-site role for it (secrets, database, directories, stack, wait, install, DNS). A rerun changes nothing;
--check predicts every change and writes nothing.`,
  options: [
    { name: 'domain', type: 'string', arg: 'DOMAIN', help: "the site's domain (required)" },
    { name: 'aliases', type: 'list', arg: 'A,B', help: 'other domains of the site' },
    { name: 'title', type: 'string', arg: 'T', defaultHelp: 'the domain', help: 'WordPress site title' },
    { name: 'admin-email', type: 'string', arg: 'E', defaultHelp: 'admin@DOMAIN', help: "WordPress admin's e-mail" },
    { name: 'admin-user', type: 'string', arg: 'U', default: 'wpadmin', help: 'WordPress admin user' },
    { name: 'replicas', type: 'integer', min: 1, max: 20, defaultHelp: 'the site record default', help: 'nginx and php-fpm tasks' },
    { name: 'id', type: 'string', arg: 'ID', defaultHelp: 'from the domain', help: 'site id' },
    { ...SITES_DIR_OPTION, default: undefined, defaultHelp: 'vars.wp_sites_dir, else inventory/sites' },
  ],
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const f = parsed.opts as {
  domain?: string;
  aliases?: string[];
  title?: string;
  'admin-email'?: string;
  'admin-user': string;
  replicas?: number;
  id?: string;
  'sites-dir'?: string;
};
let id = '';
try {
  if (!f.domain) throw new InputError('--domain is required');
  const de = checkDomain(f.domain);
  if (de) throw new InputError(`--domain: ${de}`);
  id = f.id ?? siteIdFor(f.domain);
  const user = f['admin-user'];
  const ue = checkAdminUser(user);
  if (ue) throw new InputError(`--admin-user ${ue}`);
  const email = f['admin-email'] ?? `admin@${f.domain}`;
  const ee = checkAdminEmail(email);
  if (ee) throw new InputError(`--admin-email ${ee}`);
  const title = f.title ?? f.domain;
  const te = checkTitle(title);
  if (te) throw new InputError(`--title: ${te}`);
  const vars = { wp_sites_only: id, wp_site_full: id, wp_site_title: title, wp_site_admin_user: user, wp_site_admin_email: email };
  parsed.flags.extraVars.push(...Object.entries(vars).map(([k, v]) => `${k}=${v}`));
} catch (e) {
  fail(e);
}
const run = Run.fromParsed(parsed, { name: 'add-site' });
const check = run.config.flags.check;
let created = '';
let tmp = '';
try {
  const sitesDir =
    f['sites-dir'] ?? (typeof run.inventory.vars.wp_sites_dir === 'string' ? run.inventory.vars.wp_sites_dir : 'inventory/sites');
  const mgmt = Array.isArray(run.inventory.vars.management_cidrs) ? run.inventory.vars.management_cidrs.map(String) : undefined;
  const aliases = f.aliases ?? [];
  const replicas = f.replicas;
  const domain = f.domain!;
  const file = path.join(sitesDir, `${id}.yml`);
  const rerun = existsSync(file);
  if (![...run.inventory.groups.keys()].includes('db') || run.hostsFor('db').length === 0)
    throw new InputError('the inventory has no database hosts (group db): a site needs its database; nothing was created');
  if (!run.hostsFor('managers').length) throw new InputError('the inventory has no swarm managers (group managers)');
  let text = '';
  if (!rerun) text = validateNewSite(sitesDir, { id, domain, aliases, replicas }, mgmt);
  else {
    // a rerun of the same add-site: the record must describe this domain
    const { readText } = await import('../roles/wp-site/playbook-util.ts');
    if (!readText(file).includes(`domain: ${domain}\n`))
      throw new InputError(`site id ${id} is already used by another domain (${file}); give --id`);
  }
  // never builds: phase 3 of bootstrap built this version's images; checked before anything is written
  await checkSiteImages(run, check);
  let roleSitesDir = sitesDir;
  if (!rerun) {
    if (check) {
      // check mode writes nothing: the role reads a copy of the records with the new one added
      tmp = mkdtempSync(path.join(tmpdir(), 'wpfarm-add-site-'));
      if (existsSync(sitesDir)) cpSync(sitesDir, tmp, { recursive: true });
      writeRecord(path.join(tmp, `${id}.yml`), text);
      roleSitesDir = tmp;
      run.say(`would write the site record ${file}`);
    } else {
      writeRecord(file, text);
      created = file;
      run.say(`site record ${file} written (its backup policy registers the site's backups)`);
    }
  } else run.say(`site record ${file} exists: reconciling`);
  for (const h of run.hostsFor('managers')) h.vars.wp_sites_dir = roleSitesDir;
  for (const h of run.inventory.hosts.values()) h.vars.wp_sites_dir = roleSitesDir;
  run.phase(`site ${id} (${domain})`);
  const r = await run.role(wpSite);
  const ok = r.hosts.every((h) => run.healthy(h.host));
  // Traefik picks a new site's labels up by itself; an edge stand-in (the lab's) is configured from them
  if (ok && standinOf(run.inventory.vars)) {
    run.phase('edge stand-in');
    await run.role(traefik);
  }
  if (!ok && created && !rerun) {
    run.say(
      `the site could not be created: see the errors above. The record ${created} is kept so that a rerun resumes, or remove it with playbooks/remove-site.ts --domain ${domain} --yes --no-backup`,
    );
    created = '';
  }
  const dns = await siteDns(run, { domain, aliases }, check, ok);
  if (dns) run.say(dns);
  for (const i of installs) printAdminPassword(i);
} catch (e) {
  await run.finish().catch(() => undefined);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  fail(e);
}
if (tmp) rmSync(tmp, { recursive: true, force: true });
await run.exit();
