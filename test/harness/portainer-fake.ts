// A small stateful stand-in for the Portainer API paths wpfarm uses. It sits BEHIND `prism proxy --errors`
// with Portainer 2.23's own swagger.yaml, which checks every request and every answer; this fake only keeps
// state (and refuses duplicates the way Portainer does: 409 for a team name or a resource control that exists).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';

export interface FakeRequest {
  method: string;
  path: string;
  /** the raw body as received (to prove what was and was not sent) */
  body: string;
  authorization?: string;
}

interface Team {
  Id: number;
  Name: string;
}
interface Endpoint {
  Id: number;
  Name: string;
  Type: number;
  URL: string;
  GroupId: number;
  TLS: boolean;
  TeamAccessPolicies: Record<string, { RoleId: number }>;
  UserAccessPolicies: Record<string, { RoleId: number }>;
}
interface ResourceControl {
  Id: number;
  ResourceId: string;
  Type: number;
  TeamAccesses: { TeamId: number; AccessLevel: number }[];
  UserAccesses: { UserId: number; AccessLevel: number }[];
  Public: boolean;
  AdministratorsOnly: boolean;
  System: boolean;
}

const RC_TYPES: Record<string, number> = { container: 1, service: 2, volume: 3, secret: 4, stack: 5, config: 6 };

export class PortainerFake {
  readonly requests: FakeRequest[] = [];
  admin?: { username: string; password: string };
  teams: Team[] = [];
  endpoints: Endpoint[] = [];
  controls: ResourceControl[] = [];
  /** when true, team lists break the contract (Id as a string): Prism must catch it */
  corruptTeams = false;
  private tokens = new Set<string>();
  private nextId = 1;
  private server?: Server;
  url = '';

  mutations(): FakeRequest[] {
    return this.requests.filter((r) => r.method !== 'GET');
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', () => r()));
    const a = this.server.address();
    this.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    this.requests.push({ method, path: url.pathname + url.search, body: raw.toString('utf8'), authorization: req.headers.authorization });
    const send = (status: number, body?: unknown) => {
      if (body === undefined) {
        res.writeHead(status).end();
        return;
      }
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const json = (): Record<string, unknown> => JSON.parse(raw.toString('utf8') || '{}') as Record<string, unknown>;
    const p = url.pathname;

    if (method === 'GET' && p === '/api/users/admin/check') return send(this.admin ? 204 : 404);
    if (method === 'POST' && p === '/api/users/admin/init') {
      if (this.admin) return send(409);
      const b = json();
      this.admin = { username: String(b.username), password: String(b.password) };
      return send(200, { Id: 1, Username: this.admin.username, Role: 1 });
    }
    if (method === 'POST' && p === '/api/auth') {
      const b = json();
      if (!this.admin || b.username !== this.admin.username || b.password !== this.admin.password) return send(422);
      const jwt = randomBytes(24).toString('hex');
      this.tokens.add(jwt);
      return send(200, { jwt });
    }
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!token || !this.tokens.has(token)) return send(500, { message: 'unauthorized (fake)' });

    if (method === 'GET' && p === '/api/teams')
      return send(200, this.corruptTeams ? this.teams.map((t) => ({ ...t, Id: String(t.Id) })) : this.teams);
    if (method === 'POST' && p === '/api/team') {
      const name = String(json().name);
      if (this.teams.some((t) => t.Name === name)) return send(409);
      const t = { Id: this.nextId++, Name: name };
      this.teams.push(t);
      return send(200, t);
    }
    if (method === 'GET' && p === '/api/endpoints') return send(200, this.endpoints);
    if (method === 'POST' && p === '/api/endpoints') {
      const form = await new Request('http://x/', {
        method: 'POST',
        headers: { 'content-type': req.headers['content-type'] ?? '' },
        body: raw,
      }).formData();
      const e: Endpoint = {
        Id: this.nextId++,
        Name: String(form.get('Name')),
        Type: Number(form.get('EndpointCreationType')),
        URL: String(form.get('URL')),
        GroupId: 1,
        TLS: form.get('TLS') === 'true',
        TeamAccessPolicies: {},
        UserAccessPolicies: {},
      };
      this.endpoints.push(e);
      return send(200, e);
    }
    const ep = /^\/api\/endpoints\/(\d+)$/.exec(p);
    if (ep && method === 'PUT') {
      const e = this.endpoints.find((x) => x.Id === Number(ep[1]));
      if (!e) return send(404);
      const b = json();
      if (b.teamAccessPolicies) e.TeamAccessPolicies = b.teamAccessPolicies as Endpoint['TeamAccessPolicies'];
      return send(200, e);
    }
    if (method === 'POST' && p === '/api/resource_controls') {
      const b = json();
      const type = RC_TYPES[String(b.type)];
      if (!type) return send(400);
      if (this.controls.some((c) => c.ResourceId === b.resourceID && c.Type === type)) return send(409);
      const c: ResourceControl = {
        Id: this.nextId++,
        ResourceId: String(b.resourceID),
        Type: type,
        TeamAccesses: ((b.teams as number[]) ?? []).map((TeamId) => ({ TeamId, AccessLevel: 1 })),
        UserAccesses: [],
        Public: b.public === true,
        AdministratorsOnly: b.administratorsOnly === true,
        System: false,
      };
      this.controls.push(c);
      return send(200, c);
    }
    return send(404);
  }
}
