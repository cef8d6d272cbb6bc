// Cloudflare's edge for the farm: cache rules (tier 1) and Access applications, from the site records.
//
//   node --import tsx playbooks/edge-rules.ts [cache|access|all] [--check] [-i inventory/production.yml]   (--help)
//
// Per zone (vars.cloudflare_zone, or cloudflare_zones): one set of cache rules in the zone's
// http_request_cache_settings entry point, and self-hosted Access applications in front of each site's wp-admin
// and wp-login.php and the management UIs, with an allow policy for the operators of vars.cloudflare_access.
// Idempotent (a rerun changes nothing); --check lists what would change. Token: CLOUDFLARE_API_TOKEN (needs
// Zone:Read, Cache Rules:Edit and, for Access, Access: Apps and Policies:Edit). Exit codes: 0 ok, 2 an API call
// failed, 4 bad input. What the rules are: roles/cloudflare-edge/rules.ts and docs/cloudflare-edge.md.
import { pathToFileURL } from 'node:url';
import { type CommandSpec, parseForIo } from '../lib/cli.ts';
import { EXIT, InputError } from '../lib/errors.ts';
import { readEnvFile, requireCredential } from '../lib/env.ts';
import { checkVars, loadInventory } from '../lib/inventory.ts';
import { CloudflareEdge, type Changes } from '../lib/cloud/cloudflare-edge.ts';
import { maskSecrets } from '../lib/cloud/retry.ts';
import { SITES_DIR_OPTION, sitesOf } from '../roles/wp-site/playbook-util.ts';
import {
  accessApps,
  APP_NAME_PREFIX,
  CACHE_PHASE,
  cacheRules,
  configuredZones,
  EDGE_VARS,
  edgeSettings,
  namesByZone,
  RULE_REF_PREFIX,
  zoneOf,
} from '../roles/cloudflare-edge/rules.ts';

export interface EdgeIo {
  out: (l: string) => void;
  err: (l: string) => void;
}

const CMD: CommandSpec = {
  name: 'edge-rules.ts',
  summary: `Cloudflare's edge for the farm, per zone, from the site records: cache rules (bypass wp-admin, wp-login and
logged-in/commenter/WooCommerce cookies; static assets cached long) and Access applications in front of wp-admin,
wp-login.php and the management UIs. A rerun changes nothing; --check lists what would change. Token:
CLOUDFLARE_API_TOKEN from the environment or .env.`,
  positionals: { usage: '[cache|access|all]', max: 1 },
  options: [
    { name: 'zone', type: 'string', arg: 'ZONE', defaultHelp: 'vars.cloudflare_zones, else vars.cloudflare_zone', help: 'only this zone' },
    { ...SITES_DIR_OPTION, default: undefined, defaultHelp: 'vars.wp_sites_dir, else inventory/sites' },
    { name: 'api-url', type: 'string', arg: 'URL', help: "the API's base URL (tests)" },
    { name: 'dotenv', type: 'string', arg: 'FILE', defaultHelp: '.env', help: 'credentials file' },
  ],
  common: ['inventory', 'check', 'verbose'],
  epilog: 'Exit codes: 0 ok, 2 an API call failed, 4 bad input.',
};

const MARK: Record<keyof Changes, string> = { created: '+', updated: '~', deleted: '-', unchanged: '=' };

export async function runEdgeRules(argv: string[], io: EdgeIo): Promise<number> {
  const parsed = parseForIo(argv, CMD, io);
  if (typeof parsed === 'number') return parsed;
  const o = parsed.opts as { zone?: string; 'sites-dir'?: string; 'api-url'?: string; dotenv?: string };
  const check = parsed.flags.check;
  const what = parsed.positionals[0] ?? 'all';
  let token = '';
  try {
    if (!['cache', 'access', 'all'].includes(what)) throw new InputError(`unknown command ${JSON.stringify(what)}: cache, access or all`);
    // everything is read and checked before the first request: bad input changes nothing
    const inv = loadInventory(parsed.flags.inventory, o.dotenv ? { envFile: o.dotenv } : {});
    checkVars(inv, EDGE_VARS);
    const settings = edgeSettings(inv.vars, o.zone);
    const sitesDir = o['sites-dir'] ?? (typeof inv.vars['wp_sites_dir'] === 'string' ? inv.vars['wp_sites_dir'] : 'inventory/sites');
    const mgmt = Array.isArray(inv.vars['management_cidrs']) ? inv.vars['management_cidrs'].map(String) : undefined;
    const sites = sitesOf(sitesDir, mgmt);
    // with --zone, names in the inventory's other zones are known (and left alone), not refused
    const known = [...new Set([...settings.zones, ...configuredZones(inv.vars)])];
    const byZone = namesByZone(sites, known);
    const access = what !== 'cache' ? settings.access : undefined;
    if (what === 'access' && !access) throw new InputError('access: the inventory has no vars.cloudflare_access (or it is disabled)');
    const hostsByZone = new Map<string, string[]>();
    for (const m of access?.managementHosts ?? []) {
      const zone = zoneOf(m.host, known);
      if (!zone) {
        if (m.explicit)
          throw new InputError(
            `cloudflare_access.management_hosts: ${m.host} is in none of the Cloudflare zones ${settings.zones.join(', ')}`,
          );
        io.out(`note: ${m.host} is in none of the Cloudflare zones: no Access application for it`);
        continue;
      }
      hostsByZone.set(zone, [...(hostsByZone.get(zone) ?? []), m.host]);
    }
    token = requireCredential('CLOUDFLARE_API_TOKEN', undefined, readEnvFile(o.dotenv));
    const cf = new CloudflareEdge({
      token,
      baseUrl: o['api-url'] ?? process.env['WPFARM_CLOUDFLARE_API'],
      onExchange:
        parsed.flags.verbose > 0
          ? (e) => {
              const again = e.attempt > 1 ? ` (attempt ${e.attempt})` : '';
              io.err(`  ${e.method} ${e.path} -> ${e.status}${again}${e.violations ? ` VIOLATIONS: ${e.violations}` : ''}`);
            }
          : undefined,
    });
    let changed = 0;
    const report = (title: string, c: Changes) => {
      io.out(title);
      for (const k of ['created', 'updated', 'deleted', 'unchanged'] as const) for (const n of c[k]) io.out(`  ${MARK[k]} ${n}`);
      changed += c.created.length + c.updated.length + c.deleted.length;
    };
    for (const zone of settings.zones) {
      const entries = byZone.get(zone) ?? [];
      if (what !== 'access') {
        const rules = cacheRules(
          entries.map((e) => e.name),
          settings.cache,
        );
        const c = await cf.ensurePhaseRules({ zoneName: zone, phase: CACHE_PHASE, refPrefix: RULE_REF_PREFIX, rules, check });
        report(`zone ${zone}: cache rules (${entries.length} site names)`, c);
      }
      if (access) {
        const groupIds = await cf.accessGroupIds(zone, access.groups);
        const apps = accessApps(entries, hostsByZone.get(zone) ?? [], access, groupIds);
        const c = await cf.ensureAccessApps({ zoneName: zone, namePrefix: APP_NAME_PREFIX, apps, check });
        report(`zone ${zone}: Access applications`, c);
      }
    }
    io.out(`${check ? 'would change' : 'changed'}: ${changed}`);
    return EXIT.OK;
  } catch (err) {
    io.err(`error: ${maskSecrets(err instanceof Error ? err.message : String(err), [token])}`);
    return err instanceof InputError ? EXIT.BAD_INPUT : EXIT.FAILED;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runEdgeRules(process.argv.slice(2), { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) }).then(
    (c) => process.exit(c),
  );
}
