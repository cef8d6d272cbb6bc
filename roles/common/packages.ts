// The packages the common role installs (phase 1 of bootstrap): one list, read by the role itself and by the
// golden node images (roles/common/golden.ts: a DigitalOcean snapshot; the lab's node image), which bake these in
// (with the later phases' packages) so that phase 1 on a new node only verifies them.

/** Every host of the farm. */
export const BASE_PACKAGES = [
  'ca-certificates',
  'curl',
  'nftables',
  'sudo',
  'tzdata',
  'unattended-upgrades',
  'systemd-timesyncd',
  'rsync',
  'jq',
];

/** Swarm hosts: the Docker engine. */
export const DOCKER_PACKAGES = ['docker.io'];

/** The units that come with DOCKER_PACKAGES. A golden image leaves them disabled and stopped: on a node outside
 *  the swarm the engine stays off; on a swarm node the common role writes daemon.json first, then enables and
 *  starts it (as it does right after installing the package on a bare node). */
export const DOCKER_UNITS = ['docker.service', 'docker.socket', 'containerd.service'];
