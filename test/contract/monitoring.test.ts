// Contract tests for the monitoring role's Prometheus and Alertmanager configuration, checked with
// the real tools from Debian (promtool 2.42, amtool 0.25) and the SchemaStore schemas.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { loadInventory } from '../../lib/inventory.ts';
import { repoRoot, validateAgainst } from '../../roles/traefik/schema-check.ts';
import {
  prometheusConfig,
  alertRules,
  alertCases,
  rulesFile,
  promtoolTests,
  toYaml,
  type MonitoredHost,
} from '../../roles/monitoring/prometheus.ts';
import { parseChannels, renderAlertmanager, maskSecrets, AlertChannelError } from '../../roles/monitoring/alertmanager.ts';
import { ensureMonitoringTools, run, PROMTOOL, AMTOOL } from '../../roles/monitoring/tools.ts';
import { newState, recordSite } from '../../roles/update/plan.ts';
import { updateMetrics } from '../../roles/update/metrics.ts';

const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-mon-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));

before(async () => {
  await ensureMonitoringTools();
});

function labHosts(): MonitoredHost[] {
  const inv = loadInventory(path.join(repoRoot, 'inventory/lab.yml'));
  return [...inv.hosts.values()].map((h) => ({ name: h.name, address: h.address, groups: h.groups }));
}

function write(name: string, text: string): string {
  const p = path.join(work, name);
  writeFileSync(p, text);
  return p;
}

const sites = [
  { id: 'alpha', stack: 'site-alpha' },
  { id: 'beta', stack: 'site-beta' },
];

test('prometheus.yml from the lab inventory: schema-valid and accepted by promtool check config', async () => {
  const hosts = labHosts();
  assert.ok(hosts.length >= 5);
  const rulesDir = path.join(work, 'rules');
  rmSync(rulesDir, { recursive: true, force: true });
  (await import('node:fs')).mkdirSync(rulesDir);
  writeFileSync(path.join(rulesDir, 'wpfarm.yml'), toYaml(rulesFile(alertRules())));
  // the WordPress exporter on the first Gluster client (roles/wp-exporter), as the monitoring role passes it
  const wrk1 = hosts.find((h) => h.name === 'wrk1');
  const cfg = prometheusConfig({ hosts, sites, farm: 'lab', alertmanagers: ['10.77.0.51:9093'], rulesDir, wordpressExporter: wrk1 });
  const v = validateAgainst('prometheus', cfg);
  assert.equal(v.valid, true, v.errors.join('\n'));
  const file = write('prometheus.yml', toYaml(cfg));
  const r = await run(PROMTOOL, ['check', 'config', file]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS/);
  // jobs from inventory groups: node everywhere, mysqld on db, traefik on edge, docker on swarm
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const jobs = Object.fromEntries((cfg.scrape_configs as Array<Record<string, any>>).map((j) => [j.job_name, j])); // free-form
  const instances = (job: string): string[] => jobs[job].static_configs.map((s: { labels: { instance: string } }) => s.labels.instance);
  assert.deepEqual(
    instances('node'),
    hosts.map((h) => h.name),
  );
  assert.deepEqual(instances('mysqld'), ['db1', 'db2', 'db3']);
  assert.deepEqual(instances('traefik'), ['mgr1', 'mgr2', 'mgr3']);
  assert.deepEqual(
    instances('docker').sort(),
    hosts
      .filter((h) => h.groups.includes('swarm'))
      .map((h) => h.name)
      .sort(),
  );
  assert.deepEqual(jobs.node.static_configs[0].targets, ['10.77.0.11:9100']);
  assert.deepEqual(jobs.nginx.dns_sd_configs[0].names, ['tasks.site-alpha_nginx-exporter', 'tasks.site-beta_nginx-exporter']);
  assert.equal(jobs.phpfpm.metrics_path, '/fpm-status');
  assert.deepEqual(jobs.wordpress.static_configs, [{ targets: [`${wrk1?.address}:9117`], labels: { instance: 'wrk1' } }]);
  // a broken configuration is refused by promtool (the check is not vacuous)
  const bad = write(
    'bad-prometheus.yml',
    toYaml({ ...cfg, scrape_configs: [...(cfg.scrape_configs as unknown[]), { job_name: 'node', static_configs: [] }] }),
  );
  const rb = await run(PROMTOOL, ['check', 'config', bad]);
  assert.notEqual(rb.code, 0, 'duplicate job name must be refused');
});

test('alert rules: schema-valid, promtool check rules, one rule per alert of the architecture', async () => {
  const rules = alertRules();
  const doc = rulesFile(rules);
  const v = validateAgainst('prometheus-rules', doc);
  assert.equal(v.valid, true, v.errors.join('\n'));
  const file = write('wpfarm-rules.yml', toYaml(doc));
  const r = await run(PROMTOOL, ['check', 'rules', file]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
  const names = rules.map((x) => x.alert);
  for (const a of [
    'NodeDown',
    'DiskSpaceHigh',
    'MemoryHigh',
    'SwarmServiceReplicasBelowExpected',
    'GaleraFlowControl',
    'GaleraClusterSizeLow',
    'GaleraNodeNotSynced',
    'HTTP5xxRateHigh',
    'CertificateExpiringSoon',
    // issue 15: the Varnish tier, edge failover, farm updates
    'VarnishAllBackendsSick',
    'VarnishHitRatioLow',
    'KeepalivedMasterCount',
    'KeepalivedFault',
    'WpfarmUpdateSitesFailed',
    'WpfarmUpdateStalled',
  ]) {
    assert.ok(names.includes(a), `missing alert ${a}`);
  }
  assert.equal(rules.find((x) => x.alert === 'NodeDown')!.for, '5m');
  assert.equal(new Set(names).size, names.length);
  for (const x of rules) assert.match(x.labels.severity!, /^(warning|critical)$/);
});

test('promtool test rules: every alert fires when its for: window ends and not one evaluation before', async () => {
  const rules = alertRules();
  const cases = alertCases();
  // every alert has a case and every case an alert
  assert.deepEqual(cases.map((c) => c.alert).sort(), rules.map((r) => r.alert).sort());
  const rulesPath = write('unit-rules.yml', toYaml(rulesFile(rules)));
  const testsPath = write('unit-tests.yml', toYaml(promtoolTests(rules, cases, path.basename(rulesPath))));
  const r = await run(PROMTOOL, ['test', 'rules', testsPath]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS/);
});

test('promtool test rules catches a rule whose for: window is one minute short (the unit tests are not vacuous)', async () => {
  const rules = alertRules();
  const cases = alertCases();
  for (const victim of ['NodeDown', 'GaleraClusterSizeLow', 'HTTP5xxRateHigh']) {
    const shortened = rules.map((r) => (r.alert === victim ? { ...r, for: `${Number(r.for.replace('m', '')) - 1}m` } : r));
    const rulesPath = write(`short-${victim}.yml`, toYaml(rulesFile(shortened)));
    // expectations computed from the real rules, evaluated against the shortened ones
    const tests = promtoolTests(
      rules,
      cases.filter((c) => c.alert === victim),
      path.basename(rulesPath),
    );
    const testsPath = write(`short-${victim}-tests.yml`, toYaml(tests));
    const r = await run(PROMTOOL, ['test', 'rules', testsPath]);
    assert.notEqual(r.code, 0, `${victim} firing early went unnoticed:\n${r.stdout}`);
    assert.match(r.stdout + r.stderr, new RegExp(victim));
  }
});

const channelsRaw = [
  {
    type: 'email',
    to: 'ops@example.net',
    from: 'alerts@example.net',
    smarthost: 'smtp.example.net:587',
    auth_username: 'alerts@example.net',
    auth_password_env: 'SMTP_PASSWORD',
  },
  { type: 'slack', webhook_url_env: 'SLACK_WEBHOOK_URL', channel: '#wpfarm' },
  { type: 'discord', webhook_url_env: 'DISCORD_WEBHOOK_URL' },
  { type: 'pagerduty', routing_key_env: 'PAGERDUTY_ROUTING_KEY', min_severity: 'critical' },
  { type: 'telegram', bot_token_env: 'TELEGRAM_BOT_TOKEN', chat_id: -1001234567890 },
  { type: 'webhook', url: 'http://127.0.0.1:9099/alerts' },
];
const fakeEnv: Record<string, string> = {
  SMTP_PASSWORD: 'smtp-pass-7f3a9c',
  SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX',
  DISCORD_WEBHOOK_URL: 'https://discord.com/api/webhooks/123456/discord-secret-token',
  PAGERDUTY_ROUTING_KEY: 'pd0123456789abcdef0123456789abcd',
  TELEGRAM_BOT_TOKEN: '123456:telegram-secret-token',
};

test('alertmanager.yml from the inventory channels: amtool check-config passes, secrets come from .env and are masked', async () => {
  const channels = parseChannels(channelsRaw);
  const am = renderAlertmanager(channels, (n) => fakeEnv[n]);
  const file = write('alertmanager.yml', am.yaml);
  const r = await run(AMTOOL, ['check-config', file]);
  assert.equal(r.code, 0, maskSecrets(r.stdout + r.stderr, am.secrets));
  assert.match(r.stdout, /SUCCESS/);
  assert.match(r.stdout, /2 receivers/);
  // the rendered file holds every secret (Alertmanager needs them) ...
  assert.deepEqual([...am.secrets].sort(), Object.values(fakeEnv).sort());
  for (const s of am.secrets) assert.ok(am.yaml.includes(s));
  assert.deepEqual(am.envNames.sort(), Object.keys(fakeEnv).sort());
  // ... and none survives masking; amtool's own output shows none either
  const masked = maskSecrets(am.yaml, am.secrets);
  for (const s of Object.values(fakeEnv)) assert.ok(!masked.includes(s), 'secret left after masking');
  for (const s of Object.values(fakeEnv)) assert.ok(!r.stdout.includes(s), 'amtool printed a secret');
  // routing: PagerDuty only for critical
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const cfg = YAML.parse(am.yaml) as Record<string, any>; // free-form document
  const recv = Object.fromEntries(cfg.receivers.map((x: { name: string }) => [x.name, x]));
  assert.equal(recv.warning.pagerduty_configs, undefined);
  assert.equal(recv.critical.pagerduty_configs.length, 1);
  assert.equal(recv.critical.telegram_configs[0].chat_id, -1001234567890);
  assert.equal(recv.warning.webhook_configs[0].url, 'http://127.0.0.1:9099/alerts');
  assert.deepEqual(cfg.route.routes[0].matchers, ['severity="critical"']);
  // the inventory itself holds no secret value
  assert.ok(!JSON.stringify(channelsRaw).includes('secret'));
});

test('amtool check-config refuses a broken alertmanager.yml (the check is not vacuous)', async () => {
  const am = renderAlertmanager(parseChannels(channelsRaw), (n) => fakeEnv[n]);
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const broken = YAML.parse(am.yaml) as Record<string, any>; // free-form document
  broken.route.receiver = 'nobody';
  const r = await run(AMTOOL, ['check-config', write('am-broken.yml', YAML.stringify(broken))]);
  assert.notEqual(r.code, 0);
  assert.match(r.stdout + r.stderr, /nobody/);
});

test('alert channels: inline secrets, unknown types and missing .env values are refused by name', () => {
  assert.throws(() => parseChannels([{ type: 'slack', webhook_url: 'https://hooks.slack.com/x' }]), /must not be inline/);
  assert.throws(() => parseChannels([{ type: 'telegram', bot_token: 'x', chat_id: 1 }]), /must not be inline/);
  assert.throws(() => parseChannels([{ type: 'sms', to: '123' }]), /unknown type/);
  assert.throws(() => parseChannels([{ type: 'email', to: 'a@b.c', from: 'a@b.c', smarthost: 'smtp' }]), /host:port/);
  assert.throws(() => parseChannels([{ type: 'slack', webhook_url_env: 'lower-case' }]), /environment variable/);
  assert.throws(() => parseChannels([]), AlertChannelError);
  const channels = parseChannels(channelsRaw);
  assert.throws(
    () => renderAlertmanager(channels, (n) => (n === 'SLACK_WEBHOOK_URL' ? undefined : fakeEnv[n])),
    (e: unknown) =>
      e instanceof AlertChannelError && /SLACK_WEBHOOK_URL/.test(e.message) && !Object.values(fakeEnv).some((s) => e.message.includes(s)),
  );
});

test("update progress metrics (roles/update/metrics.ts) pass promtool's exposition linter", () => {
  const t0 = new Date('2026-12-06T06:00:00Z');
  const e = { status: 'failed' as const, wave: 0, from: { images: {} }, to: { images: {} } };
  const target = { images: { wordpressFpm: 'w', nginx: 'n', redis: 'r', varnish: 'v' }, plugins: {} };
  const state = recordSite(newState(target, [['a'], ['b']], t0), 'a', e);
  const text = updateMetrics({ state, wave: 0, outcome: 'stopped', started: t0 });
  const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(text, /^wpfarm_update_sites\{status="failed"\} 1$/m);
});
