// Cloudflare DNS with the official `cloudflare` SDK: one proxied record per site domain and alias,
// pointing at the edge. Idempotent; bounded pagination; one retry policy (ours, the SDK's is off).
//
// For each name, wpfarm manages the A, AAAA and CNAME records at exactly that name: the one matching the
// target is kept (or created/updated), the others are removed. Other types (MX, TXT, ...) are never touched.
import { isIPv4, isIPv6 } from 'node:net';
import Cloudflare, { APIError } from 'cloudflare';
import pLimit from 'p-limit';
import { InputError } from '../errors.ts';
import { readEnvFile, requireCredential } from '../env.ts';
import { CloudApiError, errorDetail, maskSecrets, retryingFetch, type RetryOptions } from './retry.ts';

export const CF_API = 'https://api.cloudflare.com/client/v4';
const MANAGED = ['A', 'AAAA', 'CNAME'] as const;
type ManagedType = (typeof MANAGED)[number];

export interface DnsOptions extends RetryOptions {
  token: string;
  /** API base URL (Prism in tests); default the real API */
  baseUrl?: string;
  /** records per page when listing (default 100) */
  perPage?: number;
  /** stop listing after this many pages (default 20): the SDK's own iterator stops only on an empty page */
  maxPages?: number;
  /** parallel requests (default 4) */
  concurrency?: number;
}

export interface EnsureArgs {
  zoneName: string;
  names: string[];
  /** edge address: IPv4 (A), IPv6 (AAAA) or a host name (CNAME) */
  target: string;
  proxied?: boolean;
  /** 1 = automatic (required when proxied), else 30..86400 */
  ttl?: number;
  /** read only: report what would change, send no write */
  check?: boolean;
}

export interface EnsureResult {
  created: string[];
  updated: string[];
  unchanged: string[];
  deleted: string[];
}
export interface RemoveResult {
  deleted: string[];
  absent: string[];
}

interface Rec {
  id: string;
  name: string;
  type: string;
  content: string;
  proxied: boolean;
  ttl: number;
}

/** One A/AAAA/CNAME record as it was (snapshot) or is to be again (restoreRecords). */
export type SavedRecord = Omit<Rec, 'id'>;

const HOST_RE = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

export function recordTypeFor(target: string): ManagedType {
  if (isIPv4(target)) return 'A';
  if (isIPv6(target)) return 'AAAA';
  if (HOST_RE.test(target) && !target.startsWith('*.')) return 'CNAME';
  throw new InputError(`target: not an IPv4/IPv6 address or host name: ${JSON.stringify(target)}`);
}

/** Pure checks of a request; throws InputError naming the field. Returns normalised names. */
export function checkRecords(args: { zoneName: string; names: string[]; target?: string; ttl?: number; proxied?: boolean }): string[] {
  const zone = args.zoneName?.toLowerCase().replace(/\.$/, '');
  if (!zone || !HOST_RE.test(zone) || zone.startsWith('*.'))
    throw new InputError(`zoneName: not a domain name: ${JSON.stringify(args.zoneName)}`);
  if (!Array.isArray(args.names) || args.names.length === 0) throw new InputError('names: at least one name is required');
  const names = args.names.map((n, i) => {
    const name = String(n).toLowerCase().replace(/\.$/, '');
    if (!HOST_RE.test(name) && name !== zone) throw new InputError(`names[${i}]: not a host name: ${JSON.stringify(n)}`);
    if (name !== zone && !name.endsWith(`.${zone}`)) throw new InputError(`names[${i}]: ${name} is not inside the zone ${zone}`);
    return name;
  });
  if (args.target !== undefined) {
    const t = recordTypeFor(args.target);
    if (t === 'CNAME' && names.includes(args.target.toLowerCase())) throw new InputError(`target: ${args.target} points at itself`);
  }
  if (args.ttl !== undefined && !(args.ttl === 1 || (Number.isInteger(args.ttl) && args.ttl >= 30 && args.ttl <= 86400)))
    throw new InputError(`ttl: must be 1 (automatic) or 30..86400, got ${args.ttl}`);
  if (args.proxied && args.ttl !== undefined && args.ttl !== 1) throw new InputError('ttl: a proxied record has ttl 1 (automatic)');
  return [...new Set(names)];
}

/** Turn an SDK error into a CloudApiError with the API's own words (never request headers). */
export function cfError(err: unknown, what: string, secrets: string[] = []): Error {
  if (err instanceof APIError && err.status !== undefined) {
    const body = err.error === undefined ? '' : JSON.stringify(err.error);
    const violations = err.headers?.get('sl-violations') ?? undefined;
    return new CloudApiError(
      'cloudflare',
      what.split(' ')[0]!,
      what.split(' ').slice(1).join(' '),
      err.status,
      maskSecrets(errorDetail(body), secrets),
      violations ? maskSecrets(violations, secrets) : undefined,
    );
  }
  if (err instanceof InputError || err instanceof CloudApiError) return err;
  return new Error(`cloudflare: ${what}: ${maskSecrets(err instanceof Error ? err.message : String(err), secrets)}`);
}

/** The SDK client with our retry policy, error mapping, zone-id cache and bounded pagination: what every
 *  Cloudflare client of wpfarm shares (DNS here, rulesets and Access in cloudflare-edge.ts). */
export class CloudflareApi {
  readonly client: Cloudflare;
  private readonly zoneIds = new Map<string, string>();
  protected readonly perPage: number;
  protected readonly maxPages: number;
  protected readonly limit: ReturnType<typeof pLimit>;
  protected readonly secrets: string[];

  constructor(readonly opts: DnsOptions) {
    this.secrets = [opts.token, ...(opts.secrets ?? [])];
    this.client = new Cloudflare({
      apiToken: opts.token,
      baseURL: (opts.baseUrl ?? CF_API).replace(/\/+$/, ''),
      maxRetries: 0,
      fetch: retryingFetch({ ...opts, secrets: this.secrets }),
    });
    this.perPage = opts.perPage ?? 100;
    this.maxPages = opts.maxPages ?? 20;
    this.limit = pLimit(Math.max(1, opts.concurrency ?? 4));
  }

  protected async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw cfError(err, what, this.secrets);
    }
  }

  /** Every item of a paged list: stops on a short page or result_info.total_pages, never past maxPages. */
  protected async listAll<T>(
    what: string,
    fetchPage: (page: number, perPage: number) => Promise<{ result: T[]; result_info?: unknown }>,
  ): Promise<T[]> {
    const out: T[] = [];
    for (let page = 1; ; page++) {
      if (page > this.maxPages) throw new Error(`cloudflare: more than ${this.maxPages} pages of ${what}; refusing to continue`);
      const res = await this.call(`GET ${what}`, () => fetchPage(page, this.perPage));
      out.push(...res.result);
      const info = (res.result_info ?? {}) as { total_pages?: number };
      if (res.result.length < this.perPage || page >= (info.total_pages ?? page)) return out;
    }
  }

  async zoneId(zoneName: string): Promise<string> {
    const zone = zoneName.toLowerCase().replace(/\.$/, '');
    const hit = this.zoneIds.get(zone);
    if (hit) return hit;
    const page = await this.call(`GET /zones?name=${zone}`, async () => await this.client.zones.list({ name: zone, per_page: 5 }));
    const z = page.result.find((x) => x.name === zone);
    if (!z) throw new InputError(`zone ${zone} not found in this Cloudflare account (or the token cannot read it)`);
    this.zoneIds.set(zone, z.id);
    return z.id;
  }
}

export class CloudflareDns extends CloudflareApi {
  /** A, AAAA and CNAME records at exactly `name`, all pages (bounded). */
  async recordsAt(zoneId: string, name: string): Promise<Rec[]> {
    const items = await this.listAll(
      `/zones/${zoneId}/dns_records?name.exact=${name}`,
      async (page, per_page) => await this.client.dns.records.list({ zone_id: zoneId, name: { exact: name }, page, per_page }),
    );
    const out: Rec[] = [];
    for (const r of items) {
      if (r.name !== name || !(MANAGED as readonly string[]).includes(r.type)) continue;
      if (out.some((x) => x.id === r.id)) continue;
      out.push({ id: r.id, name: r.name, type: r.type, content: String(r.content ?? ''), proxied: !!r.proxied, ttl: Number(r.ttl) });
    }
    return out;
  }

  /** Make every name a single record of the target's type pointing at target. */
  async ensureSiteRecords(args: EnsureArgs): Promise<EnsureResult> {
    const names = checkRecords(args);
    const type = recordTypeFor(args.target);
    const proxied = args.proxied ?? true;
    const ttl = args.ttl ?? 1;
    const zoneId = await this.zoneId(args.zoneName);
    const result: EnsureResult = { created: [], updated: [], unchanged: [], deleted: [] };
    await Promise.all(
      names.map((name) =>
        this.limit(async () => {
          const have = await this.recordsAt(zoneId, name);
          const same = have.find((r) => r.type === type);
          const others = have.filter((r) => r !== same);
          // remove conflicting records first (a CNAME cannot coexist with A/AAAA at the same name)
          for (const r of others) {
            if (!args.check)
              await this.call(`DELETE /zones/${zoneId}/dns_records/${r.id}`, () =>
                this.client.dns.records.delete(r.id, { zone_id: zoneId }),
              );
            result.deleted.push(`${name} ${r.type} ${r.content}`);
          }
          const body = { zone_id: zoneId, name, type, content: args.target, proxied, ttl, comment: 'managed by wpfarm' };
          if (!same) {
            if (!args.check)
              await this.call(`POST /zones/${zoneId}/dns_records`, () =>
                this.client.dns.records.create(body as Cloudflare.DNS.RecordCreateParams),
              );
            result.created.push(name);
          } else if (same.content !== args.target || same.proxied !== proxied || same.ttl !== ttl) {
            if (!args.check)
              await this.call(`PUT /zones/${zoneId}/dns_records/${same.id}`, () =>
                this.client.dns.records.update(same.id, body as Cloudflare.DNS.RecordUpdateParams),
              );
            result.updated.push(`${name} ${same.content} -> ${args.target}`);
          } else result.unchanged.push(name);
        }),
      ),
    );
    for (const k of Object.keys(result) as (keyof EnsureResult)[]) result[k].sort();
    return result;
  }

  /** The A/AAAA/CNAME records of these names as they are (what restoreRecords() puts back). */
  async snapshot(args: { zoneName: string; names: string[] }): Promise<SavedRecord[]> {
    const names = checkRecords(args);
    const zoneId = await this.zoneId(args.zoneName);
    const all = await Promise.all(names.map((name) => this.limit(() => this.recordsAt(zoneId, name))));
    return all.flat().map(({ id: _id, ...r }) => r);
  }

  /**
   * Lower the TTL of the DNS-only A/AAAA/CNAME records of these names to `ttl` (seconds), content kept: done ahead of
   * a move, so that resolvers forget the old address quickly once it changes. Proxied records (Cloudflare answers
   * with its own addresses, TTL automatic) and records already at or below `ttl` are left as they are.
   */
  async lowerTtl(args: { zoneName: string; names: string[]; ttl: number; check?: boolean }): Promise<{ lowered: string[] }> {
    const names = checkRecords({ ...args, proxied: false });
    const zoneId = await this.zoneId(args.zoneName);
    const lowered: string[] = [];
    await Promise.all(
      names.map((name) =>
        this.limit(async () => {
          for (const r of await this.recordsAt(zoneId, name)) {
            // ttl 1 is "automatic": 300 s for a DNS-only record
            if (r.proxied || (r.ttl === 1 ? 300 : r.ttl) <= args.ttl) continue;
            const body = { zone_id: zoneId, name, type: r.type, content: r.content, proxied: false, ttl: args.ttl };
            if (!args.check)
              await this.call(`PUT /zones/${zoneId}/dns_records/${r.id}`, () =>
                this.client.dns.records.update(r.id, body as Cloudflare.DNS.RecordUpdateParams),
              );
            lowered.push(`${name} ${r.type} ${r.content} ttl ${r.ttl} -> ${args.ttl}`);
          }
        }),
      ),
    );
    return { lowered: lowered.sort() };
  }

  /** Make the A/AAAA/CNAME records of these names exactly `records` again (a snapshot): a move taken back. */
  async restoreRecords(args: { zoneName: string; names: string[]; records: SavedRecord[]; check?: boolean }): Promise<EnsureResult> {
    const names = checkRecords(args);
    const zoneId = await this.zoneId(args.zoneName);
    const result: EnsureResult = { created: [], updated: [], unchanged: [], deleted: [] };
    await Promise.all(
      names.map((name) =>
        this.limit(async () => {
          const want = args.records.filter((r) => r.name === name);
          const have = await this.recordsAt(zoneId, name);
          const keep = new Map<SavedRecord, Rec>();
          for (const w of want) {
            const h = have.find((x) => x.type === w.type && x.content === w.content && ![...keep.values()].includes(x));
            if (h) keep.set(w, h);
          }
          // what is not wanted goes first (a CNAME cannot coexist with A/AAAA at one name)
          for (const r of have.filter((x) => ![...keep.values()].includes(x))) {
            if (!args.check)
              await this.call(`DELETE /zones/${zoneId}/dns_records/${r.id}`, () =>
                this.client.dns.records.delete(r.id, { zone_id: zoneId }),
              );
            result.deleted.push(`${name} ${r.type} ${r.content}`);
          }
          for (const w of want) {
            const h = keep.get(w);
            const body = { zone_id: zoneId, name, type: w.type, content: w.content, proxied: w.proxied, ttl: w.ttl };
            if (!h) {
              if (!args.check)
                await this.call(`POST /zones/${zoneId}/dns_records`, () =>
                  this.client.dns.records.create(body as Cloudflare.DNS.RecordCreateParams),
                );
              result.created.push(`${name} ${w.type} ${w.content}`);
            } else if (h.proxied !== w.proxied || h.ttl !== w.ttl) {
              if (!args.check)
                await this.call(`PUT /zones/${zoneId}/dns_records/${h.id}`, () =>
                  this.client.dns.records.update(h.id, body as Cloudflare.DNS.RecordUpdateParams),
                );
              result.updated.push(`${name} ${w.type} ${w.content}`);
            } else result.unchanged.push(`${name} ${w.type} ${w.content}`);
          }
        }),
      ),
    );
    for (const k of Object.keys(result) as (keyof EnsureResult)[]) result[k].sort();
    return result;
  }

  /** Remove the A/AAAA/CNAME records of these names (remove-site). */
  async removeSiteRecords(args: { zoneName: string; names: string[]; check?: boolean }): Promise<RemoveResult> {
    const names = checkRecords(args);
    const zoneId = await this.zoneId(args.zoneName);
    const result: RemoveResult = { deleted: [], absent: [] };
    await Promise.all(
      names.map((name) =>
        this.limit(async () => {
          const have = await this.recordsAt(zoneId, name);
          if (have.length === 0) result.absent.push(name);
          for (const r of have) {
            if (!args.check)
              await this.call(`DELETE /zones/${zoneId}/dns_records/${r.id}`, () =>
                this.client.dns.records.delete(r.id, { zone_id: zoneId }),
              );
            result.deleted.push(`${name} ${r.type} ${r.content}`);
          }
        }),
      ),
    );
    result.deleted.sort();
    result.absent.sort();
    return result;
  }
}

/** A client with the token CLOUDFLARE_API_TOKEN from the environment or .env (registered as a secret). */
export function dnsFromEnv(opts: Omit<DnsOptions, 'token'> & { envFile?: string } = {}): CloudflareDns {
  const token = requireCredential('CLOUDFLARE_API_TOKEN', undefined, readEnvFile(opts.envFile));
  return new CloudflareDns({ ...opts, token, baseUrl: opts.baseUrl ?? process.env['WPFARM_CLOUDFLARE_API'] });
}

/** Convenience forms for the sites helper; without `dns`, the token comes from CLOUDFLARE_API_TOKEN. */
export async function ensureSiteRecords(args: EnsureArgs, dns: CloudflareDns = dnsFromEnv()): Promise<EnsureResult> {
  return dns.ensureSiteRecords(args);
}
export async function removeSiteRecords(
  args: { zoneName: string; names: string[]; check?: boolean },
  dns: CloudflareDns = dnsFromEnv(),
): Promise<RemoveResult> {
  return dns.removeSiteRecords(args);
}
