// The farm's Cloudflare edge builders (roles/cloudflare-edge/rules.ts) and the generic comparison of
// lib/cloud/cloudflare-edge.ts: pure code, no requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  accessApps,
  BYPASS_COOKIES,
  bypassExpression,
  cacheRules,
  edgeSettings,
  MAX_EXPRESSION,
  namesByZone,
  staticExpression,
  zoneOf,
  type AccessSettings,
} from '../../roles/cloudflare-edge/rules.ts';
import { appBody, canonical } from '../../lib/cloud/cloudflare-edge.ts';
import { InputError } from '../../lib/errors.ts';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';

const site = (id: string, domain: string, aliases: string[] = []) =>
  parseSiteRecord(`inventory/sites/${id}.yml`, `id: ${id}\ndomain: ${domain}\naliases: [${aliases.join(', ')}]\n`, {
    management_cidrs: ['203.0.113.0/24'],
  });

test('edgeSettings: defaults (30-day edge TTL, browser TTL from the origin, the WordPress cookies), no Access without its section', () => {
  const s = edgeSettings({ cloudflare_zone: 'example.com' });
  assert.deepEqual(s.zones, ['example.com']);
  assert.equal(s.cache.enabled, true);
  assert.equal(s.cache.staticEdgeTtl, 2_592_000);
  assert.equal(s.cache.staticBrowserTtl, 0);
  assert.deepEqual(s.cache.bypassCookies, [...BYPASS_COOKIES]);
  assert.equal(s.access, undefined);
  assert.deepEqual(edgeSettings({ cloudflare_zone: 'example.com' }, 'example.org').zones, ['example.org'], '--zone wins');
  assert.throws(
    () => edgeSettings({}),
    (e: unknown) => e instanceof InputError && /no Cloudflare zone/.test(e.message),
  );
  assert.throws(() => edgeSettings({ cloudflare_zone: 'example.com' }, 'not a zone'), /--zone: not a domain name/);
});

test('edgeSettings: Access operators, default management hosts from the Traefik and Grafana vars, extra cookies once', () => {
  const s = edgeSettings({
    cloudflare_zones: ['example.com', 'example.org'],
    traefik_dashboard_host: 'traefik.example.com',
    grafana_host: 'grafana.example.com',
    cloudflare_cache: { bypass_cookies: ['edd_items_in_cart', 'wordpress_logged_in_'], static_browser_ttl: 3600 },
    cloudflare_access: { emails: ['ops@example.com'], groups: ['Operators'], session_duration: '8h' },
  });
  assert.deepEqual(s.cache.bypassCookies, [...BYPASS_COOKIES, 'edd_items_in_cart']);
  assert.deepEqual(s.access?.managementHosts, [
    { host: 'traefik.example.com', explicit: false },
    { host: 'grafana.example.com', explicit: false },
  ]);
  assert.equal(s.access?.sessionDuration, '8h');
  const explicit = edgeSettings({
    cloudflare_zone: 'example.com',
    cloudflare_access: { emails: ['a@example.com'], management_hosts: ['p.example.com'] },
  });
  assert.deepEqual(explicit.access?.managementHosts, [{ host: 'p.example.com', explicit: true }]);
  assert.equal(edgeSettings({ cloudflare_zone: 'example.com', cloudflare_access: { enabled: false } }).access, undefined);
  assert.throws(() => edgeSettings({ cloudflare_zone: 'example.com', cloudflare_access: { session_duration: '8h' } }), /needs operators/);
});

test('zoneOf / namesByZone: the longest zone wins; a name in no zone names its record and field', () => {
  assert.equal(zoneOf('a.b.example.com', ['example.com', 'b.example.com']), 'b.example.com');
  assert.equal(zoneOf('example.com', ['example.com']), 'example.com');
  assert.equal(zoneOf('badexample.com', ['example.com']), undefined);
  const sites = [site('blog', 'blog.example.com', ['www.blog.example.com']), site('shop', 'shop.example.org')];
  const m = namesByZone(sites, ['example.com', 'example.org']);
  assert.deepEqual(
    m.get('example.com')!.map((e) => e.name),
    ['blog.example.com', 'www.blog.example.com'],
  );
  assert.deepEqual(
    m.get('example.org')!.map((e) => e.name),
    ['shop.example.org'],
  );
  assert.throws(
    () => namesByZone([site('xx', 'x.example.com', ['x.example.net'])], ['example.com']),
    (e: unknown) =>
      e instanceof InputError &&
      /inventory\/sites\/xx\.yml: aliases\[0\]: x\.example\.net is in none of the Cloudflare zones example\.com/.test(e.message),
  );
});

test('cacheRules: static assets first with the edge TTL, the bypass last with cache off; sorted hosts, stable refs', () => {
  const s = edgeSettings({ cloudflare_zone: 'example.com', cloudflare_cache: { static_edge_ttl: 86400, bypass_paths: ['/cart/'] } }).cache;
  const rules = cacheRules(['www.b.example.com', 'a.example.com', 'a.example.com'], s);
  assert.deepEqual(
    rules.map((r) => r.ref),
    ['wpfarm_static_assets', 'wpfarm_bypass_admin_logged_in'],
  );
  const [st, by] = rules;
  assert.equal(st!.action, 'set_cache_settings');
  assert.deepEqual(st!.action_parameters, {
    cache: true,
    edge_ttl: { mode: 'override_origin', default: 86400 },
    browser_ttl: { mode: 'respect_origin' },
  });
  assert.equal(
    st!.expression,
    '(http.host in {"a.example.com" "www.b.example.com"} and http.request.uri.path.extension in ' +
      '{"css" "js" "png" "jpg" "jpeg" "gif" "ico" "svg" "webp" "avif" "woff" "woff2" "ttf" "otf" "eot" "mp4" "webm"})',
  );
  assert.deepEqual(by!.action_parameters, { cache: false });
  assert.equal(
    by!.expression,
    '(http.host in {"a.example.com" "www.b.example.com"} and (starts_with(http.request.uri.path, "/wp-admin/") or ' +
      'http.request.uri.path in {"/wp-admin" "/wp-login.php" "/wp-cron.php" "/xmlrpc.php"} or ' +
      'starts_with(http.request.uri.path, "/cart/") or http.request.uri.query contains "preview=true" or ' +
      'http.cookie contains "wordpress_logged_in_" or http.cookie contains "wordpress_sec_" or ' +
      'http.cookie contains "wp-postpass_" or http.cookie contains "comment_author_" or ' +
      'http.cookie contains "woocommerce_items_in_cart" or http.cookie contains "wp_woocommerce_session_"))',
  );
  const browser = cacheRules(['a.example.com'], { ...s, staticBrowserTtl: 600 })[0]!;
  assert.deepEqual(browser.action_parameters?.['browser_ttl'], { mode: 'override_origin', default: 600 });
  assert.deepEqual(cacheRules([], s), [], 'no site in the zone: no rule (ours are removed)');
  assert.deepEqual(cacheRules(['a.example.com'], { ...s, enabled: false }), []);
});

test('cacheRules: host lists longer than a rule expression may be are split into numbered rules', () => {
  const hosts = Array.from({ length: 300 }, (_, i) => `site-number-${String(i).padStart(3, '0')}.example.com`);
  const rules = cacheRules(hosts, edgeSettings({ cloudflare_zone: 'example.com' }).cache);
  for (const r of rules) assert.ok(r.expression.length <= MAX_EXPRESSION, `${r.ref}: ${r.expression.length}`);
  const statics = rules.filter((r) => r.ref.startsWith('wpfarm_static_assets_'));
  const bypass = rules.filter((r) => r.ref.startsWith('wpfarm_bypass_admin_logged_in_'));
  assert.ok(statics.length >= 2 && bypass.length >= 2);
  assert.equal(statics[0]!.ref, 'wpfarm_static_assets_1');
  const covered = (rs: typeof rules) =>
    rs.flatMap((r) => [...r.expression.matchAll(/"(site-number-\d+\.example\.com)"/g)].map((m) => m[1]));
  assert.deepEqual(covered(statics), hosts, 'every host once, in order');
  assert.deepEqual(covered(bypass), hosts);
  const refs = rules.map((r) => r.ref);
  const lastStatic = refs.length - 1 - [...refs].reverse().findIndex((r) => r.startsWith('wpfarm_static'));
  assert.ok(refs.findIndex((r) => r.startsWith('wpfarm_bypass')) > lastStatic, 'bypass last');
});

test('expressions quote what they embed (no injection through a site name)', () => {
  assert.equal(staticExpression(['a.example.com']).split('"a.example.com"').length, 2);
  const e = bypassExpression(['a.example.com'], { bypassCookies: ['x"y'], bypassPaths: [] });
  assert.ok(e.includes('http.cookie contains "x\\"y"'));
});

test('accessApps: per site wp-admin + wp-login.php (operators) and a public admin-ajax; per management host; group ids', () => {
  const a: AccessSettings = {
    enabled: true,
    emails: ['ops@example.com'],
    emailDomains: ['example.net'],
    groups: ['Operators'],
    sessionDuration: '24h',
    managementHosts: [],
    sites: true,
  };
  const blog = site('blog', 'blog.example.com', ['www.blog.example.com']);
  const entries = ['blog.example.com', 'www.blog.example.com'].map((name) => ({ site: blog, name }));
  const apps = accessApps(entries, ['traefik.example.com'], a, new Map([['Operators', 'g-1']]));
  assert.deepEqual(
    apps.map((x) => x.name),
    ['wpfarm blog wp-admin', 'wpfarm blog admin-ajax', 'wpfarm mgmt traefik.example.com'],
  );
  assert.deepEqual(apps[0]!.destinations, [
    'blog.example.com/wp-admin',
    'blog.example.com/wp-login.php',
    'www.blog.example.com/wp-admin',
    'www.blog.example.com/wp-login.php',
  ]);
  assert.deepEqual(apps[0]!.policies, [
    {
      name: 'wpfarm operators',
      decision: 'allow',
      include: [{ email: { email: 'ops@example.com' } }, { email_domain: { domain: 'example.net' } }, { group: { id: 'g-1' } }],
    },
  ]);
  assert.deepEqual(apps[1]!.destinations, ['blog.example.com/wp-admin/admin-ajax.php', 'www.blog.example.com/wp-admin/admin-ajax.php']);
  assert.deepEqual(
    apps[1]!.policies.map((p) => [p.decision, p.include]),
    [['bypass', [{ everyone: {} }]]],
  );
  assert.deepEqual(apps[2]!.destinations, ['traefik.example.com']);
  assert.deepEqual(accessApps(entries, [], { ...a, sites: false }, new Map([['Operators', 'g-1']])), []);
  assert.throws(() => accessApps(entries, [], a, new Map()), /Operators: no id/);
});

test('appBody / canonical: inline policies in precedence order; key order and absent fields do not count as a change', () => {
  const b = appBody({
    name: 'wpfarm x',
    destinations: ['x.example.com/wp-admin'],
    sessionDuration: '24h',
    policies: [
      { name: 'p1', decision: 'allow', include: [{ email: { email: 'a@example.com' } }] },
      { name: 'p2', decision: 'bypass', include: [{ everyone: {} }] },
    ],
  });
  assert.equal(b['type'], 'self_hosted');
  assert.equal(b['domain'], 'x.example.com/wp-admin');
  assert.deepEqual(b['destinations'], [{ type: 'public', uri: 'x.example.com/wp-admin' }]);
  assert.deepEqual(
    (b['policies'] as { precedence: number }[]).map((p) => p.precedence),
    [1, 2],
  );
  assert.equal(canonical({ a: 1, b: { d: 2, c: undefined } }), canonical({ b: { d: 2 }, a: 1 }));
  assert.notEqual(canonical([1, 2]), canonical([2, 1]));
});
