// Lab nodes: keys, containers, readiness, known_hosts and inventory/lab.yml.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { promises as dns } from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { $, quote } from 'zx';
import {
  BRIDGE,
  CTL,
  CONTAINER_PREFIX,
  GATEWAY,
  LAB_REGIONS,
  IMAGES,
  INVENTORY_FILE,
  LABEL,
  LABEL_FILTER,
  LABEL_VALUE,
  LEGACY,
  NETWORK,
  NODES,
  PATHS,
  PROFILE,
  ROOT,
  S3,
  STATE_DIR,
  SUBNET,
  SVC,
  containerName,
  dockerVolumeName,
  nodesOf,
  pathsOf,
  s3Of,
  svcOf,
  type LabNode,
  type LabProfile,
} from './config.ts';
import { aptMirrors } from './images.ts';
import { ensureDir, runLogged, say, tryOut, waitFor } from './util.ts';

export interface Machine {
  name: string;
  address: string;
  /** node: a farm "droplet"; svc: registry + DNS; s3: the S3 store; ctl: the controller (systemd timers);
   *  legacy: a legacy VPS to migrate from (lab.ts legacy-up only) */
  kind: 'node' | 'svc' | 's3' | 'ctl' | 'legacy';
}

/** The farm's lab machines: what lab-up creates. */
export function machines(): Machine[] {
  return [
    { name: SVC.name, address: SVC.address, kind: 'svc' },
    { name: S3.name, address: S3.address, kind: 's3' },
    { name: CTL.name, address: CTL.address, kind: 'ctl' },
    ...NODES.map((n) => ({ name: n.name, address: n.address, kind: 'node' as const })),
  ];
}

/** The legacy hosts (issue 14): created only by `lab.ts legacy-up` (the lab test that migrates from them), never by lab-up. */
export function legacyMachines(): Machine[] {
  return LEGACY.map((l) => ({ name: l.name, address: l.address, kind: 'legacy' as const }));
}

// ---------------------------------------------------------------- keys

async function keygen(file: string, comment: string): Promise<void> {
  if (fs.existsSync(file) && fs.existsSync(`${file}.pub`)) return;
  ensureDir(path.dirname(file), 0o700);
  fs.rmSync(file, { force: true });
  fs.rmSync(`${file}.pub`, { force: true });
  await $`ssh-keygen -q -t ed25519 -N ${''} -C ${comment} -f ${file}`;
}

/** The controller's key for root on every node, and one ed25519 host key per machine. */
export async function ensureKeys(): Promise<void> {
  ensureDir(STATE_DIR, 0o700);
  await keygen(PATHS.clientKey, `${CONTAINER_PREFIX}controller`);
  for (const m of machines()) await ensureHostKey(m.name);
}

/** One machine's ed25519 host key in the state directory (made once). */
export async function ensureHostKey(name: string): Promise<void> {
  await keygen(path.join(PATHS.hostKeys, name, 'ssh_host_ed25519_key'), `root@${name}`);
}

export function hostPublicKey(name: string): string {
  return fs.readFileSync(path.join(PATHS.hostKeys, name, 'ssh_host_ed25519_key.pub'), 'utf8').trim();
}

/** known_hosts: "ADDRESS ssh-ed25519 AAAA..." (port 22), one line per machine. */
export function writeKnownHosts(): void {
  // a legacy host's line once legacy-up made its key (a later lab-up keeps it)
  const legacy = legacyMachines().filter((m) => fs.existsSync(path.join(PATHS.hostKeys, m.name, 'ssh_host_ed25519_key.pub')));
  const text = [...machines(), ...legacy]
    .map((m) => {
      const [type, key] = hostPublicKey(m.name).split(/\s+/);
      return `${m.address} ${type} ${key}`;
    })
    .join('\n');
  fs.writeFileSync(PATHS.knownHosts, `${text}\n`, { mode: 0o644 });
}

/** Fingerprint of what is injected into a container: a changed key means a new container. */
function keysTag(name: string): string {
  return createHash('sha256')
    .update(hostPublicKey(name))
    .update(fs.readFileSync(`${PATHS.clientKey}.pub`))
    .digest('hex')
    .slice(0, 16);
}

// ---------------------------------------------------------------- containers

export interface ContainerInfo {
  name: string;
  id: string;
  running: boolean;
  status: string;
  image: string;
  labels: Record<string, string>;
  pid: number;
}

export async function inspectContainer(cname: string): Promise<ContainerInfo | undefined> {
  const out = await tryOut`docker container inspect ${cname}`;
  if (!out) return undefined;
  const [c] = JSON.parse(out) as Array<{
    Id: string;
    Image: string;
    State: { Running: boolean; Status: string; Pid: number };
    Config: { Labels: Record<string, string> | null };
  }>;
  if (!c) return undefined;
  return {
    name: cname,
    id: c.Id,
    running: c.State.Running,
    status: c.State.Status,
    image: c.Image,
    labels: c.Config.Labels ?? {},
    pid: c.State.Pid,
  };
}

/** The lab network on its own bridge; a bridge link left without its docker network is removed. */
export async function ensureNetwork(): Promise<boolean> {
  const out = await tryOut`docker network inspect ${NETWORK}`;
  if (out) {
    const [n] = JSON.parse(out) as Array<{ Labels: Record<string, string> | null; IPAM: { Config: Array<{ Subnet: string }> } }>;
    if (n?.Labels?.[LABEL] !== LABEL_VALUE) throw new Error(`a docker network named ${NETWORK} exists that the lab did not create`);
    if (n.IPAM.Config[0]?.Subnet !== SUBNET)
      throw new Error(`network ${NETWORK} has subnet ${n.IPAM.Config[0]?.Subnet}, expected ${SUBNET}: run lab-down`);
    return false;
  }
  if (await tryOut`ip link show ${BRIDGE}`) {
    say(`removing a leftover bridge ${BRIDGE} (no docker network owns it)`);
    await $`ip link delete ${BRIDGE}`;
  }
  say(`creating network ${NETWORK} (${SUBNET}, bridge ${BRIDGE}, gateway ${GATEWAY})`);
  const label = `${LABEL}=${LABEL_VALUE}`;
  const bridge = `com.docker.network.bridge.name=${BRIDGE}`;
  await $`docker network create --driver bridge --subnet ${SUBNET} --gateway ${GATEWAY} --label ${label} -o ${bridge} ${NETWORK}`;
  return true;
}

/** The flags that let systemd and a nested dockerd run without --privileged (see the lab facts note). */
export function systemdFlags(): string[] {
  return [
    '--cap-add',
    'ALL',
    '--cap-drop',
    'SYS_RESOURCE',
    '--security-opt',
    'seccomp=unconfined',
    '--security-opt',
    'apparmor=unconfined',
    '--security-opt',
    'systempaths=unconfined',
    '--device-cgroup-rule',
    'a *:* rwm',
    '--device',
    '/dev/fuse',
    '--tmpfs',
    '/run',
    '--tmpfs',
    '/run/lock',
    '-v',
    '/sys/fs/cgroup:/sys/fs/cgroup:rw',
    '-e',
    'container=docker',
    '--stop-timeout',
    '20',
  ];
}

/**
 * A mount source by its real path (its directory resolved): a worktree that shares a lab links its state directory
 * to the main checkout's, and the nodes' specs must not differ with the checkout that runs lab-up (a different
 * spec recreates every node). The inventory keeps checkout-relative paths.
 */
function realPath(p: string): string {
  try {
    return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
  } catch {
    return p;
  }
}

export function specFor(m: Machine, imageId: string): string[] {
  const cname = containerName(m.name);
  const args = [
    '--name',
    cname,
    '--hostname',
    m.name,
    '--label',
    `${LABEL}=${LABEL_VALUE}`,
    '--label',
    `${LABEL}.machine=${m.name}`,
    '--label',
    `${LABEL}.keys=${keysTag(m.name)}`,
    '--network',
    NETWORK,
    '--ip',
    m.address,
    ...systemdFlags(),
  ];
  if (m.kind === 'node') {
    args.push(
      '--mount',
      `type=volume,src=${dockerVolumeName(m.name)},dst=/var/lib/docker`,
      // a droplet's resolver: the lab's dnsmasq (a nested dockerd would fall back to public resolvers
      // if it found docker's 127.0.0.11 here)
      '-v',
      `${realPath(PATHS.resolvConf)}:/etc/resolv.conf:ro`,
    );
  } else if (m.kind === 'legacy') {
    args.push('-v', `${realPath(PATHS.resolvConf)}:/etc/resolv.conf:ro`);
  } else if (m.kind === 'svc') {
    const [hip, hport] = SVC.hostRegistry.split(':');
    args.push('-v', `${realPath(PATHS.registryCache)}:/var/lib/docker-registry`, '-p', `${hip}:${hport}:${SVC.registryPort}`);
  } else if (m.kind === 's3') {
    // the S3 user's keys (lab.env's), read by wpfarm-lab-s3.service at each start
    args.push('-v', `${realPath(PATHS.s3Keys)}:/etc/wpfarm-lab-s3/keys:ro`);
  } else {
    // the controller runs this checkout with this machine's node (symlinked node_modules or state: their targets too)
    const links = [path.join(ROOT, 'node_modules'), STATE_DIR]
      .filter((p) => fs.existsSync(p))
      .map((p) => fs.realpathSync(p))
      .filter((p) => !p.startsWith(`${ROOT}/`))
      .flatMap((p) => ['-v', `${p}:${p}`]);
    args.push('-v', `${ROOT}:${ROOT}`, ...links, '-v', `${process.execPath}:/usr/bin/node:ro`);
  }
  const spec = [...args, imageId];
  const tag = createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16);
  return ['--label', `${LABEL}.spec=${tag}`, ...spec];
}

/** Files a fresh "droplet" gets from its provider: host key, root's authorized_keys, machine id. */
async function injectFiles(m: Machine, cname: string): Promise<void> {
  const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-lab-inject-'));
  try {
    const put = (rel: string, content: string | Buffer, mode: number): void => {
      const p = path.join(stage, rel);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, content, { mode });
      fs.chmodSync(p, mode);
    };
    const hk = path.join(PATHS.hostKeys, m.name, 'ssh_host_ed25519_key');
    put('etc/ssh/ssh_host_ed25519_key', fs.readFileSync(hk), 0o600);
    put('etc/ssh/ssh_host_ed25519_key.pub', fs.readFileSync(`${hk}.pub`), 0o644);
    put('root/.ssh/authorized_keys', fs.readFileSync(`${PATHS.clientKey}.pub`), 0o600);
    fs.chmodSync(path.join(stage, 'root/.ssh'), 0o700);
    put('etc/machine-id', `${randomBytes(16).toString('hex')}\n`, 0o444);
    const files = [
      './root/.ssh',
      './root/.ssh/authorized_keys',
      './etc/ssh/ssh_host_ed25519_key',
      './etc/ssh/ssh_host_ed25519_key.pub',
      './etc/machine-id',
    ];
    const script = `set -o pipefail; tar -C ${quote(stage)} --owner=0 --group=0 --numeric-owner --no-recursion -c ${files.map(quote).join(' ')} | docker cp - ${quote(`${cname}:/`)}`;
    await $`bash -c ${script}`;
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

/** A machine's container (and a node's /var/lib/docker volume, a fresh one when `replaced`), with its injected files. */
async function createMachine(m: Machine, spec: string[], replaced: boolean): Promise<void> {
  if (m.kind === 'node') {
    const vol = dockerVolumeName(m.name);
    if (replaced) await $`docker volume rm -f ${vol}`.nothrow();
    const existing = await tryOut`docker volume inspect --format ${`{{index .Labels "${LABEL}"}}`} ${vol}`;
    if (existing === undefined) await $`docker volume create --label ${`${LABEL}=${LABEL_VALUE}`} ${vol}`;
    else if (existing.trim() !== LABEL_VALUE) throw new Error(`a docker volume named ${vol} exists that the lab did not create`);
  }
  await $`docker create ${spec}`;
  await injectFiles(m, containerName(m.name));
}

/**
 * One more node beside the lab's topology (a test's, e.g. a node of the golden image joining the farm): its host key,
 * container and volume, labelled like the lab's (lab-down removes it too), started and ready. Returns its
 * known_hosts line. removeExtraNode takes it away again.
 */
export async function addExtraNode(m: Machine, imageId: string): Promise<string> {
  if ([...machines(), ...legacyMachines()].some((x) => x.name === m.name || x.address === m.address))
    throw new Error(`${m.name} (${m.address}) is a lab machine`);
  await ensureHostKey(m.name);
  if (await inspectContainer(containerName(m.name))) throw new Error(`${containerName(m.name)} exists already`);
  await createMachine(m, specFor(m, imageId), false);
  await $`docker start ${containerName(m.name)}`;
  await waitReady(m.name, 120_000, m);
  const [type, key] = hostPublicKey(m.name).split(/\s+/);
  return `${m.address} ${type} ${key}`;
}

/** Remove an extra node: container, volume and host key (a lab machine is refused). */
export async function removeExtraNode(name: string): Promise<void> {
  if (machines().some((x) => x.name === name)) throw new Error(`${name} is a lab machine: not removed`);
  const c = await inspectContainer(containerName(name));
  if (c && c.labels[LABEL] !== LABEL_VALUE) throw new Error(`${containerName(name)} was not created by the lab`);
  if (c) await $`docker rm -f -v ${containerName(name)}`;
  await $`docker volume rm -f ${dockerVolumeName(name)}`.nothrow();
  fs.rmSync(path.join(PATHS.hostKeys, name), { recursive: true, force: true });
}

export interface NodeUpResult {
  created: string[];
  started: string[];
  kept: string[];
}

/** Create (or recreate when image, keys or flags changed) and start every lab machine (or the machines `list` names). */
export async function ensureMachines(
  images: Partial<Record<Machine['kind'], string>>,
  list: Machine[] = machines(),
): Promise<NodeUpResult> {
  ensureDir(PATHS.registryCache);
  const res: NodeUpResult = { created: [], started: [], kept: [] };
  const toStart: string[] = [];
  fs.writeFileSync(
    PATHS.resolvConf,
    `# wpfarm lab: dnsmasq on the services container\nnameserver ${SVC.address}\noptions timeout:2 attempts:3\n`,
  );
  const limit = pLimit(4);
  await Promise.all(
    list.map((m) =>
      limit(async () => {
        const cname = containerName(m.name);
        const image = images[m.kind];
        if (!image) throw new Error(`${m.name}: no ${m.kind} image given`);
        const spec = specFor(m, image);
        const specLabel = spec[1]!;
        const have = await inspectContainer(cname);
        if (have && `${LABEL}.spec=${have.labels[`${LABEL}.spec`]}` === specLabel) {
          if (have.running) res.kept.push(m.name);
          else toStart.push(m.name);
          return;
        }
        if (have) {
          if (have.labels[LABEL] !== LABEL_VALUE) throw new Error(`a container named ${cname} exists that the lab did not create`);
          say(`${m.name}: image, keys or flags changed: recreating it as a fresh node`);
          await $`docker rm -f -v ${cname}`;
        }
        await createMachine(m, spec, !!have);
        res.created.push(m.name);
        toStart.push(m.name);
      }),
    ),
  );
  // the services container first: the nodes' resolver and apt proxy
  const order = list.map((m) => m.name);
  toStart.sort((a, b) => order.indexOf(a) - order.indexOf(b));
  if (toStart.length) {
    say(`starting ${toStart.length} machine(s): ${toStart.join(' ')}`);
    if (toStart[0] === SVC.name) await $`docker start ${containerName(SVC.name)}`;
    await Promise.all(toStart.filter((n) => n !== SVC.name).map((n) => limit(() => $`docker start ${containerName(n)}`)));
    res.started = toStart.filter((n) => !res.created.includes(n));
  }
  return res;
}

/** Reads an SSH banner from ADDRESS:22 (sshd is listening and answering). */
export function sshBanner(address: string, timeoutMs = 2000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: address, port: 22 });
    const done = (v: string | undefined): void => {
      sock.destroy();
      resolve(v);
    };
    sock.setTimeout(timeoutMs, () => done(undefined));
    sock.on('error', () => done(undefined));
    sock.once('data', (d) => done(d.toString('utf8').split('\n')[0]?.trim()));
  });
}

/** systemd finished booting (running or degraded) and sshd answers. */
export async function waitReady(name: string, timeoutMs = 90_000, machine?: Machine): Promise<string> {
  const m = machine ?? [...machines(), ...legacyMachines()].find((x) => x.name === name);
  if (!m) throw new Error(`unknown lab machine ${name}`);
  const cname = containerName(name);
  const state = await waitFor(
    `${name}: systemd boot`,
    async () => {
      const out = (await $`docker exec ${cname} systemctl is-system-running`.nothrow().quiet()).stdout.trim();
      return out === 'running' || out === 'degraded' ? out : undefined;
    },
    timeoutMs,
    300,
  );
  if (state === 'degraded') {
    const failed = (await $`docker exec ${cname} systemctl --failed --no-legend --plain`.nothrow().quiet()).stdout.trim();
    say(
      `${name}: systemd is degraded: ${failed
        .split('\n')
        .map((l) => l.split(/\s+/)[0])
        .join(' ')}`,
    );
  }
  await waitFor(`${name}: sshd on ${m.address}:22`, () => sshBanner(m.address), timeoutMs, 300);
  return state;
}

export async function waitSvc(timeoutMs = 60_000): Promise<void> {
  await waitFor(
    'the lab registry (/v2/)',
    async () => {
      const r = await fetch(`http://${SVC.hostRegistry}/v2/`).catch(() => undefined);
      return r?.status === 200;
    },
    timeoutMs,
    500,
  );
  // dnsmasq: resolve the apt mirror's name (a name the host resolves for apt anyway)
  const name = new URL(aptMirrors().debian).hostname;
  const resolver = new dns.Resolver({ timeout: 2000, tries: 1 });
  resolver.setServers([SVC.address]);
  await waitFor(`dnsmasq on ${SVC.address} resolving ${name}`, async () => (await resolver.resolve4(name)).length > 0, timeoutMs, 500);
}

// ---------------------------------------------------------------- inventory

/**
 * The profile's inventory (inventory/lab.yml for the user's lab) in the engine's format: one text for both
 * profiles, only their names differ. Deterministic: the same topology gives the same file.
 */
export function inventoryText(p: LabProfile = PROFILE): string {
  const paths = pathsOf(p);
  // a state file as the checkout names it (.wpfarm/<profile>/...), not by its real path: a worktree whose state
  // directory links to the main checkout's writes the same text (the inventory is shared with that checkout)
  const rel = (file: string): string => path.join(p.stateDir, path.relative(paths.stateDir, file));
  const svc = svcOf(p);
  const nodes = nodesOf(p);
  const [bridge, subnet, gateway] = [p.bridge, `${p.net}.0/24`, `${p.net}.1`];
  const hosts = nodes
    .map((n) => `  ${n.name}: { address: ${n.address}, port: 22, user: root, key: ${rel(paths.clientKey)}, vars: { region: ${n.region} } }`)
    .join('\n');
  const members = (g: string): string =>
    nodes
      .filter((n: LabNode) => n.groups.includes(g))
      .map((n) => n.name)
      .join(', ');
  // run directories and retry files of runs on this lab, when they must not mix with the user's (.wpfarm/runs, .wpfarm/retry)
  const runData = p.runData
    ? `\n  # runs on this lab keep their logs, reports and retry files apart from the user's\n  run_log_dir: ${p.stateDir}/runs\n  retry_dir: ${p.stateDir}/retry`
    : '';
  const sites = p.sitesDir ? `\n  # this lab's site records (never the user's inventory/sites)\n  wp_sites_dir: ${p.sitesDir}` : '';
  return `# ${p.inventory}: ${p.title} (written by ${p.writer}, scripts/lab.ts; do not edit by hand).
# ${nodes.length} "droplets" as systemd containers on the bridge ${bridge} (${subnet}) of this machine.
# Lab differences from production are variables here, never code branches: see docs/lab.md.
settings:
  known_hosts: ${rel(paths.knownHosts)}
  # the lab's credentials, generated by lab-up (production: your own .env, see .env.example)
  env_file: ${rel(paths.envFile)}${runData}
vars:
  lab: true${sites}
  # this kernel has no IPVS: no service VIPs, no ingress routing mesh
  swarm_endpoint_mode: dnsrr
  swarm_publish_mode: host
  # this kernel has no ESP: encrypted overlays pass no traffic
  overlay_encrypted: false
  # Debian's docker-registry on the lab services container; plain HTTP, so nodes list it as insecure
  registry: ${svc.address}:${svc.registryPort}
  registry_insecure: true
  # the same registry as the controller sees it (docker push from this machine)
  registry_push: ${svc.hostRegistry}
  # the nodes' resolver (dnsmasq on the services container); give it to nested dockerd too (daemon.json "dns")
  dns_servers: [${svc.address}]
  private_interface: eth0
  private_cidr: ${subnet}
  management_cidrs: [${subnet}]
  timezone: UTC
  # the lab's GlusterFS bricks live on the nodes' root filesystem, which gluster accepts only with force
  gluster_brick_force: true
  # Traefik's image cannot be pulled here: Debian's HAProxy stands in for it, configured from Traefik's router
  # model (roles/traefik/standin.ts), with certificates from the lab's own CA (made by lab-up in edge_ca_dir;
  # trust its ca.crt to open a site). Traefik's configuration is still generated: Let's Encrypt's staging CA is
  # the default (acme_staging); the account e-mail and the dashboard's name are required variables
  edge_standin: haproxy
  edge_ca_dir: ${rel(paths.labCa)}
  acme_email: ops@example.com
  traefik_dashboard_host: traefik.lab.example.com
  # Portainer (image not pullable here either: stack and API configuration reported skipped); the UI's name is
  # required, its administrator password is PORTAINER_ADMIN_PASSWORD in the lab's env file
  portainer_host: portainer.lab.example.com
  # Alertmanager's receiver: a webhook on this machine (the lab bridge's gateway); test/lab/75-monitoring
  # listens there, otherwise notifications fail and are retried (production: slack, email, pagerduty, ...)
  alert_channels: [{ type: webhook, url: "http://${gateway}:19093/alert" }]
  # simulated regions (host var region; \`lab.ts regions apply\` adds delay and loss between them): one manager
  # and one Galera node per region (gmcast.segment each), storage within region a. Galera's WAN timeouts scaled
  # down from Codership's PT3S/PT30S/PT1M/PT1M so that the lab's region-partition test stays short
  regions: [${LAB_REGIONS.join(', ')}]
  galera_wan_options: { evs.keepalive_period: PT1S, evs.suspect_timeout: PT5S, evs.inactive_timeout: PT10S, evs.install_timeout: PT10S }
  # Swarm's rolling update of a site's services, scaled down from production's 10s between tasks and 30s watching
  # each new (healthy) task: the lab's tests roll sites many times (a failing health check still rolls back)
  wp_update_delay: 2s
  wp_update_monitor: 10s
hosts:
${hosts}
groups:
  managers: { hosts: [${members('managers')}] }
  workers: { hosts: [${members('workers')}] }
  db: { hosts: [${members('db')}] }
  storage: { hosts: [${members('storage')}] }
  # the third, small GlusterFS brick (replica 3 arbiter 1) lives on the monitoring node
  storage_arbiter: { hosts: [${members('storage_arbiter')}] }
  gluster: { children: [storage, storage_arbiter] }
  monitoring: { hosts: [${members('monitoring')}] }
  # traefik runs on the managers (host-mode 80/443)
  edge: { hosts: [${members('edge')}] }
  # Galera (db) and GlusterFS (storage) run as host services outside the swarm
  swarm: { children: [managers, workers, monitoring] }
`;
}

/** Credentials the roles read from the run's env file; the lab generates random ones. */
export const LAB_CREDENTIALS = [
  'CROWDSEC_REGISTRATION_SECRET',
  'GRAFANA_ADMIN_PASSWORD',
  'MYSQLD_EXPORTER_PASSWORD',
  'PORTAINER_ADMIN_PASSWORD',
  'WP_EXPORTER_DB_PASSWORD',
  // the backups (roles/backup/keys.ts): the S3 user of the lab's store, restic's repository password
  'WPFARM_S3_ACCESS_KEY',
  'WPFARM_S3_SECRET_KEY',
  'WPFARM_RESTIC_PASSWORD',
  // the admin password of the legacy hosts' seeded sites (scripts/lab/legacy.ts): the migration's login check
  'LEGACY_WP_ADMIN_PASSWORD',
] as const;

/** The backups' settings (not secrets): the lab's S3 store and its bucket. */
export function labS3Settings(p: LabProfile = PROFILE): Record<string, string> {
  const s3 = s3Of(p);
  return { WPFARM_S3_ENDPOINT: s3.endpoint, WPFARM_S3_REGION: s3.region, WPFARM_S3_BUCKET: s3.bucket };
}

/** An age key pair (the backups' encryption): `age-keygen` on this machine (scripts/setup.sh installs age). */
function ageKeyPair(): { identity: string; recipient: string } {
  const out = execFileSync('age-keygen', [], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const identity = out.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-'));
  const recipient = out
    .split('\n')
    .map((l) => /^# public key: (age1\S+)$/.exec(l)?.[1])
    .find(Boolean);
  if (!identity || !recipient) throw new Error('age-keygen gave no key pair');
  return { identity, recipient };
}

/** A generated value: S3 access keys are what an S3 client expects (20 upper-case characters), the rest random. */
export function generateCredential(name: (typeof LAB_CREDENTIALS)[number]): string {
  if (name === 'WPFARM_S3_ACCESS_KEY') return `WPFLAB${randomBytes(7).toString('hex').toUpperCase()}`;
  if (name === 'WPFARM_S3_SECRET_KEY') return randomBytes(30).toString('base64url');
  return randomBytes(24).toString('base64url');
}

/** NAME=value lines of an env file (the values as written: the lab writes no quotes). */
function envValues(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(l);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** How lab-up makes the backups' age key pair (age-keygen here) and derives a recipient from an identity. */
export interface AgeKeys {
  pair(): { identity: string; recipient: string };
  recipientOf(identity: string): string;
}
const AGE_KEYGEN: AgeKeys = {
  pair: ageKeyPair,
  recipientOf: (identity) => execFileSync('age-keygen', ['-y'], { input: `${identity}\n`, encoding: 'utf8' }).trim(),
};

/**
 * The NAME=value pairs a lab env file whose text is `cur` lacks: random values for LAB_CREDENTIALS, an age key
 * pair for the backups, and the profile's S3 store settings. Names already there keep their values.
 */
export function labEnvAdditions(cur: string, p: LabProfile = PROFILE, age: AgeKeys = AGE_KEYGEN): Array<[string, string]> {
  const have = envValues(cur);
  const add: Array<[string, string]> = LAB_CREDENTIALS.filter((n) => !have.has(n)).map((n) => [n, generateCredential(n)]);
  if (!have.has('WPFARM_BACKUP_AGE_IDENTITY')) {
    const pair = age.pair();
    add.push(['WPFARM_BACKUP_AGE_IDENTITY', pair.identity], ['WPFARM_BACKUP_AGE_RECIPIENT', pair.recipient]);
  } else if (!have.has('WPFARM_BACKUP_AGE_RECIPIENT')) {
    add.push(['WPFARM_BACKUP_AGE_RECIPIENT', age.recipientOf(have.get('WPFARM_BACKUP_AGE_IDENTITY')!)]);
  }
  for (const [n, v] of Object.entries(labS3Settings(p))) if (!have.has(n)) add.push([n, v]);
  return add;
}

/**
 * The lab's env file (labEnvAdditions), written once and kept (a value that changed at every lab-up would make
 * every rerun change the farm). Missing names are added; other lines are kept. Mode 0600; values are never
 * printed. Returns the names added.
 */
export function writeLabEnv(): string[] {
  const cur = fs.existsSync(PATHS.envFile) ? fs.readFileSync(PATHS.envFile, 'utf8') : '';
  const add = labEnvAdditions(cur);
  if (add.length || !cur) {
    ensureDir(path.dirname(PATHS.envFile));
    const head = cur || "# The lab's credentials, generated by `make lab-up` (scripts/lab.ts). Not for production.\n";
    const lines = add.map(([n, v]) => `${n}=${v}`);
    fs.writeFileSync(PATHS.envFile, `${head}${head.endsWith('\n') ? '' : '\n'}${lines.join('\n')}${lines.length ? '\n' : ''}`, {
      mode: 0o600,
    });
  }
  fs.chmodSync(PATHS.envFile, 0o600);
  return add.map(([n]) => n);
}

/** The S3 user's keys as the store's container reads them (two lines), from lab.env; mode 0600. */
export function writeS3Keys(): void {
  const env = envValues(fs.readFileSync(PATHS.envFile, 'utf8'));
  const [access, secret] = [env.get('WPFARM_S3_ACCESS_KEY'), env.get('WPFARM_S3_SECRET_KEY')];
  if (!access || !secret) throw new Error(`${path.relative(ROOT, PATHS.envFile)}: WPFARM_S3_ACCESS_KEY or WPFARM_S3_SECRET_KEY is empty`);
  const text = `${access}\n${secret}\n`;
  ensureDir(path.dirname(PATHS.s3Keys), 0o700);
  if (!fs.existsSync(PATHS.s3Keys) || fs.readFileSync(PATHS.s3Keys, 'utf8') !== text) fs.writeFileSync(PATHS.s3Keys, text, { mode: 0o600 });
  fs.chmodSync(PATHS.s3Keys, 0o600);
}

/** Write the profile's inventory when it differs (so a committed copy stays untouched). */
export function writeInventory(): boolean {
  const text = inventoryText();
  const cur = fs.existsSync(INVENTORY_FILE) ? fs.readFileSync(INVENTORY_FILE, 'utf8') : '';
  if (cur === text) return false;
  ensureDir(path.dirname(INVENTORY_FILE));
  fs.writeFileSync(INVENTORY_FILE, text);
  return true;
}

// ---------------------------------------------------------------- removal

/** Remove every container, volume and network labelled wpfarm.lab=<this profile's label value>, and its bridge. */
export async function removeLabObjects(): Promise<{ containers: number; volumes: number; networks: number }> {
  const ids = (s: string | undefined): string[] =>
    (s ?? '')
      .split('\n')
      .map((x) => x.trim())
      .filter(Boolean);
  const containers = ids(await tryOut`docker ps -aq --filter ${LABEL_FILTER}`);
  if (containers.length) {
    say(`removing ${containers.length} lab container(s)`);
    await runLogged(['docker', 'rm', '-f', '-v', ...containers], { name: 'rm-containers', what: 'docker rm' });
  }
  const volumes = ids(await tryOut`docker volume ls -q --filter ${LABEL_FILTER}`);
  if (volumes.length) {
    say(`removing ${volumes.length} lab volume(s)`);
    await $`docker volume rm -f ${volumes}`;
  }
  const networks = ids(await tryOut`docker network ls -q --filter ${LABEL_FILTER}`);
  if (networks.length) {
    say(`removing network ${NETWORK}`);
    await $`docker network rm ${networks}`;
  }
  if (await tryOut`ip link show ${BRIDGE}`) {
    say(`removing leftover bridge ${BRIDGE}`);
    await $`ip link delete ${BRIDGE}`.nothrow();
  }
  return { containers: containers.length, volumes: volumes.length, networks: networks.length };
}

/**
 * Containers of another lab profile on this engine ("NAME (wpfarm.lab=VALUE)"): labelled wpfarm.lab with a value
 * other than this profile's. Their presence keeps the engine's shared state (FORWARD policy, dockerd) as it is.
 */
export async function otherLabContainers(): Promise<string[]> {
  const out = await tryOut`docker ps -a --filter ${`label=${LABEL}`} --format ${`{{.Names}} {{.Label "${LABEL}"}}`}`;
  return (out ?? '')
    .split('\n')
    .map((l) => l.trim().split(' '))
    .filter(([name, value]) => name && value !== LABEL_VALUE)
    .map(([name, value]) => `${name} (${LABEL}=${value})`);
}
