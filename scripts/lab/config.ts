// The lab's fixed facts: topology, addresses, names, paths. Two profiles of the same lab, selected by one
// setting, $WPFARM_LAB: "user" (the default: `make lab-up`, `make bootstrap`, inventory/lab.yml) and "test"
// (the test tiers' own lab: `make test` sets WPFARM_LAB=test). They differ only in names: containers, network,
// bridge, subnet, volumes, label value, state directory, inventory and registry port, so that the test lab
// runs beside a user's lab without reading or changing it. Everything a profile creates carries the label
// wpfarm.lab=<its label value> (1 for the user lab, test for the test lab): lab-down removes exactly that.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface LabProfile {
  name: 'user' | 'test';
  /** the value of the wpfarm.lab label on everything this profile creates */
  label: string;
  /** state that is not source (keys, known_hosts, snapshots, logs, caches), relative to ROOT, gitignored */
  stateDir: string;
  /** the inventory lab-up writes, relative to ROOT */
  inventory: string;
  network: string;
  /** the bridge's interface name (at most 15 characters) */
  bridge: string;
  /** the first three octets of the /24 */
  net: string;
  containerPrefix: string;
  /** the lab registry published on the controller's loopback */
  hostRegistryPort: number;
  /** site records of this lab (vars.wp_sites_dir) when not inventory/sites, relative to ROOT */
  sitesDir?: string;
  /** runs on this lab write their run directories and retry files under stateDir (runs/, retry/), not .wpfarm/ */
  runData?: boolean;
  /** the lab-up/lab-down lock (machine-wide) */
  lock: string;
  /** the inventory's first line: what this lab is, and what writes it */
  title: string;
  writer: string;
}

export const PROFILES: Record<LabProfile['name'], LabProfile> = {
  user: {
    name: 'user',
    label: '1',
    stateDir: '.wpfarm/lab',
    inventory: 'inventory/lab.yml',
    network: 'wpfarm-lab',
    bridge: 'wpfarm-lab0',
    net: '10.77.0',
    containerPrefix: 'wpfarm-lab-',
    hostRegistryPort: 5077,
    lock: 'lab',
    title: 'the local lab',
    writer: '`make lab-up`',
  },
  test: {
    name: 'test',
    label: 'test',
    stateDir: '.wpfarm/test-lab',
    inventory: '.wpfarm/test-lab/inventory.yml',
    network: 'wpfarm-testlab',
    bridge: 'wpfarm-tlab0',
    net: '10.78.0',
    containerPrefix: 'wpfarm-testlab-',
    hostRegistryPort: 5078,
    sitesDir: '.wpfarm/test-lab/sites',
    runData: true,
    lock: 'lab-test',
    title: "the test tiers' own lab, beside the user's",
    writer: 'the lab tests (WPFARM_LAB=test)',
  },
};

/** The profile named by $WPFARM_LAB: unset, empty or "user" is the user's lab; "test" the test tiers' lab. */
export function profileFromEnv(value = process.env.WPFARM_LAB): LabProfile {
  const v = value?.trim() || 'user';
  const p = PROFILES[v as LabProfile['name']];
  if (!p || !Object.hasOwn(PROFILES, v)) throw new Error(`WPFARM_LAB=${JSON.stringify(value)}: must be "user" (the default) or "test"`);
  return p;
}

export const PROFILE: LabProfile = profileFromEnv();

/** State of this machine (not of one clone): the FORWARD policy before the lab's dockerd, locks. */
export const MACHINE_DIR = process.env.WPFARM_LAB_MACHINE_DIR ?? '/run/wpfarm-lab';
export const FILES_DIR = path.join(ROOT, 'files', 'lab');

/** A profile's paths: its state directory (keys, known_hosts, snapshots, logs, caches; gitignored) and the machine's. */
export function pathsOf(p: LabProfile) {
  const dir = path.join(ROOT, p.stateDir);
  return {
    stateDir: dir,
    inventory: path.join(ROOT, p.inventory),
    clientKey: path.join(dir, 'id_ed25519'),
    knownHosts: path.join(dir, 'known_hosts'),
    /** the lab's credentials (settings.env_file of its inventory): generated once, mode 0600 */
    envFile: path.join(dir, 'lab.env'),
    /** the lab's certificate authority (ca.crt, ca.key 0600) and the edge's host certificates (hosts/): made by lab-up */
    labCa: path.join(dir, 'ca'),
    hostKeys: path.join(dir, 'hostkeys'),
    before: path.join(dir, 'before.json'),
    beforeLast: path.join(dir, 'before.last.json'),
    /** machine facts, not a clone's: shared by every clone and both profiles, gone at reboot like the rules */
    hostState: path.join(MACHINE_DIR, 'host-state.json'),
    partitions: path.join(dir, 'partitions.json'),
    logs: path.join(dir, 'logs'),
    registryCache: path.join(dir, 'cache', 'registry'),
    /** locks around dockerd start and image builds: machine-wide (several clones share one engine) */
    locks: path.join(MACHINE_DIR, 'locks'),
    /** the nodes' /etc/resolv.conf: the lab's dnsmasq on the services container */
    resolvConf: path.join(dir, 'resolv.conf'),
    /** the S3 user's keys for the store's container (from lab.env; mode 0600, mounted read-only) */
    s3Keys: path.join(dir, 's3', 'keys'),
  } as const;
}

export const PATHS = pathsOf(PROFILE);
export const STATE_DIR = PATHS.stateDir;
export const INVENTORY_FILE = PATHS.inventory;

export const LABEL = 'wpfarm.lab';
export const LABEL_VALUE = PROFILE.label;
export const LABEL_FILTER = `label=${LABEL}=${LABEL_VALUE}`;

export const NETWORK = PROFILE.network;
export const BRIDGE = PROFILE.bridge;
export const SUBNET = `${PROFILE.net}.0/24`;
export const GATEWAY = `${PROFILE.net}.1`;
export const CONTAINER_PREFIX = PROFILE.containerPrefix;
/** An address of the lab's subnet: labAddress(11) is mgr1's. */
export const labAddress = (host: number, p: LabProfile = PROFILE): string => `${p.net}.${host}`;

export const IMAGES = {
  base: 'wpfarm/base:bookworm',
  node: 'wpfarm/lab-node:bookworm',
  svc: 'wpfarm/lab-svc:bookworm',
  /** the node image with phase 1's packages baked in (scripts/lab/images.ts, playbooks/image.ts --lab) */
  golden: 'wpfarm/lab-golden:bookworm',
  s3: 'wpfarm/lab-s3:bookworm',
  ctl: 'wpfarm/lab-ctl:bookworm',
  legacy: 'wpfarm/lab-legacy:bookworm',
} as const;

/**
 * Which image the lab's nodes start from: 'golden' (the default: phase 1's packages baked in, so phase 1 only
 * verifies) or 'bare' (a node as bare as a fresh droplet of the stock image), from $WPFARM_LAB_NODE_IMAGE.
 */
export function nodeImageKind(value = process.env.WPFARM_LAB_NODE_IMAGE): 'golden' | 'bare' {
  const v = value?.trim() || 'golden';
  if (v !== 'golden' && v !== 'bare')
    throw new Error(`WPFARM_LAB_NODE_IMAGE=${JSON.stringify(value)}: must be "golden" (the default) or "bare"`);
  return v;
}

/** Lab services (registry + DNS resolver) live on their own container, not on a farm node. */
export function svcOf(p: LabProfile) {
  return {
    name: 'svc',
    address: labAddress(2, p),
    registryPort: 5000,
    dnsPort: 53,
    /** the registry published on the controller's loopback, so the host engine can push without daemon.json */
    hostRegistry: `127.0.0.1:${p.hostRegistryPort}`,
  } as const;
}
export const SVC = svcOf(PROFILE);

/**
 * The lab's S3 store on its own container (files/lab/s3): a real Ceph RADOS Gateway, as DigitalOcean Spaces is;
 * the backups' bucket. Its keys are generated into the lab's lab.env with the other credentials.
 */
export function s3Of(p: LabProfile) {
  const address = labAddress(60, p);
  return {
    name: 's3',
    address,
    port: 7480,
    endpoint: `http://${address}:7480`,
    region: 'us-east-1',
    bucket: 'wpfarm-lab-backups',
  } as const;
}
export const S3 = s3Of(PROFILE);

/**
 * The lab's controller (files/lab/ctl): the machine an operator runs wpfarm from, with systemd, so that the
 * controller's jobs (the backup schedule) run on real timers. This checkout and node are mounted into it.
 */
export function ctlOf(p: LabProfile) {
  return { name: 'ctl', address: labAddress(10, p) } as const;
}
export const CTL = ctlOf(PROFILE);

export interface LabNode {
  name: string;
  address: string;
  /** groups the node is listed in directly (inventory) */
  groups: string[];
  /** the simulated region (host var `region`): `lab.ts regions apply` delays the traffic between regions */
  region: LabRegion;
}

/** The lab's simulated regions: one manager and one Galera node each; storage (Gluster and its arbiter) stays in a. */
export const LAB_REGIONS = ['a', 'b', 'c'] as const;
export type LabRegion = (typeof LAB_REGIONS)[number];

// 3 managers, 2 workers, 3 database nodes, 2 storage nodes, 1 monitoring/management node: name, last octet, groups,
// region.
const TOPOLOGY: ReadonlyArray<readonly [string, number, string[], LabRegion]> = [
  ['mgr1', 11, ['managers', 'edge'], 'a'],
  ['mgr2', 12, ['managers', 'edge'], 'b'],
  ['mgr3', 13, ['managers', 'edge'], 'c'],
  ['wrk1', 21, ['workers'], 'a'],
  ['wrk2', 22, ['workers'], 'b'],
  ['db1', 31, ['db'], 'a'],
  ['db2', 32, ['db'], 'b'],
  ['db3', 33, ['db'], 'c'],
  ['st1', 41, ['storage'], 'a'],
  ['st2', 42, ['storage'], 'a'],
  ['mon1', 51, ['monitoring', 'storage_arbiter'], 'a'],
];

export function nodesOf(p: LabProfile): readonly LabNode[] {
  return TOPOLOGY.map(([name, host, groups, region]) => ({ name, address: labAddress(host, p), groups: [...groups], region }));
}
export const NODES: readonly LabNode[] = nodesOf(PROFILE);

export const containerName = (node: string): string => `${CONTAINER_PREFIX}${node}`;
export const dockerVolumeName = (node: string): string => `${CONTAINER_PREFIX}${node}-docker`;

export function findNode(name: string): LabNode | undefined {
  return NODES.find((n) => n.name === name);
}

/**
 * "Legacy" hosts (issue 14): a VPS of today that sites are migrated FROM (files/lab/legacy: Debian's wordpress
 * package, nginx + php-fpm, a local MariaDB on 127.0.0.1:3307). On the lab network, reached by ssh with the lab's
 * key, never in the farm's inventory; created and seeded with LEGACY_SITES by `lab.ts legacy-up` only (never by lab-up).
 */
export function legacyOf(p: LabProfile): readonly { name: string; address: string }[] {
  return [{ name: 'legacy1', address: labAddress(91, p) }];
}
export const LEGACY = legacyOf(PROFILE);

export interface LegacySite {
  domain: string;
  /** the legacy host it lives on (LEGACY) */
  host: string;
  /** the WordPress root (ABSPATH) for ssh://root@HOST/ROOT */
  root: string;
  /** its wp-content directory on the host */
  contentDir: string;
  layout: 'debian' | 'plain';
  tablePrefix: string;
}

/** The sites legacy-up seeds (files/lab/legacy/seed.sh); the admin user is `admin`, its password LEGACY_WP_ADMIN_PASSWORD of lab.env. */
export const LEGACY_SITES: readonly LegacySite[] = [
  {
    domain: 'shop.legacy.test',
    host: 'legacy1',
    root: '/usr/share/wordpress',
    contentDir: '/var/lib/wordpress/wp-content',
    layout: 'debian',
    tablePrefix: 'wp_',
  },
  {
    domain: 'blog.legacy.test',
    host: 'legacy1',
    root: '/srv/www/blog',
    contentDir: '/srv/www/blog/wp-content',
    layout: 'plain',
    tablePrefix: 'lg7_',
  },
];
/** MB of random uploads of shop.legacy.test (the "one site over 200 MB") */
export const LEGACY_BIG_UPLOADS_MB = 210;

/** Every name the fault tools accept: the farm nodes, the services container and the legacy hosts. */
export function allMachineNames(): string[] {
  return [...NODES.map((n) => n.name), SVC.name, ...LEGACY.map((l) => l.name)];
}
