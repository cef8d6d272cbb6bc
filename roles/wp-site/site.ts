// The site record: one YAML file per WordPress site (inventory/sites/<id>.yml), typed and validated.
//
// Validation is strict and happens before anything runs: an unknown key, a domain carrying shell or
// Traefik rule syntax, a duplicate id or domain across the farm is refused with an error that names
// the file, the line and the field. Pure code (no I/O except reading the files in loadSites).

import { readFileSync, readdirSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { LineCounter, parseDocument, isMap, isScalar, type Document, type Node } from 'yaml';

export interface PhpSettings {
  memory_limit: string; // "256M"
  upload_max_filesize: string; // "64M"
  post_max_size: string; // "64M"
  max_execution_time: number; // seconds
  max_input_vars: number;
  pm_max_children: number;
  pm_start_servers: number;
  pm_min_spare_servers: number;
  pm_max_spare_servers: number;
  pm_max_requests: number;
}

export interface ResourceLimit {
  /** CPUs, e.g. 0.25 */
  cpus: number;
  /** memory, e.g. "128M" */
  memory: string;
}

export interface SiteLimits {
  nginx: ResourceLimit;
  php: ResourceLimit;
  redis: ResourceLimit;
}

export interface BackupPolicy {
  db: { every_hours: number; retention_days: number };
  files: { schedule: 'daily'; keep_daily: number; keep_weekly: number; keep_monthly: number };
}

export interface SiteRecord {
  id: string;
  domain: string;
  aliases: string[];
  php: PhpSettings;
  replicas: number;
  limits: SiteLimits;
  /** FastCGI cache TTL in seconds for 200/301/302 responses (0 disables the cache) */
  cache_ttl: number;
  xmlrpc: boolean;
  /** Redis object cache drop-in in WordPress (the site's redis service) */
  object_cache: boolean;
  /** CIDRs allowed to reach /wp-admin and /wp-login.php */
  admin_allowlist: string[];
  /** sticky sessions at Traefik (cookie) */
  sticky: boolean;
  backup: BackupPolicy;
  /** where the record was read from ("inventory/sites/blog1.yml"), for messages */
  source?: string;
}

/** Defaults that come from the farm inventory (not from the record). */
export interface SiteDefaultsFromInventory {
  /** inventory var management_cidrs: default admin allowlist */
  management_cidrs?: string[];
}

export const DEFAULT_PHP: Readonly<PhpSettings> = Object.freeze({
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

export const DEFAULT_LIMITS: Readonly<SiteLimits> = Object.freeze({
  nginx: { cpus: 0.25, memory: '128M' },
  php: { cpus: 1, memory: '512M' },
  redis: { cpus: 0.25, memory: '128M' },
});

export const DEFAULT_BACKUP: Readonly<BackupPolicy> = Object.freeze({
  db: { every_hours: 6, retention_days: 30 },
  files: { schedule: 'daily' as const, keep_daily: 7, keep_weekly: 4, keep_monthly: 3 },
});

export const DEFAULT_REPLICAS = 2;
export const DEFAULT_CACHE_TTL = 600;

/** Error in a site record: file, line and field are always named. */
export class SiteRecordError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${file}${line ? `:${line}` : ''}: ${field}: ${reason}`);
    this.name = 'SiteRecordError';
  }
}

/** Several problems found in one pass (all reported, not only the first). */
export class SiteRecordErrors extends Error {
  constructor(readonly errors: SiteRecordError[]) {
    super(errors.map((e) => e.message).join('\n'));
    this.name = 'SiteRecordErrors';
  }
}

// ---------------------------------------------------------------------------------------------
// Pure validators (exported: the add-site playbook validates a --domain argument with the same code)

export const SITE_ID_RE = /^[a-z][a-z0-9-]{1,30}$/;

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
  '$': "'$'",
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
    if (ch in FORBIDDEN_DESCRIPTIONS) return `${JSON.stringify(domain)} contains ${FORBIDDEN_DESCRIPTIONS[ch]} (shell or rule syntax is refused)`;
    const code = ch.codePointAt(0) ?? 0;
    if (code < 0x20 || code === 0x7f) return `${JSON.stringify(domain)} contains a control character`;
    if (code > 0x7e) return `${JSON.stringify(domain)} contains the non-ASCII character ${JSON.stringify(ch)}: use the IDNA punycode form (xn--...)`;
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
// Parsing with positions

type Path = (string | number)[];

class Reader {
  readonly errors: SiteRecordError[] = [];
  constructor(
    readonly file: string,
    readonly doc: Document.Parsed,
    readonly lines: LineCounter,
  ) {}

  line(p: Path): number | undefined {
    // The closest node that exists along the path gives the line.
    for (let n = p.length; n >= 0; n--) {
      const node = n === 0 ? this.doc.contents : (this.doc.getIn(p.slice(0, n), true) as Node | undefined);
      if (node && typeof node === 'object' && 'range' in node && node.range) return this.lines.linePos(node.range[0]).line;
    }
    return undefined;
  }

  keyLine(p: Path): number | undefined {
    // For unknown keys: the line of the key itself.
    const parent = p.length > 1 ? this.doc.getIn(p.slice(0, -1), true) : this.doc.contents;
    if (isMap(parent)) {
      for (const pair of parent.items) {
        if (isScalar(pair.key) && pair.key.value === p[p.length - 1] && pair.key.range) return this.lines.linePos(pair.key.range[0]).line;
      }
    }
    return this.line(p);
  }

  fail(p: Path, reason: string, atKey = false): void {
    this.errors.push(new SiteRecordError(this.file, atKey ? this.keyLine(p) : this.line(p), fieldName(p), reason));
  }
}

function fieldName(p: Path): string {
  return p.map((s, i) => (typeof s === 'number' ? `[${s}]` : i ? `.${s}` : s)).join('') || '(document)';
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKeys(r: Reader, obj: Record<string, unknown>, allowed: readonly string[], at: Path): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) r.fail([...at, k], `unknown key (allowed: ${allowed.join(', ')})`, true);
  }
}

function int(r: Reader, v: unknown, p: Path, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    r.fail(p, `must be an integer from ${min} to ${max}, got ${describe(v)}`);
    return dflt;
  }
  return v;
}

function size(r: Reader, v: unknown, p: Path, dflt: string): string {
  if (v === undefined) return dflt;
  if (typeof v !== 'string' || !SIZE_RE.test(v)) {
    r.fail(p, `must be a size like 64M, 512M or 1G, got ${describe(v)}`);
    return dflt;
  }
  return v;
}

function bool(r: Reader, v: unknown, p: Path, dflt: boolean): boolean {
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') {
    r.fail(p, `must be true or false, got ${describe(v)}`);
    return dflt;
  }
  return v;
}

function sub(r: Reader, v: unknown, p: Path): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (!isPlainObject(v)) {
    r.fail(p, `must be a mapping, got ${describe(v)}`);
    return {};
  }
  return v;
}

const TOP_KEYS = ['id', 'domain', 'aliases', 'php', 'replicas', 'limits', 'cache_ttl', 'xmlrpc', 'object_cache', 'admin_allowlist', 'sticky', 'backup'] as const;
const PHP_KEYS = Object.keys(DEFAULT_PHP);

/**
 * Parse and validate one record. `file` is used in messages; `text` is the YAML.
 * Throws SiteRecordErrors listing every problem found.
 */
export function parseSiteRecord(file: string, text: string, inv: SiteDefaultsFromInventory = {}): SiteRecord {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    throw new SiteRecordErrors(
      doc.errors.map((e) => new SiteRecordError(file, e.linePos?.[0]?.line, '(yaml)', e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, ''))),
    );
  }
  const r = new Reader(file, doc, lines);
  const raw: unknown = doc.toJS({ maxAliasCount: 0 });
  if (!isPlainObject(raw)) {
    throw new SiteRecordErrors([new SiteRecordError(file, 1, '(document)', `must be a mapping, got ${describe(raw)}`)]);
  }
  checkKeys(r, raw, TOP_KEYS, []);

  // id
  const idErr = checkSiteId(raw.id);
  if (raw.id === undefined) r.fail(['id'], 'is required');
  else if (idErr) r.fail(['id'], idErr);
  const id = typeof raw.id === 'string' ? raw.id : '';
  const base = path.basename(file).replace(/\.ya?ml$/, '').replace(/^_/, ''); // _name.yml: example/draft of name
  if (!idErr && base !== id && /\.ya?ml$/.test(file)) r.fail(['id'], `${JSON.stringify(id)} must match the file name (${base}.yml)`);

  // domains
  if (raw.domain === undefined) r.fail(['domain'], 'is required');
  else {
    const e = checkDomain(raw.domain);
    if (e) r.fail(['domain'], e);
  }
  const domain = typeof raw.domain === 'string' ? raw.domain : '';
  let aliases: string[] = [];
  if (raw.aliases !== undefined && raw.aliases !== null) {
    if (!Array.isArray(raw.aliases)) r.fail(['aliases'], `must be a list of domains, got ${describe(raw.aliases)}`);
    else {
      raw.aliases.forEach((a, i) => {
        const e = checkDomain(a);
        if (e) r.fail(['aliases', i], e);
        else if (a === domain) r.fail(['aliases', i], `${JSON.stringify(a)} repeats the primary domain`);
        else if (raw.aliases && (raw.aliases as unknown[]).indexOf(a) !== i) r.fail(['aliases', i], `${JSON.stringify(a)} is listed twice`);
      });
      aliases = raw.aliases.filter((a): a is string => typeof a === 'string');
    }
  }

  // php
  const phpRaw = sub(r, raw.php, ['php']);
  checkKeys(r, phpRaw, PHP_KEYS, ['php']);
  const php: PhpSettings = {
    memory_limit: size(r, phpRaw.memory_limit, ['php', 'memory_limit'], DEFAULT_PHP.memory_limit),
    upload_max_filesize: size(r, phpRaw.upload_max_filesize, ['php', 'upload_max_filesize'], DEFAULT_PHP.upload_max_filesize),
    post_max_size: size(r, phpRaw.post_max_size, ['php', 'post_max_size'], DEFAULT_PHP.post_max_size),
    max_execution_time: int(r, phpRaw.max_execution_time, ['php', 'max_execution_time'], 1, 3600, DEFAULT_PHP.max_execution_time),
    max_input_vars: int(r, phpRaw.max_input_vars, ['php', 'max_input_vars'], 100, 100000, DEFAULT_PHP.max_input_vars),
    pm_max_children: int(r, phpRaw.pm_max_children, ['php', 'pm_max_children'], 1, 200, DEFAULT_PHP.pm_max_children),
    pm_start_servers: int(r, phpRaw.pm_start_servers, ['php', 'pm_start_servers'], 1, 200, DEFAULT_PHP.pm_start_servers),
    pm_min_spare_servers: int(r, phpRaw.pm_min_spare_servers, ['php', 'pm_min_spare_servers'], 1, 200, DEFAULT_PHP.pm_min_spare_servers),
    pm_max_spare_servers: int(r, phpRaw.pm_max_spare_servers, ['php', 'pm_max_spare_servers'], 1, 200, DEFAULT_PHP.pm_max_spare_servers),
    pm_max_requests: int(r, phpRaw.pm_max_requests, ['php', 'pm_max_requests'], 0, 100000, DEFAULT_PHP.pm_max_requests),
  };
  // php-fpm refuses to start when these do not hold: catch it here, not in a crash loop.
  if (!(php.pm_min_spare_servers <= php.pm_start_servers && php.pm_start_servers <= php.pm_max_spare_servers))
    r.fail(['php', 'pm_start_servers'], 'must lie between pm_min_spare_servers and pm_max_spare_servers');
  if (php.pm_max_spare_servers > php.pm_max_children) r.fail(['php', 'pm_max_spare_servers'], 'must not exceed pm_max_children');
  if (bytes(php.post_max_size) < bytes(php.upload_max_filesize)) r.fail(['php', 'post_max_size'], 'must be at least upload_max_filesize');

  const replicas = int(r, raw.replicas, ['replicas'], 1, 20, DEFAULT_REPLICAS);

  // limits
  const limRaw = sub(r, raw.limits, ['limits']);
  checkKeys(r, limRaw, ['nginx', 'php', 'redis'], ['limits']);
  const limits = {} as SiteLimits;
  for (const svc of ['nginx', 'php', 'redis'] as const) {
    const l = sub(r, limRaw[svc], ['limits', svc]);
    checkKeys(r, l, ['cpus', 'memory'], ['limits', svc]);
    let cpus = DEFAULT_LIMITS[svc].cpus;
    if (l.cpus !== undefined) {
      if (typeof l.cpus !== 'number' || !(l.cpus >= 0.01 && l.cpus <= 64)) r.fail(['limits', svc, 'cpus'], `must be a number from 0.01 to 64, got ${describe(l.cpus)}`);
      else cpus = l.cpus;
    }
    limits[svc] = { cpus, memory: size(r, l.memory, ['limits', svc, 'memory'], DEFAULT_LIMITS[svc].memory) };
  }
  if (bytes(limits.php.memory) < bytes(php.memory_limit) * 2)
    r.fail(isPlainObject(limRaw.php) && limRaw.php.memory !== undefined ? ['limits', 'php', 'memory'] : ['php', 'memory_limit'], `php.memory_limit ${php.memory_limit} does not fit the php container limit ${limits.php.memory} with OPcache (limits.php.memory must be at least twice memory_limit)`);

  const cache_ttl = int(r, raw.cache_ttl, ['cache_ttl'], 0, 86400, DEFAULT_CACHE_TTL);
  const xmlrpc = bool(r, raw.xmlrpc, ['xmlrpc'], false);
  const object_cache = bool(r, raw.object_cache, ['object_cache'], true);
  const sticky = bool(r, raw.sticky, ['sticky'], false);

  let admin_allowlist: string[] = [...(inv.management_cidrs ?? [])];
  if (raw.admin_allowlist !== undefined) {
    if (!Array.isArray(raw.admin_allowlist)) r.fail(['admin_allowlist'], `must be a list of CIDRs, got ${describe(raw.admin_allowlist)}`);
    else {
      raw.admin_allowlist.forEach((c, i) => {
        const e = checkCidr(c);
        if (e) r.fail(['admin_allowlist', i], e);
      });
      admin_allowlist = raw.admin_allowlist.filter((c): c is string => typeof c === 'string');
    }
  }
  if (admin_allowlist.length === 0) r.fail(['admin_allowlist'], 'is empty and the inventory has no management_cidrs: wp-admin would be closed to everyone');

  // backup
  const bRaw = sub(r, raw.backup, ['backup']);
  checkKeys(r, bRaw, ['db', 'files'], ['backup']);
  const bdb = sub(r, bRaw.db, ['backup', 'db']);
  checkKeys(r, bdb, ['every_hours', 'retention_days'], ['backup', 'db']);
  const bfi = sub(r, bRaw.files, ['backup', 'files']);
  checkKeys(r, bfi, ['schedule', 'keep_daily', 'keep_weekly', 'keep_monthly'], ['backup', 'files']);
  if (bfi.schedule !== undefined && bfi.schedule !== 'daily') r.fail(['backup', 'files', 'schedule'], `only "daily" is supported, got ${describe(bfi.schedule)}`);
  const every = int(r, bdb.every_hours, ['backup', 'db', 'every_hours'], 1, 168, DEFAULT_BACKUP.db.every_hours);
  if (24 % every !== 0 && every % 24 !== 0) r.fail(['backup', 'db', 'every_hours'], 'must divide 24 or be a multiple of 24');
  const backup: BackupPolicy = {
    db: { every_hours: every, retention_days: int(r, bdb.retention_days, ['backup', 'db', 'retention_days'], 1, 3650, DEFAULT_BACKUP.db.retention_days) },
    files: {
      schedule: 'daily',
      keep_daily: int(r, bfi.keep_daily, ['backup', 'files', 'keep_daily'], 1, 365, DEFAULT_BACKUP.files.keep_daily),
      keep_weekly: int(r, bfi.keep_weekly, ['backup', 'files', 'keep_weekly'], 0, 520, DEFAULT_BACKUP.files.keep_weekly),
      keep_monthly: int(r, bfi.keep_monthly, ['backup', 'files', 'keep_monthly'], 0, 120, DEFAULT_BACKUP.files.keep_monthly),
    },
  };

  if (r.errors.length) throw new SiteRecordErrors(r.errors);
  return { id, domain, aliases, php, replicas, limits, cache_ttl, xmlrpc, object_cache, admin_allowlist, sticky, backup, source: file };
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
 * Farm-wide check: ids and every domain/alias unique across records. Errors name both files.
 * Pure: takes records already parsed (their `source` names the files).
 */
export function checkFarmUniqueness(sites: readonly SiteRecord[]): SiteRecordError[] {
  const errors: SiteRecordError[] = [];
  const ids = new Map<string, SiteRecord>();
  const domains = new Map<string, { site: SiteRecord; field: string }>();
  for (const s of sites) {
    const prev = ids.get(s.id);
    if (prev) errors.push(new SiteRecordError(s.source ?? s.id, undefined, 'id', `${JSON.stringify(s.id)} is already used by ${prev.source ?? prev.id}`));
    else ids.set(s.id, s);
    siteDomains(s).forEach((d, i) => {
      const field = i === 0 ? 'domain' : `aliases[${i - 1}]`;
      const other = domains.get(d);
      if (other && other.site !== s)
        errors.push(new SiteRecordError(s.source ?? s.id, undefined, field, `${JSON.stringify(d)} is already used by ${other.site.source ?? other.site.id} (${other.field})`));
      else if (!other) domains.set(d, { site: s, field });
    });
  }
  return errors;
}

/**
 * Load every inventory/sites/*.yml (or .yaml) of a directory; files starting with "_" or "." are
 * skipped (examples, drafts). Throws SiteRecordErrors with every problem of every file.
 * Records are returned sorted by id.
 */
export function loadSites(dir: string, inv: SiteDefaultsFromInventory = {}): SiteRecord[] {
  const files = readdirSync(dir)
    .filter((f) => /\.ya?ml$/.test(f) && !f.startsWith('_') && !f.startsWith('.'))
    .sort();
  const sites: SiteRecord[] = [];
  const errors: SiteRecordError[] = [];
  for (const f of files) {
    const file = path.join(dir, f);
    try {
      sites.push(parseSiteRecord(file, readFileSync(file, 'utf8'), inv));
    } catch (e) {
      if (e instanceof SiteRecordErrors) errors.push(...e.errors);
      else throw e;
    }
  }
  errors.push(...checkFarmUniqueness(sites));
  if (errors.length) throw new SiteRecordErrors(errors);
  return sites.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
