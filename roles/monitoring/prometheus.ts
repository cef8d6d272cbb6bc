// Pure generators for Prometheus: the scrape configuration (jobs from inventory groups), the alert
// rules of the architecture, and promtool unit tests that prove every alert fires after its `for:`
// window and not before.
import YAML from 'yaml';

/** What the generators need from the inventory: hosts with their groups (no credentials). */
export interface MonitoredHost {
  name: string;
  address: string;
  groups: string[];
}

export interface MonitoredSite {
  id: string;
  /** Swarm stack name of the site */
  stack: string;
}

export interface PrometheusInput {
  hosts: MonitoredHost[];
  sites?: MonitoredSite[];
  /** farm name, an external label on every series and alert */
  farm: string;
  /** Alertmanager addresses host:port */
  alertmanagers: string[];
  /** exporter ports (Debian's defaults) */
  ports?: Partial<typeof DEFAULT_PORTS>;
  /** group names: which hosts run what */
  groups?: Partial<typeof DEFAULT_GROUPS>;
  scrapeInterval?: string;
  evaluationInterval?: string;
  /** where rule files live on the Prometheus host */
  rulesDir?: string;
  /** Prometheus' own address as scraped by itself */
  self?: string;
  /** the WordPress exporter's host (roles/wp-exporter: the first Gluster client), scraped on its published port */
  wordpressExporter?: MonitoredHost;
}

export const DEFAULT_PORTS = {
  node: 9100,
  mysqld: 9104,
  docker: 9323,
  traefik: 8082,
  nginx: 9113,
  redis: 9121,
  phpfpm: 8080,
  prometheus: 9090,
  alertmanager: 9093,
  wordpress: 9117,
};

export const DEFAULT_GROUPS = {
  /** node-exporter everywhere: every host of the inventory */
  db: 'db',
  edge: 'edge',
  swarm: 'swarm',
  monitoring: 'monitoring',
};

type ScrapeConfig = Record<string, unknown>;

function staticTargets(hosts: MonitoredHost[], port: number): Array<Record<string, unknown>> {
  // one static_config per host: instance = the inventory name (alerts and dashboards speak in names)
  return hosts.map((h) => ({ targets: [`${h.address}:${port}`], labels: { instance: h.name } }));
}

function inGroup(hosts: MonitoredHost[], group: string): MonitoredHost[] {
  return hosts.filter((h) => h.groups.includes(group));
}

/** prometheus.yml */
export function prometheusConfig(input: PrometheusInput): Record<string, unknown> {
  const ports = { ...DEFAULT_PORTS, ...input.ports };
  const groups = { ...DEFAULT_GROUPS, ...input.groups };
  const scrape: ScrapeConfig[] = [
    { job_name: 'prometheus', static_configs: [{ targets: [input.self ?? `localhost:${ports.prometheus}`] }] },
    { job_name: 'alertmanager', static_configs: [{ targets: input.alertmanagers }] },
    { job_name: 'node', static_configs: staticTargets(input.hosts, ports.node) },
  ];
  const db = inGroup(input.hosts, groups.db);
  if (db.length) scrape.push({ job_name: 'mysqld', static_configs: staticTargets(db, ports.mysqld) });
  const swarm = inGroup(input.hosts, groups.swarm);
  // dockerd's own metrics (daemon.json "metrics-addr"): engine, containers, swarm manager state
  if (swarm.length) scrape.push({ job_name: 'docker', static_configs: staticTargets(swarm, ports.docker) });
  const edge = inGroup(input.hosts, groups.edge);
  if (edge.length) scrape.push({ job_name: 'traefik', static_configs: staticTargets(edge, ports.traefik) });
  if (input.wordpressExporter) {
    // one exporter for every site: its series carry the site label; the probes take a few seconds per scrape
    scrape.push({
      job_name: 'wordpress',
      scrape_interval: '30s',
      scrape_timeout: '20s',
      static_configs: staticTargets([input.wordpressExporter], ports.wordpress),
    });
  }
  const sites = input.sites ?? [];
  if (sites.length) {
    // site exporters run as Swarm services on the monitoring overlay network: tasks.<service> gives
    // every replica's address (DNS round robin), whichever the endpoint mode
    const dns = (svc: string, port: number) => ({
      names: sites.map((s) => `tasks.${s.stack}_${svc}`),
      type: 'A',
      port,
      refresh_interval: '30s',
    });
    const siteLabel = [{ source_labels: ['__meta_dns_name'], regex: 'tasks\\.(.+)_[a-z-]+', target_label: 'stack', replacement: '$1' }];
    scrape.push(
      { job_name: 'nginx', dns_sd_configs: [dns('nginx-exporter', ports.nginx)], relabel_configs: siteLabel },
      { job_name: 'redis', dns_sd_configs: [dns('redis-exporter', ports.redis)], relabel_configs: siteLabel },
      {
        // PHP-FPM (8.1+) serves its status page in OpenMetrics format itself: no extra exporter
        job_name: 'phpfpm',
        metrics_path: '/fpm-status',
        params: { openmetrics: [''] },
        dns_sd_configs: [dns('nginx', ports.phpfpm)],
        relabel_configs: siteLabel,
      },
    );
  }
  return {
    global: {
      scrape_interval: input.scrapeInterval ?? '15s',
      evaluation_interval: input.evaluationInterval ?? '15s',
      scrape_timeout: '10s',
      external_labels: { farm: input.farm },
    },
    alerting: { alertmanagers: [{ static_configs: [{ targets: input.alertmanagers }] }] },
    rule_files: [`${input.rulesDir ?? '/etc/prometheus/rules'}/*.yml`],
    scrape_configs: scrape,
  };
}

export interface AlertRule {
  alert: string;
  expr: string;
  for: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

export interface RuleOptions {
  /** lab speed-up: replaces every `for:` (the production values are the defaults) */
  forOverride?: string;
  diskPercent?: number;
  memoryPercent?: number;
  http5xxRatio?: number;
  certDays?: number;
  galeraMinSize?: number;
  backupMaxAgeHours?: number;
  /** Varnish: a site's hit ratio under this (of hits + misses, over 15 min) is low */
  varnishHitRatio?: number;
  /** a running update that has not reported progress for this long is stalled */
  updateStallHours?: number;
  /** a site is slow when its home page or wp-login takes longer (seconds) */
  siteSlowSeconds?: number;
  /** core or a plugin may stay behind the farm's offer this many days */
  updateMaxDays?: number;
  /** WP-Cron is stuck when its oldest due event is this late (minutes) */
  cronLagMinutes?: number;
  /** hours without a clean copy to the second region (replication runs every 6 hours) */
  replicationMaxLagHours?: number;
}

const FS = 'fstype!~"tmpfs|overlay|squashfs|nsfs|fuse.*",mountpoint!~"/run.*|/var/lib/docker/.*"';

/** The alerts of the architecture, as one rule group. */
export function alertRules(o: RuleOptions = {}): AlertRule[] {
  const disk = o.diskPercent ?? 85;
  const mem = o.memoryPercent ?? 90;
  const ratio = o.http5xxRatio ?? 0.05;
  const days = o.certDays ?? 7;
  const minSize = o.galeraMinSize ?? 3;
  const backupHours = o.backupMaxAgeHours ?? 26;
  const hitRatio = o.varnishHitRatio ?? 0.5;
  const stallHours = o.updateStallHours ?? 2;
  const slow = o.siteSlowSeconds ?? 2;
  const updateDays = o.updateMaxDays ?? 14;
  const cronMin = o.cronLagMinutes ?? 60;
  const lagHours = o.replicationMaxLagHours ?? 13;
  const f = (d: string) => o.forOverride ?? d;
  // the Varnish collector (templates/monitoring/wpfarm-varnish-stats): counters per varnish task
  const vRate = (m: string) => `sum by (stack) (rate(wpfarm_varnish_cache_${m}_total[15m]))`;
  return [
    {
      alert: 'NodeDown',
      expr: 'up{job="node"} == 0',
      for: f('5m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Node {{ $labels.instance }} is down',
        description: 'node-exporter on {{ $labels.instance }} has not answered for more than 5 minutes.',
      },
    },
    {
      alert: 'DiskSpaceHigh',
      expr: `(1 - node_filesystem_avail_bytes{${FS}} / node_filesystem_size_bytes{${FS}}) * 100 > ${disk}`,
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Disk {{ $labels.mountpoint }} on {{ $labels.instance }} is over ' + disk + '% full',
        description: 'Free space or grow the volume before writes fail.',
      },
    },
    {
      alert: 'MemoryHigh',
      expr: `(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes) * 100 > ${mem}`,
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: { summary: 'Memory on {{ $labels.instance }} is over ' + mem + '% used', description: 'The OOM killer is next.' },
    },
    {
      alert: 'SwarmServiceReplicasBelowExpected',
      // written by wpfarm-swarm-replicas (textfile collector of node-exporter on the managers);
      // max by (service): every manager reports the same numbers
      expr: 'max by (service) (wpfarm_swarm_service_replicas_running) < max by (service) (wpfarm_swarm_service_replicas_desired)',
      for: f('5m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Swarm service {{ $labels.service }} runs fewer replicas than expected',
        description: 'Check `docker service ps {{ $labels.service }}` for failing tasks.',
      },
    },
    {
      alert: 'SwarmReplicaMetricsStale',
      expr: 'time() - max(wpfarm_swarm_services_timestamp_seconds) > 300',
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'No manager has reported Swarm service replicas for 5 minutes',
        description: 'The replica alert is blind: check the wpfarm-swarm-replicas timer on the managers.',
      },
    },
    {
      alert: 'GaleraNodeDown',
      expr: 'mysql_up == 0',
      for: f('2m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'MariaDB on {{ $labels.instance }} does not answer',
        description: 'mysqld-exporter cannot connect to the database.',
      },
    },
    {
      alert: 'GaleraClusterSizeLow',
      expr: `mysql_global_status_wsrep_cluster_size < ${minSize}`,
      for: f('1m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Galera cluster size below ' + minSize + ' (seen from {{ $labels.instance }})',
        description: 'A node left the cluster; one more loss ends quorum.',
      },
    },
    {
      alert: 'GaleraNodeNotSynced',
      // wsrep_local_state 4 = Synced
      expr: 'mysql_global_status_wsrep_local_state != 4',
      for: f('5m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Galera node {{ $labels.instance }} is not Synced',
        description: 'It is joining, donating or desynced for more than 5 minutes.',
      },
    },
    {
      alert: 'GaleraFlowControl',
      // fraction of time replication was paused by flow control
      expr: 'rate(mysql_global_status_wsrep_flow_control_paused_ns[5m]) / 1e9 > 0.1',
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Galera flow control pauses replication on {{ $labels.instance }}',
        description: 'A slow node throttles the whole cluster (more than 10% of the time paused).',
      },
    },
    {
      alert: 'HTTP5xxRateHigh',
      expr: `sum by (service) (rate(traefik_service_requests_total{code=~"5.."}[5m])) / sum by (service) (rate(traefik_service_requests_total[5m])) > ${ratio}`,
      for: f('5m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'More than ' + ratio * 100 + '% of requests to {{ $labels.service }} fail with 5xx',
        description: "Look at the site's php-fpm and nginx logs.",
      },
    },
    {
      alert: 'CertificateExpiringSoon',
      expr: `min by (cn) (traefik_tls_certs_not_after) - time() < ${days} * 86400`,
      for: f('10m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Certificate for {{ $labels.cn }} expires in less than ' + days + ' days',
        description: "ACME renewal is failing: check Traefik's log for the resolver.",
      },
    },
    {
      alert: 'BackupTooOld',
      expr: `time() - wpfarm_backup_last_success_timestamp_seconds > ${backupHours} * 3600`,
      for: f('15m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Last successful {{ $labels.kind }} backup of {{ $labels.site }} is older than ' + backupHours + ' hours',
        description: "Check the backup job's log.",
      },
    },
    {
      alert: 'BackupReplicationLagging',
      // written by `backup.ts --what replicate` (every 6 h; textfile collector on the db host): the end of the last
      // run whose copy, verification and restic check were all clean (roles/backup/replica.ts)
      expr: `time() - max by (replica) (wpfarm_backup_replication_last_success_timestamp_seconds) > ${lagHours} * 3600`,
      for: f('15m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Backups have not reached the second region {{ $labels.replica }} cleanly for ' + lagHours + ' hours',
        description:
          'The DR copy lags: read the last `backup.ts --what replicate` report (a copy, the verification or restic check failed, ' +
          'or the timer did not run).',
      },
    },
    {
      alert: 'WpfarmDriftPersists',
      // written by playbooks/drift.ts (hourly, textfile collector): steps that a run would change
      expr: 'max by (role, host) (wpfarm_drift_changes) > 0',
      for: f('2h'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Role {{ $labels.role }} has drifted on {{ $labels.host }} for 2 hours',
        description:
          'Someone changed the host by hand or a run failed: see `run-role.ts {{ $labels.role }} --limit {{ $labels.host }} --check --diff`.',
      },
    },
    {
      alert: 'KeepalivedFault',
      // written by keepalived's notify script (templates/keepalived/notify.sh.ejs) on every edge node
      expr: 'max by (instance, vrrp_instance) (wpfarm_keepalived_state{state="fault"}) == 1',
      for: f('2m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Edge node {{ $labels.instance }} is in VRRP FAULT state',
        description: 'Its health check of the local edge listener fails: it cannot take the virtual IP over.',
      },
    },
    {
      alert: 'KeepalivedMasterCount',
      expr: 'sum by (vrrp_instance) (wpfarm_keepalived_state{state="master"}) != 1',
      for: f('1m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'VRRP instance {{ $labels.vrrp_instance }} has no master or more than one',
        description: 'No edge node holds the virtual IP (or two do: split brain). See `journalctl -u keepalived` on the edge nodes.',
      },
    },
    {
      alert: 'VarnishDown',
      expr: 'wpfarm_varnish_up == 0',
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Varnish task {{ $labels.task }} on {{ $labels.instance }} does not answer',
        description: 'varnishstat or varnishadm failed in the task (wpfarm-varnish-stats on the node).',
      },
    },
    {
      alert: 'VarnishBackendSick',
      expr: 'wpfarm_varnish_backend_healthy == 0',
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Varnish of {{ $labels.stack }} sees its backend {{ $labels.backend }} as sick',
        description: 'An nginx task of the site fails its health probe; the other tasks carry the load.',
      },
    },
    {
      alert: 'VarnishAllBackendsSick',
      expr: 'max by (stack) (wpfarm_varnish_backend_healthy) == 0',
      for: f('1m'),
      labels: { severity: 'critical' },
      annotations: {
        summary: 'Every nginx backend of {{ $labels.stack }} is sick',
        description: 'Varnish serves cached pages in grace mode only; everything else fails. Check the nginx and php-fpm services.',
      },
    },
    {
      alert: 'VarnishHitRatioLow',
      // only sites with traffic (> 0.1 cacheable lookups per second): a quiet site's ratio means nothing
      expr: `${vRate('hit')} / (${vRate('hit')} + ${vRate('miss')}) < ${hitRatio}` + ` and (${vRate('hit')} + ${vRate('miss')}) > 0.1`,
      for: f('30m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'Varnish hit ratio of {{ $labels.stack }} is under ' + hitRatio * 100 + '%',
        description: 'Pages are not cached: look for Set-Cookie or Cache-Control: no-cache from the site, or purges in a loop.',
      },
    },
    {
      alert: 'WpfarmUpdateSitesFailed',
      // written by playbooks/update.ts and rollback.ts on the managers (roles/update/metrics.ts)
      expr: 'max(wpfarm_update_sites{status="failed"}) > 0',
      for: f('1m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'The last farm update left failed sites',
        description: 'They run their previous images and plugins: see the update state file, then rerun update.ts or rollback.ts.',
      },
    },
    {
      alert: 'WpfarmUpdateStalled',
      expr: `max(wpfarm_update_running) == 1 and time() - max(wpfarm_update_last_progress_timestamp_seconds) > ${stallHours} * 3600`,
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'A farm update has reported no progress for ' + stallHours + ' hours',
        description: 'update.ts was killed or hangs in a wave: check the controller, then rerun it (it resumes).',
      },
    },
    {
      alert: 'WordPressSiteSlow',
      // the WordPress exporter's probes from inside the farm (home page uncached, wp-login); the time of a page
      // that answered 200 only (a refused or failed probe is WordPressPageFailing, never a timing)
      expr:
        `max by (site, page) (wordpress_http_response_seconds and on (job, instance, site, page) wordpress_http_status == 200)` +
        ` > ${slow}`,
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'The {{ $labels.page }} page of {{ $labels.site }} takes more than ' + slow + ' s',
        description: "Seen from inside the farm (no CDN, no page cache): look at the site's php-fpm, its plugins and the database.",
      },
    },
    {
      alert: 'WordPressPageFailing',
      // the exporter's probe got something else than the page: 403 (refused: the admin allowlist), 0 (no answer
      // within its timeout), 5xx, a redirect
      expr: 'max by (site, page) (wordpress_http_status) != 200',
      for: f('5m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: "The {{ $labels.page }} page of {{ $labels.site }} does not answer 200 to the farm's probe",
        description:
          'wordpress_http_status says what it got: 403 on login is the admin allowlist refusing the probe (NGINX_PROBE_FROM), ' +
          "0 no answer, 5xx the site's php-fpm or database.",
      },
    },
    {
      alert: 'WordPressUpdatePending',
      expr: `max by (site, kind, name) (wordpress_update_pending_seconds) > ${updateDays} * 86400`,
      for: f('1h'),
      labels: { severity: 'warning' },
      annotations: {
        summary: '{{ $labels.kind }} {{ $labels.name }} of {{ $labels.site }} is behind the farm for more than ' + updateDays + ' days',
        description: 'Roll the site forward with playbooks/update.ts (the canary first).',
      },
    },
    {
      alert: 'WordPressCronStuck',
      expr: `max by (site) (wordpress_cron_lag_seconds) > ${cronMin} * 60`,
      for: f('15m'),
      labels: { severity: 'warning' },
      annotations: {
        summary: 'WP-Cron of {{ $labels.site }} is more than ' + cronMin + ' minutes late',
        description: "Scheduled posts, cleanups and mails wait: check the site's cron runner and php-fpm.",
      },
    },
  ];
}

export function rulesFile(rules: AlertRule[]): Record<string, unknown> {
  return { groups: [{ name: 'wpfarm', rules }] };
}

/** A promtool unit-test case for one alert: series that make it true, and the labels it fires with. */
export interface AlertCase {
  alert: string;
  series: Array<{ series: string; values: string }>;
  /** first evaluation (minutes from 0) at which the expression is true */
  trueFromMin: number;
  /** labels of the firing alert (without the rule's own labels) */
  labels: Record<string, string>;
  /** series that must NOT fire (a healthy neighbour) */
  healthy?: Array<{ series: string; values: string }>;
}

/** Inputs for every alert; the unit tests are derived from them and the rules' `for:`. */
export function alertCases(o: RuleOptions = {}): AlertCase[] {
  const N = 120; // minutes of samples, one per minute
  const flat = (v: number | string) => `${v}x${N}`;
  return [
    {
      alert: 'NodeDown',
      series: [{ series: 'up{job="node",instance="wrk1"}', values: flat(0) }],
      healthy: [{ series: 'up{job="node",instance="wrk2"}', values: flat(1) }],
      trueFromMin: 0,
      labels: { job: 'node', instance: 'wrk1' },
    },
    {
      alert: 'DiskSpaceHigh',
      series: [
        { series: 'node_filesystem_avail_bytes{instance="db1",mountpoint="/",fstype="ext4",device="/dev/vda1"}', values: flat(10) },
        { series: 'node_filesystem_size_bytes{instance="db1",mountpoint="/",fstype="ext4",device="/dev/vda1"}', values: flat(100) },
      ],
      healthy: [
        { series: 'node_filesystem_avail_bytes{instance="db2",mountpoint="/",fstype="ext4",device="/dev/vda1"}', values: flat(16) },
        { series: 'node_filesystem_size_bytes{instance="db2",mountpoint="/",fstype="ext4",device="/dev/vda1"}', values: flat(100) },
        // tmpfs is ignored even when full
        { series: 'node_filesystem_avail_bytes{instance="db2",mountpoint="/dev/shm",fstype="tmpfs",device="tmpfs"}', values: flat(0) },
        { series: 'node_filesystem_size_bytes{instance="db2",mountpoint="/dev/shm",fstype="tmpfs",device="tmpfs"}', values: flat(100) },
      ],
      trueFromMin: 0,
      labels: { instance: 'db1', mountpoint: '/', fstype: 'ext4', device: '/dev/vda1' },
    },
    {
      alert: 'MemoryHigh',
      series: [
        { series: 'node_memory_MemAvailable_bytes{instance="wrk1"}', values: flat(5) },
        { series: 'node_memory_MemTotal_bytes{instance="wrk1"}', values: flat(100) },
      ],
      healthy: [
        { series: 'node_memory_MemAvailable_bytes{instance="wrk2"}', values: flat(11) },
        { series: 'node_memory_MemTotal_bytes{instance="wrk2"}', values: flat(100) },
      ],
      trueFromMin: 0,
      labels: { instance: 'wrk1' },
    },
    {
      alert: 'SwarmServiceReplicasBelowExpected',
      series: [
        { series: 'wpfarm_swarm_service_replicas_desired{instance="mgr1",service="site-a_nginx"}', values: flat(2) },
        { series: 'wpfarm_swarm_service_replicas_running{instance="mgr1",service="site-a_nginx"}', values: flat(1) },
        { series: 'wpfarm_swarm_service_replicas_desired{instance="mgr2",service="site-a_nginx"}', values: flat(2) },
        { series: 'wpfarm_swarm_service_replicas_running{instance="mgr2",service="site-a_nginx"}', values: flat(1) },
      ],
      healthy: [
        { series: 'wpfarm_swarm_service_replicas_desired{instance="mgr1",service="site-b_nginx"}', values: flat(2) },
        { series: 'wpfarm_swarm_service_replicas_running{instance="mgr1",service="site-b_nginx"}', values: flat(2) },
      ],
      trueFromMin: 0,
      labels: { service: 'site-a_nginx' },
    },
    {
      alert: 'SwarmReplicaMetricsStale',
      // the last report was written at t=0 (value 0 s) and never again: stale from t > 300 s
      series: [{ series: 'wpfarm_swarm_services_timestamp_seconds{instance="mgr1"}', values: flat(0) }],
      trueFromMin: 6,
      labels: {},
    },
    {
      alert: 'GaleraNodeDown',
      series: [{ series: 'mysql_up{job="mysqld",instance="db2"}', values: flat(0) }],
      healthy: [{ series: 'mysql_up{job="mysqld",instance="db1"}', values: flat(1) }],
      trueFromMin: 0,
      labels: { job: 'mysqld', instance: 'db2' },
    },
    {
      alert: 'GaleraClusterSizeLow',
      series: [{ series: 'mysql_global_status_wsrep_cluster_size{job="mysqld",instance="db1"}', values: flat(2) }],
      healthy: [{ series: 'mysql_global_status_wsrep_cluster_size{job="mysqld",instance="db9"}', values: flat(3) }],
      trueFromMin: 0,
      labels: { job: 'mysqld', instance: 'db1' },
    },
    {
      alert: 'GaleraNodeNotSynced',
      series: [{ series: 'mysql_global_status_wsrep_local_state{job="mysqld",instance="db3"}', values: flat(2) }],
      healthy: [{ series: 'mysql_global_status_wsrep_local_state{job="mysqld",instance="db1"}', values: flat(4) }],
      trueFromMin: 0,
      labels: { job: 'mysqld', instance: 'db3' },
    },
    {
      alert: 'GaleraFlowControl',
      // paused 30 s of every 60 s: 50% of the time; the neighbour 3 s per minute (5%)
      series: [{ series: 'mysql_global_status_wsrep_flow_control_paused_ns{job="mysqld",instance="db2"}', values: `0+30000000000x${N}` }],
      healthy: [{ series: 'mysql_global_status_wsrep_flow_control_paused_ns{job="mysqld",instance="db1"}', values: `0+3000000000x${N}` }],
      // rate() over [5m] with samples only since 0m is not extrapolated to the whole window: at 1m it
      // reads 30e9/300 s = 0.1 (not > 0.1), at 2m 0.2: true from the evaluation at 2m
      trueFromMin: 2,
      labels: { job: 'mysqld', instance: 'db2' },
    },
    {
      alert: 'HTTP5xxRateHigh',
      // site-a: 10 of 100 requests per minute fail (10%); site-b: 4 of 100 (4%, under 5%)
      series: [
        { series: 'traefik_service_requests_total{service="site-a@swarm",code="200",method="GET",protocol="http"}', values: `0+90x${N}` },
        { series: 'traefik_service_requests_total{service="site-a@swarm",code="502",method="GET",protocol="http"}', values: `0+10x${N}` },
      ],
      healthy: [
        { series: 'traefik_service_requests_total{service="site-b@swarm",code="200",method="GET",protocol="http"}', values: `0+96x${N}` },
        { series: 'traefik_service_requests_total{service="site-b@swarm",code="500",method="GET",protocol="http"}', values: `0+4x${N}` },
      ],
      trueFromMin: 1,
      labels: { service: 'site-a@swarm' },
    },
    {
      alert: 'CertificateExpiringSoon',
      // not_after = 6 days from the start; the neighbour's is 30 days away
      series: [
        { series: 'traefik_tls_certs_not_after{cn="shop.example.org",serial="1",sans="shop.example.org"}', values: flat(6 * 86400) },
      ],
      healthy: [{ series: 'traefik_tls_certs_not_after{cn="example.com",serial="2",sans="example.com"}', values: flat(30 * 86400) }],
      trueFromMin: 0,
      labels: { cn: 'shop.example.org' },
    },
    {
      alert: 'BackupTooOld',
      // last success 25 h before the start (timestamps are negative: promtool's clock starts at 0):
      // older than 26 h from t = 60 min on; the other site's backup is fresh (1 h old)
      series: [
        {
          series: 'wpfarm_backup_last_success_timestamp_seconds{site="site-a",kind="db"}',
          values: flat(-(o.backupMaxAgeHours ?? 26) * 3600 + 3600),
        },
      ],
      healthy: [{ series: 'wpfarm_backup_last_success_timestamp_seconds{site="site-b",kind="db"}', values: flat(-3600) }],
      trueFromMin: 61,
      labels: { site: 'site-a', kind: 'db' },
    },
    {
      alert: 'BackupReplicationLagging',
      // the last clean copy to ams3 12 h before the start: older than 13 h from t = 60 min on; fra1's copy to lon1 is fresh
      series: [
        {
          series: 'wpfarm_backup_replication_last_success_timestamp_seconds{instance="db1",replica="https://ams3.example/wpfarm-ams3"}',
          values: flat(-(o.replicationMaxLagHours ?? 13) * 3600 + 3600),
        },
      ],
      healthy: [
        {
          series: 'wpfarm_backup_replication_last_success_timestamp_seconds{instance="db1",replica="https://lon1.example/wpfarm-lon1"}',
          values: flat(-3600),
        },
      ],
      trueFromMin: 61,
      labels: { replica: 'https://ams3.example/wpfarm-ams3' },
    },
    {
      alert: 'WpfarmDriftPersists',
      // common drifted on mgr1 (3 steps) at every hourly check; traefik on mgr1 and common on mgr2 are clean
      series: [{ series: 'wpfarm_drift_changes{instance="mgr1",role="common",host="mgr1"}', values: flat(3) }],
      healthy: [
        { series: 'wpfarm_drift_changes{instance="mgr1",role="traefik",host="mgr1"}', values: flat(0) },
        { series: 'wpfarm_drift_changes{instance="mgr2",role="common",host="mgr2"}', values: flat(0) },
      ],
      trueFromMin: 0,
      labels: { role: 'common', host: 'mgr1' },
    },
    {
      alert: 'KeepalivedFault',
      series: [{ series: 'wpfarm_keepalived_state{instance="mgr1",vrrp_instance="WPFARM_EDGE",state="fault"}', values: flat(1) }],
      healthy: [{ series: 'wpfarm_keepalived_state{instance="mgr2",vrrp_instance="WPFARM_EDGE",state="fault"}', values: flat(0) }],
      trueFromMin: 0,
      labels: { instance: 'mgr1', vrrp_instance: 'WPFARM_EDGE' },
    },
    {
      alert: 'KeepalivedMasterCount',
      // WPFARM_EDGE: both reporting nodes are backups (the master died or lost its VIP); OTHER has exactly one master
      series: [
        { series: 'wpfarm_keepalived_state{instance="mgr2",vrrp_instance="WPFARM_EDGE",state="master"}', values: flat(0) },
        { series: 'wpfarm_keepalived_state{instance="mgr3",vrrp_instance="WPFARM_EDGE",state="master"}', values: flat(0) },
      ],
      healthy: [
        { series: 'wpfarm_keepalived_state{instance="mgr2",vrrp_instance="OTHER",state="master"}', values: flat(1) },
        { series: 'wpfarm_keepalived_state{instance="mgr3",vrrp_instance="OTHER",state="master"}', values: flat(0) },
      ],
      trueFromMin: 0,
      labels: { vrrp_instance: 'WPFARM_EDGE' },
    },
    {
      alert: 'VarnishDown',
      series: [{ series: 'wpfarm_varnish_up{instance="wrk1",stack="wp-a",task="wp-a_varnish.1.x"}', values: flat(0) }],
      healthy: [{ series: 'wpfarm_varnish_up{instance="wrk2",stack="wp-a",task="wp-a_varnish.2.y"}', values: flat(1) }],
      trueFromMin: 0,
      labels: { instance: 'wrk1', stack: 'wp-a', task: 'wp-a_varnish.1.x' },
    },
    {
      alert: 'VarnishBackendSick',
      series: [
        {
          series: 'wpfarm_varnish_backend_healthy{instance="wrk1",stack="wp-a",task="wp-a_varnish.1.x",backend="nginx1"}',
          values: flat(0),
        },
      ],
      healthy: [
        {
          series: 'wpfarm_varnish_backend_healthy{instance="wrk1",stack="wp-a",task="wp-a_varnish.1.x",backend="nginx0"}',
          values: flat(1),
        },
      ],
      trueFromMin: 0,
      labels: { instance: 'wrk1', stack: 'wp-a', task: 'wp-a_varnish.1.x', backend: 'nginx1' },
    },
    {
      alert: 'VarnishAllBackendsSick',
      // wp-a: both backends sick in both tasks; wp-b: one of two sick
      series: [
        {
          series: 'wpfarm_varnish_backend_healthy{instance="wrk1",stack="wp-a",task="wp-a_varnish.1.x",backend="nginx0"}',
          values: flat(0),
        },
        {
          series: 'wpfarm_varnish_backend_healthy{instance="wrk1",stack="wp-a",task="wp-a_varnish.1.x",backend="nginx1"}',
          values: flat(0),
        },
        {
          series: 'wpfarm_varnish_backend_healthy{instance="wrk2",stack="wp-a",task="wp-a_varnish.2.y",backend="nginx0"}',
          values: flat(0),
        },
      ],
      healthy: [
        {
          series: 'wpfarm_varnish_backend_healthy{instance="wrk1",stack="wp-b",task="wp-b_varnish.1.z",backend="nginx0"}',
          values: flat(1),
        },
        {
          series: 'wpfarm_varnish_backend_healthy{instance="wrk1",stack="wp-b",task="wp-b_varnish.1.z",backend="nginx1"}',
          values: flat(0),
        },
      ],
      trueFromMin: 0,
      labels: { stack: 'wp-a' },
    },
    {
      alert: 'VarnishHitRatioLow',
      // per minute: wp-a 100 hits, 300 misses (25%) over two tasks; wp-b 90 hits, 10 misses (90%); wp-c 1 miss a
      // minute (0%, but under 0.1 lookups per second). rate() needs two samples: true from the evaluation at 1m (with
      // one minute of samples rate() divides by the 15 min range: 400 lookups read as 0.44/s, over the 0.1/s floor)
      series: [
        { series: 'wpfarm_varnish_cache_hit_total{instance="wrk1",stack="wp-a",task="wp-a_varnish.1.x"}', values: `0+50x${N}` },
        { series: 'wpfarm_varnish_cache_miss_total{instance="wrk1",stack="wp-a",task="wp-a_varnish.1.x"}', values: `0+150x${N}` },
        { series: 'wpfarm_varnish_cache_hit_total{instance="wrk2",stack="wp-a",task="wp-a_varnish.2.y"}', values: `0+50x${N}` },
        { series: 'wpfarm_varnish_cache_miss_total{instance="wrk2",stack="wp-a",task="wp-a_varnish.2.y"}', values: `0+150x${N}` },
      ],
      healthy: [
        { series: 'wpfarm_varnish_cache_hit_total{instance="wrk1",stack="wp-b",task="wp-b_varnish.1.z"}', values: `0+90x${N}` },
        { series: 'wpfarm_varnish_cache_miss_total{instance="wrk1",stack="wp-b",task="wp-b_varnish.1.z"}', values: `0+10x${N}` },
        { series: 'wpfarm_varnish_cache_hit_total{instance="wrk1",stack="wp-c",task="wp-c_varnish.1.w"}', values: flat(0) },
        { series: 'wpfarm_varnish_cache_miss_total{instance="wrk1",stack="wp-c",task="wp-c_varnish.1.w"}', values: `0+1x${N}` },
      ],
      trueFromMin: 1,
      labels: { stack: 'wp-a' },
    },
    {
      alert: 'WpfarmUpdateSitesFailed',
      // every manager reports the same numbers
      series: [
        { series: 'wpfarm_update_sites{instance="mgr1",status="failed"}', values: flat(2) },
        { series: 'wpfarm_update_sites{instance="mgr2",status="failed"}', values: flat(2) },
      ],
      healthy: [{ series: 'wpfarm_update_sites{instance="mgr1",status="updated"}', values: flat(9) }],
      trueFromMin: 0,
      labels: {},
    },
    {
      alert: 'WpfarmUpdateStalled',
      // running; the last progress was written 10 minutes less than the stall limit before the start:
      // past the limit from t > 600 s
      series: [
        { series: 'wpfarm_update_running{instance="mgr1"}', values: flat(1) },
        {
          series: 'wpfarm_update_last_progress_timestamp_seconds{instance="mgr1"}',
          values: flat(-(o.updateStallHours ?? 2) * 3600 + 600),
        },
      ],
      trueFromMin: 11,
      labels: {},
    },
    {
      alert: 'WordPressSiteSlow',
      // site-a's wp-login takes 3 s; its home page and site-b answer in 0.3 s; site-c's wp-login takes 3 s to be
      // refused (403): not the page's time, never "slow"
      series: [
        { series: 'wordpress_http_response_seconds{job="wordpress",instance="wrk1",site="site-a",page="login"}', values: flat(3) },
        { series: 'wordpress_http_status{job="wordpress",instance="wrk1",site="site-a",page="login"}', values: flat(200) },
      ],
      healthy: [
        { series: 'wordpress_http_response_seconds{job="wordpress",instance="wrk1",site="site-a",page="home"}', values: flat(0.3) },
        { series: 'wordpress_http_status{job="wordpress",instance="wrk1",site="site-a",page="home"}', values: flat(200) },
        { series: 'wordpress_http_response_seconds{job="wordpress",instance="wrk1",site="site-b",page="login"}', values: flat(0.3) },
        { series: 'wordpress_http_status{job="wordpress",instance="wrk1",site="site-b",page="login"}', values: flat(200) },
        { series: 'wordpress_http_response_seconds{job="wordpress",instance="wrk1",site="site-c",page="login"}', values: flat(3) },
        { series: 'wordpress_http_status{job="wordpress",instance="wrk1",site="site-c",page="login"}', values: flat(403) },
      ],
      trueFromMin: 0,
      labels: { site: 'site-a', page: 'login' },
    },
    {
      alert: 'WordPressPageFailing',
      // site-a's wp-login is refused (403) from minute 3; its home page and site-b's pages answer 200
      series: [{ series: 'wordpress_http_status{job="wordpress",instance="wrk1",site="site-a",page="login"}', values: `200x2 403x${N}` }],
      healthy: [
        { series: 'wordpress_http_status{job="wordpress",instance="wrk1",site="site-a",page="home"}', values: flat(200) },
        { series: 'wordpress_http_status{job="wordpress",instance="wrk1",site="site-b",page="login"}', values: flat(200) },
      ],
      trueFromMin: 3,
      labels: { site: 'site-a', page: 'login' },
    },
    {
      alert: 'WordPressUpdatePending',
      // site-a's plugin is behind by 14 days minus one minute at the start: more than 14 days from minute 2;
      // site-b's core by one day
      series: [
        {
          series: 'wordpress_update_pending_seconds{job="wordpress",instance="wrk1",site="site-a",kind="plugin",name="akismet"}',
          values: `${(o.updateMaxDays ?? 14) * 86400 - 60}+60x${N}`,
        },
      ],
      healthy: [
        {
          series: 'wordpress_update_pending_seconds{job="wordpress",instance="wrk1",site="site-b",kind="core",name="wordpress"}',
          values: `86400+60x${N}`,
        },
      ],
      trueFromMin: 2,
      labels: { site: 'site-a', kind: 'plugin', name: 'akismet' },
    },
    {
      alert: 'WordPressCronStuck',
      // site-a's oldest due event falls one more minute behind every minute, from 50 min: over 60 from minute 11
      series: [{ series: 'wordpress_cron_lag_seconds{job="wordpress",instance="wrk1",site="site-a"}', values: `3000+60x${N}` }],
      healthy: [{ series: 'wordpress_cron_lag_seconds{job="wordpress",instance="wrk1",site="site-b"}', values: flat(30) }],
      trueFromMin: 11,
      labels: { site: 'site-a' },
    },
  ];
}

/** Go-style duration of `for:` in minutes ("5m", "1h", "30s" → 0.5). */
export function durationMinutes(d: string): number {
  const m = /^(\d+)(s|m|h)$/.exec(d);
  if (!m) throw new Error(`unsupported duration ${d}`);
  const n = Number(m[1]);
  return m[2] === 's' ? n / 60 : m[2] === 'h' ? n * 60 : n;
}

/** Render an annotation template for the labels promtool will see ({{ $labels.x }} only). */
export function renderAnnotation(tmpl: string, labels: Record<string, string>): string {
  return tmpl.replace(/\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, (_, k: string) => labels[k] ?? '');
}

/**
 * promtool test file: for every alert, one evaluation one minute before the `for:` window ends
 * (no alert) and one when it ends (the alert, with exact labels and annotations).
 */
export function promtoolTests(rules: AlertRule[], cases: AlertCase[], rulesFileName: string): Record<string, unknown> {
  const byName = new Map(rules.map((r) => [r.alert, r]));
  const tests: Array<Record<string, unknown>> = [];
  for (const c of cases) {
    const rule = byName.get(c.alert);
    if (!rule) throw new Error(`no rule for case ${c.alert}`);
    const forMin = durationMinutes(rule.for);
    const firesAt = c.trueFromMin + Math.ceil(forMin);
    const before = Math.max(0, firesAt - 1);
    const labels = { ...c.labels, ...rule.labels, alertname: rule.alert };
    const annotations = Object.fromEntries(Object.entries(rule.annotations).map(([k, v]) => [k, renderAnnotation(v, labels)]));
    const { alertname: _drop, ...expLabels } = labels;
    void _drop;
    tests.push({
      name: `${c.alert}: fires after for=${rule.for}, not before`,
      interval: '1m',
      input_series: [...c.series, ...(c.healthy ?? [])],
      alert_rule_test: [
        { eval_time: `${before}m`, alertname: c.alert, exp_alerts: [] },
        { eval_time: `${firesAt}m`, alertname: c.alert, exp_alerts: [{ exp_labels: expLabels, exp_annotations: annotations }] },
      ],
    });
  }
  return { rule_files: [rulesFileName], evaluation_interval: '1m', tests };
}

export function toYaml(doc: unknown): string {
  return YAML.stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}
