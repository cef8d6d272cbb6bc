// The farm's host firewall as nftables rules, rendered from the inventory (pure, testable without SSH): this
// file computes ONE policy (which ports, from which sources) and the template renders it twice, for the two
// paths a packet can take (templates/common/nftables.conf.ejs):
//
//   input    packets for the host's own services (sshd, dockerd's metrics, exporters, Galera, Gluster, ...)
//   forward  packets Docker DNATs to a container: ports published in swarm `mode: host` (Traefik's 80/443/8082)
//            or through the ingress mesh never reach INPUT; they are matched on their ORIGINAL destination port
//            (`ct original proto-dst`) in a forward-hook chain at priority filter - 1, before Docker's own
//            iptables-nft FORWARD chain (priority filter). The chain lives in our own table, so a dockerd restart
//            (which rewrites its iptables tables) never touches it.
//
// The policy:
//   - loopback, established/related and ICMP accepted on input; everything else on input dropped; a new
//     DNATed connection that no rule allows is dropped on forward (other forwarded traffic, e.g. containers'
//     own outgoing connections, is Docker's business)
//   - SSH (22) only from the management CIDRs
//   - 80/443 (and 443/udp for HTTP/3) from anywhere, only on edge hosts
//   - Swarm: 2377/tcp to managers from swarm nodes; 7946/tcp+udp and 4789/udp (VXLAN) between swarm nodes only
//   - Galera: 3306, 4444, 4567 (tcp+udp), 4568 and the HAProxy writer endpoint to db hosts from cluster nodes
//   - the Galera writer endpoint of a site node (roles/db-endpoint, galera_writer_port) only from the node's own
//     containers: packets that come in on its Docker bridges (docker0, docker_gwbridge)
//   - GlusterFS: 24007-24008 and bricks 49152-49251 to storage hosts from cluster nodes
//   - exporters (node 9100, docker 9323, mysqld 9104, haproxy 8404, wordpress 9117, ...) and Traefik's metrics (8082, edge)
//     only from the monitoring hosts
//   - CrowdSec's local API (8080, TLS) on managers from the edge nodes (agents and bouncers)
//   - firewall_extra_rules from the inventory (validated: port, proto, from)
// CrowdSec's ban set is enforced by roles/crowdsec on both hooks (templates/crowdsec/ban-sets.nft.ejs).
//
// The rules live in their own table (inet wpfarm) so Docker's iptables rules are never flushed.
import type { ClusterPort } from '../../lib/cloud/digitalocean.ts';
import { z } from 'zod';
import { InputError } from '../../lib/errors.ts';
import { describeValue } from '../../lib/schema.ts';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';
import type { HostSpec } from '../../lib/types.ts';
import { SITE_NODE_GROUP } from '../galera/endpoint.ts';

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
  /** the Galera writer endpoint's port on the site nodes (roles/db-endpoint; galera_writer_port, default 3307) */
  dbEndpointPort?: number;
}

export interface FirewallRule {
  port: string | number;
  proto?: 'tcp' | 'udp';
  /** source CIDRs; absent: from anywhere */
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

/** null, or why `p` is not a port (1-65535) or a range "low-high" */
export function portProblem(p: string | number): string | null {
  const s = String(p);
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
  const [lo, hi] = m ? [Number(m[1]), Number(m[2] ?? m[1])] : [0, 0];
  if (!m || lo < 1 || hi > 65535 || lo > hi) return `must be a port 1-65535 or a range like 6000-6010, got ${describeValue(p)}`;
  return null;
}

// ---- the inventory variables of the firewall, checked when the run loads the role (before any connection)

const cidr = z
  .string()
  .refine(validCidr, { error: (iss) => `must be an IPv4 address or CIDR like 10.0.0.0/8, got ${describeValue(iss.input)}` });
const port = z.union([z.number(), z.string()]).superRefine((p, ctx) => {
  const why = portProblem(p);
  if (why) ctx.addIssue({ code: 'custom', message: why, input: p });
});

export const FIREWALL_VARS = {
  management_cidrs: z.union([cidr, z.array(cidr).min(1)]),
  firewall_enabled: z.boolean(),
  firewall_extra_rules: z.array(
    z.strictObject({
      port,
      proto: z.enum(['tcp', 'udp']).optional(),
      from: z.array(cidr).min(1, { error: 'must list at least one CIDR (leave from out for "from anywhere")' }).optional(),
      comment: z.string().optional(),
    }),
  ),
};

export const DEFAULT_DB_PORTS = [3306, 3307, 4444, 4567, 4568];
/** The bridges a node's containers reach the host through: docker0 (plain containers) and docker_gwbridge (the
 *  swarm tasks' way out of their overlays) */
export const DOCKER_BRIDGES = ['docker0', 'docker_gwbridge'];
// 9117: the WordPress exporter (roles/wp-exporter), published in host mode on the first Gluster client
export const DEFAULT_EXPORTER_PORTS = [8404, 9100, 9104, 9113, 9117, 9121, 9253, 9323];
/** Traefik's metrics entry point on edge nodes (roles/traefik ENTRY_POINTS.metrics) */
export const TRAEFIK_METRICS_PORT = 8082;
/** CrowdSec's local API on managers (roles/crowdsec LAPI_PORT) */
export const CROWDSEC_LAPI_PORT = 8080;

/** One accept rule of the policy: rendered on input (dport) and on forward (original dport of DNATed traffic). */
export interface PolicyRule {
  proto: 'tcp' | 'udp';
  /** nft port expression: "22", "{ 80, 443 }" */
  ports: string;
  /** nft source expression: "@mgmt", "{ 10.0.0.0/8 }"; empty: from anywhere */
  from: string;
  /** a quoted nft comment, or empty */
  comment: string;
  /** nft input interface expression ('{ "docker0", "docker_gwbridge" }'); empty: any interface */
  iif: string;
}

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
const portsExpr = (ps: Array<string | number>) => (ps.length === 1 ? String(ps[0]) : `{ ${ps.join(', ')} }`);
const quoted = (c: string) => JSON.stringify(c.replace(/["\\\n\r]/g, ''));

/** The accept rules for one host, in order (the same list for input and forward). */
export function firewallPolicy(i: FirewallInput): PolicyRule[] {
  const h = i.host;
  const rules: PolicyRule[] = [];
  const add = (proto: 'tcp' | 'udp', ps: Array<string | number>, from: string, comment: string) =>
    rules.push({ proto, ports: portsExpr(ps), from, comment: quoted(comment), iif: '' });
  const edge = inGroup(h, 'edge');
  const manager = i.managers.some((x) => x.name === h.name);
  add('tcp', [22], '@mgmt', 'ssh from management');
  if (edge) {
    add('tcp', [80, 443], '', 'web (edge)');
    add('udp', [443], '', 'HTTP/3 (edge)');
  }
  if (manager) add('tcp', [2377], '@swarm', 'swarm control plane');
  if (i.swarm.some((x) => x.name === h.name)) {
    add('tcp', [7946], '@swarm', 'swarm gossip');
    add('udp', [4789, 7946], '@swarm', 'swarm gossip and VXLAN');
  }
  if (inGroup(h, 'db')) {
    add('tcp', i.dbPorts ?? DEFAULT_DB_PORTS, '@cluster', 'galera, sst, writer endpoint');
    add('udp', [4567], '@cluster', 'galera (multicast replication off, udp for gcomm)');
  }
  // the sites' database endpoint on the node their tasks run on (roles/db-endpoint): for its own containers only
  if (inGroup(h, SITE_NODE_GROUP)) {
    rules.push({
      proto: 'tcp',
      ports: String(i.dbEndpointPort ?? 3307),
      from: '',
      iif: `{ ${DOCKER_BRIDGES.map((b) => JSON.stringify(b)).join(', ')} }`,
      comment: quoted("galera writer endpoint for this node's containers"),
    });
  }
  if (inGroup(h, 'gluster') || inGroup(h, 'storage') || inGroup(h, 'storage_arbiter')) {
    add('tcp', ['24007-24008', '49152-49251'], '@cluster', 'glusterd and bricks');
  }
  add('tcp', i.exporterPorts ?? DEFAULT_EXPORTER_PORTS, '@monitoring', 'metrics');
  // Traefik's metrics entry point (roles/traefik, host mode) on edge nodes, for Prometheus only
  if (edge) add('tcp', [TRAEFIK_METRICS_PORT], '@monitoring', 'traefik metrics');
  // CrowdSec's local API (TLS) runs on a manager (roles/crowdsec): the edge nodes' agents and bouncers reach it
  if (manager) add('tcp', [CROWDSEC_LAPI_PORT], '@edge', 'crowdsec local API from edge agents');
  (i.extraRules ?? []).forEach((r, n) => {
    const at = `firewall_extra_rules[${n}]`;
    const why = portProblem(r.port);
    if (why) throw new InputError(`${at}.port ${why}`);
    const proto = r.proto ?? 'tcp';
    if (proto !== 'tcp' && proto !== 'udp') throw new InputError(`${at}.proto must be "tcp" or "udp", got ${describeValue(proto)}`);
    if (r.from !== undefined && !r.from.length) throw new InputError(`${at}.from must list at least one CIDR`);
    for (const c of r.from ?? []) if (!validCidr(c)) throw new InputError(`${at}.from: '${c}' is not an IPv4 address or CIDR`);
    rules.push({
      proto,
      ports: String(r.port),
      from: r.from ? `{ ${r.from.join(', ')} }` : '',
      comment: r.comment ? quoted(r.comment) : '',
      iif: '',
    });
  });
  return rules;
}

/** The whole /etc/nftables.conf for one host: the rules are in templates/common/nftables.conf.ejs. */
export function renderFirewall(i: FirewallInput): string {
  const h = i.host;
  for (const c of i.managementCidrs) if (!validCidr(c)) throw new InputError(`management_cidrs: '${c}' is not an IPv4 CIDR`);
  const addrs = (hs: HostSpec[]) => hs.map((x) => x.address).filter((a) => parseIpv4(a) !== null);
  const set = (name: string, elems: string[]) => ({ name, elements: [...new Set(elems)].sort() });
  return renderTemplate(templatePath('common', 'nftables.conf.ejs'), {
    host_name: h.name,
    sets: [
      set('mgmt', i.managementCidrs),
      set('cluster', addrs(i.all)),
      set('swarm', addrs(i.swarm)),
      set('monitoring', addrs(i.monitoring)),
      set('edge', addrs(i.all.filter((x) => inGroup(x, 'edge')))),
    ],
    rules: firewallPolicy(i),
  });
}
