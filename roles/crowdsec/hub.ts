// Enabling hub items offline. Debian's crowdsec ships the hub in /usr/share/crowdsec/hub (linked from
// /var/lib/crowdsec/hub); `cscli collections install` wants to download from hub-cdn.crowdsec.net and
// fails offline. Debian's postinst instead enables items by symlinking them into /etc/crowdsec; this does
// the same for wpfarm's collections, resolving their dependencies from the hub's .index.json.
import { quote } from 'zx';

export type HubType = 'collections' | 'parsers' | 'postoverflows' | 'scenarios';

export interface HubIndexItem {
  path: string;
  stage?: string;
  parsers?: string[];
  scenarios?: string[];
  postoverflows?: string[];
  collections?: string[];
}

export type HubIndex = Record<HubType, Record<string, HubIndexItem>>;

export interface HubLink {
  type: HubType;
  name: string;
  /** path inside the hub, e.g. parsers/s01-parse/crowdsecurity/traefik-logs.yaml */
  hubPath: string;
  /** path inside the config dir, e.g. parsers/s01-parse/traefik-logs.yaml (vendor stripped, as postinst does) */
  configPath: string;
}

/** The items a set of collections needs, dependencies first, each once. */
export function resolveCollections(index: HubIndex, names: readonly string[]): HubLink[] {
  const seen = new Set<string>();
  const out: HubLink[] = [];
  const visit = (type: HubType, name: string, via: string): void => {
    const key = `${type}:${name}`;
    if (seen.has(key)) return;
    seen.add(key);
    const item = index[type]?.[name];
    if (!item) throw new Error(`hub item ${type}/${name} (needed by ${via}) is not in the hub index`);
    if (type === 'collections') {
      for (const t of ['collections', 'parsers', 'postoverflows', 'scenarios'] as const)
        for (const dep of item[t] ?? []) visit(t, dep, name);
    }
    const parts = item.path.split('/');
    const configPath = `${parts.slice(0, -2).join('/')}/${parts[parts.length - 1]}`;
    out.push({ type, name, hubPath: item.path, configPath });
  };
  for (const n of names) visit('collections', n, 'wpfarm');
  return out;
}

/** Shell script that creates the symlinks (idempotent: ln -sfn), given the hub and config dirs. */
export function enableScript(links: HubLink[], hubDir = '/var/lib/crowdsec/hub', configDir = '/etc/crowdsec'): string {
  const dirs = [...new Set(links.map((l) => `${configDir}/${l.configPath.split('/').slice(0, -1).join('/')}`))].sort();
  const lines = ['set -eu', `mkdir -p ${dirs.map((d) => quote(d)).join(' ')}`];
  for (const l of links) lines.push(`ln -sfn ${quote(`${hubDir}/${l.hubPath}`)} ${quote(`${configDir}/${l.configPath}`)}`);
  return lines.join('\n') + '\n';
}
