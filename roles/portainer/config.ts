// Pure generators for the portainer role: its settings from inventory variables, and its Swarm stack
// (Portainer server on a manager, the agent on every node, both on the farm's `management` overlay; the UI
// reached through Traefik behind the management allow list). No I/O here.
import type { Vars } from '../../lib/types.ts';
import { CERT_RESOLVER, MW, toYaml } from '../traefik/config.ts';
import { stackName } from '../wp-site/stack.ts';

/** Pinned, like Traefik's: a moving tag is not re-pulled reliably by `docker stack deploy`. */
export const DEFAULT_PORTAINER_IMAGE = 'portainer/portainer-ce:2.23.0';
export const DEFAULT_AGENT_IMAGE = 'portainer/agent:2.23.0';
/** the farm's management overlay (roles/swarm-manager OVERLAY_NETWORKS) */
export const MANAGEMENT_NETWORK = 'management';
export const PORTAINER_STACK = 'portainer';
/** agent port (TLS, Portainer's own certificate) */
export const AGENT_PORT = 9001;

export class PortainerVarsError extends Error {
  override name = 'PortainerVarsError';
}

export interface PortainerSettings {
  image: string;
  agentImage: string;
  /** host name of the UI (through Traefik, management addresses only) */
  host: string;
  /** the API root wpfarm calls from the control machine (default https://<host>/api) */
  apiUrl: string;
  adminUser: string;
  /** .env name holding the administrator password */
  adminPasswordEnv: string;
  endpointName: string;
  /** Portainer role id of the team access policies (CE ignores roles; BE: 1 environment admin … 4 read-only) */
  teamRoleId: number;
  /** team name → ids of the sites the team manages */
  siteGroups: Record<string, string[]>;
  traefikNetwork: string;
  /** Portainer's /data (its BoltDB): a directory on the Gluster volume, which every manager mounts (roles/gluster,
   *  gluster_extra_client_groups), so the single replica finds its data on whichever manager it runs */
  dataDir: string;
  /** the Gluster mount the data directory must be under (gluster_mount) */
  glusterMount: string;
}

const NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const HOST = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/;

function str(vars: Vars, key: string, dflt?: string): string {
  const v = vars[key] ?? dflt;
  if (typeof v !== 'string' || v === '') throw new PortainerVarsError(`variable ${key} must be a non-empty string`);
  return v;
}

/** Resolve and check the role's inventory variables (docs/roles/portainer.md). `knownSites`: ids of the site records. */
export function portainerSettings(vars: Vars, knownSites?: readonly string[]): PortainerSettings {
  const host = str(vars, 'portainer_host');
  if (!HOST.test(host)) throw new PortainerVarsError(`portainer_host: ${JSON.stringify(host)} is not a lower-case host name`);
  const rawGroups = vars.portainer_site_groups ?? {};
  if (typeof rawGroups !== 'object' || rawGroups === null || Array.isArray(rawGroups))
    throw new PortainerVarsError('portainer_site_groups must be a mapping of team name to a list of site ids');
  const siteGroups: Record<string, string[]> = {};
  const owner = new Map<string, string>();
  for (const [team, list] of Object.entries(rawGroups as Record<string, unknown>)) {
    if (!NAME.test(team)) throw new PortainerVarsError(`portainer_site_groups: team name ${JSON.stringify(team)} must be [a-z0-9-]`);
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string'))
      throw new PortainerVarsError(`portainer_site_groups.${team} must be a list of site ids`);
    for (const id of list as string[]) {
      if (knownSites && !knownSites.includes(id)) throw new PortainerVarsError(`portainer_site_groups.${team}: no site record ${id}`);
      const prev = owner.get(id);
      if (prev) throw new PortainerVarsError(`portainer_site_groups: site ${id} is in both ${prev} and ${team}`);
      owner.set(id, team);
    }
    siteGroups[team] = [...(list as string[])];
  }
  const role = vars.portainer_team_role_id ?? 0;
  if (!Number.isInteger(role) || (role as number) < 0) throw new PortainerVarsError('portainer_team_role_id must be an integer >= 0');
  const apiUrl = str(vars, 'portainer_api_url', `https://${host}/api`);
  // a dot name on the sites' volume: never a site id (they start with a letter)
  const glusterMount = str(vars, 'gluster_mount', '/mnt/gluster/sites').replace(/\/+$/, '');
  const dataDir = str(vars, 'portainer_data_dir', `${glusterMount}/.wpfarm-portainer`).replace(/\/+$/, '');
  if (!dataDir.startsWith(`${glusterMount}/`) || /(^|\/)\.\.?(\/|$)/.test(dataDir.slice(glusterMount.length)) || /\s/.test(dataDir))
    throw new PortainerVarsError(
      `portainer_data_dir: ${JSON.stringify(dataDir)} must be a directory on the Gluster volume (under gluster_mount ${glusterMount}): ` +
        'the single Portainer replica may run on any manager, and finds its data only on storage they all mount',
    );
  if (!/^https?:\/\/[^\s/@]+(\/[^\s@]*)?$/.test(apiUrl))
    throw new PortainerVarsError(`portainer_api_url: ${JSON.stringify(apiUrl)} is not an http(s) URL without credentials`);
  return {
    image: str(vars, 'portainer_image', DEFAULT_PORTAINER_IMAGE),
    agentImage: str(vars, 'portainer_agent_image', DEFAULT_AGENT_IMAGE),
    host,
    apiUrl,
    adminUser: str(vars, 'portainer_admin_user', 'admin'),
    adminPasswordEnv: str(vars, 'portainer_admin_password_env', 'PORTAINER_ADMIN_PASSWORD'),
    endpointName: str(vars, 'portainer_endpoint_name', 'swarm'),
    teamRoleId: role as number,
    siteGroups,
    traefikNetwork: str(vars, 'traefik_network', 'traefik-public'),
    dataDir,
    glusterMount,
  };
}

/** Portainer's resource id of a Swarm stack deployed outside Portainer: "<environment id>_<stack name>". */
export function stackResourceId(endpointId: number, siteId: string): string {
  return `${endpointId}_${stackName(siteId)}`;
}

/** The agent URL Portainer uses for the Swarm environment (the agent's tasks, over the management overlay). */
export function agentUrl(): string {
  return `tcp://tasks.${PORTAINER_STACK}_agent:${AGENT_PORT}`;
}

/** The Portainer stack (docker stack deploy -c - portainer). */
export function portainerStack(s: PortainerSettings): { stack: Record<string, unknown>; stackYaml: string } {
  const r = 'traefik.http.routers.portainer';
  const stack: Record<string, unknown> = {
    version: '3.8',
    services: {
      agent: {
        image: s.agentImage,
        environment: { AGENT_CLUSTER_ADDR: `tasks.${PORTAINER_STACK}_agent` },
        volumes: [
          { type: 'bind', source: '/var/run/docker.sock', target: '/var/run/docker.sock' },
          { type: 'bind', source: '/var/lib/docker/volumes', target: '/var/lib/docker/volumes' },
        ],
        networks: [MANAGEMENT_NETWORK],
        deploy: {
          mode: 'global',
          placement: { constraints: ['node.platform.os == linux'] },
          resources: { limits: { cpus: '0.25', memory: '128M' } },
        },
      },
      portainer: {
        image: s.image,
        command: ['-H', agentUrl(), '--tlsskipverify'],
        volumes: [{ type: 'bind', source: s.dataDir, target: '/data' }],
        networks: [MANAGEMENT_NETWORK, s.traefikNetwork],
        deploy: {
          mode: 'replicated',
          replicas: 1,
          // one writer of its BoltDB: never two tasks at once
          update_config: { parallelism: 1, order: 'stop-first', failure_action: 'rollback' },
          // any manager: each mounts the Gluster volume that holds dataDir (the role checks it on every one)
          placement: { constraints: ['node.role == manager'] },
          resources: { limits: { cpus: '0.5', memory: '512M' } },
          labels: {
            'traefik.enable': 'true',
            'traefik.swarm.network': s.traefikNetwork,
            [`${r}.rule`]: `Host(\`${s.host}\`)`,
            [`${r}.entrypoints`]: 'websecure',
            [`${r}.tls.certresolver`]: CERT_RESOLVER,
            [`${r}.service`]: 'portainer',
            [`${r}.middlewares`]: `${MW.dashboardAllow}@file,${MW.headers}@file`,
            'traefik.http.services.portainer.loadbalancer.server.port': '9000',
          },
        },
      },
    },
    networks: {
      // created by roles/swarm-manager before any stack
      [MANAGEMENT_NETWORK]: { external: true, name: MANAGEMENT_NETWORK },
      [s.traefikNetwork]: { external: true, name: s.traefikNetwork },
    },
  };
  return { stack, stackYaml: toYaml(stack) };
}
