// The farm's roles in order (bootstrap builds them phase by phase; drift checks them all).
/** The roadmap: phase → roles, in order. A role listed here that is not in roles/ yet is reported and skipped. */
export const PHASES: { n: number; title: string; roles: string[] }[] = [
  { n: 1, title: 'foundation', roles: ['common', 'swarm-manager', 'swarm-worker'] },
  // db-endpoint: the Galera single-writer endpoint on each site node (after galera: its check user)
  { n: 2, title: 'core services', roles: ['galera', 'db-endpoint', 'gluster', 'crowdsec'] },
  // images: built once (content-hashed) and pushed to the farm's registry; wp-site and add-site never build
  { n: 3, title: 'WordPress stack', roles: ['traefik', 'keepalived', 'images', 'wp-site'] },
  // the operator's layer, behind the management allow list: Grafana and Portainer need Traefik in front of them,
  // Portainer also the site records and stacks of phase 3 (one team per site group, a resource control per site)
  { n: 4, title: 'observability and management', roles: ['monitoring', 'portainer'] },
  { n: 5, title: 'automation', roles: ['backup'] },
];
