// What the site playbooks (add/remove/scale/list/rotate) share: the --sites-dir option, the inventory's
// management CIDRs read before the Run exists, the sites directory, site id from a domain, record files.
import { existsSync, readFileSync, writeFileSync, mkdirSync, renameSync } from 'node:fs';
import path from 'node:path';
import { InputError } from '../../lib/errors.ts';
import type { CommonFlags, OptionSpec } from '../../lib/cli.ts';
import { loadInventory } from '../../lib/inventory.ts';
import { loadCloudInventory } from '../../lib/cloud/config.ts';
import { checkDomain, checkSiteId, loadSites, parseSiteRecord, checkFarmUniqueness, siteDomains, type SiteRecord } from './site.ts';
import { InputErrors } from '../../lib/schema.ts';
import type { Run } from '../../lib/play.ts';
import { imageSettings, missingImagesMessage, plannedSiteImages, type InstallNote } from './reconcile.ts';

/** --sites-dir, declared once for every site playbook. */
export const SITES_DIR_OPTION: OptionSpec = {
  name: 'sites-dir',
  type: 'string',
  arg: 'DIR',
  default: 'inventory/sites',
  help: 'the directory of the site records',
};

/** The inventory's management_cidrs (the records' default admin allowlist), read before the Run exists. */
export function inventoryManagementCidrs(flags: CommonFlags): string[] | undefined {
  const v = loadInventory(flags.inventory).vars.management_cidrs;
  return Array.isArray(v) ? v.map(String) : undefined;
}

/** Site id from a domain: dots become '-', at most 31 characters, a letter first. */
export function siteIdFor(domain: string): string {
  let id = domain.replace(/\./g, '-').replace(/-+/g, '-');
  if (!/^[a-z]/.test(id)) id = `s-${id}`;
  id = id.slice(0, 31).replace(/-+$/, '');
  const e = checkSiteId(id);
  if (e) throw new InputError(`cannot derive a site id from ${JSON.stringify(domain)}: ${e} (give --id)`);
  return id;
}

export function sitesOf(dir: string, managementCidrs?: string[]): SiteRecord[] {
  if (!existsSync(dir)) return [];
  return loadSites(dir, { management_cidrs: managementCidrs });
}

/** Find a site by id or domain (primary or alias). */
export function findSite(sites: SiteRecord[], key: string): SiteRecord {
  const s = sites.find((x) => x.id === key || x.domain === key || x.aliases.includes(key));
  if (!s) throw new InputError(`no site ${JSON.stringify(key)} (by id or domain) in the site records`);
  return s;
}

/** The WordPress admin user of a new site (add-site --admin-user, add-sites admin_user); null when fine. */
export function checkAdminUser(user: string): string | null {
  return /^[a-z][a-z0-9_.-]{2,59}$/.test(user) ? null : `${JSON.stringify(user)}: letters, digits, _ . - (3-60, a letter first)`;
}

/** The WordPress admin's e-mail address; null when fine. */
export function checkAdminEmail(email: string): string | null {
  return /^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/.test(email) ? null : `${JSON.stringify(email)} is not an e-mail address`;
}

/** The WordPress site title; null when fine. */
export function checkTitle(title: string): string | null {
  return title.length > 200 || /[\u0000-\u001f]/.test(title) ? 'at most 200 characters, no control characters' : null;
}

export interface NewSite {
  id: string;
  domain: string;
  aliases: string[];
  replicas?: number;
}

export function recordYaml(n: NewSite): string {
  const lines = [
    `# site record written by playbooks/add-site.ts on ${new Date().toISOString().slice(0, 10)}; edit and rerun the wp-site role`,
    `id: ${n.id}`,
    `domain: ${n.domain}`,
  ];
  if (n.aliases.length) lines.push('aliases:', ...n.aliases.map((a) => `  - ${a}`));
  if (n.replicas !== undefined) lines.push(`replicas: ${n.replicas}`);
  return lines.join('\n') + '\n';
}

/** Validate a new site against the farm's records; returns the record text. Throws InputError. */
export function validateNewSite(dir: string, n: NewSite, managementCidrs?: string[]): string {
  const bad: string[] = [];
  const de = checkDomain(n.domain);
  if (de) bad.push(`--domain: ${de}`);
  n.aliases.forEach((a) => {
    const e = checkDomain(a);
    if (e) bad.push(`--aliases: ${e}`);
  });
  if (bad.length) throw new InputError(bad.join('\n'));
  const sites = sitesOf(dir, managementCidrs);
  const file = path.join(dir, `${n.id}.yml`);
  if (existsSync(file)) {
    const existing = sites.find((s) => s.id === n.id);
    throw new InputError(
      `site ${n.id} exists already (${file}${existing ? `, domain ${existing.domain}` : ''}); to reconcile it, run the wp-site role`,
    );
  }
  const text = recordYaml(n);
  const rec = parseSiteRecord(file, text, { management_cidrs: managementCidrs });
  const dup = checkFarmUniqueness([...sites, rec]);
  if (dup.length) throw new InputErrors(dup);
  return text;
}

/** Atomic write of a record file. */
export function writeRecord(file: string, text: string): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

export function readText(file: string): string {
  return readFileSync(file, 'utf8');
}

/** Where a site's DNS names go (add-site, migrate): the inventory's Cloudflare zone and the edge address; or why not. */
export function siteDnsSettings(
  inventoryFile: string,
  vars: Record<string, unknown>,
): { zone: string; target: string } | { skipped: string } {
  let cf: { zone: string } | undefined;
  try {
    cf = loadCloudInventory(inventoryFile).cloudflare;
  } catch {
    cf = undefined;
  }
  if (!cf) return { skipped: 'the inventory has no cloudflare section' };
  const target = String(vars.edge_address ?? vars.floating_ip ?? '');
  if (!target) return { skipped: 'no edge_address var in the inventory' };
  return { zone: cf.zone, target };
}

/**
 * add-site / add-sites: this version's site images must be in the farm's registry (phase 3 of bootstrap builds them;
 * the site playbooks never build). Checked before anything is written; check mode only says so.
 */
export async function checkSiteImages(run: Run, check: boolean): Promise<void> {
  const m = run.hostsFor('managers')[0];
  const s = imageSettings(m ? m.vars : run.inventory.vars);
  const missing = (await plannedSiteImages(s)).changes;
  if (!missing.length) return;
  if (!check) throw new Error(`${missingImagesMessage(s, missing)}; nothing was written`);
  run.say(`a real run would stop here: ${missingImagesMessage(s, missing)}`);
}

/**
 * The DNS records of a new site (add-site, add-sites) through the inventory's cloudflare section, once the site
 * was created (`ok`); the line to print, or undefined.
 */
export async function siteDns(
  run: Run,
  site: { domain: string; aliases: string[] },
  check: boolean,
  ok: boolean,
): Promise<string | undefined> {
  const at = siteDnsSettings(run.inventory.file, run.inventory.vars);
  if ('skipped' in at) return `DNS: ${at.skipped}: skipped`;
  if (!ok) return undefined;
  const { ensureSiteRecords } = await import('../../lib/cloud/cloudflare.ts');
  const res = await ensureSiteRecords({ zoneName: at.zone, names: siteDomains(site), target: at.target, proxied: true, ttl: 1, check });
  return `DNS: created ${res.created.length}, updated ${res.updated.length}, unchanged ${res.unchanged.length}`;
}

/** The generated WordPress admin password, printed once, outside the masked reporter (add-site, add-sites). */
export function printAdminPassword(i: InstallNote): void {
  // kept only in the site secret store on the managers
  process.stdout.write(
    `\nWordPress admin for ${i.domain}: user ${i.adminUser}, password ${i.adminPassword}\n` +
      "(store it now: it is not shown again; it stays in the managers' site secret store)\n",
  );
}
