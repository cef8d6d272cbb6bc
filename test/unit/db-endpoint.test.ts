// The sites' database endpoint on the nodes that run their tasks (roles/db-endpoint, roles/galera/endpoint.ts),
// without hosts: the bind address read from `ip -o addr`, the firewall opening the port only to the node's own
// containers, the phase order (after galera, whose users step creates the check user for these nodes), and the
// WordPress exporter reaching the same endpoint as the sites. The rendered haproxy.cfg is in templates.test.ts, the
// sites' stack in stack.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostSpec } from '../../lib/types.ts';
import { PHASES } from '../../playbooks/phases.ts';
import { firewallPolicy, renderFirewall } from '../../roles/common/firewall.ts';
import role, { DB_ENDPOINT_PACKAGES, answerScript, parseBridgeAddress } from '../../roles/db-endpoint/role.ts';
import { SITE_NODE_GROUP, siteNodes } from '../../roles/galera/endpoint.ts';
import { renderExporterStack } from '../../roles/wp-exporter/stack.ts';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';

const H = (name: string, address: string, groups: string[]) => ({ name, address, port: 22, user: 'root', groups, vars: {} }) as HostSpec;
const mgr1 = H('mgr1', '10.77.0.11', ['managers', 'swarm', 'edge']);
const wrk1 = H('wrk1', '10.77.0.21', ['workers', 'swarm']);
const db1 = H('db1', '10.77.0.31', ['db']);
const base = { all: [mgr1, wrk1, db1], managers: [mgr1], swarm: [mgr1, wrk1], monitoring: [], managementCidrs: ['10.77.0.0/24'] };

test('the bind address: the IPv4 address of docker0 as `ip -4 -o addr show dev docker0` prints it', () => {
  const out = '4: docker0    inet 172.17.0.1/16 brd 172.17.255.255 scope global docker0\\       valid_lft forever preferred_lft forever\n';
  assert.equal(parseBridgeAddress(out), '172.17.0.1');
  assert.equal(parseBridgeAddress('4: docker0    inet 10.200.0.1/24 scope global docker0\n'), '10.200.0.1');
  assert.equal(parseBridgeAddress(''), undefined, 'no docker0 (dockerd not running): no address');
  assert.deepEqual(DB_ENDPOINT_PACKAGES, ['haproxy', 'mariadb-client-core'], 'HAProxy and the client the check runs');
});

test('the firewall opens the endpoint on a site node to its containers only (its Docker bridges), nowhere else', () => {
  const rules = firewallPolicy({ ...base, host: wrk1, dbEndpointPort: 3310 });
  const ep = rules.filter((r) => r.ports === '3310');
  assert.equal(ep.length, 1);
  assert.deepEqual(
    { ...ep[0], comment: '' },
    { proto: 'tcp', ports: '3310', from: '', iif: '{ "docker0", "docker_gwbridge" }', comment: '' },
  );
  const text = renderFirewall({ ...base, host: wrk1 });
  assert.match(text, /^ {4}tcp dport 3307 iifname \{ "docker0", "docker_gwbridge" \} accept comment /m);
  // any other rule on the node names no interface; a db host and a manager get no such rule
  assert.ok(rules.filter((r) => r !== ep[0]).every((r) => r.iif === ''));
  for (const h of [mgr1, db1]) assert.doesNotMatch(renderFirewall({ ...base, host: h }), /iifname/, h.name);
});

test('the role runs on the site nodes, in phase 2 right after galera', () => {
  assert.equal(role.hosts, SITE_NODE_GROUP);
  assert.equal(SITE_NODE_GROUP, 'workers', "the wp-site stacks' default placement: node.labels.workers == true");
  const p2 = PHASES.find((p) => p.n === 2)!.roles;
  assert.equal(p2.indexOf('db-endpoint'), p2.indexOf('galera') + 1);
  assert.deepEqual(
    siteNodes({ hosts: (p: string) => (p === 'workers' ? [wrk1] : []) }).map((h) => h.name),
    ['wrk1'],
  );
  assert.deepEqual(
    siteNodes({
      hosts: () => {
        throw new Error('no such group');
      },
    }),
    [],
    'an inventory without workers: no site node',
  );
});

test("the WordPress exporter reaches the node's endpoint like the sites (extra host entry), an address as it is", () => {
  const site = parseSiteRecord('site-a.yml', 'id: site-a\ndomain: a.example.org\n', { management_cidrs: ['10.0.0.0/8'] });
  const input = (db: { host: string; port: number; onNode?: boolean }) => ({
    image: 'x',
    sites: [site],
    endpointMode: 'dnsrr' as const,
    db,
    passwordSecret: 'wpfarm_exporter_db_password_12345678',
    glusterSitesPath: '/mnt/gluster/sites',
    node: 'wrk1',
    catalog: { plugins: {} },
  });
  const r = renderExporterStack(input({ host: 'wpfarm-db', port: 3307, onNode: true }));
  assert.deepEqual([r.config.db.host, r.config.db.port], ['wpfarm-db', 3307]);
  assert.match(r.yaml, /\n {4}extra_hosts:\n {6}- "wpfarm-db:host-gateway"\n/);
  assert.doesNotMatch(renderExporterStack(input({ host: '10.77.0.31', port: 3307 })).yaml, /extra_hosts/);
});

test("the endpoint's answer (its probe on a rerun, else asked with retries): the writer's name through docker0's address", () => {
  assert.equal(
    answerScript(3307, 'haproxy_check'),
    [
      "b=$( (ip -4 -o addr show dev docker0 2>/dev/null || true) | sed -n 's/.* inet \\([0-9.]*\\)\\/.*/\\1/p')",
      `timeout 10 mariadb --no-defaults --connect-timeout=5 -h "$b" -P 3307 -u haproxy_check -NB -e $'SELECT @@wsrep_node_name'`,
    ].join('\n'),
  );
});
