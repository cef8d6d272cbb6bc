// The farm's Cloudflare edge, generated from the site records and the inventory: tier 1 cache rules (bypass
// wp-admin, wp-login and the logged-in/commenter/WooCommerce cookies; static assets cached long at the edge)
// and Access applications in front of wp-admin/wp-login and the management UIs. Pure builders: the calls are
// lib/cloud/cloudflare-edge.ts's, the command is playbooks/edge-rules.ts. See docs/cloudflare-edge.md.
//
// The origin keeps refusing wp-admin from outside the management ranges (Traefik's allow list): Access is a
// second gate in front of it, not a replacement.
import { InputError } from '../../lib/errors.ts';
import { int, matching, nonEmpty, nullAsAbsent, z } from '../../lib/schema.ts';
import type { AccessAppSpec, AccessPolicySpec, PhaseRule } from '../../lib/cloud/cloudflare-edge.ts';
import { siteDomains, type SiteRecord } from '../wp-site/site.ts';

/** the rules wpfarm owns in a zone's cache phase start with this ref; its Access applications with this name */
export const RULE_REF_PREFIX = 'wpfarm_';
export const APP_NAME_PREFIX = 'wpfarm ';
export const CACHE_PHASE = 'http_request_cache_settings' as const;

/** the nginx image's static location (files/images/nginx/bin/wpfarm-entrypoint): the same extensions */
export const STATIC_EXTENSIONS = [
  'css',
  'js',
  'png',
  'jpg',
  'jpeg',
  'gif',
  'ico',
  'svg',
  'webp',
  'avif',
  'woff',
  'woff2',
  'ttf',
  'otf',
  'eot',
  'mp4',
  'webm',
] as const;
/** cookies of a visitor whose pages are personal: logged in, password-protected post, commenter, WooCommerce cart/session
 *  (the same list as Varnish's VCL and nginx's page cache) */
export const BYPASS_COOKIES = [
  'wordpress_logged_in_',
  'wordpress_sec_',
  'wp-postpass_',
  'comment_author_',
  'woocommerce_items_in_cart',
  'wp_woocommerce_session_',
] as const;
/** paths never served from the edge cache: the admin area, login, cron, XML-RPC */
export const BYPASS_PATH_PREFIXES = ['/wp-admin/'] as const;
export const BYPASS_PATHS = ['/wp-admin', '/wp-login.php', '/wp-cron.php', '/xmlrpc.php'] as const;
/** Cloudflare's limit on a rule expression (characters): longer host lists are split over several rules */
export const MAX_EXPRESSION = 4096;

const ZONE_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const opt = <T extends z.ZodType>(s: T) => nullAsAbsent(s.optional());
const zoneName = matching(ZONE_RE, 'a domain name like example.com');
const email = matching(/^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/, 'an e-mail address');

/** The inventory variables of the edge (checked with file:line by lib/inventory.ts checkVars). */
export const EDGE_VARS = {
  cloudflare_zone: zoneName,
  /** more zones than cloudflare_zone: a site name goes to the longest zone it is inside */
  cloudflare_zones: z.array(zoneName).min(1, { error: 'at least one zone' }),
  cloudflare_cache: z.strictObject({
    enabled: opt(z.boolean()),
    /** how long the edge keeps a static asset, whatever the origin says (default 30 days) */
    static_edge_ttl: opt(int(60, 31_536_000)),
    /** the browser's TTL for static assets; absent or 0: the origin's (nginx: expires 30d) */
    static_browser_ttl: opt(int(0, 31_536_000)),
    /** more cookie name prefixes that bypass the cache (a plugin's session cookie) */
    bypass_cookies: opt(z.array(matching(/^[A-Za-z0-9_-]{2,64}$/, 'a cookie name prefix (letters, digits, _ and -)'))),
    /** more path prefixes that bypass the cache */
    bypass_paths: opt(z.array(matching(/^\/[A-Za-z0-9._~/-]{0,200}$/, 'a path starting with / (letters, digits, . _ ~ / -)'))),
  }),
  cloudflare_access: z
    .strictObject({
      enabled: opt(z.boolean()),
      /** the operators: who the allow policy lets in */
      emails: opt(z.array(email)),
      email_domains: opt(z.array(zoneName)),
      /** Access groups by name (made in Cloudflare Zero Trust, in the zone) */
      groups: opt(z.array(nonEmpty)),
      session_duration: opt(matching(/^[1-9][0-9]{0,3}(m|h)$/, 'a duration like 30m or 24h')),
      /** management UIs behind Access; default: traefik_dashboard_host and grafana_host when they are set */
      management_hosts: opt(z.array(matching(ZONE_RE, 'a host name'))),
      /** put each site's wp-admin and wp-login.php behind Access (default true) */
      sites: opt(z.boolean()),
    })
    .refine((a) => a.enabled === false || (a.emails?.length ?? 0) + (a.email_domains?.length ?? 0) + (a.groups?.length ?? 0) > 0, {
      error: 'the allow policy needs operators: at least one of emails, email_domains, groups',
    }),
};

export interface CacheSettings {
  enabled: boolean;
  staticEdgeTtl: number;
  staticBrowserTtl: number;
  bypassCookies: string[];
  bypassPaths: string[];
}

export interface AccessSettings {
  enabled: boolean;
  emails: string[];
  emailDomains: string[];
  groups: string[];
  sessionDuration: string;
  /** explicit: each must be inside a zone; default ones outside every zone are skipped with a note */
  managementHosts: { host: string; explicit: boolean }[];
  sites: boolean;
}

export interface EdgeSettings {
  zones: string[];
  cache: CacheSettings;
  access?: AccessSettings;
}

/** The settings from inventory vars already checked by EDGE_VARS; `zoneOverride` is --zone. */
export function edgeSettings(vars: Record<string, unknown>, zoneOverride?: string): EdgeSettings {
  // null is absent, as everywhere in the inventory
  const picked = Object.fromEntries(Object.keys(EDGE_VARS).map((k) => [k, vars[k] ?? undefined]));
  const v = z.object(EDGE_VARS).partial().parse(picked);
  const zones = zoneOverride ? [zoneOverride] : configuredZones(vars);
  if (zoneOverride && !ZONE_RE.test(zoneOverride)) throw new InputError(`--zone: not a domain name: ${JSON.stringify(zoneOverride)}`);
  if (zones.length === 0) throw new InputError('no Cloudflare zone: set vars.cloudflare_zone (or cloudflare_zones) or give --zone');
  const c = v.cloudflare_cache ?? {};
  const cache: CacheSettings = {
    enabled: c.enabled ?? true,
    staticEdgeTtl: c.static_edge_ttl ?? 2_592_000,
    staticBrowserTtl: c.static_browser_ttl ?? 0,
    bypassCookies: [...BYPASS_COOKIES, ...(c.bypass_cookies ?? []).filter((x) => !(BYPASS_COOKIES as readonly string[]).includes(x))],
    bypassPaths: c.bypass_paths ?? [],
  };
  const a = v.cloudflare_access;
  let access: AccessSettings | undefined;
  if (a && a.enabled !== false) {
    const defaults = [vars['traefik_dashboard_host'], vars['grafana_host']].filter((h): h is string => typeof h === 'string' && h !== '');
    access = {
      enabled: true,
      emails: a.emails ?? [],
      emailDomains: a.email_domains ?? [],
      groups: a.groups ?? [],
      sessionDuration: a.session_duration ?? '24h',
      managementHosts: a.management_hosts
        ? a.management_hosts.map((host) => ({ host, explicit: true }))
        : defaults.map((host) => ({ host, explicit: false })),
      sites: a.sites ?? true,
    };
  }
  return { zones: [...new Set(zones)], cache, access };
}

/** The zones of the inventory: cloudflare_zones, else cloudflare_zone (vars checked by EDGE_VARS). */
export function configuredZones(vars: Record<string, unknown>): string[] {
  const many = vars['cloudflare_zones'];
  if (Array.isArray(many)) return many.map(String);
  return typeof vars['cloudflare_zone'] === 'string' ? [vars['cloudflare_zone']] : [];
}

/** The zone a name belongs to: the longest zone it equals or ends with; undefined when none. */
export function zoneOf(name: string, zones: readonly string[]): string | undefined {
  return zones.filter((z) => name === z || name.endsWith(`.${z}`)).sort((a, b) => b.length - a.length)[0];
}

/** Every site name by zone; a name outside every zone is bad input naming the record and field. */
export function namesByZone(sites: readonly SiteRecord[], zones: readonly string[]): Map<string, { site: SiteRecord; name: string }[]> {
  const out = new Map<string, { site: SiteRecord; name: string }[]>(zones.map((z) => [z, []]));
  const problems: string[] = [];
  for (const site of sites) {
    siteDomains(site).forEach((name, i) => {
      const zone = zoneOf(name, zones);
      const field = i === 0 ? 'domain' : `aliases[${i - 1}]`;
      if (!zone) problems.push(`${site.source ?? site.id}: ${field}: ${name} is in none of the Cloudflare zones ${zones.join(', ')}`);
      else out.get(zone)!.push({ site, name });
    });
  }
  if (problems.length) throw new InputError(problems.join('\n'));
  return out;
}

const quoted = (xs: readonly string[]) => xs.map((x) => JSON.stringify(x)).join(' ');

/** Host lists split so that `make(hosts)` stays within MAX_EXPRESSION. */
function chunked(hosts: readonly string[], make: (hosts: readonly string[]) => string): string[] {
  const out: string[][] = [];
  for (const h of hosts) {
    const last = out[out.length - 1];
    if (last && make([...last, h]).length <= MAX_EXPRESSION) last.push(h);
    else {
      if (make([h]).length > MAX_EXPRESSION)
        throw new InputError(`cloudflare_cache: a rule for ${h} alone is longer than ${MAX_EXPRESSION} characters`);
      out.push([h]);
    }
  }
  return out.map(make);
}

export function staticExpression(hosts: readonly string[]): string {
  return `(http.host in {${quoted(hosts)}} and http.request.uri.path.extension in {${quoted(STATIC_EXTENSIONS)}})`;
}

export function bypassExpression(hosts: readonly string[], s: Pick<CacheSettings, 'bypassCookies' | 'bypassPaths'>): string {
  const paths = [
    ...BYPASS_PATH_PREFIXES.map((p) => `starts_with(http.request.uri.path, ${JSON.stringify(p)})`),
    `http.request.uri.path in {${quoted(BYPASS_PATHS)}}`,
    ...s.bypassPaths.map((p) => `starts_with(http.request.uri.path, ${JSON.stringify(p)})`),
    // previews of drafts
    'http.request.uri.query contains "preview=true"',
  ];
  const cookies = s.bypassCookies.map((c) => `http.cookie contains ${JSON.stringify(c)}`);
  return `(http.host in {${quoted(hosts)}} and (${[...paths, ...cookies].join(' or ')}))`;
}

/**
 * The cache rules of one zone, in order: static assets first (eligible for cache, edge TTL overridden), the bypass
 * last, so that it wins over any earlier rule (a later cache rule overrides an earlier one): nothing under
 * /wp-admin or for a logged-in visitor is ever served from the edge, a static file included.
 */
export function cacheRules(hosts: readonly string[], s: CacheSettings): PhaseRule[] {
  if (!s.enabled || hosts.length === 0) return [];
  const sortedHosts = [...new Set(hosts)].sort();
  const ref = (base: string, i: number, n: number) => `${RULE_REF_PREFIX}${base}${n > 1 ? `_${i + 1}` : ''}`;
  const statics = chunked(sortedHosts, staticExpression);
  const bypass = chunked(sortedHosts, (h) => bypassExpression(h, s));
  return [
    ...statics.map(
      (expression, i): PhaseRule => ({
        ref: ref('static_assets', i, statics.length),
        description: 'wpfarm: static assets of the sites, cached long at the edge',
        expression,
        action: 'set_cache_settings',
        action_parameters: {
          cache: true,
          edge_ttl: { mode: 'override_origin', default: s.staticEdgeTtl },
          browser_ttl: s.staticBrowserTtl > 0 ? { mode: 'override_origin', default: s.staticBrowserTtl } : { mode: 'respect_origin' },
        },
        enabled: true,
      }),
    ),
    ...bypass.map(
      (expression, i): PhaseRule => ({
        ref: ref('bypass_admin_logged_in', i, bypass.length),
        description: 'wpfarm: never cache wp-admin, wp-login, previews, logged-in/commenter/WooCommerce visitors',
        expression,
        action: 'set_cache_settings',
        action_parameters: { cache: false },
        enabled: true,
      }),
    ),
  ];
}

/** The allow policy of the operators: emails, e-mail domains, Access groups (ids by name, resolved by the caller). */
export function operatorsPolicy(a: AccessSettings, groupIds: ReadonlyMap<string, string>): AccessPolicySpec {
  const include: Record<string, unknown>[] = [
    ...a.emails.map((email) => ({ email: { email } })),
    ...a.emailDomains.map((domain) => ({ email_domain: { domain } })),
    ...a.groups.map((g) => {
      const id = groupIds.get(g);
      if (!id) throw new InputError(`cloudflare_access.groups: ${g}: no id (not resolved)`);
      return { group: { id } };
    }),
  ];
  return { name: 'wpfarm operators', decision: 'allow', include };
}

/**
 * The Access applications of one zone: per site, its wp-admin and wp-login.php on every name (allow: the operators)
 * and, more specific so that it wins, /wp-admin/admin-ajax.php bypassed (the front end calls it for every visitor;
 * the origin leaves it public too); per management host, the whole host (allow: the operators).
 */
export function accessApps(
  entries: readonly { site: SiteRecord; name: string }[],
  managementHosts: readonly string[],
  a: AccessSettings,
  groupIds: ReadonlyMap<string, string>,
): AccessAppSpec[] {
  const allow = operatorsPolicy(a, groupIds);
  const apps: AccessAppSpec[] = [];
  if (a.sites) {
    const bySite = new Map<string, string[]>();
    for (const e of entries) bySite.set(e.site.id, [...(bySite.get(e.site.id) ?? []), e.name]);
    for (const [id, names] of [...bySite].sort(([x], [y]) => x.localeCompare(y))) {
      apps.push({
        name: `${APP_NAME_PREFIX}${id} wp-admin`,
        destinations: names.flatMap((n) => [`${n}/wp-admin`, `${n}/wp-login.php`]),
        sessionDuration: a.sessionDuration,
        policies: [allow],
      });
      apps.push({
        name: `${APP_NAME_PREFIX}${id} admin-ajax`,
        destinations: names.map((n) => `${n}/wp-admin/admin-ajax.php`),
        sessionDuration: a.sessionDuration,
        policies: [{ name: 'wpfarm public admin-ajax', decision: 'bypass', include: [{ everyone: {} }] }],
      });
    }
  }
  for (const host of [...new Set(managementHosts)].sort()) {
    apps.push({ name: `${APP_NAME_PREFIX}mgmt ${host}`, destinations: [host], sessionDuration: a.sessionDuration, policies: [allow] });
  }
  return apps;
}
