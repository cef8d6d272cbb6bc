// The DNS part of a migration, through the Cloudflare path add-site uses (lib/cloud/cloudflare.ts), when the
// inventory has a cloudflare section:
//   copy      the site's records are recorded as they are (the snapshot), then their TTL lowered (DNS-only
//             records: proxied ones answer with Cloudflare's addresses, nothing is cached past the switch)
//   cutover   the name points at the farm's edge, proxied, as add-site makes it
//   rollback  (and a migration that fails before its cutover) the snapshot is put back: old address, old TTL
// The state file holds the snapshot (./state.ts `dns`), written BEFORE the TTL is lowered: a run killed in
// between never takes the lowered TTL for the original.
import type { CloudflareDns, EnsureResult, SavedRecord } from '../../lib/cloud/cloudflare.ts';

export interface MigrateDns {
  dns: CloudflareDns;
  zone: string;
  /** what the farm's names point at (vars.edge_address) */
  edge: string;
  /** the TTL set ahead of the move, in seconds (default 60) */
  ttl?: number;
}

export interface DnsState {
  zone: string;
  names: string[];
  /** the records before the migration touched them */
  previous: SavedRecord[];
  ttl: number;
  loweredAt?: string;
  lowered?: string[];
  switchedAt?: string;
}

export const LOW_TTL = 60;

/** Is the name in the zone (else its DNS is the operator's, by hand)? */
export function inZone(name: string, zone: string): boolean {
  return name === zone || name.endsWith(`.${zone}`);
}

/** The snapshot of the site's names (saved by the caller before anything changes). */
export async function snapshotDns(d: MigrateDns, names: string[]): Promise<DnsState> {
  const previous = await d.dns.snapshot({ zoneName: d.zone, names });
  return { zone: d.zone, names, previous, ttl: d.ttl ?? LOW_TTL };
}

/** Lower the TTL of the snapshot's names (idempotent: a rerun lowers nothing more). */
export async function lowerTtlAhead(d: MigrateDns, st: DnsState): Promise<void> {
  const r = await d.dns.lowerTtl({ zoneName: st.zone, names: st.names, ttl: st.ttl });
  st.lowered = [...new Set([...(st.lowered ?? []), ...r.lowered])];
  st.loweredAt ??= new Date().toISOString();
}

/** Seconds a resolver may still hold the old answer with its old TTL (0: the lowered TTL is in force everywhere). */
export function oldTtlLeft(st: DnsState, now = Date.now()): number {
  if (!st.loweredAt || !st.lowered?.length) return 0;
  const longest = Math.max(0, ...st.previous.filter((r) => !r.proxied).map((r) => (r.ttl === 1 ? 300 : r.ttl)));
  return Math.max(0, Math.ceil(longest - (now - Date.parse(st.loweredAt)) / 1000));
}

/** Point the names at the farm's edge (proxied, TTL automatic: as add-site). */
export async function switchToFarm(d: MigrateDns, st: DnsState): Promise<EnsureResult> {
  const r = await d.dns.ensureSiteRecords({ zoneName: st.zone, names: st.names, target: d.edge, proxied: true, ttl: 1 });
  st.switchedAt = new Date().toISOString();
  return r;
}

/** Put the snapshot back: the old addresses with their old TTL (and no record where there was none). */
export async function switchBack(d: MigrateDns, st: DnsState, check = false): Promise<EnsureResult> {
  const r = await d.dns.restoreRecords({ zoneName: st.zone, names: st.names, records: st.previous, check });
  if (!check) st.switchedAt = undefined;
  return r;
}
