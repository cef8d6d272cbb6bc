// Per-site secrets: generation, format, and name agreement with the engine's dockerSecret().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSiteSecrets, checkWpKeys, siteSecretHashes, siteSecretPrefix, WP_KEY_NAMES } from '../../roles/wp-site/secrets.ts';
import { secretName, renderSiteStack } from '../../roles/wp-site/stack.ts';
import { hashedName } from '../../lib/ops/docker.ts';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';

test('generated secrets are fresh, well-formed and accepted', () => {
  const a = generateSiteSecrets();
  const b = generateSiteSecrets();
  assert.notEqual(a.db_password, b.db_password);
  assert.notEqual(a.wp_keys, b.wp_keys);
  assert.match(a.db_password, /^[A-Za-z0-9_-]{32}$/);
  assert.equal(checkWpKeys(a.wp_keys), null);
  const lines = a.wp_keys.trim().split('\n');
  assert.deepEqual(
    lines.map((l) => l.split('=')[0]),
    [...WP_KEY_NAMES],
  );
  for (const l of lines) assert.doesNotMatch(l.slice(l.indexOf('=') + 1), /['"\\$\s`]/, 'no quoting hazards in a key');
  assert.match(checkWpKeys('AUTH_KEY=short\n') ?? '', /shorter than 32|missing/);
  assert.match(checkWpKeys('garbage') ?? '', /NAME=value/);
});

test("rendered secret names are exactly what the engine's dockerSecret creates", () => {
  const values = generateSiteSecrets();
  const hashes = siteSecretHashes(values);
  for (const key of ['db_password', 'wp_keys'] as const) {
    assert.equal(secretName('shop', key, hashes[key]), hashedName(siteSecretPrefix('shop', key), values[key]));
  }
  const site = parseSiteRecord('s/shop.yml', 'id: shop\ndomain: shop.example\n', { management_cidrs: ['10.0.0.0/8'] });
  const r = renderSiteStack(site, {
    registry: 'r:5000',
    images: {
      wordpressFpm: 'r:5000/wpfarm/wordpress-fpm:1',
      nginx: 'r:5000/wpfarm/nginx:1',
      redis: 'r:5000/wpfarm/redis:1',
      varnish: 'r:5000/wpfarm/varnish:1',
    },
    glusterSitesPath: '/mnt/gluster/sites',
    endpointMode: 'dnsrr',
    db: { host: 'galera', port: 3306 },
    secretHashes: { shop: hashes },
  });
  assert.deepEqual(
    r.secrets.map((s) => s.name),
    [hashedName('site_shop_db_password', values.db_password), hashedName('site_shop_wp_keys', values.wp_keys)],
  );
  assert.ok(!r.yaml.includes(values.db_password));
  assert.throws(() => siteSecretHashes({ ...values, db_password: 'short' }), /shorter than 16/);
  assert.throws(() => siteSecretHashes({ ...values, wp_keys: 'AUTH_KEY=x' }), /wp_keys/);
});
