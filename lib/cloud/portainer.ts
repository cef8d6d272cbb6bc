// A thin client of Portainer's HTTP API (the paths of Portainer 2.23's own swagger.yaml that wpfarm uses):
// administrator initialisation, login, teams, environments (endpoints), their team access policies, and
// resource controls. Retries and masked errors come from http.ts; the administrator password and the
// session token are registered as secrets (masked in every output) and only ever travel in request
// bodies and the Authorization header, never in a URL or a message.
import { registerSecret } from '../secrets.ts';
import { CloudApiError } from './retry.ts';
import { providerFetch, isNotFound, type ProviderHttpOptions } from './http.ts';

export interface PortainerTeam {
  Id: number;
  Name: string;
}

export interface PortainerEndpoint {
  Id: number;
  Name: string;
  Type: number;
  URL?: string;
  TeamAccessPolicies?: Record<string, { RoleId?: number }>;
}

export interface ResourceControlPayload {
  resourceID: string;
  /** container, service, volume, secret, config or stack */
  type: 'container' | 'service' | 'volume' | 'secret' | 'config' | 'stack';
  teams: number[];
  users?: number[];
  administratorsOnly?: boolean;
  public?: boolean;
}

export interface EndpointCreate {
  name: string;
  /** 1 local Docker, 2 agent, 3 Azure, 4 Edge agent, 5 local Kubernetes */
  type: 1 | 2 | 3 | 4 | 5;
  url: string;
  tls: boolean;
  tlsSkipVerify: boolean;
  tlsSkipClientVerify: boolean;
}

export class PortainerClient {
  private readonly fetch: ReturnType<typeof providerFetch>;
  private readonly base: string;
  private readonly secrets: string[];
  private jwt = '';

  /** `baseUrl`: the API root, e.g. https://portainer.example.net/api (Portainer's basePath included) */
  constructor(opts: ProviderHttpOptions & { baseUrl: string }) {
    this.base = opts.baseUrl.replace(/\/+$/, '');
    // one array shared with the fetch wrapper: the token pushed later is masked too
    this.secrets = opts.secrets ?? [];
    this.fetch = providerFetch('portainer', { ...opts, secrets: this.secrets });
  }

  private async call<T>(method: string, path: string, body?: unknown, form?: FormData): Promise<{ status: number; json: T }> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.jwt) headers.authorization = `Bearer ${this.jwt}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await this.fetch(`${this.base}${path}`, {
      method,
      headers,
      body: form ?? (body === undefined ? undefined : JSON.stringify(body)),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : undefined) as T };
  }

  /** GET /users/admin/check: 204 when an administrator exists, 404 when not. */
  async adminExists(): Promise<boolean> {
    try {
      await this.call('GET', '/users/admin/check');
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  /** POST /users/admin/init; false when Portainer says it is already initialised (409). */
  async initAdmin(username: string, password: string): Promise<boolean> {
    registerSecret(password);
    this.secrets.push(password);
    try {
      await this.call('POST', '/users/admin/init', { username, password });
      return true;
    } catch (e) {
      if (e instanceof CloudApiError && e.status === 409) return false;
      throw e;
    }
  }

  /** POST /auth: the session token is kept for the next calls, and masked. */
  async login(username: string, password: string): Promise<void> {
    registerSecret(password);
    this.secrets.push(password);
    const r = await this.call<{ jwt?: string }>('POST', '/auth', { username, password });
    if (!r.json?.jwt) throw new Error('portainer: POST /auth answered without a token');
    this.jwt = registerSecret(r.json.jwt);
    this.secrets.push(this.jwt);
  }

  async listTeams(): Promise<PortainerTeam[]> {
    return (await this.call<PortainerTeam[]>('GET', '/teams')).json ?? [];
  }

  async createTeam(name: string): Promise<PortainerTeam> {
    return (await this.call<PortainerTeam>('POST', '/team', { name })).json;
  }

  async listEndpoints(): Promise<PortainerEndpoint[]> {
    return (await this.call<PortainerEndpoint[]>('GET', '/endpoints')).json ?? [];
  }

  /** POST /endpoints (multipart form). Portainer's handler reads EndpointCreationType; its swagger names the
   *  field EndpointType: both are sent with the same value. */
  async createEndpoint(e: EndpointCreate): Promise<PortainerEndpoint> {
    const form = new FormData();
    form.set('Name', e.name);
    form.set('EndpointType', String(e.type));
    form.set('EndpointCreationType', String(e.type));
    form.set('URL', e.url);
    form.set('TLS', String(e.tls));
    form.set('TLSSkipVerify', String(e.tlsSkipVerify));
    form.set('TLSSkipClientVerify', String(e.tlsSkipClientVerify));
    return (await this.call<PortainerEndpoint>('POST', '/endpoints', undefined, form)).json;
  }

  async setTeamAccessPolicies(id: number, policies: Record<string, { RoleId: number }>): Promise<PortainerEndpoint> {
    return (await this.call<PortainerEndpoint>('PUT', `/endpoints/${id}`, { teamAccessPolicies: policies })).json;
  }

  /** POST /resource_controls; 'exists' when Portainer already has a control for that resource (409). */
  async createResourceControl(p: ResourceControlPayload): Promise<{ Id?: number } | 'exists'> {
    try {
      return (await this.call<{ Id?: number }>('POST', '/resource_controls', p)).json;
    } catch (e) {
      if (e instanceof CloudApiError && e.status === 409) return 'exists';
      throw e;
    }
  }
}
