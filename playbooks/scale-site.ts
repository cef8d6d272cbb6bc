// Scale a site:  npx tsx playbooks/scale-site.ts --domain example.com --replicas N [--sites-dir DIR]
// Writes `replicas: N` into the site record (comments kept) and reconciles that site: Swarm adds or
// removes nginx and php-fpm tasks (update_config: one at a time, start-first), no request fails.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { fail } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run } from '../lib/play.ts';
import wpSite from '../roles/wp-site/role.ts';
import { findSite, inventoryManagementCidrs, ownFlags, readText, sitesOf, writeRecord, type FlagSpec } from '../roles/wp-site/playbook-util.ts';

const USAGE = 'Usage: npx tsx playbooks/scale-site.ts --domain DOMAIN|--id ID --replicas N [--sites-dir DIR] [common options]';
const SPEC: FlagSpec = { domain: { type: 'string' }, id: { type: 'string' }, replicas: { type: 'string' }, 'sites-dir': { type: 'string' } };
const argv = process.argv.slice(2);
let extra: string[] = [];
let f: ReturnType<typeof ownFlags> = {};
let replicas = 0;
try {
  f = ownFlags(argv, SPEC);
  if (!argv.includes('-h') && !argv.includes('--help')) {
    replicas = Number(f.replicas);
    if (typeof f.replicas !== 'string' || !Number.isInteger(replicas) || replicas < 1 || replicas > 20) throw new InputError('--replicas must be an integer from 1 to 20');
    if (typeof f.domain !== 'string' && typeof f.id !== 'string') throw new InputError('--domain or --id is required');
  }
} catch (e) {
  fail(e);
}
const key = String(f.domain ?? f.id ?? '');
// the site id is known only after reading the records: resolve it first (bad input before anything runs)
let id = '';
let sitesDir = typeof f['sites-dir'] === 'string' ? f['sites-dir'] : 'inventory/sites';
try {
  if (key) id = findSite(sitesOf(sitesDir, inventoryManagementCidrs(argv, SPEC)), key).id;
  extra = id ? ['-e', `wp_sites_only=${id}`, '-e', `wp_sites_dir=${sitesDir}`] : [];
} catch (e) {
  fail(e);
}
const run = Run.fromArgv([...argv, ...extra], { usage: USAGE, name: 'scale-site', options: SPEC });
try {
  const file = path.join(sitesDir, `${id}.yml`);
  if (!existsSync(file)) throw new InputError(`no record file ${file}`);
  const doc = parseDocument(readText(file));
  const before = doc.get('replicas');
  if (before !== replicas) {
    doc.set('replicas', replicas);
    if (run.config.flags.check) {
      run.reporter.say(`would set replicas ${String(before ?? 'default')} -> ${replicas} in ${file}`);
      const { mkdtempSync, cpSync } = await import('node:fs');
      const { tmpdir } = await import('node:os');
      const tmp = mkdtempSync(path.join(tmpdir(), 'wpfarm-scale-'));
      cpSync(sitesDir, tmp, { recursive: true });
      writeRecord(path.join(tmp, `${id}.yml`), doc.toString());
      sitesDir = tmp;
      for (const h of run.inventory.hosts.values()) h.vars.wp_sites_dir = tmp;
    } else {
      writeRecord(file, doc.toString());
      run.reporter.say(`replicas ${String(before ?? 'default')} -> ${replicas} in ${file}`);
    }
  }
  run.phase(`scale ${id} to ${replicas}`);
  await run.role(wpSite);
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
