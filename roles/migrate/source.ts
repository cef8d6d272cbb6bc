// The legacy host a site comes from: `ssh://user@host[:port]/path/to/wordpress`, reached with its own SSH
// connection (it is not in the farm's inventory), read-only but for the maintenance flag at cutover.
import { InputError } from '../../lib/errors.ts';
import type { HostSpec } from '../../lib/types.ts';

export interface SourceUrl {
  user: string;
  host: string;
  port: number;
  /** the WordPress root (ABSPATH: where wp-settings.php is) */
  path: string;
}

/** A site that cannot be migrated, or bad input about it: exit 4, the site and the reason in the message. */
export class SiteRefused extends InputError {
  constructor(
    readonly domain: string,
    reason: string,
  ) {
    super(`site ${domain}: ${reason}`);
    this.name = 'SiteRefused';
  }
}

const HOST_RE =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$/;

/** Parse the source URL; null and the reason when it is not one. */
export function parseSourceUrl(s: string): SourceUrl | string {
  const m = /^ssh:\/\/(?:([A-Za-z_][A-Za-z0-9_.-]*)@)?([^/:]+|\[[^\]]+\])(?::(\d+))?(\/.*)$/.exec(s);
  if (!m) return `'${s}' is not ssh://user@host[:port]/path/to/wordpress`;
  const [, user = 'root', host = '', port = '22', path = '/'] = m;
  if (!HOST_RE.test(host)) return `'${host}' is not a host name or address`;
  const p = Number(port);
  if (p < 1 || p > 65535) return `port ${port} out of range`;
  if (path.includes('/../') || path.endsWith('/..') || /[\0\n]/.test(path)) return `path '${path}' must be absolute and plain`;
  return { user, host: host.replace(/^\[|\]$/g, ''), port: p, path: path.length > 1 ? path.replace(/\/+$/, '') : path };
}

/** The source as an SSH host for the transport (key: the operator's migration key). */
export function sourceHost(domain: string, src: SourceUrl, key?: string): HostSpec {
  return { name: `legacy:${domain}`, address: src.host, port: src.port, user: src.user, key, groups: [], vars: {} };
}

export function formatSourceUrl(s: SourceUrl): string {
  const host = s.host.includes(':') ? `[${s.host}]` : s.host;
  return `ssh://${s.user}@${host}${s.port === 22 ? '' : `:${s.port}`}${s.path}`;
}
