// The local lab: a farm of "droplets" (systemd + sshd + their own Docker engine) as containers on a
// private bridge of this machine. The default target of `make bootstrap`.
//
//   node --import tsx scripts/lab.ts up|legacy-up|down|status|base-image
//   npx tsx scripts/lab.ts kill|stop|start|partition|heal NODE
//
// Two profiles (scripts/lab/config.ts), chosen by $WPFARM_LAB: the user's lab (default; labelled wpfarm.lab=1,
// state in .wpfarm/lab/, inventory/lab.yml) and the test tiers' lab (WPFARM_LAB=test; labelled wpfarm.lab=test,
// state and inventory in .wpfarm/test-lab/). Each profile's commands see and change only its own objects.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { $ } from 'zx';
import {
  CTL,
  IMAGES,
  INVENTORY_FILE,
  LEGACY,
  NETWORK,
  NODES,
  PATHS,
  PROFILE,
  ROOT,
  S3,
  SUBNET,
  SVC,
  containerName,
  nodeImageKind,
} from './lab/config.ts';
import { installBackupSchedule, waitS3 } from './lab/backups.ts';
import {
  ensureDocker,
  ensureInotifyInstances,
  restoreForwardPolicy,
  restoreInotifyInstances,
  stopOwnDockerd,
  type HostState,
} from './lab/docker.ts';
import { InputError } from '../lib/errors.ts';
import { FAULTS, REGIONS_FILE, fault, isPartitioned, readRegions, regions, type Fault } from './lab/faults.ts';
import { aptMirrors, buildBaseImage, ensureGoldenImage, ensureImages, ensureLegacyImage } from './lab/images.ts';
import { seedLegacyHosts } from './lab/legacy.ts';
import {
  ensureHostKey,
  ensureKeys,
  ensureMachines,
  ensureNetwork,
  inspectContainer,
  legacyMachines,
  machines,
  otherLabContainers,
  removeLabObjects,
  sshBanner,
  waitReady,
  waitSvc,
  writeInventory,
  writeKnownHosts,
  writeLabEnv,
  writeS3Keys,
  type NodeUpResult,
} from './lab/nodes.ts';
import { compareSnapshots, formatDiff, isLabThing, takeSnapshot, type HostSnapshot } from './lab/snapshot.ts';
import { ensureLabCa } from '../roles/traefik/lab-ca.ts';
import { readJson, say, secondsSince, tryOut, withLock, writeJson } from './lab/util.ts';

export { aptMirrors, ensureDocker, buildBaseImage, fault, takeSnapshot, compareSnapshots, formatDiff, isPartitioned };
export type { HostSnapshot, Fault };
export { PATHS, NODES, SVC, INVENTORY_FILE, SUBNET, IMAGES, PROFILE };

export interface LabUpResult extends NodeUpResult {
  seconds: number;
  imagesBuilt: string[];
  dockerStarted: boolean;
  /** what the nodes start from: the golden image (phase 1's packages baked in) or the bare node image */
  nodeImage: 'golden' | 'bare';
  inventory: string;
  knownHosts: string;
}

/**
 * Bring the lab up (idempotent): engine, images, network, machines, known_hosts, inventory/lab.yml.
 * Before creating anything it saves the host's state in .wpfarm/lab/before.json (lab-down compares).
 */
export async function labUp(): Promise<LabUpResult> {
  // one lab-up or lab-down at a time on this machine (tests of several suites may call it at once)
  return withLock(PROFILE.lock, labUpLocked, 20 * 60_000);
}

async function labUpLocked(): Promise<LabUpResult> {
  const started = Date.now();
  say(`lab-up: ${PROFILE.title} (3 managers, 2 workers, 3 db, 2 storage, 1 monitoring) on ${NETWORK} ${SUBNET}`);
  const docker = await ensureDocker();
  if (!docker.started) say(`using the Docker engine that answers here (${docker.serverVersion})`);
  if (!fs.existsSync(PATHS.before)) {
    // the FORWARD policy before dockerd, unless another lab (a profile of its own) uses the engine: then now's
    const state = readJson<HostState>(PATHS.hostState);
    const others = await otherLabContainers();
    const before = await takeSnapshot({ excludeLab: true, forwardPolicy: others.length ? undefined : state?.forwardPolicy });
    writeJson(PATHS.before, before);
  }
  await ensureKeys();
  ensureInotifyInstances();
  const nodeImage = nodeImageKind();
  // the credentials first: the S3 store's container reads its user's keys from the start
  const newCredentials = writeLabEnv();
  if (newCredentials.length) say(`generated the lab's credentials ${newCredentials.join(', ')} in ${path.relative(ROOT, PATHS.envFile)}`);
  writeS3Keys();
  await ensureNetwork();
  // the services and the S3 store start as soon as their images are ready, while the node images still build:
  // Ceph takes 15-20 s to answer, then it is up by the time the nodes are
  const early = machines().filter((m) => m.name === SVC.name || m.name === S3.name);
  let earlyRes: Awaited<ReturnType<typeof ensureMachines>> | undefined;
  const images = await ensureImages({
    golden: nodeImage === 'golden',
    servicesReady: async (ids) => (earlyRes = await ensureMachines(ids, early)),
  });
  say(
    nodeImage === 'golden'
      ? `nodes start from the golden image ${IMAGES.golden} (phase 1's packages baked in: phase 1 only verifies them; ` +
          'WPFARM_LAB_NODE_IMAGE=bare for bare nodes)'
      : `nodes start bare from ${IMAGES.node} (WPFARM_LAB_NODE_IMAGE=bare): phase 1 installs its packages on each`,
  );
  const later = await ensureMachines({ node: images.golden ?? images.node, svc: images.svc, s3: images.s3, ctl: images.ctl });
  const res = {
    created: [...(earlyRes?.created ?? []), ...later.created],
    started: [...(earlyRes?.started ?? []), ...later.started],
    kept: later.kept.filter((n) => !earlyRes?.created.includes(n) && !earlyRes?.started.includes(n)),
  };
  say('waiting for systemd and sshd on every machine');
  let ready = 0;
  const waitStart = Date.now();
  const beat = setInterval(() => say(`  ... ${ready} of ${machines().length} ready after ${secondsSince(waitStart)}`), 15_000);
  try {
    await Promise.all(machines().map((m) => waitReady(m.name).then(() => ready++)));
  } finally {
    clearInterval(beat);
  }
  await waitSvc();
  writeKnownHosts();
  const ca = ensureLabCa(PATHS.labCa);
  say(`the lab's CA: ${path.relative(ROOT, ca.cert)} (trust it to open the lab's sites over https; README)`);
  const changedInv = writeInventory();
  const s3Wait = Date.now();
  await waitS3();
  say(`S3 store answered with the lab's keys and its bucket after ${secondsSince(s3Wait)} more`);
  const scheduleStart = Date.now();
  const schedule = await installBackupSchedule();
  say(`backup schedule on ${CTL.name} in ${secondsSince(scheduleStart)}`);
  const seconds = (Date.now() - started) / 1000;
  say(
    `lab is up in ${secondsSince(started)}: ${res.created.length} created, ${res.started.length} started, ${res.kept.length} already running. ` +
      `${changedInv ? 'Wrote' : 'Checked'} ${path.relative(ROOT, INVENTORY_FILE)}; known hosts ${path.relative(ROOT, PATHS.knownHosts)}`,
  );
  say(`registry ${SVC.address}:${SVC.registryPort} (push from here: ${SVC.hostRegistry}), DNS resolver ${SVC.address}`);
  say(
    `S3 store ${S3.endpoint} (Ceph RGW, bucket and keys in ${path.relative(ROOT, PATHS.envFile)}); backup schedule on the controller ` +
      `${CTL.name} (${CTL.address}): ${schedule.timers.length} systemd timers${schedule.changed ? ' installed' : ', unchanged'}`,
  );
  return {
    ...res,
    seconds,
    imagesBuilt: images.built,
    dockerStarted: docker.started,
    nodeImage,
    inventory: INVENTORY_FILE,
    knownHosts: PATHS.knownHosts,
  };
}

/**
 * The legacy hosts only (issue 14), beside a running lab: image, containers, known_hosts, seeding. Only the lab
 * test that migrates from them (test/lab/66-migrate) calls this; lab-up never creates them (the lab tier's time).
 * The farm's machines are not looked at (lab-up from another checkout would see other bind-mount paths in their
 * spec and recreate them; this never does).
 */
export async function legacyUp(): Promise<NodeUpResult & { seconds: number; imageBuilt: boolean; seeded: string[] }> {
  return withLock(
    PROFILE.lock,
    async () => {
      const started = Date.now();
      await ensureDocker();
      await ensureKeys();
      for (const m of legacyMachines()) await ensureHostKey(m.name);
      const image = await ensureLegacyImage();
      await ensureNetwork();
      const res = await ensureMachines({ legacy: image.id }, legacyMachines());
      await Promise.all(legacyMachines().map((m) => waitReady(m.name, 90_000, m)));
      writeKnownHosts();
      writeLabEnv();
      const seeded = await seedLegacyHosts();
      say(
        `legacy hosts up in ${secondsSince(started)}: ${LEGACY.map((l) => `${l.name} ${l.address}`).join(', ')}` +
          `${image.built ? ` (built ${IMAGES.legacy})` : ''}${res.created.length ? ` (created ${res.created.join(' ')})` : ''}` +
          `${seeded.length ? ` (seeded ${seeded.join(' ')})` : ''}`,
      );
      return { ...res, seconds: (Date.now() - started) / 1000, imageBuilt: image.built, seeded };
    },
    20 * 60_000,
  );
}

export interface LabDownResult {
  removed: { containers: number; volumes: number; networks: number };
  before?: HostSnapshot;
  after: HostSnapshot;
  /** differences between the host before lab-up and now (empty when left as found) */
  leftovers: string;
  /** the part of `leftovers` that names the lab (its bridge, subnet, containers): lab-down's own failures */
  labLeftovers: string;
  stoppedDockerd: boolean;
  seconds: number;
}

/** Remove everything the lab created, restore the FORWARD policy, compare with the state before lab-up. */
export async function labDown(opts: { stopDocker?: boolean; purge?: boolean } = {}): Promise<LabDownResult> {
  return withLock(PROFILE.lock, () => labDownLocked(opts), 20 * 60_000);
}

async function labDownLocked(opts: { stopDocker?: boolean; purge?: boolean }): Promise<LabDownResult> {
  const started = Date.now();
  const before = readJson<HostSnapshot>(PATHS.before);
  if (!(await tryOut`docker info --format ${'{{.ServerVersion}}'}`)) {
    // the engine is gone (killed): start it, or its containers and rules cannot be removed
    await ensureDocker();
  }
  const removed = await removeLabObjects();
  // another lab on the same engine (the user's beside the test lab, or the other way round) keeps it as it is
  const others = await otherLabContainers();
  if (others.length) {
    say(`another lab uses this Docker engine (${others.join(' ')}): its FORWARD policy, inotify limit and dockerd stay as they are`);
  } else {
    await restoreForwardPolicy(before?.forwardPolicy);
    restoreInotifyInstances();
  }
  fs.rmSync(PATHS.partitions, { force: true });
  fs.rmSync(REGIONS_FILE, { force: true });
  let stoppedDockerd = false;
  if (opts.stopDocker && !others.length) stoppedDockerd = await stopOwnDockerd();
  if (opts.purge) {
    say('purge: removing the lab caches and keys in .wpfarm/lab (images stay: remove them with docker rmi)');
    for (const p of [PATHS.registryCache, PATHS.hostKeys, PATHS.clientKey, `${PATHS.clientKey}.pub`, PATHS.knownHosts]) {
      fs.rmSync(p, { recursive: true, force: true });
    }
  }
  const after = await takeSnapshot();
  let leftovers = '';
  let labLeftovers = '';
  if (before) {
    const diffs = (stoppedDockerd ? [] : compareSnapshots(before, after)).filter((d) => !(others.length && d.field === 'forwardPolicy'));
    leftovers = formatDiff(diffs);
    labLeftovers = formatDiff(
      diffs
        .map((d) => (d.field === 'forwardPolicy' ? d : { ...d, added: d.added.filter(isLabThing), removed: d.removed.filter(isLabThing) }))
        .filter((d) => d.added.length + d.removed.length > 0),
    );
    fs.renameSync(PATHS.before, PATHS.beforeLast);
  }
  say(
    `lab-down done in ${secondsSince(started)}: removed ${removed.containers} containers, ${removed.volumes} volumes, ${removed.networks} networks`,
  );
  if (leftovers) say(`the host differs from before lab-up:\n${leftovers}`);
  else if (before && !stoppedDockerd)
    say('the host is as it was before lab-up (containers, networks, volumes, iptables, FORWARD policy, links)');
  return { removed, before, after, leftovers, labLeftovers, stoppedDockerd, seconds: (Date.now() - started) / 1000 };
}

export interface MachineStatus {
  name: string;
  address: string;
  state: string;
  ssh: boolean;
  partitioned: boolean;
  memMiB?: number;
  rssMiB?: number;
}

/**
 * Memory of each running lab container in MiB, read from its cgroup (v1 memory controller): usage minus
 * inactive page cache, as `docker stats` computes it (whose numbers are empty with this engine and kernel).
 */
export async function labMemoryMiB(kind: 'used' | 'rss' = 'used'): Promise<Record<string, number>> {
  const res: Record<string, number> = {};
  for (const m of machines()) {
    const c = await inspectContainer(containerName(m.name));
    if (!c?.running) continue;
    for (const dir of [`/sys/fs/cgroup/memory/docker/${c.id}`, `/sys/fs/cgroup/docker/${c.id}`]) {
      try {
        const usage = Number(
          fs.readFileSync(path.join(dir, dir.includes('/memory/') ? 'memory.usage_in_bytes' : 'memory.current'), 'utf8'),
        );
        const stat = fs.readFileSync(path.join(dir, 'memory.stat'), 'utf8');
        const inactive = Number(stat.match(/^(?:total_inactive_file|inactive_file) (\d+)$/m)?.[1] ?? 0);
        const rss = Number(stat.match(/^(?:total_rss|anon) (\d+)$/m)?.[1] ?? 0);
        res[m.name] = (kind === 'rss' ? rss : usage - inactive) / 1048576;
        break;
      } catch {
        // not this cgroup layout
      }
    }
  }
  return res;
}

export async function labStatus(): Promise<MachineStatus[]> {
  const docker = await tryOut`docker info --format ${'{{.ServerVersion}}'}`;
  if (!docker) {
    say('no Docker engine answers: the lab is down');
    return [];
  }
  const mem = await labMemoryMiB();
  const rss = await labMemoryMiB('rss');
  const rows: MachineStatus[] = [];
  for (const m of [...machines(), ...legacyMachines()]) {
    const c = await inspectContainer(containerName(m.name));
    if (!c && m.kind === 'legacy') continue; // made by legacy-up only
    const ssh = c?.running ? !!(await sshBanner(m.address, 1500)) : false;
    rows.push({
      name: m.name,
      address: m.address,
      state: c ? c.status : 'absent',
      ssh,
      partitioned: c?.running ? await isPartitioned(m.name) : false,
      memMiB: mem[m.name],
      rssMiB: rss[m.name],
    });
  }
  return rows;
}

function printStatus(rows: MachineStatus[]): void {
  if (!rows.length) return;
  const w = (s: string, n: number): string => s.padEnd(n);
  const mib = (v: number | undefined): string => (v !== undefined ? `${v.toFixed(0)} MiB` : '-');
  console.log(`${w('NODE', 6)} ${w('ADDRESS', 12)} ${w('STATE', 10)} ${w('SSH', 4)} ${w('NET', 12)} ${w('MEM', 9)} RSS`);
  let total = 0;
  let totalRss = 0;
  for (const r of rows) {
    total += r.memMiB ?? 0;
    totalRss += r.rssMiB ?? 0;
    console.log(
      `${w(r.name, 6)} ${w(r.address, 12)} ${w(r.state, 10)} ${w(r.ssh ? 'yes' : 'no', 4)} ${w(r.partitioned ? 'PARTITIONED' : 'ok', 12)} ${w(mib(r.memMiB), 9)} ${mib(r.rssMiB)}`,
    );
  }
  console.log(
    `memory ${total.toFixed(0)} MiB (MEM: usage minus inactive file cache, as docker counts it; RSS: anonymous ${totalRss.toFixed(0)} MiB)`,
  );
  const reg = readRegions();
  if (reg)
    console.log(
      `regions: +${reg.delayMs} ms each way, ${reg.lossPct}% loss between regions; partitioned: ${reg.partitioned.join(' ') || 'none'}`,
    );
  console.log(`profile ${PROFILE.name}: network ${NETWORK} ${SUBNET}; inventory ${path.relative(ROOT, INVENTORY_FILE)}`);
}

function usage(): string {
  return `usage: [WPFARM_LAB=user|test] scripts/lab.ts up | legacy-up | down [--stop-docker] [--purge] | status | base-image | golden-image | ${FAULTS.join('|')} NODE
       | regions apply [DELAY_MS] [LOSS_PCT] | regions clear | regions partition|heal REGION
profile ${PROFILE.name} (${PROFILE.title}); nodes: ${machines()
    .map((m) => m.name)
    .join(' ')}`;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, arg, ...rest] = argv;
  switch (cmd) {
    case 'up':
      await labUp();
      return 0;
    case 'down': {
      const flags = [arg, ...rest].filter(Boolean);
      const r = await labDown({ stopDocker: flags.includes('--stop-docker'), purge: flags.includes('--purge') });
      return r.labLeftovers ? 1 : 0;
    }
    case 'legacy-up':
      await legacyUp();
      return 0;
    case 'status': {
      const rows = await labStatus();
      printStatus(rows);
      return 0;
    }
    case 'golden-image': {
      const g = await ensureGoldenImage();
      say(`${IMAGES.golden} ${g.id.slice(0, 19)} (${g.built ? 'built' : 'up to date'})`);
      return 0;
    }
    case 'regions':
      await regions(arg ?? '', rest);
      return 0;
    case 'base-image': {
      const id = await buildBaseImage({ force: arg === '--force' });
      say(`${IMAGES.base} ${id.slice(0, 19)}`);
      return 0;
    }
    default:
      if (cmd && (FAULTS as readonly string[]).includes(cmd)) {
        if (!arg) {
          console.error(usage());
          return 4;
        }
        await fault(cmd as Fault, arg);
        return 0;
      }
      console.error(usage());
      return cmd === undefined || cmd === 'help' || cmd === '--help' ? 0 : 4;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  $.verbose = false;
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(`lab: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(err instanceof InputError ? err.exitCode : 1);
    },
  );
}
