// Personal data in logs (issue 18 item 7): the log pipeline's address truncation (Promtail replace stages),
// the retention policy in one place of the inventory (roles/common/retention.ts) and what each role makes of it.
// Promtail cannot run here (its image cannot be pulled): its replace stage is applied below with Promtail's
// semantics (every match in the line; every capture group replaced by `replace`), on JavaScript's regex engine:
// the expressions use only what RE2 and JavaScript read the same way (classes, counted repeats, \b, groups).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ADDRESS_TRUNCATION, lokiConfig, promtailConfig } from '../../roles/monitoring/stacks.ts';
import { prometheusDefaults } from '../../roles/monitoring/role.ts';
import { RETENTION_DEFAULTS, RETENTION_VARS, retentionOf } from '../../roles/common/retention.ts';
import { checkVars, loadInventory } from '../../lib/inventory.ts';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';

/** Promtail's replace stage: each capture group of each match replaced by `replace`. */
function replaceStage(line: string, stage: { expression: string; replace: string }): string {
  const re = new RegExp(stage.expression, 'gd');
  let out = '';
  let at = 0;
  for (const m of line.matchAll(re)) {
    for (const span of (m.indices ?? []).slice(1)) {
      if (!span) continue;
      out += line.slice(at, span[0]) + stage.replace;
      at = span[1];
    }
  }
  return out + line.slice(at);
}
const truncate = (line: string) => ADDRESS_TRUNCATION.reduce(replaceStage, line);

test('the pipeline truncates every client address form to its network, and leaves times alone', () => {
  const cases: Array<[string, string]> = [
    ['203.0.113.77', '203.0.113.0'],
    ['"ClientAddr":"203.0.113.77:51234"', '"ClientAddr":"203.0.113.0:51234"'],
    ['"request_X-Forwarded-For":"198.51.100.23, 10.0.1.5"', '"request_X-Forwarded-For":"198.51.100.0, 10.0.1.0"'],
    ['::ffff:198.51.100.9', '::ffff:198.51.100.0'],
    ['2001:0db8:85a3:0000:0000:8a2e:0370:7334', '2001:0db8:85a3::'],
    ['2001:db8:abcd:12::1', '2001:db8:abcd::'],
    ['2001:db8::1', '2001:db8::'],
    ['fe80::1:2:3:4', 'fe80::'],
    ['[2001:db8:abcd:12:ab::7]:443', '[2001:db8:abcd::]:443'],
    ['a:b:c:d::', 'a:b:c::'],
    // times and dates are not addresses
    ['[06/Dec/2026:06:30:00 +0000]', '[06/Dec/2026:06:30:00 +0000]'],
    ['[06-Dec-2026 06:30:00 UTC] wpfarm-audit {"event":"login"}', '[06-Dec-2026 06:30:00 UTC] wpfarm-audit {"event":"login"}'],
    ['"time":"2026-12-06T06:30:00.123Z"', '"time":"2026-12-06T06:30:00.123Z"'],
  ];
  for (const [line, want] of cases) {
    assert.equal(truncate(line), want, line);
    assert.equal(truncate(want), want, `idempotent: ${want}`);
  }
});

test('no full address survives: 300 random IPv4 and IPv6 addresses in a Traefik access-log line', () => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const hex = () => rnd(0x10000).toString(16);
  for (let i = 0; i < 300; i++) {
    let addr: string;
    let prefix: string;
    if (i % 3 === 0) {
      const o = [1 + rnd(223), rnd(256), rnd(256), 1 + rnd(254)];
      addr = o.join('.');
      prefix = `${o.slice(0, 3).join('.')}.0`;
    } else {
      const g = Array.from({ length: 8 }, hex).map((x) => (x === '0' ? '1' : x));
      // full form, or compressed after the 1st..6th group
      const cut = i % 3 === 1 ? 8 : 1 + rnd(6);
      addr = cut === 8 ? g.join(':') : `${g.slice(0, cut).join(':')}::${g[7]}`;
      prefix = `${g.slice(0, Math.min(cut, 3)).join(':')}::`;
    }
    const line = JSON.stringify({
      ClientAddr: `[${addr}]:5000`,
      ClientHost: addr,
      'request_Cf-Connecting-Ip': addr,
      DownstreamStatus: 200,
    });
    const out = truncate(line);
    assert.ok(!out.includes(`"${addr}"`) && !out.includes(`[${addr}]`), `${addr} survived: ${out}`);
    assert.ok(out.includes(`"${prefix}"`), `${addr}: expected its network ${prefix} in ${out}`);
  }
});

test('Promtail: every job truncates addresses; access logs and the audit trail get their own retention label', () => {
  // biome-ignore lint/suspicious/noExplicitAny: free-form Promtail document
  const p = promtailConfig() as any; // free-form document
  const jobs = Object.fromEntries(p.scrape_configs.map((s: { job_name: string }) => [s.job_name, s]));
  const replaces = (j: { pipeline_stages?: Array<Record<string, unknown>> }) => (j.pipeline_stages ?? []).filter((s) => 'replace' in s);
  for (const name of ['containers', 'traefik-access', 'journal'])
    assert.deepEqual(
      replaces(jobs[name]).map((s) => s.replace),
      [...ADDRESS_TRUNCATION],
      `${name} ships no full address`,
    );
  const matches = jobs.containers.pipeline_stages.filter((s: Record<string, unknown>) => 'match' in s);
  assert.deepEqual(
    matches.map((m: { match: { selector: string; stages: unknown[] } }) => [m.match.selector, m.match.stages]),
    [
      ['{swarm_service=~".+_nginx"}', [{ static_labels: { log_kind: 'access' } }]],
      ['{job="containers"} |= "wpfarm-audit "', [{ static_labels: { log_kind: 'audit' } }]],
    ],
  );
  assert.ok(jobs['traefik-access'].pipeline_stages.some((s: Record<string, unknown>) => 'static_labels' in s));
});

test('retention: one inventory section, defaults, and what Loki, Tempo, Prometheus and logrotate get from it', () => {
  const r = retentionOf({ retention: { logs: { access_days: 10, audit_days: 400 }, metrics_days: 45 } });
  assert.deepEqual(r, {
    logs: {
      accessDays: 10,
      auditDays: 400,
      appDays: RETENTION_DEFAULTS.logs.app_days,
      edgeFileDays: RETENTION_DEFAULTS.logs.edge_file_days,
    },
    metricsDays: 45,
    tracesDays: RETENTION_DEFAULTS.traces_days,
    backups: { dbDays: 30, filesDaily: 7, filesWeekly: 4, filesMonthly: 3 },
  });
  // biome-ignore lint/suspicious/noExplicitAny: free-form Loki document
  const loki = lokiConfig({ retention: r.logs }) as any; // free-form document
  assert.equal(loki.limits_config.retention_period, `${30 * 24}h`);
  assert.deepEqual(loki.limits_config.retention_stream, [
    { selector: '{log_kind="access"}', priority: 1, period: '240h' },
    { selector: '{log_kind="audit"}', priority: 2, period: '9600h' },
  ]);
  assert.equal(loki.limits_config.max_query_lookback, '9600h', 'the longest kept kind stays queryable');
  assert.equal(prometheusDefaults(45).match(/^ARGS="(.*)"$/m)?.[1], '--storage.tsdb.retention.time=45d');
  const rot = renderTemplate(templatePath('traefik', 'logrotate.ejs'), { days: 3 });
  assert.match(rot, /^\s+rotate 3$/m);
  assert.match(rot, /^\s+maxage 3$/m);
});

test('retention: a bad value is exit-4 input naming the inventory file, line and field, before any connection', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-retention-'));
  try {
    const f = path.join(dir, 'inv.yml');
    writeFileSync(f, 'vars:\n  retention:\n    logs:\n      access_days: 0\n    metric_days: 30\nhosts:\n  a: { address: 127.0.0.1 }\n');
    const inv = loadInventory(f);
    assert.throws(
      () => checkVars(inv, RETENTION_VARS),
      (e: Error & { exitCode?: number }) => {
        assert.equal(e.exitCode, 4);
        assert.match(e.message, /inv\.yml:4:\d+ vars\.retention\.logs\.access_days/);
        assert.match(e.message, /inv\.yml:5:\d+ vars\.retention.*metric_days/);
        return true;
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("retention: the backups' figures in the same section, for every site record that sets none of its own", async () => {
  const { loadSites } = await import('../../roles/wp-site/site.ts');
  const b = retentionOf({ retention: { backups: { db_days: 90, files_keep_monthly: 12 } } }).backups;
  assert.deepEqual(b, { dbDays: 90, filesDaily: 7, filesWeekly: 4, filesMonthly: 12 });
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-retention-sites-'));
  try {
    writeFileSync(path.join(dir, 'plain.yml'), 'id: plain\ndomain: plain.example.com\n');
    writeFileSync(
      path.join(dir, 'own.yml'),
      'id: own\ndomain: own.example.com\nbackup:\n  db: { retention_days: 7 }\n  files: { keep_daily: 3 }\n',
    );
    const sites = loadSites(dir, { management_cidrs: ['192.0.2.0/24'], backup_retention: b });
    const of = (id: string) => sites.find((s) => s.id === id)!.backup;
    assert.equal(of('plain').db.retention_days, 90);
    assert.deepEqual([of('plain').files.keep_daily, of('plain').files.keep_weekly, of('plain').files.keep_monthly], [7, 4, 12]);
    // a record's own figures win; the rest comes from the inventory
    assert.equal(of('own').db.retention_days, 7);
    assert.deepEqual([of('own').files.keep_daily, of('own').files.keep_weekly, of('own').files.keep_monthly], [3, 4, 12]);
    // without the inventory's section: the farm's defaults, as before
    const plain = loadSites(dir, { management_cidrs: ['192.0.2.0/24'] }).find((s) => s.id === 'plain')!.backup;
    assert.equal(plain.db.retention_days, RETENTION_DEFAULTS.backups.db_days);
    // a bad figure is exit-4 input naming the field
    const inv = path.join(dir, 'inv.yml');
    writeFileSync(inv, 'vars:\n  retention:\n    backups:\n      db_days: 0\nhosts:\n  a: { address: 127.0.0.1 }\n');
    assert.throws(() => checkVars(loadInventory(inv), RETENTION_VARS), /inv\.yml:4:\d+ vars\.retention\.backups\.db_days/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
