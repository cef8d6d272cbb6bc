// Converts the Traefik labels wpfarm puts on Swarm services back into Traefik's dynamic configuration
// (the shape the file provider reads), the way Traefik's swarm provider does: keys are matched
// case-insensitively against the configuration's fields, values are typed from the field's type,
// lists are comma-separated. The field names and types come from the official file-provider JSON
// schema (../shared/schemas/traefik/traefik-v3-file-provider.json), so a misspelt label is an error
// here instead of being silently ignored by Traefik.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sharedSchemasDir } from './schema-check.ts';
import { parseRule } from './rules.ts';

type JsonSchema = {
  $ref?: string;
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  patternProperties?: Record<string, JsonSchema>;
  additionalProperties?: boolean | JsonSchema;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
  items?: JsonSchema;
};

export type DynamicConfig = {
  http?: {
    routers?: Record<string, Record<string, unknown>>;
    services?: Record<string, Record<string, unknown>>;
    middlewares?: Record<string, Record<string, unknown>>;
  };
  tcp?: Record<string, unknown>;
  udp?: Record<string, unknown>;
  tls?: Record<string, unknown>;
};

/** Labels that configure the swarm provider itself rather than the dynamic configuration. */
export interface ProviderLabels {
  enable: boolean;
  network?: string;
  lbswarm?: boolean;
}

export interface Conversion {
  provider: ProviderLabels;
  config: DynamicConfig;
}

export class LabelError extends Error {
  constructor(
    readonly label: string,
    message: string,
  ) {
    super(`label ${label}: ${message}`);
    this.name = 'LabelError';
  }
}

let rootSchema: JsonSchema | undefined;
function schema(): JsonSchema {
  rootSchema ??= JSON.parse(readFileSync(path.join(sharedSchemasDir(), 'traefik/traefik-v3-file-provider.json'), 'utf8')) as JsonSchema;
  return rootSchema;
}

function deref(s: JsonSchema): JsonSchema {
  let cur = s;
  while (cur.$ref) {
    const parts = cur.$ref.replace(/^#\//, '').split('/');
    let node: unknown = schema();
    for (const p of parts) node = (node as Record<string, unknown>)[p];
    if (!node) throw new Error(`unresolvable $ref ${cur.$ref}`);
    cur = node as JsonSchema;
  }
  return cur;
}

function typesOf(s: JsonSchema): string[] {
  const d = deref(s);
  if (d.type) return Array.isArray(d.type) ? d.type : [d.type];
  const alts = d.oneOf ?? d.anyOf;
  return alts ? alts.flatMap(typesOf) : [];
}

/** The child schema of `s` for a key, matched case-insensitively; returns the canonical key. */
function child(s: JsonSchema, key: string): { key: string; schema: JsonSchema; free: boolean } | null {
  const d = deref(s);
  const lower = key.toLowerCase();
  for (const [k, v] of Object.entries(d.properties ?? {})) {
    if (k.toLowerCase() === lower) return { key: k, schema: v, free: false };
  }
  for (const alt of d.oneOf ?? d.anyOf ?? []) {
    const c = child(alt, key);
    if (c) return c;
  }
  for (const [re, v] of Object.entries(d.patternProperties ?? {})) {
    if (new RegExp(re).test(key)) return { key, schema: v, free: false };
  }
  if (d.additionalProperties && typeof d.additionalProperties === 'object') {
    return { key, schema: d.additionalProperties, free: false };
  }
  // an object with neither properties nor a constraint on them (a plugin's own configuration)
  if (!d.properties && !d.patternProperties && d.additionalProperties === undefined && typesOf(d).includes('object')) {
    return { key, schema: {}, free: true };
  }
  return null;
}

function typedValue(label: string, raw: string, s: JsonSchema): unknown {
  const types = typesOf(s);
  if (types.includes('array')) {
    const item = deref(s).items ?? {};
    return raw.split(',').map((x) => typedValue(label, x.trim(), item));
  }
  if (types.includes('integer') && !types.includes('string')) {
    if (!/^-?\d+$/.test(raw)) throw new LabelError(label, `${JSON.stringify(raw)} is not an integer`);
    return Number(raw);
  }
  if (types.includes('number') && !types.includes('string')) {
    if (!Number.isFinite(Number(raw)) || raw.trim() === '') throw new LabelError(label, `${JSON.stringify(raw)} is not a number`);
    return Number(raw);
  }
  if (types.includes('number') && types.includes('string') && /^-?\d+(\.\d+)?$/.test(raw)) return Number(raw);
  if (types.includes('boolean')) {
    if (raw !== 'true' && raw !== 'false') throw new LabelError(label, `${JSON.stringify(raw)} is not a boolean`);
    return raw === 'true';
  }
  if (types.includes('object')) {
    // `traefik.http.routers.x.tls=true` enables an object with its defaults
    if (raw === 'true') return {};
    throw new LabelError(label, `an object field takes sub-keys, not ${JSON.stringify(raw)}`);
  }
  return raw;
}

/** "domains[0]" → ["domains", 0] */
function splitIndex(seg: string): [string, number | undefined] {
  const m = /^(.+)\[(\d+)\]$/.exec(seg);
  return m ? [m[1]!, Number(m[2])] : [seg, undefined];
}

type Tree = Record<string, unknown>;

function setPath(label: string, target: Tree, segments: string[], raw: string): void {
  let s: JsonSchema = schema();
  let node: Tree | unknown[] = target;
  let free = false;
  for (let i = 0; i < segments.length; i++) {
    const [seg, index] = splitIndex(segments[i]!);
    const last = i === segments.length - 1;
    let key = seg;
    if (!free) {
      const c = child(s, seg);
      if (!c) throw new LabelError(label, `unknown field ${JSON.stringify(seg)} (not in Traefik v3's dynamic configuration)`);
      key = c.key;
      s = c.schema;
      free = c.free;
    }
    const obj = node as Tree;
    if (index !== undefined) {
      if (!free && !typesOf(s).includes('array')) throw new LabelError(label, `${key} is not a list`);
      const arr = (obj[key] ??= []) as unknown[];
      if (!free) s = deref(s).items ?? {};
      if (last) {
        arr[index] = free ? raw : typedValue(label, raw, s);
        return;
      }
      node = (arr[index] ??= {}) as Tree;
      continue;
    }
    if (last) {
      if (key in obj && typeof obj[key] === 'object') {
        // `…sticky.cookie=true` next to `…sticky.cookie.name=x`: Traefik accepts both, in any order
        if (raw === 'true' && !free && typesOf(s).includes('object')) return;
        throw new LabelError(label, `${key} is set both as a value and with sub-keys`);
      }
      obj[key] = free ? raw : typedValue(label, raw, s);
      return;
    }
    const next = obj[key];
    if (next === undefined || (typeof next === 'object' && next !== null && Object.keys(next).length === 0)) obj[key] = next ?? {};
    else if (typeof next !== 'object') throw new LabelError(label, `${key} is set both as a value and with sub-keys`);
    node = obj[key] as Tree;
  }
}

/**
 * Convert one Swarm service's labels to dynamic configuration.
 * `swarmService` is the Swarm service name (stack_service); its servers become
 * `http://<swarmService>:<port>` (Traefik itself uses the task or VIP addresses).
 */
export function labelsToDynamic(labels: Record<string, string>, swarmService: string): Conversion {
  const provider: ProviderLabels = { enable: false };
  const config: Tree = {};
  const servers = new Map<string, { port?: number; scheme?: string; url?: string }>();
  for (const [label, raw] of Object.entries(labels)) {
    if (!label.startsWith('traefik.')) continue;
    const rest = label.slice('traefik.'.length).split('.');
    const lower = rest.map((x) => x.toLowerCase());
    if (lower.length === 1 && lower[0] === 'enable') {
      provider.enable = typedValue(label, raw, { type: 'boolean' }) as boolean;
      continue;
    }
    if (lower[0] === 'swarm' && lower.length === 2 && (lower[1] === 'network' || lower[1] === 'lbswarm')) {
      if (lower[1] === 'network') provider.network = raw;
      else provider.lbswarm = typedValue(label, raw, { type: 'boolean' }) as boolean;
      continue;
    }
    if (lower[0] === 'docker')
      throw new LabelError(label, 'traefik.docker.* labels are for the docker provider; Swarm services use traefik.swarm.* in Traefik v3');
    // loadbalancer.server.{port,scheme,url} exist only as labels: the provider turns them into servers
    if (lower[0] === 'http' && lower[1] === 'services' && lower[3] === 'loadbalancer' && lower[4] === 'server' && lower.length === 6) {
      const name = rest[2]!;
      const srv = servers.get(name) ?? {};
      if (lower[5] === 'port') srv.port = typedValue(label, raw, { type: 'integer' }) as number;
      else if (lower[5] === 'scheme') srv.scheme = raw;
      else if (lower[5] === 'url') srv.url = raw;
      else throw new LabelError(label, `unknown server field ${rest[5]}`);
      servers.set(name, srv);
      // make sure the service exists in the tree
      setPath(label, config, ['http', 'services', name, 'loadBalancer', 'passHostHeader'], 'true');
      continue;
    }
    if (!['http', 'tcp', 'udp', 'tls'].includes(lower[0]!)) throw new LabelError(label, `unknown label namespace ${rest[0]}`);
    setPath(label, config, rest, raw);
  }

  const http = (config.http ?? {}) as NonNullable<DynamicConfig['http']>;
  for (const [name, svc] of Object.entries(http.services ?? {})) {
    const lb = svc.loadBalancer as Record<string, unknown> | undefined;
    if (!lb) continue;
    const srv = servers.get(name);
    if (!srv?.port && !srv?.url) {
      throw new LabelError(
        `traefik.http.services.${name}`,
        'a Swarm service needs loadbalancer.server.port (Traefik cannot guess the port)',
      );
    }
    lb.servers = [{ url: srv.url ?? `${srv.scheme ?? 'http'}://${swarmService}:${srv.port}` }];
  }
  // the provider's default: a router without a service uses the only service of the container
  const serviceNames = Object.keys(http.services ?? {});
  for (const [name, router] of Object.entries(http.routers ?? {})) {
    if (router.service === undefined) {
      if (serviceNames.length !== 1) {
        throw new LabelError(`traefik.http.routers.${name}.service`, `missing, and the labels define ${serviceNames.length} services`);
      }
      router.service = serviceNames[0];
    }
    if (typeof router.rule !== 'string')
      throw new LabelError(`traefik.http.routers.${name}.rule`, 'missing (wpfarm never relies on the default rule)');
    parseRule(router.rule);
  }
  return { provider, config: config as DynamicConfig };
}

export interface ReferenceProblem {
  router: string;
  problem: string;
}

/**
 * Cross-check references the way Traefik resolves them at run time: a router's service and
 * middlewares must exist, either among the labels' own (provider "swarm") or, with an @file suffix,
 * in the file provider's configuration; @internal names are Traefik's own (api, dashboard, ...).
 */
export function checkReferences(fromLabels: DynamicConfig, fileConfig: DynamicConfig, entryPoints: string[]): ReferenceProblem[] {
  const problems: ReferenceProblem[] = [];
  const internalServices = new Set(['api@internal', 'dashboard@internal', 'ping@internal', 'prometheus@internal', 'noop@internal']);
  const exists = (kind: 'services' | 'middlewares', ref: string): boolean => {
    const [name, provider] = ref.split('@') as [string, string | undefined];
    if (provider === 'internal') return kind === 'services' ? internalServices.has(ref) : false;
    if (provider === 'file') return name in (fileConfig.http?.[kind] ?? {});
    if (provider === undefined || provider === 'swarm') return name in (fromLabels.http?.[kind] ?? {});
    return false;
  };
  for (const [name, r] of Object.entries(fromLabels.http?.routers ?? {})) {
    if (typeof r.service !== 'string' || !exists('services', r.service))
      problems.push({ router: name, problem: `service ${String(r.service)} does not exist` });
    for (const m of (r.middlewares as string[] | undefined) ?? []) {
      if (!exists('middlewares', m)) problems.push({ router: name, problem: `middleware ${m} does not exist` });
    }
    for (const ep of (r.entryPoints as string[] | undefined) ?? []) {
      if (!entryPoints.includes(ep))
        problems.push({ router: name, problem: `entry point ${ep} is not defined in the static configuration` });
    }
  }
  return problems;
}

// The wp-site role imports the site labels from here (agreed path); the generator lives in config.ts.
export { siteRouterLabels, siteName, type SiteInput, type SiteLabelOptions } from './config.ts';
