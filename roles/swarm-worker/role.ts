// swarm-worker: join the swarm with the worker token (any swarm host that is not a manager), rejoin when the
// node left or was reset, node labels from the inventory.
import type { Role } from '../../lib/types.ts';
import { availability, joinSwarm, kernelPreflight, nodeLabels } from '../swarm-manager/swarm.ts';

const role: Role = {
  name: 'swarm-worker',
  hosts: 'swarm:!managers',
  tags: ['swarm'],
  description: 'swarm join of the workers, labels',
  steps: () => [kernelPreflight(), joinSwarm('worker'), availability('active'), nodeLabels()],
};

export default role;
