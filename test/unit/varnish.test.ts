// Varnish cache tier 2 (issue 15 item 2): the per-site VCL compiles with the real varnishd (-C) for
// several site records together with the backends include the container generates
// (files/images/varnish/bin/wpfarm-varnish-backends), and the stack routes Traefik to varnish for a
// cached site (nginx's own page cache off, nginx off traefik-public) and straight to nginx otherwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { labelsToDynamic } from '../../roles/traefik/labels.ts';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';
import { InputErrors } from '../../lib/schema.ts';
import { renderSiteStack, secretHash, siteVcl, VARNISH_PORT, NGINX_PORT, type FarmStackSettings } from '../../roles/wp-site/stack.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BACKENDS = path.join(ROOT, 'files/images/varnish/bin/wpfarm-varnish-backends');
const INV = { management_cidrs: ['203.0.113.0/24'] };

const rec = (id: string, extra = '') => parseSiteRecord(`s/${id}.yml`, `id: ${id}\ndomain: ${id}.example.com\n${extra}`, INV);

function farm(ids: string[], over: Partial<FarmStackSettings> = {}): FarmStackSettings {
  return {
    registry: '10.10.0.2:5000',
    images: {
      wordpressFpm: '10.10.0.2:5000/wpfarm/wordpress-fpm:0123456789abcdef',
      nginx: '10.10.0.2:5000/wpfarm/nginx:fedcba9876543210',
      redis: '10.10.0.2:5000/wpfarm/redis:7.0',
      varnish: '10.10.0.2:5000/wpfarm/varnish:aaaabbbbccccdddd',
    },
    glusterSitesPath: '/mnt/gluster/sites',
    endpointMode: 'dnsrr',
    db: { host: 'galera', port: 3306 },
    secretHashes: Object.fromEntries(ids.map((id) => [id, { db_password: secretHash(`p${id}`), wp_keys: secretHash(`k${id}`) }])),
    ...over,
  };
}

function backends(port: string, nginx: string, fpm: string) {
  const r = spawnSync('sh', [BACKENDS, port, nginx, fpm], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** varnishd -C of a VCL with its include next to it; returns exit code and messages. */
function compile(vcl: string, include: string): { code: number | null; err: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-vcl-'));
  chmodSync(dir, 0o755); // varnishd (as root) reads the VCL as its unprivileged user
  try {
    writeFileSync(path.join(dir, 'site.vcl'), vcl);
    writeFileSync(path.join(dir, 'wpfarm-backends.vcl'), include);
    const r = spawnSync('varnishd', ['-C', '-n', path.join(dir, 'n'), '-p', `vcl_path=${dir}`, '-f', path.join(dir, 'site.vcl')], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    return {
      code: r.status,
      err:
        r.status === 0
          ? ''
          : r.stderr
              .split('\n')
              .filter((l) => !l.startsWith(' *'))
              .slice(-20)
              .join('\n'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('varnishd is installed (apt-get install varnish)', () => {
  const r = spawnSync('varnishd', ['-V'], { encoding: 'utf8' });
  assert.equal(r.status, 0, 'varnishd -V');
  assert.match(r.stderr + r.stdout, /varnish-7\./);
});

test('the site VCL compiles with varnishd -C for several site records and backend sets', () => {
  const cases = [
    { site: rec('blog1'), f: {}, nginx: '10.0.5.3', fpm: '' },
    {
      site: rec('shop', 'aliases: [www.shop.example.com]\ncache_ttl: 120\n'),
      f: { varnishPurgeFrom: ['10.77.0.0/24', '10.77.0.5'] },
      nginx: '10.0.5.3 10.0.5.4 10.0.5.5',
      fpm: '10.0.5.9 10.0.5.10',
    },
    { site: rec('nocache', 'cache_ttl: 0\n'), f: {}, nginx: '10.0.6.2 10.0.6.3', fpm: '10.0.6.7' },
  ];
  for (const c of cases) {
    const vcl = siteVcl(c.site, c.f);
    const inc = backends(String(NGINX_PORT), c.nginx, c.fpm);
    assert.equal(inc.code, 0, inc.err);
    assert.equal((inc.out.match(/^backend nginx[0-9]+ /gm) ?? []).length, c.nginx.split(' ').length, 'one backend per nginx task');
    const r = compile(vcl, inc.out);
    assert.equal(r.code, 0, `${c.site.id}: varnishd -C failed:\n${r.err}`);
    assert.match(vcl, new RegExp(`for site ${c.site.id} `));
    if (c.site.cache_ttl === 0) assert.match(vcl, /cache_ttl is 0 for this site: Varnish passes everything through\n {2}return \(pass\);/);
    else assert.match(vcl, new RegExp(`set beresp.ttl = ${c.site.cache_ttl}s;`));
    assert.match(vcl, /set beresp.grace = 3600s;/);
  }
  // the compile check is not vacuous: a broken include or VCL is refused
  assert.notEqual(compile(siteVcl(rec('blog1'), {}), 'backend x { .host = "10.0.0.1"; }').code, 0, 'no director `nginx`: refused');
  const broken = siteVcl(rec('blog1'), {}).replace('return (purge);', 'return (purgez);');
  assert.notEqual(compile(broken, backends('8080', '10.0.0.2', '').out).code, 0, 'a broken VCL: refused');
});

test('the VCL bypasses logged-in users, admin, login, previews, non-GET and carts; PURGE/BAN only from the ACLs', () => {
  const vcl = siteVcl(rec('blog1'), { varnishPurgeFrom: ['10.77.0.0/24'] });
  for (const want of [
    /if \(req.method != "GET" && req.method != "HEAD"\) \{\n\s+return \(pass\);/,
    /wp-admin\|wp-login\\\.php/,
    /preview=true/,
    /wordpress_logged_in_\|wordpress_sec_\|wp-postpass_\|comment_author_\|woocommerce_\|wp_woocommerce_session_/,
    /unset req\.http\.Cookie;\n\s+return \(hash\);/,
    /if \(client\.ip ~ farm_purgers \|\| client\.ip ~ fpm_purgers\) \{\n\s+return \(purge\);\n\s+\}\n\s+return \(synth\(405/,
    /acl farm_purgers \{\n {2}"127\.0\.0\.1";\n {2}"10\.77\.0\.0"\/24;\n\}/,
    /if \(std\.healthy\(req\.backend_hint\)\) \{\n\s+set req\.grace = 10s;/,
  ]) {
    assert.match(vcl, want);
  }
  // the PURGE test comes before the method check (else PURGE would be passed to nginx)
  assert.ok(vcl.indexOf('req.method == "PURGE"') < vcl.indexOf('req.method != "GET"'));
  assert.throws(() => siteVcl(rec('blog1'), { varnishPurgeFrom: ['10.0.0.0/8"; "0.0.0.0"/0'] }), /varnishPurgeFrom/);
});

test('wpfarm-varnish-backends refuses bad addresses and an empty nginx set', () => {
  const bad = backends('8080', '10.0.0.1"; }', '');
  assert.equal(bad.code, 64, bad.err);
  assert.match(bad.err, /bad address/);
  assert.equal(backends('8080', '', '10.0.0.9').code, 65);
  assert.equal(backends('80a', '10.0.0.1', '').code, 64);
  const ok = backends('8080', '10.0.0.1', '10.0.0.9 10.0.0.10');
  assert.match(ok.out, /acl fpm_purgers \{\n {2}"127\.0\.0\.1";\n {2}"10\.0\.0\.9";\n {2}"10\.0\.0\.10";\n\}/);
});

test('stack: a cached site has varnish in front (routed by Traefik, nginx cache off); an uncached one routes to nginx', () => {
  const cached = rec('blog1', 'cache: { varnish: true }\ncache_ttl: 300\n');
  const plain = rec('shop', 'cache_ttl: 300\n');
  assert.equal(plain.cache.varnish, false, 'off unless the record turns it on');
  const f = farm(['blog1', 'shop'], { varnishPurgeFrom: ['10.77.0.0/24'] });

  const c = renderSiteStack(cached, f);
  const cd = parse(c.yaml, { version: '1.1' });
  assert.deepEqual(Object.keys(cd.services).sort(), ['nginx', 'php-fpm', 'redis', 'varnish']);
  const v = cd.services.varnish;
  assert.equal(v.image, f.images.varnish);
  assert.equal(v.deploy.replicas, cached.replicas);
  assert.deepEqual(Object.keys(v.networks).sort(), ['site', 'traefik-public']);
  assert.equal(Buffer.from(v.environment.WPFARM_VCL_B64, 'base64').toString(), siteVcl(cached, f), 'the VCL travels whole');
  assert.equal(v.environment.WPFARM_NGINX, 'wp-blog1_nginx');
  assert.equal(v.environment.WPFARM_FPM, 'wp-blog1_php-fpm');
  assert.equal(cd.services.nginx.environment.NGINX_CACHE_TTL, '0', "nginx's page cache is off behind Varnish");
  assert.deepEqual(Object.keys(cd.services.nginx.networks), ['site'], 'nginx only in the site network');
  assert.equal(cd.services.nginx.deploy.labels, undefined, 'no router on nginx');
  assert.equal(cd.services['php-fpm'].environment.WPFARM_VARNISH_PURGE, `wp-blog1_varnish:${VARNISH_PORT}`);
  assert.deepEqual(c.services.varnish, { image: f.images.varnish, replicas: cached.replicas });
  const routed = labelsToDynamic(v.deploy.labels, 'wp-blog1_varnish').config.http!;
  assert.equal(routed.routers!['site-blog1']!.service, 'site-blog1');
  assert.equal(v.deploy.labels['traefik.http.services.site-blog1.loadbalancer.server.port'], String(VARNISH_PORT));
  const lb = routed.services!['site-blog1']!.loadBalancer as { servers: { url: string }[] };
  assert.match(lb.servers[0]!.url, new RegExp(`:${VARNISH_PORT}$`), 'Traefik sends to the varnish port');

  const p = renderSiteStack(plain, f);
  const pd = parse(p.yaml, { version: '1.1' });
  assert.deepEqual(Object.keys(pd.services).sort(), ['nginx', 'php-fpm', 'redis']);
  assert.equal(pd.services.nginx.environment.NGINX_CACHE_TTL, '300');
  assert.equal(pd.services.nginx.deploy.labels['traefik.enable'], 'true');
  assert.equal(pd.services.nginx.deploy.labels['traefik.http.services.site-shop.loadbalancer.server.port'], String(NGINX_PORT));
  assert.equal(pd.services['php-fpm'].environment.WPFARM_VARNISH_PURGE, undefined);
  assert.equal(p.services.varnish, undefined);

  assert.throws(
    () => renderSiteStack(cached, { ...f, images: { ...f.images, varnish: undefined } }),
    /cache\.varnish is on but the farm settings have no varnish image/,
  );
});

test('site record: cache.varnish must be a boolean; unknown cache keys are refused with file and line', () => {
  for (const [text, want] of [
    ['cache: { varnish: "yes" }\n', /s\/x1\.yml:3:\d+ cache\.varnish/],
    ['cache: { varnsh: true }\n', /s\/x1\.yml:3:\d+ cache/],
  ] as const) {
    try {
      parseSiteRecord('s/x1.yml', `id: x1\ndomain: x1.example.com\n${text}`, INV);
      assert.fail('accepted');
    } catch (e) {
      assert.ok(e instanceof InputErrors, String(e));
      assert.match(e.message, want);
    }
  }
  assert.equal(parseSiteRecord('s/x1.yml', 'id: x1\ndomain: x1.example.com\ncache:\n', INV).cache.varnish, false); // an empty section takes the default (off)
});
