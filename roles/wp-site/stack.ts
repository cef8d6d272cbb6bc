// Per-site Swarm stack: a pure renderer (site record + farm settings → stack YAML and the secrets it
// needs) and a cheap differ (rendered stacks vs what the managers report), so that a no-change
// reconcile of every site costs a constant number of round trips per manager:
//   `docker service ls --format '{{json .}}'`  (all services of all stacks) and
//   `sha256sum` of the last deployed renders that lib/ops/docker.ts stackDeploy keeps in
//   /var/lib/wpfarm/stacks/<stack>.yml, both in ONE round trip (farmProbeScript)
// and only the sites whose digest or live state differs are deployed (with stackDeploy).
//
// Secret VALUES never enter this module: the role hashes them (secretHash) and passes the hashes.

import { createHash } from 'node:crypto';
import { quote } from 'zx';
import { siteDomains, type SiteRecord } from './site.ts';
import { emitYaml } from './yaml-emit.ts';
import { siteRouterLabels } from '../traefik/labels.ts';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';

/** The per-site secrets (each one Swarm secret with a content-hashed name). */
export const SITE_SECRET_KEYS = ['db_password', 'wp_keys'] as const;
export type SiteSecretKey = (typeof SITE_SECRET_KEYS)[number];

/** Farm-wide inputs of the renderer (from the inventory and from the image build). */
/**
 * A site service's health check. Swarm routes to a task (service DNS) only once it is healthy, and Debian's Docker
 * (20.10) runs the first check one interval after the start (no start_interval before Docker 25): the interval is
 * the floor of a new site's time to serve and of each task's turn in a rolling update. 5 s by default (Docker's
 * default is 30 s; these images' own HEALTHCHECK says 15 s); three failed checks mark a task unhealthy, so a broken
 * task is seen in 15 s. Cost: one `docker exec` of a small script per container per interval (dockerd, containerd
 * and runc start it; not measured yet), on every node: at 20-25 sites per node, ~20-25 execs per second. A farm
 * whose nodes are CPU-bound trades it with wp_health_interval / wp_health_timeout (healthSettings): on a saturated
 * lab (25 sites added 4 at a time on 2 cores, bench/README.md) the 3 s timeout was missed and Swarm restarted
 * healthy tasks as unhealthy, which kept the load up.
 */
export const HEALTH = { interval: '5s', timeout: '3s' } as const;
const health = (h: { interval: string; timeout: string }, test: string[], startPeriod: string) => ({
  test,
  interval: h.interval,
  timeout: h.timeout,
  retries: 3,
  start_period: startPeriod,
});

/**
 * Where the sites' containers reach the database. `onNode`: the Galera single-writer endpoint of the node the task
 * runs on (roles/db-endpoint, HAProxy on the node's Docker bridge), by the name `host` that the container gets as an
 * extra host entry `<host>:host-gateway` (each node's dockerd resolves it when it creates the container, swarm tasks
 * included: checked on Debian's Docker 20.10). Otherwise `host` is an address or name given by the inventory.
 */
export interface DbEndpoint {
  host: string;
  port: number;
  onNode?: boolean;
}

/** The name of the node's own database endpoint inside the farm's containers. */
export const NODE_DB_HOST = 'wpfarm-db';

/** The service keys that give a container the database endpoint's name (none for an address). */
export function dbEndpointHosts(db: DbEndpoint): { extra_hosts?: string[] } {
  return db.onNode ? { extra_hosts: [`${db.host}:host-gateway`] } : {};
}

export interface FarmStackSettings {
  /** registry address, e.g. "10.10.0.2:5000" (images below are already qualified with it) */
  registry: string;
  images: {
    /** full reference with pinned tag: "10.10.0.2:5000/wpfarm/wordpress-fpm:3f9a..." */
    wordpressFpm: string;
    nginx: string;
    redis: string;
    /** the varnish image (cache tier 2); needed by sites with cache.varnish on */
    varnish?: string;
  };
  /** Gluster mount holding one directory per site, e.g. /mnt/gluster/sites */
  glusterSitesPath: string;
  /** dnsrr in the lab (no IPVS), vip in production */
  endpointMode: 'dnsrr' | 'vip';
  db: DbEndpoint;
  /** DB user per site id when it is not siteDbName(id) (rotation alternates between two users) */
  dbUsers?: Record<string, string>;
  /** a site's directory per site id when it is not <glusterSitesPath>/<id> (the DR drill's scratch restore) */
  siteDirs?: Record<string, string>;
  /** Traefik's router labels and network on the site's front service; default true (false: the DR drill's scratch
   *  stacks, reachable only inside their own overlay) */
  publicRouter?: boolean;
  /** sha256 hex of each secret value, per site id */
  secretHashes: Record<string, Record<SiteSecretKey, string>>;
  traefikNetwork?: string; // default traefik-public
  sharedServicesNetwork?: string; // default shared-services
  /** encrypt the site overlay (needs ESP in the kernel: false in the lab) */
  overlayEncrypted?: boolean;
  /** CIDR of traefik-public: nginx trusts X-Forwarded-For only from there */
  traefikSubnet?: string;
  /** Swarm's overlay address pool (site overlays get their subnet from it); default 10.0.0.0/8. nginx lets a GET
   *  of wp-login.php straight from it, unproxied, through the admin allowlist: the WordPress exporter's probe */
  overlayPool?: string;
  /** sites behind Cloudflare's proxy (Traefik takes the client IP from X-Forwarded-For); default true */
  cloudflareProxied?: boolean;
  /** CrowdSec bouncer middleware on the site routers; default true */
  crowdsec?: boolean;
  /** extra placement constraints for every service, e.g. ["node.labels.wp == true"] */
  placement?: string[];
  /** node labels each service spreads its replicas over (Swarm's placement preferences), e.g. ["node.labels.region"]:
   *  with regions, a site's replicas land in different regions, so losing one region leaves a replica serving */
  spreadOver?: string[];
  /** addresses (or CIDRs) besides loopback and the site's php-fpm tasks that may PURGE a site's Varnish */
  varnishPurgeFrom?: string[];
  /** Swarm's rolling update of each service: the pause between two tasks and how long a new, healthy task is watched
   *  before the next (update_config delay / monitor; default 10s / 30s). The lab's inventories shorten them. */
  rollout?: { delay: string; monitor: string };
  /** every site service's health check: how often and how long one may take (default HEALTH: 5s / 3s) */
  health?: { interval: string; timeout: string };
}

/** Swarm's rolling update timings by default (update_config delay / monitor) */
export const ROLLOUT = { delay: '10s', monitor: '30s' } as const;

export interface RenderedSecret {
  /** key inside the stack (and file name under /run/secrets) */
  key: SiteSecretKey;
  /** Swarm object name: site_<id>_<key>_<hash8> */
  name: string;
  hash: string;
}

export interface RenderedConfig {
  key: string;
  name: string;
  content: string;
}

export interface RenderedStack {
  /** docker stack name */
  stack: string;
  siteId: string;
  yaml: string;
  /** the stack as data (what yaml serialises) */
  spec: Record<string, unknown>;
  /** sha256 of yaml: what the state file stores */
  digest: string;
  secrets: RenderedSecret[];
  /** none today: per-site settings travel as environment variables (see docs/sites.md) */
  configs: RenderedConfig[];
  networks: { site: string; external: string[] };
  /** per service: image and replicas (what `docker service ls` can confirm) */
  services: Record<string, { image: string; replicas: number }>;
}

export const NGINX_PORT = 8080;
export const FPM_PORT = 9000;
export const VARNISH_PORT = 6081;
/** how long Varnish may serve a cached page while nginx is down */
export const VARNISH_GRACE_S = 3600;

/** Varnish memory (malloc storage) and container limit of a site's varnish service. */
const VARNISH_LIMIT = { cpus: 0.25, memory: '192M' } as const;
const VARNISH_STORAGE = 'malloc,128m';

/** The site's VCL (templates/varnish/site.vcl.ejs): pure, same record → same text. */
export function siteVcl(site: SiteRecord, farm: Pick<FarmStackSettings, 'varnishPurgeFrom'>): string {
  const purgeFrom = ['127.0.0.1', ...(farm.varnishPurgeFrom ?? [])];
  for (const a of purgeFrom) {
    if (!/^[0-9]{1,3}(\.[0-9]{1,3}){3}(\/[0-9]{1,2})?$/.test(a)) {
      throw new Error(`site ${site.id}: varnishPurgeFrom: ${JSON.stringify(a)} is not an IPv4 address or CIDR`);
    }
  }
  // a VCL ACL entry: "a.b.c.d" or "a.b.c.d"/n
  const acl = [...new Set(purgeFrom)].map((a) => {
    const [addr, bits] = a.split('/');
    return { addr, bits: bits === undefined ? null : Number(bits) };
  });
  return renderTemplate(templatePath('varnish', 'site.vcl.ejs'), {
    site: site.id,
    domains: siteDomains(site),
    ttl: site.cache_ttl,
    grace: VARNISH_GRACE_S,
    purge_from: acl,
  });
}

export function stackName(id: string): string {
  return `wp-${id}`;
}

export function siteNetworkName(id: string): string {
  return `wp-site-${id}`;
}

/** sha256 hex of a secret value (the role calls this; the value itself is never rendered). */
export function secretHash(value: string | Buffer): string {
  return createHash('sha256').update(value).digest('hex');
}

export function secretName(id: string, key: SiteSecretKey, hash: string): string {
  if (!/^[0-9a-f]{8,64}$/.test(hash)) throw new Error(`site ${id}: secret ${key}: hash must be sha256 hex`);
  return `site_${id}_${key}_${hash.slice(0, 8)}`;
}

/** DB name and user of a site: wp_<id with '-' as '_'> (MariaDB identifiers, ≤ 32 chars for users). */
export function siteDbName(id: string): string {
  return `wp_${id.replace(/-/g, '_')}`;
}

function cpus(n: number): string {
  // Compose wants a string; keep it short and stable ("0.25", "1").
  return String(Number(n.toFixed(3)));
}

function redisMaxmemory(limit: string): string {
  // 75 % of the container limit for data, the rest for the process and buffers.
  const m = /^([0-9]+)([KMG])$/.exec(limit);
  if (!m) throw new Error(`bad memory ${limit}`);
  const mb = Number(m[1]) * { K: 1 / 1024, M: 1, G: 1024 }[m[2] as 'K' | 'M' | 'G'];
  return `${Math.max(16, Math.floor(mb * 0.75))}mb`;
}

/**
 * Render the stack of one site. Pure: same inputs, byte-identical YAML.
 * Throws when the farm holds no secret hashes for the site (create the secrets first).
 */
export function renderSiteStack(site: SiteRecord, farm: FarmStackSettings): RenderedStack {
  const id = site.id;
  const stack = stackName(id);
  const siteNet = siteNetworkName(id);
  const traefikNet = farm.traefikNetwork ?? 'traefik-public';
  const sharedNet = farm.sharedServicesNetwork ?? 'shared-services';
  const hashes = farm.secretHashes[id];
  if (!hashes) throw new Error(`site ${id}: no secret hashes in the farm settings (create the site's secrets first)`);
  const secrets: RenderedSecret[] = SITE_SECRET_KEYS.map((key) => {
    const hash = hashes[key];
    if (!hash) throw new Error(`site ${id}: no hash for secret ${key}`);
    return { key, hash, name: secretName(id, key, hash) };
  });
  const domains = siteDomains(site);
  const siteDir = farm.siteDirs?.[id] ?? `${farm.glusterSitesPath.replace(/\/+$/, '')}/${id}`;
  const router = farm.publicRouter !== false;
  const fpmAlias = `${id}-php-fpm`;
  // cache tier 2: Traefik → varnish → nginx (nginx's own page cache off: a purge must reach every copy)
  const varnish = site.cache.varnish;
  const varnishImage = farm.images.varnish;
  if (varnish && !varnishImage) throw new Error(`site ${id}: cache.varnish is on but the farm settings have no varnish image`);

  const rollout = farm.rollout ?? ROLLOUT;
  const checks = farm.health ?? HEALTH;
  const update_config = {
    parallelism: 1,
    delay: rollout.delay,
    failure_action: 'rollback',
    monitor: rollout.monitor,
    order: 'start-first',
  };
  const rollback_config = { parallelism: 1, delay: '5s', failure_action: 'pause', order: 'stop-first' };
  const restart_policy = { condition: 'any', delay: '5s', max_attempts: 3, window: '120s' };
  const overlayPool = farm.overlayPool ?? '10.0.0.0/8';
  const spread = farm.spreadOver?.length ? { preferences: farm.spreadOver.map((l) => ({ spread: l })) } : {};
  const placement =
    farm.placement?.length || farm.spreadOver?.length
      ? { placement: { ...(farm.placement?.length ? { constraints: [...farm.placement] } : {}), ...spread } }
      : {};
  const deployCommon = (replicas: number, limit: { cpus: number; memory: string }) => ({
    mode: 'replicated',
    replicas,
    endpoint_mode: farm.endpointMode,
    resources: { limits: { cpus: cpus(limit.cpus), memory: limit.memory } },
    update_config,
    rollback_config,
    restart_policy,
    ...placement,
  });
  const logging = { driver: 'json-file', options: { 'max-size': '10m', 'max-file': '3' } };
  const wpContent = (ro: boolean) =>
    (['uploads', 'plugins', 'themes'] as const).map((d) => ({
      type: 'bind',
      source: `${siteDir}/${d}`,
      target: `/var/www/html/wp-content/${d}`,
      ...(ro ? { read_only: true } : {}),
    }));

  const labels = siteRouterLabels(
    { id, domains, sticky: site.sticky, adminAllowlist: site.admin_allowlist, port: varnish ? VARNISH_PORT : NGINX_PORT },
    { network: traefikNet, endpointMode: farm.endpointMode, cloudflareProxied: farm.cloudflareProxied, crowdsec: farm.crowdsec },
  );
  const sortedLabels = Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : 1)));

  const varnishService = varnish
    ? {
        varnish: {
          image: varnishImage,
          environment: {
            WPFARM_SITE_ID: id,
            WPFARM_VCL_B64: Buffer.from(siteVcl(site, farm)).toString('base64'),
            // full service names: the short ones would also match on traefik-public
            WPFARM_NGINX: `${stack}_nginx`,
            WPFARM_FPM: `${stack}_php-fpm`,
            VARNISH_PORT: String(VARNISH_PORT),
            NGINX_PORT: String(NGINX_PORT),
            VARNISH_STORAGE: VARNISH_STORAGE,
          },
          networks: router ? { site: {}, [traefikNet]: {} } : { site: {} },
          healthcheck: health(checks, ['CMD', '/usr/local/bin/wpfarm-healthcheck'], '20s'),
          stop_grace_period: '10s',
          logging,
          deploy: { ...deployCommon(site.replicas, VARNISH_LIMIT), ...(router ? { labels: sortedLabels } : {}) },
        },
      }
    : {};

  const services = {
    ...varnishService,
    nginx: {
      image: farm.images.nginx,
      environment: {
        WPFARM_SITE_ID: id,
        NGINX_SERVER_NAMES: domains.join(' '),
        NGINX_CACHE_TTL: varnish ? '0' : String(site.cache_ttl),
        NGINX_XMLRPC: site.xmlrpc ? 'on' : 'off',
        NGINX_ADMIN_ALLOWLIST: site.admin_allowlist.join(' '),
        // behind Varnish the peer is varnish's address in the site overlay (Swarm's address pool)
        NGINX_REAL_IP_FROM: [...new Set([farm.traefikSubnet ?? '10.0.0.0/8', ...(varnish ? [overlayPool] : [])])].join(' '),
        // the farm's own probe of the login form (the WordPress exporter, on the site network): see the entrypoint
        NGINX_PROBE_FROM: overlayPool,
        NGINX_CLIENT_MAX_BODY: site.php.post_max_size,
        NGINX_FPM_UPSTREAM: `php-fpm:${FPM_PORT}`,
      },
      volumes: wpContent(true),
      // behind Varnish nginx is reachable only in the site network
      networks: varnish || !router ? { site: {} } : { site: {}, [traefikNet]: {} },
      healthcheck: health(checks, ['CMD', '/usr/local/bin/wpfarm-healthcheck'], '20s'),
      stop_grace_period: '15s',
      logging,
      deploy:
        varnish || !router
          ? deployCommon(site.replicas, site.limits.nginx)
          : { ...deployCommon(site.replicas, site.limits.nginx), labels: sortedLabels },
    },
    'php-fpm': {
      image: farm.images.wordpressFpm,
      environment: {
        WPFARM_SITE_ID: id,
        WORDPRESS_URL: `https://${site.domain}`,
        WORDPRESS_DB_HOST: `${farm.db.host}:${farm.db.port}`,
        WORDPRESS_DB_NAME: siteDbName(id),
        WORDPRESS_DB_USER: farm.dbUsers?.[id] ?? siteDbName(id),
        WORDPRESS_DB_PASSWORD_FILE: '/run/secrets/db_password',
        WORDPRESS_KEYS_FILE: '/run/secrets/wp_keys',
        WORDPRESS_REDIS_HOST: 'redis',
        WPFARM_OBJECT_CACHE: site.object_cache ? 'redis' : 'off',
        // the must-use plugin wpfarm-varnish-purge.php sends PURGE to every task of this service
        ...(varnish ? { WPFARM_VARNISH_PURGE: `${stack}_varnish:${VARNISH_PORT}` } : {}),
        // php-fpm listens only on its address in the site network (not on shared-services).
        FPM_LISTEN_VIA: `${fpmAlias} redis`,
        FPM_PORT: String(FPM_PORT),
        PHP_MEMORY_LIMIT: site.php.memory_limit,
        PHP_UPLOAD_MAX_FILESIZE: site.php.upload_max_filesize,
        PHP_POST_MAX_SIZE: site.php.post_max_size,
        PHP_MAX_EXECUTION_TIME: String(site.php.max_execution_time),
        PHP_MAX_INPUT_VARS: String(site.php.max_input_vars),
        FPM_PM_MAX_CHILDREN: String(site.php.pm_max_children),
        FPM_PM_START_SERVERS: String(site.php.pm_start_servers),
        FPM_PM_MIN_SPARE_SERVERS: String(site.php.pm_min_spare_servers),
        FPM_PM_MAX_SPARE_SERVERS: String(site.php.pm_max_spare_servers),
        FPM_PM_MAX_REQUESTS: String(site.php.pm_max_requests),
      },
      secrets: secrets.map((s) => ({ source: s.key, target: s.key, uid: '33', gid: '33', mode: 0o400 })),
      ...dbEndpointHosts(farm.db),
      volumes: wpContent(false),
      networks: { site: { aliases: [fpmAlias] }, [sharedNet]: {} },
      healthcheck: health(checks, ['CMD', '/usr/local/bin/wpfarm-healthcheck'], '30s'),
      stop_grace_period: '30s',
      logging,
      deploy: deployCommon(site.replicas, site.limits.php),
    },
    redis: {
      image: farm.images.redis,
      command: [
        'redis-server',
        '--maxmemory',
        redisMaxmemory(site.limits.redis.memory),
        '--maxmemory-policy',
        'allkeys-lru',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
      ],
      networks: { site: {} },
      healthcheck: health(checks, ['CMD', 'redis-cli', 'ping'], '10s'),
      logging,
      deploy: deployCommon(1, site.limits.redis),
    },
  };

  const doc = {
    version: '3.8',
    services,
    networks: {
      site: {
        name: siteNet,
        driver: 'overlay',
        attachable: false,
        ...(farm.overlayEncrypted ? { driver_opts: { encrypted: 'true' } } : {}),
        labels: { 'wpfarm.site': id },
      },
      ...(router ? { [traefikNet]: { external: true, name: traefikNet } } : {}),
      [sharedNet]: { external: true, name: sharedNet },
    },
    secrets: Object.fromEntries(secrets.map((s) => [s.key, { external: true, name: s.name }])),
  };

  const yaml = `# wpfarm: stack ${stack} of site ${id} (generated; do not edit)\n` + emitYaml(doc);
  return {
    stack,
    siteId: id,
    yaml,
    spec: doc,
    digest: createHash('sha256').update(yaml).digest('hex'),
    secrets,
    configs: [],
    networks: { site: siteNet, external: router ? [traefikNet, sharedNet] : [sharedNet] },
    services: {
      nginx: { image: farm.images.nginx, replicas: site.replicas },
      'php-fpm': { image: farm.images.wordpressFpm, replicas: site.replicas },
      redis: { image: farm.images.redis, replicas: 1 },
      ...(varnish && varnishImage ? { varnish: { image: varnishImage, replicas: site.replicas } } : {}),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Diff against what is deployed

/** One line of `docker service ls --format '{{json .}}'`. */
export interface ServiceLsEntry {
  ID: string;
  Name: string;
  Image: string;
  Mode: string;
  /** "2/2" */
  Replicas: string;
}

/** What the farm's state file holds per stack (written after each successful deploy). */
export interface DeployedStackState {
  digest: string;
  /** ISO time of the deploy */
  at?: string;
}

export type StateFile = Record<string, DeployedStackState>;

/** Live view of one stack: its services as `docker service ls` reports them. */
export interface DeployedStack {
  stack: string;
  state?: DeployedStackState;
  services: Record<string, { image: string; desired: number; running: number }>;
}

/** Parse `docker service ls --format '{{json .}}'` output (one JSON object per line), grouped by stack. */
export function parseServiceLs(output: string): Map<string, DeployedStack['services']> {
  const byStack = new Map<string, DeployedStack['services']>();
  for (const line of output.split('\n')) {
    const t = line.trim();
    if (!t) continue;
    const e = JSON.parse(t) as ServiceLsEntry;
    const i = e.Name.indexOf('_');
    if (i <= 0) continue; // not a stack service
    const stack = e.Name.slice(0, i);
    const svc = e.Name.slice(i + 1);
    const m = /^([0-9]+)\/([0-9]+)/.exec(e.Replicas ?? '');
    const entry = byStack.get(stack) ?? {};
    entry[svc] = { image: e.Image, running: m ? Number(m[1]) : 0, desired: m ? Number(m[2]) : 0 };
    byStack.set(stack, entry);
  }
  return byStack;
}

/**
 * The deploy state as lib/ops/docker.ts's stackDeploy keeps it: one file per stack,
 * STACK_DIR/<stack>.yml, written after each successful deploy. `sha256sum` of those files gives
 * the digests (the digest of a render is sha256 of its YAML, as stackDeploy computes it).
 */
export function stateFromSha256sum(output: string): StateFile {
  const state: StateFile = {};
  for (const line of output.split('\n')) {
    const m = /^([0-9a-f]{64})\s+\*?(?:.*\/)?([A-Za-z0-9][A-Za-z0-9_-]*)\.yml$/.exec(line.trim());
    if (m) state[m[2]] = { digest: m[1] };
  }
  return state;
}

/**
 * The one probe a reconcile of every site needs on a manager (one round trip, whatever the number
 * of sites): all services with their image and replicas, and the digests of the last deployed
 * renders. Read-only; always exits 0. Parse its output with parseFarmProbe().
 */
export function farmProbeScript(stackDir = '/var/lib/wpfarm/stacks'): string {
  if (!/^\/[A-Za-z0-9_./-]+$/.test(stackDir)) throw new Error(`bad stack dir ${stackDir}`);
  return [
    '(',
    `echo %%services; docker service ls --format '{{json .}}'`,
    // site stacks (wp-*) and the farm's own per-site services (wpfarm-*: the WordPress exporter)
    `echo %%digests; cd ${quote(stackDir)} 2>/dev/null && ` +
      `find . -maxdepth 1 \\( -name 'wp-*.yml' -o -name 'wpfarm-*.yml' \\) -type f -print0 | xargs -0r sha256sum --`,
    ') 2>/dev/null; true',
  ].join('\n');
}

export function parseFarmProbe(output: string): { serviceLs: string; state: StateFile } {
  const sections = new Map<string, string[]>();
  let cur = '';
  for (const line of output.split('\n')) {
    const m = /^%%([a-z]+)$/.exec(line);
    if (m) cur = m[1];
    else (sections.get(cur) ?? sections.set(cur, []).get(cur)!).push(line);
  }
  return { serviceLs: (sections.get('services') ?? []).join('\n'), state: stateFromSha256sum((sections.get('digests') ?? []).join('\n')) };
}

/** Combine the service list and the deploy state (a StateFile, or its JSON text) into the deployed view of every stack. */
export function deployedStacks(serviceLs: string, stateFile: string | StateFile): Map<string, DeployedStack> {
  const state: StateFile = typeof stateFile === 'string' ? (stateFile.trim() ? (JSON.parse(stateFile) as StateFile) : {}) : stateFile;
  const live = parseServiceLs(serviceLs);
  const out = new Map<string, DeployedStack>();
  for (const stack of new Set([...live.keys(), ...Object.keys(state)])) {
    out.set(stack, { stack, state: state[stack], services: live.get(stack) ?? {} });
  }
  return out;
}

export interface StackDiff {
  stack: string;
  /** 'create': not deployed; 'update': rendered differs; 'ok': nothing to do */
  action: 'create' | 'update' | 'ok';
  reasons: string[];
}

/**
 * Compare one rendered stack with what is deployed. Cheap: digest first, then the live facts
 * `docker service ls` gives (service present, image, desired replicas). Running < desired is
 * reported as a reason but is not a change of spec (Swarm converges by itself).
 */
export function diffStacks(rendered: RenderedStack, deployed: DeployedStack | undefined): StackDiff {
  const reasons: string[] = [];
  if (!deployed || (Object.keys(deployed.services).length === 0 && !deployed.state)) {
    return { stack: rendered.stack, action: 'create', reasons: ['not deployed'] };
  }
  let update = false;
  if (!deployed.state) {
    update = true;
    reasons.push('no record of the last deploy');
  } else if (deployed.state.digest !== rendered.digest) {
    update = true;
    reasons.push(`spec changed (digest ${deployed.state.digest.slice(0, 12)} -> ${rendered.digest.slice(0, 12)})`);
  }
  for (const [svc, want] of Object.entries(rendered.services)) {
    const have = deployed.services[svc];
    if (!have) {
      update = true;
      reasons.push(`service ${svc} missing`);
      continue;
    }
    // service ls shows the image without the digest suffix Swarm may append.
    const haveImage = have.image.replace(/@sha256:[0-9a-f]+$/, '');
    if (haveImage !== want.image) {
      update = true;
      reasons.push(`service ${svc}: image ${haveImage} -> ${want.image}`);
    }
    if (have.desired !== want.replicas) {
      update = true;
      reasons.push(`service ${svc}: replicas ${have.desired} -> ${want.replicas}`);
    }
    if (have.running < have.desired) reasons.push(`service ${svc}: ${have.running}/${have.desired} running (converging)`);
  }
  for (const svc of Object.keys(deployed.services)) {
    if (!(svc in rendered.services)) {
      update = true;
      reasons.push(`service ${svc} deployed but no longer rendered (deploy with --prune)`);
    }
  }
  return { stack: rendered.stack, action: update ? 'update' : 'ok', reasons };
}

export interface FarmDiff {
  changes: StackDiff[];
  unchanged: number;
  /** wp-* stacks deployed that no site record renders (removed sites) */
  orphans: string[];
}

/** Diff every rendered stack against one `docker service ls` and the deploy state. */
export function diffFarm(rendered: readonly RenderedStack[], serviceLs: string, state: string | StateFile): FarmDiff {
  const deployed = deployedStacks(serviceLs, state);
  const changes: StackDiff[] = [];
  let unchanged = 0;
  const names = new Set<string>();
  for (const r of rendered) {
    names.add(r.stack);
    const d = diffStacks(r, deployed.get(r.stack));
    if (d.action === 'ok') unchanged++;
    else changes.push(d);
  }
  const orphans = [...deployed.keys()].filter((s) => s.startsWith('wp-') && !names.has(s)).sort();
  return { changes, unchanged, orphans };
}

/** The state file after deploying `deployed` stacks (others kept). */
export function updatedStateFile(previous: string, deployed: readonly RenderedStack[], at = new Date().toISOString()): string {
  const state: StateFile = previous.trim() ? (JSON.parse(previous) as StateFile) : {};
  for (const r of deployed) state[r.stack] = { digest: r.digest, at };
  const sorted = Object.fromEntries(Object.entries(state).sort(([a], [b]) => (a < b ? -1 : 1)));
  return JSON.stringify(sorted, null, 1) + '\n';
}
