// Fault tools: kill (SIGKILL, like a droplet losing power), stop (clean shutdown), start, partition
// (the node's cable pulled: the host side of its veth goes down, its address and state stay) and heal.
import { $ } from 'zx';
import { connect } from 'node:net';
import { BRIDGE, NODES, PATHS, allMachineNames, containerName } from './config.ts';
import { inspectContainer, waitReady } from './nodes.ts';
import { readJson, say, tryOut, writeJson } from './util.ts';

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
