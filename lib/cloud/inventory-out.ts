// Write the provisioned machines as an engine inventory (settings/vars/hosts/groups), keeping whatever
// else the existing file holds, atomically (temp file in the same directory + rename).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Document, parseDocument, isMap } from 'yaml';
import type { CloudSpec } from './config.ts';
import { dropletNames, dropletRegion, type DoActual } from './digitalocean.ts';

export interface InventoryHost {
  address: string;
  port: number;
  user: string;
  key?: string;
  vars?: Record<string, unknown>;
}

export interface ProvisionedInventory {
  hosts: Record<string, InventoryHost>;
  groups: Record<string, { hosts: string[] }>;
  vars: Record<string, unknown>;
}

/** Pure: hosts and groups from what exists. `address: public` (default) or `private` (a controller inside the VPC). */
export function inventoryFromActual(
  spec: CloudSpec,
  actual: DoActual,
  opts: { address?: 'public' | 'private'; zone?: string } = {},
): ProvisionedInventory {
  const hosts: Record<string, InventoryHost> = {};
  const groups: Record<string, { hosts: string[] }> = {};
  const missing: string[] = [];
  for (const g of spec.groups) {
    const names: string[] = [];
    for (const n of dropletNames(g)) {
      const d = actual.droplets.find((x) => x.name === n);
      const address = d ? (opts.address === 'private' ? d.privateV4 : d.publicV4) : undefined;
      if (!d || !address) {
        missing.push(n);
        continue;
      }
      hosts[n] = {
        address,
        port: 22,
        user: spec.user,
        ...(spec.key ? { key: spec.key } : {}),
        vars: {
          private_address: d.privateV4 ?? null,
          public_address: d.publicV4 ?? null,
          droplet_id: d.id,
          region: d.region ?? dropletRegion(g, n),
        },
      };
      names.push(n);
    }
    groups[g.name] = { hosts: names };
  }
  if (missing.length) throw new Error(`no address yet for: ${missing.join(', ')} (run provision again when they are active)`);
  const edgeIds = new Set(
    dropletNames(spec.groups.find((g) => g.name === spec.edgeGroup)!).map((n) => actual.droplets.find((d) => d.name === n)?.id),
  );
  const rip = actual.reservedIps.find((r) => r.dropletId !== undefined && edgeIds.has(r.dropletId));
  const firstEdge = groups[spec.edgeGroup]?.hosts[0];
  const edgeAddress =
    actual.loadBalancer?.ip ?? rip?.ip ?? (firstEdge ? actual.droplets.find((d) => d.name === firstEdge)?.publicV4 : undefined);
  const vars: Record<string, unknown> = {
    cloud_provider: spec.provider,
    cloud_region: spec.region,
    vpc_cidr: actual.vpc?.ipRange ?? spec.vpc.ipRange ?? null,
    // every region in order (the primary first): galera's gmcast.segment follows it (roles/galera/regions.ts)
    regions: spec.regions.map((r) => r.slug),
    vpc_cidrs: spec.regions.map((r) => actual.vpcs.find((v) => v.name === r.vpc.name)?.ipRange ?? r.vpc.ipRange ?? null),
    edge_group: spec.edgeGroup,
    edge_address: edgeAddress ?? null,
    reserved_ip: rip?.ip ?? null,
    load_balancer_ip: actual.loadBalancer?.ip ?? null,
    ...(spec.spaces
      ? {
          spaces_bucket: spec.spaces.bucket,
          spaces_region: spec.spaces.region,
          spaces_endpoint: `https://${spec.spaces.region}.digitaloceanspaces.com`,
        }
      : {}),
    ...(opts.zone ? { cloudflare_zone: opts.zone } : {}),
  };
  return { hosts, groups, vars };
}

/** Merge into the file: hosts/groups that wpfarm provisions are replaced, every other host, group,
 *  var, setting and comment of the file is kept. Returns the new text (and writes it unless dryRun). */
export function writeInventory(file: string, inv: ProvisionedInventory, opts: { knownHosts?: string; dryRun?: boolean } = {}): string {
  let doc: Document;
  if (existsSync(file)) {
    doc = parseDocument(readFileSync(file, 'utf8'));
    if (doc.errors.length) throw new Error(`${file}: YAML: ${doc.errors[0]!.message}`);
    if (doc.contents !== null && !isMap(doc.contents)) throw new Error(`${file}: not a mapping`);
  } else {
    doc = new Document({});
    doc.commentBefore =
      ' Written by playbooks/provision.ts: the hosts and groups it provisions are rewritten on each run;\n other keys are kept.';
  }
  if (!doc.has('settings')) doc.set('settings', { known_hosts: opts.knownHosts ?? '.wpfarm/production/known_hosts' });
  for (const [k, v] of Object.entries(inv.vars)) doc.setIn(['vars', k], v);
  // one line per host, like the hand-written inventories
  for (const [name, h] of Object.entries(inv.hosts)) doc.setIn(['hosts', name], doc.createNode(h, { flow: true }));
  for (const [name, g] of Object.entries(inv.groups)) {
    // keep a group's own vars/children, replace its hosts
    if (doc.hasIn(['groups', name]) && isMap(doc.getIn(['groups', name]))) doc.setIn(['groups', name, 'hosts'], g.hosts);
    else doc.setIn(['groups', name], doc.createNode({ hosts: g.hosts }, { flow: true }));
  }
  const text = doc.toString({ lineWidth: 0 });
  if (!opts.dryRun) {
    mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    writeFileSync(tmp, text, { mode: 0o644 });
    renameSync(tmp, file);
  }
  return text;
}

/** After --destroy: drop these hosts (and their group memberships) from the file, keep everything else. */
export function removeHostsFromInventory(file: string, names: string[]): string[] {
  if (!existsSync(file) || names.length === 0) return [];
  const doc = parseDocument(readFileSync(file, 'utf8'));
  if (doc.errors.length) throw new Error(`${file}: YAML: ${doc.errors[0]!.message}`);
  const removed: string[] = [];
  for (const n of names) {
    if (doc.hasIn(['hosts', n])) {
      doc.deleteIn(['hosts', n]);
      removed.push(n);
    }
  }
  const groups = doc.get('groups');
  if (isMap(groups)) {
    for (const item of groups.items) {
      const g = item.value;
      if (!isMap(g)) continue;
      const hosts = g.get('hosts');
      if (hosts && typeof hosts === 'object' && 'items' in hosts && Array.isArray((hosts as { items: unknown[] }).items)) {
        const seq = hosts as { items: { toString(): string }[] };
        seq.items = seq.items.filter((h) => !names.includes(String(h)));
      }
    }
  }
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, doc.toString({ lineWidth: 0 }), { mode: 0o644 });
  renameSync(tmp, file);
  return removed;
}
