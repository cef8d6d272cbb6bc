// Fault tools: kill (SIGKILL, like a droplet losing power), stop (clean shutdown), start, partition
// (the node's cable pulled: the host side of its veth goes down, its address and state stay) and heal.
// Regions: `regions apply` delays (and loses a little of) the traffic between the lab's simulated regions,
// `regions partition R` cuts region R off from the others (the controller still reaches it), `regions heal R`
// and `regions clear` undo it (how: below).
import { $ } from 'zx';
import fs from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { BRIDGE, FILES_DIR, LAB_REGIONS, NODES, PATHS, PROFILE, allMachineNames, containerName, type LabRegion } from './config.ts';
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
//
// This machine's kernel has no netem (and no prio) qdisc: `tc qdisc add ... netem` answers "Specified qdisc kind
// is unknown". So the regions are made on the lab bridge's forwarding path of this machine instead (every packet
// between two nodes crosses it; br_netfilter hands bridged packets to iptables): a chain of ours, jumped to from
// DOCKER-USER (Docker's place for such rules), matches node-to-node packets between regions by source and
// destination address. Loss is `-m statistic --mode random ... -j DROP`, a region partition `-j DROP` both ways,
// and the delay is NFQUEUE to files/lab/nfq-delay.py (holds each packet DELAY_MS, then accepts it; --queue-bypass
// lets packets through when it is not running). The controller and svc are in no region: never delayed.

/** What `regions apply` set up (kept in the state directory; `regions clear` removes it). */
export interface RegionsState {
  /** delay added to every packet from a node to a node of another region (each way: the RTT grows by twice this) */
  delayMs: number;
  /** loss (percent) on the same packets */
  lossPct: number;
  /** regions cut off from every other region (every packet dropped both ways); the controller still reaches them */
  partitioned: LabRegion[];
}

export const REGIONS_FILE = path.join(PATHS.stateDir, 'regions.json');
const DELAYER_PID = path.join(PATHS.stateDir, 'regions-delay.pid');
const DELAYER = path.join(FILES_DIR, 'nfq-delay.py');
export const REGION_DEFAULTS = { delayMs: 40, lossPct: 0.5 } as const;
/** this profile's iptables chain and NFQUEUE number (the user's and the test lab's differ) */
export const REGION_CHAIN = `WPFARM-REGIONS-${PROFILE.name}`;
export const REGION_QUEUE = 7800 + Number(PROFILE.net.split('.')[1]);

export function readRegions(): RegionsState | undefined {
  return readJson<RegionsState>(REGIONS_FILE);
}

function checkRegion(r: string): LabRegion {
  if (!(LAB_REGIONS as readonly string[]).includes(r)) throw new InputError(`unknown lab region "${r}" (one of: ${LAB_REGIONS.join(' ')})`);
  return r as LabRegion;
}

/** The rules of REGION_CHAIN (pure): for each pair of nodes in different regions, drop (partitioned), or lose a
 *  little and queue to the delayer. */
export function regionRules(st: RegionsState): string[][] {
  const rules: string[][] = [];
  for (const a of NODES) {
    for (const b of NODES) {
      if (a.region === b.region) continue;
      const pair = ['-s', `${a.address}/32`, '-d', `${b.address}/32`];
      if (st.partitioned.includes(a.region) || st.partitioned.includes(b.region)) {
        rules.push([...pair, '-j', 'DROP']);
        continue;
      }
      if (st.lossPct > 0)
        rules.push([...pair, '-m', 'statistic', '--mode', 'random', '--probability', String(st.lossPct / 100), '-j', 'DROP']);
      if (st.delayMs > 0) rules.push([...pair, '-j', 'NFQUEUE', '--queue-num', String(REGION_QUEUE), '--queue-bypass']);
    }
  }
  return rules;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stop the delayer this tool started (by its recorded pid, only if it still runs our script). */
async function stopDelayer(): Promise<void> {
  const pid = Number(fs.existsSync(DELAYER_PID) ? fs.readFileSync(DELAYER_PID, 'utf8') : '');
  if (pid > 0 && alive(pid) && (await tryOut`cat /proc/${pid}/cmdline`)?.includes('nfq-delay.py')) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  }
  fs.rmSync(DELAYER_PID, { force: true });
}

async function startDelayer(delayMs: number): Promise<void> {
  await stopDelayer();
  fs.mkdirSync(PATHS.logs, { recursive: true });
  const log = path.join(PATHS.logs, 'nfq-delay.log');
  const out = fs.openSync(log, 'w');
  const child = spawn('/usr/bin/python3', [DELAYER, String(REGION_QUEUE), String(delayMs)], {
    detached: true,
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  child.unref();
  if (!child.pid) throw new Error(`could not start ${DELAYER}`);
  fs.writeFileSync(DELAYER_PID, `${child.pid}\n`);
  for (let i = 0; i < 50; i++) {
    const text = fs.readFileSync(log, 'utf8');
    if (text.includes('nfq-delay: queue')) return;
    if (!alive(child.pid)) throw new Error(`${DELAYER} stopped: ${text.trim()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${DELAYER} did not bind queue ${REGION_QUEUE} in 5 s (see ${log})`);
}

/** Set REGION_CHAIN to the state's rules (or, with no state, remove it and its jump). */
async function applyRegionRules(st: RegionsState | undefined): Promise<void> {
  await $`iptables -w -N ${REGION_CHAIN}`.nothrow().quiet();
  await $`iptables -w -F ${REGION_CHAIN}`;
  if (!st) {
    while ((await $`iptables -w -D DOCKER-USER -j ${REGION_CHAIN}`.nothrow().quiet()).exitCode === 0);
    await $`iptables -w -X ${REGION_CHAIN}`.nothrow().quiet();
    return;
  }
  for (const r of regionRules(st)) await $`iptables -w -A ${REGION_CHAIN} ${r}`;
  if ((await $`iptables -w -C DOCKER-USER -j ${REGION_CHAIN}`.nothrow().quiet()).exitCode !== 0)
    await $`iptables -w -I DOCKER-USER -j ${REGION_CHAIN}`;
}

async function setRegions(st: RegionsState): Promise<void> {
  if (st.delayMs > 0) await startDelayer(st.delayMs);
  else await stopDelayer();
  await applyRegionRules(st);
  writeJson(REGIONS_FILE, st);
}

/** regions apply [DELAY_MS] [LOSS_PCT] | clear | partition R | heal R */
export async function regions(action: string, args: string[]): Promise<void> {
  const cur = readRegions();
  switch (action) {
    case 'apply': {
      const delayMs = args[0] !== undefined ? Number(args[0]) : (cur?.delayMs ?? REGION_DEFAULTS.delayMs);
      const lossPct = args[1] !== undefined ? Number(args[1]) : (cur?.lossPct ?? REGION_DEFAULTS.lossPct);
      if (!Number.isFinite(delayMs) || delayMs < 0 || delayMs > 10_000) throw new InputError(`regions apply: delay ${args[0]} ms: 0-10000`);
      if (!Number.isFinite(lossPct) || lossPct < 0 || lossPct > 100) throw new InputError(`regions apply: loss ${args[1]} %: 0-100`);
      await setRegions({ delayMs, lossPct, partitioned: cur?.partitioned ?? [] });
      say(`regions ${LAB_REGIONS.join(' ')}: +${delayMs} ms each way (RTT +${2 * delayMs} ms), ${lossPct}% loss between them`);
      return;
    }
    case 'clear':
      await applyRegionRules(undefined);
      await stopDelayer();
      fs.rmSync(REGIONS_FILE, { force: true });
      say('regions cleared: no delay, no loss, no region partition');
      return;
    case 'partition':
    case 'heal': {
      const r = checkRegion(args[0] ?? '');
      const base = cur ?? { ...REGION_DEFAULTS, partitioned: [] };
      const partitioned = action === 'partition' ? [...new Set([...base.partitioned, r])] : base.partitioned.filter((x) => x !== r);
      await setRegions({ ...base, partitioned });
      say(
        `region ${r}: ${action === 'partition' ? 'cut off from the other regions' : 'reconnected'} ` +
          `(partitioned now: ${partitioned.join(' ') || 'none'})`,
      );
      return;
    }
    default:
      throw new InputError(`regions ${action}: expected apply [DELAY_MS] [LOSS_PCT] | clear | partition REGION | heal REGION`);
  }
}
