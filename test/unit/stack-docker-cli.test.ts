// The rendered stacks through the docker CLI's own stack loader (`docker stack config`: schema
// check, interpolation and conversion exactly as `docker stack deploy` does them; no daemon needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { parse } from 'yaml';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';
import { renderSiteStack, secretHash, type FarmStackSettings } from '../../roles/wp-site/stack.ts';

const INV = { management_cidrs: ['203.0.113.0/24'] };

function farm(endpointMode: 'dnsrr' | 'vip', ids: string[]): FarmStackSettings {
  return {
    registry: '10.77.0.2:5000',
    images: {
      wordpressFpm: '10.77.0.2:5000/wpfarm/wordpress-fpm:0123456789abcdef',
      nginx: '10.77.0.2:5000/wpfarm/nginx:fedcba9876543210',
      redis: '10.77.0.2:5000/wpfarm/redis:7.0',
      varnish: '10.77.0.2:5000/wpfarm/varnish:aaaabbbbccccdddd',
    },
    glusterSitesPath: '/mnt/gluster/sites',
    endpointMode,
    db: { host: 'galera', port: 3306 },
    secretHashes: Object.fromEntries(ids.map((id) => [id, { db_password: secretHash(`p${id}`), wp_keys: secretHash(`k${id}`) }])),
    overlayEncrypted: endpointMode === 'vip',
  };
}

function stackConfig(yaml: string): { code: number; out: string; err: string } {
  // DOCKER_HOST points nowhere: the command must not need (or touch) a daemon
  const r = spawnSync('docker', ['stack', 'config', '-c', '-'], {
    input: yaml,
    encoding: 'utf8',
    env: { ...process.env, DOCKER_HOST: 'unix:///nonexistent/docker.sock' },
  });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

test('docker CLI with `stack config` is available', () => {
  const help = execFileSync('docker', ['stack', '--help'], { encoding: 'utf8' });
  assert.match(help, /^\s+config\s/m, 'this docker CLI has no `stack config` (the machine image ships one in /usr/local/bin)');
});

test('docker stack config accepts the rendered stacks and reads them as meant', () => {
  const sites = [
    parseSiteRecord('s/blog1.yml', 'id: blog1\ndomain: blog.example\naliases: [www.blog.example]\nsticky: true\n', INV),
    parseSiteRecord(
      's/shop.yml',
      'id: shop\ndomain: shop.example\nreplicas: 3\nlimits: { php: { cpus: 2, memory: 1G } }\nxmlrpc: true\n' +
        'cache: { varnish: false }\n',
      INV,
    ),
  ];
  for (const mode of ['dnsrr', 'vip'] as const) {
    for (const site of sites) {
      const r = renderSiteStack(site, farm(mode, ['blog1', 'shop']));
      const res = stackConfig(r.yaml);
      assert.equal(res.code, 0, res.err);
      const c = parse(res.out);
      assert.deepEqual(Object.keys(c.services).sort(), ['nginx', 'php-fpm', 'redis', ...(site.cache.varnish ? ['varnish'] : [])]);
      // biome-ignore lint/suspicious/noExplicitAny: eslint-disable-line @typescript-eslint/no-explicit-any -- CLI output
      for (const svc of Object.values(c.services) as Record<string, any>[]) {
        // eslint-disable-line @typescript-eslint/no-explicit-any -- CLI output
        assert.equal(svc.deploy.endpoint_mode, mode);
        assert.equal(svc.deploy.update_config.parallelism, 1);
        assert.equal(svc.deploy.update_config.delay, '10s');
        assert.equal(svc.deploy.update_config.failure_action, 'rollback');
        assert.equal(svc.deploy.restart_policy.max_attempts, 3);
        assert.ok(svc.healthcheck.test.length > 1);
      }
      const fpm = c.services['php-fpm'];
      assert.equal(fpm.deploy.replicas, site.replicas);
      assert.equal(fpm.deploy.resources.limits.memory, String(site.id === 'shop' ? 1024 ** 3 : 512 * 1024 ** 2), 'memory parsed as bytes');
      assert.deepEqual(
        fpm.secrets.map((s: { mode: number }) => s.mode),
        [0o400, 0o400],
      );
      assert.equal(fpm.environment.WORDPRESS_DB_PASSWORD_FILE, '/run/secrets/db_password');
      assert.deepEqual(c.secrets.db_password, { name: r.secrets[0].name, external: true });
      assert.equal(c.networks.site.name, `wp-site-${site.id}`);
      assert.equal(c.networks.site.driver, 'overlay');
      assert.equal(c.networks['traefik-public'].external, true);
      assert.equal(c.services.nginx.environment.NGINX_XMLRPC, site.xmlrpc ? 'on' : 'off', 'stays a string');
      // Traefik routes to varnish when the site has it, else to nginx
      assert.equal(c.services[site.cache.varnish ? 'varnish' : 'nginx'].deploy.labels['traefik.enable'], 'true');
      if (site.cache.varnish) assert.equal(c.services.nginx.deploy.labels, undefined);
      assert.deepEqual(c.services.redis.command.slice(-4), ['--appendonly', 'no', '--protected-mode', 'no'], 'YAML 1.1 words stay strings');
      if (mode === 'vip') assert.equal(c.networks.site.driver_opts.encrypted, 'true');
    }
  }
});

test('docker stack config refuses what the renderer must never produce (the check is not vacuous)', () => {
  const r = renderSiteStack(parseSiteRecord('s/blog1.yml', 'id: blog1\ndomain: blog.example\n', INV), farm('dnsrr', ['blog1']));
  const bad = r.yaml.replace('    stop_grace_period: "15s"\n', '    stop_grace_period: "15s"\n    bogus: 1\n');
  assert.notEqual(bad, r.yaml);
  const res = stackConfig(bad);
  assert.notEqual(res.code, 0);
  assert.match(res.err, /bogus/);
});
