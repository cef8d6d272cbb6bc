// Site records: defaults, strict domain validation, errors naming file/line/field, farm uniqueness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkDomain,
  checkSiteId,
  checkCidr,
  loadSites,
  parseSiteRecord,
  SiteRecordErrors,
  DEFAULT_LIMITS,
  DEFAULT_PHP,
} from '../../roles/wp-site/site.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function errorsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof SiteRecordErrors && e.exitCode === 4, `expected SiteRecordErrors (an InputError), got ${String(e)}`);
    return e.messages;
  }
  assert.fail('expected the record to be refused');
}

test('a minimal record gets the documented defaults', () => {
  const s = parseSiteRecord('inventory/sites/blog1.yml', 'id: blog1\ndomain: example.com\n', { management_cidrs: ['203.0.113.0/24'] });
  assert.equal(s.id, 'blog1');
  assert.equal(s.domain, 'example.com');
  assert.deepEqual(s.aliases, []);
  assert.equal(s.replicas, 2);
  assert.equal(s.xmlrpc, false);
  assert.equal(s.sticky, false);
  assert.equal(s.cache_ttl, 600);
  assert.deepEqual(s.admin_allowlist, ['203.0.113.0/24']);
  assert.deepEqual(s.php, { ...DEFAULT_PHP });
  assert.equal(s.php.memory_limit, '256M');
  assert.equal(s.php.upload_max_filesize, '64M');
  assert.equal(s.php.max_execution_time, 60);
  assert.deepEqual(s.limits, {
    nginx: { cpus: 0.25, memory: '128M' },
    php: { cpus: 1, memory: '512M' },
    redis: { cpus: 0.25, memory: '128M' },
  });
  assert.deepEqual(s.limits, JSON.parse(JSON.stringify(DEFAULT_LIMITS)));
  assert.deepEqual(s.backup, {
    db: { every_hours: 6, retention_days: 30 },
    files: { schedule: 'daily', keep_daily: 7, keep_weekly: 4, keep_monthly: 3 },
  });
});

test('overrides are taken and checked', () => {
  const s = parseSiteRecord(
    'x/shop.yml',
    [
      'id: shop',
      'domain: shop.example.org',
      'aliases: [www.shop.example.org, xn--bcher-kva.example]',
      'php: { memory_limit: 512M, upload_max_filesize: 128M, post_max_size: 128M, pm_max_children: 10 }',
      'replicas: 3',
      'limits: { php: { cpus: 2, memory: 1G } }',
      'cache_ttl: 0',
      'xmlrpc: true',
      'sticky: true',
      'admin_allowlist: [198.51.100.7, 2001:db8::/32]',
      'backup: { db: { every_hours: 12 }, files: { keep_daily: 14 } }',
    ].join('\n'),
  );
  assert.equal(s.php.memory_limit, '512M');
  assert.equal(s.php.pm_max_children, 10);
  assert.equal(s.php.max_execution_time, 60);
  assert.deepEqual(s.limits.php, { cpus: 2, memory: '1G' });
  assert.deepEqual(s.limits.nginx, { cpus: 0.25, memory: '128M' });
  assert.equal(s.replicas, 3);
  assert.equal(s.cache_ttl, 0);
  assert.equal(s.xmlrpc, true);
  assert.deepEqual(s.admin_allowlist, ['198.51.100.7', '2001:db8::/32']);
  assert.equal(s.backup.db.every_hours, 12);
  assert.equal(s.backup.db.retention_days, 30);
  assert.equal(s.backup.files.keep_daily, 14);
  assert.equal(s.backup.files.keep_monthly, 3);
});

test('active_plugins and theme: slugs, no duplicate; absent: not managed', () => {
  const inv = { management_cidrs: ['203.0.113.0/24'] };
  const none = parseSiteRecord('x/blog1.yml', 'id: blog1\ndomain: example.com\n', inv);
  assert.equal(none.active_plugins, undefined);
  assert.equal(none.theme, undefined);
  const s = parseSiteRecord('x/blog1.yml', 'id: blog1\ndomain: example.com\nactive_plugins: [hello, akismet]\ntheme: lab\n', inv);
  assert.deepEqual([s.active_plugins, s.theme], [['hello', 'akismet'], 'lab']);
  assert.deepEqual(parseSiteRecord('x/blog1.yml', 'id: blog1\ndomain: example.com\nactive_plugins: []\n', inv).active_plugins, []);
  const errs = errorsOf(() =>
    parseSiteRecord('x/blog1.yml', 'id: blog1\ndomain: example.com\nactive_plugins: [hello, "../x", hello]\ntheme: "Lab Theme"\n', inv),
  );
  assert.ok(
    errs.some((e) => /x\/blog1\.yml:3:\d+ active_plugins\[1\]: must be a plugin or theme slug/.test(e)),
    errs.join('\n'),
  );
  assert.ok(
    errs.some((e) => /active_plugins\[2\]: "hello" is listed twice/.test(e)),
    errs.join('\n'),
  );
  assert.ok(
    errs.some((e) => /x\/blog1\.yml:4:\d+ theme: must be a plugin or theme slug/.test(e)),
    errs.join('\n'),
  );
});

test('good domains pass', () => {
  for (const d of [
    'example.com',
    'www.example.co.uk',
    'xn--bcher-kva.example',
    'shop.xn--p1ai',
    '1password.com',
    'a-b.c-d.example',
    `${'a'.repeat(63)}.example`,
    `${Array.from({ length: 4 }, () => 'b'.repeat(61)).join('.')}.co`, // 4*62 + 2 = 250 chars
  ]) {
    assert.equal(checkDomain(d), null, d);
  }
});

test('domains with shell, rule or label syntax are refused with a reason', () => {
  const cases: [string, RegExp][] = [
    ['example.com`; rm -rf /`', /backtick/],
    ['$(id).example.com', /'\$'/],
    ['a;b.example.com', /';'/],
    ['example.com && curl x', /whitespace/],
    ['exa mple.com', /whitespace/],
    ['example.com\nevil.com', /whitespace/],
    ["o'neil.example.com", /single quote/],
    ['"x".example.com', /double quote/],
    ['Host(`a.com`)', /'\('|backtick/],
    ['a.com) || Host(`b.com', /'\)'|whitespace/],
    ['*.example.com', /wildcard/],
    ['example.com.', /end with a dot/],
    ['Example.com', /lowercase/],
    ['localhost', /two labels/],
    ['-a.example.com', /start or end with '-'/],
    ['a-.example.com', /start or end with '-'/],
    ['ab--cd.example.com', /IDNA/],
    ['a..example.com', /empty label/],
    ['1.2.3.4', /IP address/],
    ['bücher.de', /non-ASCII.*punycode/],
    ['a_b.example.com', /may only hold/],
    ['example.com/path', /'\/'/],
    ['user@example.com', /'@'/],
    ['example.com:8080', /':'/],
    [`${'a'.repeat(64)}.example`, /at most 63/],
    [`${Array.from({ length: 5 }, () => 'b'.repeat(50)).join('.')}.com`, /at most 253/],
    ['', /empty/],
  ];
  for (const [d, re] of cases) {
    const r = checkDomain(d);
    assert.ok(r, `${JSON.stringify(d)} must be refused`);
    assert.match(r, re, `${JSON.stringify(d)}: ${r}`);
  }
  assert.match(checkDomain(42) ?? '', /must be a string/);
});

test('site ids', () => {
  for (const id of ['ab', 'blog1', 'my-shop', 'a'.repeat(31)]) assert.equal(checkSiteId(id), null, id);
  for (const id of ['a', '1blog', 'Blog', 'my_shop', 'a'.repeat(32), 'shop-', 'a--b', 'x;y', '']) assert.ok(checkSiteId(id), id);
});

test('CIDRs', () => {
  for (const c of ['10.0.0.0/8', '192.0.2.1', '2001:db8::/32', '::1']) assert.equal(checkCidr(c), null, c);
  for (const c of ['10.0.0.0/33', '10.0.0/8', 'any', '10.0.0.0/8/1', '2001:db8::/129', '10.0.0.0/x']) assert.ok(checkCidr(c), c);
});

test('errors name the file, the line and the field', () => {
  const text = [
    'id: blog1', // 1
    'domain: example.com', // 2
    'aliases:', // 3
    '  - www.example.com', // 4
    '  - "evil.com`; touch /tmp/pwned`"', // 5
    'php:', // 6
    '  memory_limit: lots', // 7
    '  bogus: 1', // 8
    'replicas: 0', // 9
    'admin_allowlist: [10.0.0.0/8]', // 10
    'colour: blue', // 11
  ].join('\n');
  const msgs = errorsOf(() => parseSiteRecord('inventory/sites/blog1.yml', text));
  assert.ok(
    msgs.some((m) => /^inventory\/sites\/blog1\.yml:5:\d+ aliases\[1\]: .*backtick/.test(m)),
    msgs.join('\n'),
  );
  assert.ok(
    msgs.some((m) => /^inventory\/sites\/blog1\.yml:7:\d+ php\.memory_limit: must be a size/.test(m)),
    msgs.join('\n'),
  );
  assert.ok(
    msgs.some((m) => /^inventory\/sites\/blog1\.yml:8:\d+ php\.bogus: unknown key/.test(m)),
    msgs.join('\n'),
  );
  assert.ok(
    msgs.some((m) => /^inventory\/sites\/blog1\.yml:9:\d+ replicas: must be an integer from 1/.test(m)),
    msgs.join('\n'),
  );
  assert.ok(
    msgs.some((m) => /^inventory\/sites\/blog1\.yml:11:\d+ colour: unknown key/.test(m)),
    msgs.join('\n'),
  );
  assert.equal(msgs.length, 5, msgs.join('\n'));
});

test('required fields, id/file mismatch, YAML errors, duplicate keys, empty allowlist', () => {
  assert.ok(
    errorsOf(() => parseSiteRecord('s/x1.yml', 'domain: a.com\nadmin_allowlist: [10.0.0.0/8]')).some((m) =>
      /s\/x1\.yml:1:\d+ id: is required/.test(m),
    ),
  );
  assert.ok(
    errorsOf(() => parseSiteRecord('s/x1.yml', 'id: x1\nadmin_allowlist: [10.0.0.0/8]')).some((m) => /domain: is required/.test(m)),
  );
  assert.ok(
    errorsOf(() => parseSiteRecord('s/x1.yml', 'id: x2\ndomain: a.com\nadmin_allowlist: [10.0.0.0/8]')).some((m) =>
      /s\/x1\.yml:1:\d+ id: "x2" must match the file name \(x1\.yml\)/.test(m),
    ),
  );
  assert.ok(
    errorsOf(() => parseSiteRecord('s/x1.yml', 'id: x1\ndomain: [a.com\n')).some((m) => /s\/x1\.yml:\d+:\d+: YAML syntax error/.test(m)),
  );
  assert.ok(
    errorsOf(() => parseSiteRecord('s/x1.yml', 'id: x1\ndomain: a.com\ndomain: b.com\n')).some((m) =>
      /^s\/x1\.yml:3:\d+: YAML duplicate key: Map keys must be unique/.test(m),
    ),
  );
  assert.ok(errorsOf(() => parseSiteRecord('s/x1.yml', 'id: x1\ndomain: a.com\n')).some((m) => /admin_allowlist: is empty/.test(m)));
  assert.ok(errorsOf(() => parseSiteRecord('s/x1.yml', '- a\n- b\n')).some((m) => /must be a mapping/.test(m)));
  assert.ok(
    errorsOf(() => parseSiteRecord('s/x1.yml', 'id: x1\ndomain: a.com\naliases: [a.com, b.com, b.com]\nadmin_allowlist: [10.0.0.0/8]'))
      .length === 2,
  );
  assert.ok(
    errorsOf(() => parseSiteRecord('s/x1.yml', 'id: x1\ndomain: a.com\nadmin_allowlist: [10.0.0.0/8]\nphp: { memory_limit: 512M }\n')).some(
      (m) => /s\/x1\.yml:4:\d+ php\.memory_limit: php\.memory_limit 512M does not fit the php container limit 512M/.test(m),
    ),
  );
  assert.ok(
    errorsOf(() =>
      parseSiteRecord(
        's/x1.yml',
        'id: x1\ndomain: a.com\nadmin_allowlist: [10.0.0.0/8]\nphp: { pm_max_children: 2, pm_max_spare_servers: 3 }\n',
      ),
    ).some((m) => /php\.pm_max_spare_servers: must not exceed pm_max_children/.test(m)),
  );
});

test('loadSites: records of a directory, ids and domains unique across the farm (error names both files)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-sites-'));
  try {
    writeFileSync(path.join(dir, 'alpha.yml'), 'id: alpha\ndomain: alpha.example\naliases: [www.alpha.example]\n');
    writeFileSync(path.join(dir, 'beta.yml'), 'id: beta\ndomain: beta.example\n');
    writeFileSync(path.join(dir, '_draft.yml'), 'this is: [not valid');
    const sites = loadSites(dir, { management_cidrs: ['10.0.0.0/8'] });
    assert.deepEqual(
      sites.map((s) => s.id),
      ['alpha', 'beta'],
    );
    assert.equal(sites[0].source, path.join(dir, 'alpha.yml'));

    writeFileSync(path.join(dir, 'gamma.yml'), 'id: gamma\ndomain: gamma.example\naliases: [www.alpha.example]\n');
    writeFileSync(path.join(dir, 'delta.yml'), 'id: delta\ndomain: beta.example\n');
    const msgs = errorsOf(() => loadSites(dir, { management_cidrs: ['10.0.0.0/8'] }));
    const a = path.join(dir, 'alpha.yml');
    const b = path.join(dir, 'beta.yml');
    assert.ok(
      msgs.some(
        (m) =>
          m.includes(path.join(dir, 'gamma.yml')) && m.includes('aliases[0]') && m.includes('"www.alpha.example" is already used by ' + a),
      ),
      msgs.join('\n'),
    );
    assert.ok(
      msgs.some((m) => m.includes(path.join(dir, 'delta.yml')) && m.includes('domain') && m.includes(b)),
      msgs.join('\n'),
    );

    // every file's problems are reported together
    writeFileSync(path.join(dir, 'zeta.yml'), 'id: zeta\ndomain: "zeta.example; reboot"\n');
    const all = errorsOf(() => loadSites(dir, { management_cidrs: ['10.0.0.0/8'] }));
    assert.ok(
      all.some((m) => /^:2:\d+ domain: /.test(m.slice(path.join(dir, 'zeta.yml').length)) && m.startsWith(path.join(dir, 'zeta.yml'))),
      all.join('\n'),
    );
    assert.ok(
      all.some((m) => m.includes('delta.yml')),
      all.join('\n'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the example record in inventory/sites parses', () => {
  const dir = path.join(repoRoot, 'inventory/sites');
  const file = path.join(dir, '_example.yml');
  const s = parseSiteRecord(file, readFileSync(file, 'utf8'), { management_cidrs: ['10.0.0.0/8'] });
  assert.equal(s.id, 'example');
  assert.ok(s.aliases.length >= 1);
});
