// monitoring: node-exporter on every host (with the textfile collector), mysqld-exporter on db hosts,
// the Swarm replica report on managers, the Varnish report (wpfarm-varnish-stats) on every Swarm node, Prometheus + Alertmanager from Debian's packages on the
// monitoring host (rules, receivers from the inventory's alert_channels), and the Grafana/Loki/Tempo/
// Promtail stack (skipped with the reason where those images cannot be pulled, as in the lab).
// Generators: prometheus.ts, alertmanager.ts, dashboards.ts, stacks.ts; text configs in templates/monitoring/;
// variables in docs/roles/monitoring.md.
import { InputError } from '../../lib/errors.ts';
import { lookupEnv, envFileShown } from '../../lib/env.ts';
import { apt } from '../../lib/ops/apt.ts';
import { nestedOutputs, nestedProbe, task } from '../../lib/ops/base.ts';
import { command } from '../../lib/ops/command.ts';
import { copy, directory, file } from '../../lib/ops/files.ts';
import { dockerConfig, dockerSecret, imagePresentProbe, stackDeploy, type SecretResult } from '../../lib/ops/docker.ts';
import { systemd, unitFile } from '../../lib/ops/systemd.ts';
import { renderTemplate, template, templatePath } from '../../lib/ops/template.ts';
import { sh } from '../../lib/shell.ts';
import { createHash } from 'node:crypto';
import { LOCK_WAIT, nativePasswordHash } from '../galera/role.ts';
import type { Role, Step, StepContext } from '../../lib/types.ts';
import { prometheusConfig, alertRules, rulesFile, toYaml } from './prometheus.ts';
import { parseChannels, renderAlertmanager, AlertChannelError } from './alertmanager.ts';
import { dashboards, grafanaDatasources, grafanaDashboardProvider } from './dashboards.ts';
import { RETENTION_VARS, retentionOf } from '../common/retention.ts';
import { TEXTFILE_DIR } from './textfile.ts';
import { exporterGroup } from '../wp-exporter/stack.ts';
import { IMAGES, lokiConfig, tempoConfig, promtailConfig, monitoringStack } from './stacks.ts';

/** templates/monitoring/<name>: the text configs of this role */
const tpl = (name: string) => templatePath('monitoring', name);

/** What this role installs, by kind of host (the golden node image bakes them all in: roles/common/golden.ts) */
export const NODE_EXPORTER_PACKAGES = ['prometheus-node-exporter'];
export const MYSQLD_EXPORTER_PACKAGES = ['prometheus-mysqld-exporter'];
export const VARNISH_STATS_PACKAGES = ['python3'];
export const PROMETHEUS_PACKAGES = ['prometheus', 'prometheus-alertmanager'];

/**
 * A read-only validation of files written above: never a change. In check mode the files were not written,
 * so there is nothing new to validate: skipped with that reason.
 */
function validate(title: string, cmd: string): Step {
  // run as the step's probe (read with the others, after this host's last change): its exit status on the last line
  const probe = `${cmd}\necho "exit=$?"`;
  return task(
    title,
    async (c, probed) => {
      if (c.check) return { skipped: 'check mode: validates the files a real run writes' };
      if (probed !== undefined && /(^|\n)exit=0$/.test(probed.trimEnd())) return { changed: false, reason: 'valid' };
      await c.exec(cmd, { readOnly: true });
      return { changed: false };
    },
    { probe: (c) => (c.check ? null : { script: probe }) },
  );
}

/** The exporter user's probe: the SHA-256 of its stored password hash (the password is never on a command line). */
const EXPORTER_USER_SQL = "SELECT SHA2(authentication_string, 256) FROM mysql.user WHERE user='exporter' AND host='localhost'";
// at most 5 s of lock wait (roles/galera LOCK_WAIT): a node whose mysql.user is locked keeps no query waiting
export const EXPORTER_USER_PROBE = sh`timeout 10 mariadb --connect-timeout=5 ${LOCK_WAIT} -NB -e ${EXPORTER_USER_SQL} 2>/dev/null || true`;

/** true when EXPORTER_USER_PROBE's output shows the exporter user with this password. */
export function exporterUserInPlace(out: string, password: string): boolean {
  return out.trim() === createHash('sha256').update(nativePasswordHash(password)).digest('hex');
}

/** The exporter's MariaDB user with this password and its grants (runOnce: Galera replicates it). */
function exporterUser(pw: string): Step {
  const lit = `'${pw.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  return task(
    'mysqld-exporter database user',
    async (c, probed) => {
      if (probed !== undefined && exporterUserInPlace(probed, pw)) return { changed: false, reason: 'the user has its password' };
      const probe = await c.exec('mariadb -N', {
        readOnly: true,
        stdin: `SELECT COUNT(*) FROM mysql.user WHERE user='exporter' AND host='localhost' AND authentication_string = PASSWORD(${lit});\n`,
      });
      if (probe.stdout.trim() === '1') return { changed: false };
      const changes = ["user 'exporter'@'localhost': create or set its password; GRANT PROCESS, REPLICATION CLIENT, SELECT"];
      if (c.check) return { changed: true, changes };
      await c.exec('mariadb', {
        stdin: `CREATE USER IF NOT EXISTS 'exporter'@'localhost' IDENTIFIED BY ${lit} WITH MAX_USER_CONNECTIONS 3;\nALTER USER 'exporter'@'localhost' IDENTIFIED BY ${lit};\nGRANT PROCESS, REPLICATION CLIENT, SELECT ON *.* TO 'exporter'@'localhost';\n`,
      });
      return { changed: true, changes };
    },
    { runOnce: true, probe: () => ({ script: EXPORTER_USER_PROBE }) },
  );
}

/** /etc/default/prometheus (Debian's unit: `prometheus $ARGS`): the metrics' retention (retention.metrics_days). */
export function prometheusDefaults(days: number): string {
  return `# written by wpfarm (roles/monitoring): retention.metrics_days of the inventory\nARGS="--storage.tsdb.retention.time=${days}d"\n`;
}

function member(ctx: StepContext, group: string): boolean {
  return ctx.hosts(group).some((h) => h.name === ctx.host.name);
}

const role: Role = {
  name: 'monitoring',
  hosts: 'all',
  tags: ['monitoring'],
  vars: RETENTION_VARS,
  description: 'exporters everywhere, Prometheus + Alertmanager (Debian packages) on the monitoring host, Grafana/Loki/Tempo stack',
  handlers: {
    'reload prometheus': () => [systemd({ name: 'prometheus', state: 'reloaded' })],
    'restart prometheus': () => [systemd({ name: 'prometheus', state: 'restarted' })],
    'restart alertmanager': () => [systemd({ name: 'prometheus-alertmanager', state: 'restarted' })],
    'restart mysqld-exporter': () => [systemd({ name: 'prometheus-mysqld-exporter', state: 'restarted' })],
  },
  steps(ctx) {
    const v = ctx.vars;
    const steps: Step[] = [
      apt({ packages: NODE_EXPORTER_PACKAGES, state: 'present', update_cache: 3600 }, { tags: ['packages'] }),
      directory({ path: TEXTFILE_DIR, mode: '0755' }),
      systemd({ name: 'prometheus-node-exporter', enabled: true, state: 'started' }),
    ];

    if (member(ctx, 'db')) {
      const pwEnv = String(v.mysqld_exporter_password_env ?? 'MYSQLD_EXPORTER_PASSWORD');
      const pw = lookupEnv(pwEnv);
      if (!pw) throw new InputError(`${pwEnv} is not set in ${envFileShown()} (mysqld-exporter's database password)`);
      ctx.secret(pw);
      steps.push(
        // before the package: its postinst starts the exporter, which exits without this file (and then hits
        // systemd's start limit). The prometheus user exists already (prometheus-node-exporter above).
        // MariaDB listens on the private address only (roles/galera): the exporter uses the Unix socket.
        template(
          {
            path: '/var/lib/prometheus/.my.cnf',
            src: tpl('mysqld-exporter.my.cnf.ejs'),
            vars: { exporter_password: pw },
            mode: '0600',
            owner: 'prometheus',
            group: 'prometheus',
            secret: true,
          },
          { notify: 'restart mysqld-exporter' },
        ),
        apt({ packages: MYSQLD_EXPORTER_PACKAGES, state: 'present' }, { tags: ['packages'] }),
        // Galera replicates the user: once, from one node. The password goes through stdin, never argv, and a
        // changed password is applied (the check compares the stored hash, not just the user's existence)
        exporterUser(pw),
        systemd({ name: 'prometheus-mysqld-exporter', enabled: true, state: 'started' }),
      );
    }

    if (member(ctx, 'managers')) {
      steps.push(
        copy({ src: tpl('wpfarm-swarm-replicas'), path: '/usr/local/sbin/wpfarm-swarm-replicas', mode: '0755' }),
        unitFile({ name: 'wpfarm-swarm-replicas.service', content: renderTemplate(tpl('wpfarm-swarm-replicas.service.ejs'), {}) }),
        unitFile({ name: 'wpfarm-swarm-replicas.timer', content: renderTemplate(tpl('wpfarm-swarm-replicas.timer.ejs'), {}) }),
        systemd({ name: 'wpfarm-swarm-replicas.timer', enabled: true, state: 'started' }),
      );
    }

    if (member(ctx, 'swarm')) {
      // the sites' Varnish tasks on this node (docker exec varnishstat -j / varnishadm backend.list -j), every 30 s
      steps.push(
        apt({ packages: VARNISH_STATS_PACKAGES, state: 'present' }, { tags: ['packages'] }),
        copy({ src: tpl('wpfarm-varnish-stats'), path: '/usr/local/sbin/wpfarm-varnish-stats', mode: '0755' }),
        unitFile({ name: 'wpfarm-varnish-stats.service', content: renderTemplate(tpl('wpfarm-varnish-stats.service.ejs'), {}) }),
        unitFile({ name: 'wpfarm-varnish-stats.timer', content: renderTemplate(tpl('wpfarm-varnish-stats.timer.ejs'), {}) }),
        systemd({ name: 'wpfarm-varnish-stats.timer', enabled: true, state: 'started' }),
      );
    }

    if (member(ctx, 'monitoring')) {
      let am: ReturnType<typeof renderAlertmanager>;
      try {
        am = renderAlertmanager(parseChannels(v.alert_channels), (n) => lookupEnv(n), {
          groupWait: v.alert_group_wait === undefined ? undefined : String(v.alert_group_wait),
          groupInterval: v.alert_group_interval === undefined ? undefined : String(v.alert_group_interval),
        });
      } catch (e) {
        if (e instanceof AlertChannelError) throw new InputError(`alert_channels: ${e.message}`);
        throw e;
      }
      for (const s of am.secrets) ctx.secret(s);
      const self = `${ctx.host.address}:9090`;
      // the WordPress exporter runs on the first Gluster client (roles/wp-exporter), deployed by the wp-site role
      const wpx = ctx.hosts(exporterGroup(v))[0];
      const prom = prometheusConfig({
        hosts: ctx.hosts('all').map((h) => ({ name: h.name, address: h.address, groups: h.groups })),
        farm: String(v.farm_name ?? 'wpfarm'),
        alertmanagers: [`${ctx.host.address}:9093`],
        self,
        wordpressExporter: wpx && { name: wpx.name, address: wpx.address, groups: wpx.groups },
      });
      steps.push(
        apt({ packages: PROMETHEUS_PACKAGES, state: 'present' }, { tags: ['packages'] }),
        directory({ path: '/etc/prometheus/rules', mode: '0755' }),
        file(
          {
            path: '/etc/prometheus/rules/wpfarm.yml',
            content: toYaml(
              rulesFile(alertRules({ forOverride: v.alert_for_override === undefined ? undefined : String(v.alert_for_override) })),
            ),
            mode: '0644',
          },
          { notify: 'reload prometheus' },
        ),
        file({ path: '/etc/prometheus/prometheus.yml', content: toYaml(prom), mode: '0644' }, { notify: 'reload prometheus' }),
        // Debian's unit reads ARGS from here; the retention flag needs a restart, not a reload
        file(
          { path: '/etc/default/prometheus', content: prometheusDefaults(retentionOf(v).metricsDays), mode: '0644' },
          { notify: 'restart prometheus' },
        ),
        // webhook URLs and tokens: readable by the prometheus user only
        file(
          { path: '/etc/prometheus/alertmanager.yml', content: am.yaml, mode: '0640', owner: 'root', group: 'prometheus', secret: true },
          { notify: 'restart alertmanager' },
        ),
        validate('promtool check config', sh`promtool check config /etc/prometheus/prometheus.yml`),
        validate('amtool check-config', sh`amtool check-config /etc/prometheus/alertmanager.yml`),
        systemd({ name: 'prometheus', enabled: true, state: 'started' }),
        systemd({ name: 'prometheus-alertmanager', enabled: true, state: 'started' }),
      );
      steps.push(...grafanaStack(ctx));
    }
    return steps;
  },
};

/**
 * One script for the monitoring images: "missing <image>" for each image not present (`pull`: pulled first when
 * missing, 60 s at most each); read-only without `pull` (the step's probe).
 */
export function imagesScript(pull: boolean): string {
  return Object.values(IMAGES)
    .map((image) => {
      const inspect = sh`docker image inspect --format '{{.Id}}' ${image} >/dev/null 2>&1`;
      const get = pull ? sh` || timeout 60 docker pull -q ${image} >/dev/null 2>&1` : '';
      return `${inspect}${get}${sh` || echo missing ${image}`}`;
    })
    .join('\n');
}

/**
 * The images step's probe (imagePresentProbe of each image, nestedProbe) read: the images not present, and whether the
 * registry said of every one of them that it cannot give it (then a pull is not tried).
 */
export function imagesSeen(probed: string, images: string[]): { missing: string[]; unpullable: boolean } {
  const seen = nestedOutputs(probed, images.length).map((o) => o?.trim());
  const missing = images.filter((_, i) => seen[i] !== 'present');
  return { missing, unpullable: missing.length > 0 && images.every((_, i) => seen[i] === 'present' || !!seen[i]?.startsWith('cannot: ')) };
}

export const missingImages = (out: string): string[] => [...out.matchAll(/^missing (\S+)$/gm)].map((m) => m[1]!);

/** Grafana, Loki, Tempo, Promtail as a Swarm stack, deployed from the first manager. */
function grafanaStack(ctx: StepContext): Step[] {
  const v = ctx.vars;
  const manager = ctx.hosts('managers')[0];
  if (!manager) return [];
  const mon = ctx.host.address;
  const files: Record<string, string> = {
    'loki.yml': toYaml(lokiConfig({ alertmanagerUrl: `http://${mon}:9093`, retention: retentionOf(v).logs })),
    'tempo.yml': toYaml(tempoConfig({ retentionDays: retentionOf(v).tracesDays })),
    'promtail.yml': toYaml(promtailConfig()),
    'grafana-datasources.yml': grafanaDatasources({
      prometheus: `http://${mon}:9090`,
      loki: 'http://loki:3100',
      tempo: 'http://tempo:3200',
      alertmanager: `http://${mon}:9093`,
    }),
    'grafana-dashboards.yml': grafanaDashboardProvider(),
  };
  const pwEnv = String(v.grafana_admin_password_env ?? 'GRAFANA_ADMIN_PASSWORD');
  const grafanaPw = lookupEnv(pwEnv);
  const on = { delegateTo: manager.name, tags: ['monitoring', 'grafana'] };
  const steps: Step[] = [
    directory({ path: '/var/lib/wpfarm/grafana-dashboards', mode: '0755' }, { tags: ['grafana'] }),
    ...dashboards().map((d) =>
      file(
        { path: `/var/lib/wpfarm/grafana-dashboards/${String(d.uid)}.json`, content: `${JSON.stringify(d, null, 2)}\n`, mode: '0644' },
        { tags: ['grafana'] },
      ),
    ),
  ];
  // the images (pulled when missing; one round trip for all, none when the probe finds them all, or finds that the
  // registry can give none of the missing ones: then nothing is tried, no command, no write)
  const list: string[] = Object.values(IMAGES);
  const images = task(
    'monitoring images',
    async (c, probed) => {
      const seen = probed === undefined ? undefined : imagesSeen(probed, list);
      let missing = seen?.missing;
      if (missing === undefined || (missing.length && !c.check && !seen?.unpullable)) {
        const r = await c.exec(imagesScript(!c.check), { nothrow: true, readOnly: c.check, timeoutMs: 300_000 });
        missing = missingImages(r.stdout);
      }
      return missing.length
        ? { skipped: `images cannot be pulled here: ${missing.join(', ')}`, result: { ok: false } }
        : { result: { ok: true } };
    },
    { ...on, register: 'monitoring_images', probe: (c) => nestedProbe(c, list.map(imagePresentProbe)) },
  );
  if (!grafanaPw) {
    steps.push(
      images,
      task('monitoring stack', async () => ({ skipped: `${pwEnv} is not set in ${envFileShown()} (Grafana's admin password)` }), on),
    );
    return steps;
  }
  ctx.secret(grafanaPw);
  steps.push(
    dockerSecret({ name: 'mon_grafana_admin_password', content: grafanaPw }, { ...on, register: 'mon_grafana_pw' }),
    ...Object.entries(files).map(([name, content]) => dockerConfig({ name: `mon_${name.replace(/[^a-z0-9]/gi, '_')}`, content }, on)),
    // Grafana and Loki keep their data on the monitoring node (placement by node label)
    command(
      {
        cmd: ['docker', 'node', 'update', '--label-add', 'wpfarm.monitoring=true', ctx.host.name],
        unless: [
          'bash',
          '-c',
          sh`[ "$(docker node inspect --format '{{index .Spec.Labels "wpfarm.monitoring"}}' ${ctx.host.name})" = true ]`,
        ],
      },
      { ...on, name: `label ${ctx.host.name} as the monitoring node` },
    ),
    // after the secret, configs and label (which need no image): a pull is a write, and probes read before it are stale
    images,
    task(
      'monitoring stack',
      async (c) => {
        // a skipped images step may carry no result (only its reason): either way the stack cannot run
        const reg = c.registered.monitoring_images;
        const img = reg?.result as { ok: boolean } | undefined;
        if (reg?.status === 'skipped' || (img && !img.ok)) return { skipped: reg?.reason ?? 'images cannot be pulled here' };
        const stack = monitoringStack({
          endpointMode: v.swarm_endpoint_mode === 'dnsrr' ? 'dnsrr' : 'vip',
          files,
          metricsDays: retentionOf(v).metricsDays,
          alertmanagerSecretName: 'unused',
          grafanaAdminPasswordSecretName:
            (c.registered.mon_grafana_pw?.result as SecretResult | undefined)?.name ?? 'mon_grafana_admin_password',
          grafanaHost: String(v.grafana_host ?? `grafana.${String(v.management_domain ?? 'example.invalid')}`),
        }) as Record<string, Record<string, Record<string, unknown>>>;
        // the configs exist already (dockerConfig above, same content-hashed names): refer to them
        for (const c2 of Object.values(stack.configs!)) {
          delete c2.file;
          c2.external = true;
        }
        const r = await c.run(stackDeploy({ name: 'monitoring', compose: toYaml(stack) }));
        if (r.status === 'failed') throw new Error(r.error ?? 'stack deploy failed');
        return { changed: r.status === 'changed', changes: r.changes, diff: r.diff, result: r.result };
      },
      on,
    ),
  );
  return steps;
}

export default role;
