// Fault tools: kill (SIGKILL, like a droplet losing power), stop (clean shutdown), start, partition
// (the node's cable pulled: the host side of its veth goes down, its address and state stay) and heal.
// Regions: `regions apply` delays (and loses a little of) the traffic between the lab's simulated regions,
// `regions partition R` cuts region R off from the others (the controller still reaches it), `regions heal R`
// and `regions clear` undo it.
import { $ } from 'zx';
import fs from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { BRIDGE, LAB_REGIONS, NODES, PATHS, allMachineNames, containerName, type LabRegion } from './config.ts';
import { inspectContainer, waitReady } from './nodes.ts';
import { readJson, say, tryOut, writeJson } from './util.ts';
import { InputError } from '../../lib/errors.ts';

export type Fault = 'kill' | 'stop' | 'start' | 'partition' | 'heal';
export const FAULTS: readonly Fault[] = ['kill', 'stop', 'start', 'partition', 'heal'];

type Partitions = Record<string, { veth: string; at: string }>;

function checkName(node: string): string {
  if (!allMachineNames().includes(node)) throw new Error(`unknown lab node "${node}" (one of: ${allMachineNames().join(' ')})`);
  return containerName(node);
}

/**
 * The host-side end of the node's eth0 veth: the peer index comes from `ip link` run in the node's network
 * namespace ("eth0@if23"). Only an interface enslaved to the lab bridge is ever returned.
 */
export async function hostVeth(node: string): Promise<string> {
  const c = await inspectContainer(checkName(node));
  if (!c?.running) throw new Error(`${node} is not running`);
  const inner = (await $`nsenter -t ${c.pid} -n ip -o link show eth0`.quiet()).stdout;
  const idx = inner.match(/eth0@if(\d+):/)?.[1];
  if (!idx) throw new Error(`${node}: cannot find the peer of eth0 in: ${inner.trim()}`);
  const line = (await $`ip -o link show`.quiet()).stdout.split('\n').find((l) => l.startsWith(`${idx}: `));
  const name = line?.match(/^\d+:\s+([^:@]+)/)?.[1];
  if (!name || !line?.includes(` master ${BRIDGE} `)) {
    throw new Error(`${node}: host interface ${idx} (${name ?? '?'}) is not a port of ${BRIDGE}: refusing to touch it`);
  }
  return name;
}

export async function isPartitioned(node: string): Promise<boolean> {
  const p = readJson<Partitions>(PATHS.partitions) ?? {};
  const rec = p[node];
  if (!rec) return false;
  const out = await tryOut`ip -o link show ${rec.veth}`;
  return !!out && !/[<,]UP[,>]/.test(out);
}

export async function fault(kind: Fault, node: string): Promise<void> {
  const cname = checkName(node);
  const parts = readJson<Partitions>(PATHS.partitions) ?? {};
  switch (kind) {
    case 'kill':
      say(`${node}: docker kill (power cut)`);
      await $`docker kill ${cname}`;
      return;
    case 'stop':
      say(`${node}: docker stop (clean shutdown)`);
      await $`docker stop -t 20 ${cname}`;
      return;
    case 'start': {
      const c = await inspectContainer(cname);
      if (c?.running) {
        say(`${node}: already running`);
      } else {
        say(`${node}: docker start`);
        await $`docker start ${cname}`;
      }
      // a restarted container has a new veth: an old partition record no longer applies
      if (parts[node]) {
        delete parts[node];
        writeJson(PATHS.partitions, parts);
      }
      await waitReady(node);
      say(`${node}: up, sshd answers`);
      return;
    }
    case 'partition': {
      const veth = await hostVeth(node);
      say(`${node}: partition: link ${veth} (host side of eth0) down`);
      await $`ip link set dev ${veth} down`;
      parts[node] = { veth, at: new Date().toISOString() };
      writeJson(PATHS.partitions, parts);
      return;
    }
    case 'heal': {
      const rec = parts[node]?.veth;
      const recOk = rec ? (await tryOut`ip -o link show dev ${rec}`)?.includes(` master ${BRIDGE} `) : false;
      const veth = rec && recOk ? rec : await hostVeth(node);
      say(`${node}: heal: link ${veth} up`);
      await $`ip link set dev ${veth} up`;
      delete parts[node];
      writeJson(PATHS.partitions, parts);
      // while the cable was out the host's neighbour entry for the node went FAILED: a connect gets EHOSTUNREACH
      // until the kernel tries again. Forget failed entries, and return once the node's sshd accepts (≤ 15 s).
      await tryOut`ip neigh flush dev ${BRIDGE} nud failed`;
      const address = NODES.find((n) => n.name === node)?.address;
      if (address) {
        const end = Date.now() + 15_000;
        while (!(await sshdAnswers(address))) {
          if (Date.now() > end) throw new Error(`${node}: healed, but ${address}:22 does not answer after 15 s`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      return;
    }
  }
}

/** A TCP connect to the node's sshd within 1 s. */
function sshdAnswers(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: address, port: 22, timeout: 1000 });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('timeout', () => done(false));
    s.once('error', () => done(false));
  });
}

// ---------------------------------------------------------------- regions

/** What `regions apply` set up (kept in the state directory; `regions clear` removes it). */
export interface RegionsState {
  /** one-way delay added to every packet leaving a node for a node of another region (RTT: twice this) */
  delayMs: number;
  /** loss (percent) on the same packets */
  lossPct: number;
  /** regions cut off from every other region (100% loss both ways); the controller and svc still reach them */
  partitioned: LabRegion[];
}

export const REGIONS_FILE = path.join(PATHS.stateDir, 'regions.json');
export const REGION_DEFAULTS = { delayMs: 40, lossPct: 0.5 } as const;

export function readRegions(): RegionsState | undefined {
  return readJson<RegionsState>(REGIONS_FILE);
}

function checkRegion(r: string): LabRegion {
  if (!(LAB_REGIONS as readonly string[]).includes(r)) throw new InputError(`unknown lab region "${r}" (one of: ${LAB_REGIONS.join(' ')})`);
  return r as LabRegion;
}

/**
 * The tc commands for one node (pure): a prio qdisc at the root of eth0 whose default band (1:1) passes
 * traffic untouched (the controller, svc, the node's own region), band 1:2 a netem delay+loss for the other
 * regions' addresses, band 1:3 a netem 100% loss for the addresses of a partitioned region (or every other
 * region when the node's own region is partitioned). u32 filters on the destination address pick the band.
 */
export function regionTcCommands(node: string, st: RegionsState): string[][] {
  const me = NODES.find((n) => n.name === node);
  if (!me) throw new Error(`unknown lab node "${node}"`);
  const dev = ['dev', 'eth0'];
  const cmds: string[][] = [
    ['qdisc', 'add', ...dev, 'root', 'handle', '1:', 'prio', 'bands', '3', 'priomap', ...Array(16).fill('0')],
    ['qdisc', 'add', ...dev, 'parent', '1:2', 'handle', '20:', 'netem', 'delay', `${st.delayMs}ms`, 'loss', `${st.lossPct}%`],
    ['qdisc', 'add', ...dev, 'parent', '1:3', 'handle', '30:', 'netem', 'loss', '100%'],
  ];
  for (const other of NODES) {
    if (other.region === me.region) continue;
    const cut = st.partitioned.includes(me.region) || st.partitioned.includes(other.region);
    const dst = ['match', 'ip', 'dst', `${other.address}/32`];
    cmds.push(['filter', 'add', ...dev, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', ...dst, 'flowid', cut ? '1:3' : '1:2']);
  }
  return cmds;
}

/** Set (or with no state, remove) the region qdiscs inside every running node's network namespace. */
async function applyRegionTc(st: RegionsState | undefined): Promise<void> {
  for (const n of NODES) {
    const c = await inspectContainer(containerName(n.name));
    if (!c?.running) {
      say(`${n.name}: not running, skipped (a node started later gets the regions with the next \`regions apply\`)`);
      continue;
    }
    const ns = ['nsenter', '-t', String(c.pid), '-n', 'tc'];
    await $`${ns} qdisc del dev eth0 root`.nothrow().quiet();
    if (!st) continue;
    for (const cmd of regionTcCommands(n.name, st)) await $`${ns} ${cmd}`.quiet();
  }
}

/** regions apply [delayMs] [lossPct] | clear | partition R | heal R */
export async function regions(action: string, args: string[]): Promise<void> {
  const cur = readRegions();
  switch (action) {
    case 'apply': {
      const delayMs = args[0] !== undefined ? Number(args[0]) : (cur?.delayMs ?? REGION_DEFAULTS.delayMs);
      const lossPct = args[1] !== undefined ? Number(args[1]) : (cur?.lossPct ?? REGION_DEFAULTS.lossPct);
      if (!Number.isFinite(delayMs) || delayMs < 0 || delayMs > 10_000) throw new InputError(`regions apply: delay ${args[0]} ms: 0-10000`);
      if (!Number.isFinite(lossPct) || lossPct < 0 || lossPct > 100) throw new InputError(`regions apply: loss ${args[1]} %: 0-100`);
      const st: RegionsState = { delayMs, lossPct, partitioned: cur?.partitioned ?? [] };
      await applyRegionTc(st);
      writeJson(REGIONS_FILE, st);
      say(`regions ${LAB_REGIONS.join(' ')}: +${delayMs} ms each way (RTT +${2 * delayMs} ms), ${lossPct}% loss between them`);
      return;
    }
    case 'clear':
      await applyRegionTc(undefined);
      fs.rmSync(REGIONS_FILE, { force: true });
      say('regions cleared: no delay, no loss, no region partition');
      return;
    case 'partition':
    case 'heal': {
      const r = checkRegion(args[0] ?? '');
      const base = cur ?? { ...REGION_DEFAULTS, partitioned: [] };
      const partitioned = action === 'partition' ? [...new Set([...base.partitioned, r])] : base.partitioned.filter((x) => x !== r);
      const st: RegionsState = { ...base, partitioned };
      await applyRegionTc(st);
      writeJson(REGIONS_FILE, st);
      say(
        `region ${r}: ${action === 'partition' ? 'cut off from the other regions' : 'reconnected'} (partitioned now: ${partitioned.join(' ') || 'none'})`,
      );
      return;
    }
    default:
      throw new InputError(`regions ${action}: expected apply [DELAY_MS] [LOSS_PCT] | clear | partition REGION | heal REGION`);
  }
}
