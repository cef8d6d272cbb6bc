// The eight Grafana dashboards of the architecture, generated as provisioned dashboard JSON
// (Grafana's v1 dashboard model, validated against grafana-foundation-sdk's dashboard schema), and
// Grafana's provisioning files (datasources with fixed uids, the dashboard provider).
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';

export const DS = {
  prometheus: { type: 'prometheus', uid: 'wpfarm-prometheus' },
  loki: { type: 'loki', uid: 'wpfarm-loki' },
  tempo: { type: 'tempo', uid: 'wpfarm-tempo' },
  alertmanager: { type: 'alertmanager', uid: 'wpfarm-alertmanager' },
} as const;

type Json = Record<string, unknown>;

interface PanelSpec {
  title: string;
  type?: 'timeseries' | 'stat' | 'table' | 'gauge' | 'logs' | 'bargauge';
  /** PromQL (or LogQL for logs panels) with legend */
  targets: Array<{ expr: string; legend?: string; instant?: boolean }>;
  unit?: string;
  /** grid width (of 24) */
  w?: number;
  h?: number;
  thresholds?: Array<[number | null, string]>;
  min?: number;
  max?: number;
  datasource?: (typeof DS)[keyof typeof DS];
  description?: string;
}

interface DashboardSpec {
  uid: string;
  title: string;
  tags: string[];
  variables?: Array<{ name: string; label: string; query: string; multi?: boolean; includeAll?: boolean }>;
  /** `repeat`: Grafana repeats the row (and its panels) for every value of that variable */
  rows: Array<{ title: string; panels: PanelSpec[]; repeat?: string }>;
}

function buildPanels(rows: DashboardSpec['rows']): Json[] {
  const out: Json[] = [];
  let id = 1;
  let y = 0;
  for (const row of rows) {
    out.push({
      type: 'row',
      id: id++,
      title: row.title,
      collapsed: false,
      panels: [],
      gridPos: { h: 1, w: 24, x: 0, y },
      ...(row.repeat ? { repeat: row.repeat } : {}),
    });
    y += 1;
    let x = 0;
    let rowH = 0;
    for (const p of row.panels) {
      const w = p.w ?? 12;
      const h = p.h ?? 8;
      if (x + w > 24) {
        x = 0;
        y += rowH;
        rowH = 0;
      }
      const ds = p.datasource ?? DS.prometheus;
      const fieldDefaults: Json = {};
      if (p.unit) fieldDefaults.unit = p.unit;
      if (p.min !== undefined) fieldDefaults.min = p.min;
      if (p.max !== undefined) fieldDefaults.max = p.max;
      if (p.thresholds) fieldDefaults.thresholds = { mode: 'absolute', steps: p.thresholds.map(([value, color]) => ({ value, color })) };
      out.push({
        type: p.type ?? 'timeseries',
        id: id++,
        title: p.title,
        ...(p.description ? { description: p.description } : {}),
        datasource: ds,
        gridPos: { h, w, x, y },
        targets: p.targets.map((t, i) => ({
          refId: String.fromCharCode(65 + i),
          datasource: ds,
          expr: t.expr,
          ...(t.legend ? { legendFormat: t.legend } : {}),
          ...(t.instant ? { instant: true, range: false } : {}),
        })),
        fieldConfig: { defaults: fieldDefaults, overrides: [] },
        options: p.type === 'logs' ? { showTime: true, wrapLogMessage: true, sortOrder: 'Descending' } : {},
      });
      x += w;
      rowH = Math.max(rowH, h);
    }
    y += rowH;
  }
  return out;
}

function buildDashboard(spec: DashboardSpec): Json {
  return {
    uid: spec.uid,
    title: spec.title,
    tags: ['wpfarm', ...spec.tags],
    timezone: 'utc',
    editable: false,
    graphTooltip: 1,
    time: { from: 'now-6h', to: 'now' },
    refresh: '1m',
    schemaVersion: 39,
    version: 1,
    templating: {
      list: (spec.variables ?? []).map((v) => ({
        type: 'query',
        name: v.name,
        label: v.label,
        datasource: DS.prometheus,
        query: v.query,
        definition: v.query,
        refresh: 2,
        sort: 1,
        multi: v.multi ?? true,
        includeAll: v.includeAll ?? true,
        allValue: '.*',
        current: { text: 'All', value: '$__all' },
      })),
    },
    annotations: {
      list: [
        {
          name: 'Firing alerts',
          datasource: DS.prometheus,
          enable: true,
          iconColor: 'red',
          expr: 'ALERTS{alertstate="firing"}',
          titleFormat: '{{ alertname }}',
          textFormat: '{{ instance }}{{ service }}',
          step: '1m',
        },
      ],
    },
    panels: buildPanels(spec.rows),
  };
}

const RI = '$__rate_interval';
const RED_AT: Array<[number | null, string]> = [
  [null, 'green'],
  [80, 'orange'],
  [90, 'red'],
];

export function dashboards(): Json[] {
  return [
    buildDashboard({
      uid: 'wpfarm-cluster',
      title: 'wpfarm / Cluster overview',
      tags: ['overview'],
      rows: [
        {
          title: 'Health',
          panels: [
            { title: 'Nodes up', type: 'stat', w: 4, targets: [{ expr: 'sum(up{job="node"})', instant: true }] },
            {
              title: 'Nodes down',
              type: 'stat',
              w: 4,
              thresholds: [
                [null, 'green'],
                [1, 'red'],
              ],
              targets: [{ expr: 'count(up{job="node"} == 0) or vector(0)', instant: true }],
            },
            {
              title: 'Firing alerts',
              type: 'stat',
              w: 4,
              thresholds: [
                [null, 'green'],
                [1, 'red'],
              ],
              targets: [{ expr: 'count(ALERTS{alertstate="firing"}) or vector(0)', instant: true }],
            },
            {
              title: 'Galera cluster size',
              type: 'stat',
              w: 4,
              thresholds: [
                [null, 'red'],
                [3, 'green'],
              ],
              targets: [{ expr: 'max(mysql_global_status_wsrep_cluster_size)', instant: true }],
            },
            {
              title: 'Requests/s',
              type: 'stat',
              w: 4,
              unit: 'reqps',
              targets: [{ expr: `sum(rate(traefik_service_requests_total[${RI}]))` }],
            },
            {
              title: '5xx ratio',
              type: 'stat',
              w: 4,
              unit: 'percentunit',
              thresholds: [
                [null, 'green'],
                [0.05, 'red'],
              ],
              targets: [
                {
                  expr: `sum(rate(traefik_service_requests_total{code=~"5.."}[${RI}])) / sum(rate(traefik_service_requests_total[${RI}]))`,
                },
              ],
            },
          ],
        },
        {
          title: 'Resources',
          panels: [
            {
              title: 'CPU busy by node',
              unit: 'percent',
              targets: [
                { expr: `100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[${RI}])))`, legend: '{{instance}}' },
              ],
            },
            {
              title: 'Memory used by node',
              unit: 'percent',
              targets: [{ expr: '100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)', legend: '{{instance}}' }],
            },
            {
              title: 'Swarm services below desired replicas',
              type: 'table',
              w: 24,
              targets: [
                {
                  expr: 'max by (service) (wpfarm_swarm_service_replicas_desired) - max by (service) (wpfarm_swarm_service_replicas_running) > 0',
                  instant: true,
                },
              ],
            },
            { title: 'Scrape targets down', type: 'table', w: 24, targets: [{ expr: 'up == 0', instant: true }] },
          ],
        },
        {
          title: 'Farm updates (playbooks/update.ts)',
          panels: [
            {
              title: 'Sites by status (last update)',
              type: 'bargauge',
              w: 12,
              targets: [{ expr: 'max by (status) (wpfarm_update_sites)', legend: '{{status}}', instant: true }],
            },
            { title: 'Current wave', type: 'stat', w: 4, targets: [{ expr: 'max(wpfarm_update_wave)', instant: true }] },
            {
              title: 'Last outcome',
              type: 'stat',
              w: 4,
              targets: [{ expr: 'max by (outcome) (wpfarm_update_outcome) == 1', legend: '{{outcome}}', instant: true }],
            },
            {
              title: 'Last run',
              type: 'stat',
              w: 4,
              unit: 'dateTimeFromNow',
              targets: [{ expr: 'max(wpfarm_update_last_run_timestamp_seconds) * 1000', instant: true }],
            },
          ],
        },
      ],
    }),
    buildDashboard({
      uid: 'wpfarm-node',
      title: 'wpfarm / Node',
      tags: ['node'],
      variables: [{ name: 'instance', label: 'Node', query: 'label_values(up{job="node"}, instance)' }],
      rows: [
        {
          title: 'CPU and memory',
          panels: [
            {
              title: 'CPU by mode',
              unit: 'percentunit',
              targets: [
                {
                  expr: `sum by (instance, mode) (rate(node_cpu_seconds_total{instance=~"$instance",mode!="idle"}[${RI}])) / on (instance) group_left count by (instance) (node_cpu_seconds_total{instance=~"$instance",mode="idle"})`,
                  legend: '{{instance}} {{mode}}',
                },
              ],
            },
            { title: 'Load (1m)', targets: [{ expr: 'node_load1{instance=~"$instance"}', legend: '{{instance}}' }] },
            {
              title: 'Memory used',
              unit: 'percent',
              thresholds: RED_AT,
              targets: [
                {
                  expr: '100 * (1 - node_memory_MemAvailable_bytes{instance=~"$instance"} / node_memory_MemTotal_bytes{instance=~"$instance"})',
                  legend: '{{instance}}',
                },
              ],
            },
            {
              title: 'Swap used',
              unit: 'bytes',
              targets: [
                {
                  expr: 'node_memory_SwapTotal_bytes{instance=~"$instance"} - node_memory_SwapFree_bytes{instance=~"$instance"}',
                  legend: '{{instance}}',
                },
              ],
            },
          ],
        },
        {
          title: 'Disk and network',
          panels: [
            {
              title: 'Disk used',
              unit: 'percent',
              thresholds: [
                [null, 'green'],
                [85, 'red'],
              ],
              targets: [
                {
                  expr: '100 * (1 - node_filesystem_avail_bytes{instance=~"$instance",fstype!~"tmpfs|overlay|squashfs"} / node_filesystem_size_bytes{instance=~"$instance",fstype!~"tmpfs|overlay|squashfs"})',
                  legend: '{{instance}} {{mountpoint}}',
                },
              ],
            },
            {
              title: 'Disk I/O',
              unit: 'Bps',
              targets: [
                { expr: `rate(node_disk_read_bytes_total{instance=~"$instance"}[${RI}])`, legend: '{{instance}} {{device}} read' },
                { expr: `rate(node_disk_written_bytes_total{instance=~"$instance"}[${RI}])`, legend: '{{instance}} {{device}} write' },
              ],
            },
            {
              title: 'Network',
              unit: 'Bps',
              targets: [
                {
                  expr: `rate(node_network_receive_bytes_total{instance=~"$instance",device!~"lo|veth.*|docker.*|br-.*"}[${RI}])`,
                  legend: '{{instance}} {{device}} in',
                },
                {
                  expr: `rate(node_network_transmit_bytes_total{instance=~"$instance",device!~"lo|veth.*|docker.*|br-.*"}[${RI}])`,
                  legend: '{{instance}} {{device}} out',
                },
              ],
            },
            {
              title: 'Containers running (dockerd)',
              targets: [
                { expr: 'engine_daemon_container_states_containers{instance=~"$instance",state="running"}', legend: '{{instance}}' },
              ],
            },
          ],
        },
      ],
    }),
    buildDashboard({
      uid: 'wpfarm-galera',
      title: 'wpfarm / Galera',
      tags: ['database'],
      rows: [
        {
          title: 'Cluster',
          panels: [
            {
              title: 'Cluster size',
              type: 'stat',
              w: 6,
              thresholds: [
                [null, 'red'],
                [3, 'green'],
              ],
              targets: [{ expr: 'mysql_global_status_wsrep_cluster_size', legend: '{{instance}}' }],
            },
            {
              title: 'Local state (4 = Synced)',
              type: 'stat',
              w: 6,
              thresholds: [
                [null, 'red'],
                [4, 'green'],
              ],
              targets: [{ expr: 'mysql_global_status_wsrep_local_state', legend: '{{instance}}' }],
            },
            { title: 'Ready', type: 'stat', w: 6, targets: [{ expr: 'mysql_global_status_wsrep_ready', legend: '{{instance}}' }] },
            {
              title: 'MariaDB up',
              type: 'stat',
              w: 6,
              thresholds: [
                [null, 'red'],
                [1, 'green'],
              ],
              targets: [{ expr: 'mysql_up', legend: '{{instance}}' }],
            },
          ],
        },
        {
          title: 'Replication',
          panels: [
            {
              title: 'Flow control paused (fraction of time)',
              unit: 'percentunit',
              thresholds: [
                [null, 'green'],
                [0.1, 'red'],
              ],
              targets: [{ expr: `rate(mysql_global_status_wsrep_flow_control_paused_ns[${RI}]) / 1e9`, legend: '{{instance}}' }],
            },
            {
              title: 'Receive / send queue',
              targets: [
                { expr: 'mysql_global_status_wsrep_local_recv_queue', legend: '{{instance}} recv' },
                { expr: 'mysql_global_status_wsrep_local_send_queue', legend: '{{instance}} send' },
              ],
            },
            {
              title: 'Certification failures/s',
              targets: [{ expr: `rate(mysql_global_status_wsrep_local_cert_failures[${RI}])`, legend: '{{instance}}' }],
            },
            {
              title: 'Queries/s and connections',
              targets: [
                { expr: `rate(mysql_global_status_queries[${RI}])`, legend: '{{instance}} queries/s' },
                { expr: 'mysql_global_status_threads_connected', legend: '{{instance}} connections' },
              ],
            },
          ],
        },
      ],
    }),
    buildDashboard({
      uid: 'wpfarm-traffic',
      title: 'wpfarm / Sites traffic (Traefik)',
      tags: ['traefik'],
      variables: [{ name: 'service', label: 'Site service', query: 'label_values(traefik_service_requests_total, service)' }],
      rows: [
        {
          title: 'Requests',
          panels: [
            {
              title: 'Requests/s by site',
              unit: 'reqps',
              targets: [
                { expr: `sum by (service) (rate(traefik_service_requests_total{service=~"$service"}[${RI}]))`, legend: '{{service}}' },
              ],
            },
            {
              title: '5xx ratio by site',
              unit: 'percentunit',
              thresholds: [
                [null, 'green'],
                [0.05, 'red'],
              ],
              targets: [
                {
                  expr: `sum by (service) (rate(traefik_service_requests_total{service=~"$service",code=~"5.."}[${RI}])) / sum by (service) (rate(traefik_service_requests_total{service=~"$service"}[${RI}]))`,
                  legend: '{{service}}',
                },
              ],
            },
            {
              title: 'Latency p95 by site',
              unit: 's',
              targets: [
                {
                  expr: `histogram_quantile(0.95, sum by (service, le) (rate(traefik_service_request_duration_seconds_bucket{service=~"$service"}[${RI}])))`,
                  legend: '{{service}}',
                },
              ],
            },
            {
              title: 'Responses by code class',
              unit: 'reqps',
              targets: [
                { expr: `sum by (code) (rate(traefik_entrypoint_requests_total{entrypoint="websecure"}[${RI}]))`, legend: '{{code}}' },
              ],
            },
          ],
        },
        {
          title: 'Edge',
          panels: [
            {
              title: 'Open connections by entry point',
              targets: [{ expr: 'sum by (entrypoint) (traefik_open_connections)', legend: '{{entrypoint}}' }],
            },
            {
              title: 'Days until certificate expiry',
              type: 'table',
              unit: 'd',
              targets: [{ expr: 'sort((min by (cn) (traefik_tls_certs_not_after) - time()) / 86400)', instant: true }],
            },
            { title: 'Traefik config reloads', targets: [{ expr: `rate(traefik_config_reloads_total[${RI}])`, legend: '{{instance}}' }] },
            {
              title: 'CrowdSec decisions (bans)',
              targets: [{ expr: 'sum(cs_active_decisions) or vector(0)', legend: 'active decisions' }],
            },
            {
              title: 'Edge failover: VRRP master (keepalived)',
              type: 'stat',
              description: 'wpfarm_keepalived_state, written by the notify script on each edge node: 1 = holds the virtual IP',
              targets: [{ expr: 'max by (instance) (wpfarm_keepalived_state{state="master"})', legend: '{{instance}}', instant: true }],
            },
            {
              title: 'Edge nodes in VRRP FAULT',
              type: 'stat',
              thresholds: [
                [null, 'green'],
                [1, 'red'],
              ],
              targets: [{ expr: 'sum(wpfarm_keepalived_state{state="fault"}) or vector(0)', instant: true }],
            },
          ],
        },
        {
          title: 'Varnish (cache tier 2)',
          panels: [
            {
              title: 'Hit ratio by site',
              unit: 'percentunit',
              min: 0,
              max: 1,
              targets: [
                {
                  expr:
                    `sum by (stack) (rate(wpfarm_varnish_cache_hit_total[${RI}])) / ` +
                    `(sum by (stack) (rate(wpfarm_varnish_cache_hit_total[${RI}])) + ` +
                    `sum by (stack) (rate(wpfarm_varnish_cache_miss_total[${RI}])))`,
                  legend: '{{stack}}',
                },
              ],
            },
            {
              title: 'Requests/s through Varnish by site',
              unit: 'reqps',
              targets: [{ expr: `sum by (stack) (rate(wpfarm_varnish_client_requests_total[${RI}]))`, legend: '{{stack}}' }],
            },
            {
              title: 'Healthy nginx backends by site',
              type: 'table',
              targets: [{ expr: 'sum by (stack) (wpfarm_varnish_backend_healthy)', instant: true }],
            },
            {
              title: 'Varnish tasks not answering',
              type: 'stat',
              thresholds: [
                [null, 'green'],
                [1, 'red'],
              ],
              targets: [{ expr: 'count(wpfarm_varnish_up == 0) or vector(0)', instant: true }],
            },
          ],
        },
      ],
    }),
    buildDashboard({
      uid: 'wpfarm-site',
      title: 'wpfarm / Site (WordPress, PHP-FPM)',
      tags: ['wordpress', 'php-fpm'],
      variables: [{ name: 'stack', label: 'Site', query: 'label_values(phpfpm_up, stack)', multi: false, includeAll: false }],
      rows: [
        {
          title: 'PHP-FPM',
          panels: [
            {
              title: 'Processes',
              targets: [
                { expr: 'sum by (stack) (phpfpm_active_processes{stack="$stack"})', legend: 'active' },
                { expr: 'sum by (stack) (phpfpm_idle_processes{stack="$stack"})', legend: 'idle' },
              ],
            },
            { title: 'Listen queue', targets: [{ expr: 'sum by (stack) (phpfpm_listen_queue{stack="$stack"})', legend: 'queued' }] },
            {
              title: 'Max children reached',
              targets: [{ expr: 'sum by (stack) (phpfpm_max_children_reached{stack="$stack"})', legend: 'max children reached' }],
            },
            {
              title: 'Accepted connections/s',
              targets: [{ expr: `sum by (stack) (rate(phpfpm_accepted_connections{stack="$stack"}[${RI}]))`, legend: 'accepted/s' }],
            },
            { title: 'Slow requests', targets: [{ expr: 'sum by (stack) (phpfpm_slow_requests{stack="$stack"})', legend: 'slow' }] },
            {
              title: 'FPM up',
              type: 'stat',
              thresholds: [
                [null, 'red'],
                [1, 'green'],
              ],
              targets: [{ expr: 'min(phpfpm_up{stack="$stack"})' }],
            },
          ],
        },
        {
          title: 'Logs',
          panels: [{ title: 'Site logs', type: 'logs', w: 24, h: 10, datasource: DS.loki, targets: [{ expr: '{swarm_stack="$stack"}' }] }],
        },
      ],
    }),
    buildDashboard({
      uid: 'wpfarm-cache',
      title: 'wpfarm / Redis and nginx',
      tags: ['redis', 'nginx'],
      variables: [{ name: 'stack', label: 'Site', query: 'label_values(redis_up, stack)' }],
      rows: [
        {
          title: 'Redis',
          panels: [
            { title: 'Memory used', unit: 'bytes', targets: [{ expr: 'redis_memory_used_bytes{stack=~"$stack"}', legend: '{{stack}}' }] },
            {
              title: 'Hit ratio',
              unit: 'percentunit',
              targets: [
                {
                  expr: `rate(redis_keyspace_hits_total{stack=~"$stack"}[${RI}]) / (rate(redis_keyspace_hits_total{stack=~"$stack"}[${RI}]) + rate(redis_keyspace_misses_total{stack=~"$stack"}[${RI}]))`,
                  legend: '{{stack}}',
                },
              ],
            },
            { title: 'Evicted keys/s', targets: [{ expr: `rate(redis_evicted_keys_total{stack=~"$stack"}[${RI}])`, legend: '{{stack}}' }] },
            { title: 'Connected clients', targets: [{ expr: 'redis_connected_clients{stack=~"$stack"}', legend: '{{stack}}' }] },
          ],
        },
        {
          title: 'nginx',
          panels: [
            {
              title: 'Requests/s',
              unit: 'reqps',
              targets: [{ expr: `sum by (stack) (rate(nginx_http_requests_total{stack=~"$stack"}[${RI}]))`, legend: '{{stack}}' }],
            },
            {
              title: 'Active connections',
              targets: [{ expr: 'sum by (stack) (nginx_connections_active{stack=~"$stack"})', legend: '{{stack}}' }],
            },
            {
              title: 'nginx up',
              type: 'stat',
              thresholds: [
                [null, 'red'],
                [1, 'green'],
              ],
              targets: [{ expr: 'min by (stack) (nginx_up{stack=~"$stack"})', legend: '{{stack}}' }],
            },
          ],
        },
      ],
    }),
    buildDashboard({
      uid: 'wpfarm-wordpress',
      title: 'wpfarm / WordPress sites (exporter)',
      tags: ['wordpress'],
      variables: [{ name: 'site', label: 'Site', query: 'label_values(wordpress_probe_success, site)' }],
      rows: [
        {
          // one row per site (Grafana repeats it for every selected value of $site)
          title: 'Site $site',
          repeat: 'site',
          panels: [
            {
              title: 'Response time from inside the farm',
              targets: [{ expr: 'wordpress_http_response_seconds{site=~"$site"}', legend: '{{page}}' }],
              unit: 's',
              w: 8,
              thresholds: [
                [null, 'green'],
                [2, 'red'],
              ],
            },
            {
              title: 'Versions',
              type: 'table',
              targets: [
                { expr: 'wordpress_core_info{site=~"$site"}', legend: 'core {{version}}', instant: true },
                { expr: 'wordpress_plugin_info{site=~"$site"}', legend: '{{plugin}} {{version}}', instant: true },
                { expr: 'wordpress_theme_info{site=~"$site"}', legend: '{{theme}} {{version}}', instant: true },
              ],
              w: 8,
            },
            {
              title: 'Updates available (farm offer)',
              type: 'stat',
              targets: [{ expr: 'sum by (kind) (wordpress_updates_available{site=~"$site"})', legend: '{{kind}}' }],
              w: 4,
              thresholds: [
                [null, 'green'],
                [1, 'orange'],
              ],
            },
            {
              title: 'Parts read',
              type: 'stat',
              targets: [{ expr: 'min(wordpress_probe_success{site=~"$site"})' }],
              w: 4,
              min: 0,
              max: 1,
              thresholds: [
                [null, 'red'],
                [1, 'green'],
              ],
            },
            {
              title: 'Database and uploads size',
              targets: [
                { expr: 'wordpress_database_size_bytes{site=~"$site"}', legend: 'database' },
                { expr: 'wordpress_uploads_size_bytes{site=~"$site"}', legend: 'uploads' },
              ],
              unit: 'bytes',
              w: 8,
            },
            {
              title: 'WP-Cron lag',
              targets: [{ expr: 'wordpress_cron_lag_seconds{site=~"$site"}', legend: 'lag' }],
              unit: 's',
              w: 8,
            },
            {
              title: 'Object cache hit ratio',
              targets: [
                {
                  expr:
                    'rate(wordpress_object_cache_hits_total{site=~"$site"}[' +
                    RI +
                    ']) / (rate(wordpress_object_cache_hits_total{site=~"$site"}[' +
                    RI +
                    ']) + rate(wordpress_object_cache_misses_total{site=~"$site"}[' +
                    RI +
                    ']))',
                  legend: 'hit ratio',
                },
              ],
              unit: 'percentunit',
              min: 0,
              max: 1,
              w: 8,
            },
          ],
        },
      ],
    }),
    buildDashboard({
      uid: 'wpfarm-backups-alerts',
      title: 'wpfarm / Backups and alerts',
      tags: ['backup', 'alerts'],
      rows: [
        {
          title: 'Backups',
          panels: [
            {
              title: 'Hours since last successful backup',
              type: 'table',
              w: 12,
              unit: 'h',
              thresholds: [
                [null, 'green'],
                [26, 'red'],
              ],
              targets: [{ expr: 'sort_desc((time() - wpfarm_backup_last_success_timestamp_seconds) / 3600)', instant: true }],
            },
            {
              title: 'Last backup size',
              type: 'table',
              w: 12,
              unit: 'bytes',
              targets: [{ expr: 'wpfarm_backup_last_size_bytes', instant: true }],
            },
            {
              title: 'Backup duration',
              unit: 's',
              targets: [{ expr: 'wpfarm_backup_last_duration_seconds', legend: '{{site}} {{kind}}' }],
            },
          ],
        },
        {
          title: 'Alerts',
          panels: [
            { title: 'Firing alerts', type: 'table', w: 12, targets: [{ expr: 'ALERTS{alertstate="firing"}', instant: true }] },
            {
              title: 'Alerts over time',
              w: 12,
              targets: [{ expr: 'sum by (alertname) (ALERTS{alertstate="firing"})', legend: '{{alertname}}' }],
            },
            {
              title: 'Notifications failed/s',
              targets: [{ expr: `sum by (integration) (rate(alertmanager_notifications_failed_total[${RI}]))`, legend: '{{integration}}' }],
            },
            {
              title: 'Notifications sent/s',
              targets: [{ expr: `sum by (integration) (rate(alertmanager_notifications_total[${RI}]))`, legend: '{{integration}}' }],
            },
          ],
        },
      ],
    }),
  ];
}

/** Every PromQL expression of the dashboards with Grafana's variables replaced by concrete values. */
export function dashboardPromql(ds: Json[]): Array<{ dashboard: string; panel: string; expr: string }> {
  const out: Array<{ dashboard: string; panel: string; expr: string }> = [];
  const concrete = (e: string) =>
    e
      .replaceAll('$__rate_interval', '5m')
      .replaceAll('$__interval', '1m')
      .replace(/\$[a-z_]+/g, '.*');
  for (const d of ds) {
    const walk = (panels: Json[]) => {
      for (const p of panels) {
        if (Array.isArray(p.panels)) walk(p.panels as Json[]);
        for (const t of (p.targets as Json[] | undefined) ?? []) {
          const ds2 = (t.datasource as { type?: string } | undefined)?.type;
          if (ds2 === 'prometheus') out.push({ dashboard: String(d.uid), panel: String(p.title), expr: concrete(String(t.expr)) });
        }
      }
    };
    walk((d.panels as Json[]) ?? []);
    for (const v of (d.templating as { list: Json[] }).list ?? []) {
      const m = /^label_values\((.+),\s*[a-z_]+\)$/.exec(String(v.query));
      if (m) out.push({ dashboard: String(d.uid), panel: `variable ${String(v.name)}`, expr: m[1]! });
    }
  }
  return out;
}

/** provisioning/datasources/wpfarm.yml (templates/monitoring/grafana-datasources.yml.ejs) */
export function grafanaDatasources(urls: { prometheus: string; loki: string; tempo: string; alertmanager: string }): string {
  const uids = { prometheus: DS.prometheus.uid, loki: DS.loki.uid, tempo: DS.tempo.uid, alertmanager: DS.alertmanager.uid };
  return renderTemplate(templatePath('monitoring', 'grafana-datasources.yml.ejs'), { urls, uids });
}

/** provisioning/dashboards/wpfarm.yml (templates/monitoring/grafana-dashboards.yml.ejs) */
export function grafanaDashboardProvider(dir = '/var/lib/grafana/dashboards/wpfarm'): string {
  return renderTemplate(templatePath('monitoring', 'grafana-dashboards.yml.ejs'), { dir });
}
