// Integration with the wp-site role: the Traefik labels in a rendered site stack (what the swarm
// provider will read) convert back to dynamic configuration that validates against Traefik's
// file-provider schema and whose routers reference middlewares that the traefik role's dynamic.yml
// defines, entry points of its static configuration, and services that exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';
import { renderSiteStack } from '../../roles/wp-site/stack.ts';
import { generateSiteSecrets, siteSecretHashes } from '../../roles/wp-site/secrets.ts';
import { labelsToDynamic, checkReferences, type DynamicConfig } from '../../roles/traefik/labels.ts';
import { traefikSettings, traefikDynamicConfig, ENTRY_POINTS } from '../../roles/traefik/config.ts';
import { parseRule, ruleHosts } from '../../roles/traefik/rules.ts';
import { repoRoot, validateAgainst } from '../../roles/traefik/schema-check.ts';

const settings = traefikSettings({
  management_cidrs: ['203.0.113.0/24'],
  acme_email: 'ops@example.net',
  traefik_dashboard_host: 'traefik.example.net',
});
const fileCfg = traefikDynamicConfig(settings) as DynamicConfig;

function render(text: string, endpointMode: 'dnsrr' | 'vip') {
  const id = /^id:\s*([a-z0-9-]+)/m.exec(text)![1];
  const site = parseSiteRecord(`inventory/sites/${id}.yml`, text, { management_cidrs: ['203.0.113.0/24'] });
  return {
    site,
    stack: renderSiteStack(site, {
      registry: 'r:5000',
      images: {
        wordpressFpm: 'r:5000/wpfarm/wordpress-fpm:1',
        nginx: 'r:5000/wpfarm/nginx:1',
        redis: 'r:5000/wpfarm/redis:1',
        varnish: 'r:5000/wpfarm/varnish:1',
      },
      glusterSitesPath: '/mnt/gluster/sites',
      endpointMode,
      db: { host: 'galera', port: 3306 },
      secretHashes: { [site.id]: siteSecretHashes(generateSiteSecrets()) },
    }),
  };
}

test("wp-site's rendered stacks carry labels that Traefik's schema and the traefik role's configuration accept", () => {
  const example = readFileSync(path.join(repoRoot, 'inventory/sites/_example.yml'), 'utf8');
  const cases = [
    example,
    'id: shop\ndomain: shop.example.org\nsticky: true\n',
    'id: blog\ndomain: blog.example.net\naliases: [www.blog.example.net]\n',
  ];
  let routers = 0;
  for (const text of cases) {
    for (const mode of ['dnsrr', 'vip'] as const) {
      const { site, stack } = render(text, mode);
      const spec = YAML.parse(stack.yaml) as { services: Record<string, { deploy?: { labels?: Record<string, string> } }> };
      const labelled = Object.entries(spec.services).filter(([, s]) => s.deploy?.labels?.['traefik.enable'] === 'true');
      assert.equal(labelled.length, 1, 'one service is routed by Traefik');
      const [svcName, svc] = labelled[0]!;
      const { provider, config } = labelsToDynamic(svc.deploy!.labels!, `${stack.stack}_${svcName}`);
      assert.equal(provider.network, 'traefik-public');
      const v = validateAgainst('traefik-dynamic', config);
      assert.equal(v.valid, true, v.errors.join('\n'));
      assert.deepEqual(checkReferences(config, fileCfg, Object.keys(ENTRY_POINTS)), []);
      const domains = [site.domain, ...(site.aliases ?? [])].sort();
      for (const r of Object.values(config.http!.routers!)) {
        assert.deepEqual([...new Set(ruleHosts(parseRule(r.rule as string)))].sort(), domains);
        routers++;
      }
    }
  }
  assert.equal(routers, 12);
});
