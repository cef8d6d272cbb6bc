// The lab's edge stand-in: Debian's HAProxy configured from Traefik's router model, for machines where
// Traefik's image cannot be pulled (the project's lab). Pure: the routers come from the very labels Traefik's
// swarm provider reads (labelsToDynamic), the middlewares from the file provider's dynamic configuration
// (traefikDynamicConfig) and the TLS options from it too; the text is templates/traefik/haproxy.cfg.ejs.
// What HAProxy cannot express of the model is listed (EdgeModel.notExpressed), never silently dropped.
//
// Mapping (Traefik → HAProxy):
//   router rule (Host, Path, PathPrefix, Method, Header, Query, ClientIP, ...)  → anonymous ACLs, the rule in
//     disjunctive normal form; the first router by priority (then name) sets txn.router
//   ipAllowList      → 403 unless the client address is in sourceRange
//   rateLimit        → a stick table per middleware: 429 when a client's requests per period exceed average + burst
//                      (a sliding window, not Traefik's token bucket: the same steady rate, a looser burst)
//   headers          → response headers set/removed (HSTS, frame options, nosniff, referrer, CSP, permissions)
//   compress         → gzip in the backends the router uses
//   retry            → retries on connection failures; circuitBreaker → not expressed (health checks instead)
//   plugin (CrowdSec) → not expressed
//   web entry point redirection → 301 to https; websecure TLS options → ssl-min-ver, ciphers, curves, strict-sni
//   forwardedHeaders.trustedIPs → the client is the last X-Forwarded-For hop only from those peers
import path from 'node:path';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';
import { traefikDynamicConfig, type TraefikSettings } from './config.ts';
import { labelsToDynamic, type DynamicConfig } from './labels.ts';
import { parseRule, ruleHosts, type RuleNode } from './rules.ts';

/** where the stand-in's container reads its certificates (the host's edge_standin_dir/certs, bind-mounted) */
export const STANDIN_CERT_DIR = '/usr/local/etc/haproxy/certs';
/** Backend slots per service (server-template): the most replicas the edge sends to. */
export const STANDIN_SERVER_SLOTS = 8;

export class StandinError extends Error {
  override name = 'StandinError';
}

/** A Swarm service with Traefik labels, as `docker service inspect` shows it. */
export interface LabelledService {
  service: string;
  labels: Record<string, string>;
}

export interface EdgeRouter {
  name: string;
  priority: number;
  /** the rule in disjunctive normal form: any term matches when all its HAProxy conditions do */
  terms: string[][];
  backend: string;
  middlewares: string[];
}

export interface EdgeBackend {
  name: string;
  host: string;
  port: number;
  healthPath?: string;
  healthInterval?: string;
  cookie?: { name: string; secure: boolean; httpOnly: boolean; sameSite?: string };
  compress: boolean;
  retries?: number;
}

export type EdgeMiddleware =
  | { name: string; kind: 'allow'; ranges: string[] }
  | { name: string; kind: 'rate'; limit: number; period: string; slot: number }
  | { name: string; kind: 'headers'; set: [string, string][]; del: string[] };

export interface EdgeModel {
  routers: EdgeRouter[];
  backends: EdgeBackend[];
  middlewares: EdgeMiddleware[];
  /** middleware name → routers using it */
  users: Record<string, string[]>;
  /** host names the routers match: one certificate each */
  hosts: string[];
  trustedForwarders: string[];
  tls: { minVersion: string; ciphers: string; curves: string; strictSni: boolean };
  /** what the stand-in does not do, with the reason */
  notExpressed: string[];
}

// Go's crypto/tls names (Traefik) → OpenSSL's (HAProxy)
const CIPHERS: Record<string, string> = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305: 'ECDHE-RSA-CHACHA20-POLY1305',
};
const CURVES: Record<string, string> = { X25519: 'X25519', CurveP256: 'P-256', CurveP384: 'P-384', CurveP521: 'P-521' };
const TLS_VERSIONS: Record<string, string> = { VersionTLS12: 'TLSv1.2', VersionTLS13: 'TLSv1.3' };

const KIND_ORDER: Record<EdgeMiddleware['kind'], number> = { allow: 0, rate: 1, headers: 2 };

/** A pattern HAProxy reads as one word: no white space, quotes, braces or backslashes. */
function word(what: string, v: string): string {
  if (v === '' || /[\s"'{}\\#]/.test(v)) throw new StandinError(`${what} ${JSON.stringify(v)} cannot be written as an HAProxy pattern`);
  return v;
}

/** A value inside double quotes (response headers). */
function quoted(v: string): string {
  if (/["\\\n]/.test(v)) throw new StandinError(`header value ${JSON.stringify(v)} holds a quote, backslash or newline`);
  return `"${v}"`;
}

type Lit = { neg: boolean; node: Extract<RuleNode, { type: 'matcher' }> };

/** Disjunctive normal form, negations pushed down to the matchers (rules are small: a few terms). */
function dnf(n: RuleNode, neg = false): Lit[][] {
  switch (n.type) {
    case 'matcher':
      return [[{ neg, node: n }]];
    case 'not':
      return dnf(n.expr, !neg);
    case 'and':
    case 'or': {
      const l = dnf(n.left, neg);
      const r = dnf(n.right, neg);
      // De Morgan: a negated AND is an OR of the negations and vice versa
      if ((n.type === 'or') !== neg) return [...l, ...r];
      return l.flatMap((a) => r.map((b) => [...a, ...b]));
    }
  }
}

/** One matcher as an HAProxy anonymous ACL. */
function condition({ neg, node }: Lit): string {
  const [a, b] = node.args as [string, string | undefined];
  const host = 'req.hdr(host),field(1,:),lower';
  const c = ((): string => {
    switch (node.name) {
      case 'Host':
        return `${host} -m str ${word('host', a.toLowerCase())}`;
      case 'HostRegexp':
        return `${host} -m reg ${word('host regexp', a)}`;
      case 'Path':
        return `path -m str ${word('path', a)}`;
      case 'PathPrefix':
        return `path -m beg ${word('path', a)}`;
      case 'PathRegexp':
        return `path -m reg ${word('path regexp', a)}`;
      case 'Method':
        return `method ${word('method', a)}`;
      case 'Header':
        return `req.hdr(${word('header', a)}) -m str ${word('header value', b ?? '')}`;
      case 'HeaderRegexp':
        return `req.hdr(${word('header', a)}) -m reg ${word('header regexp', b ?? '')}`;
      case 'Query':
        return b === undefined
          ? `url_param(${word('query', a)}) -m found`
          : `url_param(${word('query', a)}) -m str ${word('query value', b)}`;
      case 'QueryRegexp':
        return `url_param(${word('query', a)}) -m reg ${word('query regexp', b ?? '')}`;
      case 'ClientIP':
        return `src ${word('address', a)}`;
    }
  })();
  return `${neg ? '!' : ''}{ ${c} }`;
}

/** HAProxy's backend/ACL-safe name of a Traefik object. */
function ident(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_');
}

function fileMiddlewares(s: TraefikSettings): Record<string, Record<string, unknown>> {
  const dyn = traefikDynamicConfig(s) as DynamicConfig;
  return (dyn.http?.middlewares ?? {}) as Record<string, Record<string, unknown>>;
}

function periodSeconds(p: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(p);
  if (!m) throw new StandinError(`rate limit period ${p} is not a duration HAProxy can use (e.g. 1s, 10s, 1m)`);
  const n = Number(m[1]);
  return { ms: n / 1000, s: n, m: n * 60, h: n * 3600 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
}

/**
 * The stand-in's model: every router of the labelled services (Traefik's own dashboard excluded: it routes
 * to Traefik's API), the middlewares they use, one backend per service.
 */
export function edgeModel(s: TraefikSettings, services: readonly LabelledService[]): EdgeModel {
  const fileMw = fileMiddlewares(s);
  const routers: EdgeRouter[] = [];
  const backends = new Map<string, EdgeBackend>();
  const middlewares = new Map<string, EdgeMiddleware>();
  const users: Record<string, string[]> = {};
  const notExpressed = new Set<string>();
  const hosts = new Set<string>();
  let rateSlots = 0;

  const middleware = (ref: string, own: Record<string, Record<string, unknown>>, router: string): string | undefined => {
    const [n, provider] = ref.split('@') as [string, string | undefined];
    const def = provider === 'file' ? fileMw[n] : own[n];
    if (!def) throw new StandinError(`router ${router}: middleware ${ref} does not exist`);
    // the labels' own middlewares are Traefik's `<name>@swarm`: prefixed so that they never meet a file one
    const name = ident(provider === 'file' ? n : `swarm.${n}`);
    const kind = Object.keys(def)[0];
    const body = def[kind as string] as Record<string, unknown>;
    if (!middlewares.has(name)) {
      if (kind === 'ipAllowList') {
        const r = body.sourceRange;
        const ranges = (Array.isArray(r) ? r : String(r).split(',')).map((x) => word('address', String(x).trim()));
        middlewares.set(name, { name, kind: 'allow', ranges });
      } else if (kind === 'rateLimit') {
        const period = String(body.period ?? '1s');
        const limit = Number(body.average ?? 0) * Math.max(1, periodSeconds(period)) + Number(body.burst ?? 1);
        if (rateSlots >= 3) throw new StandinError('more than 3 rate-limit middlewares: HAProxy tracks 3 stick counters');
        middlewares.set(name, { name, kind: 'rate', limit, period: `${periodSeconds(period)}s`, slot: rateSlots++ });
      } else if (kind === 'headers') {
        const h = body as Record<string, unknown>;
        const set: [string, string][] = [];
        const sts = Number(h.stsSeconds ?? 0);
        if (sts > 0 || h.forceSTSHeader)
          set.push([
            'Strict-Transport-Security',
            `max-age=${sts}${h.stsIncludeSubdomains ? '; includeSubDomains' : ''}${h.stsPreload ? '; preload' : ''}`,
          ]);
        if (h.customFrameOptionsValue) set.push(['X-Frame-Options', String(h.customFrameOptionsValue)]);
        else if (h.frameDeny) set.push(['X-Frame-Options', 'DENY']);
        if (h.contentTypeNosniff) set.push(['X-Content-Type-Options', 'nosniff']);
        if (h.referrerPolicy) set.push(['Referrer-Policy', String(h.referrerPolicy)]);
        if (h.contentSecurityPolicy) set.push(['Content-Security-Policy', String(h.contentSecurityPolicy)]);
        if (h.permissionsPolicy) set.push(['Permissions-Policy', String(h.permissionsPolicy)]);
        const del: string[] = [];
        for (const [k, v] of Object.entries((h.customResponseHeaders ?? {}) as Record<string, string>)) {
          if (v === '') del.push(k);
          else set.push([k, v]);
        }
        middlewares.set(name, { name, kind: 'headers', set, del });
      } else if (kind === 'compress' || kind === 'retry') {
        return `${kind}:${JSON.stringify(body)}`;
      } else {
        notExpressed.add(`${kind === 'plugin' ? `plugin ${Object.keys(body)[0]}` : kind} (${ref})`);
        return undefined;
      }
    }
    return name;
  };

  for (const svc of [...services].sort((a, b) => (a.service < b.service ? -1 : 1))) {
    const { config } = labelsToDynamic(svc.labels, svc.service);
    const http = config.http ?? {};
    const own = (http.middlewares ?? {}) as Record<string, Record<string, unknown>>;
    for (const [sname, sdef] of Object.entries(http.services ?? {})) {
      if (sname.endsWith('noop')) continue;
      const lb = (sdef.loadBalancer ?? {}) as Record<string, unknown>;
      const url = new URL(String((lb.servers as Array<{ url: string }>)[0]!.url));
      const hc = lb.healthCheck as Record<string, unknown> | undefined;
      const ck = ((lb.sticky as Record<string, unknown> | undefined)?.cookie ?? undefined) as Record<string, unknown> | undefined;
      backends.set(sname, {
        name: ident(sname),
        host: url.hostname,
        port: Number(url.port || 80),
        ...(hc?.path ? { healthPath: word('health path', String(hc.path)), healthInterval: String(hc.interval ?? '15s') } : {}),
        ...(ck
          ? {
              cookie: {
                name: word('cookie', String(ck.name)),
                secure: String(ck.secure) === 'true',
                httpOnly: String(ck.httpOnly) === 'true',
                ...(ck.sameSite ? { sameSite: String(ck.sameSite) } : {}),
              },
            }
          : {}),
        compress: false,
      });
    }
    for (const [rname, r] of Object.entries(http.routers ?? {})) {
      const service = String(r.service);
      if (service.endsWith('@internal')) {
        notExpressed.add(`router ${rname} (Traefik's own ${service})`);
        continue;
      }
      const be = backends.get(service);
      if (!be) throw new StandinError(`router ${rname}: service ${service} is not defined by the labels of ${svc.service}`);
      const tree = parseRule(String(r.rule));
      for (const h of ruleHosts(tree)) hosts.add(h.toLowerCase());
      const mws: string[] = [];
      const refs = Array.isArray(r.middlewares) ? r.middlewares.map(String) : r.middlewares ? String(r.middlewares).split(',') : [];
      for (const ref of refs) {
        const m = middleware(ref.trim(), own, rname);
        if (m?.startsWith('compress:')) be.compress = true;
        else if (m?.startsWith('retry:')) be.retries = Number((JSON.parse(m.slice(6)) as { attempts?: number }).attempts ?? 1);
        else if (m) {
          mws.push(m);
          (users[m] ??= []).push(ident(rname));
        }
      }
      const priority = r.priority === undefined ? String(r.rule).length : Number(r.priority);
      routers.push({ name: ident(rname), priority, terms: dnf(tree).map((t) => t.map(condition)), backend: be.name, middlewares: mws });
    }
  }
  // HAProxy serves TLS only with at least one certificate: the edge's own name (Traefik's dashboard host) has one
  hosts.add(s.dashboardHost.toLowerCase());
  routers.sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : 1));
  const opts = ((traefikDynamicConfig(s).tls as Record<string, Record<string, Record<string, unknown>>>).options ?? {}).default ?? {};
  const mapList = (list: unknown, table: Record<string, string>, what: string): string =>
    ((list as string[] | undefined) ?? []).map((x) => table[x] ?? word(what, x)).join(':');
  return {
    routers,
    backends: [...backends.values()].sort((a, b) => (a.name < b.name ? -1 : 1)),
    // request rules in this order: allow lists (403), then rate limits (429); response headers last
    middlewares: [...middlewares.values()].sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || (a.name < b.name ? -1 : 1)),
    users,
    hosts: [...hosts].sort(),
    trustedForwarders: s.trustedForwarders.map((c) => word('address', c)),
    tls: {
      minVersion: TLS_VERSIONS[String(opts.minVersion ?? 'VersionTLS12')] ?? 'TLSv1.2',
      ciphers: mapList(opts.cipherSuites, CIPHERS, 'cipher'),
      curves: mapList(opts.curvePreferences, CURVES, 'curve'),
      strictSni: opts.sniStrict === true,
    },
    notExpressed: [...notExpressed].sort(),
  };
}

/** The file name of a host's certificate (PEM: certificate, then key) where the stand-in reads it. */
export function certFile(host: string): string {
  return `edge-cert-${host}.pem`;
}

/** HAProxy's crt-list: one certificate per host (SNI selects it). */
export function crtList(m: EdgeModel): string {
  return m.hosts.map((h) => `${path.posix.join(STANDIN_CERT_DIR, certFile(h))} [alpn h2,http/1.1] ${h}\n`).join('');
}

/** haproxy.cfg of the stand-in (templates/traefik/haproxy.cfg.ejs). */
export function haproxyConfig(m: EdgeModel, o: { crtList: string; resolver?: string; slots?: number }): string {
  return renderTemplate(templatePath('traefik', 'haproxy.cfg.ejs'), {
    m,
    crtListPath: o.crtList,
    resolver: o.resolver ?? '127.0.0.11:53',
    slots: o.slots ?? STANDIN_SERVER_SLOTS,
    quoted,
  });
}
