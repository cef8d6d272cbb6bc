// templates/: every text config moved out of the roles renders byte for byte what the roles' TypeScript strings
// gave before the move (test/unit/fixtures/templates-golden/, captured from the old code with these same vars),
// and every template names what it is, which role renders it and its vars (a comment for operators).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderTemplate, templatePath, TEMPLATES_DIR } from '../../lib/ops/template.ts';
import type { HostSpec } from '../../lib/types.ts';
import { renderFirewall } from '../../roles/common/firewall.ts';
import {
  agentServiceDropIn,
  firewallBouncerConfig,
  managementWhitelist,
  onlineApiCredentialsSeed,
  profiles,
} from '../../roles/crowdsec/config.ts';
import { endpointTemplateVars, endpointVars } from '../../roles/galera/endpoint.ts';
import { dockerDropIn } from '../../roles/gluster/model.ts';
import { grafanaDatasources, grafanaDashboardProvider } from '../../roles/monitoring/dashboards.ts';

const GOLDEN = join(import.meta.dirname, 'fixtures/templates-golden');
const golden = (name: string): string => readFileSync(join(GOLDEN, name), 'utf8');
const render = (role: string, name: string, vars: Record<string, unknown> = {}): string => renderTemplate(templatePath(role, name), vars);

test('templatePath finds templates/<role>/<name> from the project root, shown relative to the working directory', () => {
  assert.equal(templatePath('common', 'sudoers.ejs'), join('templates', 'common', 'sudoers.ejs'));
  assert.equal(TEMPLATES_DIR, join(process.cwd(), 'templates'));
});

test('every template starts with an operator comment: what it is, which role renders it', () => {
  const files = readdirSync(TEMPLATES_DIR, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ejs'));
  assert.ok(files.length >= 19, `${files.length} templates`);
  for (const f of files) {
    const text = readFileSync(join(TEMPLATES_DIR, f), 'utf8');
    assert.match(text, /^<%#\n[\s\S]*?Rendered by roles\/[\s\S]*?-%>\n/, `${f}: starts with <%# ... Rendered by roles/... -%>`);
  }
});

test('common: apt proxy, sudoers, sshd hardening, upgrades', () => {
  assert.equal(render('common', 'apt-proxy.conf.ejs', { apt_proxy: 'http://10.77.0.1:3142' }), golden('common-apt-proxy.conf'));
  assert.equal(render('common', 'sudoers.ejs', { admin_user: 'wpadmin' }), golden('common-sudoers'));
  assert.equal(render('common', 'sshd-hardening.conf.ejs'), golden('common-sshd-hardening.conf'));
  assert.equal(render('common', '20auto-upgrades.ejs'), golden('common-auto-upgrades'));
  assert.equal(render('common', '52wpfarm-unattended-upgrades.ejs'), golden('common-unattended-upgrades'));
});

test('common: nftables ruleset for a manager/edge, a worker with extra rules, a db host, a storage host with empty sets', () => {
  // renderFirewall reads only these fields of a host
  const H = (name: string, address: string, groups: string[]): HostSpec => ({ name, address, groups, vars: {} }) as unknown as HostSpec;
  const mgr1 = H('mgr1', '10.77.0.11', ['managers', 'swarm', 'edge']);
  const wk1 = H('wk1', '10.77.0.21', ['workers', 'swarm']);
  const db1 = H('db1', '10.77.0.31', ['db']);
  const st1 = H('st1', '10.77.0.41', ['storage', 'gluster']);
  const mon1 = H('mon1', '10.77.0.51', ['monitoring', 'swarm', 'workers']);
  const managementCidrs = ['10.77.0.0/24', '192.168.7.0/24'];
  const base = { all: [mgr1, wk1, db1, st1, mon1], managers: [mgr1], swarm: [mgr1, wk1, mon1], monitoring: [mon1], managementCidrs };
  assert.equal(renderFirewall({ ...base, host: mgr1 }), golden('common-nftables-mgr1.conf'));
  const extraRules = [
    { port: 8080, from: ['10.0.0.0/8'], comment: 'app "x"' },
    { port: '6000-6010', proto: 'udp' as const },
  ];
  assert.equal(renderFirewall({ ...base, host: wk1, extraRules }), golden('common-nftables-wk1.conf'));
  assert.equal(renderFirewall({ ...base, host: db1, dbPorts: [3306, 4444] }), golden('common-nftables-db1.conf'));
  assert.equal(renderFirewall({ ...base, host: st1, monitoring: [], exporterPorts: [9100] }), golden('common-nftables-st1.conf'));
  const bad = [{ port: '80;drop' }];
  assert.throws(() => renderFirewall({ ...base, host: wk1, extraRules: bad }), /firewall_extra_rules\[0\]\.port must be a port 1-65535/);
});

test('galera: 60-galera.cnf, haproxy.cfg, SST credentials', () => {
  const peers = ['10.77.0.31', '10.77.0.32', '10.77.0.33'];
  const cnf = { node_name: 'db1', node_address: '10.77.0.31', cluster_name: 'wpfarm', peers, sst_method: 'mariabackup' };
  const sizes = { buffer_pool: '128M', max_connections: 300, gcache_size: '256M', slave_threads: 2, wan_options: [] };
  assert.equal(render('galera', '60-galera.cnf.ejs', { ...cnf, ...sizes }), golden('galera-60-galera.cnf'));
  const servers = [
    { name: 'db1', address: '10.77.0.31' },
    { name: 'db2', address: '10.77.0.32' },
    { name: 'db3', address: '10.77.0.33' },
  ];
  // one template for the db hosts' endpoint (roles/galera) and the site nodes' (roles/db-endpoint): the same servers
  // in the same order, the same check and timings; only the bind address and the header differ
  const s = { writerPort: 3307, checkUser: 'haproxy_check' };
  const db1 = endpointVars(s, {}, servers, { role: 'galera', who: 'Every db host', bind: '10.77.0.31' });
  const wk1 = endpointVars(s, {}, servers, { role: 'db-endpoint', who: 'Every site node', bind: '172.17.0.1' });
  const dbCfg = render('galera', 'haproxy.cfg.ejs', endpointTemplateVars(db1));
  const nodeCfg = render('galera', 'haproxy.cfg.ejs', endpointTemplateVars(wk1));
  assert.equal(dbCfg, golden('galera-haproxy.cfg'));
  assert.equal(nodeCfg, golden('galera-haproxy-site-node.cfg'));
  const body = (cfg: string) => cfg.replace(/^#.*\n/gm, '').replace(/bind \S+/, 'bind X');
  assert.equal(body(nodeCfg), body(dbCfg), 'same configuration but for the bind address');
  assert.match(nodeCfg, /^ {4}bind 172\.17\.0\.1:3307$/m);
  assert.match(nodeCfg, /^ {4}server db1 10\.77\.0\.31:3306 check\n {4}server db2 10\.77\.0\.32:3306 check backup\n/m);
  assert.match(nodeCfg, /external-check command \/usr\/local\/lib\/wpfarm\/galera-writer-check$/m);
  assert.match(nodeCfg, /^ {4}retries 6\n {4}option redispatch$/m);
  // a stopping db host drains first: desynced, it fails that check; the wait outlasts inter 2s + fastinter 1s (fall 2)
  const drain = readFileSync(templatePath('galera', 'mariadb-drain.conf'), 'utf8');
  const stop = /^ExecStop=-\+\/bin\/sh -c '(.*)'$/m.exec(drain)?.[1] ?? '';
  assert.match(stop, /SET GLOBAL wsrep_desync=ON" && sleep (\d+)$/);
  assert.ok(Number(/sleep (\d+)$/.exec(stop)![1]) > 2 + 1 + 1, stop);
  assert.match(dbCfg, /inter 2s fastinter 1s downinter 5s rise 2 fall 2/);
  assert.equal(render('galera', '61-galera-sst.cnf.ejs', { sst_password: 'Zx9-sst' }), golden('galera-61-galera-sst.cnf'));
});

test('gluster: docker.service drop-in after the Gluster mount (also a path that systemd escapes)', () => {
  assert.equal(dockerDropIn('/mnt/gluster-sites'), golden('gluster-docker-dropin.conf'));
  assert.equal(dockerDropIn('/srv/my data.d/x'), golden('gluster-docker-dropin-escaped.conf'));
});

test('monitoring: swarm-replicas units, mysqld-exporter .my.cnf, Grafana provisioning', () => {
  assert.equal(render('monitoring', 'wpfarm-swarm-replicas.service.ejs'), golden('monitoring-swarm-replicas.service'));
  assert.equal(render('monitoring', 'wpfarm-swarm-replicas.timer.ejs'), golden('monitoring-swarm-replicas.timer'));
  const myCnf = render('monitoring', 'mysqld-exporter.my.cnf.ejs', { exporter_password: 's3cr\'et"pw' });
  assert.equal(myCnf, golden('monitoring-mysqld-exporter.my.cnf'));
  const urls = {
    prometheus: 'http://prometheus:9090',
    loki: 'http://loki:3100',
    tempo: 'http://tempo:3200',
    alertmanager: 'http://10.77.0.51:9093',
  };
  assert.equal(grafanaDatasources(urls), golden('monitoring-grafana-datasources.yml'));
  assert.equal(grafanaDashboardProvider(), golden('monitoring-grafana-dashboards.yml'));
  assert.equal(grafanaDashboardProvider('/var/lib/wpfarm/grafana-dashboards'), golden('monitoring-grafana-dashboards-dir.yml'));
});

test('crowdsec: agent drop-in, online API seed, profiles, firewall bouncer, management whitelist', () => {
  assert.equal(agentServiceDropIn(), golden('crowdsec-agent-dropin.conf'));
  assert.equal(onlineApiCredentialsSeed(), golden('crowdsec-online-api-credentials.yaml'));
  assert.equal(profiles([], '4h'), golden('crowdsec-profiles.yaml'));
  assert.equal(profiles(['wpfarm_slack_0', 'wpfarm_webhook_1'], '2h'), golden('crowdsec-profiles-notify.yaml'));
  assert.throws(() => profiles([], '4 hours'), /crowdsec_ban_duration: '4 hours' is not a duration/);
  const key = '0123456789abcdef0123456789abcdef01234567';
  assert.equal(firewallBouncerConfig({ lapiHost: '10.77.0.11', apiKey: key }), golden('crowdsec-firewall-bouncer.yaml'));
  assert.equal(managementWhitelist(['10.77.0.0/24', '192.168.7.0/24']), golden('crowdsec-management-whitelist.yaml'));
  assert.throws(() => managementWhitelist(['10.0.0.0/8', 'x: y']), /management_cidrs: 'x: y' is not an IP address or CIDR/);
});
