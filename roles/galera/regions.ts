// Galera over several regions: one gmcast.segment per region (a node relays a write set to each other segment
// once, instead of every node sending it over the WAN to every node) and timeouts that tolerate WAN hiccups.
// Pure: the role renders these into wsrep_provider_options (templates/galera/60-galera.cnf.ejs).
//
// A db host's region is its var `region` (playbooks/provision.ts writes it for every droplet; the lab's
// inventory places its nodes in regions a, b, c). Segments follow the order of the var `regions` (the cloud
// inventory's order), then the remaining region names sorted: the same inventory always gives the same segments.
import type { HostSpec } from '../../lib/types.ts';

/** Codership's recommendation for WAN links (tolerates about 30 s of lost connectivity without a partition). */
export const WAN_DEFAULTS: Readonly<Record<string, string>> = {
  'evs.keepalive_period': 'PT3S',
  'evs.suspect_timeout': 'PT30S',
  'evs.inactive_timeout': 'PT1M',
  'evs.install_timeout': 'PT1M',
};

const OPTION_RE = /^(evs|gcs|gmcast|pc|gcache|socket|ist|repl)\.[a-z_]+$/;
const VALUE_RE = /^[A-Za-z0-9.:_/-]+$/;

/** An ISO 8601 duration of Galera's kind (PT30S, PT1M, PT1.5S, P1D...) in milliseconds; undefined when not one. */
export function durationMs(v: string): number | undefined {
  const m = /^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(v);
  if (!m || v === 'P' || v.endsWith('T')) return undefined;
  const [d, h, min, s] = m.slice(1).map((x) => Number(x ?? 0)) as [number, number, number, number];
  return (((d * 24 + h) * 60 + min) * 60 + s) * 1000;
}

export interface GaleraRegions {
  /** region -> segment (0..255); empty when the db hosts carry no region */
  segments: Map<string, number>;
  /** the options added to wsrep_provider_options for this host ("k=v"), none when all db hosts share one region */
  options: string[];
}

const regionOf = (h: HostSpec): string | undefined => (typeof h.vars.region === 'string' && h.vars.region ? h.vars.region : undefined);

/**
 * The segments of the db group and this host's WAN options. Errors (thrown, with the var's name): some db
 * hosts with a region and others without, more than 256 regions, a bad option name or value, timeouts out of
 * Galera's order (keepalive_period < suspect_timeout < inactive_timeout <= install_timeout).
 */
export function galeraRegions(me: HostSpec, hosts: readonly HostSpec[], vars: Record<string, unknown>): GaleraRegions {
  const withRegion = hosts.filter((h) => regionOf(h));
  if (withRegion.length === 0) return { segments: new Map(), options: [] };
  const without = hosts.filter((h) => !regionOf(h)).map((h) => h.name);
  if (without.length) throw new Error(`galera: db hosts ${without.join(', ')} have no var region while other db hosts have one`);
  const used = new Set(hosts.map((h) => regionOf(h)!));
  const order = Array.isArray(vars.regions) ? vars.regions.filter((r): r is string => typeof r === 'string' && used.has(r)) : [];
  const ordered = [...new Set([...order, ...[...used].sort()])];
  if (ordered.length > 256) throw new Error(`galera: ${ordered.length} regions, gmcast.segment allows 256`);
  const segments = new Map(ordered.map((r, i) => [r, i]));
  if (ordered.length < 2) return { segments, options: [] };
  const merged: Record<string, string> = { ...WAN_DEFAULTS };
  const extra = vars.galera_wan_options;
  if (extra !== undefined && extra !== null) {
    if (typeof extra !== 'object' || Array.isArray(extra)) throw new Error('galera_wan_options: expected a mapping of option: value');
    for (const [k, v] of Object.entries(extra)) {
      if (!OPTION_RE.test(k)) throw new Error(`galera_wan_options.${k}: not a Galera provider option name`);
      if (k === 'gmcast.segment') throw new Error('galera_wan_options.gmcast.segment: set by the role from the host var region');
      const s = String(v);
      if ((typeof v !== 'string' && typeof v !== 'number') || !VALUE_RE.test(s))
        throw new Error(`galera_wan_options.${k}: bad value ${JSON.stringify(v)}`);
      merged[k] = s;
    }
  }
  const order4 = ['evs.keepalive_period', 'evs.suspect_timeout', 'evs.inactive_timeout', 'evs.install_timeout'] as const;
  const ms = order4.map((k) => {
    const d = durationMs(merged[k]!);
    if (d === undefined) throw new Error(`galera_wan_options.${k}: not an ISO 8601 duration (PT30S): ${merged[k]}`);
    return d;
  });
  if (!(ms[0]! < ms[1]! && ms[1]! < ms[2]! && ms[2]! <= ms[3]!))
    throw new Error(
      `galera_wan_options: need keepalive_period < suspect_timeout < inactive_timeout <= install_timeout, ` +
        `got ${order4.map((k) => `${k}=${merged[k]}`).join(' ')}`,
    );
  const seg = segments.get(regionOf(me)!)!;
  return { segments, options: [`gmcast.segment=${seg}`, ...Object.entries(merged).map(([k, v]) => `${k}=${v}`)] };
}
