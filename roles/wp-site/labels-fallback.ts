// TEMPORARY local fallback for roles/traefik/labels.ts (written by the Traefik helper), with the
// agreed signature. Remove this file and import from '../traefik/labels.ts' in stack.ts once it exists.
// Inputs are validated by the caller (site.ts): ids are [a-z][a-z0-9-]*, domains are LDH names,
// CIDRs are checked, so nothing here can inject rule syntax.

export interface SiteRouterLabelsInput {
  id: string;
  domains: string[];
  sticky?: boolean;
  adminAllowlist?: string[];
  port: number;
}

export function siteRouterLabels({ id, domains, sticky, adminAllowlist, port }: SiteRouterLabelsInput): Record<string, string> {
  const r = `site-${id}`;
  const hosts = domains.map((d) => `Host(\`${d}\`)`).join(' || ');
  const labels: Record<string, string> = {
    'traefik.enable': 'true',
    'traefik.swarm.network': 'traefik-public',
    [`traefik.http.routers.${r}.rule`]: hosts,
    [`traefik.http.routers.${r}.entrypoints`]: 'websecure',
    [`traefik.http.routers.${r}.tls`]: 'true',
    [`traefik.http.routers.${r}.service`]: r,
    [`traefik.http.services.${r}.loadbalancer.server.port`]: String(port),
  };
  if (sticky) {
    labels[`traefik.http.services.${r}.loadbalancer.sticky.cookie`] = 'true';
    labels[`traefik.http.services.${r}.loadbalancer.sticky.cookie.name`] = `wpfarm_${id.replace(/-/g, '_')}`;
    labels[`traefik.http.services.${r}.loadbalancer.sticky.cookie.secure`] = 'true';
    labels[`traefik.http.services.${r}.loadbalancer.sticky.cookie.httponly`] = 'true';
  }
  if (adminAllowlist && adminAllowlist.length) {
    const a = `${r}-admin`;
    labels[`traefik.http.routers.${a}.rule`] = `(${hosts}) && (PathPrefix(\`/wp-admin\`) || Path(\`/wp-login.php\`))`;
    labels[`traefik.http.routers.${a}.entrypoints`] = 'websecure';
    labels[`traefik.http.routers.${a}.tls`] = 'true';
    labels[`traefik.http.routers.${a}.service`] = r;
    labels[`traefik.http.routers.${a}.priority`] = '1000';
    labels[`traefik.http.routers.${a}.middlewares`] = `${a}-allow`;
    labels[`traefik.http.middlewares.${a}-allow.ipallowlist.sourcerange`] = adminAllowlist.join(',');
  }
  return labels;
}
