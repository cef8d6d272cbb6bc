// The site nginx image's entrypoint (files/images/nginx/bin/wpfarm-entrypoint) as a builder of nginx's server
// block: run with `sh` and a stand-in `nginx` on PATH (its `nginx -t` is lab 50's and lab 76's), the generated
// site.conf read back. The admin allowlist on wp-login.php and wp-admin, and the farm's own probe of the login
// form (NGINX_PROBE_FROM: a GET/HEAD straight from the overlay, no X-Forwarded-For) through it, wp-login only.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { IMAGES_DIR } from '../../roles/wp-site/images.ts';

const ENTRYPOINT = path.join(IMAGES_DIR, 'nginx', 'bin', 'wpfarm-entrypoint');
const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-nginx-ep-'));
mkdirSync(path.join(dir, 'bin'));
writeFileSync(path.join(dir, 'bin', 'nginx'), '#!/bin/sh\nexit 0\n');
chmodSync(path.join(dir, 'bin', 'nginx'), 0o755);
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
/** The entrypoint with this environment (and `true` as the command it execs): its exit, stderr and site.conf. */
function render(env: Record<string, string>): { code: number | null; stderr: string; conf: string } {
  const out = path.join(dir, `site-${++n}.conf`);
  const r = spawnSync('sh', [ENTRYPOINT, 'true'], {
    encoding: 'utf8',
    env: { PATH: `${path.join(dir, 'bin')}:/usr/bin:/bin`, WPFARM_NGINX_SITE_CONF: out, NGINX_SERVER_NAMES: 'a.example', ...env },
  });
  let conf = '';
  try {
    conf = readFileSync(out, 'utf8');
  } catch {
    // not written (a refused value)
  }
  return { code: r.status, stderr: r.stderr, conf };
}
/** The one line of a location block's opening. */
const locationLine = (conf: string, loc: string): string => {
  const l = conf.split('\n').find((x) => x.trimStart().startsWith(`location ${loc} {`));
  assert.ok(l, `location ${loc} in:\n${conf}`);
  return l.trim();
};

test('allowlist and probe range: wp-login lets the unproxied GET/HEAD from the overlay through, wp-admin does not', () => {
  const r = render({ NGINX_ADMIN_ALLOWLIST: '203.0.113.0/24 2001:db8::/32', NGINX_PROBE_FROM: '10.0.0.0/8' });
  assert.equal(r.code, 0, r.stderr);
  // the peer before real_ip, and no proxy on the way (Traefik, the edge and Varnish always add the header)
  assert.match(r.conf, /^geo \$realip_remote_addr \$wpfarm_farm_peer \{\n {4}default 0;\n {4}10\.0\.0\.0\/8 1;\n\}$/m);
  assert.match(
    r.conf,
    /^map "\$wpfarm_farm_peer:\$request_method:\$http_x_forwarded_for" \$wpfarm_farm_probe \{\n {4}"~\^1:\(GET\|HEAD\):\$" 1;\n {4}default 0;\n\}$/m,
  );
  assert.equal(
    locationLine(r.conf, '= /wp-login.php'),
    'location = /wp-login.php { allow 203.0.113.0/24; allow 2001:db8::/32; deny all; satisfy any; auth_request /wpfarm-farm-probe;',
  );
  // the probe check: internal (a client cannot ask it), 204 for the probe, 403 for anything else
  assert.equal(
    locationLine(r.conf, '= /wpfarm-farm-probe'),
    'location = /wpfarm-farm-probe { internal; access_log off; if ($wpfarm_farm_probe = 0) { return 403; } return 204; }',
  );
  // wp-admin: the allowlist alone
  assert.equal(locationLine(r.conf, '^~ /wp-admin/'), 'location ^~ /wp-admin/ { allow 203.0.113.0/24; allow 2001:db8::/32; deny all;');
  assert.equal(r.conf.match(/auth_request/g)?.length, 1, 'auth_request on wp-login only');
  // the login rate limit still applies to every wp-login request (preaccess, before the access phase)
  assert.match(r.conf, /location = \/wp-login\.php \{[^\n]*\n {8}limit_req zone=wp_login burst=5 nodelay;/);
});

test('no probe range (the image default), or no allowlist: wp-login as before, no probe block', () => {
  const noProbe = render({ NGINX_ADMIN_ALLOWLIST: '203.0.113.0/24' });
  assert.equal(noProbe.code, 0, noProbe.stderr);
  assert.equal(locationLine(noProbe.conf, '= /wp-login.php'), 'location = /wp-login.php { allow 203.0.113.0/24; deny all;');
  assert.doesNotMatch(noProbe.conf, /wpfarm_farm_probe|auth_request|satisfy/);
  // an empty allowlist opens wp-login to everyone: nothing to let through
  const open = render({ NGINX_PROBE_FROM: '10.0.0.0/8' });
  assert.equal(open.code, 0, open.stderr);
  assert.equal(locationLine(open.conf, '= /wp-login.php'), 'location = /wp-login.php {');
  assert.doesNotMatch(open.conf, /wpfarm_farm_probe|auth_request|satisfy/);
});

test('a bad NGINX_PROBE_FROM is refused before anything is written (exit 64, the variable named)', () => {
  for (const bad of ['10.0.0.0/8;allow all', 'any', '10.0.0.0/8 }']) {
    const r = render({ NGINX_ADMIN_ALLOWLIST: '203.0.113.0/24', NGINX_PROBE_FROM: bad });
    assert.equal(r.code, 64, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, /wpfarm-nginx: NGINX_PROBE_FROM: invalid value/);
    assert.equal(r.conf, '', 'no site.conf');
  }
});
