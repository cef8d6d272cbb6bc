// Capacity, the I/O side: which size each node is (inventory), and the measuring role (one round trip per node:
// nproc, /proc/meminfo, docker stats; roles/capacity/docker-stats.ts). The computation is roles/capacity/model.ts.
//
// A node's size slug: its var `droplet_size` (host or group vars), else the size of its group in a `cloud:`
// section of one of the inventory files (provisioning's desired state: pass it with -i next to the written
// inventory, e.g. -i inventory/production.example.yml -i inventory/production.yml).
import { loadCloudInventory } from '../../lib/cloud/config.ts';
import { task } from '../../lib/ops/base.ts';
import type { HostSpec, Role } from '../../lib/types.ts';
import { parseYamlFile } from '../../lib/yamlsrc.ts';
import { stackName } from '../wp-site/stack.ts';
import { nodeProbeScript, parseNodeProbe, siteOfContainer } from './docker-stats.ts';
import type { NodeInput, Usage } from './model.ts';

/** group → size slug from the `cloud:` sections of the inventory files (later file wins per group) */
export function cloudGroupSizes(files: readonly string[]): Map<string, string> {
  const sizes = new Map<string, string>();
  for (const f of files) {
    const doc = parseYamlFile(f).toPlain();
    if (!doc || typeof doc !== 'object' || !('cloud' in doc)) continue;
    for (const g of loadCloudInventory(f).cloud.groups) sizes.set(g.name, g.size);
  }
  return sizes;
}

/** A node's size slug (see the top of this file); undefined when the inventory does not say. */
export function sizeOfHost(h: HostSpec, groupSizes: ReadonlyMap<string, string>): string | undefined {
  const v = h.vars.droplet_size;
  if (typeof v === 'string' && v) return v;
  for (const g of h.groups) {
    const s = groupSizes.get(g);
    if (s) return s;
  }
  return undefined;
}

/** The measuring role: fills `out` with each node's probe, site containers summed by site id. */
export function capacityProbe(pattern: string, siteIds: readonly string[], out: Map<string, NonNullable<NodeInput['probe']>>): Role {
  return {
    name: 'capacity',
    hosts: pattern,
    steps: () => [
      task('measure node (nproc, meminfo, docker stats)', async (ctx) => {
        const p = parseNodeProbe((await ctx.exec(nodeProbeScript())).stdout);
        const sites: Record<string, Usage> = {};
        const other: Usage = { memMiB: 0, cpuMilli: 0 };
        for (const c of p.containers) {
          const id = siteOfContainer(c.name, stackName, siteIds);
          const to = id ? (sites[id] ??= { memMiB: 0, cpuMilli: 0 }) : other;
          to.memMiB += c.memMiB;
          to.cpuMilli += c.cpuMilli;
        }
        out.set(ctx.host.name, { cpus: p.cpus, memTotalMiB: p.memTotalMiB, sites, other, statsError: p.statsError });
        return {
          changed: false,
          result: {
            cpus: p.cpus,
            memTotalMiB: Math.round(p.memTotalMiB),
            containers: p.containers.length,
            sites: Object.keys(sites).length,
          },
        };
      }),
    ],
  };
}
