// Circuit breaker and retries on the site routers (issue 18, item 2). Traefik's binary cannot be obtained
// here, so the proof is the same as for the rest of the Traefik configuration: the file-provider
// middlewares validate against SchemaStore's traefik-v3-file-provider.json, every site router (from
// siteRouterLabels and from wp-site's rendered stacks) converts back to dynamic configuration that
// validates, references them in the intended order and resolves; and, with all sites' routers in one
// table as Traefik holds them, our rule parser routes each site's requests to that site's routers only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import {
  traefikSettings,
  traefikDynamicConfig,
  traefikStack,
  siteRouterLabels,
  siteName,
  ENTRY_POINTS,
  TraefikVarsError,
  type SiteInput,
} from '../../roles/traefik/config.ts';
import { labelsToDynamic, checkReferences, type DynamicConfig } from '../../roles/traefik/labels.ts';
import { parseRule, evaluateRule, ruleHosts, type RuleRequest } from '../../roles/traefik/rules.ts';
import { validateAgainst } from '../../roles/traefik/schema-check.ts';
import { RESILIENCE_DEFAULTS, checkBreakerExpression, ResilienceVarsError } from '../../roles/traefik/resilience.ts';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';
import { renderSiteStack } from '../../roles/wp-site/stack.ts';
import { generateSiteSecrets, siteSecretHashes } from '../../roles/wp-site/secrets.ts';

const baseVars = {
  management_cidrs: ['10.10.0.0/24'],
  acme_email: 'ops@example.net',
  traefik_dashboard_host: 'traefik.mgmt.example.net',
  swarm_endpoint_mode: 'dnsrr',
};
const settings = traefikSettings(baseVars);
const fileCfg = traefikDynamicConfig(settings) as DynamicConfig;
const entryPoints = Object.keys(ENTRY_POINTS);
const CHAIN = ['circuit-breaker@file', 'retry@file'];

test('dynamic.yml: circuit-breaker and retry middlewares validate against the file-provider schema, with the defaults', () => {
  const v = validateAgainst('traefik-dynamic', fileCfg);
  assert.equal(v.valid, true, v.errors.join('\n'));
  const mw = fileCfg.http!.middlewares!;
  assert.deepEqual(mw['circuit-breaker'], { circuitBreaker: RESILIENCE_DEFAULTS.circuitBreaker });
  assert.deepEqual(mw.retry, { retry: { attempts: 3, initialInterval: '100ms' } });
  // what the Docker config holds is the same document
  const fromYaml = YAML.parse(traefikStack(settings).files['dynamic.yml']!) as DynamicConfig;
  assert.deepEqual(fromYaml.http!.middlewares!['circuit-breaker'], mw['circuit-breaker']);
  // inventory values flow through, and change the content-hashed config name
  const tuned = traefikSettings({
    ...baseVars,
    traefik_circuit_breaker: { expression: 'NetworkErrorRatio() > 0.2', fallback_duration: '30s', response_code: 502 },
    traefik_retry: { attempts: 2, initial_interval: '50ms' },
  });
  const t = traefikDynamicConfig(tuned) as DynamicConfig;
  assert.equal(validateAgainst('traefik-dynamic', t).valid, true);
  assert.deepEqual(t.http!.middlewares!['circuit-breaker'], {
    circuitBreaker: {
      ...RESILIENCE_DEFAULTS.circuitBreaker,
      expression: 'NetworkErrorRatio() > 0.2',
      fallbackDuration: '30s',
      responseCode: 502,
    },
  });
  assert.deepEqual(t.http!.middlewares!.retry, { retry: { attempts: 2, initialInterval: '50ms' } });
  const name = (s: typeof settings) => (YAML.parse(traefikStack(s).stackYaml) as { configs: Record<string, { name: string }> }).configs;
  assert.notEqual(name(tuned).traefik_dynamic!.name, name(settings).traefik_dynamic!.name);
});

test('the schema check of these middlewares is not vacuous', () => {
  const bad = (mutate: (m: Record<string, Record<string, Record<string, unknown>>>) => void) => {
    const c = structuredClone(fileCfg) as DynamicConfig;
    mutate(c.http!.middlewares! as Record<string, Record<string, Record<string, unknown>>>);
    return validateAgainst('traefik-dynamic', c).valid;
  };
  assert.equal(
    bad((m) => {
      delete m.retry!.retry!.attempts;
    }),
    false,
    'retry without attempts',
  );
  assert.equal(
    bad((m) => {
      m.retry!.retry!.attempts = '3';
    }),
    false,
    'attempts as a string',
  );
  assert.equal(
    bad((m) => {
      m['circuit-breaker']!.circuitBreaker!.fallback = '10s';
    }),
    false,
    'unknown breaker key',
  );
  assert.equal(
    bad((m) => {
      m['circuit-breaker']!.circuitBreaker!.responseCode = '503';
    }),
    false,
    'responseCode as a string',
  );
});

test('circuit breaker expressions: the grammar Traefik accepts, errors with a position', () => {
  for (const ok of [
    RESILIENCE_DEFAULTS.circuitBreaker.expression,
    'NetworkErrorRatio() > 0.5',
    'LatencyAtQuantileMS(99.9) >= 2000',
    '(NetworkErrorRatio() > 0.3 && ResponseCodeRatio(500, 600, 0, 600) > 0.25) || LatencyAtQuantileMS(50) > 100',
  ]) {
    assert.doesNotThrow(() => checkBreakerExpression(ok), ok);
  }
  const bad: Array<[string, RegExp]> = [
    ['NetworkErrorRatio > 0.5', /expected "\(" at position 18/],
    ['NetworkErrorRatio() 0.5', /expected a comparison/],
    ['NetworkErrorRate() > 0.5', /unknown function NetworkErrorRate/],
    ['ResponseCodeRatio(500, 600, 0) > 0.5', /expected "," at position 29/],
    ['ResponseCodeRatio(600, 500, 0, 600) > 0.5', /empty or invalid code range/],
    ['ResponseCodeRatio(500.5, 600, 0, 600) > 0.5', /expected an integer/],
    ['LatencyAtQuantileMS(150) > 100', /quantile/],
    ['NetworkErrorRatio() > 0.5 ||', /expected NetworkErrorRatio/],
    ['NetworkErrorRatio() > 0.5 and LatencyAtQuantileMS(50) > 1', /trailing input/],
    ['(NetworkErrorRatio() > 0.5', /expected "\)"/],
    ['NetworkErrorRatio() > 0.5; rm -rf /', /unexpected input/],
  ];
  for (const [expr, msg] of bad) {
    assert.throws(
      () => checkBreakerExpression(expr),
      (e: unknown) => e instanceof ResilienceVarsError && msg.test(e.message),
      expr,
    );
  }
});

test('bad resilience variables are refused with the variable named (TraefikVarsError, exit 4 in the role)', () => {
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ traefik_circuit_breaker: { expression: 'Foo() > 1' } }, /circuit breaker expression: unknown function Foo/],
    [{ traefik_circuit_breaker: { check_period: '1 second' } }, /traefik_circuit_breaker\.check_period must be a duration/],
    [{ traefik_circuit_breaker: { response_code: 200 } }, /traefik_circuit_breaker\.response_code must be a 5xx/],
    [{ traefik_circuit_breaker: { fallbackDuration: '10s' } }, /traefik_circuit_breaker: unknown key fallbackDuration/],
    [{ traefik_circuit_breaker: 'on' }, /traefik_circuit_breaker must be a mapping/],
    [{ traefik_retry: { attempts: 0 } }, /traefik_retry\.attempts must be an integer 1\.\.10/],
    [{ traefik_retry: { attempts: 8, initial_interval: '1s' } }, /back off up to 255000 ms/],
    [{ traefik_retry: { initial_interval: 100 } }, /traefik_retry\.initial_interval must be a duration/],
  ];
  for (const [extra, msg] of cases) {
    assert.throws(
      () => traefikSettings({ ...baseVars, ...extra }),
      (e: unknown) => e instanceof TraefikVarsError && msg.test(e.message),
      JSON.stringify(extra),
    );
  }
});

/** Route a request the way Traefik does: among matching routers, the highest priority wins. */
function route(cfg: DynamicConfig, req: RuleRequest): string | undefined {
  const matching = Object.entries(cfg.http?.routers ?? {})
    .filter(([, r]) => evaluateRule(parseRule(r.rule as string), req))
    .sort(([, a], [, b]) => ((b.priority as number) ?? 0) - ((a.priority as number) ?? 0));
  return matching[0]?.[0];
}

/** Merge several services' converted labels into one table, as Traefik's swarm provider does. */
function merge(configs: DynamicConfig[]): DynamicConfig {
  const out: Required<NonNullable<DynamicConfig['http']>> = { routers: {}, services: {}, middlewares: {} };
  for (const c of configs) {
    for (const kind of ['routers', 'services', 'middlewares'] as const) {
      for (const [k, v] of Object.entries(c.http?.[kind] ?? {})) {
        assert.equal(out[kind][k], undefined, `${kind} ${k} defined twice across sites`);
        out[kind][k] = v;
      }
    }
  }
  return { http: out };
}

// Neighbouring names on purpose: a suffix, a prefix, another TLD, a sub-domain that is a site of its own.
const sites: SiteInput[] = [
  { id: 1, domains: ['example.com', 'www.example.com'], port: 80 },
  { id: 2, domains: ['shop.example.com'], port: 80, sticky: true },
  { id: 3, domains: ['example.co'], port: 80, adminAllowlist: ['198.51.100.0/24'] },
  { id: 4, domains: ['example.com.au'], port: 80 },
  { id: 'wp-admin', domains: ['wp-admin.example.com'], port: 8080 },
  { id: 6, domains: ['myexample.com'], port: 80 },
];
const PATHS = ['/', '/wp-admin/', '/wp-admin/options.php', '/wp-login.php', '/wp-admin/admin-ajax.php', '/wp-json/wp/v2/posts', '/?p=1'];

test('every site router carries the circuit breaker then the retries, last; labels validate and resolve', () => {
  for (const crowdsec of [true, false]) {
    for (const site of sites) {
      const { config } = labelsToDynamic(siteRouterLabels(site, { crowdsec }), `wp_${site.id}_web`);
      const v = validateAgainst('traefik-dynamic', config);
      assert.equal(v.valid, true, v.errors.join('\n'));
      assert.deepEqual(checkReferences(config, fileCfg, entryPoints), []);
      for (const [name, r] of Object.entries(config.http!.routers!)) {
        const mws = r.middlewares as string[];
        assert.deepEqual(mws.slice(-2), CHAIN, name);
        assert.equal(mws.filter((m) => CHAIN.includes(m)).length, 2, `${name}: each once`);
        // refused requests (allow list, CrowdSec, rate limit) are never retried nor counted by the breaker
        for (const guard of ['wp-admin-allowlist@file', 'crowdsec@file', 'rate-limit@file', `${r.service}-admin-allow`]) {
          if (mws.includes(guard)) assert.ok(mws.indexOf(guard) < mws.indexOf(CHAIN[0]!), `${name}: ${guard} before the breaker`);
        }
      }
    }
  }
});

test('with every site in one routing table, each router matches only its own site (our rule parser)', () => {
  const perSite = sites.map((s) => labelsToDynamic(siteRouterLabels(s), `wp_${s.id}_web`).config);
  const table = merge(perSite);
  const owner = new Map<string, number>(); // router → site index
  perSite.forEach((c, i) => {
    for (const r of Object.keys(c.http!.routers!)) owner.set(r, i);
  });
  // no host appears in two sites' rules
  const hostOwner = new Map<string, number>();
  for (const [r, def] of Object.entries(table.http!.routers!)) {
    for (const h of ruleHosts(parseRule(def.rule as string))) {
      const prev = hostOwner.get(h);
      assert.ok(prev === undefined || prev === owner.get(r), `${h} in the rules of two sites`);
      hostOwner.set(h, owner.get(r)!);
    }
  }
  let checked = 0;
  sites.forEach((site, i) => {
    for (const domain of site.domains) {
      for (const host of [domain, domain.toUpperCase(), `${domain}:443`]) {
        for (const path of PATHS) {
          const r = route(table, { host, path });
          assert.ok(r !== undefined, `${host}${path}: no router`);
          assert.equal(owner.get(r), i, `${host}${path} went to ${r}, a router of another site`);
          const admin = (path.startsWith('/wp-admin') && path !== '/wp-admin/admin-ajax.php') || path === '/wp-login.php';
          assert.equal(r, admin ? `${siteName(site.id)}-admin` : siteName(site.id), `${host}${path}`);
          checked++;
        }
      }
    }
  });
  assert.equal(checked, 7 * 3 * PATHS.length);
  // hosts of no site match no router at all
  for (const host of ['a.example.com', 'example.com.evil.net', 'xexample.com', 'example', 'com', 'www.example.co', 'wp-admin.example.co']) {
    for (const path of PATHS) assert.equal(route(table, { host, path }), undefined, `${host}${path}`);
  }
});

test("wp-site's rendered stacks: routers carry the chain and match only their own site", () => {
  const records = [
    'id: alpha\ndomain: alpha.example.org\naliases: [www.alpha.example.org]\n',
    'id: beta\ndomain: beta.alpha.example.org\nsticky: true\n',
    'id: gamma\ndomain: alpha.example.org.uk\n',
  ];
  const configs: DynamicConfig[] = [];
  const domains: string[][] = [];
  for (const text of records) {
    const id = /^id: ([a-z]+)/.exec(text)![1];
    const site = parseSiteRecord(`inventory/sites/${id}.yml`, text, { management_cidrs: ['203.0.113.0/24'] });
    const stack = renderSiteStack(site, {
      registry: 'r:5000',
      images: {
        wordpressFpm: 'r:5000/wpfarm/wordpress-fpm:1',
        nginx: 'r:5000/wpfarm/nginx:1',
        redis: 'r:5000/wpfarm/redis:1',
        varnish: 'r:5000/wpfarm/varnish:1',
      },
      glusterSitesPath: '/mnt/gluster/sites',
      endpointMode: 'vip',
      db: { host: 'galera', port: 3306 },
      secretHashes: { [site.id]: siteSecretHashes(generateSiteSecrets()) },
    });
    const spec = YAML.parse(stack.yaml) as { services: Record<string, { deploy?: { labels?: Record<string, string> } }> };
    const [svcName, svc] = Object.entries(spec.services).find(([, s]) => s.deploy?.labels?.['traefik.enable'] === 'true')!;
    const { config } = labelsToDynamic(svc.deploy!.labels!, `${stack.stack}_${svcName}`);
    assert.equal(validateAgainst('traefik-dynamic', config).valid, true);
    assert.deepEqual(checkReferences(config, fileCfg, entryPoints), []);
    for (const r of Object.values(config.http!.routers!)) assert.deepEqual((r.middlewares as string[]).slice(-2), CHAIN);
    configs.push(config);
    domains.push([site.domain, ...(site.aliases ?? [])]);
  }
  const table = merge(configs);
  configs.forEach((c, i) => {
    const own = new Set(Object.keys(c.http!.routers!));
    for (const d of domains[i]!) for (const path of PATHS) assert.ok(own.has(route(table, { host: d, path })!), `${d}${path}`);
  });
  assert.equal(route(table, { host: 'example.org', path: '/' }), undefined);
});
