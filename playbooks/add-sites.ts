// Add many WordPress sites:  npx tsx playbooks/add-sites.ts --from FILE [--concurrency N] [options]   (--help)
// FILE is a YAML list of sites, each with add-site's options (roles/wp-site/sites-file.ts). The whole file is
// checked first (bad input: exit 4 naming file:line:col field, nothing created), then the images (phase 3 built
// them; never built here), then every record is written and ONE wp-site run creates the sites, at most N at once
// in each step (secrets, databases, directories, stacks, wait, install). A site that fails is named with its step
// and error and the others go on; then, as add-site, the edge stand-in (the lab's) is configured for the new sites;
// one result line per site at the end; exit 2 when a site failed. A rerun of the
// same file creates nothing new. --check predicts every change and writes nothing.
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
import { checkSiteImages, printAdminPassword, siteDns, SITES_DIR_OPTION, writeRecord } from '../roles/wp-site/playbook-util.ts';
import { readSitesFile } from '../roles/wp-site/sites-file.ts';
import { FarmState, STATE_KEY } from '../roles/wp-site/steps.ts';

const CMD: CommandSpec = {
  name: 'add-sites.ts',
  summary: `Adds the WordPress sites of a YAML list (each entry: domain, and optionally aliases, title, admin_user, admin_email,
replicas, id). The whole file is checked first (bad input: exit 4, nothing created); then one wp-site run creates them,
at most --concurrency sites at once; a failed site never stops the others; one result line per site.`,
  options: [
    { name: 'from', type: 'string', arg: 'FILE', help: 'the YAML list of sites (required)' },
    { name: 'concurrency', type: 'integer', min: 1, max: 20, default: 4, help: 'sites worked on at once in each step' },
    { ...SITES_DIR_OPTION, default: undefined, defaultHelp: 'vars.wp_sites_dir, else inventory/sites' },
  ],
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const f = parsed.opts as { from?: string; concurrency: number; 'sites-dir'?: string };
if (!f.from) fail(new InputError('--from FILE is required (a YAML list of sites)'));
const run = Run.fromParsed(parsed, { name: 'add-sites' });
const check = run.config.flags.check;
let tmp = '';
try {
  const v = run.inventory.vars;
  const sitesDir = f['sites-dir'] ?? (typeof v.wp_sites_dir === 'string' ? v.wp_sites_dir : 'inventory/sites');
  const mgmt = Array.isArray(v.management_cidrs) ? v.management_cidrs.map(String) : undefined;
  if (![...run.inventory.groups.keys()].includes('db') || run.hostsFor('db').length === 0)
    throw new InputError('the inventory has no database hosts (group db): a site needs its database; nothing was created');
  if (!run.hostsFor('managers').length) throw new InputError('the inventory has no swarm managers (group managers)');
  const sites = readSitesFile(f.from!, sitesDir, mgmt);
  await checkSiteImages(run, check);

  // every record at once (check mode: into a copy of the records), then one run for all of them
  let roleSitesDir = sitesDir;
  if (check) {
    tmp = mkdtempSync(path.join(tmpdir(), 'wpfarm-add-sites-'));
    if (existsSync(sitesDir)) cpSync(sitesDir, tmp, { recursive: true });
    roleSitesDir = tmp;
  }
  for (const s of sites) {
    if (!s.record) continue;
    writeRecord(path.join(roleSitesDir, `${s.id}.yml`), s.record);
  }
  const fresh = sites.filter((s) => s.record).length;
  run.say(
    `${sites.length} site(s) in ${f.from}: ${fresh} record(s) ${check ? 'would be written' : 'written'} to ${sitesDir}, ` +
      `${sites.length - fresh} existing; at most ${f.concurrency} at once`,
  );
  const install = Object.fromEntries(sites.map((s) => [s.id, { title: s.title, admin_user: s.adminUser, admin_email: s.adminEmail }]));
  const ids = sites.map((s) => s.id);
  for (const h of run.inventory.hosts.values()) {
    Object.assign(h.vars, {
      wp_sites_dir: roleSitesDir,
      wp_sites_only: ids,
      wp_site_full: ids,
      wp_site_install: install,
      wp_site_concurrency: f.concurrency,
    });
  }
  run.phase(`${sites.length} sites (${f.concurrency} at once)`);
  const r = await run.role(wpSite);
  const state = r.results.find((x) => x.step === 'site state' && x.result instanceof FarmState)?.result as FarmState | undefined;
  // as add-site: Traefik picks the new sites' labels up by itself; an edge stand-in (the lab's) is configured from them,
  // once for the whole file
  if (state && r.hosts.every((h) => run.healthy(h.host)) && standinOf(run.inventory.vars)) {
    run.phase('edge stand-in');
    await run.role(traefik);
  }

  // one line per site: ok (with what was done) or FAILED (step: error); DNS and the admin password of the new ones
  run.phase('results');
  let dnsSkipped = '';
  for (const s of sites) {
    const failed = state?.failed.get(s.id);
    const inst = installs.find((i) => i.site === s.id);
    if (!state) run.say(`NOT DONE ${s.domain} (${s.id}): the run stopped before the sites were planned`);
    else if (failed) run.say(`FAILED   ${s.domain} (${s.id}): ${failed.split('\n')[0]}`);
    else {
      const what = s.record ? (check ? 'would be created' : 'created') : 'exists, reconciled';
      run.say(`ok       ${s.domain} (${s.id}): ${what}${inst ? ', WordPress installed' : ''}`);
      const dns = await siteDns(run, s, check, true);
      if (dns && !dns.endsWith(': skipped')) run.say(`         ${dns}`);
      else if (dns) dnsSkipped = dns;
    }
  }
  if (dnsSkipped) run.say(dnsSkipped);
  const bad = state ? sites.filter((s) => state.failed.has(s.id)).length : sites.length;
  run.say(`${sites.length - bad} of ${sites.length} site(s) ok${bad ? `, ${bad} failed (their records are kept: a rerun resumes)` : ''}`);
  for (const i of installs) printAdminPassword(i);
} catch (e) {
  await run.finish().catch(() => undefined);
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  fail(e);
}
if (tmp) rmSync(tmp, { recursive: true, force: true });
await run.exit();
