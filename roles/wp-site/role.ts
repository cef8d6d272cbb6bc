// wp-site: every WordPress site of the farm (inventory/sites/*.yml) as its own Swarm stack: nginx,
// php-fpm and redis on the site's overlay network wp-site-<id>; see roles/wp-site/reconcile.ts and
// docs/sites.md. Runs on the managers; the work happens ONCE (runOnce) on the first manager, since a
// swarm is one system: a no-change run costs a constant number of round trips whatever the site count.
//
// Variables: wp_sites_dir (default inventory/sites), wp_sites_only (ids), wp_site_full (one id checked
// completely: database, directories, install, used by add-site), wp_site_title, wp_site_admin_user,
// wp_site_admin_email, site_base_image, registry / registry_push, gluster_mount, swarm_endpoint_mode,
// overlay_encrypted, wp_db_host, galera_writer_port, wp_db_user_host, wp_site_wait (s), wp_site_placement.
import { task } from '../../lib/ops/base.ts';
import type { Role } from '../../lib/types.ts';
import { reconcileSites } from './reconcile.ts';

const role: Role = {
  name: 'wp-site',
  hosts: 'managers',
  description: 'per-site stacks (nginx, php-fpm, redis), their secrets, databases and directories',
  steps: () => [task('sites reconcile', (ctx) => reconcileSites(ctx), { runOnce: true })],
};

export default role;
