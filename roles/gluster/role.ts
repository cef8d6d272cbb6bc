// gluster: GlusterFS volume for the sites' files (issue 4, storage part). See docs/roles/gluster.md.
//
// Servers (groups storage + storage_arbiter): glusterfs-server, glusterd, one brick directory each.
// Then ONE task for the whole pool (runOnce, after every server of this run is prepared): peer probe from
// the first data host, volume `replica 3 arbiter 1` (data, data, arbiter per replica set), start, options.
// Clients (group workers): glusterfs-client, FUSE mount through /etc/fstab (_netdev, backup volfile
// servers), dockerd ordered after the mount. Site directories: siteDirSteps() in ./model.ts (wp-site).
// Extra clients (gluster_extra_client_groups, default managers: Portainer's data): the same mount, without the
// docker.service drop-in (a manager's dockerd, the swarm's control plane, never waits for storage).
//
// Every host gets the same step list (steps for the other kind of host are skipped by `when`): all meet at
// ctx.barrier('gluster prepared'), then the runOnce pool step runs; clients mount after it.
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BarrierResult, HostSpec, Role, Step, StepContext, StepResult, TaskOutcome } from '../../lib/types.ts';
import { task } from '../../lib/ops/base.ts';
import { apt } from '../../lib/ops/apt.ts';
import { directory, file } from '../../lib/ops/files.ts';
import { lineinfile } from '../../lib/ops/lineinfile.ts';
import { systemd } from '../../lib/ops/systemd.ts';
import { template, templatePath } from '../../lib/ops/template.ts';
import { sections, sh } from '../../lib/shell.ts';
import {
  brickDifferences,
  brickName,
  brickLayout,
  createVolumeCommand,
  dockerDropIn,
  fstabLine,
  fstabRegexp,
  nodeAddress,
  optionChanges,
  parsePeerStatus,
  parseVolumeInfo,
  parseVolumeStatus,
  peerConnected,
  peerKnows,
  setOptionsCommand,
  settings,
  type Brick,
  type Settings,
} from './model.ts';

export { siteDirSteps } from './model.ts';

export const SERVER_PACKAGES = ['glusterfs-server'];
export const CLIENT_PACKAGES = ['glusterfs-client'];
export const DOCKER_DROPIN = '/etc/systemd/system/docker.service.d/50-wpfarm-gluster.conf';
export const GLUSTERD_VOL = '/etc/glusterfs/glusterd.vol';
const APT_PROXY_FILE = '/etc/apt/apt.conf.d/01wpfarm-proxy';
const NEED_RELOAD = 'systemctl show docker.service -p NeedDaemonReload 2>/dev/null || true';

function fromResult(r: StepResult): TaskOutcome {
  if (r.status === 'failed') throw new Error(r.error ?? `${r.step} failed`);
  return { changed: r.status === 'changed', changes: r.changes, diff: r.diff, result: r.result };
}

// ---------------------------------------------------------------------------------------------------
// Server state

export interface ServerState {
  host: HostSpec;
  address: string;
  installed: boolean;
  active: string;
  peers: ReturnType<typeof parsePeerStatus>;
  info: ReturnType<typeof parseVolumeInfo>;
  /** the volume's brick status, when the script asked for it (the first server's probe) */
  status?: ReturnType<typeof parseVolumeStatus>;
}

/** A server's state in one read-only script (parseServer reads it); `status`: the volume's brick status too. */
export function serverScript(volume: string, status = false): string {
  const gl = (cmd: string) => `if systemctl -q is-active glusterd 2>/dev/null; then timeout 30 ${cmd} 2>/dev/null || true; fi`;
  return [
    'echo @@installed; command -v gluster || true',
    'echo @@active; systemctl is-active glusterd 2>/dev/null || true',
    `echo @@peers; ${gl('gluster --mode=script peer status')}`,
    `echo @@info; ${gl(sh`gluster --mode=script volume info ${volume}`)}`,
    ...(status ? [`echo @@status; ${gl(sh`gluster --mode=script volume status ${volume}`)}`] : []),
  ].join('\n');
}

/**
 * A server's probe, by its place in brick order: what the pool step's no-change answer (poolInPlace) reads of it. The
 * first: everything and the bricks' status; the second: its peers too (it must know the first); the others: installed
 * and running only. Each `gluster` call asks glusterd (~60 ms of a lab node); a change reads every server in full.
 */
export function serverProbe(volume: string, index: number): string {
  if (index === 0) return serverScript(volume, true);
  const lines = serverScript(volume).split('\n');
  return lines.slice(0, index === 1 ? 3 : 2).join('\n');
}

export function parseServer(out: string, h: HostSpec): ServerState {
  const sec = sections(out);
  return {
    host: h,
    address: nodeAddress(h),
    installed: (sec.get('installed') ?? '').trim() !== '',
    active: (sec.get('active') ?? '').trim(),
    peers: parsePeerStatus(sec.get('peers') ?? ''),
    info: parseVolumeInfo(sec.get('info') ?? ''),
    ...(sec.has('status') ? { status: parseVolumeStatus(sec.get('status') ?? '') } : {}),
  };
}

async function readServer(ctx: StepContext, h: HostSpec, volume: string): Promise<ServerState> {
  return parseServer((await ctx.exec(serverScript(volume), { nothrow: true, timeoutMs: 90_000, readOnly: true })).stdout, h);
}

/**
 * The pool step's no-change answer from the servers' states as each read them with its probes (the first one with
 * the bricks' status): every server running, peers known both ways and connected, the volume as the inventory
 * gives it, started, its options set, every brick online on a port inside the range. Anything else: false (the
 * step reads the servers again and acts).
 */
export function poolInPlace(s: Settings, bricks: Brick[], st: (ServerState | undefined)[]): boolean {
  if (!st.length || st.some((n) => !n || !n.installed || n.active !== 'active')) return false;
  const [first, second] = st as ServerState[];
  const peersOk = st.slice(1).every((n) => {
    const p = peerKnows(first!.peers, n!.address);
    return !!p && peerConnected(p);
  });
  if (!peersOk || (second && !peerKnows(second.peers, first!.address))) return false;
  const info = first!.info;
  if (!info || brickDifferences(bricks, info).length || info.status !== 'Started' || optionChanges(s.options, info.options).length)
    return false;
  return bricks.every((b) => {
    const x = first!.status?.find((y) => y.brick === brickName(b));
    return !!x && x.online && (x.port === 0 || (x.port >= s.ports.base && x.port <= s.ports.max));
  });
}

/** The servers in brick order, each once. */
function serversOf(bricks: Brick[], all: HostSpec[]): HostSpec[] {
  const names = [...new Set(bricks.map((b) => b.host))];
  return names.map((n) => all.find((h) => h.name === n)!);
}

function layout(ctx: StepContext, s: Settings): { bricks: Brick[]; servers: HostSpec[] } {
  const data = ctx.hosts(s.dataGroup);
  const arb = ctx.hosts(s.arbiterGroup);
  const bricks = brickLayout(data, arb, s.brickDir);
  return { bricks, servers: serversOf(bricks, [...data, ...arb]) };
}

// ---------------------------------------------------------------------------------------------------
// The pool task: peers, volume, start, options

/** What each host tells the pool task at the barrier 'gluster prepared'. */
interface Prepared {
  server: boolean;
  /** a server's state as read with the role's probes */
  state?: ServerState;
}

async function poolTask(ctx: StepContext, s: Settings): Promise<TaskOutcome> {
  const { bricks, servers } = layout(ctx, s);
  // every host of this run met at the barrier 'gluster prepared' before this step (servers: packages, glusterd, brick)
  const met = ctx.registered.gluster_prepared?.result as BarrierResult<Prepared> | undefined;
  if (!met) throw new Error("gluster: the step 'gluster hosts prepared' did not run before the pool step");
  const lost = servers.filter((h) => met.missing[h.name] !== undefined).map((h) => `${h.name} (${met.missing[h.name]})`);
  if (lost.length) throw new Error(`failed before the pool step: ${lost.join('; ')}: no peer or volume changed`);
  // servers not part of this run (--limit) are read, never acted on
  const inRun = new Set(
    Object.entries(met.arrived)
      .filter(([, v]) => v.server)
      .map(([n]) => n),
  );
  const seen = servers.map((h) => met.arrived[h.name]?.state);
  if (poolInPlace(s, bricks, seen))
    return {
      changed: false,
      reason: "peers, volume, options and bricks in place (read with the role's probes)",
      result: { volume: s.volume, bricks: seen[0]!.status },
    };
  const read = () => Promise.all(servers.map((h) => readServer(ctx.hostContext(h.name), h, s.volume)));
  let st = await read();
  const first = st[0]!;
  const changes: string[] = [];
  const planned = (what: string[]) => ({ changed: true, changes: [...changes, ...what] });

  const down = st.filter((n) => !n.installed || n.active !== 'active');
  if (down.length) {
    if (ctx.check) {
      return planned([
        ...st.slice(1).map((n) => `peer probe ${n.address} from ${first.host.name}`),
        `create volume ${s.volume}: replica 3 arbiter 1 on ${bricks.map((b) => `${b.host}${b.arbiter ? ' (arbiter)' : ''}`).join(', ')}`,
        `start volume ${s.volume}`,
        `set ${Object.keys(s.options).length} volume options`,
      ]);
    }
    throw new Error(
      `glusterd is not running on ${down.map((n) => `${n.host.name} (${n.installed ? n.active || 'unknown' : 'not installed'})`).join(', ')}`,
    );
  }
  const mustAct = (name: string) => {
    if (!inRun.has(name)) throw new Error(`${name} must be acted on but is not part of this run (--limit)`);
  };

  // 1. peers: the first server probes the others; the others must know the first one by its address
  let probed = false;
  for (const n of st.slice(1)) {
    if (peerKnows(first.peers, n.address)) continue;
    changes.push(`peer probe ${n.address} (${n.host.name}) from ${first.host.name}`);
    if (ctx.check) continue;
    mustAct(first.host.name);
    await ctx.hostContext(first.host.name).exec(sh`gluster --mode=script peer probe ${n.address}`, { timeoutMs: 120_000 });
    probed = true;
  }
  if (probed) st = await read();
  const second = st[1];
  if (second && !ctx.check && !peerKnows(second.peers, first.address)) {
    changes.push(`peer probe ${first.address} (${first.host.name}) from ${second.host.name}`);
    await ctx.hostContext(second.host.name).exec(sh`gluster --mode=script peer probe ${first.address}`, { timeoutMs: 120_000 });
    probed = true;
  }
  if (probed) {
    // every peer connected, as seen from the first server (bounded)
    const t0 = Date.now();
    for (;;) {
      st = await read();
      const missing = st.slice(1).filter((n) => {
        const p = peerKnows(st[0]!.peers, n.address);
        return !p || !peerConnected(p);
      });
      if (!missing.length) break;
      if (Date.now() - t0 > 120_000) throw new Error(`peers not connected after 120 s: ${missing.map((n) => n.host.name).join(', ')}`);
      await sleep(1000);
    }
  } else if (!ctx.check) {
    const bad = st.slice(1).filter((n) => {
      const p = peerKnows(first.peers, n.address);
      return p && !peerConnected(p);
    });
    if (bad.length) ctx.log(`peers not connected now: ${bad.map((n) => n.host.name).join(', ')}`);
  }

  // 2. the volume (read on the first server; any peer would do)
  let info = st[0]!.info;
  if (!info) {
    changes.push(
      `create volume ${s.volume}: replica 3 arbiter 1 on ${bricks.map((b) => `${b.host}:${b.path}${b.arbiter ? ' (arbiter)' : ''}`).join(', ')}${s.force ? ' (force)' : ''}`,
    );
    if (ctx.check) return planned([`start volume ${s.volume}`, `set ${Object.keys(s.options).length} volume options`]);
    for (const b of bricks) mustAct(b.host);
    await ctx.hostContext(first.host.name).exec(createVolumeCommand(s, bricks), { timeoutMs: 300_000 });
    st = await read();
    info = st[0]!.info;
    if (!info) throw new Error(`volume ${s.volume} does not exist after create`);
  } else {
    const diffs = brickDifferences(bricks, info);
    if (diffs.length) {
      // reshaping a live volume (add/remove/replace-brick) is an operator's decision: see docs/roles/gluster.md
      throw new Error(`volume ${s.volume} exists with other bricks than the inventory gives: ${diffs.join('; ')}`);
    }
  }
  if (info.status !== 'Started') {
    changes.push(`start volume ${s.volume} (was ${info.status || 'unknown'})`);
    if (!ctx.check) await ctx.hostContext(first.host.name).exec(sh`gluster --mode=script volume start ${s.volume}`, { timeoutMs: 120_000 });
  }
  const opts = optionChanges(s.options, info.options);
  if (opts.length) {
    for (const [k, v] of opts) changes.push(`set ${k} ${info.options[k] ?? '(default)'} -> ${v}`);
    if (!ctx.check) await ctx.hostContext(first.host.name).exec(setOptionsCommand(s.volume, opts), { timeoutMs: 300_000 });
  }

  // 3. bricks online, on ports inside the range (bounded wait after a change; a report otherwise)
  const status = async () => {
    const r = await ctx
      .hostContext(first.host.name)
      .exec(sh`timeout 60 gluster --mode=script volume status ${s.volume}`, { nothrow: true, timeoutMs: 90_000 });
    return parseVolumeStatus(r.stdout);
  };
  const waitOnline = async (): Promise<ReturnType<typeof parseVolumeStatus>> => {
    const t0 = Date.now();
    for (;;) {
      const got = await status();
      const on = bricks.every((b) => got.some((x) => x.brick === brickName(b) && x.online));
      if (on || Date.now() - t0 > 60_000) return got;
      await sleep(1000);
    }
  };
  let bricksStatus: ReturnType<typeof parseVolumeStatus> = [];
  if (!ctx.check || info.status === 'Started') {
    bricksStatus = changes.length && !ctx.check ? await waitOnline() : await status();
    // a brick started before base-port/max-port were set listens outside the firewall's range: restart it,
    // one at a time (the two other bricks of its replica set keep the volume writable meanwhile)
    for (const b of bricks) {
      const x = bricksStatus.find((y) => y.brick === brickName(b));
      if (!x || !x.online || x.port === 0 || (x.port >= s.ports.base && x.port <= s.ports.max)) continue;
      changes.push(`restart brick ${b.host}:${b.path} (port ${x.port} outside ${s.ports.base}-${s.ports.max})`);
      if (ctx.check) continue;
      mustAct(b.host);
      if (/^\d+$/.test(x.pid)) await ctx.hostContext(b.host).exec(sh`kill ${x.pid}`, { nothrow: true });
      await sleep(1000);
      await ctx.hostContext(first.host.name).exec(sh`gluster --mode=script volume start ${s.volume} force`, { timeoutMs: 120_000 });
      bricksStatus = await waitOnline();
    }
    const offline = bricks.filter((b) => !bricksStatus.some((x) => x.brick === brickName(b) && x.online));
    if (offline.length) ctx.log(`bricks not online: ${offline.map((b) => `${b.host}:${b.path}`).join(', ')}`);
  }
  return { changed: changes.length > 0, changes, result: { volume: s.volume, bricks: bricksStatus } };
}

// ---------------------------------------------------------------------------------------------------
// Client mount

/** The client mount's read-only probe (parseMount reads it). */
export const mountProbe = (mount: string): string =>
  sh`findmnt -n -o FSTYPE,SOURCE --mountpoint ${mount} || true; echo @@stat; ` +
  sh`timeout 15 stat -c %i ${mount} >/dev/null 2>&1 && echo ok || echo stale`;

export function parseMount(out: string): { fstype: string; source: string; ok: boolean } {
  const [mnt = '', stat = ''] = out.split('@@stat');
  const [fstype = '', source = ''] = mnt.trim().split(/\s+/);
  return { fstype, source, ok: stat.trim() === 'ok' };
}

async function mountTask(ctx: StepContext, s: Settings, probed?: string): Promise<TaskOutcome> {
  const read = async () => parseMount((await ctx.exec(mountProbe(s.mount), { nothrow: true, timeoutMs: 60_000, readOnly: true })).stdout);
  const m = probed !== undefined ? parseMount(probed) : await read();
  if (m.fstype === 'fuse.glusterfs' && m.ok) return { changed: false, result: m };
  const changes =
    m.fstype === 'fuse.glusterfs'
      ? [`remount ${s.mount} (the FUSE mount of ${m.source} does not answer)`]
      : [`mount ${s.mount}${m.fstype ? ` (over ${m.fstype} ${m.source})` : ''}`];
  if (ctx.check) return { changed: true, changes };
  if (m.fstype === 'fuse.glusterfs') await ctx.exec(sh`umount -l ${s.mount}`, { timeoutMs: 60_000 });
  await ctx.exec(sh`mount ${s.mount}`, { timeoutMs: 120_000 });
  const after = await read();
  if (after.fstype !== 'fuse.glusterfs' || !after.ok)
    throw new Error(`${s.mount}: not a working Gluster mount after mount (${after.fstype || 'not mounted'})`);
  return { changed: true, changes, result: after };
}

// ---------------------------------------------------------------------------------------------------
// The role

const role: Role = {
  name: 'gluster',
  hosts: 'gluster:workers:managers',
  description: 'GlusterFS replica 3 arbiter 1 volume for site files, FUSE-mounted on the workers (and the managers: Portainer)',
  async steps(ctx: StepContext): Promise<Step[]> {
    const s = settings(ctx.vars);
    const { servers } = layout(ctx, s);
    const me = ctx.host;
    const isServer = servers.some((h) => h.name === me.name);
    const inGroup = (g: string) => me.groups.includes(g);
    const isSiteClient = inGroup(s.clientGroup);
    const isClient = isSiteClient || s.extraClientGroups.some(inGroup);
    // a server's state read with the role's probes, given to the pool step (the first server's with the bricks' status)
    const prepared = task(
      'gluster hosts prepared',
      async (c, probed) => {
        const value: Prepared = { server: isServer, ...(isServer && probed !== undefined ? { state: parseServer(probed, me) } : {}) };
        const met = await c.barrier('gluster prepared', { value, timeoutMs: s.prepTimeoutMs });
        return { changed: false, result: met };
      },
      {
        register: 'gluster_prepared',
        probe: () =>
          isServer
            ? {
                script: serverProbe(
                  s.volume,
                  servers.findIndex((h) => h.name === me.name),
                ),
              }
            : null,
      },
    );
    // a manager when managers are not extra clients (gluster_extra_client_groups: []): it only meets the others
    if (!isServer && !isClient) return [prepared];
    const server = () => isServer;
    const client = () => isClient;
    const dropIn = () => isSiteClient && s.dockerAfterMount;
    const proxy = typeof ctx.vars.apt_proxy === 'string' ? ctx.vars.apt_proxy : '';
    const addresses = servers.map(nodeAddress);

    return [
      task('apt proxy (when roles/common has not written it)', async (c) => {
        if (!proxy) return { skipped: 'no apt_proxy' };
        const r = await c.exec(sh`test -e ${APT_PROXY_FILE} && echo present || echo missing`);
        if (r.stdout.trim() === 'present') return { changed: false };
        // the same file as roles/common's
        const src = templatePath('common', 'apt-proxy.conf.ejs');
        return fromResult(await c.run(template({ path: APT_PROXY_FILE, src, vars: { apt_proxy: proxy }, mode: '0644' })));
      }),
      // retried: another run (roles/common, unattended-upgrades) may hold the apt lock for a while
      apt(
        { packages: [...(isServer ? SERVER_PACKAGES : []), ...(isClient ? CLIENT_PACKAGES : [])], update_cache: 3600 },
        { retries: 3, delayMs: 15_000 },
      ),
      // brick ports inside the range the firewall opens (Gluster 10 picks them at random up to 60999)
      lineinfile(
        {
          path: GLUSTERD_VOL,
          regexp: /^\s*#?\s*option\s+base-port\s/,
          line: `    option base-port ${s.ports.base}`,
          insertBefore: /^end-volume/,
        },
        { when: server, register: 'glusterd_vol_base' },
      ),
      lineinfile(
        {
          path: GLUSTERD_VOL,
          regexp: /^\s*#?\s*option\s+max-port\s/,
          line: `    option max-port ${s.ports.max}`,
          insertBefore: /^end-volume/,
        },
        { when: server, register: 'glusterd_vol_max' },
      ),
      systemd(
        { name: 'glusterd', state: 'restarted' },
        {
          when: (c) => isServer && [c.registered.glusterd_vol_base, c.registered.glusterd_vol_max].some((r) => r?.status === 'changed'),
          name: 'systemd glusterd restarted (glusterd.vol changed)',
        },
      ),
      systemd({ name: 'glusterd', enabled: true, state: 'started' }, { when: server }),
      directory({ path: s.brickDir, mode: '0755' }, { when: server, name: `directory ${s.brickDir} (brick)` }),
      // every host of the run (servers and clients) meets here; a host that failed does not block the others
      prepared,
      task('gluster pool: peers, volume, options', (c) => poolTask(c, s), { runOnce: true, register: 'gluster_pool' }),
      directory({ path: s.mount }, { when: client, name: `directory ${s.mount} (mount point)` }),
      lineinfile(
        { path: '/etc/fstab', regexp: fstabRegexp(s.mount), line: fstabLine(s, addresses) },
        { when: client, name: `fstab: ${s.volume} on ${s.mount}` },
      ),
      directory({ path: path.dirname(DOCKER_DROPIN), mode: '0755' }, { when: dropIn }),
      file(
        { path: DOCKER_DROPIN, content: dockerDropIn(s.mount), mode: '0644' },
        { when: dropIn, register: 'gluster_dropin', name: `file ${DOCKER_DROPIN} (dockerd after the mount)` },
      ),
      // not a handler: a run that fails after writing the drop-in would never reload; systemd itself says
      // whether the loaded docker.service is older than its files
      task(
        'systemctl daemon-reload (docker.service drop-in)',
        async (c, probed) => {
          const out = probed ?? (await c.exec(NEED_RELOAD, { nothrow: true, readOnly: true })).stdout;
          const need = /NeedDaemonReload=yes/.test(out) || c.registered.gluster_dropin?.status === 'changed';
          if (!need) return { changed: false };
          if (!c.check) await c.exec('systemctl daemon-reload', { timeoutMs: 120_000 });
          return { changed: true, changes: ['daemon-reload (docker.service starts after the Gluster mount at the next boot)'] };
        },
        { when: dropIn, probe: () => ({ script: NEED_RELOAD }) },
      ),
      task(`mount ${s.mount}`, (c, probed) => mountTask(c, s, probed), { when: client, probe: () => ({ script: mountProbe(s.mount) }) }),
    ];
  },
};

export default role;
