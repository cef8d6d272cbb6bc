// Per-site stack: rendered YAML valid against Docker's own schemas, wiring per the architecture,
// secrets by content-hashed name only, determinism, and the cheap differ.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { Ajv, type AnySchemaObject } from 'ajv';
import { parse } from 'yaml';
import { labelsToDynamic } from '../../roles/traefik/labels.ts';
import {
  dbEndpoint,
  farmSettings,
  healthSettings,
  wpSiteSettings,
  type ImageRefs,
  type WpSiteSettings,
} from '../../roles/wp-site/reconcile.ts';
import { InputError } from '../../lib/errors.ts';
import { parseSiteRecord, type SiteRecord } from '../../roles/wp-site/site.ts';
import {
  renderSiteStack,
  diffStacks,
  diffFarm,
  deployedStacks,
  parseServiceLs,
  updatedStateFile,
  secretHash,
  secretName,
  NODE_DB_HOST,
  type FarmStackSettings,
  type RenderedStack,
} from '../../roles/wp-site/stack.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const shared = process.env.WPFARM_SHARED ?? path.resolve(repoRoot, '../shared');
const schemasDir = path.join(shared, 'schemas/docker');

// Go durations as the docker CLI accepts them ("10s", "1m30s", "500ms").
const GO_DURATION = /^[-+]?([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$/;

function stripDraft04Ids(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(stripDraft04Ids);
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === 'id' && typeof v === 'string') continue; // draft-04 ids (the file name and plain fragments)
      if (k === '$schema') continue;
      out[k] = stripDraft04Ids(v);
    }
    return out;
  }
  return node;
}

function validators() {
  // docker/cli's schema (what `docker stack deploy` checks), draft-04: its `id`s are plain
  // fragment names, so dropping them and validating with Ajv's draft-07 engine keeps the semantics
  // (the schema uses no draft-04-only keywords such as boolean exclusiveMaximum).
  const v313raw = readFileSync(path.join(schemasDir, 'config_schema_v3.13.json'), 'utf8');
  assert.doesNotMatch(v313raw, /exclusiveM(ax|in)imum"\s*:\s*(true|false)/);
  const v313 = stripDraft04Ids(JSON.parse(v313raw)) as AnySchemaObject;
  const ajv1 = new Ajv({ allErrors: true, strict: false });
  ajv1.addFormat('duration', GO_DURATION);
  ajv1.addFormat('ports', /^[0-9:.\-/a-z]+$/);
  ajv1.addFormat('expose', /^[0-9\-/a-z]+$/);
  const compose = JSON.parse(readFileSync(path.join(schemasDir, 'compose-spec.json'), 'utf8')) as AnySchemaObject;
  delete compose.$schema; // written as https://json-schema.org/draft-07/schema, Ajv's default draft
  const ajv2 = new Ajv({ allErrors: true, strict: false });
  return { v313: ajv1.compile(v313), compose: ajv2.compile(compose) };
}

const H = (s: string) => secretHash(s);

function farm(over: Partial<FarmStackSettings> = {}, ids = ['blog1', 'shop']): FarmStackSettings {
  return {
    registry: '10.10.0.2:5000',
    images: {
      wordpressFpm: '10.10.0.2:5000/wpfarm/wordpress-fpm:0123456789abcdef',
      nginx: '10.10.0.2:5000/wpfarm/nginx:fedcba9876543210',
      redis: '10.10.0.2:5000/wpfarm/redis:7.0',
      varnish: '10.10.0.2:5000/wpfarm/varnish:aaaabbbbccccdddd',
    },
    glusterSitesPath: '/mnt/gluster/sites/',
    endpointMode: 'dnsrr',
    db: { host: 'galera', port: 3306 },
    secretHashes: Object.fromEntries(ids.map((id) => [id, { db_password: H(`pw-${id}`), wp_keys: H(`keys-${id}`) }])),
    traefikSubnet: '10.0.1.0/24',
    ...over,
  };
}

const INV = { management_cidrs: ['203.0.113.0/24'] };
// these records route straight to nginx (the Varnish tier is covered by test/unit/varnish.test.ts)
const blog1 = parseSiteRecord(
  'inventory/sites/blog1.yml',
  'id: blog1\ndomain: blog.example.com\naliases: [www.blog.example.com]\nsticky: true\ncache: { varnish: false }\n',
  INV,
);
const shop = parseSiteRecord(
  'inventory/sites/shop.yml',
  'id: shop\ndomain: shop.example.org\nreplicas: 3\nlimits: { php: { cpus: 2, memory: 1G } }\nxmlrpc: true\ncache_ttl: 120\n' +
    'cache: { varnish: false }\n',
  INV,
);

// biome-ignore lint/suspicious/noExplicitAny: eslint-disable-line @typescript-eslint/no-explicit-any -- parsed YAML, shape checked by the schema tests
type Svc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed YAML, shape checked by the schema tests
function doc(r: RenderedStack): { services: Record<string, Svc>; networks: Record<string, Svc>; secrets: Record<string, Svc> } {
  return parse(r.yaml, { version: '1.1' });
}

test('rendered stacks validate against docker/cli config_schema_v3.13 and the compose spec', () => {
  const { v313, compose } = validators();
  for (const site of [blog1, shop]) {
    for (const f of [
      farm(),
      farm({ endpointMode: 'vip', overlayEncrypted: true, placement: ['node.labels.wp == true'] }),
      farm({ placement: ['node.labels.workers == true'], spreadOver: ['node.labels.region'] }),
    ]) {
      const r = renderSiteStack(site, f);
      const d = parse(r.yaml, { version: '1.1' });
      assert.ok(v313(d), `v3.13 ${site.id}: ${JSON.stringify(v313.errors, null, 1)}`);
      assert.ok(compose(d), `compose-spec ${site.id}: ${JSON.stringify(compose.errors, null, 1)}`);
    }
  }
  // the validators do reject a broken stack (they are not vacuous)
  const bad = parse(renderSiteStack(blog1, farm()).yaml, { version: '1.1' });
  bad.services.nginx.deploy.update_config.delay = 'ten seconds';
  bad.services.nginx.deploy.bogus = 1;
  assert.equal(v313(bad), false);
  assert.equal(compose(bad), false);
});

test('regions: every service spreads its replicas over node.labels.region (the farm setting, from the inventory)', () => {
  const d = doc(renderSiteStack(shop, farm({ placement: ['node.labels.workers == true'], spreadOver: ['node.labels.region'] })));
  for (const [name, svc] of Object.entries(d.services))
    assert.deepEqual(
      svc.deploy.placement,
      { constraints: ['node.labels.workers == true'], preferences: [{ spread: 'node.labels.region' }] },
      name,
    );
  // no regions: no preference (a stack as before)
  assert.deepEqual(doc(renderSiteStack(shop, farm({ placement: ['node.labels.workers == true'] }))).services.nginx.deploy.placement, {
    constraints: ['node.labels.workers == true'],
  });
  assert.equal(doc(renderSiteStack(shop, farm())).services.nginx.deploy.placement, undefined);
  // the role's settings: the spread only when the inventory names several regions
  const s = { glusterMount: '/mnt/gluster/sites', endpointMode: 'dnsrr', dbHost: 'db1', dbPort: 3307 } as WpSiteSettings;
  const images = { wordpressFpm: 'w', nginx: 'n', redis: 'r' } as ImageRefs;
  assert.deepEqual(farmSettings(s, images, {}, { regions: ['a', 'b', 'c'] }).spreadOver, ['node.labels.region']);
  assert.equal(farmSettings(s, images, {}, { regions: ['fra1'] }).spreadOver, undefined);
  assert.equal(farmSettings(s, images, {}, {}).spreadOver, undefined);
});

test('services, networks and Traefik labels follow the architecture', () => {
  const r = renderSiteStack(blog1, farm());
  const d = doc(r);
  assert.equal(r.stack, 'wp-blog1');
  assert.deepEqual(Object.keys(d.services).sort(), ['nginx', 'php-fpm', 'redis']);
  assert.deepEqual(Object.keys(d.services.nginx.networks).sort(), ['site', 'traefik-public']);
  assert.deepEqual(Object.keys(d.services['php-fpm'].networks).sort(), ['shared-services', 'site']);
  assert.deepEqual(Object.keys(d.services.redis.networks), ['site']);
  assert.equal(d.networks.site.name, 'wp-site-blog1');
  assert.equal(d.networks.site.driver, 'overlay');
  assert.equal(d.networks.site.attachable, false);
  assert.equal(d.networks['traefik-public'].external, true);
  assert.equal(d.networks['shared-services'].external, true);
  assert.deepEqual(r.networks, { site: 'wp-site-blog1', external: ['traefik-public', 'shared-services'] });

  const labels = d.services.nginx.deploy.labels as Record<string, string>;
  assert.equal(d.services.nginx.labels, undefined, 'Traefik labels belong under deploy.labels');
  assert.equal(labels['traefik.enable'], 'true');
  const rule = Object.entries(labels).find(([k]) => /^traefik\.http\.routers\.[^.]+\.rule$/.test(k) && !k.includes('admin'))?.[1];
  assert.equal(rule, 'Host(`blog.example.com`) || Host(`www.blog.example.com`)');
  assert.ok(Object.entries(labels).some(([k, v]) => k.endsWith('.loadbalancer.server.port') && v === '8080'));
  assert.ok(
    Object.keys(labels).some((k) => k.includes('.sticky.cookie')),
    'sticky site gets a sticky cookie',
  );
  // the labels convert to a valid Traefik v3 dynamic configuration (roles/traefik's schema-based converter)
  const conv = labelsToDynamic(labels, 'wp-blog1_nginx');
  assert.equal(conv.provider.enable, true);
  assert.equal(conv.provider.network, 'traefik-public');
  assert.ok(Object.keys(conv.config.http?.routers ?? {}).length >= 2, 'site router and admin router');
  assert.ok(Object.values(labels).includes('203.0.113.0/24'), 'admin allowlist at Traefik');
  for (const svc of ['php-fpm', 'redis']) assert.equal(d.services[svc].deploy.labels, undefined, `${svc} is not routed`);
  // encrypted overlay only when asked (no ESP in the lab)
  assert.equal(d.networks.site.driver_opts, undefined);
  assert.deepEqual(doc(renderSiteStack(blog1, farm({ overlayEncrypted: true }))).networks.site.driver_opts, { encrypted: 'true' });
});

test("the DR drill's scratch render: no public router, its own directory and database, the same services otherwise", () => {
  const { v313, compose } = validators();
  const varnished = parseSiteRecord('inventory/sites/vsite.yml', 'id: vsite\ndomain: v.example.com\n', INV);
  for (const site of [blog1, varnished]) {
    const id = `${site.id}-drdrill`;
    const dir = `/mnt/gluster/sites/.wpfarm-drdrill-${site.id}-0a1b2c/mnt/gluster/sites/${site.id}`;
    const f = farm({ publicRouter: false, siteDirs: { [id]: dir }, secretHashes: { [id]: { db_password: H('p'), wp_keys: H('k') } } });
    const r = renderSiteStack({ ...site, id }, f);
    const d = doc(r);
    assert.ok(v313(d), JSON.stringify(v313.errors));
    assert.ok(compose(d), JSON.stringify(compose.errors));
    assert.equal(r.stack, `wp-${id}`);
    // nothing Traefik: no label on any service, no service on traefik-public, no declaration of it
    assert.doesNotMatch(r.yaml, /traefik/);
    for (const [name, svc] of Object.entries(d.services)) {
      assert.equal(svc.deploy.labels, undefined, `${name} has no router labels`);
      assert.ok(!('traefik-public' in svc.networks), `${name} is not on traefik-public`);
    }
    assert.deepEqual(Object.keys(d.networks).sort(), ['shared-services', 'site']);
    assert.deepEqual(r.networks, { site: `wp-site-${id}`, external: ['shared-services'] });
    // the restored directory, the scratch database (= the restore's <db>_drdrill), the scratch secrets
    for (const svc of ['nginx', 'php-fpm'])
      assert.deepEqual(
        d.services[svc].volumes.map((v: { source: string }) => v.source),
        ['uploads', 'plugins', 'themes'].map((x) => `${dir}/${x}`),
      );
    assert.equal(d.services['php-fpm'].environment.WORDPRESS_DB_NAME, `wp_${site.id}_drdrill`);
    assert.equal(d.services['php-fpm'].environment.WORDPRESS_DB_USER, `wp_${site.id}_drdrill`);
    assert.match(d.secrets.db_password.name, new RegExp(`^site_${id}_db_password_[0-9a-f]{8}$`));
    // the site's domain still names the server (the check sends it as Host)
    assert.ok(d.services.nginx.environment.NGINX_SERVER_NAMES.split(' ').includes(site.domain));
  }
  // the default is unchanged: routed, in <glusterSitesPath>/<id>
  const live = doc(renderSiteStack(blog1, farm()));
  assert.ok('traefik-public' in live.services.nginx.networks);
  assert.equal(live.services.nginx.volumes[0].source, '/mnt/gluster/sites/blog1/uploads');
});

test('deploy policy, limits, health checks, volumes, pinned images', () => {
  const r = renderSiteStack(shop, farm({ endpointMode: 'vip' }));
  const d = doc(r);
  for (const [name, svc] of Object.entries(d.services)) {
    const dep = svc.deploy;
    assert.deepEqual(
      { p: dep.update_config.parallelism, d: dep.update_config.delay, f: dep.update_config.failure_action },
      { p: 1, d: '10s', f: 'rollback' },
      name,
    );
    assert.equal(dep.restart_policy.max_attempts, 3, name);
    assert.equal(dep.endpoint_mode, 'vip', name);
    assert.ok(svc.healthcheck?.test?.length, `${name} has a health check`);
    assert.match(svc.image, /^10\.10\.0\.2:5000\/wpfarm\/[a-z-]+:[0-9a-z.]+$/, `${name}: pinned image from the farm registry`);
    assert.doesNotMatch(svc.image, /:latest$/);
  }
  assert.equal(d.services.nginx.deploy.replicas, 3);
  assert.equal(d.services['php-fpm'].deploy.replicas, 3);
  assert.equal(d.services.redis.deploy.replicas, 1);
  assert.deepEqual(d.services['php-fpm'].deploy.resources.limits, { cpus: '2', memory: '1G' });
  assert.deepEqual(d.services.nginx.deploy.resources.limits, { cpus: '0.25', memory: '128M' });
  assert.deepEqual(d.services.redis.deploy.resources.limits, { cpus: '0.25', memory: '128M' });
  assert.ok(d.services.redis.command.includes('96mb'), 'redis maxmemory = 75% of its limit');

  const fpmVolumes = d.services['php-fpm'].volumes.map((v: Svc) => `${v.source}:${v.target}:${v.read_only ? 'ro' : 'rw'}`);
  assert.deepEqual(fpmVolumes, [
    '/mnt/gluster/sites/shop/uploads:/var/www/html/wp-content/uploads:rw',
    '/mnt/gluster/sites/shop/plugins:/var/www/html/wp-content/plugins:rw',
    '/mnt/gluster/sites/shop/themes:/var/www/html/wp-content/themes:rw',
  ]);
  assert.ok(d.services.nginx.volumes.every((v: Svc) => v.read_only === true && v.source.startsWith('/mnt/gluster/sites/shop/')));
  assert.equal(d.services.redis.volumes, undefined);

  const ne = d.services.nginx.environment;
  assert.equal(ne.NGINX_SERVER_NAMES, 'shop.example.org');
  assert.equal(ne.NGINX_CACHE_TTL, '120');
  assert.equal(ne.NGINX_XMLRPC, 'on');
  assert.equal(ne.NGINX_REAL_IP_FROM, '10.0.1.0/24');
  // the farm's own probe of the login form (the WordPress exporter, on the site network): Swarm's overlay pool
  assert.equal(ne.NGINX_PROBE_FROM, '10.0.0.0/8');
  assert.equal(
    doc(renderSiteStack(shop, farm({ overlayPool: '10.20.0.0/16' }))).services.nginx.environment.NGINX_PROBE_FROM,
    '10.20.0.0/16',
  );
  assert.equal(doc(renderSiteStack(blog1, farm())).services.nginx.environment.NGINX_XMLRPC, 'off');
});

test('secrets: external, content-hashed names, read through *_FILE; values never rendered', () => {
  const pw = randomBytes(24).toString('base64url');
  const keys = randomBytes(48).toString('hex');
  const f = farm({ secretHashes: { blog1: { db_password: secretHash(pw), wp_keys: secretHash(keys) } } });
  const r = renderSiteStack(blog1, f);
  const d = doc(r);
  assert.ok(!r.yaml.includes(pw) && !r.yaml.includes(keys), 'no secret value in the stack');
  assert.ok(!JSON.stringify(r).includes(pw), 'no secret value anywhere in the result');
  const pwName = `site_blog1_db_password_${secretHash(pw).slice(0, 8)}`;
  assert.equal(secretName('blog1', 'db_password', secretHash(pw)), pwName);
  assert.deepEqual(d.secrets.db_password, { external: true, name: pwName });
  assert.deepEqual(d.secrets.wp_keys, { external: true, name: `site_blog1_wp_keys_${secretHash(keys).slice(0, 8)}` });
  assert.deepEqual(
    r.secrets.map((s) => s.name),
    [pwName, d.secrets.wp_keys.name],
  );

  const env = d.services['php-fpm'].environment as Record<string, string>;
  assert.equal(env.WORDPRESS_DB_PASSWORD_FILE, '/run/secrets/db_password');
  assert.equal(env.WORDPRESS_KEYS_FILE, '/run/secrets/wp_keys');
  assert.equal(env.WORDPRESS_DB_PASSWORD, undefined, 'never the plain variable');
  for (const svc of Object.values(d.services))
    for (const [k, v] of Object.entries((svc.environment ?? {}) as Record<string, string>))
      if (/PASSWORD|KEY|SALT|SECRET/.test(k)) assert.match(k, /_FILE$/, `${k}=${v} must be a *_FILE variable`);
  assert.deepEqual(
    d.services['php-fpm'].secrets.map((s: Svc) => [s.source, s.target, s.uid, s.mode]),
    [
      ['db_password', 'db_password', '33', 0o400],
      ['wp_keys', 'wp_keys', '33', 0o400],
    ],
  );
  assert.equal(d.services.nginx.secrets, undefined, 'nginx gets no secret');

  // a new password gives a new secret name and a new digest (rolling update), nothing else changes
  const r2 = renderSiteStack(blog1, farm({ secretHashes: { blog1: { db_password: secretHash(pw + 'x'), wp_keys: secretHash(keys) } } }));
  assert.notEqual(r2.secrets[0].name, r.secrets[0].name);
  assert.equal(r2.secrets[1].name, r.secrets[1].name);
  assert.notEqual(r2.digest, r.digest);

  assert.throws(() => renderSiteStack(blog1, farm({ secretHashes: {} })), /no secret hashes/);
  assert.throws(() => secretName('blog1', 'db_password', 'not-a-hash'), /sha256 hex/);
});

test('rendering is pure and deterministic', () => {
  const a = renderSiteStack(blog1, farm());
  const b = renderSiteStack(structuredClone(blog1) as SiteRecord, farm());
  assert.equal(a.yaml, b.yaml);
  assert.equal(a.digest, b.digest);
  assert.match(a.digest, /^[0-9a-f]{64}$/);
  assert.doesNotMatch(a.yaml, /[&*]a\d/, 'no YAML anchors/aliases in the output');
  // the YAML reads back as exactly the spec, under YAML 1.2 and 1.1 (docker's parsers) alike
  assert.deepEqual(parse(a.yaml), a.spec);
  assert.deepEqual(parse(a.yaml, { version: '1.1' }), a.spec);
  const c = renderSiteStack({ ...blog1, replicas: 4 }, farm());
  assert.notEqual(c.digest, a.digest);
});

test("a site's services are never on another site's network", () => {
  const ids = Array.from({ length: 20 }, (_, i) => `site${i}`);
  const f = farm({}, ids);
  const rendered = ids.map((id) => renderSiteStack(parseSiteRecord(`s/${id}.yml`, `id: ${id}\ndomain: ${id}.example\n`, INV), f));
  const siteNets = new Set(rendered.map((r) => r.networks.site));
  assert.equal(siteNets.size, ids.length, 'one network per site');
  for (const r of rendered) {
    const d = doc(r);
    const declared = Object.values(d.networks).map((n) => n.name as string);
    for (const n of declared) {
      if (n.startsWith('wp-site-')) assert.equal(n, `wp-site-${r.siteId}`);
    }
    // only the routed service (varnish, or nginx without it) is on traefik-public, only php-fpm on shared-services,
    // redis only on its site network
    const routed = d.services.varnish ? 'varnish' : 'nginx';
    for (const [svc, def] of Object.entries(d.services)) {
      const nets = Object.keys(def.networks);
      if (svc !== routed) assert.ok(!nets.includes('traefik-public'), svc);
      if (svc !== 'php-fpm') assert.ok(!nets.includes('shared-services'), svc);
    }
    // php-fpm binds to its site-network address (not shared-services): the alias it resolves is only on `site`
    const fpm = d.services['php-fpm'];
    const via = (fpm.environment.FPM_LISTEN_VIA as string).split(' ');
    assert.deepEqual(fpm.networks.site.aliases, [via[0]]);
    assert.equal(fpm.networks['shared-services'].aliases, undefined);
  }
});

// `docker service ls --format '{{json .}}'` as docker 20.10 prints it
function serviceLs(entries: { name: string; image: string; replicas: string }[]): string {
  return entries
    .map((e, i) => JSON.stringify({ ID: `id${i}`, Image: e.image, Mode: 'replicated', Name: e.name, Ports: '', Replicas: e.replicas }))
    .join('\n');
}

function liveFor(r: RenderedStack, over: Record<string, { image?: string; replicas?: string }> = {}) {
  return Object.entries(r.services).map(([svc, s]) => ({
    name: `${r.stack}_${svc}`,
    image: over[svc]?.image ?? s.image,
    replicas: over[svc]?.replicas ?? `${s.replicas}/${s.replicas}`,
  }));
}

test('diffStacks: no change, spec change, drift, missing, converging', () => {
  const r = renderSiteStack(blog1, farm());
  const state = updatedStateFile('', [r], '2026-11-26T00:00:00.000Z');
  assert.deepEqual(JSON.parse(state), { 'wp-blog1': { digest: r.digest, at: '2026-11-26T00:00:00.000Z' } });

  const same = deployedStacks(serviceLs(liveFor(r)), state).get('wp-blog1');
  assert.deepEqual(diffStacks(r, same), { stack: 'wp-blog1', action: 'ok', reasons: [] });

  // image shown with a digest suffix by swarm: still the same
  const withDigest = deployedStacks(
    serviceLs(liveFor(r, { nginx: { image: `${r.services.nginx.image}@sha256:${'a'.repeat(64)}` } })),
    state,
  ).get('wp-blog1');
  assert.equal(diffStacks(r, withDigest).action, 'ok');

  assert.equal(diffStacks(r, undefined).action, 'create');

  const changed = renderSiteStack({ ...blog1, cache_ttl: 60 }, farm());
  const d1 = diffStacks(changed, same);
  assert.equal(d1.action, 'update');
  assert.match(d1.reasons.join(';'), /spec changed/);

  const scaled = deployedStacks(serviceLs(liveFor(r, { 'php-fpm': { replicas: '5/5' } })), state).get('wp-blog1');
  const d2 = diffStacks(r, scaled);
  assert.equal(d2.action, 'update');
  assert.match(d2.reasons.join(';'), /php-fpm: replicas 5 -> 2/);

  const missing = deployedStacks(serviceLs(liveFor(r).filter((e) => !e.name.endsWith('_redis'))), state).get('wp-blog1');
  assert.match(diffStacks(r, missing).reasons.join(';'), /service redis missing/);

  const converging = deployedStacks(serviceLs(liveFor(r, { nginx: { replicas: '1/2' } })), state).get('wp-blog1');
  const d3 = diffStacks(r, converging);
  assert.equal(d3.action, 'ok');
  assert.match(d3.reasons.join(';'), /1\/2 running/);

  const noState = deployedStacks(serviceLs(liveFor(r)), '').get('wp-blog1');
  assert.equal(diffStacks(r, noState).action, 'update');
});

test('diffFarm: one service list + one state file for all sites; orphans reported', () => {
  const ids = ['a1', 'b2', 'c3', 'd4'];
  const f = farm({}, [...ids, 'gone']);
  const rendered = ids.map((id) => renderSiteStack(parseSiteRecord(`s/${id}.yml`, `id: ${id}\ndomain: ${id}.example\n`, INV), f));
  const old = renderSiteStack(parseSiteRecord('s/gone.yml', 'id: gone\ndomain: gone.example\n', INV), f);
  const state = updatedStateFile('', [...rendered, old]);
  const live = serviceLs([
    ...rendered.flatMap((r) => liveFor(r)),
    ...liveFor(old),
    { name: 'traefik_traefik', image: 'traefik:v3.1', replicas: '2/2' },
    { name: 'lonely', image: 'x', replicas: '1/1' },
  ]);
  assert.equal(parseServiceLs(live).get('traefik')?.traefik.desired, 2);
  const noChange = diffFarm(rendered, live, state);
  assert.equal(noChange.unchanged, 4);
  assert.deepEqual(noChange.changes, []);
  assert.deepEqual(noChange.orphans, ['wp-gone']);

  const edited = rendered.map((r, i) =>
    i === 2 ? renderSiteStack(parseSiteRecord('s/c3.yml', 'id: c3\ndomain: c3.example\nxmlrpc: true\n', INV), f) : r,
  );
  const one = diffFarm(edited, live, state);
  assert.equal(one.unchanged, 3);
  assert.deepEqual(
    one.changes.map((c) => [c.stack, c.action]),
    [['wp-c3', 'update']],
  );

  // state file update keeps other stacks and records the new digest
  const next = JSON.parse(updatedStateFile(state, [edited[2]]));
  assert.equal(next['wp-c3'].digest, edited[2].digest);
  assert.equal(next['wp-a1'].digest, rendered[0].digest);
  assert.equal(diffFarm(edited, live, JSON.stringify(next)).changes.length, 0);
});

test('the YAML emitter round-trips tricky values under YAML 1.1 and 1.2', async () => {
  const { emitYaml } = await import('../../roles/wp-site/yaml-emit.ts');
  const data = {
    no: 'off',
    'a key': ['yes', '', '0755', '1e3', 'null', '~', 'multi\nline "q" \\ `tick` $x #c', 'ünï', { '': 'empty key', on: true, n: 0.25 }],
    list: [[], {}, -1, false, null],
    empty: {},
    nested: { deeper: { deepest: ['- not a list', ': colon', '{flow}'] } },
  };
  const text = emitYaml(data);
  assert.deepEqual(parse(text), data);
  assert.deepEqual(parse(text, { version: '1.1' }), data);
  assert.throws(() => emitYaml({ x: [[1]] }), /nested sequences/);
  assert.throws(() => emitYaml({ x: Number.NaN }), /non-finite/);
});

test('farm probe: one shell command gives the service list and the digests stackDeploy keeps', async () => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { execFileSync } = await import('node:child_process');
  const { sha256 } = await import('../../lib/ops/sys-util.ts');
  const { STACK_DIR } = await import('../../lib/ops/docker.ts');
  const { farmProbeScript, parseFarmProbe } = await import('../../roles/wp-site/stack.ts');
  const ids = ['a1', 'b2', 'c3'];
  const f = farm({}, ids);
  const rendered = ids.map((id) => renderSiteStack(parseSiteRecord(`s/${id}.yml`, `id: ${id}\ndomain: ${id}.example\n`, INV), f));
  // the digest is what lib/ops/docker.ts stackDeploy compares (sha256 of the compose text)
  for (const r of rendered) assert.equal(r.digest, sha256(r.yaml));
  assert.equal(farmProbeScript(), farmProbeScript(STACK_DIR));

  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-stacks-'));
  try {
    // as stackDeploy leaves it: <stack>.yml per deployed stack (c3 never deployed, a1 deployed from an older render)
    writeFileSync(path.join(dir, 'wp-a1.yml'), rendered[0].yaml.replace('"600"', '"601"'));
    writeFileSync(path.join(dir, 'wp-b2.yml'), rendered[1].yaml);
    writeFileSync(path.join(dir, 'traefik.yml'), 'not a site\n');
    writeFileSync(path.join(dir, '.wp-b2.tmp123'), 'partial\n');
    // run the real script with bash; docker here may or may not be a swarm manager: the probe must still exit 0
    const out = execFileSync('bash', ['-c', farmProbeScript(dir)], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `/nonexistent:${process.env.PATH}` },
    });
    const probe = parseFarmProbe(out);
    assert.deepEqual(Object.keys(probe.state).sort(), ['wp-a1', 'wp-b2']);
    assert.equal(probe.state['wp-b2'].digest, rendered[1].digest);
    assert.notEqual(probe.state['wp-a1'].digest, rendered[0].digest);
    // with the live services present, only the changed and the new stacks are deployed
    const live = serviceLs(rendered.slice(0, 2).flatMap((r) => liveFor(r)));
    const d = diffFarm(rendered, live, probe.state);
    assert.deepEqual(
      d.changes.map((c) => [c.stack, c.action]),
      [
        ['wp-a1', 'update'],
        ['wp-c3', 'create'],
      ],
    );
    assert.equal(d.unchanged, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => farmProbeScript('/tmp/x; rm -rf /'), /bad stack dir/);
});

/** the role's context for wpSiteSettings: these vars, one db host and one worker */
const ctx = (vars: Record<string, unknown>) => ({
  vars,
  hosts: (p: string) =>
    p === 'db' || p === 'workers'
      ? [{ name: `${p}1`, address: p === 'db' ? '10.77.0.31' : '10.77.0.21', port: 22, user: 'root', groups: [p], vars: {} }]
      : [],
});

test("the database endpoint: the node's own (host-gateway entry on php-fpm) by default, an inventory address as it is", () => {
  // the role's settings: no wp_db_host → the endpoint of the node each task runs on (roles/db-endpoint)
  const onNode = wpSiteSettings(ctx({ galera_writer_port: 3307 }));
  assert.deepEqual([onNode.dbHost, onNode.dbPort, onNode.dbOnNode], [NODE_DB_HOST, 3307, true]);
  assert.deepEqual(dbEndpoint(onNode), { host: 'wpfarm-db', port: 3307, onNode: true });
  const given = wpSiteSettings(ctx({ wp_db_host: 'db.internal', galera_writer_port: 3310 }));
  assert.deepEqual(dbEndpoint(given), { host: 'db.internal', port: 3310 });

  const node = renderSiteStack(blog1, farm({ db: dbEndpoint(onNode) }));
  const d = doc(node);
  assert.equal(d.services['php-fpm'].environment.WORDPRESS_DB_HOST, 'wpfarm-db:3307');
  assert.deepEqual(d.services['php-fpm'].extra_hosts, ['wpfarm-db:host-gateway']);
  for (const svc of ['nginx', 'redis']) assert.equal(d.services[svc].extra_hosts, undefined, `${svc} never talks to the database`);
  // as a string in the YAML that `docker stack deploy` reads (compose: extra_hosts is a list of "name:address")
  assert.match(node.yaml, /\n {4}extra_hosts:\n {6}- "wpfarm-db:host-gateway"\n/);
  const { v313, compose } = validators();
  assert.ok(v313(d), JSON.stringify(v313.errors));
  assert.ok(compose(d), JSON.stringify(compose.errors));

  const addr = doc(renderSiteStack(blog1, farm({ db: dbEndpoint(given) })));
  assert.equal(addr.services['php-fpm'].environment.WORDPRESS_DB_HOST, 'db.internal:3310');
  assert.equal(addr.services['php-fpm'].extra_hosts, undefined);
  assert.doesNotMatch(renderSiteStack(blog1, farm()).yaml, /extra_hosts|host-gateway/);
});

test("rolling updates: Swarm's delay and monitor from wp_update_delay / wp_update_monitor (10s / 30s by default); bad values are bad input", () => {
  const images = { wordpressFpm: 'w', nginx: 'n', redis: 'r' } as ImageRefs;
  const rendered = (vars: Record<string, unknown>) => {
    const s = wpSiteSettings(ctx(vars));
    return doc(renderSiteStack(shop, farm({ rollout: farmSettings(s, images, {}, vars).rollout })));
  };
  for (const [name, svc] of Object.entries(rendered({}).services))
    assert.deepEqual([svc.deploy.update_config.delay, svc.deploy.update_config.monitor], ['10s', '30s'], name);
  const lab = rendered({ wp_update_delay: '2s', wp_update_monitor: '10s' });
  for (const [name, svc] of Object.entries(lab.services)) {
    assert.deepEqual([svc.deploy.update_config.delay, svc.deploy.update_config.monitor], ['2s', '10s'], name);
    assert.equal(svc.deploy.update_config.order, 'start-first', name);
    assert.equal(svc.deploy.update_config.failure_action, 'rollback', name);
  }
  const { v313, compose } = validators();
  assert.ok(v313(lab), JSON.stringify(v313.errors));
  assert.ok(compose(lab), JSON.stringify(compose.errors));
  for (const [name, bad] of [
    ['wp_update_delay', 10],
    ['wp_update_monitor', '30'],
    ['wp_update_monitor', '1h; reboot'],
  ] as const)
    assert.throws(
      () => wpSiteSettings(ctx({ [name]: bad })),
      (e: Error) => e.name === 'InputError' && e.message.includes(`vars.${name}`) && e.message.includes(JSON.stringify(bad)),
      `${name}=${JSON.stringify(bad)}`,
    );
});

test('health checks: every site service checks every 5s with a 3s timeout by default; wp_health_interval / wp_health_timeout set them farm-wide', () => {
  const checks = (r: RenderedStack) =>
    Object.fromEntries(Object.entries(doc(r).services).map(([name, svc]) => [name, [svc.healthcheck?.interval, svc.healthcheck?.timeout]]));
  const byDefault = checks(renderSiteStack(shop, farm()));
  assert.ok(Object.keys(byDefault).length >= 3, JSON.stringify(byDefault));
  for (const [name, hc] of Object.entries(byDefault)) assert.deepEqual(hc, ['5s', '3s'], name);
  assert.deepEqual(healthSettings({}), { interval: '5s', timeout: '3s' });
  const slow = healthSettings({ wp_health_interval: '30s', wp_health_timeout: '10s' });
  for (const [name, hc] of Object.entries(checks(renderSiteStack(shop, farm({ health: slow })))))
    assert.deepEqual(hc, ['30s', '10s'], name);
  // bad input names the variable
  const refused = (vars: Record<string, unknown>, re: RegExp) =>
    assert.throws(
      () => healthSettings(vars),
      (e: Error) => e instanceof InputError && re.test(e.message),
      JSON.stringify(vars),
    );
  refused({ wp_health_interval: '5' }, /^vars\.wp_health_interval: a Swarm duration/);
  refused({ wp_health_interval: 30 }, /^vars\.wp_health_interval: a Swarm duration/);
  refused({ wp_health_interval: '0s' }, /^vars\.wp_health_interval: above zero/);
  refused({ wp_health_timeout: '10s' }, /^vars\.wp_health_timeout: above zero and at most wp_health_interval \(5s\), got "10s"/);
  refused({ wp_health_timeout: '0ms' }, /^vars\.wp_health_timeout: above zero/);
  assert.deepEqual(healthSettings({ wp_health_interval: '1m', wp_health_timeout: '500ms' }), { interval: '1m', timeout: '500ms' });
});
