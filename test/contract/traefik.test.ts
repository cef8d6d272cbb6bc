// Contract tests for the traefik role's generators. Traefik's binary cannot be obtained here, so the
// proof is: the static configuration validates against SchemaStore's traefik-v3.json, everything
// generated as labels converts back to dynamic configuration that validates against
// traefik-v3-file-provider.json and whose references resolve, every rule parses with our parser,
// and the stack file validates against docker/cli's and compose-spec's schemas.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import {
  traefikSettings,
  traefikStaticConfig,
  traefikDynamicConfig,
  traefikStack,
  siteRouterLabels,
  dashboardLabels,
  letsEncryptBudget,
  LETS_ENCRYPT_STAGING,
  LETS_ENCRYPT_PRODUCTION,
  ENTRY_POINTS,
  TraefikVarsError,
  type TraefikSettings,
} from '../../roles/traefik/config.ts';
import { labelsToDynamic, checkReferences, LabelError, type DynamicConfig } from '../../roles/traefik/labels.ts';
import { parseRule, evaluateRule, ruleHosts, RuleSyntaxError, type RuleRequest } from '../../roles/traefik/rules.ts';
import { validateAgainst } from '../../roles/traefik/schema-check.ts';
import { CLOUDFLARE_IPS } from '../../roles/traefik/cloudflare-ips.ts';

const baseVars = {
  management_cidrs: ['10.10.0.0/24', '203.0.113.7/32'],
  acme_email: 'ops@example.net',
  traefik_dashboard_host: 'traefik.mgmt.example.net',
  swarm_endpoint_mode: 'dnsrr',
};
const labSettings = traefikSettings(baseVars);
const prodSettings = traefikSettings({ ...baseVars, swarm_endpoint_mode: 'vip', acme_challenge: 'cloudflare', acme_staging: false });
const entryPoints = Object.keys(ENTRY_POINTS);

function assertValid(name: Parameters<typeof validateAgainst>[0], doc: unknown): void {
  const r = validateAgainst(name, doc);
  assert.equal(r.valid, true, `${name}:\n${r.errors.join('\n')}`);
}

/** Route a request the way Traefik does: among matching routers, the highest priority wins. */
function route(cfg: DynamicConfig, req: RuleRequest): string | undefined {
  const matching = Object.entries(cfg.http?.routers ?? {})
    .filter(([, r]) => evaluateRule(parseRule(r.rule as string), req))
    .sort(([, a], [, b]) => ((b.priority as number) ?? 0) - ((a.priority as number) ?? 0));
  return matching[0]?.[0];
}

test('static configuration validates against traefik-v3.json (lab and production variants)', () => {
  for (const s of [labSettings, prodSettings]) {
    const cfg = traefikStaticConfig(s);
    assertValid('traefik-static', cfg);
    // what the YAML file holds must be the same document
    assertValid('traefik-static', YAML.parse(traefikStack(s).files['traefik.yml']!));
  }
});

test('static configuration: swarm provider, redirect, HTTP/3, ACME, metrics, access log, trusted forwarders', () => {
  // biome-ignore lint/suspicious/noExplicitAny: eslint-style any: test inspects a free-form document
  const lab = traefikStaticConfig(labSettings) as Record<string, any>; // eslint-style any: test inspects a free-form document
  assert.equal(lab.providers.swarm.exposedByDefault, false);
  assert.equal(lab.providers.swarm.network, 'traefik-public');
  assert.equal(lab.providers.docker, undefined, 'v3 uses providers.swarm, not docker.swarmMode');
  assert.deepEqual(lab.entryPoints.web.http.redirections.entryPoint, { to: 'websecure', scheme: 'https', permanent: true });
  assert.deepEqual(lab.entryPoints.websecure.http3, { advertisedPort: 443 });
  assert.deepEqual(lab.entryPoints.websecure.forwardedHeaders.trustedIPs, [...CLOUDFLARE_IPS]);
  assert.deepEqual(lab.entryPoints.web.forwardedHeaders.trustedIPs, [...CLOUDFLARE_IPS]);
  assert.equal(lab.entryPoints.websecure.forwardedHeaders.insecure, undefined);
  assert.equal(lab.accessLog.format, 'json');
  assert.equal(lab.accessLog.filePath, '/var/log/traefik/access.log');
  assert.equal(lab.accessLog.fields.headers.names['User-Agent'], 'keep');
  assert.equal(lab.metrics.prometheus.entryPoint, 'metrics');
  assert.equal(lab.api.insecure, false);
  // lab: staging CA, HTTP-01 by the single owner
  assert.equal(lab.certificatesResolvers.le.acme.caServer, LETS_ENCRYPT_STAGING);
  assert.deepEqual(lab.certificatesResolvers.le.acme.httpChallenge, { entryPoint: 'web' });
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const prod = traefikStaticConfig(prodSettings) as Record<string, any>; // free-form document
  assert.equal(prod.certificatesResolvers.le.acme.caServer, LETS_ENCRYPT_PRODUCTION);
  assert.equal(prod.certificatesResolvers.le.acme.dnsChallenge.provider, 'cloudflare');
  assert.equal(prod.certificatesResolvers.le.acme.httpChallenge, undefined);
  // not behind Cloudflare: no forwarder is trusted at all
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const direct = traefikStaticConfig(traefikSettings({ ...baseVars, cloudflare_proxied: false })) as Record<string, any>; // free-form
  assert.equal(direct.entryPoints.websecure.forwardedHeaders, undefined);
});

test('the schema check is not vacuous: v2-style and misspelt static keys are rejected', () => {
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const cfg = traefikStaticConfig(labSettings) as Record<string, any>; // free-form document
  const v2 = structuredClone(cfg);
  v2.providers.docker = { swarmMode: true };
  assert.equal(validateAgainst('traefik-static', v2).valid, false);
  const typo = structuredClone(cfg);
  typo.entryPoints.websecure.adress = ':443';
  assert.equal(validateAgainst('traefik-static', typo).valid, false);
  const badType = structuredClone(cfg);
  badType.entryPoints.websecure.http3 = { advertisedPort: '443' };
  assert.equal(validateAgainst('traefik-static', badType).valid, false);
});

test('dynamic file configuration validates: TLS 1.2+, HSTS and security headers, rate limit, allow lists, CrowdSec bouncer', () => {
  for (const s of [labSettings, prodSettings]) {
    // biome-ignore lint/suspicious/noExplicitAny: free-form document
    const dyn = traefikDynamicConfig(s) as Record<string, any>; // free-form document
    assertValid('traefik-dynamic', dyn);
    assert.equal(dyn.tls.options.default.minVersion, 'VersionTLS12');
    const h = dyn.http.middlewares['secure-headers'].headers;
    assert.equal(h.stsSeconds, 31536000);
    assert.equal(h.contentTypeNosniff, true);
    assert.equal(h.customFrameOptionsValue, 'SAMEORIGIN');
    assert.match(h.contentSecurityPolicy, /frame-ancestors 'self'/);
    assert.equal(h.referrerPolicy, 'strict-origin-when-cross-origin');
    assert.deepEqual(dyn.http.middlewares['wp-admin-allowlist'].ipAllowList.sourceRange, baseVars.management_cidrs);
    assert.deepEqual(dyn.http.middlewares['wp-admin-allowlist'].ipAllowList.ipStrategy, { depth: 1 });
    assert.ok(dyn.http.middlewares['rate-limit'].rateLimit.average > 0);
    const bouncer = dyn.http.middlewares.crowdsec.plugin.crowdsec;
    assert.equal(bouncer.enabled, true);
    assert.equal(bouncer.crowdsecMode, 'stream');
    assert.equal(bouncer.crowdsecLapiKeyFile, '/run/secrets/crowdsec_bouncer_key');
    assert.equal(bouncer.crowdsecLapiKey, undefined, 'the key never appears in the configuration');
    assert.deepEqual(bouncer.forwardedHeadersTrustedIPs, [...CLOUDFLARE_IPS]);
  }
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const bad = traefikDynamicConfig(labSettings) as Record<string, any>; // free-form document
  bad.http.middlewares['secure-headers'].headers.stsSeconds = '1y';
  assert.equal(validateAgainst('traefik-dynamic', bad).valid, false);
});

const sites = [
  { id: 1, domains: ['example.com', 'www.example.com'], port: 80 },
  { id: 'shop-2', domains: ['shop.example.org'], port: 8080, sticky: true },
  { id: 3, domains: ['blog.example.net'], port: 80, adminAllowlist: ['198.51.100.0/24'] },
];

test('every site label set converts back to dynamic configuration that validates and resolves', () => {
  const fileCfg = traefikDynamicConfig(labSettings) as DynamicConfig;
  for (const site of sites) {
    for (const endpointMode of ['dnsrr', 'vip'] as const) {
      const labels = siteRouterLabels(site, { endpointMode });
      const { provider, config } = labelsToDynamic(labels, `wp_${site.id}_web`);
      assert.equal(provider.enable, true);
      assert.equal(provider.network, 'traefik-public');
      assert.equal(provider.lbswarm, endpointMode === 'vip' ? true : undefined);
      assertValid('traefik-dynamic', config);
      assert.deepEqual(checkReferences(config, fileCfg, entryPoints), []);
      const routers = config.http!.routers!;
      assert.equal(Object.keys(routers).length, 2);
      for (const r of Object.values(routers)) {
        const hosts = ruleHosts(parseRule(r.rule as string));
        assert.deepEqual([...new Set(hosts)].sort(), [...site.domains].sort());
        assert.deepEqual(r.entryPoints, ['websecure']);
        assert.deepEqual(r.tls, { certResolver: 'le' });
      }
    }
  }
});

test('site routing: wp-admin and wp-login.php go through the allow list, admin-ajax and the front end do not', () => {
  const { config } = labelsToDynamic(siteRouterLabels(sites[0]!), 'wp_1_web');
  const r = config.http!.routers!;
  assert.equal(route(config, { host: 'example.com', path: '/' }), 'site1');
  assert.equal(route(config, { host: 'www.example.com', path: '/2024/hello-world/' }), 'site1');
  assert.equal(route(config, { host: 'example.com', path: '/wp-login.php' }), 'site1-admin');
  assert.equal(route(config, { host: 'WWW.example.com:443', path: '/wp-admin/options.php' }), 'site1-admin');
  assert.equal(route(config, { host: 'example.com', path: '/wp-admin/admin-ajax.php' }), 'site1');
  assert.equal(route(config, { host: 'other.example.com', path: '/' }), undefined);
  assert.equal((r['site1-admin']!.middlewares as string[])[0], 'wp-admin-allowlist@file');
  assert.ok(!(r.site1!.middlewares as string[]).includes('wp-admin-allowlist@file'));
  // a site with its own allow list gets its own ipAllowList middleware, with Cloudflare's depth
  const own = labelsToDynamic(siteRouterLabels(sites[2]!), 'wp_3_web').config;
  assert.deepEqual(own.http!.middlewares!['site3-admin-allow'], {
    ipAllowList: { sourceRange: ['198.51.100.0/24'], ipStrategy: { depth: 1 } },
  });
  assert.equal((own.http!.routers!['site3-admin']!.middlewares as string[])[0], 'site3-admin-allow');
});

test('sticky sessions are per site and only where asked', () => {
  const sticky = labelsToDynamic(siteRouterLabels(sites[1]!), 'wp_shop_web').config;
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const lb = sticky.http!.services!['site-shop-2']!.loadBalancer as Record<string, any>; // free-form
  assert.deepEqual(lb.sticky, { cookie: { name: 'wpfarm_site_shop_2', secure: true, httpOnly: true, sameSite: 'lax' } });
  assert.deepEqual(lb.servers, [{ url: 'http://wp_shop_web:8080' }]);
  // `cookie=true` beside its sub-keys, in either order, is the same configuration
  const c = 'traefik.http.services.site-shop-2.loadbalancer.sticky.cookie';
  const withFlag = siteRouterLabels(sites[1]!);
  const flagFirst = labelsToDynamic({ [c]: 'true', ...withFlag }, 'wp_shop_web').config;
  const flagLast = labelsToDynamic({ ...withFlag, [c]: 'true' }, 'wp_shop_web').config;
  assert.deepEqual(flagFirst, sticky);
  assert.deepEqual(flagLast, sticky);
  const plain = labelsToDynamic(siteRouterLabels(sites[0]!), 'wp_1_web').config;
  assert.equal((plain.http!.services!.site1!.loadBalancer as Record<string, unknown>).sticky, undefined);
});

test('500 sites: all labels convert and validate, router names are unique', () => {
  const fileCfg = traefikDynamicConfig(labSettings) as DynamicConfig;
  const names = new Set<string>();
  for (let i = 1; i <= 500; i++) {
    const { config } = labelsToDynamic(
      siteRouterLabels({ id: i, domains: [`s${i}.example.com`], port: 80, sticky: i % 7 === 0 }),
      `wp_${i}_web`,
    );
    const r = validateAgainst('traefik-dynamic', config);
    assert.equal(r.valid, true, r.errors.join('\n'));
    assert.deepEqual(checkReferences(config, fileCfg, entryPoints), []);
    for (const n of Object.keys(config.http!.routers!)) {
      assert.ok(!names.has(n), `duplicate router ${n}`);
      names.add(n);
    }
  }
  assert.equal(names.size, 1000);
});

test('dashboard: api@internal, only from the management network, on its own host', () => {
  const { config } = labelsToDynamic(dashboardLabels(labSettings), 'traefik_traefik');
  assertValid('traefik-dynamic', config);
  assert.deepEqual(checkReferences(config, traefikDynamicConfig(labSettings) as DynamicConfig, entryPoints), []);
  const d = config.http!.routers!.dashboard!;
  assert.equal(d.service, 'api@internal');
  assert.deepEqual(d.middlewares, ['dashboard-allowlist@file', 'secure-headers@file']);
  assert.equal(route(config, { host: 'traefik.mgmt.example.net', path: '/dashboard/' }), 'dashboard');
  assert.equal(route(config, { host: 'traefik.mgmt.example.net', path: '/metrics' }), undefined);
  assert.equal(route(config, { host: 'example.com', path: '/dashboard/' }), undefined);
});

test('label converter rejects what Traefik would silently ignore or misread', () => {
  const ok = siteRouterLabels(sites[0]!);
  assert.throws(() => labelsToDynamic({ ...ok, 'traefik.http.routers.site1.entrypoint': 'websecure' }, 'x'), LabelError);
  assert.throws(() => labelsToDynamic({ ...ok, 'traefik.docker.network': 'traefik-public' }, 'x'), LabelError);
  assert.throws(() => labelsToDynamic({ ...ok, 'traefik.http.routers.site1.priority': 'high' }, 'x'), LabelError);
  assert.throws(() => labelsToDynamic({ ...ok, 'traefik.http.services.site1.loadbalancer.sticky.cookie.secure': 'yes' }, 'x'), LabelError);
  assert.throws(() => labelsToDynamic({ ...ok, 'traefik.http.routers.site1.rule': 'Host(`a.com`, `b.com`)' }, 'x'), RuleSyntaxError);
  const noPort = Object.fromEntries(Object.entries(ok).filter(([k]) => !k.endsWith('.server.port')));
  assert.throws(() => labelsToDynamic(noPort, 'x'), /needs loadbalancer.server.port/);
  // a reference to a middleware that does not exist
  const dangling = labelsToDynamic({ ...ok, 'traefik.http.routers.site1.middlewares': 'nope@file' }, 'x').config;
  assert.deepEqual(checkReferences(dangling, traefikDynamicConfig(labSettings) as DynamicConfig, entryPoints), [
    { router: 'site1', problem: 'middleware nope@file does not exist' },
  ]);
});

test('siteRouterLabels refuses bad input', () => {
  assert.throws(() => siteRouterLabels({ id: 1, domains: [], port: 80 }), TraefikVarsError);
  assert.throws(() => siteRouterLabels({ id: 1, domains: ['Example.com'], port: 80 }), TraefikVarsError);
  assert.throws(() => siteRouterLabels({ id: 1, domains: ['a.com`) || Host(`evil.com'], port: 80 }), TraefikVarsError);
  assert.throws(() => siteRouterLabels({ id: 1, domains: ['a.com'], port: 0 }), TraefikVarsError);
  assert.throws(() => siteRouterLabels({ id: 'a b', domains: ['a.com'], port: 80 }), TraefikVarsError);
  assert.throws(() => siteRouterLabels({ id: 1, domains: ['a.com'], port: 80, adminAllowlist: [] }), TraefikVarsError);
  assert.throws(() => siteRouterLabels({ id: 1, domains: ['a.com'], port: 80, adminAllowlist: ['10.0.0.0/33'] }), TraefikVarsError);
});

test('rule parser: accepts v3 rules, rejects v2 syntax and malformed rules with a position', () => {
  const good = [
    'Host(`example.com`)',
    'Host(`a.com`) && PathPrefix(`/wp-admin`)',
    '(Host(`a.com`) || Host(`b.com`)) && !Path(`/x`)',
    'Header(`X-Test`, `1`) && Method(`POST`)',
    'HostRegexp(`^.+\\.example\\.com$`) || ClientIP(`10.0.0.0/8`)',
    'Query(`preview`, `true`)',
  ];
  for (const g of good) assert.doesNotThrow(() => parseRule(g), g);
  const bad: Array<[string, RegExp]> = [
    ['Host(`a.com`, `b.com`)', /takes 1 argument/],
    ['Host(`a.com`) &&', /expected a matcher/],
    ['(Host(`a.com`)', /expected "\)"/],
    ['Hots(`a.com`)', /unknown matcher Hots/],
    ['Host(`A.com`)', /lower-case host name/],
    ['PathPrefix(`wp-admin`)', /must start with/],
    ['Host(`a.com) && Path(`/`)', /position/],
    ['Host(`a.com`) Path(`/`)', /trailing input/],
    ['ClientIP(`10.0.0.0/40`)', /not an IP address or CIDR/],
    ['PathRegexp(`(?=x)`)', /RE2/],
    ['HostRegexp(`{sub:[a-z]+}.a.com`)', /v2 syntax/],
  ];
  for (const [rule, msg] of bad) {
    assert.throws(
      () => parseRule(rule),
      (e: unknown) => e instanceof RuleSyntaxError && msg.test(e.message),
      rule,
    );
  }
  // precedence: && binds tighter than ||
  const t = parseRule('Host(`a.com`) || Host(`b.com`) && Path(`/x`)');
  assert.equal(t.type, 'or');
  assert.equal(evaluateRule(t, { host: 'a.com', path: '/' }), true);
  assert.equal(evaluateRule(t, { host: 'b.com', path: '/' }), false);
});

function stackChecks(s: TraefikSettings, externalConfigs = false): void {
  const bundle = traefikStack(s, { externalConfigs });
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const doc = YAML.parse(bundle.stackYaml) as Record<string, any>; // free-form document
  assertValid('compose', doc);
  assertValid('docker-stack-v3', doc);
  const svc = doc.services.traefik;
  assert.deepEqual(svc.deploy.placement.constraints, ['node.role == manager']);
  assert.equal(svc.deploy.endpoint_mode, s.endpointMode);
  for (const p of svc.ports) assert.equal(p.mode, 'host');
  assert.deepEqual(
    svc.ports.map((p: { published: number; protocol: string }) => `${p.published}/${p.protocol}`),
    ['80/tcp', '443/tcp', '443/udp', '8082/tcp'],
  );
  // labels live under deploy.labels (swarm provider reads service labels, not container labels)
  assert.equal(svc.labels, undefined);
  assert.equal(svc.deploy.labels['traefik.enable'], 'true');
  // configs are content-addressed (Docker configs are immutable)
  assert.match(doc.configs.traefik_static.name, /^traefik_static_[0-9a-f]{8}$/);
  assert.match(doc.configs.traefik_dynamic.name, /^traefik_dynamic_[0-9a-f]{8}$/);
  // the overlay is created by roles/swarm-manager before any stack; Traefik joins it (a stack-created network of
  // the same name fails to deploy: seen in the lab)
  assert.deepEqual(doc.networks['traefik-public'], { external: true, name: 'traefik-public' });
}

test('stack file validates against docker/cli v3.13 and compose-spec; host ports, managers, endpoint mode', () => {
  stackChecks(labSettings);
  stackChecks(prodSettings);
  stackChecks(prodSettings, true);
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const lab = YAML.parse(traefikStack(labSettings).stackYaml) as Record<string, any>; // free-form
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const prod = YAML.parse(traefikStack(prodSettings).stackYaml) as Record<string, any>; // free-form
  // ONE owner of ACME storage with HTTP-01; per-node storage and one replica per manager with DNS-01
  assert.equal(lab.services.traefik.deploy.mode, 'replicated');
  assert.equal(lab.services.traefik.deploy.replicas, 1);
  assert.equal(lab.services.traefik.deploy.update_config.order, 'stop-first');
  assert.equal(prod.services.traefik.deploy.mode, 'global');
  assert.equal(prod.services.traefik.deploy.endpoint_mode, 'vip');
  assert.equal(prod.services.traefik.environment.CF_DNS_API_TOKEN_FILE, '/run/secrets/cf_dns_api_token');
  assert.equal(prod.secrets.cf_dns_api_token.external, true);
  assert.equal(lab.secrets.cf_dns_api_token, undefined);
  // a change of configuration changes the config's name
  const other = traefikStack(traefikSettings({ ...baseVars, hsts_seconds: 600 }));
  assert.notEqual(YAML.parse(other.stackYaml).configs.traefik_dynamic.name, lab.configs.traefik_dynamic.name);
  assert.equal(YAML.parse(other.stackYaml).configs.traefik_static.name, lab.configs.traefik_static.name);
  // the stack schema check is not vacuous
  const broken = structuredClone(lab);
  broken.services.traefik.deploy.placement.constraint = ['node.role == manager'];
  assert.equal(validateAgainst('docker-stack-v3', broken).valid, false);
  assert.equal(validateAgainst('compose', broken).valid, false);
});

test('inventory variables are checked', () => {
  assert.throws(() => traefikSettings({ ...baseVars, management_cidrs: [] }), TraefikVarsError);
  assert.throws(() => traefikSettings({ ...baseVars, management_cidrs: ['everyone'] }), TraefikVarsError);
  assert.throws(() => traefikSettings({ ...baseVars, swarm_endpoint_mode: 'ingress' }), TraefikVarsError);
  assert.throws(() => traefikSettings({ ...baseVars, acme_email: 'nobody' }), TraefikVarsError);
  assert.throws(() => traefikSettings({ ...baseVars, acme_challenge: 'cloudflare', swarm_managers: 5 }), /duplicate certificates/);
  assert.equal(labSettings.acmeStaging, true, 'staging CA unless the inventory says otherwise');
});

test("Let's Encrypt budget: one owner per order, rollouts batched under 300 orders per 3 hours", () => {
  const single = letsEncryptBudget({ acmeChallenge: 'http', managers: 3 }, 250);
  assert.equal(single.ok, true);
  assert.equal(single.sitesPer3Hours, 300);
  const big = letsEncryptBudget({ acmeChallenge: 'http', managers: 3 }, 500);
  assert.equal(big.ok, false);
  assert.match(big.reasons[0]!, /at most 300 sites per 3 hours/);
  const dns = letsEncryptBudget({ acmeChallenge: 'cloudflare', managers: 3 }, 90);
  assert.equal(dns.orders, 270);
  assert.equal(dns.duplicatesPerSite, 3);
  assert.equal(dns.sitesPer3Hours, 100);
  assert.equal(letsEncryptBudget({ acmeChallenge: 'cloudflare', managers: 5 }, 1).ok, false);
});

test('the bouncer reaches the CrowdSec local API over TLS with the crowdsec role CA, bind-mounted read-only', () => {
  const s = traefikSettings({ ...baseVars, crowdsec_lapi_url: 'https://10.77.0.11:8080' });
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const bouncer = (traefikDynamicConfig(s) as Record<string, any>).http.middlewares.crowdsec.plugin.crowdsec; // free-form
  assert.equal(bouncer.crowdsecLapiScheme, 'https');
  assert.equal(bouncer.crowdsecLapiHost, '10.77.0.11:8080');
  assert.equal(bouncer.crowdsecLapiTLSCertificateAuthorityFile, '/etc/traefik/crowdsec-ca.crt');
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const stack = YAML.parse(traefikStack(s).stackYaml) as Record<string, any>; // free-form
  const mount = stack.services.traefik.volumes.find((v: { target: string }) => v.target === '/etc/traefik/crowdsec-ca.crt');
  assert.deepEqual(mount, { type: 'bind', source: '/etc/crowdsec/tls/ca.crt', target: '/etc/traefik/crowdsec-ca.crt', read_only: true });
  const plain = traefikSettings({ ...baseVars, crowdsec_lapi_url: 'http://crowdsec-lapi:8080' });
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const plainBouncer = (traefikDynamicConfig(plain) as Record<string, any>).http.middlewares.crowdsec.plugin.crowdsec; // free-form
  assert.equal(plainBouncer.crowdsecLapiTLSCertificateAuthorityFile, undefined);
});
