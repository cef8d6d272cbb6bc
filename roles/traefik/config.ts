// Pure generators for the traefik role: static configuration, dynamic (file provider) configuration,
// the Swarm stack file, and the labels a WordPress site's service carries.
// Inputs are inventory variables; outputs are plain objects and their YAML text. No I/O here.
import { createHash } from 'node:crypto';
import YAML from 'yaml';
import type { Vars } from '../../lib/types.ts';
import { CLOUDFLARE_IPS } from './cloudflare-ips.ts';
import { isIpOrCidr } from './rules.ts';
import { LAPI_TLS } from '../crowdsec/config.ts';
import {
  RESILIENCE_CHAIN,
  RESILIENCE_MW,
  ResilienceVarsError,
  resilienceMiddlewares,
  resilienceSettings,
  type ResilienceSettings,
} from './resilience.ts';

/** where the Traefik container sees the CrowdSec local API's CA certificate (bind-mounted from the host) */
const LAPI_CA_IN_TRAEFIK = '/etc/traefik/crowdsec-ca.crt';

export const LETS_ENCRYPT_PRODUCTION = 'https://acme-v02.api.letsencrypt.org/directory';
export const LETS_ENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory';
export const CERT_RESOLVER = 'le';
/** Pinned: a moving tag is not re-pulled reliably by `docker stack deploy`. */
export const DEFAULT_TRAEFIK_IMAGE = 'traefik:v3.5.3';
export const CROWDSEC_PLUGIN_MODULE = 'github.com/maxlerebourg/crowdsec-bouncer-traefik-plugin';

/**
 * How certificates are obtained.
 * - `http`: HTTP-01 on :80 by ONE Traefik replica that owns acme.json. The stack runs one replica
 *   (replicated, stop-first updates, so two owners never overlap) on a manager, and acme.json lives
 *   in `acme_storage_dir`, which must be on storage every manager mounts (the GlusterFS volume), so a
 *   rescheduled replica keeps the certificates instead of ordering them again.
 * - `cloudflare`: DNS-01 through Cloudflare's API. Every manager runs a replica (global mode, HA),
 *   each with its OWN acme.json on a node-local volume (acme.json is never shared between replicas).
 *   Each replica orders its own certificates: with M managers a site costs M certificates per
 *   issuance, which counts against Let's Encrypt's "5 duplicate certificates per week" limit; the
 *   generator refuses more than 4 managers in this mode (see letsEncryptBudget).
 */
export type AcmeChallenge = 'http' | 'cloudflare';

export interface TraefikSettings {
  image: string;
  network: string;
  endpointMode: 'vip' | 'dnsrr';
  dashboardHost: string;
  managementCidrs: string[];
  acmeEmail: string;
  acmeChallenge: AcmeChallenge;
  acmeStaging: boolean;
  acmeStorageDir: string;
  managers: number;
  /** client traffic arrives through Cloudflare's proxy */
  cloudflareProxied: boolean;
  trustedForwarders: string[];
  logDir: string;
  rateLimit: { average: number; burst: number; period: string };
  hstsSeconds: number;
  contentSecurityPolicy: string;
  crowdsec: { enabled: boolean; lapiUrl: string; mode: 'stream' | 'live'; pluginVersion: string };
  /** names of the Docker secrets (content-hashed by the role); defaults are the plain names */
  secretNames: { cloudflareToken: string; bouncerKey: string };
  /** circuit breaker and retries on the site routers (resilience.ts) */
  resilience: ResilienceSettings;
}

export class TraefikVarsError extends Error {
  override name = 'TraefikVarsError';
}

function str(vars: Vars, key: string, dflt?: string): string {
  const v = vars[key] ?? dflt;
  if (typeof v !== 'string' || v === '') throw new TraefikVarsError(`variable ${key} must be a non-empty string`);
  return v;
}

function strList(vars: Vars, key: string, dflt?: readonly string[]): string[] {
  const v = vars[key] ?? dflt;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new TraefikVarsError(`variable ${key} must be a list of strings`);
  return [...(v as string[])];
}

function bool(vars: Vars, key: string, dflt: boolean): boolean {
  let v = vars[key] ?? dflt;
  // -e key=value on the command line gives strings
  if (v === 'true' || v === 'false') v = v === 'true';
  if (typeof v !== 'boolean') throw new TraefikVarsError(`variable ${key} must be true or false`);
  return v;
}

function num(vars: Vars, key: string, dflt: number): number {
  let v = vars[key] ?? dflt;
  if (typeof v === 'string' && /^\d+(\.\d+)?$/.test(v)) v = Number(v);
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new TraefikVarsError(`variable ${key} must be a number`);
  return v;
}

/** Resolve and check the role's inventory variables (documented in docs/roles/traefik.md). */
export function traefikSettings(vars: Vars): TraefikSettings {
  const managementCidrs = strList(vars, 'management_cidrs');
  if (managementCidrs.length === 0) throw new TraefikVarsError('management_cidrs must not be empty (it guards the dashboard and wp-admin)');
  for (const c of managementCidrs) if (!isIpOrCidr(c)) throw new TraefikVarsError(`management_cidrs: ${c} is not an address or CIDR`);
  const endpointMode = str(vars, 'swarm_endpoint_mode', 'vip');
  if (endpointMode !== 'vip' && endpointMode !== 'dnsrr') throw new TraefikVarsError('swarm_endpoint_mode must be vip or dnsrr');
  const acmeChallenge = str(vars, 'acme_challenge', vars.cloudflare_api_token_env ? 'cloudflare' : 'http');
  if (acmeChallenge !== 'http' && acmeChallenge !== 'cloudflare') throw new TraefikVarsError('acme_challenge must be http or cloudflare');
  const acmeEmail = str(vars, 'acme_email');
  if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(acmeEmail)) throw new TraefikVarsError(`acme_email ${acmeEmail} is not an e-mail address`);
  const cloudflareProxied = bool(vars, 'cloudflare_proxied', true);
  const trustedForwarders = cloudflareProxied ? strList(vars, 'cloudflare_ips', CLOUDFLARE_IPS) : [];
  for (const c of trustedForwarders) if (!isIpOrCidr(c)) throw new TraefikVarsError(`cloudflare_ips: ${c} is not a CIDR`);
  const rl = (vars.traefik_rate_limit ?? {}) as Record<string, unknown>;
  const crowdsecEnabled = bool(vars, 'crowdsec_bouncer_enabled', true);
  const crowdsecMode = str(vars, 'crowdsec_bouncer_mode', 'stream');
  if (crowdsecMode !== 'stream' && crowdsecMode !== 'live') throw new TraefikVarsError('crowdsec_bouncer_mode must be stream or live');
  let resilience: ResilienceSettings;
  try {
    resilience = resilienceSettings(vars);
  } catch (e) {
    throw e instanceof ResilienceVarsError ? new TraefikVarsError(e.message) : e;
  }
  const settings: TraefikSettings = {
    image: str(vars, 'traefik_image', DEFAULT_TRAEFIK_IMAGE),
    network: str(vars, 'traefik_network', 'traefik-public'),
    endpointMode,
    dashboardHost: str(vars, 'traefik_dashboard_host'),
    managementCidrs,
    acmeEmail,
    acmeChallenge,
    acmeStaging: bool(vars, 'acme_staging', true),
    acmeStorageDir: str(vars, 'acme_storage_dir', acmeChallenge === 'http' ? '/mnt/gluster/traefik-acme' : '/var/lib/traefik-acme'),
    managers: num(vars, 'swarm_managers', 3),
    cloudflareProxied,
    trustedForwarders,
    logDir: str(vars, 'traefik_log_dir', '/var/log/traefik'),
    rateLimit: {
      average: typeof rl.average === 'number' ? rl.average : 50,
      burst: typeof rl.burst === 'number' ? rl.burst : 100,
      period: typeof rl.period === 'string' ? rl.period : '1s',
    },
    hstsSeconds: num(vars, 'hsts_seconds', 31536000),
    contentSecurityPolicy: str(
      vars,
      'content_security_policy',
      // WordPress core and the block editor need inline scripts/styles and data: images.
      "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' https:; style-src 'self' 'unsafe-inline' https:; img-src 'self' data: https:; font-src 'self' data: https:; connect-src 'self' https:; frame-ancestors 'self'; base-uri 'self'; form-action 'self'; upgrade-insecure-requests",
    ),
    crowdsec: {
      enabled: crowdsecEnabled,
      lapiUrl: str(vars, 'crowdsec_lapi_url', 'http://crowdsec-lapi:8080'),
      mode: crowdsecMode,
      pluginVersion: str(vars, 'crowdsec_bouncer_plugin_version', 'v1.4.2'),
    },
    secretNames: {
      cloudflareToken: str(vars, 'traefik_cloudflare_secret_name', 'traefik_cf_dns_api_token'),
      bouncerKey: str(vars, 'traefik_bouncer_secret_name', 'traefik_crowdsec_bouncer_key'),
    },
    resilience,
  };
  if (settings.hstsSeconds < 0) throw new TraefikVarsError('hsts_seconds must be >= 0');
  if (settings.acmeChallenge === 'cloudflare' && settings.managers > 4) {
    throw new TraefikVarsError(
      `acme_challenge=cloudflare runs one ACME owner per manager: ${settings.managers} managers would order ${settings.managers} duplicate certificates per site, over Let's Encrypt's 5 duplicates per week with no margin for a re-issue`,
    );
  }
  return settings;
}

/** Entry points: name → container port. */
export const ENTRY_POINTS = { web: 80, websecure: 443, metrics: 8082 } as const;

/** Traefik's static configuration (traefik.yml). */
export function traefikStaticConfig(s: TraefikSettings): Record<string, unknown> {
  const forwardedHeaders = s.trustedForwarders.length ? { forwardedHeaders: { trustedIPs: s.trustedForwarders } } : {};
  const acme: Record<string, unknown> = {
    email: s.acmeEmail,
    storage: '/acme/acme.json',
    caServer: s.acmeStaging ? LETS_ENCRYPT_STAGING : LETS_ENCRYPT_PRODUCTION,
    keyType: 'EC256',
  };
  if (s.acmeChallenge === 'http') acme.httpChallenge = { entryPoint: 'web' };
  else acme.dnsChallenge = { provider: 'cloudflare', resolvers: ['1.1.1.1:53', '1.0.0.1:53'], propagation: { delayBeforeChecks: '10s' } };
  const cfg: Record<string, unknown> = {
    global: { checkNewVersion: false, sendAnonymousUsage: false },
    core: { defaultRuleSyntax: 'v3' },
    log: { level: 'INFO', format: 'json' },
    accessLog: {
      // read by CrowdSec's traefik-logs parser (JSON lines), see roles/crowdsec
      filePath: `/var/log/traefik/access.log`,
      format: 'json',
      bufferingSize: 100,
      fields: {
        defaultMode: 'keep',
        names: { StartLocal: 'drop' },
        headers: {
          defaultMode: 'drop',
          names: { 'User-Agent': 'keep', Referer: 'keep', 'Cf-Connecting-Ip': 'keep', 'X-Forwarded-For': 'keep', 'Content-Type': 'keep' },
        },
      },
    },
    api: { dashboard: true, insecure: false, disableDashboardAd: true },
    ping: { entryPoint: 'metrics' },
    metrics: {
      prometheus: {
        entryPoint: 'metrics',
        addEntryPointsLabels: true,
        addRoutersLabels: true,
        addServicesLabels: true,
        buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      },
    },
    entryPoints: {
      web: {
        address: `:${ENTRY_POINTS.web}`,
        ...forwardedHeaders,
        http: { redirections: { entryPoint: { to: 'websecure', scheme: 'https', permanent: true } } },
      },
      websecure: {
        address: `:${ENTRY_POINTS.websecure}`,
        ...forwardedHeaders,
        http3: { advertisedPort: ENTRY_POINTS.websecure },
        http: { tls: { certResolver: CERT_RESOLVER } },
        transport: { respondingTimeouts: { readTimeout: '60s', writeTimeout: '300s', idleTimeout: '180s' } },
      },
      metrics: { address: `:${ENTRY_POINTS.metrics}` },
    },
    providers: {
      swarm: {
        endpoint: 'unix:///var/run/docker.sock',
        exposedByDefault: false,
        network: s.network,
        watch: true,
      },
      file: { filename: '/etc/traefik/dynamic.yml', watch: true },
    },
    certificatesResolvers: { [CERT_RESOLVER]: { acme } },
  };
  if (s.crowdsec.enabled) {
    cfg.experimental = { plugins: { crowdsec: { moduleName: CROWDSEC_PLUGIN_MODULE, version: s.crowdsec.pluginVersion } } };
  }
  return cfg;
}

/** Client-IP strategy for middlewares: behind Cloudflare the client is the last X-Forwarded-For hop
 *  (Cloudflare appends the address it saw; Traefik strips the header from untrusted senders). */
function ipStrategy(s: TraefikSettings): Record<string, unknown> {
  return s.cloudflareProxied ? { ipStrategy: { depth: 1 } } : {};
}

/** Middleware names in the file provider; sites refer to them as `<name>@file`. */
export const MW = {
  headers: 'secure-headers',
  rateLimit: 'rate-limit',
  adminAllow: 'wp-admin-allowlist',
  dashboardAllow: 'dashboard-allowlist',
  crowdsec: 'crowdsec',
  compress: 'compress',
  ...RESILIENCE_MW,
} as const;

/** Dynamic configuration read through the file provider (dynamic.yml): TLS options and shared middlewares. */
export function traefikDynamicConfig(s: TraefikSettings): Record<string, unknown> {
  const middlewares: Record<string, unknown> = {
    [MW.headers]: {
      headers: {
        stsSeconds: s.hstsSeconds,
        stsIncludeSubdomains: true,
        stsPreload: s.hstsSeconds >= 31536000,
        forceSTSHeader: true,
        // WordPress' own admin frames same-origin pages: SAMEORIGIN rather than DENY
        customFrameOptionsValue: 'SAMEORIGIN',
        contentTypeNosniff: true,
        referrerPolicy: 'strict-origin-when-cross-origin',
        contentSecurityPolicy: s.contentSecurityPolicy,
        permissionsPolicy: 'camera=(), microphone=(), geolocation=(), payment=()',
        customResponseHeaders: { 'X-Powered-By': '', Server: '' },
      },
    },
    [MW.rateLimit]: {
      rateLimit: { average: s.rateLimit.average, burst: s.rateLimit.burst, period: s.rateLimit.period, sourceCriterion: ipStrategy(s) },
    },
    [MW.adminAllow]: { ipAllowList: { sourceRange: s.managementCidrs, ...ipStrategy(s) } },
    [MW.dashboardAllow]: { ipAllowList: { sourceRange: s.managementCidrs, ...ipStrategy(s) } },
    [MW.compress]: { compress: {} },
    ...resilienceMiddlewares(s.resilience),
  };
  if (s.crowdsec.enabled) {
    const lapi = new URL(s.crowdsec.lapiUrl);
    middlewares[MW.crowdsec] = {
      plugin: {
        crowdsec: {
          enabled: true,
          logLevel: 'INFO',
          crowdsecMode: s.crowdsec.mode,
          updateIntervalSeconds: 15,
          defaultDecisionSeconds: 60,
          crowdsecLapiScheme: lapi.protocol.replace(':', ''),
          crowdsecLapiHost: lapi.host,
          crowdsecLapiKeyFile: '/run/secrets/crowdsec_bouncer_key',
          // the local API serves TLS with the crowdsec role's own CA; its certificate is on every edge host
          ...(lapi.protocol === 'https:' ? { crowdsecLapiTLSCertificateAuthorityFile: LAPI_CA_IN_TRAEFIK } : {}),
          // client IPs come from Cloudflare's forwarded header only when the hop is Cloudflare
          forwardedHeadersTrustedIPs: s.trustedForwarders,
          forwardedHeadersCustomName: s.cloudflareProxied ? 'Cf-Connecting-Ip' : 'X-Forwarded-For',
          // management addresses are never banned by the bouncer (they still go through the allow lists)
          clientTrustedIPs: s.managementCidrs,
        },
      },
    };
  }
  return {
    tls: {
      options: {
        default: {
          minVersion: 'VersionTLS12',
          sniStrict: true,
          cipherSuites: [
            'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
            'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
            'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
            'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
            'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305',
            'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305',
          ],
          curvePreferences: ['X25519', 'CurveP256', 'CurveP384'],
        },
      },
    },
    http: { middlewares },
  };
}

/** The middlewares every site router gets, in order (outermost first). The circuit breaker and the retries come
 *  last, next to the service: a request refused by CrowdSec or the rate limit is neither retried nor counted. */
export function siteMiddlewares(crowdsec: boolean): string[] {
  return [
    ...(crowdsec ? [`${MW.crowdsec}@file`] : []),
    `${MW.rateLimit}@file`,
    `${MW.headers}@file`,
    `${MW.compress}@file`,
    ...RESILIENCE_CHAIN,
  ];
}

export interface SiteInput {
  /** site id, e.g. "site12" or 12 */
  id: string | number;
  domains: string[];
  /** sticky sessions (cookie) for this site's replicas */
  sticky?: boolean;
  /** CIDRs allowed on /wp-admin and /wp-login.php; default: the farm's management_cidrs (file middleware) */
  adminAllowlist?: string[];
  /** container port of the site's web server */
  port: number;
}

export interface SiteLabelOptions {
  network?: string;
  /** behind Cloudflare: client IP from X-Forwarded-For depth 1 */
  cloudflareProxied?: boolean;
  crowdsec?: boolean;
  /** vip in production, dnsrr in the lab (no IPVS): with vip Traefik sends to the service VIP */
  endpointMode?: 'vip' | 'dnsrr';
}

const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/;

/** Router/service/middleware name for a site id: "12" → "site12", "shop-1" → "site-shop-1". */
export function siteName(id: string | number): string {
  const s = String(id).toLowerCase();
  if (!/^[a-z0-9][a-z0-9-]*$/.test(s)) throw new TraefikVarsError(`site id ${JSON.stringify(id)} must be letters, digits and dashes`);
  return /^\d+$/.test(s) ? `site${s}` : s.startsWith('site') ? s : `site-${s}`;
}

/**
 * The Traefik labels (for `deploy.labels` of the site's Swarm service). Called by the wp-site role.
 * Two routers: the site, and its admin area (/wp-admin, /wp-login.php; admin-ajax.php stays public
 * because themes call it from the front end) behind an IP allow list.
 */
export function siteRouterLabels(site: SiteInput, opts: SiteLabelOptions = {}): Record<string, string> {
  const name = siteName(site.id);
  if (site.domains.length === 0) throw new TraefikVarsError(`${name}: no domains`);
  for (const d of site.domains)
    if (!DOMAIN.test(d)) throw new TraefikVarsError(`${name}: ${JSON.stringify(d)} is not a lower-case domain name`);
  if (!Number.isInteger(site.port) || site.port < 1 || site.port > 65535)
    throw new TraefikVarsError(`${name}: port ${site.port} out of range`);
  const hosts = site.domains.map((d) => `Host(\`${d}\`)`).join(' || ');
  const hostExpr = site.domains.length > 1 ? `(${hosts})` : hosts;
  const admin = `${hostExpr} && (PathPrefix(\`/wp-admin\`) || Path(\`/wp-login.php\`)) && !Path(\`/wp-admin/admin-ajax.php\`)`;
  const common = siteMiddlewares(opts.crowdsec ?? true);
  let adminAllow = `${MW.adminAllow}@file`;
  const r = `traefik.http.routers.${name}`;
  const labels: Record<string, string> = {
    'traefik.enable': 'true',
    'traefik.swarm.network': opts.network ?? 'traefik-public',
    [`${r}.rule`]: hosts,
    [`${r}.entrypoints`]: 'websecure',
    [`${r}.tls.certresolver`]: CERT_RESOLVER,
    [`${r}.service`]: name,
    [`${r}.priority`]: '10',
    [`${r}.middlewares`]: common.join(','),
    [`traefik.http.services.${name}.loadbalancer.server.port`]: String(site.port),
    [`traefik.http.services.${name}.loadbalancer.passhostheader`]: 'true',
    [`traefik.http.services.${name}.loadbalancer.healthcheck.path`]: '/wp-includes/images/blank.gif',
    [`traefik.http.services.${name}.loadbalancer.healthcheck.interval`]: '15s',
    [`traefik.http.services.${name}.loadbalancer.healthcheck.timeout`]: '3s',
  };
  if (opts.endpointMode === 'vip') labels['traefik.swarm.lbswarm'] = 'true';
  if (site.adminAllowlist) {
    if (site.adminAllowlist.length === 0) throw new TraefikVarsError(`${name}: adminAllowlist is empty (nobody could log in)`);
    for (const c of site.adminAllowlist) if (!isIpOrCidr(c)) throw new TraefikVarsError(`${name}: ${c} is not an address or CIDR`);
    const m = `traefik.http.middlewares.${name}-admin-allow.ipallowlist`;
    labels[`${m}.sourcerange`] = site.adminAllowlist.join(',');
    if (opts.cloudflareProxied ?? true) labels[`${m}.ipstrategy.depth`] = '1';
    adminAllow = `${name}-admin-allow`;
  }
  const ra = `traefik.http.routers.${name}-admin`;
  Object.assign(labels, {
    [`${ra}.rule`]: admin,
    [`${ra}.entrypoints`]: 'websecure',
    [`${ra}.tls.certresolver`]: CERT_RESOLVER,
    [`${ra}.service`]: name,
    [`${ra}.priority`]: '20',
    [`${ra}.middlewares`]: [adminAllow, ...common].join(','),
  });
  if (site.sticky) {
    const c = `traefik.http.services.${name}.loadbalancer.sticky.cookie`;
    labels[`${c}.name`] = `wpfarm_${name.replace(/-/g, '_')}`;
    labels[`${c}.secure`] = 'true';
    labels[`${c}.httponly`] = 'true';
    labels[`${c}.samesite`] = 'lax';
  }
  return labels;
}

/** Labels of the Traefik service itself: the dashboard, on the management network only. */
export function dashboardLabels(s: TraefikSettings): Record<string, string> {
  const r = 'traefik.http.routers.dashboard';
  return {
    'traefik.enable': 'true',
    'traefik.swarm.network': s.network,
    [`${r}.rule`]: `Host(\`${s.dashboardHost}\`) && (PathPrefix(\`/api\`) || PathPrefix(\`/dashboard\`))`,
    [`${r}.entrypoints`]: 'websecure',
    [`${r}.tls.certresolver`]: CERT_RESOLVER,
    [`${r}.service`]: 'api@internal',
    [`${r}.middlewares`]: `${MW.dashboardAllow}@file,${MW.headers}@file`,
    // the swarm provider wants a port even for a service that only routes to api@internal
    'traefik.http.services.traefik-noop.loadbalancer.server.port': String(ENTRY_POINTS.metrics),
  };
}

export function hash8(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}

export interface StackBundle {
  /** files uploaded beside the stack file (relative names) */
  files: Record<string, string>;
  /** docker stack deploy -c traefik-stack.yml traefik */
  stack: Record<string, unknown>;
  stackYaml: string;
}

/**
 * The Traefik Swarm stack: host-mode 80/443 (TCP+UDP for HTTP/3) on the managers.
 * `externalConfigs`: the configs are created beforehand (dockerConfig, same content-hashed names) and
 * the stack refers to them as external; otherwise `docker stack deploy` creates them from the files.
 */
export function traefikStack(s: TraefikSettings, opts: { externalConfigs?: boolean } = {}): StackBundle {
  const staticYaml = toYaml(traefikStaticConfig(s));
  const dynamicYaml = toYaml(traefikDynamicConfig(s));
  const secrets: Record<string, unknown> = {};
  const serviceSecrets: Array<Record<string, unknown>> = [];
  const environment: Record<string, string> = {};
  if (s.acmeChallenge === 'cloudflare') {
    secrets.cf_dns_api_token = { external: true, name: s.secretNames.cloudflareToken };
    serviceSecrets.push({ source: 'cf_dns_api_token', target: 'cf_dns_api_token', mode: 0o400 });
    environment.CF_DNS_API_TOKEN_FILE = '/run/secrets/cf_dns_api_token';
  }
  if (s.crowdsec.enabled) {
    secrets.crowdsec_bouncer_key = { external: true, name: s.secretNames.bouncerKey };
    serviceSecrets.push({ source: 'crowdsec_bouncer_key', target: 'crowdsec_bouncer_key', mode: 0o400 });
  }
  const single = s.acmeChallenge === 'http';
  const deploy: Record<string, unknown> = {
    mode: single ? 'replicated' : 'global',
    ...(single ? { replicas: 1 } : {}),
    endpoint_mode: s.endpointMode,
    placement: { constraints: ['node.role == manager'], ...(single ? { max_replicas_per_node: 1 } : {}) },
    // host-mode ports cannot be bound twice on a node, and a single ACME owner must never overlap
    update_config: { parallelism: 1, delay: '10s', order: 'stop-first', failure_action: 'rollback', monitor: '30s' },
    rollback_config: { parallelism: 1, order: 'stop-first' },
    restart_policy: { condition: 'any', delay: '5s', window: '60s' },
    resources: { limits: { cpus: '1.0', memory: '512M' }, reservations: { memory: '128M' } },
    labels: dashboardLabels(s),
  };
  const stack: Record<string, unknown> = {
    version: '3.8',
    services: {
      traefik: {
        image: s.image,
        command: ['--configFile=/etc/traefik/traefik.yml'],
        ports: [
          { target: 80, published: 80, protocol: 'tcp', mode: 'host' },
          { target: 443, published: 443, protocol: 'tcp', mode: 'host' },
          { target: 443, published: 443, protocol: 'udp', mode: 'host' },
          // Prometheus metrics and /ping for the monitoring host; the hosts' firewall (roles/common) must
          // allow this port from the monitoring hosts only
          { target: ENTRY_POINTS.metrics, published: ENTRY_POINTS.metrics, protocol: 'tcp', mode: 'host' },
        ],
        volumes: [
          { type: 'bind', source: '/var/run/docker.sock', target: '/var/run/docker.sock', read_only: true },
          { type: 'bind', source: s.logDir, target: '/var/log/traefik' },
          { type: 'bind', source: s.acmeStorageDir, target: '/acme' },
          ...(s.crowdsec.enabled && s.crowdsec.lapiUrl.startsWith('https:')
            ? [{ type: 'bind', source: LAPI_TLS.caCert, target: LAPI_CA_IN_TRAEFIK, read_only: true }]
            : []),
        ],
        configs: [
          { source: 'traefik_static', target: '/etc/traefik/traefik.yml', mode: 0o444 },
          { source: 'traefik_dynamic', target: '/etc/traefik/dynamic.yml', mode: 0o444 },
        ],
        ...(serviceSecrets.length ? { secrets: serviceSecrets } : {}),
        ...(Object.keys(environment).length ? { environment } : {}),
        networks: [s.network],
        healthcheck: {
          test: ['CMD', 'traefik', 'healthcheck', '--ping', '--configFile=/etc/traefik/traefik.yml'],
          interval: '10s',
          timeout: '5s',
          retries: 3,
          start_period: '20s',
        },
        deploy,
      },
    },
    networks: {
      // created by roles/swarm-manager (OVERLAY_NETWORKS, with the farm's encryption setting) before any stack;
      // this stack and every site stack join it as external (a stack-created network of the same name fails:
      // "network with name traefik-public already exists", seen in the lab)
      [s.network]: { external: true, name: s.network },
    },
    configs: opts.externalConfigs
      ? {
          traefik_static: { external: true, name: `traefik_static_${hash8(staticYaml)}` },
          traefik_dynamic: { external: true, name: `traefik_dynamic_${hash8(dynamicYaml)}` },
        }
      : {
          traefik_static: { name: `traefik_static_${hash8(staticYaml)}`, file: './traefik.yml' },
          traefik_dynamic: { name: `traefik_dynamic_${hash8(dynamicYaml)}`, file: './dynamic.yml' },
        },
    ...(Object.keys(secrets).length ? { secrets } : {}),
  };
  return { files: { 'traefik.yml': staticYaml, 'dynamic.yml': dynamicYaml }, stack, stackYaml: toYaml(stack) };
}

export function toYaml(doc: unknown): string {
  return YAML.stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false });
}

/** Let's Encrypt limits (https://letsencrypt.org/docs/rate-limits/, checked for this role). */
export const LE_LIMITS = {
  certificatesPerRegisteredDomainPerWeek: 50,
  duplicateCertificatesPerWeek: 5,
  failedValidationsPerHostnamePerHour: 5,
  newOrdersPer3Hours: 300,
} as const;

export interface AcmeBudget {
  /** certificates ordered when `sites` new sites are added */
  orders: number;
  /** how many new sites may be added per 3 hours without hitting the new-orders limit */
  sitesPer3Hours: number;
  /** duplicates of one site's certificate per issuance */
  duplicatesPerSite: number;
  ok: boolean;
  reasons: string[];
}

/**
 * How many ACME orders a rollout costs, given the ownership model (one order per owner per site),
 * and whether it fits Let's Encrypt's limits. `perRegisteredDomain` is the largest number of sites
 * sharing one registered domain (subdomain sites of one customer count together).
 */
export function letsEncryptBudget(
  s: Pick<TraefikSettings, 'acmeChallenge' | 'managers'>,
  sites: number,
  perRegisteredDomain = 1,
): AcmeBudget {
  const owners = s.acmeChallenge === 'http' ? 1 : s.managers;
  const orders = sites * owners;
  const reasons: string[] = [];
  const sitesPer3Hours = Math.floor(LE_LIMITS.newOrdersPer3Hours / owners);
  if (orders > LE_LIMITS.newOrdersPer3Hours)
    reasons.push(
      `${orders} orders exceed ${LE_LIMITS.newOrdersPer3Hours} new orders per 3 hours: add at most ${sitesPer3Hours} sites per 3 hours`,
    );
  if (owners >= LE_LIMITS.duplicateCertificatesPerWeek)
    reasons.push(
      `${owners} ACME owners leave no duplicate certificate for a re-issue (limit ${LE_LIMITS.duplicateCertificatesPerWeek} per week)`,
    );
  if (perRegisteredDomain * owners > LE_LIMITS.certificatesPerRegisteredDomainPerWeek) {
    reasons.push(
      `${perRegisteredDomain * owners} certificates for one registered domain exceed ${LE_LIMITS.certificatesPerRegisteredDomainPerWeek} per week`,
    );
  }
  return { orders, sitesPer3Hours, duplicatesPerSite: owners, ok: reasons.length === 0, reasons };
}
