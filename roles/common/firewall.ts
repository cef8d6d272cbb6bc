// The farm's host firewall as nftables rules, rendered from the inventory (pure, testable without SSH): this
// file computes the sets and which rules apply; the text is templates/common/nftables.conf.ejs.
//
//   - loopback, established/related and ICMP accepted; everything else on input dropped
//   - SSH (22) only from the management CIDRs
//   - 80/443 (and 443/udp for HTTP/3) only on edge hosts
//   - Swarm: 2377/tcp to managers from swarm nodes (joins and the control plane need it); 7946/tcp+udp and
//     4789/udp (VXLAN) between swarm nodes only
//   - Galera: 3306, 4444, 4567 (tcp+udp), 4568 and the HAProxy writer endpoint to db hosts from cluster nodes
//   - GlusterFS: 24007-24008 and bricks 49152-49251 to storage hosts from cluster nodes
//   - exporters (node 9100, docker 9323, mysqld 9104, haproxy 8404, ...) only from the monitoring hosts
//
// The rules live in their own table (inet wpfarm) so Docker's iptables rules are never flushed.
import type { ClusterPort } from '../../lib/cloud/digitalocean.ts';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';
import type { HostSpec } from '../../lib/types.ts';

export interface FirewallInput {
  host: HostSpec;
  /** every inventory host (cluster members) */
  all: HostSpec[];
  managers: HostSpec[];
  swarm: HostSpec[];
  monitoring: HostSpec[];
  managementCidrs: string[];
  /** extra ports: [{ port: '8080', proto: 'tcp', from: ['10.0.0.0/8'] }] */
  extraRules?: FirewallRule[];
  dbPorts?: number[];
  exporterPorts?: number[];
}

export interface FirewallRule {
  port: string | number;
  proto?: 'tcp' | 'udp';
  from?: string[];
  comment?: string;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const CIDR = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(\/(\d{1,2}))?$/;

export function parseIpv4(a: string): number | null {
  const m = IPV4.exec(a.trim());
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

export function validCidr(c: string): boolean {
  const m = CIDR.exec(c.trim());
  return !!m && parseIpv4(m[1]!) !== null && (m[3] === undefined || Number(m[3]) <= 32);
}

export function cidrContains(cidr: string, address: string): boolean {
  const m = CIDR.exec(cidr.trim());
  const ip = parseIpv4(address);
  if (!m || ip === null) return false;
  const base = parseIpv4(m[1]!);
  if (base === null) return false;
  const bits = m[3] === undefined ? 32 : Number(m[3]);
  const maskBits = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (base & maskBits) >>> 0 === (ip & maskBits) >>> 0;
}

export const DEFAULT_DB_PORTS = [3306, 3307, 4444, 4567, 4568];
export const DEFAULT_EXPORTER_PORTS = [8404, 9100, 9104, 9113, 9121, 9253, 9323];

/** What the cloud firewall (playbooks/provision.ts) opens between the farm's droplets, the coarse outer layer
 *  of the per-host nftables rules (templates/common/nftables.conf.ejs): Swarm, Galera, GlusterFS and ICMP. */
export const CLUSTER_PORTS: readonly ClusterPort[] = [
  { protocol: 'tcp', ports: '2377' }, // swarm managers
  { protocol: 'tcp', ports: '7946' }, // swarm gossip
  { protocol: 'udp', ports: '7946' },
  { protocol: 'udp', ports: '4789' }, // VXLAN overlay
  { protocol: 'tcp', ports: '3306' }, // MariaDB
  { protocol: 'tcp', ports: '4444' }, // Galera SST
  { protocol: 'tcp', ports: '4567' }, // Galera replication
  { protocol: 'udp', ports: '4567' },
  { protocol: 'tcp', ports: '4568' }, // Galera IST
  { protocol: 'tcp', ports: '24007-24008' }, // Gluster daemons
  { protocol: 'tcp', ports: '49152-49251' }, // Gluster bricks
  { protocol: 'icmp', ports: '0' },
];

const inGroup = (h: HostSpec, g: string) => h.groups.includes(g);

/** The whole /etc/nftables.conf for one host: the rules are in templates/common/nftables.conf.ejs. */
export function renderFirewall(i: FirewallInput): string {
  const h = i.host;
  for (const c of i.managementCidrs) if (!validCidr(c)) throw new Error(`management_cidrs: '${c}' is not an IPv4 CIDR`);
  const addrs = (hs: HostSpec[]) => hs.map((x) => x.address).filter((a) => parseIpv4(a) !== null);
  const set = (name: string, elems: string[]) => ({ name, elements: [...new Set(elems)].sort() });
  const extraRules = (i.extraRules ?? []).map((r) => {
    const port = String(r.port);
    if (!/^\d{1,5}(-\d{1,5})?$/.test(port)) throw new Error(`firewall_extra_rules: invalid port '${port}'`);
    const comment = r.comment ? JSON.stringify(r.comment.replace(/"/g, '')) : '';
    return { proto: r.proto ?? 'tcp', port, from: (r.from ?? []).filter(validCidr), comment };
  });
  return renderTemplate(templatePath('common', 'nftables.conf.ejs'), {
    host_name: h.name,
    sets: [
      set('mgmt', i.managementCidrs),
      set('cluster', addrs(i.all)),
      set('swarm', addrs(i.swarm)),
      set('monitoring', addrs(i.monitoring)),
      set('edge', addrs(i.all.filter((x) => inGroup(x, 'edge')))),
    ],
    is_edge: inGroup(h, 'edge'),
    is_manager: i.managers.some((x) => x.name === h.name),
    is_swarm: i.swarm.some((x) => x.name === h.name),
    is_db: inGroup(h, 'db'),
    is_storage: inGroup(h, 'gluster') || inGroup(h, 'storage') || inGroup(h, 'storage_arbiter'),
    db_ports: i.dbPorts ?? DEFAULT_DB_PORTS,
    exporter_ports: i.exporterPorts ?? DEFAULT_EXPORTER_PORTS,
    extra_rules: extraRules,
  });
}
