// The `cloud:` and `cloudflare:` sections of an inventory file: one zod schema each (lib/schema.ts), read
// with the one YAML reader (lib/yamlsrc.ts); every problem is reported at once, naming file:line:col and field.
import { matching, int, nullAsAbsent, validate, z } from '../schema.ts';
import { parseYamlFile } from '../yamlsrc.ts';

export interface GroupSpec {
  name: string;
  count: number;
  size: string;
  /** droplet name prefix: mgr, wrk, db, st, mon, or the group name */
  prefix: string;
  /** a public image's slug, or an image id (a snapshot: playbooks/image.ts makes the farm's golden one) */
  image?: string | number;
  volumeGb?: number;
  tags: string[];
  /** the regions its droplets are spread over, in order (droplet i goes to regions[i % length]) */
  regions: string[];
}

/** One region of the farm: its VPC (one per region; peered with every other region's). */
export interface RegionSpec {
  slug: string;
  vpc: { name: string; ipRange?: string };
}

export interface CloudSpec {
  provider: 'digitalocean';
  /** the primary region (reserved IP, load balancer, Spaces by default) */
  region: string;
  /** the primary region's VPC */
  vpc: { name: string; ipRange?: string };
  /** every region of the farm, the primary first (one region: just the primary) */
  regions: RegionSpec[];
  sshKeys: (string | number)[];
  image: string | number;
  tags: string[];
  groups: GroupSpec[];
  reservedIp?: { group: string };
  loadBalancer: { enabled: boolean; name: string; group: string };
  spaces?: { bucket: string; region: string };
  managementCidrs: string[];
  /** the tag that marks every resource wpfarm owns (first of tags) */
  ownerTag: string;
  /** the firewall's name */
  firewallName: string;
  /** the group behind the edge (reserved IP, 80/443) */
  edgeGroup: string;
  user: string;
  key?: string;
}

export interface CloudflareSpec {
  zone: string;
}

const PREFIXES: Record<string, string> = { managers: 'mgr', workers: 'wrk', db: 'db', storage: 'st', monitoring: 'mon', edge: 'edge' };
const NAME_RE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const SLUG_RE = /^[a-z0-9][a-z0-9-]*$/;
const TAG_RE = /^[A-Za-z0-9:_-]{1,255}$/;
const KEY_RE = /^([0-9a-f]{2}:){15}[0-9a-f]{2}$|^\d+$|^SHA256:/i;

/** IPv4 CIDR check (a.b.c.d/n) or IPv6 CIDR (loose). */
export function isCidr(s: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (m) return m.slice(1, 5).every((x) => Number(x) <= 255) && Number(m[5]) <= 32;
  const m6 = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(s);
  return !!m6 && m6[1]!.includes(':') && Number(m6[2]) <= 128;
}

const notKey = (iss: { input?: unknown }) => `not a key id or fingerprint: ${JSON.stringify(iss.input)}`;
const opt = <T extends z.ZodType>(s: T) => nullAsAbsent(s.optional());
const name = matching(NAME_RE);
const slug = matching(SLUG_RE);
/** a public image's slug (debian-12-x64) or an image id (a snapshot, e.g. the golden one of playbooks/image.ts) */
const image = z.union([slug, z.int().positive()], {
  error: (iss) => `not an image slug or id: ${JSON.stringify(iss.input)}`,
});
const cidr = z.string().refine(isCidr, { error: (iss) => `not a CIDR: ${JSON.stringify(iss.input)}` });

const CloudGroup = z.strictObject({
  count: int(0, 100),
  size: slug,
  prefix: opt(name),
  image: opt(image),
  volume_gb: opt(int(1, 16 * 1024)),
  regions: opt(z.array(slug).min(1, { error: 'at least one region' })),
});

/** Groups whose members form a quorum (swarm managers: Raft; db: Galera): over regions, one member per region. */
const QUORUM_GROUPS = ['managers', 'db'];
/** Gluster's group: a volume's replicas write synchronously, so they stay within one region. */
const STORAGE_GROUPS = ['storage'];

/** Two IPv4 CIDRs overlap. */
export function cidrsOverlap(a: string, b: string): boolean {
  const parse = (c: string): [number, number] | undefined => {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(c);
    if (!m) return undefined;
    const ip = m.slice(1, 5).reduce((acc, x) => acc * 256 + Number(x), 0);
    const bits = Number(m[5]);
    const size = 2 ** (32 - bits);
    return [Math.floor(ip / size) * size, size];
  };
  const pa = parse(a);
  const pb = parse(b);
  if (!pa || !pb) return false;
  return pa[0] < pb[0] + pb[1] && pb[0] < pa[0] + pa[1];
}

const CloudSection = z
  .strictObject({
    provider: opt(z.literal('digitalocean', { error: (iss) => `unsupported provider ${JSON.stringify(iss.input)} (only digitalocean)` })),
    region: slug,
    vpc: opt(z.strictObject({ name, ip_range: opt(cidr) })),
    // several regions: one VPC each (peered with each other); `region` is the primary one
    regions: opt(z.record(slug, z.strictObject({ vpc: z.strictObject({ name, ip_range: cidr }) }))),
    ssh_keys: z
      .array(z.union([z.int(), z.string().regex(KEY_RE, { error: notKey })], { error: notKey }))
      .min(1, { error: 'at least one key id or fingerprint is required' }),
    image,
    tags: opt(z.array(matching(TAG_RE))),
    groups: z.record(name, CloudGroup).refine((g) => Object.keys(g).length > 0, { error: 'at least one group {count, size} is required' }),
    reserved_ip: nullAsAbsent(z.union([z.literal(false), z.strictObject({ group: z.string() })]).optional()),
    load_balancer: opt(z.strictObject({ enabled: opt(z.boolean()), group: opt(z.string()), name: opt(name) })),
    // S3 bucket naming rules (3-63, lowercase, digits, dots, dashes)
    spaces: opt(z.strictObject({ bucket: matching(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/), region: opt(slug) })),
    management_cidrs: z.array(cidr).min(1, { error: 'at least one address range is required (SSH would be closed)' }),
    firewall_name: opt(name),
    user: opt(z.string()),
    key: opt(z.string()),
  })
  .superRefine((c, ctx) => {
    const regions = c.regions ? Object.keys(c.regions) : [c.region];
    if (!c.regions && !c.vpc) ctx.addIssue({ code: 'custom', path: ['vpc'], message: 'missing: a vpc: { name, ip_range } (or regions:)' });
    if (c.regions) {
      if (c.vpc) ctx.addIssue({ code: 'custom', path: ['vpc'], message: 'with regions:, each region has its own vpc: remove this one' });
      if (!regions.includes(c.region))
        ctx.addIssue({
          code: 'custom',
          path: ['region'],
          message: `the primary region ${c.region} is not one of regions: ${regions.join(', ')}`,
        });
      const entries = Object.entries(c.regions);
      for (const [i, [ra, a]] of entries.entries()) {
        for (const [rb, b] of entries.slice(i + 1)) {
          if (cidrsOverlap(a.vpc.ip_range, b.vpc.ip_range))
            ctx.addIssue({
              code: 'custom',
              path: ['regions', rb, 'vpc', 'ip_range'],
              message: `${b.vpc.ip_range} overlaps ${ra}'s ${a.vpc.ip_range} (peered VPCs need distinct ranges)`,
            });
          if (a.vpc.name === b.vpc.name)
            ctx.addIssue({ code: 'custom', path: ['regions', rb, 'vpc', 'name'], message: `same VPC name as region ${ra}` });
        }
      }
    }
    for (const [g, spec] of Object.entries(c.groups)) {
      const rs = spec.regions ?? [c.region];
      for (const [i, r] of rs.entries())
        if (!regions.includes(r))
          ctx.addIssue({
            code: 'custom',
            path: ['groups', g, 'regions', i],
            message: `unknown region ${r} (regions: ${regions.join(', ')})`,
          });
      if (new Set(rs).size !== rs.length)
        ctx.addIssue({ code: 'custom', path: ['groups', g, 'regions'], message: 'a region is listed twice' });
      if (rs.length < 2) continue;
      if (STORAGE_GROUPS.includes(g) || spec.volume_gb)
        ctx.addIssue({
          code: 'custom',
          path: ['groups', g, 'regions'],
          message:
            `${g} is Gluster storage: a volume's replicas write synchronously, ` + `it must stay within one region (got ${rs.join(', ')})`,
        });
      if (QUORUM_GROUPS.includes(g)) {
        if (rs.length === 2)
          ctx.addIssue({
            code: 'custom',
            path: ['groups', g, 'regions'],
            message: `${g} over 2 regions loses its quorum with either region: use 1 region or at least 3`,
          });
        else if (spec.count !== rs.length)
          ctx.addIssue({
            code: 'custom',
            path: ['groups', g, 'count'],
            message: `${g} over ${rs.length} regions: one per region, so count must be ${rs.length} (got ${spec.count})`,
          });
      }
    }
    const groups = Object.keys(c.groups);
    const prefixes = new Map<string, string>();
    for (const [g, spec] of Object.entries(c.groups)) {
      const prefix = spec.prefix ?? PREFIXES[g] ?? g;
      if (prefixes.has(prefix))
        ctx.addIssue({ code: 'custom', path: ['groups', g, 'prefix'], message: `duplicate droplet name prefix ${JSON.stringify(prefix)}` });
      prefixes.set(prefix, g);
    }
    const known = (path: string[], g: string | undefined) => {
      if (g !== undefined && !groups.includes(g)) ctx.addIssue({ code: 'custom', path, message: `unknown group ${JSON.stringify(g)}` });
    };
    if (c.reserved_ip) known(['reserved_ip', 'group'], c.reserved_ip.group);
    known(['load_balancer', 'group'], c.load_balancer?.group);
    const edge = edgeOf(c);
    if (edge && (c.groups[edge]?.count ?? 1) < 1)
      ctx.addIssue({ code: 'custom', path: ['groups', edge, 'count'], message: 'the edge group needs at least one droplet' });
  })
  .transform((c): CloudSpec => {
    const tags = c.tags?.length ? c.tags : ['wpfarm'];
    const ownerTag = tags[0]!;
    const edgeGroup = edgeOf(c)!;
    const regions: RegionSpec[] = c.regions
      ? Object.entries(c.regions)
          .map(([slug, r]) => ({ slug, vpc: { name: r.vpc.name, ipRange: r.vpc.ip_range } }))
          .sort((a, b) => Number(b.slug === c.region) - Number(a.slug === c.region))
      : [{ slug: c.region, vpc: { name: c.vpc!.name, ipRange: c.vpc!.ip_range } }];
    return {
      provider: 'digitalocean',
      region: c.region,
      vpc: regions[0]!.vpc,
      regions,
      sshKeys: c.ssh_keys.map((k) => (typeof k === 'string' && /^\d+$/.test(k) ? Number(k) : k)),
      image: c.image,
      tags,
      groups: Object.entries(c.groups).map(([g, s]) => ({
        name: g,
        count: s.count,
        size: s.size,
        prefix: s.prefix ?? PREFIXES[g] ?? g,
        image: s.image,
        volumeGb: s.volume_gb,
        tags: [...tags, `${ownerTag}-${g}`],
        regions: s.regions ?? [c.region],
      })),
      reservedIp: c.reserved_ip ? { group: c.reserved_ip.group } : undefined,
      loadBalancer: {
        enabled: c.load_balancer?.enabled === true,
        name: c.load_balancer?.name ?? `${ownerTag}-lb`,
        group: c.load_balancer?.group ?? edgeGroup,
      },
      spaces: c.spaces ? { bucket: c.spaces.bucket, region: c.spaces.region ?? c.region } : undefined,
      managementCidrs: c.management_cidrs,
      ownerTag,
      firewallName: c.firewall_name ?? `${ownerTag}-fw`,
      edgeGroup,
      user: c.user || 'root',
      key: c.key || '~/.ssh/id_ed25519',
    };
  });

/** the group behind the edge (reserved IP, 80/443): the reserved IP's, else managers, else the first */
function edgeOf(c: { groups: Record<string, unknown>; reserved_ip?: false | { group: string } }): string | undefined {
  return c.reserved_ip ? c.reserved_ip.group : 'managers' in c.groups ? 'managers' : Object.keys(c.groups)[0];
}

const CloudflareSection = z.strictObject({ zone: matching(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/) });

/** An inventory as provisioning reads it: the two sections checked, the others left to lib/inventory.ts. */
const CloudInventory = z.looseObject({
  cloud: z
    .unknown()
    .superRefine((v, ctx) => {
      if (v == null) ctx.addIssue({ code: 'custom', message: 'missing: provisioning needs a cloud: section (a mapping)', input: v });
    })
    .pipe(CloudSection),
  cloudflare: opt(CloudflareSection),
});

/** Check a `cloud:` section already read (tests, callers with a plain value); `file` names it in messages. */
export function parseCloudSection(raw: unknown, file = 'inventory'): CloudSpec {
  return validate(CloudInventory, { cloud: raw }, file).cloud;
}

/** Read an inventory file and return its cloud + cloudflare sections (checked) and the whole document. */
export function loadCloudInventory(file: string): { cloud: CloudSpec; cloudflare?: CloudflareSpec; doc: Record<string, unknown> } {
  const y = parseYamlFile(file);
  const doc = y.toPlain();
  const r = validate(CloudInventory, doc, y, { rootName: 'inventory' });
  return { cloud: r.cloud, cloudflare: r.cloudflare, doc: doc as Record<string, unknown> };
}
