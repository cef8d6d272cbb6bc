// The WordPress exporter's pure parts: parsers of what the service reads, the Prometheus text it answers with,
// and the stack that deploys it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  coreVersionFromHtml,
  cronLag,
  cronTimestamps,
  escapeLabel,
  headerField,
  managedVersion,
  pageAnswered,
  parseRedisInfo,
  renderMetrics,
  serializedStrings,
  type SiteObservation,
} from '../../roles/wp-exporter/metrics.ts';
import { exporterGrantSql, renderExporterStack, storeOffers } from '../../roles/wp-exporter/stack.ts';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';

const CRON =
  'a:3:{i:1764990000;a:1:{s:16:"wp_version_check";a:1:{s:32:"40cd750bba9870f18aada2478b24840a";a:3:{s:8:"schedule";' +
  's:10:"twicedaily";s:4:"args";a:0:{}s:8:"interval";i:43200;}}}i:1764993600;a:1:{s:17:"wp_scheduled_delete";a:1:' +
  '{s:32:"40cd750bba9870f18aada2478b24840a";a:3:{s:8:"schedule";s:5:"daily";s:4:"args";a:1:{i:0;i:5;}s:8:"interval";i:86400;}}}' +
  's:7:"version";i:2;}';

test('cron: the top-level timestamps, and the lag of the oldest overdue event', () => {
  assert.deepEqual(cronTimestamps(CRON), [1764990000, 1764993600]);
  assert.equal(cronLag(CRON, 1764990000 + 125), 125);
  assert.equal(cronLag(CRON, 1764980000), 0, 'nothing due yet');
  assert.equal(cronLag('a:1:{s:7:"version";i:2;}', 1764990000), 0, 'no event');
});

test('redis INFO stats, serialized arrays, headers, managed plugin links, core version from HTML', () => {
  assert.deepEqual(parseRedisInfo('# Stats\r\ntotal_connections_received:4\r\nkeyspace_hits:90\r\nkeyspace_misses:10\r\n'), {
    hits: 90,
    misses: 10,
  });
  assert.equal(parseRedisInfo('# Stats\r\n'), null);
  assert.deepEqual(serializedStrings('a:2:{i:0;s:19:"akismet/akismet.php";i:1;s:9:"hello.php";}'), ['akismet/akismet.php', 'hello.php']);
  assert.deepEqual(serializedStrings('a:1:{i:0;s:6:"é/x.p";}'), ['é/x.p'], 'lengths in bytes');
  assert.equal(headerField('<?php\n/*\n * Plugin Name: Akismet\n * Version: 5.3.1\n */', 'Version'), '5.3.1');
  assert.equal(headerField('/*\nTheme Name: Twenty\nVersion: 1.2 */\n', 'Version'), '1.2');
  assert.equal(headerField('<?php echo 1;', 'Version'), undefined);
  assert.equal(managedVersion('.wpfarm-versions/akismet/5.3.1', 'akismet'), '5.3.1');
  assert.equal(managedVersion('.wpfarm-versions/other/5.3.1', 'akismet'), undefined);
  assert.equal(coreVersionFromHtml('<meta name="generator" content="WordPress 6.1.1" />'), '6.1.1');
  assert.equal(
    coreVersionFromHtml(
      "<link rel='stylesheet' href='https://a.example/wp-admin/load-styles.php?c=0&amp;load%5Bchunk_0%5D=login&amp;ver=6.1.4'",
    ),
    '6.1.4',
  );
  assert.equal(coreVersionFromHtml('<html>no hint</html>'), undefined);
  assert.equal(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  // a probed page answered as itself: 200 only (the allowlist's 403, a redirect, an error, no answer are not)
  assert.equal(pageAnswered(200), true);
  for (const s of [0, 204, 301, 302, 403, 429, 500, 503]) assert.equal(pageAnswered(s), false, `status ${s}`);
});

test('renderMetrics: the exact Prometheus text for two sites, updates measured against the farm offer', () => {
  const now = 1_765_000_000;
  const a: SiteObservation = {
    site: 'site-a',
    home: { seconds: 0.25, status: 200 },
    login: { seconds: 3.5, status: 200 },
    coreVersion: '6.1.1',
    plugins: [
      { slug: 'hello', version: '1.7.2', active: false },
      { slug: 'akismet', version: '5.3', active: true },
    ],
    themes: [{ slug: 'twentytwentythree', version: '1.0', active: true }],
    dbBytes: 1_048_576,
    uploadsBytes: 2048,
    cronLagSeconds: 42,
    cache: { hits: 90, misses: 10 },
    errors: {},
  };
  const b: SiteObservation = { site: 'site-b', home: { seconds: 8, status: 0 }, login: { seconds: 0.1, status: 403 }, errors: {} };
  b.errors = { home: 'status 0', login: 'status 403', core: 'no version in the pages', database: 'ECONNREFUSED' };
  const text = renderMetrics(
    [b, a],
    { core: { version: '6.1.4', since: now - 86400 }, plugins: { akismet: { version: '5.3.1', since: now - 600 } } },
    now,
    1.5,
  );
  assert.equal(
    text,
    [
      '# HELP wordpress_probe_success Whether the exporter could read this part of the site (1) or not (0).',
      '# TYPE wordpress_probe_success gauge',
      ...['home', 'login', 'core', 'plugins', 'themes', 'database', 'uploads', 'cron', 'cache'].map(
        (p) => `wordpress_probe_success{site="site-a",part="${p}"} 1`,
      ),
      ...['home', 'login', 'core', 'plugins', 'themes', 'database', 'uploads', 'cron'].map(
        (p) => `wordpress_probe_success{site="site-b",part="${p}"} ${['home', 'login', 'core', 'database'].includes(p) ? 0 : 1}`,
      ),
      "# HELP wordpress_http_response_seconds Time to the whole response of the page, from inside the farm (the page's time where " +
        'wordpress_http_status is 200).',
      '# TYPE wordpress_http_response_seconds gauge',
      'wordpress_http_response_seconds{site="site-a",page="home"} 0.25',
      'wordpress_http_response_seconds{site="site-a",page="login"} 3.5',
      'wordpress_http_response_seconds{site="site-b",page="home"} 8',
      'wordpress_http_response_seconds{site="site-b",page="login"} 0.1',
      '# HELP wordpress_http_status HTTP status of the page (0: no answer).',
      '# TYPE wordpress_http_status gauge',
      'wordpress_http_status{site="site-a",page="home"} 200',
      'wordpress_http_status{site="site-a",page="login"} 200',
      'wordpress_http_status{site="site-b",page="home"} 0',
      'wordpress_http_status{site="site-b",page="login"} 403',
      '# HELP wordpress_core_info WordPress core version the site runs.',
      '# TYPE wordpress_core_info gauge',
      'wordpress_core_info{site="site-a",version="6.1.1"} 1',
      '# HELP wordpress_plugin_info Installed plugin and its version (active="1" when activated).',
      '# TYPE wordpress_plugin_info gauge',
      'wordpress_plugin_info{site="site-a",plugin="akismet",version="5.3",active="1"} 1',
      'wordpress_plugin_info{site="site-a",plugin="hello",version="1.7.2",active="0"} 1',
      '# HELP wordpress_theme_info Installed theme and its version (active="1" for the active theme).',
      '# TYPE wordpress_theme_info gauge',
      'wordpress_theme_info{site="site-a",theme="twentytwentythree",version="1.0",active="1"} 1',
      '# HELP wordpress_updates_available Number of components with a newer version in the farm (core: the image).',
      '# TYPE wordpress_updates_available gauge',
      'wordpress_updates_available{site="site-a",kind="core"} 1',
      'wordpress_updates_available{site="site-a",kind="plugin"} 1',
      '# HELP wordpress_update_pending_seconds Seconds since the farm offers a newer version of the component than the site runs.',
      '# TYPE wordpress_update_pending_seconds gauge',
      'wordpress_update_pending_seconds{site="site-a",kind="core",name="wordpress"} 86400',
      'wordpress_update_pending_seconds{site="site-a",kind="plugin",name="akismet"} 600',
      "# HELP wordpress_database_size_bytes Data and index size of the site's database.",
      '# TYPE wordpress_database_size_bytes gauge',
      'wordpress_database_size_bytes{site="site-a"} 1048576',
      "# HELP wordpress_uploads_size_bytes Size of the site's uploads directory.",
      '# TYPE wordpress_uploads_size_bytes gauge',
      'wordpress_uploads_size_bytes{site="site-a"} 2048',
      '# HELP wordpress_cron_lag_seconds Seconds since the oldest overdue WP-Cron event should have run.',
      '# TYPE wordpress_cron_lag_seconds gauge',
      'wordpress_cron_lag_seconds{site="site-a"} 42',
      '# HELP wordpress_object_cache_hits_total Object cache (redis) keyspace hits.',
      '# TYPE wordpress_object_cache_hits_total counter',
      'wordpress_object_cache_hits_total{site="site-a"} 90',
      '# HELP wordpress_object_cache_misses_total Object cache (redis) keyspace misses.',
      '# TYPE wordpress_object_cache_misses_total counter',
      'wordpress_object_cache_misses_total{site="site-a"} 10',
      '# HELP wordpress_object_cache_hit_ratio Object cache hits / (hits + misses) since redis started.',
      '# TYPE wordpress_object_cache_hit_ratio gauge',
      'wordpress_object_cache_hit_ratio{site="site-a"} 0.9',
      '# HELP wordpress_exporter_scrape_duration_seconds Time the exporter took to gather every site.',
      '# TYPE wordpress_exporter_scrape_duration_seconds gauge',
      'wordpress_exporter_scrape_duration_seconds 1.5',
      '# HELP wordpress_exporter_sites Sites the exporter is configured for.',
      '# TYPE wordpress_exporter_sites gauge',
      'wordpress_exporter_sites 2',
      '',
    ].join('\n'),
  );
  // up to date against the offer: no pending series, zero counts
  const same = renderMetrics(
    [{ ...a, coreVersion: '6.1.4', plugins: [{ slug: 'akismet', version: '5.3.1', active: true }] }],
    {
      core: { version: '6.1.4', since: 0 },
      plugins: { akismet: { version: '5.3.1', since: 0 } },
    },
    now,
  );
  assert.doesNotMatch(same, /wordpress_update_pending_seconds/);
  assert.match(same, /^wordpress_updates_available\{site="site-a",kind="plugin"\} 0$/m);
});

test('the exporter stack: every site network, full service names, read-only mount, host port, its secret', () => {
  const site = (id: string, extra = '') =>
    parseSiteRecord(`${id}.yml`, `id: ${id}\ndomain: ${id}.example.org\n${extra}`, { management_cidrs: ['10.0.0.0/8'] });
  const r = renderExporterStack({
    image: '10.77.0.2:5000/wpfarm/wp-exporter:0123456789abcdef',
    sites: [site('site-b', 'cache: { varnish: true }\nobject_cache: false\n'), site('site-a')],
    endpointMode: 'dnsrr',
    db: { host: '10.77.0.31', port: 3307 },
    passwordSecret: 'wpfarm_exporter_db_password_12345678',
    glusterSitesPath: '/mnt/gluster/sites/',
    node: 'wrk1',
    catalog: { plugins: {} },
  });
  // wp-login straight to nginx, also behind Varnish: Varnish would add the X-Forwarded-For that makes nginx
  // judge the probe by the admin allowlist (the login form would answer 403)
  assert.deepEqual(
    r.config.sites.map((s) => [s.id, s.http, s.login, s.redis ?? '-', s.db]),
    [
      ['site-a', 'wp-site-a_nginx:8080', 'wp-site-a_nginx:8080', 'wp-site-a_redis:6379', 'wp_site_a'],
      ['site-b', 'wp-site-b_varnish:6081', 'wp-site-b_nginx:8080', '-', 'wp_site_b'],
    ],
  );
  assert.match(r.yaml, /wp-site-site-a:\n\s+external: true/);
  assert.match(r.yaml, /"node\.hostname == wrk1"/);
  assert.match(r.yaml, /source: "\/mnt\/gluster\/sites"\n\s+target: "\/sites"\n\s+read_only: true/);
  assert.match(r.yaml, /mode: "host"/);
  assert.match(r.yaml, /name: "wpfarm_exporter_db_password_12345678"/);
  assert.equal(
    renderExporterStack({
      ...{
        image: 'x',
        sites: [],
        endpointMode: 'vip',
        db: r.config.db,
        passwordSecret: 's',
        glusterSitesPath: '/g',
        node: 'wrk1',
        catalog: { plugins: {} },
      },
    }).config.sites.length,
    0,
  );
  assert.throws(
    () =>
      renderExporterStack({
        image: 'x',
        sites: [],
        endpointMode: 'vip',
        db: r.config.db,
        passwordSecret: 's',
        glusterSitesPath: '/g',
        node: 'a b',
        catalog: { plugins: {} },
      }),
    /bad node/,
  );
  assert.equal(exporterGrantSql('10.77.0.%'), "GRANT SELECT ON `wp\\_%`.* TO 'wpfarm_exporter'@'10.77.0.%'");
  assert.throws(() => exporterGrantSql("x'; DROP"), /unsafe/);
});

test('storeOffers: the newest version of each slug, since its zip appeared', () => {
  const files = ['akismet/akismet-5.3.zip', 'akismet/akismet-5.10.zip', 'akismet/akismet-5.9.zip', 'hello/hello-1.7.2.zip', 'README'];
  const m: Record<string, number> = { '/s/akismet/akismet-5.10.zip': 1700000000.7, '/s/hello/hello-1.7.2.zip': 1600000000 };
  assert.deepEqual(
    storeOffers('/s', files, (f) => m[f] ?? 0),
    { akismet: { version: '5.10', since: 1700000000 }, hello: { version: '1.7.2', since: 1600000000 } },
  );
});
