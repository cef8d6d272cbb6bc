// The site record: one YAML file per WordPress site (inventory/sites/<id>.yml), typed and validated.
//
// Validation is strict and happens before anything runs: an unknown key, a domain carrying shell or
// Traefik rule syntax, a duplicate id or domain across the farm is refused with an error that names
// the file, the line and the field. One path: the YAML reader (lib/yamlsrc.ts) and a zod schema
// (lib/schema.ts), every problem reported at once (InputErrors, exit 4).

import { readdirSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { InputErrors, int, matching, nullAsAbsent, num, problemAt, checkedBy, validate, z, type Problem } from '../../lib/schema.ts';
import { parseYamlText, parseYamlFile, type YamlSource } from '../../lib/yamlsrc.ts';
import { type BackupRetention, RETENTION_DEFAULTS } from '../common/retention.ts';

/** Defaults that come from the farm inventory (not from the record). */
export interface SiteDefaultsFromInventory {
  /** inventory var management_cidrs: default admin allowlist */
  management_cidrs?: string[];
  /** inventory var retention.backups (retentionOf(vars).backups): the backups' retention of a record that sets none */
  backup_retention?: BackupRetention;
}

export const DEFAULT_PHP = Object.freeze({
  memory_limit: '256M',
  upload_max_filesize: '64M',
  post_max_size: '64M',
  max_execution_time: 60,
  max_input_vars: 3000,
  // 512M container limit / ~40M per worker, minus OPcache's 256M shared segment: 6 workers fit.
  pm_max_children: 6,
  pm_start_servers: 2,
  pm_min_spare_servers: 1,
  pm_max_spare_servers: 3,
  pm_max_requests: 500,
});

export const DEFAULT_LIMITS = Object.freeze({
  nginx: { cpus: 0.25, memory: '128M' },
  php: { cpus: 1, memory: '512M' },
  redis: { cpus: 0.25, memory: '128M' },
});

// the retention figures are the farm's defaults (vars.retention.backups, roles/common/retention.ts)
const RB = RETENTION_DEFAULTS.backups;
export const DEFAULT_BACKUP = Object.freeze({
  db: { every_hours: 6, retention_days: RB.db_days },
  files: {
    schedule: 'daily' as const,
    keep_daily: RB.files_keep_daily,
    keep_weekly: RB.files_keep_weekly,
    keep_monthly: RB.files_keep_monthly,
  },
});

export const DEFAULT_REPLICAS = 2;
export const DEFAULT_CACHE_TTL = 600;

// ---------------------------------------------------------------------------------------------
// Pure validators (exported: the add-site playbook validates a --domain argument with the same code)

export const SITE_ID_RE = /^[a-z][a-z0-9-]{1,30}$/;
/** a plugin's or theme's slug (its directory under wp-content/plugins or wp-content/themes) */
export const WP_SLUG_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** Returns null when the id is valid, else the reason. */
export function checkSiteId(id: unknown): string | null {
  if (typeof id !== 'string') return `must be a string, got ${describe(id)}`;
  if (!SITE_ID_RE.test(id)) return `${JSON.stringify(id)} must match [a-z][a-z0-9-]{1,30}`;
  if (id.endsWith('-')) return `${JSON.stringify(id)} must not end with '-'`;
  if (id.includes('--')) return `${JSON.stringify(id)} must not contain '--'`;
  return null;
}

const FORBIDDEN_DESCRIPTIONS: Record<string, string> = {
  '`': 'a backtick',
  $: "'$'",
  ';': "';'",
  '(': "'('",
  ')': "')'",
  '|': "'|'",
  '&': "'&'",
  '<': "'<'",
  '>': "'>'",
  '"': 'a double quote',
  "'": 'a single quote',
  '\\': 'a backslash',
  '*': "a wildcard '*'",
  '?': "'?'",
  '!': "'!'",
  '{': "'{'",
  '}': "'}'",
  '[': "'['",
  ']': "']'",
  '#': "'#'",
  '~': "'~'",
  '/': "'/'",
  ':': "':'",
  ',': "','",
  '=': "'='",
  '%': "'%'",
  '@': "'@'",
  '^': "'^'",
  '+': "'+'",
};

/**
 * Strict DNS name check (the form Cloudflare and Traefik will receive): lowercase LDH labels,
 * IDNA A-labels (xn--) allowed, ≥ 2 labels, label ≤ 63, total ≤ 253, no trailing dot, no wildcard.
 * Returns null when valid, else the reason (which names the offending character or label).
 */
export function checkDomain(domain: unknown): string | null {
  if (typeof domain !== 'string') return `must be a string, got ${describe(domain)}`;
  if (domain.length === 0) return 'must not be empty';
  for (const ch of domain) {
    if (/\s/u.test(ch)) return `${JSON.stringify(domain)} contains whitespace`;
    if (ch in FORBIDDEN_DESCRIPTIONS)
      return `${JSON.stringify(domain)} contains ${FORBIDDEN_DESCRIPTIONS[ch]} (shell or rule syntax is refused)`;
    const code = ch.codePointAt(0) ?? 0;
    if (code < 0x20 || code === 0x7f) return `${JSON.stringify(domain)} contains a control character`;
    if (code > 0x7e)
      return `${JSON.stringify(domain)} contains the non-ASCII character ${JSON.stringify(ch)}: use the IDNA punycode form (xn--...)`;
  }
  if (/[A-Z]/.test(domain)) return `${JSON.stringify(domain)} must be lowercase (write ${JSON.stringify(domain.toLowerCase())})`;
  if (domain.endsWith('.')) return `${JSON.stringify(domain)} must not end with a dot`;
  if (domain.length > 253) return `is ${domain.length} characters long (at most 253)`;
  const labels = domain.split('.');
  if (labels.length < 2) return `${JSON.stringify(domain)} needs at least two labels (name.tld)`;
  for (const label of labels) {
    if (label.length === 0) return `${JSON.stringify(domain)} has an empty label`;
    if (label.length > 63) return `label ${JSON.stringify(label.slice(0, 20) + '...')} is ${label.length} characters long (at most 63)`;
    if (!/^[a-z0-9-]+$/.test(label)) return `label ${JSON.stringify(label)} may only hold a-z, 0-9 and '-'`;
    if (label.startsWith('-') || label.endsWith('-')) return `label ${JSON.stringify(label)} must not start or end with '-'`;
    if (label.length >= 4 && label.slice(2, 4) === '--' && !label.startsWith('xn--'))
      return `label ${JSON.stringify(label)} has '--' in positions 3-4, reserved for IDNA (only xn-- is allowed)`;
  }
  const tld = labels[labels.length - 1];
  if (/^[0-9]+$/.test(tld)) return `${JSON.stringify(domain)} looks like an IP address (the last label is numeric)`;
  return null;
}

/** Returns null when valid (IPv4/IPv6 address or CIDR), else the reason. */
export function checkCidr(value: unknown): string | null {
  if (typeof value !== 'string') return `must be a string, got ${describe(value)}`;
  const [addr, prefix, ...rest] = value.split('/');
  const family = isIP(addr);
  if (!family || rest.length) return `${JSON.stringify(value)} is not an IP address or CIDR`;
  if (prefix !== undefined) {
    const max = family === 4 ? 32 : 128;
    if (!/^[0-9]{1,3}$/.test(prefix) || Number(prefix) > max) return `${JSON.stringify(value)} has an invalid prefix length (0-${max})`;
  }
  return null;
}

const SIZE_RE = /^[1-9][0-9]{0,5}[KMG]$/;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`;
}

// ---------------------------------------------------------------------------------------------
// The schema

const size = matching(SIZE_RE, 'a size like 64M, 512M or 1G');
const opt = <T extends z.ZodType>(s: T) => nullAsAbsent(s.optional());
/** a mapping whose keys all have defaults: absent or null gives the defaults */
const section = <T extends z.ZodType>(s: T) => nullAsAbsent(s.prefault({} as z.input<T>));
const domain = z.string().superRefine(checkedBy(checkDomain));
const wpSlug = matching(WP_SLUG_RE, "a plugin or theme slug (its directory name: a-z, 0-9, '-', '_')");

const Php = z.strictObject({
  memory_limit: size.default(DEFAULT_PHP.memory_limit),
  upload_max_filesize: size.default(DEFAULT_PHP.upload_max_filesize),
  post_max_size: size.default(DEFAULT_PHP.post_max_size),
  max_execution_time: int(1, 3600).default(DEFAULT_PHP.max_execution_time),
  max_input_vars: int(100, 100000).default(DEFAULT_PHP.max_input_vars),
  pm_max_children: int(1, 200).default(DEFAULT_PHP.pm_max_children),
  pm_start_servers: int(1, 200).default(DEFAULT_PHP.pm_start_servers),
  pm_min_spare_servers: int(1, 200).default(DEFAULT_PHP.pm_min_spare_servers),
  pm_max_spare_servers: int(1, 200).default(DEFAULT_PHP.pm_max_spare_servers),
  pm_max_requests: int(0, 100000).default(DEFAULT_PHP.pm_max_requests),
});

const limit = (svc: keyof typeof DEFAULT_LIMITS) =>
  section(z.strictObject({ cpus: num(0.01, 64).default(DEFAULT_LIMITS[svc].cpus), memory: size.default(DEFAULT_LIMITS[svc].memory) }));

const Backup = z.strictObject({
  db: section(
    z.strictObject({
      every_hours: int(1, 168)
        .default(DEFAULT_BACKUP.db.every_hours)
        .refine((h) => 24 % h === 0 || h % 24 === 0, { error: 'must divide 24 or be a multiple of 24' }),
      retention_days: int(1, 3650).default(DEFAULT_BACKUP.db.retention_days),
    }),
  ),
  files: section(
    z.strictObject({
      schedule: z.literal('daily', { error: (iss) => `only "daily" is supported, got ${JSON.stringify(iss.input)}` }).default('daily'),
      keep_daily: int(1, 365).default(DEFAULT_BACKUP.files.keep_daily),
      keep_weekly: int(0, 520).default(DEFAULT_BACKUP.files.keep_weekly),
      keep_monthly: int(0, 120).default(DEFAULT_BACKUP.files.keep_monthly),
    }),
  ),
});

/** written by playbooks/migrate-site(s).ts: where the site came from, when, and what its verification found */
const MigratedFrom = z.strictObject({
  /** ssh://user@host[:port]/path of the legacy WordPress */
  source: z.string().min(1),
  /** the site's domain on the legacy host */
  domain,
  /** when the migration started (copy) and when its cutover finished */
  started: z.string().min(1),
  cutover: opt(z.string()),
  /** the verification of the cutover (row counts, upload checksums, pages compared, admin login) */
  verification: opt(
    z.strictObject({
      tables: int(0, 100000),
      rows: int(0, Number.MAX_SAFE_INTEGER),
      uploads: int(0, Number.MAX_SAFE_INTEGER),
      pages_compared: opt(int(0, 100000)),
      admin_login: opt(z.boolean()),
    }),
  ),
});

const SiteSchema = z
  .strictObject({
    id: z.string({ error: (iss) => (iss.input === undefined ? 'is required' : `must be a string`) }).superRefine(checkedBy(checkSiteId)),
    domain,
    aliases: opt(z.array(domain)).transform((a) => a ?? []),
    php: section(Php),
    replicas: int(1, 20).default(DEFAULT_REPLICAS),
    limits: section(z.strictObject({ nginx: limit('nginx'), php: limit('php'), redis: limit('redis') })),
    cache_ttl: int(0, 86400).default(DEFAULT_CACHE_TTL),
    /** page cache tier 2: a Varnish service in front of nginx (default on; then nginx's own page cache is off) */
    cache: section(z.strictObject({ varnish: z.boolean().default(false) })),
    xmlrpc: z.boolean().default(false),
    /** Redis object cache drop-in in WordPress (the site's redis service) */
    object_cache: z.boolean().default(true),
    /** CIDRs allowed to reach /wp-admin and /wp-login.php (default: the inventory's management_cidrs) */
    admin_allowlist: z.array(z.string().superRefine(checkedBy(checkCidr))).optional(),
    /** sticky sessions at Traefik (cookie) */
    sticky: z.boolean().default(false),
    backup: section(Backup),
    /**
     * the plugins WordPress keeps active, by slug (playbooks/update.ts and rollback.ts activate them through WordPress
     * and deactivate every other one); absent: wpfarm leaves the activation alone
     */
    active_plugins: opt(z.array(wpSlug)),
    /** the active theme, by slug (switched through WordPress by update.ts and rollback.ts); absent: left alone */
    theme: opt(wpSlug),
    /** a site moved in from a legacy host (playbooks/migrate-site.ts) */
    migrated_from: opt(MigratedFrom),
  })
  .superRefine((r, ctx) => {
    const fail = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
    r.active_plugins?.forEach((a, i) => {
      if (r.active_plugins?.indexOf(a) !== i) fail(['active_plugins', i], `${JSON.stringify(a)} is listed twice`);
    });
    r.aliases.forEach((a, i) => {
      if (a === r.domain) fail(['aliases', i], `${JSON.stringify(a)} repeats the primary domain`);
      else if (r.aliases.indexOf(a) !== i) fail(['aliases', i], `${JSON.stringify(a)} is listed twice`);
    });
    // php-fpm refuses to start when these do not hold: catch it here, not in a crash loop.
    const php = r.php;
    if (!(php.pm_min_spare_servers <= php.pm_start_servers && php.pm_start_servers <= php.pm_max_spare_servers)) {
      fail(['php', 'pm_start_servers'], 'must lie between pm_min_spare_servers and pm_max_spare_servers');
    }
    if (php.pm_max_spare_servers > php.pm_max_children) fail(['php', 'pm_max_spare_servers'], 'must not exceed pm_max_children');
    if (bytes(php.post_max_size) < bytes(php.upload_max_filesize)) fail(['php', 'post_max_size'], 'must be at least upload_max_filesize');
    if (bytes(r.limits.php.memory) < bytes(php.memory_limit) * 2) {
      fail(
        ctx.value.limits.php.memory !== DEFAULT_LIMITS.php.memory ? ['limits', 'php', 'memory'] : ['php', 'memory_limit'],
        `php.memory_limit ${php.memory_limit} does not fit the php container limit ${r.limits.php.memory} with OPcache ` +
          '(limits.php.memory must be at least twice memory_limit)',
      );
    }
  });

export type PhpSettings = z.output<typeof Php>;
export type ResourceLimit = z.output<ReturnType<typeof limit>>;
export type SiteLimits = z.output<typeof SiteSchema>['limits'];
export type BackupPolicy = z.output<typeof Backup>;
export type MigratedFrom = z.output<typeof MigratedFrom>;
export type SiteRecord = Omit<z.output<typeof SiteSchema>, 'admin_allowlist'> & {
  /** CIDRs allowed to reach /wp-admin and /wp-login.php */
  admin_allowlist: string[];
  /** where the record was read from ("inventory/sites/blog1.yml"), for messages */
  source?: string;
};

/** each record's YAML, for the line of a farm-wide problem */
const sourceOf = new WeakMap<SiteRecord, YamlSource>();

/** Several problems in site records, all reported (file:line:col field: message each). */
export { InputErrors as SiteRecordErrors };

/**
 * Parse and validate one record. `file` is used in messages; `text` is the YAML.
 * Throws InputErrors listing every problem found.
 */
export function parseSiteRecord(file: string, text: string, inv: SiteDefaultsFromInventory = {}): SiteRecord {
  return recordOf(parseYamlText(text, file), inv);
}

function recordOf(y: YamlSource, inv: SiteDefaultsFromInventory): SiteRecord {
  const raw = y.toPlain();
  const problems: Problem[] = [];
  const plain = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : undefined;
  const base = path
    .basename(y.file)
    .replace(/\.ya?ml$/, '')
    .replace(/^_/, ''); // _name.yml: example/draft of name
  if (plain && typeof plain.id === 'string' && !checkSiteId(plain.id) && base !== plain.id && /\.ya?ml$/.test(y.file)) {
    problems.push(problemAt(y, ['id'], `${JSON.stringify(plain.id)} must match the file name (${base}.yml)`));
  }
  const allow = plain && Array.isArray(plain.admin_allowlist) ? plain.admin_allowlist : (inv.management_cidrs ?? []);
  if (plain && allow.length === 0) {
    problems.push(
      problemAt(y, ['admin_allowlist'], 'is empty and the inventory has no management_cidrs: wp-admin would be closed to everyone'),
    );
  }
  const r = validate(SiteSchema, raw, y, { rootName: '(document)', problems });
  const rec: SiteRecord = { ...r, admin_allowlist: r.admin_allowlist ?? [...(inv.management_cidrs ?? [])], source: y.file };
  // the farm's backup retention (vars.retention.backups) where the record sets none of its own
  const rb = inv.backup_retention;
  if (rb) {
    const set = (plain?.backup ?? {}) as { db?: Record<string, unknown>; files?: Record<string, unknown> };
    const db = { ...rec.backup.db };
    const files = { ...rec.backup.files };
    if (set.db?.retention_days === undefined) db.retention_days = rb.dbDays;
    if (set.files?.keep_daily === undefined) files.keep_daily = rb.filesDaily;
    if (set.files?.keep_weekly === undefined) files.keep_weekly = rb.filesWeekly;
    if (set.files?.keep_monthly === undefined) files.keep_monthly = rb.filesMonthly;
    rec.backup = { ...rec.backup, db, files };
  }
  sourceOf.set(rec, y);
  return rec;
}

/** "64M" → bytes */
export function bytes(s: string): number {
  const m = /^([0-9]+)([KMG])$/.exec(s);
  if (!m) return NaN;
  return Number(m[1]) * { K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2] as 'K' | 'M' | 'G'];
}

/** Every DNS name of a site: primary first. */
export function siteDomains(site: Pick<SiteRecord, 'domain' | 'aliases'>): string[] {
  return [site.domain, ...site.aliases];
}

/**
 * Farm-wide check: ids and every domain/alias unique across records. Problems name both files.
 * Pure: takes records already parsed (their `source` names the files; lines when they were parsed here).
 */
export function checkFarmUniqueness(sites: readonly SiteRecord[]): Problem[] {
  const problems: Problem[] = [];
  const at = (s: SiteRecord, p: (string | number)[], message: string) =>
    problems.push(problemAt(sourceOf.get(s) ?? s.source ?? s.id, p, message));
  const ids = new Map<string, SiteRecord>();
  const domains = new Map<string, { site: SiteRecord; field: string }>();
  for (const s of sites) {
    const prev = ids.get(s.id);
    if (prev) at(s, ['id'], `${JSON.stringify(s.id)} is already used by ${prev.source ?? prev.id}`);
    else ids.set(s.id, s);
    siteDomains(s).forEach((d, i) => {
      const p = i === 0 ? ['domain'] : ['aliases', i - 1];
      const other = domains.get(d);
      if (other && other.site !== s)
        at(s, p, `${JSON.stringify(d)} is already used by ${other.site.source ?? other.site.id} (${other.field})`);
      else if (!other) domains.set(d, { site: s, field: i === 0 ? 'domain' : `aliases[${i - 1}]` });
    });
  }
  return problems;
}

/**
 * Load every inventory/sites/*.yml (or .yaml) of a directory; files starting with "_" or "." are
 * skipped (examples, drafts). Throws InputErrors with every problem of every file.
 * Records are returned sorted by id.
 */
export function loadSites(dir: string, inv: SiteDefaultsFromInventory = {}): SiteRecord[] {
  const files = readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f) && !f.startsWith('_') && !f.startsWith('.'))
    .sort();
  const sites: SiteRecord[] = [];
  const problems: Problem[] = [];
  for (const f of files) {
    try {
      sites.push(recordOf(parseYamlFile(path.join(dir, f)), inv));
    } catch (e) {
      if (e instanceof InputErrors) problems.push(...e.problems);
      else throw e;
    }
  }
  problems.push(...checkFarmUniqueness(sites));
  if (problems.length) throw new InputErrors(problems);
  return sites.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
