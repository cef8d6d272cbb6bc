// The golden node image's preparation, as steps the engine runs on a fresh machine of the stock image (the
// builder droplet of playbooks/image.ts): phase 1's packages (roles/common/packages.ts) with the common role's own
// apt operation, daemons not started, the Docker units left disabled (the common role enables them on swarm hosts).
// The lab's golden image runs the same apt command lines in a docker build (scripts/lab/images.ts).
import { apt } from '../../lib/ops/apt.ts';
import { systemd } from '../../lib/ops/systemd.ts';
import type { Role } from '../../lib/types.ts';
import { DOCKER_UNITS, goldenPackages } from './packages.ts';

export const goldenRole: Role = {
  name: 'golden-image',
  hosts: 'all',
  description: "phase 1's packages baked into a node image",
  steps: () => [
    apt({ packages: goldenPackages(), state: 'present', update_cache: true, autostart: false }, { retries: 2, delayMs: 5000 }),
    ...DOCKER_UNITS.map((u) => systemd({ name: u, enabled: false, state: 'stopped' })),
  ],
};

/** What goes into the image, for its content-derived name: a change here means a new image. */
export function goldenInputs(baseImage: string | number): string[] {
  return [`base=${String(baseImage)}`, `packages=${goldenPackages().join(',')}`, `disabled=${DOCKER_UNITS.join(',')}`];
}
