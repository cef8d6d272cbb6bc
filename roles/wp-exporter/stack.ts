// The WordPress exporter as a farm service: a pure renderer of its Swarm stack (one replica on the first Gluster
// client, attached to every site's overlay network, its port published on that host for Prometheus) and of the
// catalog of what the farm offers (the image's bundled core, the plugin store's newest versions).
import { createHash } from 'node:crypto';
import type { SiteRecord } from '../wp-site/site.ts';
import { dbEndpointHosts, siteDbName, siteNetworkName, stackName, NGINX_PORT, VARNISH_PORT, type DbEndpoint } from '../wp-site/stack.ts';
import { emitYaml } from '../wp-site/yaml-emit.ts';
import { storeIndex, storeZip } from '../update/plugins.ts';
import type { Catalog, Offer } from './metrics.ts';
import type { ExporterConfig } from './service.ts';

export const EXPORTER_STACK = 'wpfarm-exporter';
export const EXPORTER_PORT = 9117;
/** MariaDB user of the exporter: SELECT on the sites' databases only (site users are wp_<id>: no clash) */
export const EXPORTER_DB_USER = 'wpfarm_exporter';
/** the Swarm secret holding its password: <prefix>_<sha256-8> (dockerSecret) */
export const EXPORTER_SECRET_PREFIX = 'wpfarm_exporter_db_password';
/** inventory group whose first host runs the exporter (it needs the Gluster mount): the wp-site role's clients */
export const exporterGroup = (vars: Record<string, unknown>): string =>
  typeof vars.gluster_client_group === 'string' && vars.gluster_client_group ? vars.gluster_client_group : 'workers';

export interface ExporterStackInput {
  image: string;
  sites: readonly SiteRecord[];
  endpointMode: 'dnsrr' | 'vip';
  db: DbEndpoint;
  /** the Swarm secret's name (content-hashed) */
  passwordSecret: string;
  /** Gluster mount holding one directory per site (on the exporter's host) */
  glusterSitesPath: string;
  /** Swarm node (hostname) the exporter runs on */
  node: string;
  catalog: Catalog;
}

export interface RenderedExporter {
  yaml: string;
  digest: string;
  config: ExporterConfig;
}

/** Pure: same input, byte-identical YAML (sites sorted). */
export function renderExporterStack(i: ExporterStackInput): RenderedExporter {
  if (!/^[A-Za-z0-9][A-Za-z0-9.-]*$/.test(i.node)) throw new Error(`wp-exporter: bad node name ${JSON.stringify(i.node)}`);
  const sites = [...i.sites].sort((a, b) => (a.id < b.id ? -1 : 1));
  const config: ExporterConfig = {
    port: EXPORTER_PORT,
    db: { host: i.db.host, port: i.db.port, user: EXPORTER_DB_USER, passwordFile: '/run/secrets/db_password' },
    sitesRoot: '/sites',
    catalog: i.catalog,
    timeoutMs: 8000,
    // full service names: short ones would be ambiguous across the site networks the exporter joins
    sites: sites.map((s) => ({
      id: s.id,
      domain: s.domain,
      http: s.cache.varnish ? `${stackName(s.id)}_varnish:${VARNISH_PORT}` : `${stackName(s.id)}_nginx:${NGINX_PORT}`,
      login: `${stackName(s.id)}_nginx:${NGINX_PORT}`,
      ...(s.object_cache ? { redis: `${stackName(s.id)}_redis:6379` } : {}),
      db: siteDbName(s.id),
    })),
  };
  const nets = Object.fromEntries(sites.map((s) => [siteNetworkName(s.id), { external: true, name: siteNetworkName(s.id) }]));
  const doc = {
    version: '3.8',
    services: {
      exporter: {
        image: i.image,
        environment: { WPEXPORTER_CONFIG: Buffer.from(JSON.stringify(config)).toString('base64') },
        secrets: [{ source: 'db_password', target: 'db_password', uid: '33', gid: '33', mode: 0o400 }],
        // the database endpoint of the node it runs on, like the sites
        ...dbEndpointHosts(i.db),
        volumes: [{ type: 'bind', source: i.glusterSitesPath.replace(/\/+$/, ''), target: '/sites', read_only: true }],
        // Prometheus runs on the monitoring host, outside the swarm: the port is published on the exporter's host
        ports: [{ target: EXPORTER_PORT, published: EXPORTER_PORT, protocol: 'tcp', mode: 'host' }],
        networks: Object.fromEntries(Object.keys(nets).map((n) => [n, {}])),
        logging: { driver: 'json-file', options: { 'max-size': '10m', 'max-file': '3' } },
        deploy: {
          mode: 'replicated',
          replicas: 1,
          endpoint_mode: i.endpointMode,
          placement: { constraints: [`node.hostname == ${i.node}`] },
          resources: { limits: { cpus: '0.25', memory: '128M' } },
          // a host-mode port cannot be held by two tasks on one node: stop the old one first
          update_config: { parallelism: 1, order: 'stop-first', failure_action: 'rollback' },
          restart_policy: { condition: 'any', delay: '5s' },
        },
      },
    },
    networks: nets,
    secrets: { db_password: { external: true, name: i.passwordSecret } },
  };
  const yaml = `# wpfarm: the WordPress exporter (generated; do not edit)\n${emitYaml(doc)}`;
  return { yaml, digest: createHash('sha256').update(yaml).digest('hex'), config };
}

/** The plugin store's offer: each slug's newest version and since when (the zip's mtime, unix seconds). */
export function storeOffers(store: string, files: readonly string[], mtimeOf: (file: string) => number): Record<string, Offer> {
  const out: Record<string, Offer> = {};
  for (const [slug, versions] of [...storeIndex(files)].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const version = versions[versions.length - 1];
    if (version) out[slug] = { version, since: Math.floor(mtimeOf(storeZip(store, { slug, version }))) };
  }
  return out;
}

/** GRANTs of the exporter's user: read-only, the sites' databases (wp_*) only. */
export function exporterGrantSql(userHost: string): string {
  if (!/^[0-9A-Za-z.%/_:-]+$/.test(userHost)) throw new Error(`unsafe database host pattern ${userHost}`);
  return `GRANT SELECT ON \`wp\\_%\`.* TO '${EXPORTER_DB_USER}'@'${userHost}'`;
}
