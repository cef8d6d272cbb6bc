// A small stateful stand-in for the DigitalOcean API paths wpfarm uses. It sits BEHIND
// `prism proxy --errors`, which checks every request and every answer against the official spec, so
// this fake only has to keep state; Prism tells when its shapes drift from the contract.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';

type Json = Record<string, unknown>;

export interface FakeRequest {
  method: string;
  path: string;
  body?: unknown;
}

const REGION = (slug: string) => ({
  name: slug,
  slug,
  features: ['private_networking', 'backups', 'ipv6', 'metadata', 'install_agent', 'storage', 'image_transfer'],
  available: true,
  sizes: ['s-1vcpu-1gb', 's-2vcpu-4gb', 's-4vcpu-8gb'],
});

const SIZES: Record<string, { memory: number; vcpus: number; disk: number }> = {
  's-1vcpu-1gb': { memory: 1024, vcpus: 1, disk: 25 },
  's-2vcpu-4gb': { memory: 4096, vcpus: 2, disk: 80 },
  's-4vcpu-8gb': { memory: 8192, vcpus: 4, disk: 160 },
};

export class DoFake {
  readonly requests: FakeRequest[] = [];
  droplets: Json[] = [];
  vpcs: Json[] = [];
  peerings: Json[] = [];
  firewalls: Json[] = [];
  reservedIps: Json[] = [];
  loadBalancers: Json[] = [];
  volumes: Json[] = [];
  /** the account's own images (snapshots made by droplet actions) */
  images: Json[] = [];
  /** droplet actions by id; each is 'in-progress' when created and 'completed' from its first GET /v2/actions/{id} */
  actions = new Map<number, Json>();
  private nextId = 3164000;
  private nextIp = 10;
  private failQueue: number[] = [];
  /** when true, droplet lists break the contract (memory as a string): Prism must catch it */
  corruptDroplets = false;
  private server?: Server;
  url = '';

  constructor(readonly token: string) {}

  /** the next n answers are `status` (429 by default) with rate-limit headers and Retry-After: 0 */
  failNext(n: number, status = 429): void {
    for (let i = 0; i < n; i++) this.failQueue.push(status);
  }

  clearFaults(): void {
    this.failQueue.length = 0;
  }

  /** counts of POST/PUT/DELETE requests (changes) by path prefix */
  mutations(): FakeRequest[] {
    return this.requests.filter((r) => r.method !== 'GET');
  }

  async start(): Promise<string> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.send(res, 500, { id: 'server_error', message: String(err) });
      });
    });
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

  private send(res: ServerResponse, status: number, body?: unknown, extra: Record<string, string> = {}): void {
    const headers: Record<string, string> = {
      'ratelimit-limit': '5000',
      'ratelimit-remaining': status === 429 ? '0' : '4999',
      'ratelimit-reset': String(Math.floor(Date.now() / 1000)),
      ...extra,
    };
    if (body === undefined) {
      res.writeHead(status, headers);
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
    res.end(text);
  }

  private async readBody(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if (!text) return undefined;
    return JSON.parse(text) as unknown;
  }

  private page<T>(url: URL, key: string, items: T[], res: ServerResponse): void {
    const perPage = Math.min(200, Math.max(1, Number(url.searchParams.get('per_page') ?? 20)));
    const page = Math.max(1, Number(url.searchParams.get('page') ?? 1));
    const slice = items.slice((page - 1) * perPage, page * perPage);
    const last = Math.max(1, Math.ceil(items.length / perPage));
    const link = (p: number) => {
      const u = new URL(`https://api.digitalocean.com${url.pathname}`);
      for (const [k, v] of url.searchParams) u.searchParams.set(k, v);
      u.searchParams.set('page', String(p));
      return u.toString();
    };
    const pages: Json = {};
    if (page < last) Object.assign(pages, { next: link(page + 1), last: link(last) });
    if (page > 1) Object.assign(pages, { first: link(1), prev: link(page - 1) });
    this.send(res, 200, { [key]: slice, links: { pages }, meta: { total: items.length } });
  }

  private notFound(res: ServerResponse, what: string): void {
    this.send(res, 404, { id: 'not_found', message: `The resource you requested could not be found: ${what}` });
  }

  private droplet(name: string, b: Json): Json {
    const id = this.nextId++;
    const size = String(b['size']);
    const sz = SIZES[size] ?? { memory: 1024, vcpus: 1, disk: 25 };
    const n = this.nextIp++;
    const region = REGION(String(b['region']));
    // a droplet made from one of the account's images (an id) reports that image
    const own = typeof b['image'] === 'number' ? this.images.find((i) => i['id'] === b['image']) : undefined;
    return {
      id,
      name,
      memory: sz.memory,
      vcpus: sz.vcpus,
      disk: sz.disk,
      disk_info: [{ type: 'local', size: { amount: sz.disk, unit: 'gib' } }],
      locked: false,
      status: 'active',
      kernel: null,
      created_at: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      features: ['monitoring', 'private_networking'],
      backup_ids: [],
      next_backup_window: null,
      snapshot_ids: [],
      image: own ?? {
        id: 106569146,
        name: '12 x64',
        distribution: 'Debian',
        slug: String(b['image']),
        public: true,
        regions: [region.slug],
        created_at: '2024-01-01T00:00:00Z',
        type: 'base',
        min_disk_size: 15,
        size_gigabytes: 1.5,
        description: 'Debian 12 x64',
        tags: [],
        status: 'available',
        error_message: '',
      },
      volume_ids: [],
      size: {
        slug: size,
        memory: sz.memory,
        vcpus: sz.vcpus,
        disk: sz.disk,
        transfer: 4,
        price_monthly: 24,
        price_hourly: 0.0357,
        regions: [region.slug],
        available: true,
        description: 'Basic',
      },
      size_slug: size,
      networks: {
        v4: [
          { ip_address: `10.110.0.${n}`, netmask: '255.255.240.0', gateway: '10.110.0.1', type: 'private' },
          { ip_address: `192.0.2.${n}`, netmask: '255.255.255.0', gateway: '192.0.2.1', type: 'public' },
        ],
        v6: [],
      },
      region,
      tags: (b['tags'] as string[] | undefined) ?? [],
      vpc_uuid: (b['vpc_uuid'] as string | undefined) ?? this.vpcs[0]?.['id'] ?? randomUUID(),
    };
  }

  private firewall(b: Json, id: string, created: string): Json {
    const dropletIds = this.droplets
      .filter((d) => ((b['tags'] as string[] | undefined) ?? []).some((t) => (d['tags'] as string[]).includes(t)))
      .map((d) => d['id'] as number);
    return {
      id,
      name: b['name'],
      status: 'succeeded',
      inbound_rules: b['inbound_rules'] ?? [],
      outbound_rules: b['outbound_rules'] ?? [],
      created_at: created,
      droplet_ids: dropletIds,
      tags: b['tags'] ?? [],
      pending_changes: [],
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    const body = method === 'GET' || method === 'DELETE' ? undefined : await this.readBody(req);
    this.requests.push({ method, path: url.pathname + url.search, body });
    if (req.headers['authorization'] !== `Bearer ${this.token}`) {
      this.send(res, 401, { id: 'unauthorized', message: 'Unable to authenticate you.' });
      return;
    }
    const fail = this.failQueue.shift();
    if (fail !== undefined) {
      this.send(
        res,
        fail,
        {
          id: fail === 429 ? 'too_many_requests' : 'server_error',
          message: fail === 429 ? 'API rate limit exceeded.' : 'Unexpected server-side error',
        },
        { 'retry-after': '0' },
      );
      return;
    }
    const p = url.pathname.replace(/\/+$/, '');
    const seg = p.split('/').filter(Boolean); // ['v2', 'droplets', ...]
    const b = (body ?? {}) as Json;
    const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');

    if (seg[1] === 'droplets' && seg.length === 2) {
      if (method === 'GET') {
        const tag = url.searchParams.get('tag_name');
        const name = url.searchParams.get('name');
        const list = this.droplets.filter((d) => (!tag || (d['tags'] as string[]).includes(tag)) && (!name || d['name'] === name));
        return this.page(url, 'droplets', this.corruptDroplets ? list.map((d) => ({ ...d, memory: 'lots' })) : list, res);
      }
      if (method === 'POST') {
        const names = (b['names'] as string[] | undefined) ?? [String(b['name'])];
        const made = names.map((n) => this.droplet(n, b));
        this.droplets.push(...made);
        const actions = made.map((d) => ({
          id: (d['id'] as number) + 1_000_000,
          rel: 'create',
          href: `https://api.digitalocean.com/v2/actions/${(d['id'] as number) + 1_000_000}`,
        }));
        if (b['names']) return this.send(res, 202, { droplets: made, links: { actions } });
        return this.send(res, 202, { droplet: made[0], links: { actions } });
      }
      if (method === 'DELETE') {
        const tag = url.searchParams.get('tag_name');
        this.droplets = this.droplets.filter((d) => !(d['tags'] as string[]).includes(String(tag)));
        return this.send(res, 204);
      }
    }
    if (seg[1] === 'droplets' && seg.length === 3) {
      const d = this.droplets.find((x) => String(x['id']) === seg[2]);
      if (!d) return this.notFound(res, 'droplet');
      if (method === 'GET') return this.send(res, 200, { droplet: d });
      if (method === 'DELETE') {
        this.droplets = this.droplets.filter((x) => x !== d);
        for (const v of this.volumes) v['droplet_ids'] = (v['droplet_ids'] as number[]).filter((i) => i !== d['id']);
        for (const r of this.reservedIps) if ((r['droplet'] as Json | null)?.['id'] === d['id']) r['droplet'] = null;
        return this.send(res, 204);
      }
    }
    if (seg[1] === 'droplets' && seg.length === 4 && seg[3] === 'actions' && method === 'POST') {
      const d = this.droplets.find((x) => String(x['id']) === seg[2]);
      if (!d) return this.notFound(res, 'droplet');
      const type = String(b['type']);
      if (type === 'shutdown' || type === 'power_off') d['status'] = 'off';
      if (type === 'power_on') d['status'] = 'active';
      if (type === 'snapshot') {
        const region = (d['region'] as Json)['slug'];
        this.images.push({
          id: this.nextId++,
          name: b['name'] ?? `${String(d['name'])}-snapshot`,
          type: 'snapshot',
          distribution: 'Debian',
          slug: null,
          public: false,
          regions: [region],
          created_at: now,
          min_disk_size: d['disk'],
          size_gigabytes: 2.36,
          description: '',
          tags: [],
          status: 'available',
          error_message: '',
        });
        (d['snapshot_ids'] as number[]).push(this.nextId - 1);
      }
      const action = {
        id: this.nextId++,
        status: 'in-progress',
        type,
        started_at: now,
        completed_at: null,
        resource_id: d['id'],
        resource_type: 'droplet',
        region: d['region'],
        region_slug: (d['region'] as Json)['slug'],
      };
      this.actions.set(action.id, action);
      return this.send(res, 201, { action });
    }
    if (seg[1] === 'actions' && seg.length === 3 && method === 'GET') {
      const a = this.actions.get(Number(seg[2]));
      if (!a) return this.notFound(res, 'action');
      const answer = { ...a };
      Object.assign(a, { status: 'completed', completed_at: now });
      return this.send(res, 200, { action: answer });
    }
    if (seg[1] === 'images' && seg.length === 2 && method === 'GET') {
      const priv = url.searchParams.get('private') === 'true';
      return this.page(
        url,
        'images',
        this.images.filter((i) => !priv || i['public'] === false),
        res,
      );
    }
    if (seg[1] === 'images' && seg.length === 3) {
      const i = this.images.find((x) => String(x['id']) === seg[2]);
      if (!i) return this.notFound(res, 'image');
      if (method === 'GET') return this.send(res, 200, { image: i });
      if (method === 'DELETE') {
        this.images = this.images.filter((x) => x !== i);
        return this.send(res, 204);
      }
    }
    if (seg[1] === 'vpcs' && seg.length === 2) {
      if (method === 'GET') return this.page(url, 'vpcs', this.vpcs, res);
      if (method === 'POST') {
        const v = {
          id: randomUUID(),
          urn: '',
          name: b['name'],
          description: b['description'] ?? '',
          region: b['region'],
          ip_range: b['ip_range'] ?? '10.110.0.0/20',
          default: false,
          created_at: now,
        };
        v.urn = `do:vpc:${v.id}`;
        this.vpcs.push(v);
        return this.send(res, 201, { vpc: v });
      }
    }
    if (seg[1] === 'vpcs' && seg.length === 3) {
      const v = this.vpcs.find((x) => x['id'] === seg[2]);
      if (!v) return this.notFound(res, 'vpc');
      if (method === 'GET') return this.send(res, 200, { vpc: v });
      if (method === 'DELETE') {
        if (this.droplets.some((d) => d['vpc_uuid'] === v['id']))
          return this.send(res, 403, { id: 'forbidden', message: 'VPC has members' });
        this.vpcs = this.vpcs.filter((x) => x !== v);
        return this.send(res, 204);
      }
    }
    if (seg[1] === 'vpc_peerings' && seg.length === 2) {
      if (method === 'GET') return this.page(url, 'vpc_peerings', this.peerings, res);
      if (method === 'POST') {
        const ids = (b['vpc_ids'] as string[] | undefined) ?? [];
        if (ids.length !== 2 || !ids.every((id) => this.vpcs.some((v) => v['id'] === id)))
          return this.send(res, 422, { id: 'unprocessable_entity', message: 'vpc_ids: two existing VPCs' });
        const p = { id: randomUUID(), name: b['name'], vpc_ids: ids, created_at: now, status: 'ACTIVE' };
        this.peerings.push(p);
        return this.send(res, 202, { vpc_peering: p });
      }
    }
    if (seg[1] === 'vpc_peerings' && seg.length === 3) {
      const p = this.peerings.find((x) => x['id'] === seg[2]);
      if (!p) return this.notFound(res, 'vpc_peering');
      if (method === 'GET') return this.send(res, 200, { vpc_peering: p });
      if (method === 'DELETE') {
        this.peerings = this.peerings.filter((x) => x !== p);
        return this.send(res, 202, { vpc_peering: { ...p, status: 'DELETING' } });
      }
    }
    if (seg[1] === 'firewalls' && seg.length === 2) {
      if (method === 'GET') {
        for (const f of this.firewalls) Object.assign(f, this.firewall(f, f['id'] as string, f['created_at'] as string));
        return this.page(url, 'firewalls', this.firewalls, res);
      }
      if (method === 'POST') {
        const f = this.firewall(b, randomUUID(), now);
        this.firewalls.push(f);
        return this.send(res, 202, { firewall: f });
      }
    }
    if (seg[1] === 'firewalls' && seg.length === 3) {
      const i = this.firewalls.findIndex((x) => x['id'] === seg[2]);
      if (i < 0) return this.notFound(res, 'firewall');
      const f = this.firewalls[i]!;
      if (method === 'GET') return this.send(res, 200, { firewall: f });
      if (method === 'PUT') {
        this.firewalls[i] = this.firewall(b, f['id'] as string, f['created_at'] as string);
        return this.send(res, 200, { firewall: this.firewalls[i] });
      }
      if (method === 'DELETE') {
        this.firewalls.splice(i, 1);
        return this.send(res, 204);
      }
    }
    if (seg[1] === 'reserved_ips' && seg.length === 2) {
      if (method === 'GET') return this.page(url, 'reserved_ips', this.reservedIps, res);
      if (method === 'POST') {
        const d = b['droplet_id'] !== undefined ? this.droplets.find((x) => x['id'] === b['droplet_id']) : undefined;
        if (b['droplet_id'] !== undefined && !d) return this.notFound(res, 'droplet');
        const region = d ? (d['region'] as Json) : REGION(String(b['region']));
        const r = { ip: `198.51.100.${this.nextIp++}`, droplet: d ?? null, region, locked: false, project_id: randomUUID() };
        this.reservedIps.push(r);
        const links = d
          ? {
              droplets: [{ id: d['id'], rel: 'droplet', href: `https://api.digitalocean.com/v2/droplets/${d['id'] as number}` }],
              actions: [{ id: this.nextId++, rel: 'assign_ip', href: 'https://api.digitalocean.com/v2/actions/1' }],
            }
          : { droplets: [], actions: [] };
        return this.send(res, 202, { reserved_ip: r, links });
      }
    }
    if (seg[1] === 'reserved_ips' && seg.length === 3) {
      const r = this.reservedIps.find((x) => x['ip'] === seg[2]);
      if (!r) return this.notFound(res, 'reserved ip');
      if (method === 'GET') return this.send(res, 200, { reserved_ip: r });
      if (method === 'DELETE') {
        this.reservedIps = this.reservedIps.filter((x) => x !== r);
        return this.send(res, 204);
      }
    }
    if (seg[1] === 'load_balancers' && seg.length === 2) {
      if (method === 'GET') return this.page(url, 'load_balancers', this.loadBalancers, res);
      if (method === 'POST') {
        const lb = {
          ...b,
          id: randomUUID(),
          ip: `203.0.113.${this.nextIp++}`,
          status: 'new',
          created_at: now,
          droplet_ids: [],
          region: REGION(String(b['region'])),
        };
        this.loadBalancers.push(lb);
        return this.send(res, 202, { load_balancer: lb });
      }
    }
    if (seg[1] === 'load_balancers' && seg.length === 3) {
      const lb = this.loadBalancers.find((x) => x['id'] === seg[2]);
      if (!lb) return this.notFound(res, 'load balancer');
      if (method === 'DELETE') {
        this.loadBalancers = this.loadBalancers.filter((x) => x !== lb);
        return this.send(res, 204);
      }
    }
    if (seg[1] === 'volumes' && seg.length === 2) {
      if (method === 'GET') {
        const region = url.searchParams.get('region');
        return this.page(
          url,
          'volumes',
          this.volumes.filter((v) => !region || (v['region'] as Json)['slug'] === region),
          res,
        );
      }
      if (method === 'POST') {
        const v = {
          id: randomUUID(),
          region: REGION(String(b['region'])),
          droplet_ids: [],
          name: b['name'],
          description: b['description'] ?? '',
          size_gigabytes: b['size_gigabytes'],
          created_at: now,
          filesystem_type: b['filesystem_type'] ?? '',
          filesystem_label: '',
          tags: b['tags'] ?? [],
        };
        this.volumes.push(v);
        return this.send(res, 201, { volume: v });
      }
    }
    if (seg[1] === 'volumes' && seg.length === 3) {
      const v = this.volumes.find((x) => x['id'] === seg[2]);
      if (!v) return this.notFound(res, 'volume');
      if (method === 'DELETE') {
        if ((v['droplet_ids'] as number[]).length) return this.send(res, 409, { id: 'conflict', message: 'volume is attached' });
        this.volumes = this.volumes.filter((x) => x !== v);
        return this.send(res, 204);
      }
    }
    if (seg[1] === 'volumes' && seg.length === 4 && seg[3] === 'actions' && method === 'POST') {
      const v = this.volumes.find((x) => x['id'] === seg[2]);
      if (!v) return this.notFound(res, 'volume');
      const d = this.droplets.find((x) => x['id'] === b['droplet_id']);
      if (!d) return this.notFound(res, 'droplet');
      if (b['type'] === 'attach') {
        (v['droplet_ids'] as number[]).push(d['id'] as number);
        (d['volume_ids'] as string[]).push(v['id'] as string);
      }
      return this.send(res, 202, {
        action: {
          id: this.nextId++,
          status: 'completed',
          type: 'attach_volume',
          started_at: now,
          completed_at: now,
          resource_id: null,
          resource_type: 'volume',
          region: v['region'],
          region_slug: (v['region'] as Json)['slug'],
        },
      });
    }
    this.notFound(res, `${method} ${url.pathname}`);
  }
}
