// wp-site: every WordPress site of the farm (inventory/sites/*.yml) as its own Swarm stack: nginx,
// php-fpm and redis on the site's overlay network wp-site-<id>; see docs/sites.md. Runs on the managers;
// each step runs ONCE per run (runOnce) since a swarm is one system, and a no-change run costs one round
// trip whatever the number of sites: the state step probes the whole farm once, the later steps plan from it.
//
//   step                 tag          what it does (roles/wp-site/steps.ts)
//   site images          images       this version's images are in the registry (the images role, phase 3 of
//                                     bootstrap, builds them; this role never does)
//   site state           always       one probe of the farm; the sites whose stack differs (or add-site's)
//   site secrets         secrets      secret store entry of a new site; its content-hashed Swarm secrets
//   site databases       database     database, user and grant
//   site directories     directories  Gluster directories
//   site stacks          stack        docker stack deploy
//   site stacks ready    wait         every replica running and healthy
//   WordPress install    install      wpfarm-install when WordPress is not installed yet
//   site exporter        exporter     the WordPress exporter stack for every site (roles/wp-exporter)
//   site results         always       fails the run naming every site that failed (the others went on)
// (DNS records are add-site's: it reads the inventory's cloudflare section.)
//
// Variables: wp_sites_dir (default inventory/sites), wp_sites_only (ids), wp_site_unpin (ids whose image pin
// (rollback.ts) is ignored: update.ts), wp_site_full (ids checked
// completely: database, directories, install, used by add-site/add-sites), wp_site_title, wp_site_admin_user,
// wp_site_admin_email (one site) or wp_site_install ({id: {title, admin_user, admin_email}}: add-sites),
// wp_site_concurrency (sites at once within a step, default 1), site_base_image, registry / registry_push, gluster_mount, swarm_endpoint_mode,
// overlay_encrypted, wp_db_host, galera_writer_port, wp_db_user_host, wp_site_wait (s), wp_site_placement,
// wp_update_delay / wp_update_monitor (Swarm's rolling update: default 10s / 30s; the lab's inventories 2s / 10s).
import type { Role } from '../../lib/types.ts';
import { wpSiteSteps } from './steps.ts';

const role: Role = {
  name: 'wp-site',
  hosts: 'managers',
  tags: ['wp-site'],
  description: 'per-site stacks (nginx, php-fpm, redis), their secrets, databases and directories',
  steps: () => wpSiteSteps(),
};

export default role;
