// The production monitoring stack (Prometheus/Alertmanager images built from Debian's packages,
// Grafana, Loki, Tempo, Promtail) validates against docker/cli's and compose-spec's schemas.
// Loki, Tempo and Promtail have no published JSON schema and cannot run here: their configuration
// is checked for the settings the architecture requires (30-day retention), nothing more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import { validateAgainst } from '../../roles/traefik/schema-check.ts';
import { lokiConfig, tempoConfig, promtailConfig, monitoringStack, toYaml } from '../../roles/monitoring/stacks.ts';
import { grafanaDatasources, grafanaDashboardProvider } from '../../roles/monitoring/dashboards.ts';

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML/JSON documents, read field by field in assertions
type FreeForm = Record<string, any>;

function files(extra: Record<string, string> = {}): Record<string, string> {
  return {
    'prometheus.yml': 'global: {}\n',
    'rules.yml': 'groups: []\n',
    'loki.yml': toYaml(lokiConfig()),
    'tempo.yml': toYaml(tempoConfig()),
    'promtail.yml': toYaml(promtailConfig()),
    'grafana-datasources.yml': grafanaDatasources({
      prometheus: 'http://prometheus:9090',
      loki: 'http://loki:3100',
      tempo: 'http://tempo:3200',
      alertmanager: 'http://alertmanager:9093',
    }),
    'grafana-dashboards.yml': grafanaDashboardProvider(),
    ...extra,
  };
}

const input = {
  prometheusImage: '10.77.0.2:5000/wpfarm/prometheus:2.42.0-deb12',
  alertmanagerImage: '10.77.0.2:5000/wpfarm/alertmanager:0.25.0-deb12',
  endpointMode: 'vip' as const,
  alertmanagerSecretName: 'mon_alertmanager_yml_0123abcd',
  grafanaAdminPasswordSecretName: 'mon_grafana_admin_password_89abcdef',
  grafanaHost: 'grafana.mgmt.example.net',
};

test('monitoring stack validates against docker/cli v3.13 and compose-spec', () => {
  for (const endpointMode of ['vip', 'dnsrr'] as const) {
    const doc = YAML.parse(toYaml(monitoringStack({ ...input, endpointMode, files: files() })));
    for (const schema of ['docker-stack-v3', 'compose'] as const) {
      const r = validateAgainst(schema, doc);
      assert.equal(r.valid, true, `${schema}:\n${r.errors.join('\n')}`);
    }
    for (const [name, svc] of Object.entries(doc.services as Record<string, { deploy: { endpoint_mode: string } }>)) {
      assert.equal(svc.deploy.endpoint_mode, endpointMode, name);
    }
  }
  // the variant the role deploys: Prometheus and Alertmanager run as Debian packages on the monitoring host
  const { prometheusImage: _p, alertmanagerImage: _a, ...noProm } = input;
  void _p;
  void _a;
  const doc = YAML.parse(toYaml(monitoringStack({ ...noProm, files: files() })));
  assert.deepEqual(Object.keys(doc.services).sort(), ['grafana', 'loki', 'promtail', 'tempo']);
  assert.equal(doc.secrets.alertmanager_yml, undefined);
  for (const schema of ['docker-stack-v3', 'compose'] as const)
    assert.equal(validateAgainst(schema, doc).valid, true, validateAgainst(schema, doc).errors.join('\n'));
});

test('monitoring stack: secrets stay secrets, configs are content-addressed, images pinned', () => {
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const doc = monitoringStack({ ...input, files: files() }) as Record<string, any>; // free-form document
  // alertmanager.yml holds webhook URLs and tokens: a Docker secret, never a config
  assert.equal(doc.secrets.alertmanager_yml.external, true);
  assert.equal(doc.configs.alertmanager_yml, undefined);
  assert.equal(doc.services.grafana.environment.GF_SECURITY_ADMIN_PASSWORD__FILE, '/run/secrets/grafana_admin_password');
  for (const svc of Object.values(doc.services) as Array<{ image: string }>)
    assert.match(svc.image, /:[0-9][^:]*$/, `${svc.image} is pinned`);
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const other = monitoringStack({ ...input, files: files({ 'loki.yml': toYaml(lokiConfig({ retention: { accessDays: 14, auditDays: 365, appDays: 31, edgeFileDays: 7 } })) }) }) as FreeForm; // free-form
  assert.notEqual(other.configs.loki_yml.name, doc.configs.loki_yml.name);
  assert.equal(other.configs.tempo_yml.name, doc.configs.tempo_yml.name);
  assert.equal(doc.services.promtail.deploy.mode, 'global');
  assert.match(doc.services.grafana.deploy.labels['traefik.http.routers.grafana.middlewares'], /dashboard-allowlist@file/);
});

test('Loki keeps 30 days (compactor retention), Tempo and Promtail settings', () => {
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const loki = lokiConfig() as Record<string, any>; // free-form document
  assert.equal(loki.limits_config.retention_period, '720h');
  assert.equal(loki.compactor.retention_enabled, true);
  assert.equal(loki.compactor.delete_request_store, 'filesystem');
  assert.equal(loki.schema_config.configs[0].schema, 'v13');
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const s3 = lokiConfig({
    store: {
      endpoint: 'fra1.digitaloceanspaces.com',
      bucket: 'wpfarm-logs',
      region: 'fra1',
      accessKeyEnv: 'SPACES_KEY',
      secretKeyEnv: 'SPACES_SECRET',
    },
  }) as FreeForm; // free-form
  assert.equal(s3.common.storage.s3.secret_access_key, '${SPACES_SECRET}', 'secret referenced by name, expanded at start');
  assert.equal(s3.compactor.delete_request_store, 's3');
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const tempo = tempoConfig() as Record<string, any>; // free-form
  assert.equal(tempo.distributor.receivers.otlp.protocols.grpc.endpoint, '0.0.0.0:4317');
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const promtail = promtailConfig() as Record<string, any>; // free-form
  assert.deepEqual(
    promtail.scrape_configs.map((s: { job_name: string }) => s.job_name),
    ['containers', 'traefik-access', 'journal'],
  );
});
