// add-sites' input: a YAML list of new sites, checked as a whole before anything is created (bad input: exit 4,
// every problem named file:line:col field). Each entry takes add-site's options:
//
//   - domain: blog.example.com          # required
//     aliases: [www.blog.example.com]
//     title: The blog                   # default: the domain
//     admin_user: wpadmin               # default wpadmin
//     admin_email: me@example.com       # default admin@DOMAIN
//     replicas: 2                       # default: the site record's
//     id: blog                          # default: from the domain
//
// An entry whose record exists with the same domain is kept (a rerun reconciles it: nothing new is created);
// the same id or domain twice in the file, or a domain another record already serves, is bad input.
import path from 'node:path';
import { existsSync } from 'node:fs';
import { InputError } from '../../lib/errors.ts';
import { checkedBy, InputErrors, int, nullAsAbsent, problemAt, validate, z, type Problem } from '../../lib/schema.ts';
import { parseYamlFile, type YamlSource } from '../../lib/yamlsrc.ts';
import { checkAdminEmail, checkAdminUser, checkTitle, sitesOf, siteIdFor, validateNewSite } from './playbook-util.ts';
import { checkDomain, checkSiteId } from './site.ts';

const opt = <T extends z.ZodType>(s: T) => nullAsAbsent(s.optional());
const str = (check: (v: string) => string | null) =>
  z.string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string') }).superRefine(checkedBy(check));

const Entry = z.strictObject({
  domain: str(checkDomain),
  aliases: opt(z.array(str(checkDomain))),
  title: opt(str(checkTitle)),
  admin_user: opt(str(checkAdminUser)),
  admin_email: opt(str(checkAdminEmail)),
  replicas: opt(int(1, 20)),
  id: opt(str((v) => checkSiteId(v))),
});
const SitesFile = z.array(Entry, { error: 'must be a list of sites (- domain: ...)' }).min(1, { error: 'lists no site' });

/** One site of the file, checked. */
export interface SiteEntry {
  id: string;
  domain: string;
  aliases: string[];
  replicas?: number;
  title: string;
  adminUser: string;
  adminEmail: string;
  /** its line in the file */
  line: number;
  /** the record to write (undefined: the record exists for this domain, the run reconciles it) */
  record?: string;
}

/** Read and check the whole file against the farm's records in `sitesDir`; throws InputErrors naming every problem. */
export function readSitesFile(file: string, sitesDir: string, managementCidrs?: string[]): SiteEntry[] {
  const y = parseYamlFile(file);
  const entries = validate(SitesFile, y.toPlain(), y, { rootName: '(document)' });
  const problems: Problem[] = [];
  const out: SiteEntry[] = [];
  const seen = new Map<string, number>();
  const records = sitesOf(sitesDir, managementCidrs);
  entries.forEach((e, i) => {
    const at = (field: string, message: string) => problems.push(problemAt(y, [i, field], message));
    let id: string;
    try {
      id = e.id ?? siteIdFor(e.domain);
    } catch (err) {
      at('domain', (err as Error).message);
      return;
    }
    // the same id or domain twice in this file (a derived id is named at the domain)
    const names: [(string | number)[], string][] = [
      [[i, e.id ? 'id' : 'domain'], `id ${id}`],
      [[i, 'domain'], `domain ${e.domain}`],
      ...(e.aliases ?? []).map((a, j): [(string | number)[], string] => [[i, 'aliases', j], `domain ${a}`]),
    ];
    for (const [where, name] of names) {
      const first = seen.get(name);
      if (first !== undefined) problems.push(problemAt(y, where, `${name} is already given by the site at line ${first}`));
      else seen.set(name, lineOf(y, i));
    }
    const entry: SiteEntry = {
      id,
      domain: e.domain,
      aliases: e.aliases ?? [],
      replicas: e.replicas,
      title: e.title ?? e.domain,
      adminUser: e.admin_user ?? 'wpadmin',
      adminEmail: e.admin_email ?? `admin@${e.domain}`,
      line: lineOf(y, i),
    };
    const existing = records.find((r) => r.id === id);
    if (existing && existsSync(path.join(sitesDir, `${id}.yml`))) {
      if (existing.domain !== e.domain)
        at(e.id ? 'id' : 'domain', `site id ${id} is already used by ${existing.domain} (${path.join(sitesDir, `${id}.yml`)}); give id:`);
      out.push(entry);
      return;
    }
    try {
      entry.record = validateNewSite(sitesDir, { id, domain: e.domain, aliases: entry.aliases, replicas: e.replicas }, managementCidrs);
    } catch (err) {
      // a domain another record serves (the record's own message, with its place): named at this entry's domain
      const msg = err instanceof InputErrors ? err.messages.join('; ') : (err as Error).message;
      at('domain', msg);
    }
    out.push(entry);
  });
  if (problems.length) throw new InputErrors(problems);
  if (!out.length) throw new InputError(`${y.file}: lists no site`);
  return out;
}

function lineOf(y: YamlSource, i: number): number {
  return y.positionOf([i]).line;
}
