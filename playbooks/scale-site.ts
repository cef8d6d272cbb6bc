// Scale a site:  npx tsx playbooks/scale-site.ts --domain example.com --replicas N [--sites-dir DIR]
// Writes `replicas: N` into the site record (comments kept) and reconciles that site: Swarm adds or
// removes nginx and php-fpm tasks (update_config: one at a time, start-first), no request fails.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run } from '../lib/play.ts';
import wpSite from '../roles/wp-site/role.ts';
import { SITES_DIR_OPTION, findSite, inventoryManagementCidrs, readText, sitesOf, writeRecord } from '../roles/wp-site/playbook-util.ts';

const CMD: CommandSpec = {
  name: 'scale-site.ts',
  summary: `Scales a site: writes \`replicas: N\` into its record (comments kept) and reconciles that site; Swarm adds or
removes nginx and php-fpm tasks one at a time (start-first), no request fails.`,
  options: [
    { name: 'domain', type: 'string', arg: 'DOMAIN', help: 'the site, by domain (or --id)' },
    { name: 'id', type: 'string', arg: 'ID', help: 'the site, by id' },
    { name: 'replicas', type: 'integer', min: 1, max: 20, help: 'nginx and php-fpm tasks (required)' },
    SITES_DIR_OPTION,
  ],
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const f = parsed.opts as { domain?: string; id?: string; replicas?: number; 'sites-dir': string };
const replicas = f.replicas ?? 0;
let sitesDir = f['sites-dir'];
// the site id is known only after reading the records: resolve it first (bad input before anything runs)
let id = '';
try {
  if (!f.replicas) throw new InputError('--replicas is required: an integer from 1 to 20');
  const key = f.domain ?? f.id;
  if (!key) throw new InputError('--domain or --id is required');
  id = findSite(sitesOf(sitesDir, inventoryManagementCidrs(parsed.flags)), key).id;
  parsed.flags.extraVars.push(`wp_sites_only=${id}`, `wp_sites_dir=${sitesDir}`);
} catch (e) {
  fail(e);
}
const run = Run.fromParsed(parsed, { name: 'scale-site' });
try {
  const file = path.join(sitesDir, `${id}.yml`);
  if (!existsSync(file)) throw new InputError(`no record file ${file}`);
  const doc = parseDocument(readText(file));
  const before = doc.get('replicas');
  if (before !== replicas) {
    doc.set('replicas', replicas);
    if (run.config.flags.check) {
      run.say(`would set replicas ${String(before ?? 'default')} -> ${replicas} in ${file}`);
      const { mkdtempSync, cpSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const tmp = mkdtempSync(path.join(tmpdir(), 'wpfarm-scale-'));
      cpSync(sitesDir, tmp, { recursive: true });
      writeRecord(path.join(tmp, `${id}.yml`), doc.toString());
      sitesDir = tmp;
      for (const h of run.inventory.hosts.values()) h.vars.wp_sites_dir = tmp;
    } else {
      writeRecord(file, doc.toString());
      run.say(`replicas ${String(before ?? 'default')} -> ${replicas} in ${file}`);
    }
  }
  run.phase(`scale ${id} to ${replicas}`);
  await run.role(wpSite);
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
