// The lab's fixed facts: topology, addresses, names, paths. Everything the lab creates carries the
// label wpfarm.lab=1 so that lab-down removes exactly that and nothing else.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** State that is not source: keys, known_hosts, snapshots, logs, caches (gitignored). */
export const STATE_DIR = path.join(ROOT, '.wpfarm', 'lab');
/** State of this machine (not of one clone): the FORWARD policy before the lab's dockerd, locks. */
export const MACHINE_DIR = process.env.WPFARM_LAB_MACHINE_DIR ?? '/run/wpfarm-lab';
export const FILES_DIR = path.join(ROOT, 'files', 'lab');
export const INVENTORY_FILE = path.join(ROOT, 'inventory', 'lab.yml');

export const PATHS = {
  clientKey: path.join(STATE_DIR, 'id_ed25519'),
  knownHosts: path.join(STATE_DIR, 'known_hosts'),
  /** the lab's credentials (settings.env_file of inventory/lab.yml): generated once, mode 0600 */
  envFile: path.join(STATE_DIR, 'lab.env'),
  hostKeys: path.join(STATE_DIR, 'hostkeys'),
  before: path.join(STATE_DIR, 'before.json'),
  beforeLast: path.join(STATE_DIR, 'before.last.json'),
  /** machine facts, not a clone's: shared by every clone on this machine, gone at reboot like the rules */
  hostState: path.join(MACHINE_DIR, 'host-state.json'),
  partitions: path.join(STATE_DIR, 'partitions.json'),
  logs: path.join(STATE_DIR, 'logs'),
  registryCache: path.join(STATE_DIR, 'cache', 'registry'),
  /** locks around dockerd start and image builds: machine-wide (several clones share one engine) */
  locks: path.join(MACHINE_DIR, 'locks'),
  /** the nodes' /etc/resolv.conf: the lab's dnsmasq on the services container */
  resolvConf: path.join(STATE_DIR, 'resolv.conf'),
} as const;

export const LABEL = 'wpfarm.lab';
export const LABEL_FILTER = `label=${LABEL}=1`;

export const NETWORK = 'wpfarm-lab';
export const BRIDGE = 'wpfarm-lab0';
export const SUBNET = '10.77.0.0/24';
export const GATEWAY = '10.77.0.1';
export const CONTAINER_PREFIX = 'wpfarm-lab-';

export const IMAGES = {
  base: 'wpfarm/base:bookworm',
  node: 'wpfarm/lab-node:bookworm',
  svc: 'wpfarm/lab-svc:bookworm',
} as const;

/** Lab services (registry + DNS resolver) live on their own container, not on a farm node. */
export const SVC = {
  name: 'svc',
  address: '10.77.0.2',
  registryPort: 5000,
  dnsPort: 53,
  /** the registry published on the controller's loopback, so the host engine can push without daemon.json */
  hostRegistry: '127.0.0.1:5077',
} as const;

export interface LabNode {
  name: string;
  address: string;
  /** groups the node is listed in directly (inventory) */
  groups: string[];
}

// 3 managers, 2 workers, 3 database nodes, 2 storage nodes, 1 monitoring/management node.
export const NODES: readonly LabNode[] = [
  { name: 'mgr1', address: '10.77.0.11', groups: ['managers', 'edge'] },
  { name: 'mgr2', address: '10.77.0.12', groups: ['managers', 'edge'] },
  { name: 'mgr3', address: '10.77.0.13', groups: ['managers', 'edge'] },
  { name: 'wrk1', address: '10.77.0.21', groups: ['workers'] },
  { name: 'wrk2', address: '10.77.0.22', groups: ['workers'] },
  { name: 'db1', address: '10.77.0.31', groups: ['db'] },
  { name: 'db2', address: '10.77.0.32', groups: ['db'] },
  { name: 'db3', address: '10.77.0.33', groups: ['db'] },
  { name: 'st1', address: '10.77.0.41', groups: ['storage'] },
  { name: 'st2', address: '10.77.0.42', groups: ['storage'] },
  { name: 'mon1', address: '10.77.0.51', groups: ['monitoring', 'storage_arbiter'] },
];

export const containerName = (node: string): string => `${CONTAINER_PREFIX}${node}`;
export const dockerVolumeName = (node: string): string => `${CONTAINER_PREFIX}${node}-docker`;

export function findNode(name: string): LabNode | undefined {
  return NODES.find((n) => n.name === name);
}

/** Every name the fault tools accept: the farm nodes and the services container. */
export function allMachineNames(): string[] {
  return [...NODES.map((n) => n.name), SVC.name];
}
