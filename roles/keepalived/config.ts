// Pure settings of the keepalived role (inventory variables → what the templates need). No I/O here.
// Variables are documented in docs/roles/keepalived.md.
import { isIP } from 'node:net';
import { InputError } from '../../lib/errors.ts';
import { templatePath } from '../../lib/ops/template.ts';
import type { HostSpec, Vars } from '../../lib/types.ts';
import { TEXTFILE_DIR } from '../monitoring/textfile.ts';

/** templates/keepalived/<name>: the text configs of this role */
export const tpl = (name: string): string => templatePath('keepalived', name);

export const CHECK_SCRIPT = '/usr/local/lib/wpfarm/keepalived-check';
export const NOTIFY_SCRIPT = '/usr/local/lib/wpfarm/keepalived-notify';
export const STATE_FILE = '/var/lib/wpfarm/keepalived.state';
/** the notify script's metrics for node-exporter's textfile collector (wpfarm_keepalived_state{vrrp_instance,state}) */
export const METRICS_FILE = `${TEXTFILE_DIR}/wpfarm_keepalived.prom`;
export const TOKEN_FILE = '/etc/keepalived/do-token';
export const CONF = '/etc/keepalived/keepalived.conf';
export const DO_API = 'https://api.digitalocean.com';

export interface KeepalivedSettings {
  group: string;
  iface: string;
  routerId: number;
  instance: string;
  /** address/prefix of the virtual IP on the private network ('' = none, e.g. production with a reserved IP only) */
  vip: string;
  preempt: boolean;
  advertInt: number;
  checkUrl: string;
  checkInterval: number;
  checkTimeout: number;
  checkFall: number;
  checkRise: number;
  /** DigitalOcean reserved IP moved to the new master ('' = none) */
  reservedIp: string;
  /** name of the .env variable holding the DigitalOcean token used by the notify script */
  tokenEnv: string;
  apiUrl: string;
}

const str = (v: Vars, k: string, d: string): string => {
  const x = v[k] ?? d;
  if (typeof x !== 'string') throw new InputError(`${k} must be a string`);
  return x;
};
const num = (v: Vars, k: string, d: number, min: number, max: number): number => {
  const x = typeof v[k] === 'string' && /^[0-9.]+$/.test(v[k] as string) ? Number(v[k]) : (v[k] ?? d);
  if (typeof x !== 'number' || !Number.isFinite(x) || x < min || x > max) throw new InputError(`${k} must be a number in ${min}..${max}`);
  return x;
};
const bool = (v: Vars, k: string, d: boolean): boolean => {
  const x = v[k] === 'true' ? true : v[k] === 'false' ? false : (v[k] ?? d);
  if (typeof x !== 'boolean') throw new InputError(`${k} must be true or false`);
  return x;
};

export function keepalivedSettings(v: Vars): KeepalivedSettings {
  const vip = str(v, 'keepalived_vip', '');
  if (vip) {
    const [a, p] = vip.split('/');
    if (isIP(a ?? '') !== 4 || (p !== undefined && !/^[0-9]{1,2}$/.test(p)))
      throw new InputError(`keepalived_vip: ${vip} is not an IPv4 address[/prefix]`);
  }
  const reservedIp = str(v, 'keepalived_reserved_ip', '');
  if (reservedIp && isIP(reservedIp) !== 4) throw new InputError(`keepalived_reserved_ip: ${reservedIp} is not an IPv4 address`);
  const checkUrl = str(v, 'keepalived_check_url', 'http://127.0.0.1:8082/ping');
  if (!/^https?:\/\/[A-Za-z0-9.:[\]-]+(\/[A-Za-z0-9._~/-]*)?$/.test(checkUrl))
    throw new InputError(`keepalived_check_url: ${checkUrl} is not a plain http(s) URL`);
  const iface = str(v, 'keepalived_interface', str(v, 'private_interface', 'eth1'));
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(iface)) throw new InputError(`keepalived_interface: ${iface} is not an interface name`);
  const tokenEnv = str(v, 'keepalived_do_token_env', 'DIGITALOCEAN_TOKEN');
  if (!/^[A-Z_][A-Z0-9_]*$/.test(tokenEnv)) throw new InputError(`keepalived_do_token_env: ${tokenEnv} is not a variable name`);
  const apiUrl = str(v, 'keepalived_do_api_url', DO_API);
  if (!/^https?:\/\/[A-Za-z0-9.:-]+$/.test(apiUrl)) throw new InputError(`keepalived_do_api_url: ${apiUrl} is not a base URL`);
  const s: KeepalivedSettings = {
    group: str(v, 'keepalived_group', 'edge'),
    iface,
    routerId: num(v, 'keepalived_router_id', 51, 1, 255),
    instance: 'WPFARM_EDGE',
    vip,
    preempt: bool(v, 'keepalived_preempt', false),
    // VRRPv3 allows centiseconds; 0.1 s gave ~0.5 s failover between lab containers
    advertInt: num(v, 'keepalived_advert_int', 0.2, 0.01, 40),
    checkUrl,
    checkInterval: num(v, 'keepalived_check_interval', 1, 1, 60),
    checkTimeout: num(v, 'keepalived_check_timeout', 1, 1, 60),
    checkFall: num(v, 'keepalived_check_fall', 2, 1, 20),
    checkRise: num(v, 'keepalived_check_rise', 2, 1, 20),
    reservedIp,
    tokenEnv,
    apiUrl,
  };
  if (!s.vip && !s.reservedIp)
    throw new InputError('keepalived: set keepalived_vip (a virtual IP on the private network) or keepalived_reserved_ip (DigitalOcean)');
  return s;
}

/** The per-host variables of keepalived.conf: priority by position in the edge group (first = highest). */
export function keepalivedConfVars(s: KeepalivedSettings, self: HostSpec, edge: readonly HostSpec[]): Record<string, unknown> {
  const i = edge.findIndex((h) => h.name === self.name);
  if (i < 0) throw new InputError(`keepalived: ${self.name} is not in the group ${s.group}`);
  if (edge.length < 2) throw new InputError(`keepalived: the group ${s.group} needs at least two hosts (it has ${edge.length})`);
  return {
    ...s,
    routerName: self.name,
    self: self.address,
    peers: edge.filter((h) => h.name !== self.name).map((h) => h.address),
    priority: 150 - 10 * i,
    check: CHECK_SCRIPT,
    notify: NOTIFY_SCRIPT,
    stateFile: STATE_FILE,
    metricsFile: METRICS_FILE,
    tokenFile: TOKEN_FILE,
  };
}
