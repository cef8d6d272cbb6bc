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
}

export interface CloudSpec {
  provider: 'digitalocean';
  region: string;
  vpc: { name: string; ipRange?: string };
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
});

const CloudSection = z
  .strictObject({
    provider: opt(z.literal('digitalocean', { error: (iss) => `unsupported provider ${JSON.stringify(iss.input)} (only digitalocean)` })),
    region: slug,
    vpc: z.strictObject({ name, ip_range: opt(cidr) }),
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
    return {
      provider: 'digitalocean',
      region: c.region,
      vpc: { name: c.vpc.name, ipRange: c.vpc.ip_range },
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
