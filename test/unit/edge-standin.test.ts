// The lab's edge stand-in (roles/traefik/standin.ts): HAProxy's configuration generated from Traefik's router
// model, checked as text. The same labels the wp-site role puts on a site's service (siteRouterLabels) and the
// file provider's middlewares (traefikDynamicConfig) go in; routers, allow lists, rate limit, headers, redirect
// and TLS options must come out, and what HAProxy cannot express must be listed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { siteRouterLabels, traefikSettings } from '../../roles/traefik/config.ts';
import { StandinError, crtList, edgeModel, haproxyConfig, type LabelledService } from '../../roles/traefik/standin.ts';

const settings = (extra: Record<string, unknown> = {}) =>
  traefikSettings({
    management_cidrs: ['10.78.0.0/24'],
    acme_email: 'ops@example.com',
    traefik_dashboard_host: 'traefik.lab.example.com',
    ...extra,
  });
const blog: LabelledService = {
  service: 'wp-blog-example-test_nginx',
  labels: siteRouterLabels(
    { id: 'blog-example-test', domains: ['blog.example.test', 'www.blog.example.test'], port: 8080, sticky: true },
    { endpointMode: 'dnsrr' },
  ),
};
const shop: LabelledService = {
  service: 'wp-shop_varnish',
  labels: siteRouterLabels({ id: 'shop', domains: ['shop.example.test'], port: 6081, adminAllowlist: ['192.0.2.0/24'] }, {}),
};
const lines = (text: string) => text.split('\n').map((l) => l.trim());

test('routers: admin before site (priority), each host a term, the first match wins, unknown hosts 404', () => {
  const m = edgeModel(settings(), [blog, shop]);
  assert.deepEqual(
    m.routers.map((r) => `${r.name} ${r.priority} ${r.backend}`),
    [
      'site-blog-example-test-admin 20 site-blog-example-test',
      'site-shop-admin 20 site-shop',
      'site-blog-example-test 10 site-blog-example-test',
      'site-shop 10 site-shop',
    ],
  );
  const cfg = lines(haproxyConfig(m, { crtList: '/usr/local/etc/haproxy/crt-list' }));
  const first = cfg.findIndex((l) => l.includes('str(site-blog-example-test-admin)'));
  const site = cfg.findIndex((l) => l.includes('str(site-blog-example-test)'));
  assert.ok(first > 0 && site > first, 'the admin router is tried first');
  // (Host(a) || Host(b)) && (PathPrefix(/wp-admin) || Path(/wp-login.php)) && !Path(admin-ajax): 4 terms
  assert.equal(cfg.filter((l) => l.includes('str(site-blog-example-test-admin)')).length, 4);
  assert.ok(
    cfg.includes(
      'http-request set-var(txn.router) str(site-blog-example-test-admin) if !{ var(txn.router) -m found } ' +
        '{ req.hdr(host),field(1,:),lower -m str www.blog.example.test } { path -m str /wp-login.php } ' +
        '!{ path -m str /wp-admin/admin-ajax.php }',
    ),
  );
  assert.ok(cfg.includes('http-request deny deny_status 404 unless { var(txn.router) -m found }'));
  assert.ok(cfg.includes('use_backend site-shop if { var(txn.router) -m str site-shop-admin }'));
  assert.deepEqual(m.hosts, ['blog.example.test', 'shop.example.test', 'traefik.lab.example.com', 'www.blog.example.test']);
});

test('admin allow lists: the farm management ranges, or the site own; checked before the rate limit', () => {
  const cfg = lines(haproxyConfig(edgeModel(settings(), [blog, shop]), { crtList: '/x' }));
  assert.ok(cfg.includes('acl mw_wp-admin-allowlist var(txn.router) -m str site-blog-example-test-admin'));
  assert.ok(cfg.includes('http-request deny deny_status 403 if mw_wp-admin-allowlist !{ src 10.78.0.0/24 }'));
  assert.ok(cfg.includes('acl mw_swarm.site-shop-admin-allow var(txn.router) -m str site-shop-admin'));
  assert.ok(cfg.includes('http-request deny deny_status 403 if mw_swarm.site-shop-admin-allow !{ src 192.0.2.0/24 }'));
  const allow = cfg.findIndex((l) => l.startsWith('http-request deny deny_status 403'));
  const rate = cfg.findIndex((l) => l.startsWith('http-request track-sc0'));
  assert.ok(allow > 0 && rate > allow);
});

test('rate limit, headers, compression, retries, sticky cookie, health check, redirect and TLS', () => {
  const m = edgeModel(settings({ traefik_rate_limit: { average: 20, burst: 40, period: '10s' } }), [blog]);
  const cfg = haproxyConfig(m, { crtList: '/usr/local/etc/haproxy/crt-list', slots: 4 });
  const l = lines(cfg);
  // 20 per second over 10 s, plus the burst
  assert.ok(l.includes('stick-table type ip size 100k expire 60s store http_req_rate(10s)'));
  assert.ok(l.includes('http-request deny deny_status 429 if mw_rate-limit { sc0_http_req_rate(st_rate-limit) gt 240 }'));
  assert.ok(
    l.includes('http-response set-header Strict-Transport-Security "max-age=31536000; includeSubDomains; preload" if mw_secure-headers'),
  );
  assert.ok(l.includes('http-response set-header X-Frame-Options "SAMEORIGIN" if mw_secure-headers'));
  assert.ok(l.includes('http-response del-header X-Powered-By if mw_secure-headers'));
  assert.match(cfg, /Content-Security-Policy "default-src 'self';[^"]*upgrade-insecure-requests" if mw_secure-headers/);
  assert.ok(l.includes('compression algo gzip'));
  assert.ok(l.includes('retries 3'));
  assert.ok(l.includes('cookie wpfarm_site_blog_example_test insert indirect nocache dynamic secure httponly attr "SameSite=Lax"'));
  assert.ok(l.includes('http-check send meth GET uri /wp-includes/images/blank.gif ver HTTP/1.1 hdr Host wp-blog-example-test_nginx'));
  assert.ok(
    l.includes('server-template task 4 wp-blog-example-test_nginx:8080 check inter 15s resolvers swarm init-addr none resolve-prefer ipv4'),
  );
  assert.ok(l.includes('http-request redirect scheme https code 301'));
  assert.ok(l.includes('bind :443 ssl crt-list /usr/local/etc/haproxy/crt-list strict-sni'));
  assert.ok(l.includes('ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets'));
  assert.match(cfg, /ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:/);
  assert.ok(l.includes('ssl-default-bind-curves X25519:P-256:P-384'));
  assert.equal(
    crtList(m),
    '/usr/local/etc/haproxy/certs/edge-cert-blog.example.test.pem [alpn h2,http/1.1] blog.example.test\n' +
      '/usr/local/etc/haproxy/certs/edge-cert-traefik.lab.example.com.pem [alpn h2,http/1.1] traefik.lab.example.com\n' +
      '/usr/local/etc/haproxy/certs/edge-cert-www.blog.example.test.pem [alpn h2,http/1.1] www.blog.example.test\n',
  );
});

test('forwarded headers: X-Forwarded-For trusted from Cloudflare only when proxied; otherwise always dropped', () => {
  const proxied = lines(haproxyConfig(edgeModel(settings(), [blog]), { crtList: '/x' }));
  const acl = proxied.find((l) => l.startsWith('acl from_forwarder src '));
  assert.match(acl ?? '', / 173\.245\.48\.0\/20 /);
  const del = proxied.indexOf('http-request del-header x-forwarded-for unless from_forwarder');
  const setSrc = proxied.findIndex((l) => l.startsWith('http-request set-src req.hdr_ip(x-forwarded-for,-1) if from_forwarder'));
  assert.ok(del > 0 && setSrc > del, 'the header of an untrusted peer is dropped before the source is taken from it');
  const direct = lines(haproxyConfig(edgeModel(settings({ cloudflare_proxied: false }), [blog]), { crtList: '/x' }));
  assert.ok(direct.includes('http-request del-header x-forwarded-for'));
  assert.ok(!direct.some((l) => l.startsWith('http-request set-src')));
});

test('what HAProxy cannot express is listed, in the model and in the file', () => {
  const m = edgeModel(settings(), [blog]);
  assert.deepEqual(m.notExpressed, ['circuitBreaker (circuit-breaker@file)', 'plugin crowdsec (crowdsec@file)']);
  assert.match(haproxyConfig(m, { crtList: '/x' }), /# not expressed by this stand-in: circuitBreaker \(circuit-breaker@file\), plugin/);
  const noCs = edgeModel(settings({ crowdsec_bouncer_enabled: false }), [
    { ...blog, labels: siteRouterLabels({ id: 'b', domains: ['b.example.test'], port: 8080 }, { crowdsec: false }) },
  ]);
  assert.deepEqual(noCs.notExpressed, ['circuitBreaker (circuit-breaker@file)']);
});

test('rules beyond the site routers: negations distribute, methods and client IPs map, bad patterns are refused', () => {
  const labels = {
    'traefik.enable': 'true',
    'traefik.http.routers.api.rule': '!(Host(`a.example.test`) || Method(`POST`)) && ClientIP(`192.0.2.0/24`)',
    'traefik.http.routers.api.service': 'api',
    'traefik.http.services.api.loadbalancer.server.port': '9000',
  };
  const m = edgeModel(settings(), [{ service: 'x_api', labels }]);
  assert.deepEqual(m.routers[0]!.terms, [
    ['!{ req.hdr(host),field(1,:),lower -m str a.example.test }', '!{ method POST }', '{ src 192.0.2.0/24 }'],
  ]);
  const bad = { ...labels, 'traefik.http.routers.api.rule': 'Header(`X-A`, `two words`)' };
  assert.throws(() => edgeModel(settings(), [{ service: 'x_api', labels: bad }]), StandinError);
  const missing = { ...labels, 'traefik.http.routers.api.middlewares': 'nope@file' };
  assert.throws(() => edgeModel(settings(), [{ service: 'x_api', labels: missing }]), /middleware nope@file does not exist/);
});

test("the stand-in's files on an edge node: written once, unchanged on a rerun, a dropped certificate removed, check mode writes nothing", async () => {
  const { execFileSync } = await import('node:child_process');
  const { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { filesBundle, filesScript } = await import('../../roles/traefik/standin-steps.ts');
  const root = mkdtempSync(join(tmpdir(), 'wpfarm-standin-files-'));
  const dir = join(root, 'edge');
  // no stand-in container runs on this machine: the check and reload are the lab's part (test/lab/61)
  const run = (r: Parameters<typeof filesBundle>[0], check = false): string[] =>
    execFileSync('bash', ['--norc', '-c', filesScript(dir, check)], {
      input: filesBundle(r),
      encoding: 'utf8',
      env: { PATH: '/usr/bin:/bin' },
    })
      .split('\n')
      .filter(Boolean);
  const cert = (host: string) => ({
    host,
    pem: `-----BEGIN CERTIFICATE-----\n${host}\n-----BEGIN PRIVATE KEY-----\nkey-of-${host}\n`,
    issued: false,
  });
  const r1 = {
    model: {} as never,
    config: 'global\n  maxconn 10\n',
    crtList: 'a b c\n',
    certs: [cert('a.example.test'), cert('b.example.test')],
  };
  try {
    assert.deepEqual(run(r1, true), [
      '@@changed certs/edge-cert-a.example.test.pem',
      '@@changed certs/edge-cert-b.example.test.pem',
      '@@changed crt-list',
      '@@changed haproxy.cfg',
    ]);
    assert.equal(existsSync(join(dir, 'haproxy.cfg')), false, 'check mode wrote nothing');
    assert.equal(run(r1).length, 4);
    assert.equal(readFileSync(join(dir, 'haproxy.cfg'), 'utf8'), r1.config);
    assert.equal(readFileSync(join(dir, 'certs', 'edge-cert-b.example.test.pem'), 'utf8'), r1.certs[1]!.pem);
    assert.equal(statSync(join(dir, 'certs', 'edge-cert-a.example.test.pem')).mode & 0o777, 0o600);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.deepEqual(run(r1), [], 'a rerun changes nothing');
    const r2 = { ...r1, crtList: 'a c\n', certs: [r1.certs[0]!] };
    assert.deepEqual(run(r2), ['@@changed crt-list', '@@removed certs/edge-cert-b.example.test.pem']);
    assert.deepEqual(readdirSync(join(dir, 'certs')), ['edge-cert-a.example.test.pem']);
    assert.deepEqual(readdirSync(dir).sort(), ['certs', 'crt-list', 'haproxy.cfg'], 'no staging or backup left');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
