// Loki (retention per log kind), Tempo and Promtail configuration (client addresses truncated before shipping), and the monitoring Swarm stack for
// production: Prometheus and Alertmanager from images built from Debian's packages
// (files/Dockerfile.prometheus, files/Dockerfile.alertmanager), Grafana, Loki, Tempo (pinned upstream
// images, not obtainable in the lab), Promtail on every node.
import { createHash } from 'node:crypto';
import YAML from 'yaml';
import { retentionOf, type Retention } from '../common/retention.ts';

export const IMAGES = {
  grafana: 'grafana/grafana:11.3.1',
  loki: 'grafana/loki:3.2.1',
  tempo: 'grafana/tempo:2.6.1',
  promtail: 'grafana/promtail:3.2.1',
} as const;

export interface ObjectStore {
  /** DigitalOcean Spaces (S3) endpoint, e.g. fra1.digitaloceanspaces.com */
  endpoint: string;
  bucket: string;
  region: string;
  /** .env names; the containers read them with -config.expand-env */
  accessKeyEnv: string;
  secretKeyEnv: string;
}

export interface LokiOptions {
  /** days kept per kind of log (roles/common/retention.ts); the defaults when absent */
  retention?: Retention['logs'];
  /** Spaces bucket for chunks; filesystem when absent (lab) */
  store?: ObjectStore;
  alertmanagerUrl?: string;
}

export function lokiConfig(o: LokiOptions = {}): Record<string, unknown> {
  const r = o.retention ?? retentionOf({}).logs;
  const days = r.appDays;
  const longest = Math.max(r.appDays, r.accessDays, r.auditDays);
  const objectStore = o.store ? 's3' : 'filesystem';
  const storage: Record<string, unknown> = o.store
    ? {
        s3: {
          endpoint: o.store.endpoint,
          bucketnames: o.store.bucket,
          region: o.store.region,
          access_key_id: `\${${o.store.accessKeyEnv}}`,
          secret_access_key: `\${${o.store.secretKeyEnv}}`,
          s3forcepathstyle: true,
        },
      }
    : { filesystem: { chunks_directory: '/loki/chunks', rules_directory: '/loki/rules' } };
  return {
    auth_enabled: false,
    server: { http_listen_port: 3100, grpc_listen_port: 9096, log_level: 'info' },
    common: { instance_addr: '127.0.0.1', path_prefix: '/loki', storage, replication_factor: 1, ring: { kvstore: { store: 'inmemory' } } },
    schema_config: {
      configs: [
        { from: '2024-01-01', store: 'tsdb', object_store: objectStore, schema: 'v13', index: { prefix: 'index_', period: '24h' } },
      ],
    },
    limits_config: {
      // every stream: app logs; the kinds Promtail labels (log_kind) have their own period
      retention_period: `${days * 24}h`,
      retention_stream: [
        { selector: '{log_kind="access"}', priority: 1, period: `${r.accessDays * 24}h` },
        { selector: '{log_kind="audit"}', priority: 2, period: `${r.auditDays * 24}h` },
      ],
      reject_old_samples: true,
      reject_old_samples_max_age: '168h',
      ingestion_rate_mb: 8,
      ingestion_burst_size_mb: 16,
      max_query_lookback: `${longest * 24}h`,
    },
    // retention is applied by the compactor; Loki 3 requires the delete request store with it
    compactor: {
      working_directory: '/loki/compactor',
      compaction_interval: '10m',
      retention_enabled: true,
      retention_delete_delay: '2h',
      delete_request_store: objectStore,
    },
    ruler: { alertmanager_url: o.alertmanagerUrl ?? 'http://alertmanager:9093' },
    analytics: { reporting_enabled: false },
  };
}

export function tempoConfig(o: { retentionDays?: number; store?: ObjectStore } = {}): Record<string, unknown> {
  const trace: Record<string, unknown> = o.store
    ? {
        backend: 's3',
        s3: {
          endpoint: o.store.endpoint,
          bucket: o.store.bucket,
          region: o.store.region,
          access_key: `\${${o.store.accessKeyEnv}}`,
          secret_key: `\${${o.store.secretKeyEnv}}`,
          forcepathstyle: true,
        },
        wal: { path: '/var/tempo/wal' },
      }
    : { backend: 'local', local: { path: '/var/tempo/traces' }, wal: { path: '/var/tempo/wal' } };
  return {
    server: { http_listen_port: 3200 },
    distributor: { receivers: { otlp: { protocols: { grpc: { endpoint: '0.0.0.0:4317' }, http: { endpoint: '0.0.0.0:4318' } } } } },
    ingester: { max_block_duration: '5m' },
    compactor: { compaction: { block_retention: `${(o.retentionDays ?? retentionOf({}).tracesDays) * 24}h` } },
    storage: { trace },
    usage_report: { reporting_enabled: false },
  };
}

/**
 * Personal data: client addresses leave a node truncated (IPv4 to /24, IPv6 to /48), whatever the log: every
 * capture group of these Go RE2 expressions is replaced by its `replace` (Promtail's replace stage). nginx and the
 * audit trail already log truncated networks; this also covers the edge's JSON access log (ClientAddr, ClientHost,
 * X-Forwarded-For, Cf-Connecting-Ip), error lines and the journal. A version number shaped like an address
 * (1.2.3.4) is truncated too: the price of never shipping a full address. docs/security.md.
 */
export const ADDRESS_TRUNCATION: ReadonlyArray<{ expression: string; replace: string }> = [
  // IPv4 (also inside ::ffff:a.b.c.d): the last octet
  { expression: '\\b(?:[0-9]{1,3}\\.){3}([0-9]{1,3})\\b', replace: '0' },
  // IPv6 written in full (8 groups): the last five groups
  { expression: '\\b(?:[0-9a-fA-F]{1,4}:){3}((?:[0-9a-fA-F]{1,4}:){4}[0-9a-fA-F]{1,4})\\b', replace: ':' },
  // IPv6 with "::" after its first group: whatever follows the first three groups (a time like 06:30:00 has no "::")
  { expression: '\\b(?:[0-9a-fA-F]{1,4}:){1,3}((?:[0-9a-fA-F]{1,4}:){0,4}:(?:[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{1,4}){0,6})?)', replace: ':' },
];

const truncateAddresses = ADDRESS_TRUNCATION.map((r) => ({ replace: { ...r } }));

/** Promtail on every node: container logs with their Swarm stack/service, Traefik's access log, the journal. */
export function promtailConfig(lokiUrl = 'http://loki:3100'): Record<string, unknown> {
  return {
    server: { http_listen_port: 9080, grpc_listen_port: 0 },
    positions: { filename: '/var/lib/promtail/positions.yaml' },
    clients: [{ url: `${lokiUrl}/loki/api/v1/push` }],
    scrape_configs: [
      {
        job_name: 'containers',
        docker_sd_configs: [{ host: 'unix:///var/run/docker.sock', refresh_interval: '15s' }],
        relabel_configs: [
          { source_labels: ['__meta_docker_container_label_com_docker_stack_namespace'], target_label: 'swarm_stack' },
          { source_labels: ['__meta_docker_container_label_com_docker_swarm_service_name'], target_label: 'swarm_service' },
          { source_labels: ['__meta_docker_container_label_com_docker_swarm_node_id'], target_label: 'swarm_node' },
          { target_label: 'job', replacement: 'containers' },
        ],
        pipeline_stages: [
          // the kinds with their own retention (lokiConfig): the sites' nginx access logs, the admin audit trail
          { match: { selector: '{swarm_service=~".+_nginx"}', stages: [{ static_labels: { log_kind: 'access' } }] } },
          { match: { selector: '{job="containers"} |= "wpfarm-audit "', stages: [{ static_labels: { log_kind: 'audit' } }] } },
          ...truncateAddresses,
        ],
      },
      {
        job_name: 'traefik-access',
        static_configs: [{ targets: ['localhost'], labels: { job: 'traefik-access', __path__: '/var/log/traefik/access.log' } }],
        pipeline_stages: [
          { json: { expressions: { status: 'DownstreamStatus', router: 'RouterName' } } },
          { labels: { router: null } },
          { static_labels: { log_kind: 'access' } },
          ...truncateAddresses,
        ],
      },
      {
        job_name: 'journal',
        journal: { max_age: '12h', path: '/var/log/journal', labels: { job: 'journal' } },
        relabel_configs: [
          { source_labels: ['__journal__systemd_unit'], target_label: 'unit' },
          { source_labels: ['__journal__hostname'], target_label: 'host' },
        ],
        pipeline_stages: truncateAddresses,
      },
    ],
  };
}

export function hash8(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

export interface MonitoringStackInput {
  /**
   * image of Prometheus built from Debian's package (pushed to the farm's registry); without it (and
   * alertmanagerImage) the stack has no Prometheus/Alertmanager services: they run as Debian packages on
   * the monitoring host (what roles/monitoring/role.ts does)
   */
  prometheusImage?: string;
  alertmanagerImage?: string;
  network?: string;
  endpointMode: 'vip' | 'dnsrr';
  /** rendered files: name → content (prometheus.yml, rules.yml, alertmanager.yml, loki.yml, tempo.yml, promtail.yml, grafana datasources/dashboards) */
  files: Record<string, string>;
  /** Docker secret holding the rendered alertmanager.yml (it contains webhook URLs and tokens) */
  alertmanagerSecretName: string;
  grafanaAdminPasswordSecretName: string;
  grafanaHost: string;
  /** .env names passed to Loki/Tempo for the Spaces keys, when an object store is used */
  storeEnv?: string[];
  /** Prometheus' retention in days (retention.metrics_days; its default when absent) */
  metricsDays?: number;
}

/** docker stack deploy -c monitoring-stack.yml monitoring */
export function monitoringStack(i: MonitoringStackInput): Record<string, unknown> {
  const net = i.network ?? 'monitoring';
  const onMon = { constraints: ['node.labels.wpfarm.monitoring == true'] };
  const cfg = (name: string) => ({ name: `mon_${name.replace(/[^a-z0-9]/gi, '_')}_${hash8(i.files[name] ?? '')}`, file: `./${name}` });
  const deploy = (extra: Record<string, unknown> = {}) => ({
    mode: 'replicated',
    replicas: 1,
    endpoint_mode: i.endpointMode,
    placement: onMon,
    restart_policy: { condition: 'any', delay: '5s' },
    update_config: { parallelism: 1, order: 'stop-first', failure_action: 'rollback' },
    ...extra,
  });
  const env = Object.fromEntries((i.storeEnv ?? []).map((n) => [n, `\${${n}}`]));
  const withProm = Boolean(i.prometheusImage && i.alertmanagerImage);
  // biome-ignore lint/suspicious/noExplicitAny: eslint-style any: a free-form compose document assembled in place
  const stack: Record<string, any> = {
    // eslint-style any: a free-form compose document assembled in place
    version: '3.8',
    services: {
      prometheus: {
        image: i.prometheusImage,
        command: [
          '--config.file=/etc/prometheus/prometheus.yml',
          '--storage.tsdb.path=/prometheus',
          `--storage.tsdb.retention.time=${i.metricsDays ?? retentionOf({}).metricsDays}d`,
          '--web.enable-lifecycle',
        ],
        configs: [
          { source: 'prometheus_yml', target: '/etc/prometheus/prometheus.yml' },
          { source: 'rules_yml', target: '/etc/prometheus/rules/wpfarm.yml' },
        ],
        volumes: [{ type: 'volume', source: 'prometheus-data', target: '/prometheus' }],
        networks: [net],
        deploy: deploy({ resources: { limits: { memory: '2G' } } }),
      },
      alertmanager: {
        image: i.alertmanagerImage,
        command: ['--config.file=/run/secrets/alertmanager.yml', '--storage.path=/alertmanager'],
        secrets: [{ source: 'alertmanager_yml', target: 'alertmanager.yml', mode: 0o400 }],
        volumes: [{ type: 'volume', source: 'alertmanager-data', target: '/alertmanager' }],
        networks: [net],
        deploy: deploy(),
      },
      grafana: {
        image: IMAGES.grafana,
        environment: {
          GF_SECURITY_ADMIN_PASSWORD__FILE: '/run/secrets/grafana_admin_password',
          GF_SERVER_ROOT_URL: `https://${i.grafanaHost}/`,
          GF_ANALYTICS_REPORTING_ENABLED: 'false',
          GF_USERS_ALLOW_SIGN_UP: 'false',
        },
        secrets: [{ source: 'grafana_admin_password', target: 'grafana_admin_password', mode: 0o400 }],
        configs: [
          { source: 'grafana_datasources', target: '/etc/grafana/provisioning/datasources/wpfarm.yml' },
          { source: 'grafana_dashboards', target: '/etc/grafana/provisioning/dashboards/wpfarm.yml' },
        ],
        volumes: [
          { type: 'volume', source: 'grafana-data', target: '/var/lib/grafana' },
          { type: 'bind', source: '/var/lib/wpfarm/grafana-dashboards', target: '/var/lib/grafana/dashboards/wpfarm', read_only: true },
        ],
        networks: [net, 'traefik-public'],
        deploy: deploy({
          labels: {
            'traefik.enable': 'true',
            'traefik.swarm.network': 'traefik-public',
            'traefik.http.routers.grafana.rule': `Host(\`${i.grafanaHost}\`)`,
            'traefik.http.routers.grafana.entrypoints': 'websecure',
            'traefik.http.routers.grafana.tls.certresolver': 'le',
            'traefik.http.routers.grafana.middlewares': 'dashboard-allowlist@file,secure-headers@file',
            'traefik.http.services.grafana.loadbalancer.server.port': '3000',
          },
        }),
      },
      loki: {
        image: IMAGES.loki,
        command: ['-config.file=/etc/loki/loki.yml', '-config.expand-env=true'],
        ...(Object.keys(env).length ? { environment: env } : {}),
        configs: [{ source: 'loki_yml', target: '/etc/loki/loki.yml' }],
        volumes: [{ type: 'volume', source: 'loki-data', target: '/loki' }],
        networks: [net],
        deploy: deploy({ resources: { limits: { memory: '2G' } } }),
      },
      tempo: {
        image: IMAGES.tempo,
        command: ['-config.file=/etc/tempo/tempo.yml', '-config.expand-env=true'],
        ...(Object.keys(env).length ? { environment: env } : {}),
        configs: [{ source: 'tempo_yml', target: '/etc/tempo/tempo.yml' }],
        volumes: [{ type: 'volume', source: 'tempo-data', target: '/var/tempo' }],
        networks: [net],
        deploy: deploy(),
      },
      promtail: {
        image: IMAGES.promtail,
        command: ['-config.file=/etc/promtail/promtail.yml'],
        configs: [{ source: 'promtail_yml', target: '/etc/promtail/promtail.yml' }],
        volumes: [
          { type: 'bind', source: '/var/run/docker.sock', target: '/var/run/docker.sock', read_only: true },
          { type: 'bind', source: '/var/log', target: '/var/log', read_only: true },
          { type: 'volume', source: 'promtail-positions', target: '/var/lib/promtail' },
        ],
        networks: [net],
        deploy: {
          mode: 'global',
          endpoint_mode: i.endpointMode,
          restart_policy: { condition: 'any', delay: '5s' },
          resources: { limits: { memory: '256M' } },
        },
      },
    },
    networks: {
      // made by the swarm-manager role with the farm's other overlays (attachable; encrypted where the kernel
      // can): site stacks attach their exporters to it (scraped through tasks.<service>)
      [net]: { external: true, name: net },
      'traefik-public': { external: true, name: 'traefik-public' },
    },
    volumes: {
      'prometheus-data': {},
      'alertmanager-data': {},
      'grafana-data': {},
      'loki-data': {},
      'tempo-data': {},
      'promtail-positions': {},
    },
    configs: {
      prometheus_yml: cfg('prometheus.yml'),
      rules_yml: cfg('rules.yml'),
      loki_yml: cfg('loki.yml'),
      tempo_yml: cfg('tempo.yml'),
      promtail_yml: cfg('promtail.yml'),
      grafana_datasources: cfg('grafana-datasources.yml'),
      grafana_dashboards: cfg('grafana-dashboards.yml'),
    },
    secrets: {
      alertmanager_yml: { external: true, name: i.alertmanagerSecretName },
      grafana_admin_password: { external: true, name: i.grafanaAdminPasswordSecretName },
    },
  };
  if (!withProm) {
    delete stack.services.prometheus;
    delete stack.services.alertmanager;
    delete stack.configs.prometheus_yml;
    delete stack.configs.rules_yml;
    delete stack.secrets.alertmanager_yml;
    delete stack.volumes['prometheus-data'];
    delete stack.volumes['alertmanager-data'];
  }
  return stack;
}

export function toYaml(doc: unknown): string {
  return YAML.stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}
