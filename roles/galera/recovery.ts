// Galera cluster decisions as pure functions: from what every db node says (service state, wsrep status,
// grastate.dat, `--wsrep-recover` positions) to ONE plan for the whole cluster: which node bootstraps
// (exactly one, or none when a primary component is already running) and which nodes start and join.
//
// Rules (MariaDB Galera docs "Getting started with MariaDB Galera Cluster", "Crash recovery"):
//  - a primary component is running somewhere → never bootstrap; the other nodes just start and join;
//  - no node has ever run Galera (no grastate.dat anywhere) → bootstrap the first node of the group;
//  - after a full shutdown → bootstrap the node whose grastate.dat says safe_to_bootstrap: 1 (the last one
//    to leave cleanly); when none does (crash), the node with the highest seqno, taking the position that
//    `mariadbd --wsrep-recover` finds for every node whose grastate.dat says seqno: -1;
//  - a node whose position is unknown (-1 and not yet recovered) blocks the decision: recover it first.
//  - nodes of another cluster history (state UUID not the chosen one) still just join: they get a full SST.

export interface Grastate {
  uuid: string;
  seqno: number;
  safeToBootstrap: boolean;
}

export interface Position {
  uuid: string;
  seqno: number;
}

export interface NodeView {
  name: string;
  /** mariadbd runs (systemd active) */
  running: boolean;
  /** wsrep_cluster_status = Primary (only meaningful when running) */
  primary: boolean;
  /** grastate.dat, null when the file is absent */
  grastate: Grastate | null;
  /** position found by --wsrep-recover (only asked for when grastate says seqno -1) */
  recovered?: Position | null;
}

export type Decision =
  | { kind: 'running'; via: string; start: string[]; reason: string }
  | { kind: 'bootstrap'; node: string; start: string[]; reason: string; setSafe: boolean }
  | { kind: 'recover'; nodes: string[]; reason: string }
  | { kind: 'stop-first'; nodes: string[]; reason: string }
  | { kind: 'unknown'; reason: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ZERO_UUID = '00000000-0000-0000-0000-000000000000';

/** Parse /var/lib/mysql/grastate.dat; null when empty or without a uuid line. */
export function parseGrastate(text: string): Grastate | null {
  const kv: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([a-z_]+)\s*:\s*(\S*)\s*$/.exec(line);
    if (m) kv[m[1]!] = m[2]!;
  }
  if (kv.uuid === undefined || !UUID.test(kv.uuid)) return null;
  const seqno = Number.parseInt(kv.seqno ?? '-1', 10);
  return { uuid: kv.uuid, seqno: Number.isFinite(seqno) ? seqno : -1, safeToBootstrap: kv.safe_to_bootstrap === '1' };
}

/**
 * The position from `mariadbd --wsrep-recover` output (its error log) or from Debian's `galera_recovery`
 * script: "WSREP: Recovered position: <uuid>:<seqno>" or "--wsrep_start_position=<uuid>:<seqno>".
 * The last match wins (the log may hold older runs). null when none.
 */
export function parseRecoveredPosition(out: string): Position | null {
  const re = /(?:Recovered position:\s*|--wsrep_start_position=)([0-9a-f-]{36}):(-?\d+)/g;
  let last: Position | null = null;
  for (const m of out.matchAll(re)) {
    if (UUID.test(m[1]!)) last = { uuid: m[1]!, seqno: Number.parseInt(m[2]!, 10) };
  }
  return last;
}

/** A node's best known position: grastate's seqno when set, else the recovered one, else null (unknown). */
export function positionOf(n: NodeView): Position | null {
  if (n.grastate && n.grastate.seqno >= 0) return { uuid: n.grastate.uuid, seqno: n.grastate.seqno };
  if (n.recovered && n.recovered.seqno >= 0) return n.recovered;
  return null;
}

/** The text a grastate.dat gets when a node is chosen to bootstrap after a crash. */
export function withSafeToBootstrap(text: string): string {
  if (/^safe_to_bootstrap:/m.test(text)) return text.replace(/^safe_to_bootstrap:.*$/m, 'safe_to_bootstrap: 1');
  return `${text.replace(/\n*$/, '\n')}safe_to_bootstrap: 1\n`;
}

/**
 * The one decision for the cluster. `nodes` in group order (the first one bootstraps a new cluster).
 * Call again after acting on 'stop-first' or 'recover' with the fresh views.
 */
export function decide(nodes: NodeView[], o: { force?: string } = {}): Decision {
  if (nodes.length === 0) return { kind: 'unknown', reason: 'no db nodes' };
  const primary = nodes.find((n) => n.running && n.primary);
  if (primary) {
    const start = nodes.filter((n) => !n.running).map((n) => n.name);
    const stuck = nodes.filter((n) => n.running && !n.primary).map((n) => n.name);
    return {
      kind: 'running',
      via: primary.name,
      start,
      reason: `a primary component runs (${primary.name})${start.length ? `; ${start.join(', ')} start and join` : ''}${stuck.length ? `; ${stuck.join(', ')} running but not primary yet` : ''}`,
    };
  }
  // No primary component anywhere. Nodes that run (joining, waiting for a primary that is gone) must be
  // stopped before their state can be read: their grastate.dat is not final while mariadbd runs.
  const running = nodes.filter((n) => n.running).map((n) => n.name);
  if (running.length) return { kind: 'stop-first', nodes: running, reason: `no primary component; ${running.join(', ')} run without one` };

  const withState = nodes.filter((n) => n.grastate && n.grastate.uuid !== ZERO_UUID);
  if (withState.length === 0) {
    return {
      kind: 'bootstrap',
      node: nodes[0]!.name,
      start: nodes.slice(1).map((n) => n.name),
      reason: 'new cluster: no node has a Galera state yet',
      setSafe: false,
    };
  }
  const others = (chosen: string) => nodes.filter((n) => n.name !== chosen).map((n) => n.name);
  if (o.force) {
    const f = nodes.find((n) => n.name === o.force);
    if (!f) return { kind: 'unknown', reason: `galera_force_bootstrap: ${o.force} is not a db node` };
    return {
      kind: 'bootstrap',
      node: f.name,
      start: others(f.name),
      reason: `forced by galera_force_bootstrap=${f.name}`,
      setSafe: !f.grastate?.safeToBootstrap && !!f.grastate,
    };
  }

  const safe = withState.filter((n) => n.grastate!.safeToBootstrap);
  if (safe.length === 1) {
    const s = safe[0]!;
    return {
      kind: 'bootstrap',
      node: s.name,
      start: others(s.name),
      reason: `${s.name} left last (safe_to_bootstrap: 1, seqno ${s.grastate!.seqno})`,
      setSafe: false,
    };
  }
  // More than one node safe to bootstrap should not happen (a split history); then the highest seqno
  // among them decides, like a crash.
  const pool = safe.length > 1 ? safe : withState;
  const unknown = pool.filter((n) => positionOf(n) === null && n.recovered === undefined).map((n) => n.name);
  if (unknown.length) {
    return {
      kind: 'recover',
      nodes: unknown,
      reason: `no node is safe to bootstrap; seqno -1 on ${unknown.join(', ')}: recover their positions (--wsrep-recover)`,
    };
  }
  // A node whose position could not be recovered might be the most advanced one: never guess.
  const lost = pool.filter((n) => positionOf(n) === null).map((n) => n.name);
  if (lost.length) {
    return {
      kind: 'unknown',
      reason: `the position of ${lost.join(', ')} cannot be recovered: refusing to guess (set galera_force_bootstrap=NODE to choose)`,
    };
  }
  let best: NodeView | null = null;
  let bestPos: Position | null = null;
  for (const n of pool) {
    const p = positionOf(n);
    if (!p) continue;
    if (!bestPos || p.seqno > bestPos.seqno) {
      best = n;
      bestPos = p;
    }
  }
  if (!best || !bestPos)
    return { kind: 'unknown', reason: `no node has a known position (${pool.map((n) => n.name).join(', ')}): refusing to guess` };
  const listing = pool.map((n) => `${n.name}=${positionOf(n)?.seqno ?? '?'}`).join(' ');
  return {
    kind: 'bootstrap',
    node: best.name,
    start: others(best.name),
    reason: `crash recovery: ${best.name} is the most advanced (seqno ${listing})`,
    setSafe: !best.grastate!.safeToBootstrap,
  };
}
