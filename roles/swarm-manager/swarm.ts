// Swarm membership, shared by the swarm-manager and swarm-worker roles: find an active manager, init or join,
// rejoin after a node left or was reset, remove the stale entry a rejoined node leaves behind, node labels.
import { InputError } from '../../lib/errors.ts';
import { SWARM_INFO, type SwarmFact, kernelFact, parseSwarm } from '../../lib/facts.ts';
import { task } from '../../lib/ops/base.ts';
import { memo, sh } from '../../lib/shell.ts';
import type { HostSpec, Probe, Step, StepContext, TaskOutcome } from '../../lib/types.ts';

/**
 * The no-change fast path of the swarm steps (Task.probe, read with the role's other probes): this node's swarm
 * state and, on a manager, every node of its cluster as it sees them (ID, address, role, state, availability,
 * manager address and reachability, labels). On a worker the node list is empty (only managers can list nodes).
 */
const SWARM_PROBE = [
  memo(SWARM_INFO),
  'echo @@nodes',
  "docker node ls -q 2>/dev/null | xargs -r docker node inspect --format '{{.ID}} {{.Status.Addr}} {{.Spec.Role}} {{.Status.State}} " +
    "{{.Spec.Availability}} {{if .ManagerStatus}}{{.ManagerStatus.Addr}}/{{.ManagerStatus.Reachability}}{{else}}-{{end}} {{json .Spec.Labels}}' 2>/dev/null",
].join('\n');
const swarmProbe = () => ({ script: SWARM_PROBE });

/**
 * SWARM_PROBE where the cluster's nodes can be listed: on this host when it is an inventory manager, else on the
 * first inventory manager (Probe.host: read ahead with that manager's own probes, so a worker's availability and
 * labels cost no round trip of their own when nothing changes).
 */
export function clusterProbe(ctx: StepContext): Probe {
  const managers = ctx.hosts('managers');
  const here = managers.some((m) => m.name === ctx.host.name);
  return here || !managers[0] ? { script: SWARM_PROBE } : { script: SWARM_PROBE, host: managers[0].name };
}

/** The nodes listed for `addr` that are up ('down' entries a rejoined node left behind are not it). */
export const nodesAt = (nodes: ProbedNode[], addr: string): ProbedNode[] => nodes.filter((n) => n.addr === addr && n.state !== 'down');

export interface ProbedNode {
  id: string;
  addr: string;
  role: string;
  state: string;
  availability: string;
  /** "10.0.0.2:2377/reachable" on managers, '-' on workers */
  manager: string;
  labels: Record<string, string>;
}

/** SWARM_PROBE's output: this node's state, and the nodes of its cluster when it is a manager. */
export function parseSwarmProbe(out: string): { me: SwarmFact; nodes: ProbedNode[] } {
  const [info = '', list = ''] = out.split(/^@@nodes$/m);
  const nodes: ProbedNode[] = [];
  for (const line of list.split('\n')) {
    const [id, addr, role, state, availability, manager, ...rest] = line.trim().split(' ');
    if (!id || !manager) continue;
    let labels: Record<string, string> = {};
    try {
      labels = (JSON.parse(rest.join(' ') || '{}') ?? {}) as Record<string, string>;
    } catch {
      continue;
    }
    nodes.push({ id, addr: addr!, role: role!, state: state!, availability: availability!, manager, labels });
  }
  return { me: parseSwarm(info), nodes };
}

export async function swarmState(ctx: StepContext): Promise<SwarmFact> {
  const r = await ctx.exec(SWARM_INFO, { nothrow: true, readOnly: true });
  return parseSwarm(r.stdout);
}

/** The first manager (inventory order) that is an active swarm manager, with its state. */
export async function findActiveManager(
  ctx: StepContext,
  exclude?: string,
): Promise<{ host: HostSpec; ctx: StepContext; state: SwarmFact } | null> {
  for (const m of ctx.hosts('managers')) {
    if (m.name === exclude) continue;
    try {
      const mctx = ctx.hostContext(m.name);
      const st = await swarmState(mctx);
      if (st.state === 'active' && st.isManager) return { host: m, ctx: mctx, state: st };
    } catch {
      /* unreachable manager: try the next one */
    }
  }
  return null;
}

/** Preconditions the swarm needs from the kernel, checked against the inventory's choices (read with the role's probes). */
export function kernelPreflight(): Step {
  const probe = () => ({ script: kernelFact.script as string });
  return task(
    'swarm: kernel features (IPVS, ESP) match the inventory',
    async (ctx, probed) => {
      const kernel = probed !== undefined ? kernelFact.parse(probed) : await ctx.fact(kernelFact);
      const mode = String(ctx.vars.swarm_endpoint_mode ?? 'vip');
      if (!kernel.ipvs && mode !== 'dnsrr') {
        throw new InputError(
          `${ctx.host.name}: this kernel has no IPVS, so swarm service VIPs and the ingress routing mesh cannot work ` +
            `(services would hang unreachable). Set swarm_endpoint_mode: dnsrr and swarm_publish_mode: host in the inventory.`,
        );
      }
      if (!kernel.esp && ctx.vars.overlay_encrypted === true) {
        throw new InputError(
          `${ctx.host.name}: this kernel has no ESP (IPsec), so encrypted overlay networks pass no traffic between nodes. ` +
            `Set overlay_encrypted: false (or 'auto') in the inventory.`,
        );
      }
      return { changed: false, result: kernel };
    },
    { probe },
  );
}

function stale(list: string, host: HostSpec, keepId: string): string[] {
  // lines: ID ADDR STATE
  return list
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 3 && f[0] !== keepId && f[1] === host.address && f[2] === 'down')
    .map((f) => f[0]!);
}

/**
 * `docker swarm join` through the Engine API (POST /swarm/join, what the CLI sends), the body on stdin: the
 * join token never stands on a command line (`ps` on the host shows command lines to every local user, and
 * `docker swarm join --token` has no other way to take it).
 */
export const SWARM_JOIN = [
  "r=$(curl -sS --max-time 85 --unix-socket /var/run/docker.sock -H 'Content-Type: application/json' \\",
  "  --data-binary @- -w '\\n%{http_code}' http://localhost/swarm/join) || exit 1",
  `code=\${r##*$'\\n'}; body=\${r%$'\\n'*}`,
  '[ "$code" = 200 ] || { echo "docker swarm join: HTTP $code: $body" >&2; exit 1; }',
].join('\n');

/** The JSON body of POST /swarm/join (fields of the Engine API's SwarmJoinRequest). */
export function swarmJoinBody(token: string, addr: string, target: string): string {
  return JSON.stringify({ ListenAddr: `${addr}:2377`, AdvertiseAddr: addr, RemoteAddrs: [target], JoinToken: token });
}

/**
 * Make this host a member of the swarm with the given role: init (first manager, no swarm anywhere),
 * join with the right token, rejoin after it left, promote a worker that should be a manager.
 */
export function joinSwarm(role: 'manager' | 'worker'): Step {
  return task(
    `swarm: ${role} membership`,
    async (ctx, probed): Promise<TaskOutcome> => {
      if (probed !== undefined) {
        // fast path: a member of the inventory managers' cluster already (else the full check below)
        const { me, nodes } = parseSwarmProbe(probed);
        const managers = ctx.hosts('managers').filter((m) => m.name !== ctx.host.name);
        if (me.state === 'active' && role === 'manager' && me.isManager) {
          // every other inventory manager is a reachable manager of this node's cluster: the leader the full check
          // would find reports this cluster's ID
          const reachable = (m: HostSpec) => nodes.some((n) => n.manager.startsWith(`${m.address}:`) && /\/reachable$/.test(n.manager));
          if (managers.every(reachable))
            return { changed: false, result: { nodeId: me.nodeId }, reason: "a manager of the managers' cluster" };
        }
        // a worker is 'active' only while connected to its cluster's managers: one of them is an inventory manager
        if (me.state === 'active' && role === 'worker' && managers.some((m) => me.remoteManagers.includes(`${m.address}:2377`))) {
          return { changed: false, result: { nodeId: me.nodeId }, reason: "connected to the managers' cluster" };
        }
      }
      const me = await swarmState(ctx);
      if (me.state === 'unavailable') throw new Error(`${ctx.host.name}: docker does not answer (is the common role applied?)`);
      const addr = String(ctx.vars.swarm_advertise_addr ?? ctx.host.address);
      const leader = await findActiveManager(ctx, ctx.host.name);
      // workers do not see the cluster ID: ask the leader whether it knows this node instead
      const sameCluster = async (): Promise<boolean> =>
        !leader ||
        (me.clusterId
          ? leader.state.clusterId === me.clusterId
          : (await leader.ctx.exec(sh`docker node inspect --format '{{.ID}}' ${me.nodeId}`, { nothrow: true, readOnly: true })).code === 0);
      if (me.state === 'active' && (role === 'worker' || me.isManager) && (await sameCluster())) {
        return { changed: false, result: { nodeId: me.nodeId } };
      }
      const changes: string[] = [];
      if (!leader) {
        const first = ctx.hosts('managers')[0];
        if (role === 'manager' && first?.name === ctx.host.name && me.state !== 'active') {
          if (ctx.check) return { changed: true, changes: [`would init a new swarm advertising ${addr}`] };
          await ctx.exec(sh`docker swarm init --advertise-addr ${addr} --listen-addr ${`${addr}:2377`}`, { timeoutMs: 60_000 });
          return { changed: true, changes: [`initialised a new swarm advertising ${addr}`] };
        }
        if (me.state === 'active' && me.isManager) return { changed: false, result: { nodeId: me.nodeId } };
        throw new Error(
          `${ctx.host.name}: no active swarm manager to join (first manager: ${first?.name ?? 'none'}); run swarm-manager on the managers first`,
        );
      }
      if (me.state === 'active' && role === 'manager' && !me.isManager && (await sameCluster())) {
        if (ctx.check) return { changed: true, changes: ['would promote this worker to manager'] };
        await leader.ctx.exec(sh`docker node promote ${me.nodeId}`);
        return { changed: true, changes: ['promoted to manager'] };
      }
      if (ctx.check)
        return {
          changed: true,
          changes: [
            `would ${me.state === 'inactive' ? 'join' : `leave (${me.state}) and rejoin`} the swarm as ${role} via ${leader.host.name}`,
          ],
        };
      if (me.state !== 'inactive') {
        await ctx.exec('docker swarm leave --force', { nothrow: true, timeoutMs: 60_000 });
        changes.push(`left the swarm (was ${me.state}${me.state === 'active' ? ', in another cluster' : ''})`);
      }
      const token = ctx.secret((await leader.ctx.exec(sh`docker swarm join-token -q ${role}`)).stdout.trim());
      const target = `${leader.state.nodeAddr || leader.host.address}:2377`;
      await ctx.exec(SWARM_JOIN, { stdin: swarmJoinBody(token, addr, target), timeoutMs: 90_000 });
      changes.push(`joined as ${role} via ${leader.host.name}`);
      const now = await swarmState(ctx);
      // a node that rejoins gets a new ID; its old entry stays "down" in the list: remove it
      const list = await leader.ctx.exec(
        "docker node ls -q | xargs -r docker node inspect --format '{{.ID}} {{.Status.Addr}} {{.Status.State}}'",
        { nothrow: true, readOnly: true },
      );
      for (const id of stale(list.stdout, ctx.host, now.nodeId)) {
        await leader.ctx.exec(sh`docker node demote ${id} >/dev/null 2>&1; docker node rm --force ${id}`, { nothrow: true });
        changes.push(`removed stale node entry ${id.slice(0, 12)}`);
      }
      // its inventory labels now, through the same manager: the role's node labels step runs once, on the first
      // host that reaches it, and may have read the node list before this join (hosts do not wait for each other)
      const labels = Object.entries(desiredLabels(ctx).get(ctx.host.address) ?? {});
      if (labels.length) {
        await leader.ctx.exec(sh`docker node update ${labels.flatMap(([k, v]) => ['--label-add', `${k}=${v}`])} ${now.nodeId} >/dev/null`);
        changes.push(`labels ${labels.map(([k, v]) => `${k}=${v}`).join(' ')}`);
      }
      return { changed: true, changes, result: { nodeId: now.nodeId } };
    },
    { retries: 2, delayMs: 3000, probe: swarmProbe },
  );
}

/** Availability of this node (drain for control-plane-only managers). */
export function availability(want: 'active' | 'drain' | 'pause'): Step {
  return task(
    `swarm: availability ${want}`,
    async (ctx, probed) => {
      const view = probed !== undefined ? parseSwarmProbe(probed) : undefined;
      const away = clusterProbe(ctx).host;
      if (away && view?.me.isManager) {
        // a worker: its entry in the node list of the first manager, read with that manager's probes
        const mine = nodesAt(view.nodes, String(ctx.vars.swarm_advertise_addr ?? ctx.host.address));
        if (mine.length === 1 && mine[0]!.availability === want) return { changed: false, reason: `${want} in the node list of ${away}` };
      }
      // this node's state as read with the role's probes (a manager also sees its own availability there)
      const here = away ? undefined : view;
      const me = here?.me ?? (await swarmState(ctx));
      if (me.state !== 'active') {
        if (ctx.check) return { changed: true, changes: [`would set availability ${want} (after joining)`] };
        throw new Error(`${ctx.host.name}: not in the swarm`);
      }
      const inspect = sh`docker node inspect --format '{{.Spec.Availability}}' ${me.nodeId}`;
      let mgr: StepContext | undefined = me.isManager ? ctx : undefined;
      let cur = here?.nodes.find((n) => n.id === me.nodeId)?.availability;
      if (cur === undefined && !mgr) {
        // a worker: ask the inventory manager it is connected to, else the first active one
        const known = ctx.hosts('managers').find((m) => me.remoteManagers.includes(`${m.address}:2377`));
        if (known) {
          try {
            const kctx = ctx.hostContext(known.name);
            cur = (await kctx.exec(inspect, { readOnly: true })).stdout.trim();
            mgr = kctx;
          } catch {
            /* not answering: the first active manager below */
          }
        }
      }
      mgr ??= (await findActiveManager(ctx))?.ctx;
      if (!mgr) throw new Error('no active manager');
      cur ??= (await mgr.exec(inspect, { readOnly: true })).stdout.trim();
      if (cur === want) return { changed: false };
      if (!ctx.check) await mgr.exec(sh`docker node update --availability ${want} ${me.nodeId}`);
      return { changed: true, changes: [`availability ${cur} -> ${want}`] };
    },
    { probe: clusterProbe },
  );
}

export const LABEL_GROUPS = ['managers', 'workers', 'edge', 'monitoring', 'db', 'storage'];

/**
 * Desired wpfarm labels of every inventory host in the swarm group: `<group>=true`, `region=<its var region>` (the
 * site stacks spread their replicas over it when the farm has several regions), plus the host's node_labels.
 */
export function desiredLabels(ctx: Pick<StepContext, 'vars' | 'hosts'>): Map<string, Record<string, string>> {
  const groups = (Array.isArray(ctx.vars.node_label_groups) ? ctx.vars.node_label_groups : LABEL_GROUPS) as string[];
  const out = new Map<string, Record<string, string>>();
  for (const h of ctx.hosts('swarm')) {
    const labels: Record<string, string> = {};
    for (const g of groups) if (h.groups.includes(g)) labels[g] = 'true';
    if (typeof h.vars.region === 'string' && h.vars.region) labels.region = h.vars.region;
    const extra = h.vars.node_labels;
    if (extra && typeof extra === 'object') for (const [k, v] of Object.entries(extra as Record<string, unknown>)) labels[k] = String(v);
    out.set(h.address, labels);
  }
  return out;
}

/**
 * `docker node update` retried while Swarm answers "update out of sequence": the node object changed between the
 * CLI's read and its write (a node that has just joined still reports its status; bootstrap on a fresh lab, 12-06).
 * Any other error fails at once, with its message.
 */
export const NODE_UPDATE = `node_update() {
  for i in 1 2 3 4 5; do
    e=$(docker node update "$@" 2>&1 >/dev/null) && return 0
    case $e in *'update out of sequence'*) sleep 1 ;; *) break ;; esac
  done
  printf '%s\\n' "$e" >&2
  return 1
}`;

/** Node labels from the inventory, set through one manager in one round trip (runOnce). */
export function nodeLabels(): Step {
  return task(
    'swarm: node labels from the inventory',
    async (ctx, probed) => {
      // fast path: the nodes and their labels as a manager lists them, read with the role's probes (on this host when
      // it is a manager, else on the first manager)
      const here = probed !== undefined ? parseSwarmProbe(probed) : undefined;
      const away = clusterProbe(ctx).host;
      let mgr: StepContext | undefined;
      let nodes: ProbedNode[];
      if (here && here.me.state === 'active' && here.me.isManager && here.nodes.length) {
        mgr = away ? ctx.hostContext(away) : ctx;
        nodes = here.nodes;
      } else {
        mgr = (await findActiveManager(ctx))?.ctx;
        if (!mgr) {
          if (ctx.check) return { changed: true, changes: ['would set node labels (no swarm yet)'] };
          throw new Error('no active manager');
        }
        nodes = parseSwarmProbe((await mgr.exec(SWARM_PROBE, { readOnly: true })).stdout).nodes;
      }
      const groups = (Array.isArray(ctx.vars.node_label_groups) ? ctx.vars.node_label_groups : LABEL_GROUPS) as string[];
      const want = desiredLabels(ctx);
      // the probe is this manager's read from the start of the phase; a node that joined since (on its own host,
      // earlier in this run) is not in it. Read the list again when an inventory host is missing from it, or its
      // labels wait for the next run (one more round trip only when the swarm changed or a host is not in it)
      if (here?.nodes === nodes && [...want.keys()].some((a) => !nodes.some((n) => n.addr === a))) {
        nodes = parseSwarmProbe((await mgr.exec(SWARM_PROBE, { readOnly: true })).stdout).nodes;
      }
      const cmds: string[] = [];
      const changes: string[] = [];
      for (const { id, addr, state, labels: have } of nodes) {
        if (state === 'down') continue;
        const w = want.get(addr);
        if (!w) continue;
        const add = Object.entries(w).filter(([k, v]) => have[k] !== v);
        const rm = Object.keys(have).filter((k) => groups.includes(k) && !(k in w));
        if (!add.length && !rm.length) continue;
        const args = [...add.flatMap(([k, v]) => ['--label-add', `${k}=${v}`]), ...rm.flatMap((k) => ['--label-rm', k])];
        cmds.push(sh`node_update ${args} ${id}`);
        changes.push(`${addr}: ${[...add.map(([k, v]) => `+${k}=${v}`), ...rm.map((k) => `-${k}`)].join(' ')}`);
      }
      if (!cmds.length) return { changed: false };
      if (!ctx.check) await mgr.exec([NODE_UPDATE, cmds.join(' && ')].join('\n'));
      return { changed: true, changes };
    },
    { runOnce: true, probe: clusterProbe },
  );
}
