// The golden node image: what it bakes in, and its preparation as steps the engine runs on a fresh machine of the
// stock image (the builder droplet of playbooks/image.ts). The lab's golden image runs the same apt command lines in
// a docker build (scripts/lab/images.ts).
//
// It holds every package a role of the farm installs, on whatever kind of host that role runs: phase 1's
// (roles/common/packages.ts) and the later phases' (each role's own list, imported below). A new node's phases then
// only verify packages; installing them (11 nodes unpacking the same packages at once) was most of a bootstrap.
// No daemon starts during the build, and the units those packages enable on install are left disabled and stopped
// (GOLDEN_DISABLED_UNITS): each role enables its own service on the hosts it runs on (the common role Docker on
// swarm hosts, galera MariaDB on the db hosts, gluster glusterd on the storage hosts...), so a worker made from the
// image runs no MariaDB. What a role's package does when installed that cannot be baked stays out: CrowdSec's
// postinst registers the machine with a local API, so crowdsec installs its packages itself.
import { apt } from '../../lib/ops/apt.ts';
import { systemd } from '../../lib/ops/systemd.ts';
import type { Role } from '../../lib/types.ts';
import { FILES_PACKAGES, DB_PACKAGES as BACKUP_DB_PACKAGES } from '../backup/role.ts';
import { DB_ENDPOINT_PACKAGES } from '../db-endpoint/role.ts';
import { GALERA_PACKAGES } from '../galera/role.ts';
import { CLIENT_PACKAGES, SERVER_PACKAGES } from '../gluster/role.ts';
import { KEEPALIVED_PACKAGES } from '../keepalived/role.ts';
import { MYSQLD_EXPORTER_PACKAGES, NODE_EXPORTER_PACKAGES, PROMETHEUS_PACKAGES, VARNISH_STATS_PACKAGES } from '../monitoring/role.ts';
import { BASE_PACKAGES, DOCKER_PACKAGES, DOCKER_UNITS } from './packages.ts';

/** The later phases' packages (phases 2-4), by role. */
export const LATER_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  galera: GALERA_PACKAGES,
  'db-endpoint': DB_ENDPOINT_PACKAGES,
  gluster: [...SERVER_PACKAGES, ...CLIENT_PACKAGES],
  keepalived: KEEPALIVED_PACKAGES,
  monitoring: [...NODE_EXPORTER_PACKAGES, ...MYSQLD_EXPORTER_PACKAGES, ...VARNISH_STATS_PACKAGES, ...PROMETHEUS_PACKAGES],
  backup: [...BACKUP_DB_PACKAGES, ...FILES_PACKAGES],
};

/**
 * The units the later phases' packages enable when installed (Debian 12). The image leaves them disabled; the lab's
 * image build fails, naming it, if one of those packages leaves another unit enabled (goldenUnitsCheck).
 */
export const LATER_UNITS = [
  'mariadb.service',
  'haproxy.service',
  'prometheus-node-exporter.service',
  'prometheus-mysqld-exporter.service',
  'prometheus.service',
  'prometheus-alertmanager.service',
  'keepalived.service',
];

/** Every unit the image leaves disabled and stopped. */
export const GOLDEN_DISABLED_UNITS = [...DOCKER_UNITS, ...LATER_UNITS];

/** What a golden image bakes in: phase 1's packages and the later phases', each once. */
export function goldenPackages(): string[] {
  return [...new Set([...BASE_PACKAGES, ...DOCKER_PACKAGES, ...laterPackages()])];
}

/** The later phases' packages only (the shell check below lists their units). */
export function laterPackages(): string[] {
  return [...new Set(Object.values(LATER_PACKAGES).flat())];
}

/**
 * A shell check, run after the units are disabled: any unit shipped by a later phase's package that is still
 * enabled fails it, naming the unit (a new Debian release may enable one more; add it to LATER_UNITS).
 */
export function goldenUnitsCheck(): string {
  const pkgs = laterPackages().join(' ');
  return (
    `left=$(for u in $(dpkg -L ${pkgs} | grep -E '^/(usr/)?lib/systemd/system/[^/@]+[.](service|socket|timer)$' | xargs -rn1 basename | sort -u); ` +
    `do [ "$(systemctl is-enabled "$u" 2>/dev/null)" = enabled ] && echo "$u"; done; true); ` +
    `if [ -n "$left" ]; then echo "golden image: units enabled by the later phases' packages, not in LATER_UNITS (roles/common/golden.ts): $left" >&2; exit 1; fi`
  );
}

export const goldenRole: Role = {
  name: 'golden-image',
  hosts: 'all',
  description: "the farm's packages baked into a node image",
  steps: () => [
    apt({ packages: goldenPackages(), state: 'present', update_cache: true, autostart: false }, { retries: 2, delayMs: 5000 }),
    ...GOLDEN_DISABLED_UNITS.map((u) => systemd({ name: u, enabled: false, state: 'stopped' })),
  ],
};

/** What goes into the image, for its content-derived name: a change here means a new image. */
export function goldenInputs(baseImage: string | number): string[] {
  return [`base=${String(baseImage)}`, `packages=${goldenPackages().join(',')}`, `disabled=${GOLDEN_DISABLED_UNITS.join(',')}`];
}
