// A small stateful stand-in for Cloudflare's zones, DNS records, phase entry point rulesets and Access
// (applications with inline policies, groups) APIs, meant to sit BEHIND
// `prism proxy --errors` on the spec the `cloudflare` SDK is generated from (Prism checks both directions).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';

type Json = Record<string, unknown>;
export interface CfRequest {
  method: string;
  path: string;
  body?: unknown;
}

const hexId = () => randomBytes(16).toString('hex');
const now = () => new Date().toISOString();

export class CfFake {
  readonly requests: CfRequest[] = [];
  zones: Json[] = [];
  records: Json[] = [];
  /** entry point rulesets by `${zoneId} ${phase}` */
  rulesets = new Map<string, Json>();
  /** Access applications and groups (zone scope), each with its zone_id */
  apps: Json[] = [];
  groups: Json[] = [];
  private failQueue: number[] = [];
  private server?: Server;
  url = '';

  constructor(readonly token: string) {}

  addZone(name: string): Json {
    const z = {
      id: hexId(),
      name,
      status: 'active',
      paused: false,
      type: 'full',
      development_mode: 0,
      name_servers: ['bob.ns.cloudflare.com', 'lola.ns.cloudflare.com'],
      original_name_servers: null,
      original_registrar: null,
      original_dnshost: null,
      created_on: now(),
      modified_on: now(),
      activated_on: now(),
      meta: {
        cdn_only: false,
        custom_certificate_quota: 0,
        dns_only: false,
        foundation_dns: false,
        page_rule_quota: 3,
        phishing_detected: false,
        step: 2,
      },
      owner: { id: hexId(), name: 'wpfarm', type: 'user' },
      account: { id: hexId(), name: 'wpfarm' },
      permissions: ['#dns_records:edit', '#dns_records:read', '#zone:read'],
      plan: {
        id: hexId(),
        name: 'Free Website',
        price: 0,
        currency: 'USD',
        frequency: '',
        is_subscribed: true,
        can_subscribe: false,
        legacy_id: 'free',
        legacy_discount: false,
        externally_managed: false,
      },
      vanity_name_servers: [],
    };
    this.zones.push(z);
    return z;
  }

  failNext(n: number, status = 429): void {
    for (let i = 0; i < n; i++) this.failQueue.push(status);
  }

  mutations(): CfRequest[] {
    return this.requests.filter((r) => r.method !== 'GET');
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => this.fail(res, 500, 10000, String(err)));
    });
    // Prism keeps its upstream connections open: closing an idle one after Node's default 5 s races with Prism's next
    // request on it ("socket hang up" on a POST, which is rightly not retried)
    this.server.keepAliveTimeout = 120_000;
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    const a = this.server.address();
    this.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
    return this.url;
  }

  async stop(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server!.close(() => r()));
  }

  private send(res: ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...extra });
    res.end(text);
  }

  private fail(res: ServerResponse, status: number, code: number, message: string, extra: Record<string, string> = {}): void {
    this.send(res, status, { success: false, errors: [{ code, message }], messages: [], result: null }, extra);
  }

  private ok(res: ServerResponse, result: unknown, info?: Json): void {
    this.send(res, 200, { success: true, errors: [], messages: [], result, ...(info ? { result_info: info } : {}) });
  }

  private list(url: URL, items: Json[], res: ServerResponse): void {
    const perPage = Math.max(1, Math.min(5000, Number(url.searchParams.get('per_page') ?? 100)));
    const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
    const slice = items.slice((page - 1) * perPage, page * perPage);
    this.ok(res, slice, {
      page,
      per_page: perPage,
      count: slice.length,
      total_count: items.length,
      total_pages: Math.max(1, Math.ceil(items.length / perPage)),
    });
  }

  private async readBody(req: IncomingMessage): Promise<Json> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    return text ? (JSON.parse(text) as Json) : {};
  }

  private record(zone: Json, b: Json, id = hexId(), created = now()): Json {
    const type = String(b['type']);
    return {
      id,
      name: String(b['name']),
      type,
      content: String(b['content']),
      proxiable: type === 'A' || type === 'AAAA' || type === 'CNAME',
      proxied: b['proxied'] === true,
      ttl: typeof b['ttl'] === 'number' ? b['ttl'] : 1,
      settings: {},
      meta: {},
      // the SDK's spec lists `data` as required on every record response (even A/AAAA/CNAME)
      data: {},
      comment: (b['comment'] as string | undefined) ?? '',
      tags: (b['tags'] as string[] | undefined) ?? [],
      created_on: created,
      modified_on: now(),
      zone_id: zone['id'],
      zone_name: zone['name'],
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    const body = method === 'GET' || method === 'DELETE' ? undefined : await this.readBody(req);
    this.requests.push({ method, path: url.pathname + url.search, body });
    if (req.headers['authorization'] !== `Bearer ${this.token}`) return this.fail(res, 401, 10000, 'Authentication error');
    const f = this.failQueue.shift();
    if (f !== undefined)
      return this.fail(
        res,
        f,
        f === 429 ? 971 : 10000,
        f === 429 ? 'Please wait and consider throttling your request speed' : 'Internal error',
        { 'retry-after': '0' },
      );
    const seg = url.pathname.split('/').filter(Boolean);
    if (seg[0] !== 'zones') return this.fail(res, 404, 7003, 'Could not route to the resource');
    if (seg.length === 1 && method === 'GET') {
      const name = url.searchParams.get('name');
      return this.list(
        url,
        this.zones.filter((z) => !name || z['name'] === name),
        res,
      );
    }
    const zone = this.zones.find((z) => z['id'] === seg[1]);
    if (!zone) return this.fail(res, 404, 7003, 'Could not route to /zones/..., perhaps your object identifier is invalid?');
    if (seg.length === 2 && method === 'GET') return this.ok(res, zone);
    if (seg[2] === 'rulesets' && seg.length === 3 && method === 'GET') {
      const list = [...this.rulesets.entries()]
        .filter(([k]) => k.startsWith(`${zone['id'] as string} `))
        .map(([, { rules: _r, ...rs }]) => rs);
      return this.ok(res, list);
    }
    if (seg[2] === 'rulesets' && seg[3] === 'phases' && seg[5] === 'entrypoint' && seg.length === 6)
      return this.entrypoint(res, zone, seg[4]!, method, body);
    if (seg[2] === 'access' && (seg[3] === 'apps' || seg[3] === 'groups')) return this.access(url, res, zone, seg, method, body);
    if (seg[2] !== 'dns_records') return this.fail(res, 404, 7003, 'Could not route');
    const mine = this.records.filter((r) => r['zone_id'] === zone['id']);
    if (seg.length === 3 && method === 'GET') {
      const name = url.searchParams.get('name') ?? url.searchParams.get('name.exact');
      const type = url.searchParams.get('type');
      return this.list(
        url,
        mine.filter((r) => (!name || r['name'] === name) && (!type || r['type'] === type)),
        res,
      );
    }
    if (seg.length === 3 && method === 'POST') {
      const b = body ?? {};
      if (mine.some((r) => r['name'] === b['name'] && r['type'] === b['type'] && r['content'] === b['content']))
        return this.fail(res, 400, 81058, 'An identical record already exists.');
      if (b['type'] === 'CNAME' && mine.some((r) => r['name'] === b['name']))
        return this.fail(res, 400, 81053, 'An A, AAAA, or CNAME record with that host already exists.');
      const r = this.record(zone, b);
      this.records.push(r);
      return this.ok(res, r);
    }
    const idx = this.records.findIndex((r) => r['id'] === seg[3] && r['zone_id'] === zone['id']);
    if (idx < 0) return this.fail(res, 404, 81044, 'Record does not exist.');
    const cur = this.records[idx]!;
    if (method === 'GET') return this.ok(res, cur);
    if (method === 'PUT') {
      this.records[idx] = this.record(zone, body ?? {}, cur['id'] as string, cur['created_on'] as string);
      return this.ok(res, this.records[idx]);
    }
    if (method === 'PATCH') {
      this.records[idx] = this.record(zone, { ...cur, ...(body ?? {}) }, cur['id'] as string, cur['created_on'] as string);
      return this.ok(res, this.records[idx]);
    }
    if (method === 'DELETE') {
      this.records.splice(idx, 1);
      return this.ok(res, { id: cur['id'] });
    }
    return this.fail(res, 405, 10000, 'method not allowed');
  }

  private entrypoint(res: ServerResponse, zone: Json, phase: string, method: string, body: Json | undefined) {
    const key = `${zone['id'] as string} ${phase}`;
    const cur = this.rulesets.get(key);
    if (method === 'GET') {
      if (!cur) return this.fail(res, 404, 10003, 'could not find entrypoint ruleset in the zone');
      return this.ok(res, cur);
    }
    if (method !== 'PUT') return this.fail(res, 405, 10000, 'method not allowed');
    const version = String(Number(cur?.['version'] ?? 0) + 1);
    const old = (cur?.['rules'] as Json[] | undefined) ?? [];
    const rules = ((body?.['rules'] as Json[] | undefined) ?? []).map((r) => {
      // like the API: a rule sent with an id (or a known ref) keeps its id; a new rule gets one
      const prev = old.find((o) => (r['id'] && o['id'] === r['id']) || (r['ref'] && o['ref'] === r['ref']));
      const id = (prev?.['id'] as string | undefined) ?? hexId();
      return { ...r, id, ref: r['ref'] ?? id, enabled: r['enabled'] ?? true, version, last_updated: now() };
    });
    const rs = {
      id: (cur?.['id'] as string | undefined) ?? hexId(),
      name: (body?.['name'] as string | undefined) ?? (cur?.['name'] as string | undefined) ?? 'default',
      description: (body?.['description'] as string | undefined) ?? '',
      kind: 'zone',
      phase,
      version,
      last_updated: now(),
      rules,
    };
    this.rulesets.set(key, rs);
    return this.ok(res, rs);
  }

  private policy(p: Json, prev?: Json): Json {
    return {
      id: (prev?.['id'] as string | undefined) ?? randomUUID(),
      name: p['name'],
      decision: p['decision'],
      include: p['include'] ?? [],
      exclude: p['exclude'] ?? [],
      require: p['require'] ?? [],
      precedence: p['precedence'] ?? 1,
      created_at: (prev?.['created_at'] as string | undefined) ?? now(),
      updated_at: now(),
    };
  }

  private app(zone: Json, b: Json, prev?: Json): Json {
    const prevPolicies = (prev?.['policies'] as Json[] | undefined) ?? [];
    return {
      ...b,
      id: (prev?.['id'] as string | undefined) ?? randomUUID(),
      aud: (prev?.['aud'] as string | undefined) ?? randomBytes(32).toString('hex'),
      zone_id: zone['id'],
      policies: ((b['policies'] as Json[] | undefined) ?? []).map((p) =>
        this.policy(
          p,
          prevPolicies.find((x) => x['name'] === p['name']),
        ),
      ),
      created_at: (prev?.['created_at'] as string | undefined) ?? now(),
      updated_at: now(),
    };
  }

  private access(url: URL, res: ServerResponse, zone: Json, seg: string[], method: string, body: Json | undefined) {
    const store = seg[3] === 'apps' ? this.apps : this.groups;
    const mine = store.filter((x) => x['zone_id'] === zone['id']);
    const strip = (x: Json): Json => {
      const { zone_id: _z, ...rest } = x;
      return rest;
    };
    if (seg.length === 4 && method === 'GET') return this.list(url, mine.map(strip), res);
    if (seg.length === 4 && method === 'POST') {
      const b = body ?? {};
      if (mine.some((x) => x['name'] === b['name']) && seg[3] === 'groups') return this.fail(res, 400, 12130, 'group name already exists');
      const item =
        seg[3] === 'apps' ? this.app(zone, b) : { ...b, id: randomUUID(), zone_id: zone['id'], created_at: now(), updated_at: now() };
      store.push(item);
      return this.send(res, 201, { success: true, errors: [], messages: [], result: strip(item) });
    }
    const idx = store.findIndex((x) => x['id'] === seg[4] && x['zone_id'] === zone['id']);
    if (idx < 0 || seg.length !== 5) return this.fail(res, 404, 12130, 'access.api.error.not_found');
    const cur = store[idx]!;
    if (method === 'GET') return this.ok(res, strip(cur));
    if (method === 'PUT') {
      store[idx] = seg[3] === 'apps' ? this.app(zone, body ?? {}, cur) : { ...cur, ...(body ?? {}), updated_at: now() };
      return this.ok(res, strip(store[idx]!));
    }
    if (method === 'DELETE') {
      store.splice(idx, 1);
      // the spec's answer to deleting an Access application or group is 202 Accepted
      return this.send(res, 202, { success: true, errors: [], messages: [], result: { id: cur['id'] } });
    }
    return this.fail(res, 405, 10000, 'method not allowed');
  }
}
