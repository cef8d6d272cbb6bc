// swarm-manager: the Swarm control plane. Init on the first manager, join the others as managers one at a
// time (serial 1), refuse an even manager count, drain managers (control plane only), node labels from the
// inventory, and the farm's overlay networks.
//
// Variables: swarm_endpoint_mode (vip | dnsrr: dnsrr where the kernel has no IPVS), overlay_encrypted
// (true | false | 'auto'; default 'auto': encrypted where the kernel has ESP), manager_availability (default: active on edge hosts, where Traefik runs; drain elsewhere),
// swarm_advertise_addr (default: the host's inventory address), node_labels (per host), node_label_groups.
import { InputError } from '../../lib/errors.ts';
import { dockerNetwork } from '../../lib/ops/docker.ts';
import { str } from '../../lib/vars.ts';
import type { Role, Step } from '../../lib/types.ts';
import { availability, joinSwarm, kernelPreflight, nodeLabels } from './swarm.ts';

/** The farm's overlay networks (architecture): name → options. */
export const OVERLAY_NETWORKS: { name: string; internal?: boolean }[] = [
  { name: 'traefik-public' },
  { name: 'shared-services' },
  { name: 'database', internal: true },
  { name: 'monitoring' },
  { name: 'management' },
];

const role: Role = {
  name: 'swarm-manager',
  hosts: 'managers',
  tags: ['swarm'],
  serial: 1,
  description: 'swarm init/join of the managers, drain, labels, overlay networks',
  steps(ctx) {
    const managers = ctx.hosts('managers');
    if (managers.length % 2 === 0) {
      throw new InputError(
        `the managers group has ${managers.length} hosts: use an odd number (3 tolerate 1 failure, 5 tolerate 2; an even count adds no fault tolerance)`,
      );
    }
    const enc = ctx.vars.overlay_encrypted;
    const encrypted: boolean | 'auto' = enc === true || enc === false ? enc : 'auto';
    // Managers are drained (control plane only), except those of the edge group: the edge router (Traefik) is
    // placed on managers, and a drained node runs no task at all. Site and monitoring tasks are kept off them
    // by their own placement labels.
    const edge = ctx.host.groups.includes(str(ctx.vars.edge_group, 'edge'));
    const want = String(ctx.vars.manager_availability ?? (edge ? 'active' : 'drain'));
    if (!['active', 'drain', 'pause'].includes(want)) throw new InputError(`manager_availability: '${want}' is not active, drain or pause`);
    const steps: Step[] = [
      kernelPreflight(),
      joinSwarm('manager'),
      availability(want as 'active' | 'drain' | 'pause'),
      nodeLabels(),
      ...OVERLAY_NETWORKS.map((n) =>
        dockerNetwork(
          { name: n.name, driver: 'overlay', attachable: true, internal: n.internal, encrypted, labels: { 'wpfarm.managed': 'true' } },
          { runOnce: true },
        ),
      ),
    ];
    return steps;
  },
};

export default role;
