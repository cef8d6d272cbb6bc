// DigitalOcean provisioning with @digitalocean/dots: desired state (inventory `cloud:`), actual state
// (read through the API, paginated), a pure plan (list of actions), and apply/destroy.
import {
  createDigitalOceanClient,
  createLoad_balancerFromDiscriminatorValue,
  DigitalOceanApiKeyAuthenticationProvider,
} from '@digitalocean/dots';
import type {
  Region_slug,
  Droplet,
  Firewall,
  Firewall_rules_inbound_rules,
  Firewall_rules_outbound_rules,
  Firewall_rule_target,
  Vpc,
  Reserved_ip,
  Volume_full,
  Vpc_peering,
  Page_links,
  Image,
  Action,
} from '@digitalocean/dots';
import {
  FetchRequestAdapter,
  HttpClient,
  HeadersInspectionHandler,
  ParametersNameDecodingHandler,
  RedirectHandler,
  UserAgentHandler,
} from '@microsoft/kiota-http-fetchlibrary';
import {
  createUntypedNull,
  type Parsable,
  type ParsableFactory,
  type ParseNode,
  type RequestInformation,
} from '@microsoft/kiota-abstractions';
import type { CloudSpec, GroupSpec } from './config.ts';
import { collectPages, isNotFound, providerFetch } from './http.ts';
import type { RetryOptions } from './retry.ts';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

export const DO_API = 'https://api.digitalocean.com';

export type DoClient = ReturnType<typeof createDigitalOceanClient>;

export interface DoClientOptions extends RetryOptions {
  token: string;
  baseUrl?: string;
}

/** A dots client whose HTTP goes through our retrying, masking fetch (kiota's own retry handler is left
 *  out so that there is exactly one retry policy). */
export function makeDoClient(opts: DoClientOptions): DoClient {
  const fetchImpl = providerFetch('digitalocean', { ...opts, secrets: [opts.token, ...(opts.secrets ?? [])] });
  const http = new HttpClient(
    (url: string, init: RequestInit) => fetchImpl(url, init),
    new RedirectHandler(),
    new ParametersNameDecodingHandler(),
    new UserAgentHandler(),
    new HeadersInspectionHandler(),
  );
  const adapter = new FetchRequestAdapter(new DigitalOceanApiKeyAuthenticationProvider(opts.token), undefined, undefined, http);
  adapter.baseUrl = (opts.baseUrl ?? DO_API).replace(/\/+$/, '');
  const client = createDigitalOceanClient(adapter);
  adapters.set(client, adapter);
  return client;
}

const adapters = new WeakMap<DoClient, FetchRequestAdapter>();

/** The POST /v2/load_balancers response `{ load_balancer }`, parsed with dots' public model factory (dots keeps
 *  its own response factory under src/, which is not its public API). */
interface LoadBalancerPostResponse extends Parsable {
  loadBalancer?: { id?: string | null; ip?: string | null };
}
const loadBalancerPostResponse: ParsableFactory<LoadBalancerPostResponse> =
  () =>
  (r: Partial<LoadBalancerPostResponse> = {}) => ({
    load_balancer: (n: ParseNode) => {
      r.loadBalancer = n.getObjectValue(createLoad_balancerFromDiscriminatorValue) ?? undefined;
    },
  });

/** POST a JSON body through the dots request builder's URL and the same adapter (auth, retries, errors).
 *  Needed for /v2/load_balancers: dots 1.19 types that body as an UntypedNode set with
 *  setContentFromScalar, which sends an empty body (the API then answers 422). */
async function postJsonVia<T extends Parsable>(
  client: DoClient,
  info: RequestInformation,
  body: unknown,
  factory: ParsableFactory<T>,
): Promise<T | undefined> {
  const adapter = adapters.get(client);
  if (!adapter) throw new Error('not a client made by makeDoClient');
  info.setStreamContent(new TextEncoder().encode(JSON.stringify(body)).buffer as ArrayBuffer, 'application/json');
  return adapter.send(info, factory, undefined);
}

// ---------------------------------------------------------------------------------------------
// Actual state, in plain data

export interface DropletInfo {
  id: number;
  name: string;
  tags: string[];
  size: string;
  status: string;
  region?: string;
  publicV4?: string;
  privateV4?: string;
  vpcUuid?: string;
  volumeIds: string[];
}
export interface VpcInfo {
  id: string;
  name: string;
  ipRange?: string;
  region?: string;
}
export interface RuleSpec {
  protocol: 'tcp' | 'udp' | 'icmp';
  ports: string;
  addresses?: string[];
  tags?: string[];
  loadBalancerUids?: string[];
}
export interface FirewallSpec {
  name: string;
  tags: string[];
  inbound: RuleSpec[];
  outbound: RuleSpec[];
}
export interface FirewallInfo extends FirewallSpec {
  id: string;
}
export interface ReservedIpInfo {
  ip: string;
  dropletId?: number;
  region?: string;
}
export interface LbInfo {
  id: string;
  name: string;
  ip?: string;
}
export interface VolumeInfo {
  id: string;
  name: string;
  sizeGb: number;
  dropletIds: number[];
  region?: string;
}

export interface PeeringInfo {
  id: string;
  name: string;
  vpcIds: string[];
}

export interface DoActual {
  /** the primary region's VPC */
  vpc?: VpcInfo;
  /** the VPCs of every region of the inventory (found by name) */
  vpcs: VpcInfo[];
  /** VPC peerings between them (read only when the inventory has several regions) */
  peerings: PeeringInfo[];
  droplets: DropletInfo[];
  firewalls: FirewallInfo[];
  reservedIps: ReservedIpInfo[];
  loadBalancer?: LbInfo;
  volumes: VolumeInfo[];
}

export interface ReadOptions {
  perPage?: number;
  maxPages?: number;
}

function hasNext(links: Page_links | null | undefined, total: number | null | undefined, seen: number): boolean {
  const pages = links?.pages as { next?: string | null } | null | undefined;
  // meta.total is the reliable signal (kiota's union type for links.pages may drop `next`)
  if (typeof total === 'number') return seen < total;
  return !!pages?.next;
}

function toDroplet(d: Droplet): DropletInfo {
  const v4 = d.networks?.v4 ?? [];
  return {
    id: d.id ?? 0,
    name: d.name ?? '',
    tags: d.tags ?? [],
    size: d.sizeSlug ?? d.size?.slug ?? '',
    status: String(d.status ?? ''),
    region: d.region?.slug ?? undefined,
    publicV4: v4.find((n) => n.type === 'public')?.ipAddress ?? undefined,
    privateV4: v4.find((n) => n.type === 'private')?.ipAddress ?? undefined,
    vpcUuid: d.vpcUuid ?? undefined,
    volumeIds: d.volumeIds ?? [],
  };
}

function toRule(
  r: (Firewall_rules_inbound_rules | Firewall_rules_outbound_rules) & {
    sources?: Firewall_rule_target | null;
    destinations?: Firewall_rule_target | null;
  },
): RuleSpec {
  const t = r.sources ?? r.destinations ?? {};
  const rule: RuleSpec = { protocol: String(r.protocol) as RuleSpec['protocol'], ports: r.ports ?? '0' };
  if (t.addresses?.length) rule.addresses = [...t.addresses];
  if (t.tags?.length) rule.tags = [...t.tags];
  if (t.loadBalancerUids?.length) rule.loadBalancerUids = [...t.loadBalancerUids];
  return rule;
}

function toFirewall(f: Firewall): FirewallInfo {
  return {
    id: f.id ?? '',
    name: f.name ?? '',
    tags: f.tags ?? [],
    inbound: (f.inboundRules ?? []).map(toRule),
    outbound: (f.outboundRules ?? []).map(toRule),
  };
}

/** Dedupe by key while paging: a page that brings nothing new ends the walk (protects against a static mock). */
async function pagedUnique<T>(
  what: string,
  key: (t: T) => string,
  opts: ReadOptions,
  get: (page: number, perPage: number) => Promise<{ items: T[]; links?: Page_links | null; total?: number | null }>,
): Promise<T[]> {
  const seen = new Set<string>();
  const perPage = opts.perPage ?? 200;
  return collectPages<T>(
    async (page) => {
      const { items, links, total } = await get(page, perPage);
      const fresh = items.filter((i) => !seen.has(key(i)));
      for (const i of fresh) seen.add(key(i));
      return { items: fresh, hasNext: hasNext(links, total, seen.size) && fresh.length > 0 };
    },
    { maxPages: opts.maxPages, what },
  );
}

export async function listDroplets(client: DoClient, tag: string, opts: ReadOptions = {}): Promise<DropletInfo[]> {
  const ds = await pagedUnique<Droplet>(
    'droplets',
    (d) => String(d.id),
    opts,
    async (page, perPage) => {
      const r = await client.v2.droplets.get({ queryParameters: { tagName: tag, page, perPage } });
      return { items: r?.droplets ?? [], links: r?.links, total: r?.meta?.total };
    },
  );
  return ds.map(toDroplet);
}

export async function readActual(client: DoClient, spec: CloudSpec, opts: ReadOptions = {}): Promise<DoActual> {
  const vpcs = await pagedUnique<Vpc>(
    'vpcs',
    (v) => String(v.id),
    opts,
    async (page, perPage) => {
      const r = await client.v2.vpcs.get({ queryParameters: { page, perPage } });
      return { items: r?.vpcs ?? [], links: r?.links, total: r?.meta?.total };
    },
  );
  const ourVpcs = spec.regions
    .map((r) => vpcs.find((v) => v.name === r.vpc.name))
    .filter((v): v is Vpc => !!v)
    .map((v) => ({ id: String(v.id), name: v.name ?? '', ipRange: v.ipRange ?? undefined, region: v.region ?? undefined }));
  const vpc = ourVpcs.find((v) => v.name === spec.vpc.name);
  const peeringNames = new Set(vpcPeerings(spec).map((p) => p.name));
  const peerings: PeeringInfo[] = [];
  if (peeringNames.size) {
    const all = await pagedUnique<Vpc_peering>(
      'vpc_peerings',
      (p) => String(p.id),
      opts,
      async (page, perPage) => {
        const r = await client.v2.vpc_peerings.get({ queryParameters: { page, perPage } });
        return { items: r?.vpcPeerings ?? [], links: r?.links, total: r?.meta?.total };
      },
    );
    for (const p of all)
      if (p.name && peeringNames.has(p.name)) peerings.push({ id: String(p.id), name: p.name, vpcIds: (p.vpcIds ?? []).map(String) });
  }
  const droplets = await listDroplets(client, spec.ownerTag, opts);
  const fws = await pagedUnique<Firewall>(
    'firewalls',
    (f) => String(f.id),
    opts,
    async (page, perPage) => {
      const r = await client.v2.firewalls.get({ queryParameters: { page, perPage } });
      return { items: r?.firewalls ?? [], links: r?.links, total: r?.meta?.total };
    },
  );
  const ourFwNames = new Set<string>(firewallNames(spec));
  const rips = await pagedUnique<Reserved_ip>(
    'reserved_ips',
    (r) => String(r.ip),
    opts,
    async (page, perPage) => {
      const r = await client.v2.reserved_ips.get({ queryParameters: { page, perPage } });
      return { items: r?.reservedIps ?? [], links: r?.links, total: r?.meta?.total };
    },
  );
  let loadBalancer: LbInfo | undefined;
  if (spec.loadBalancer.enabled) {
    const lbs = await pagedUnique<{ id?: string | null; name?: string | null; ip?: string | null }>(
      'load_balancers',
      (l) => String(l.id),
      opts,
      async (page, perPage) => {
        const r = await client.v2.load_balancers.get({ queryParameters: { page, perPage } });
        return {
          items: (r?.loadBalancers ?? []) as { id?: string | null; name?: string | null; ip?: string | null }[],
          links: r?.links,
          total: r?.meta?.total,
        };
      },
    );
    const lb = lbs.find((l) => l.name === spec.loadBalancer.name);
    if (lb) loadBalancer = { id: lb.id ?? '', name: lb.name ?? '', ip: lb.ip ?? undefined };
  }
  const volumes: VolumeInfo[] = [];
  const volumeRegions = [...new Set(spec.groups.filter((g) => g.volumeGb && g.count > 0).flatMap((g) => g.regions))];
  for (const region of volumeRegions) {
    const vols = await pagedUnique<Volume_full>(
      `volumes ${region}`,
      (v) => String(v.id),
      opts,
      async (page, perPage) => {
        const r = await client.v2.volumes.get({ queryParameters: { region: regionSlug(region), page, perPage } });
        return { items: r?.volumes ?? [], links: r?.links, total: r?.meta?.total };
      },
    );
    const wanted = new Set(spec.groups.flatMap((g) => (g.volumeGb ? dropletNames(g).map(volumeName) : [])));
    for (const v of vols) {
      if (!v.name || !wanted.has(v.name)) continue;
      volumes.push({
        id: v.id ?? '',
        name: v.name,
        sizeGb: v.sizeGigabytes ?? 0,
        dropletIds: v.dropletIds ?? [],
        region: v.region?.slug ?? undefined,
      });
    }
  }
  return {
    vpc,
    vpcs: ourVpcs,
    peerings,
    droplets,
    firewalls: fws.filter((f) => f.name && ourFwNames.has(f.name)).map(toFirewall),
    reservedIps: rips.map((r) => ({ ip: r.ip ?? '', dropletId: r.droplet?.id ?? undefined, region: r.region?.slug ?? undefined })),
    loadBalancer,
    volumes,
  };
}

// ---------------------------------------------------------------------------------------------
// Desired state

export function dropletNames(g: GroupSpec): string[] {
  return Array.from({ length: g.count }, (_, i) => `${g.prefix}${i + 1}`);
}
/** The region of a group's droplet: its regions in turn (mgr1 in the first, mgr2 in the second...). */
export function dropletRegion(g: GroupSpec, name: string): string {
  const i = dropletNames(g).indexOf(name);
  return g.regions[Math.max(0, i) % g.regions.length]!;
}
/** The tag of a region's droplets when the farm spans several regions (its firewall applies to it). */
export const regionTag = (spec: CloudSpec, region: string): string => `${spec.ownerTag}-${region}`;
/** The VPC peerings the inventory needs: every pair of its regions' VPCs (none with one region). */
export function vpcPeerings(spec: CloudSpec): { name: string; vpcs: [string, string] }[] {
  const out: { name: string; vpcs: [string, string] }[] = [];
  for (const [i, a] of spec.regions.entries())
    for (const b of spec.regions.slice(i + 1)) out.push({ name: `${spec.ownerTag}-${a.slug}-${b.slug}`, vpcs: [a.vpc.name, b.vpc.name] });
  return out;
}
export function volumeName(droplet: string): string {
  return `${droplet}-data`;
}

const ANY = ['0.0.0.0/0', '::/0'];

/** The SDK types regions as the enum known when it was generated; the inventory checker has already
 *  validated the slug's shape and the API is the judge of new regions. */
function regionSlug(region: string): Region_slug {
  return region as Region_slug;
}

/** A port the cloud firewall opens between the droplets of the farm only (inside the VPC, or to the owner
 *  tag when the VPC has no range). Which ports is the farm's knowledge: roles/common/firewall.ts. */
export interface ClusterPort {
  protocol: RuleSpec['protocol'];
  ports: string;
}

/** The firewalls' names: the main one (every droplet; one per region when there are several) and the edge one. */
export function firewallNames(spec: CloudSpec): string[] {
  const main = spec.regions.length > 1 ? spec.regions.map((r) => `${spec.firewallName}-${r.slug}`) : [spec.firewallName];
  return [...main, `${spec.firewallName}-edge`];
}

/** The firewalls: SSH from management ranges; the cluster ports only inside the VPC (all droplets of the
 *  farm); 80/443 only to the edge group. */
export function desiredFirewalls(spec: CloudSpec, clusterPorts: readonly ClusterPort[]): FirewallSpec[] {
  // several regions: the cluster ports from every region's VPC range (the peerings carry the traffic)
  const ranges = spec.regions.map((r) => r.vpc.ipRange).filter((x): x is string => !!x);
  const inside = ranges.length === spec.regions.length ? { addresses: ranges } : { tags: [spec.ownerTag] };
  const cluster: RuleSpec[] = clusterPorts.map((p) => ({ protocol: p.protocol, ports: p.ports, ...inside }));
  const names = firewallNames(spec);
  const edgeName = names[names.length - 1]!;
  const multi = spec.regions.length > 1;
  const mains: FirewallSpec[] = spec.regions.map((r, i) => ({
    name: names[i]!,
    tags: [multi ? regionTag(spec, r.slug) : spec.ownerTag],
    inbound: [{ protocol: 'tcp', ports: '22', addresses: [...spec.managementCidrs] }, ...cluster],
    outbound: [
      { protocol: 'tcp', ports: '0', addresses: ANY },
      { protocol: 'udp', ports: '0', addresses: ANY },
      { protocol: 'icmp', ports: '0', addresses: ANY },
    ],
  }));
  const edge: FirewallSpec = {
    name: edgeName,
    tags: [`${spec.ownerTag}-${spec.edgeGroup}`],
    inbound: [
      { protocol: 'tcp', ports: '80', addresses: ANY },
      { protocol: 'tcp', ports: '443', addresses: ANY },
    ],
    outbound: [],
  };
  return [...mains, edge];
}

function ruleKey(r: RuleSpec): string {
  const ports = r.protocol === 'icmp' ? '0' : r.ports === 'all' ? '0' : r.ports;
  const s = (a?: string[]) => [...(a ?? [])].sort().join(',');
  return `${r.protocol}:${ports} a=${s(r.addresses)} t=${s(r.tags)} lb=${s(r.loadBalancerUids)}`;
}

/** Differences between two firewalls, one line each ("" when equal). */
export function firewallDiff(want: FirewallSpec, have: FirewallSpec): string[] {
  const out: string[] = [];
  const cmp = (dir: string, w: RuleSpec[], h: RuleSpec[]) => {
    const wk = new Set(w.map(ruleKey));
    const hk = new Set(h.map(ruleKey));
    for (const k of wk) if (!hk.has(k)) out.push(`+ ${dir} ${k}`);
    for (const k of hk) if (!wk.has(k)) out.push(`- ${dir} ${k}`);
  };
  cmp('in', want.inbound, have.inbound);
  cmp('out', want.outbound, have.outbound);
  const wt = [...want.tags].sort().join(',');
  const ht = [...have.tags].sort().join(',');
  if (wt !== ht) out.push(`tags ${ht} -> ${wt}`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Plan

export type DoAction =
  | { kind: 'create-vpc'; name: string; region: string; ipRange?: string }
  | { kind: 'create-vpc-peering'; name: string; vpcs: [string, string] }
  | {
      kind: 'create-droplets';
      group: string;
      names: string[];
      size: string;
      image: string | number;
      region: string;
      tags: string[];
      sshKeys: string[];
    }
  | { kind: 'create-volume'; name: string; sizeGb: number; region: string; droplet: string; tags: string[] }
  | { kind: 'attach-volume'; volume: string; droplet: string; region: string }
  | { kind: 'create-firewall'; firewall: FirewallSpec }
  | { kind: 'update-firewall'; id: string; firewall: FirewallSpec; changes: string[] }
  | { kind: 'create-reserved-ip'; droplet: string; region: string }
  | { kind: 'assign-reserved-ip'; ip: string; droplet: string }
  | { kind: 'create-load-balancer'; name: string; region: string; tag: string }
  | { kind: 'ensure-bucket'; bucket: string; region: string }
  | { kind: 'note'; message: string };

export function describeAction(a: DoAction): string {
  switch (a.kind) {
    case 'create-vpc':
      return `create VPC ${a.name} in ${a.region}${a.ipRange ? ` (${a.ipRange})` : ''}`;
    case 'create-vpc-peering':
      return `create VPC peering ${a.name} (${a.vpcs.join(' <-> ')})`;
    case 'create-droplets':
      return `create droplets ${a.names.join(', ')} [${a.group}] (${a.size}, ${a.image}, ${a.region}, tags ${a.tags.join(',')})`;
    case 'create-volume':
      return `create volume ${a.name} ${a.sizeGb} GB in ${a.region} for ${a.droplet}`;
    case 'attach-volume':
      return `attach volume ${a.volume} to ${a.droplet}`;
    case 'create-firewall':
      return `create firewall ${a.firewall.name} for tags ${a.firewall.tags.join(',')} (${a.firewall.inbound.length} inbound, ${a.firewall.outbound.length} outbound rules)`;
    case 'update-firewall':
      return `update firewall ${a.firewall.name}: ${a.changes.join('; ')}`;
    case 'create-reserved-ip':
      return `create a reserved IP in ${a.region} assigned to ${a.droplet}`;
    case 'assign-reserved-ip':
      return `assign reserved IP ${a.ip} to ${a.droplet}`;
    case 'create-load-balancer':
      return `create load balancer ${a.name} in ${a.region} for tag ${a.tag} (80/443 tcp passthrough)`;
    case 'ensure-bucket':
      return `ensure Spaces bucket ${a.bucket} in ${a.region} (S3 HeadBucket/CreateBucket)`;
    case 'note':
      return `note: ${a.message}`;
  }
}

/** Pure: what must change so that `actual` becomes `spec` (the firewall opening `clusterPorts` inside the farm).
 *  Existing resources are found by name and tag; nothing is ever deleted or resized here (destroy is separate
 *  and explicit). */
export function planProvision(spec: CloudSpec, actual: DoActual, clusterPorts: readonly ClusterPort[]): DoAction[] {
  const actions: DoAction[] = [];
  for (const r of spec.regions) {
    const have = actual.vpcs.find((v) => v.name === r.vpc.name);
    if (!have) actions.push({ kind: 'create-vpc', name: r.vpc.name, region: r.slug, ipRange: r.vpc.ipRange });
    else if (r.vpc.ipRange && have.ipRange && have.ipRange !== r.vpc.ipRange)
      actions.push({
        kind: 'note',
        message: `VPC ${r.vpc.name} has ip_range ${have.ipRange}, inventory says ${r.vpc.ipRange} (not changed: a VPC range is immutable)`,
      });
  }
  for (const p of vpcPeerings(spec))
    if (!actual.peerings.some((x) => x.name === p.name)) actions.push({ kind: 'create-vpc-peering', name: p.name, vpcs: p.vpcs });
  const byName = new Map(actual.droplets.map((d) => [d.name, d]));
  for (const g of spec.groups) {
    const names = dropletNames(g);
    for (const region of g.regions) {
      const missing = names.filter((n) => !byName.has(n) && dropletRegion(g, n) === region);
      const tags = spec.regions.length > 1 ? [...g.tags, regionTag(spec, region)] : g.tags;
      // the API creates at most 10 droplets per request
      for (let i = 0; i < missing.length; i += 10) {
        actions.push({
          kind: 'create-droplets',
          group: g.name,
          names: missing.slice(i, i + 10),
          size: g.size,
          image: g.image ?? spec.image,
          region,
          tags,
          sshKeys: spec.sshKeys.map(String),
        });
      }
    }
    for (const n of names) {
      const d = byName.get(n);
      if (d && d.size && d.size !== g.size)
        actions.push({ kind: 'note', message: `${n} is ${d.size}, inventory says ${g.size} (resize is not automatic)` });
      if (d && !g.tags.every((t) => d.tags.includes(t)))
        actions.push({ kind: 'note', message: `${n} lacks tags ${g.tags.filter((t) => !d.tags.includes(t)).join(',')}` });
    }
    const extra = actual.droplets.filter((d) => d.tags.includes(`${spec.ownerTag}-${g.name}`) && !names.includes(d.name));
    for (const d of extra)
      actions.push({ kind: 'note', message: `${d.name} (tag ${spec.ownerTag}-${g.name}) is not in the inventory any more (not deleted)` });
    if (g.volumeGb) {
      for (const n of names) {
        const vname = volumeName(n);
        const vol = actual.volumes.find((v) => v.name === vname);
        const d = byName.get(n);
        const region = dropletRegion(g, n);
        if (!vol) {
          actions.push({ kind: 'create-volume', name: vname, sizeGb: g.volumeGb, region, droplet: n, tags: [spec.ownerTag] });
          actions.push({ kind: 'attach-volume', volume: vname, droplet: n, region });
        } else {
          if (!d || !vol.dropletIds.includes(d.id)) actions.push({ kind: 'attach-volume', volume: vname, droplet: n, region });
          if (vol.sizeGb < g.volumeGb)
            actions.push({
              kind: 'note',
              message: `volume ${vname} is ${vol.sizeGb} GB, inventory says ${g.volumeGb} (resize is not automatic)`,
            });
        }
      }
    }
  }
  for (const fw of desiredFirewalls(spec, clusterPorts)) {
    const have = actual.firewalls.find((f) => f.name === fw.name);
    if (!have) actions.push({ kind: 'create-firewall', firewall: fw });
    else {
      const changes = firewallDiff(fw, have);
      if (changes.length) actions.push({ kind: 'update-firewall', id: have.id, firewall: fw, changes });
    }
  }
  if (spec.reservedIp) {
    const edge = spec.groups.find((g) => g.name === spec.reservedIp!.group)!;
    const edgeNames = dropletNames(edge);
    const edgeIds = new Set(edgeNames.map((n) => byName.get(n)?.id).filter((x): x is number => x !== undefined));
    const assigned = actual.reservedIps.find((r) => r.dropletId !== undefined && edgeIds.has(r.dropletId));
    // a reserved IP lives in one region: the primary's first edge droplet
    const target = edgeNames.find((n) => dropletRegion(edge, n) === spec.region) ?? edgeNames[0]!;
    if (!assigned) actions.push({ kind: 'create-reserved-ip', droplet: target, region: dropletRegion(edge, target) });
  }
  if (spec.loadBalancer.enabled && !actual.loadBalancer) {
    actions.push({
      kind: 'create-load-balancer',
      name: spec.loadBalancer.name,
      region: spec.region,
      tag: `${spec.ownerTag}-${spec.loadBalancer.group}`,
    });
  }
  if (spec.spaces) actions.push({ kind: 'ensure-bucket', bucket: spec.spaces.bucket, region: spec.spaces.region });
  return actions;
}

/** Does the plan change anything (notes and the bucket check aside, which are not changes by themselves)? */
export function planChanges(actions: DoAction[]): DoAction[] {
  return actions.filter((a) => a.kind !== 'note' && a.kind !== 'ensure-bucket');
}

// ---------------------------------------------------------------------------------------------
// Apply

export interface ApplyOptions extends ReadOptions {
  /** wait for new droplets to be active with addresses (default 10 min) */
  waitTimeoutMs?: number;
  pollIntervalMs?: number;
  log?: (line: string) => void;
  /** performs an ensure-bucket action; returns what happened ("exists", "created", "skipped: ...") */
  ensureBucket?: (bucket: string, region: string) => Promise<string>;
}

export interface ApplyResult {
  done: string[];
  actual: DoActual;
}

function fwBody(f: FirewallSpec, dropletIds: number[] = []): Firewall {
  const target = (r: RuleSpec): Firewall_rule_target => ({
    ...(r.addresses ? { addresses: r.addresses } : {}),
    ...(r.tags ? { tags: r.tags } : {}),
    ...(r.loadBalancerUids ? { loadBalancerUids: r.loadBalancerUids } : {}),
  });
  return {
    name: f.name,
    tags: f.tags,
    dropletIds,
    inboundRules: f.inbound.map((r) => ({ protocol: r.protocol, ports: r.ports, sources: target(r) })) as Firewall_rules_inbound_rules[],
    outboundRules: f.outbound.map((r) => ({
      protocol: r.protocol,
      ports: r.ports,
      destinations: target(r),
    })) as Firewall_rules_outbound_rules[],
  };
}

/** Poll the tag's droplets until every named one is active with a public IPv4 (bounded). */
export async function waitForDroplets(client: DoClient, tag: string, names: string[], opts: ApplyOptions = {}): Promise<DropletInfo[]> {
  const deadline = Date.now() + (opts.waitTimeoutMs ?? 600_000);
  const interval = opts.pollIntervalMs ?? 5_000;
  for (;;) {
    const ds = await listDroplets(client, tag, opts);
    const pending = names.filter((n) => {
      const d = ds.find((x) => x.name === n);
      return !d || d.status !== 'active' || !d.publicV4;
    });
    if (pending.length === 0) return ds;
    if (Date.now() > deadline)
      throw new Error(
        `droplets not active with an address after ${Math.round((opts.waitTimeoutMs ?? 600_000) / 1000)} s: ${pending.join(', ')}`,
      );
    await sleep(interval);
  }
}

export async function applyProvision(
  client: DoClient,
  spec: CloudSpec,
  actions: DoAction[],
  opts: ApplyOptions = {},
): Promise<ApplyResult> {
  const log = opts.log ?? (() => {});
  const done: string[] = [];
  let actual = await readActual(client, spec, opts);
  const dropletId = (name: string): number => {
    const d = actual.droplets.find((x) => x.name === name);
    if (!d) throw new Error(`droplet ${name} not found after creation`);
    return d.id;
  };
  const vpcOf = (region: string): VpcInfo | undefined => {
    const name = spec.regions.find((r) => r.slug === region)?.vpc.name;
    return actual.vpcs.find((v) => v.name === name);
  };
  const record = (a: DoAction, extra = '') => {
    const line = describeAction(a) + extra;
    done.push(line);
    log(line);
  };
  for (const a of actions) {
    switch (a.kind) {
      case 'note':
        log(describeAction(a));
        break;
      case 'create-vpc': {
        if (actual.vpcs.some((v) => v.name === a.name)) break;
        const r = await client.v2.vpcs.post({
          name: a.name,
          region: a.region,
          ...(a.ipRange ? { ipRange: a.ipRange } : {}),
          description: 'wpfarm',
        });
        const v = (r as { vpc?: Vpc } | undefined)?.vpc;
        if (!v?.id) throw new Error(`VPC ${a.name}: the API returned no id`);
        const info = { id: String(v.id), name: v.name ?? a.name, ipRange: v.ipRange ?? a.ipRange, region: v.region ?? a.region };
        actual.vpcs.push(info);
        if (a.name === spec.vpc.name) actual.vpc = info;
        record(a);
        break;
      }
      case 'create-vpc-peering': {
        if (actual.peerings.some((p) => p.name === a.name)) break;
        const ids = a.vpcs.map((n) => actual.vpcs.find((v) => v.name === n)?.id);
        if (ids.some((x) => !x)) throw new Error(`VPC peering ${a.name}: VPC ${a.vpcs.join(' or ')} not found`);
        const r = await client.v2.vpc_peerings.post({ name: a.name, vpcIds: ids as string[] });
        actual.peerings.push({ id: String(r?.vpcPeering?.id ?? ''), name: a.name, vpcIds: ids as string[] });
        record(a);
        break;
      }
      case 'create-droplets': {
        const have = new Set(actual.droplets.map((d) => d.name));
        const names = a.names.filter((n) => !have.has(n));
        if (names.length === 0) break;
        const base = {
          region: a.region,
          size: a.size,
          image: a.image,
          sshKeys: a.sshKeys,
          tags: a.tags,
          monitoring: true,
          ...(vpcOf(a.region) ? { vpcUuid: vpcOf(a.region)!.id } : {}),
        };
        if (names.length === 1) await client.v2.droplets.post({ ...base, name: names[0] });
        else await client.v2.droplets.post({ ...base, names });
        actual.droplets = await waitForDroplets(client, spec.ownerTag, names, opts);
        record(a);
        break;
      }
      case 'create-volume': {
        if (actual.volumes.some((v) => v.name === a.name)) break;
        const r = await client.v2.volumes.post({
          name: a.name,
          sizeGigabytes: a.sizeGb,
          region: regionSlug(a.region),
          filesystemType: 'ext4',
          tags: a.tags,
          description: `wpfarm data for ${a.droplet}`,
        });
        const v = (r as { volume?: Volume_full } | undefined)?.volume;
        actual.volumes.push({
          id: v?.id ?? '',
          name: a.name,
          sizeGb: v?.sizeGigabytes ?? a.sizeGb,
          dropletIds: v?.dropletIds ?? [],
          region: a.region,
        });
        record(a);
        break;
      }
      case 'attach-volume': {
        const vol = actual.volumes.find((v) => v.name === a.volume);
        if (!vol?.id) throw new Error(`volume ${a.volume} not found`);
        const id = dropletId(a.droplet);
        if (vol.dropletIds.includes(id)) break;
        await client.v2.volumes.byVolume_id(vol.id).actions.post({ type: 'attach', dropletId: id, region: regionSlug(a.region) });
        vol.dropletIds.push(id);
        record(a);
        break;
      }
      case 'create-firewall': {
        const r = await client.v2.firewalls.post(fwBody(a.firewall));
        const f = (r as { firewall?: Firewall } | undefined)?.firewall;
        if (f) actual.firewalls.push(toFirewall(f));
        record(a);
        break;
      }
      case 'update-firewall': {
        await client.v2.firewalls.byFirewall_id(a.id).put(fwBody(a.firewall));
        record(a);
        break;
      }
      case 'create-reserved-ip': {
        const id = dropletId(a.droplet);
        if (actual.reservedIps.some((r) => r.dropletId === id)) break;
        const r = await client.v2.reserved_ips.post({ dropletId: id });
        const ip = (r as { reservedIp?: Reserved_ip } | undefined)?.reservedIp?.ip;
        if (ip) actual.reservedIps.push({ ip, dropletId: id, region: a.region });
        record(a, ip ? `: ${ip}` : '');
        break;
      }
      case 'assign-reserved-ip': {
        await client.v2.reserved_ips.byReserved_ip(a.ip).actions.post({ type: 'assign', dropletId: dropletId(a.droplet) });
        record(a);
        break;
      }
      case 'create-load-balancer': {
        const body = {
          name: a.name,
          region: a.region,
          tag: a.tag,
          ...(actual.vpc ? { vpc_uuid: actual.vpc.id } : {}),
          forwarding_rules: [
            { entry_protocol: 'tcp', entry_port: 80, target_protocol: 'tcp', target_port: 80 },
            { entry_protocol: 'tcp', entry_port: 443, target_protocol: 'tcp', target_port: 443 },
          ],
          health_check: {
            protocol: 'tcp',
            port: 80,
            check_interval_seconds: 10,
            response_timeout_seconds: 5,
            healthy_threshold: 3,
            unhealthy_threshold: 3,
          },
        };
        const info = client.v2.load_balancers.toPostRequestInformation(createUntypedNull());
        const lb = (await postJsonVia(client, info, body, loadBalancerPostResponse))?.loadBalancer;
        actual.loadBalancer = { id: lb?.id ?? '', name: a.name, ip: lb?.ip ?? undefined };
        record(a);
        break;
      }
      case 'ensure-bucket': {
        if (!opts.ensureBucket) {
          log(`${describeAction(a)}: skipped (no Spaces endpoint/credentials given)`);
          break;
        }
        const what = await opts.ensureBucket(a.bucket, a.region);
        if (what === 'created') record(a, ': created');
        else log(`${describeAction(a)}: ${what}`);
        break;
      }
    }
  }
  actual = await readActual(client, spec, opts);
  return { done, actual };
}

// ---------------------------------------------------------------------------------------------
// Destroy

export type DestroyAction =
  | { kind: 'delete-load-balancer'; id: string; name: string }
  | { kind: 'delete-reserved-ip'; ip: string }
  | { kind: 'delete-firewall'; id: string; name: string }
  | { kind: 'delete-droplet'; id: number; name: string }
  | { kind: 'delete-volume'; id: string; name: string }
  | { kind: 'delete-vpc-peering'; id: string; name: string }
  | { kind: 'delete-vpc'; id: string; name: string };

export function describeDestroy(a: DestroyAction): string {
  switch (a.kind) {
    case 'delete-load-balancer':
      return `delete load balancer ${a.name}`;
    case 'delete-reserved-ip':
      return `delete reserved IP ${a.ip}`;
    case 'delete-firewall':
      return `delete firewall ${a.name}`;
    case 'delete-droplet':
      return `delete droplet ${a.name} (${a.id})`;
    case 'delete-volume':
      return `delete volume ${a.name}`;
    case 'delete-vpc-peering':
      return `delete VPC peering ${a.name}`;
    case 'delete-vpc':
      return `delete VPC ${a.name}`;
  }
}

/** Pure: what --destroy removes. Only resources carrying the owner tag or wpfarm's names; the Spaces
 *  bucket (backups) is never deleted here. */
export function planDestroy(spec: CloudSpec, actual: DoActual): DestroyAction[] {
  const out: DestroyAction[] = [];
  if (actual.loadBalancer) out.push({ kind: 'delete-load-balancer', id: actual.loadBalancer.id, name: actual.loadBalancer.name });
  const ids = new Set(actual.droplets.map((d) => d.id));
  for (const r of actual.reservedIps)
    if (r.dropletId !== undefined && ids.has(r.dropletId)) out.push({ kind: 'delete-reserved-ip', ip: r.ip });
  for (const f of actual.firewalls) out.push({ kind: 'delete-firewall', id: f.id, name: f.name });
  for (const d of actual.droplets) out.push({ kind: 'delete-droplet', id: d.id, name: d.name });
  for (const v of actual.volumes) out.push({ kind: 'delete-volume', id: v.id, name: v.name });
  for (const p of actual.peerings) out.push({ kind: 'delete-vpc-peering', id: p.id, name: p.name });
  for (const v of actual.vpcs) out.push({ kind: 'delete-vpc', id: v.id, name: v.name });
  void spec;
  return out;
}

export async function applyDestroy(
  client: DoClient,
  actions: DestroyAction[],
  opts: { log?: (l: string) => void; retryDelayMs?: number; attempts?: number } = {},
): Promise<string[]> {
  const log = opts.log ?? (() => {});
  const done: string[] = [];
  // volumes and the VPC can only go once the droplets are gone: retry those a few times
  const attempts = opts.attempts ?? 10;
  for (const a of actions) {
    for (let i = 1; ; i++) {
      try {
        switch (a.kind) {
          case 'delete-load-balancer':
            await client.v2.load_balancers.byLb_id(a.id).delete();
            break;
          case 'delete-reserved-ip':
            await client.v2.reserved_ips.byReserved_ip(a.ip).delete();
            break;
          case 'delete-firewall':
            await client.v2.firewalls.byFirewall_id(a.id).delete();
            break;
          case 'delete-droplet':
            await client.v2.droplets.byDroplet_id(a.id).delete();
            break;
          case 'delete-volume':
            await client.v2.volumes.byVolume_id(a.id).delete();
            break;
          case 'delete-vpc-peering':
            await client.v2.vpc_peerings.byVpc_peering_id(a.id).delete();
            break;
          case 'delete-vpc':
            await client.v2.vpcs.byVpc_id(a.id).delete();
            break;
        }
        done.push(describeDestroy(a));
        log(describeDestroy(a));
        break;
      } catch (err) {
        if (isNotFound(err)) break; // already gone
        const retryable = (a.kind === 'delete-volume' || a.kind === 'delete-vpc') && i < attempts;
        if (!retryable) throw err;
        await sleep(opts.retryDelayMs ?? 5_000);
      }
    }
  }
  return done;
}

// ---------------------------------------------------------------------------------------------
// Snapshots (golden images): a droplet prepared once, powered off and snapshotted; new droplets start from it.

export interface ImageInfo {
  id: number;
  name: string;
  status: string;
  regions: string[];
  createdAt?: string;
}

/** A snapshot's name from what went into it: `<prefix>-<12 hex of sha256(inputs)>`. Same inputs, same name. */
export function snapshotName(prefix: string, inputs: readonly string[]): string {
  const h = createHash('sha256');
  for (const i of inputs) h.update(i).update('\0');
  return `${prefix}-${h.digest('hex').slice(0, 12)}`;
}

/** The account's own images (snapshots and backups), every page. */
export async function listPrivateImages(client: DoClient, opts: ReadOptions = {}): Promise<ImageInfo[]> {
  const images = await pagedUnique<Image>(
    'images',
    (i) => String(i.id),
    opts,
    async (page, perPage) => {
      const r = await client.v2.images.get({ queryParameters: { private: true, page, perPage } });
      return { items: r?.images ?? [], links: r?.links, total: r?.meta?.total };
    },
  );
  return images.map((i) => ({
    id: i.id ?? 0,
    name: i.name ?? '',
    status: String(i.status ?? ''),
    regions: (i.regions ?? []).map(String),
    createdAt: i.createdAt ? new Date(i.createdAt).toISOString() : undefined,
  }));
}

export interface WaitOptions {
  timeoutMs?: number;
  pollIntervalMs?: number;
}

/** Poll an action until it completed; an errored action or the deadline is an error. */
export async function waitForAction(client: DoClient, id: number, what: string, opts: WaitOptions = {}): Promise<Action> {
  const timeout = opts.timeoutMs ?? 30 * 60_000;
  const deadline = Date.now() + timeout;
  for (;;) {
    const a = (await client.v2.actions.byAction_id(id).get())?.action;
    if (a?.status === 'completed') return a;
    if (a?.status === 'errored') throw new Error(`${what}: action ${id} errored`);
    if (Date.now() > deadline) throw new Error(`${what}: action ${id} not completed after ${Math.round(timeout / 1000)} s`);
    await sleep(opts.pollIntervalMs ?? 5_000);
  }
}

/** POST /v2/droplets/{id}/actions and wait for it: 'shutdown' (clean power-off) or 'snapshot' (with its name). */
export async function dropletAction(
  client: DoClient,
  dropletId: number,
  action: { type: 'shutdown' | 'power_on' } | { type: 'snapshot'; name: string },
  opts: WaitOptions = {},
): Promise<Action> {
  const r = await client.v2.droplets.byDroplet_id(dropletId).actions.post(action);
  const id = r?.action?.id;
  if (!id) throw new Error(`droplet ${dropletId}: ${action.type}: the API returned no action id`);
  return waitForAction(client, id, `droplet ${dropletId} ${action.type}`, opts);
}

export async function deleteImage(client: DoClient, id: number): Promise<void> {
  try {
    await client.v2.images.byImage_id(id).delete();
  } catch (err) {
    if (!isNotFound(err)) throw err;
  }
}

/** Pure: the older snapshots of a family to delete, keeping the newest `keep` (and always the one named `current`). */
export function snapshotsToPrune(images: readonly ImageInfo[], prefix: string, current: string, keep: number): ImageInfo[] {
  const family = images
    .filter((i) => i.name.startsWith(`${prefix}-`) && /^[0-9a-f]{12}$/.test(i.name.slice(prefix.length + 1)))
    .sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? '') || b.id - a.id);
  const kept = new Set(family.filter((i) => i.name === current).map((i) => i.id));
  for (const i of family) if (kept.size < Math.max(1, keep) && !kept.has(i.id)) kept.add(i.id);
  return family.filter((i) => !kept.has(i.id));
}

export interface BakeOptions extends ReadOptions, WaitOptions {
  log?: (line: string) => void;
  /** how many snapshots of the family to keep (the new one included); default 2 */
  keep?: number;
  /** wait for the builder droplet (default 10 min) */
  waitTimeoutMs?: number;
}

export interface BakeSpec {
  /** the snapshot's name (snapshotName) and its family prefix (older ones are pruned) */
  name: string;
  prefix: string;
  region: string;
  /** the base image (slug or id) and the builder's size */
  image: string | number;
  size: string;
  sshKeys: (string | number)[];
  vpcUuid?: string;
  /** the builder droplet's name and tag (not the farm's owner tag: the farm's lists never see it) */
  builderName: string;
  builderTag: string;
}

export interface BakeResult {
  image: ImageInfo;
  built: boolean;
  pruned: string[];
}

/**
 * A golden image: when no snapshot named spec.name exists, create a builder droplet from the base image, let
 * `prepare` configure it (over SSH: the caller's business), shut it down, snapshot it, delete the builder and
 * prune the family's older snapshots. The builder is deleted whatever happens after it was created.
 */
export async function bakeSnapshot(
  client: DoClient,
  spec: BakeSpec,
  prepare: (droplet: DropletInfo) => Promise<void>,
  opts: BakeOptions = {},
): Promise<BakeResult> {
  const log = opts.log ?? (() => {});
  const existing = (await listPrivateImages(client, opts)).find((i) => i.name === spec.name && i.status !== 'deleted');
  if (existing) {
    log(`snapshot ${spec.name} exists (image ${existing.id}): nothing to build`);
    return { image: existing, built: false, pruned: [] };
  }
  log(`creating the builder droplet ${spec.builderName} (${spec.size}, ${String(spec.image)}, ${spec.region})`);
  const r = await client.v2.droplets.post({
    name: spec.builderName,
    region: spec.region,
    size: spec.size,
    image: spec.image,
    sshKeys: spec.sshKeys.map(String),
    tags: [spec.builderTag],
    ...(spec.vpcUuid ? { vpcUuid: spec.vpcUuid } : {}),
  });
  const createdId = (r as { droplet?: Droplet } | undefined)?.droplet?.id ?? undefined;
  let builderId = createdId;
  try {
    const ds = await waitForDroplets(client, spec.builderTag, [spec.builderName], { ...opts, waitTimeoutMs: opts.waitTimeoutMs });
    const builder = ds.find((d) => d.name === spec.builderName)!;
    builderId = builder.id;
    log(`builder ${builder.name} (${builder.id}) is active at ${builder.publicV4}: preparing it`);
    await prepare(builder);
    log('shutting the builder down for a consistent snapshot');
    await dropletAction(client, builder.id, { type: 'shutdown' }, opts);
    log(`snapshotting it as ${spec.name}`);
    await dropletAction(client, builder.id, { type: 'snapshot', name: spec.name }, opts);
  } finally {
    if (builderId !== undefined) {
      await client.v2.droplets
        .byDroplet_id(builderId)
        .delete()
        .catch((err: unknown) => {
          if (!isNotFound(err)) log(`could not delete the builder droplet ${builderId}: ${(err as Error).message}`);
        });
      log(`deleted the builder droplet ${builderId}`);
    }
  }
  const images = await listPrivateImages(client, opts);
  const image = images.find((i) => i.name === spec.name);
  if (!image) throw new Error(`snapshot ${spec.name} not found after the snapshot action completed`);
  const pruned: string[] = [];
  for (const old of snapshotsToPrune(images, spec.prefix, spec.name, opts.keep ?? 2)) {
    await deleteImage(client, old.id);
    pruned.push(`${old.name} (${old.id})`);
    log(`deleted the older snapshot ${old.name} (${old.id})`);
  }
  return { image, built: true, pruned };
}
