// Real OpenSSH sshd test hosts on this machine: each host is a network namespace on a private bridge
// (10.88.<slot>.0/24, address 10.88.<slot>.(11+i); more than 240 hosts take more slots, one /24 each), with its own filesystem (an overlay of / whose upper layer is a
// tmpfs private to the host's mount namespace; read it from the controller through /proc/<pid>/root),
// running sshd with an ed25519 host key, key-only root login, MaxSessions 10, and stock Debian dotfiles
// for root (this machine's ~/.bashrc runs `pyenv init`, ~80 ms per command).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import type { HostSpec } from '../../lib/types.ts';

export interface SshdHost {
  name: string;
  address: string;
  port: number;
  /** its filesystem as seen from the controller (/proc/<pid>/root) */
  root: string;
  /** its network namespace (for `ip netns exec`) */
  netns: string;
  pid: number;
  spec: HostSpec;
}

export interface SshdLab {
  hosts: SshdHost[];
  dir: string;
  keyFile: string;
  knownHosts: string;
  inventoryFile: string;
  killSshd(name: string): Promise<void>;
  startSshd(name: string): Promise<void>;
  rotateHostKey(name: string): Promise<void>;
  stop(): Promise<void>;
}

function run(cmd: string, args: string[], allowFail = false): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    if (allowFail) return '';
    const err = e as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.trim() || err.message}`);
  }
}
function ensurePackages(): void {
  if (existsSync('/usr/sbin/sshd') && existsSync('/usr/bin/ssh-keygen') && existsSync('/usr/sbin/ip')) return;
  run('apt-get', [
    '-o',
    'DPkg::Lock::Timeout=600',
    'install',
    '-y',
    '-q',
    '--no-install-recommends',
    'openssh-server',
    'openssh-client',
    'iproute2',
  ]);
  // Debian's package starts and enables ssh.service where systemd runs; we never need it for tests.
}

// Several harnesses may run at once on one machine (a test while the bench runs): each takes a slot
// 0..63 with its own bridge wpfsb<slot>, subnet 10.88.<slot>.0/24 and namespaces wpfssh-<slot>-<host>.
// A slot is owned through /run/wpfarm-sshd/<slot>.pid; a slot whose owner died is cleaned and reused.
const SLOT_DIR = '/run/wpfarm-sshd';
const SLOTS = 64;

interface Slot {
  n: number;
  bridge: string;
  net: string;
  nsPrefix: string;
  veth(name: string): string;
}

function slot(n: number): Slot {
  return { n, bridge: `wpfsb${n}`, net: `10.88.${n}`, nsPrefix: `wpfssh-${n}-`, veth: (name) => `wpv${n}-${name}`.slice(0, 15) };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Take a free slot (cleaning the leftovers of a dead owner). */
function takeSlot(from = 0): Slot {
  mkdirSync(SLOT_DIR, { recursive: true });
  for (let n = from; n < SLOTS; n++) {
    const f = join(SLOT_DIR, `${n}.pid`);
    let owner = 0;
    try {
      owner = Number(readFileSync(f, 'utf8').trim());
    } catch {
      /* free */
    }
    if (owner && owner !== process.pid && alive(owner)) continue;
    // claimed first, cleaned after: cleaning first let two harnesses starting at once clean (delete the bridge of)
    // a slot the other had just taken (engine tier at concurrency 2: "Cannot find device wpfsb4")
    try {
      writeFileSync(f, `${process.pid}\n`, { flag: owner ? 'w' : 'wx' });
    } catch {
      continue; // another process took it in between
    }
    if (Number(readFileSync(f, 'utf8').trim()) !== process.pid) continue; // a dead owner's slot, taken by another
    cleanupSlot(slot(n));
    return slot(n);
  }
  throw new Error(`no free sshd test slot (all ${SLOTS} owned by live processes; see ${SLOT_DIR})`);
}

/** A /24 holds HOSTS_PER_SLOT hosts (.11 to .250); a run of more hosts takes several slots, each one more subnet
 *  on the first slot's bridge (its own namespaces wpfssh-<slot>-*, so a dead owner's leftovers are cleaned per slot). */
const HOSTS_PER_SLOT = 240;

function takeSlots(count: number): Slot[] {
  const out: Slot[] = [];
  try {
    for (let i = 0; i < count; i++) out.push(takeSlot(out.length ? out[out.length - 1]!.n + 1 : 0));
  } catch (e) {
    for (const s of out) releaseSlot(s);
    throw e;
  }
  return out;
}

function releaseSlot(s: Slot): void {
  cleanupSlot(s);
  rmSync(join(SLOT_DIR, `${s.n}.pid`), { force: true });
}

/** Remove a slot's namespaces (and their processes), host-side veths, bridge and FORWARD rule. */
function cleanupSlot(s: Slot): void {
  // The host end of each veth first, synchronously: `ip netns del` frees a namespace (and with it the veth pair)
  // only later, in the kernel's own time; under load a veth outlived the test by seconds and showed up in the
  // lab's before/after snapshot of the host's links (CI, 2026-12-05: wpv0-f01).
  const vethPrefix = s.veth('');
  for (const l of run('ip', ['-o', 'link', 'show'], true).split('\n')) {
    const name = l.match(/^\d+:\s+([^:@]+)/)?.[1];
    if (name?.startsWith(vethPrefix)) run('ip', ['link', 'del', name], true);
  }
  const list = run('ip', ['netns', 'list'], true);
  for (const line of list.split('\n')) {
    const ns = line.split(' ')[0];
    if (!ns?.startsWith(s.nsPrefix)) continue;
    for (const pid of run('ip', ['netns', 'pids', ns], true).split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    run('ip', ['netns', 'del', ns], true);
  }
  run('ip', ['link', 'del', s.bridge], true);
  while (hasForwardRule(s)) run('iptables', ['-D', 'FORWARD', '-i', s.bridge, '-o', s.bridge, '-j', 'ACCEPT'], true);
}

/** Remove the leftovers of every slot whose owner is gone. */
export function cleanupSshdLeftovers(): void {
  for (let n = 0; n < SLOTS; n++) {
    const f = join(SLOT_DIR, `${n}.pid`);
    let owner = 0;
    try {
      owner = Number(readFileSync(f, 'utf8').trim());
    } catch {
      continue;
    }
    if (!alive(owner)) releaseSlot(slot(n));
  }
}

/** Locally administered MAC addresses, fixed per slot (the bridge) and per host, for the static neighbour entries. */
const hex2 = (n: number) => (n & 255).toString(16).padStart(2, '0');
const bridgeMac = (s: Slot) => `02:88:ff:00:00:${hex2(s.n)}`;
const hostMac = (s: Slot, i: number) => `02:88:${hex2(s.n)}:${hex2(i >> 8)}:${hex2(i)}:01`;

/** The bridge of slot `s` (with the subnets of `extra` too), with a fixed MAC address (see hostMac). */
function ensureBridge(s: Slot, extra: Slot[] = []): void {
  if (!run('ip', ['-o', 'link', 'show', s.bridge], true)) {
    run('ip', ['link', 'add', s.bridge, 'address', bridgeMac(s), 'type', 'bridge']);
    run('ip', ['addr', 'add', `${s.net}.1/24`, 'dev', s.bridge]);
  }
  for (const x of extra) run('ip', ['addr', 'add', `${x.net}.1/24`, 'dev', s.bridge], true);
  run('ip', ['link', 'set', s.bridge, 'up']);
  // dockerd may set the FORWARD policy to DROP with br_netfilter: allow traffic within our bridge.
  if (!hasForwardRule(s)) run('iptables', ['-I', 'FORWARD', '-i', s.bridge, '-o', s.bridge, '-j', 'ACCEPT'], true);
}

function hasForwardRule(s: Slot): boolean {
  try {
    execFileSync('iptables', ['-C', 'FORWARD', '-i', s.bridge, '-o', s.bridge, '-j', 'ACCEPT'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Hosts are set up and started in batches of this many (each batch's sshd listening before the next starts):
 *  500 sshd started at once on 2 loaded cores left some not listening 30 s later (2026-12-06, hosts 460-473). */
const START_BATCH = 25;
/** A batch fails when none of its hosts came up for this long (progress-based: a slow but moving start is waited for). */
const START_STALL_MS = 30_000;

function tryConnect(address: string, port: number): Promise<boolean> {
  return new Promise<boolean>((res) => {
    const s = netConnect({ host: address, port });
    const done = (ok: boolean) => {
      s.destroy();
      res(ok);
    };
    s.setTimeout(5_000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

interface Starting {
  host: SshdHost;
  /** stderr of its start script so far, and whether it exited (sshd -D never exits while it serves) */
  err: () => string;
  exited: () => number | null;
}

/** Wait until every host listens on port 22; fails when one's start script exited, or when none came up for
 *  START_STALL_MS (measured from the first poll: the synchronous set-up before it does not count). */
async function waitListening(starting: Starting[]): Promise<void> {
  let pending = [...starting];
  let progress = Date.now();
  while (pending.length) {
    const up = await Promise.all(pending.map((s) => tryConnect(s.host.address, 22)));
    const left = pending.filter((_, i) => !up[i]);
    if (left.length < pending.length) progress = Date.now();
    pending = left;
    for (const s of pending) {
      const code = s.exited();
      if (code !== null) throw new Error(`sshd on ${s.host.address}:22 (${s.host.name}) exited (${code}): ${s.err().trim()}`);
    }
    if (!pending.length) return;
    if (Date.now() - progress > START_STALL_MS)
      throw new Error(
        `sshd did not come up within ${START_STALL_MS / 1000} s on ` +
          `${pending.map((s) => `${s.host.address}:22 (${s.host.name})`).join(', ')}: ` +
          pending
            .map((s) => s.err().trim())
            .filter(Boolean)
            .join('; '),
      );
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSshdHosts(n: number, opts: { prefix?: string; dir?: string } = {}): Promise<SshdLab> {
  ensurePackages();
  cleanupSshdLeftovers();
  const slots = takeSlots(Math.max(1, Math.ceil(n / HOSTS_PER_SLOT)));
  const sl = slots[0]!;
  ensureBridge(sl, slots.slice(1));
  /** the slot (subnet, namespace prefix) of host i */
  const slotOf = (i: number): Slot => slots[Math.floor(i / HOSTS_PER_SLOT)]!;
  const prefix = opts.prefix ?? 'h';
  const dir = opts.dir ?? join('/var/tmp', `wpfarm-sshd-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const keyFile = join(dir, 'id_ed25519');
  run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'wpfarm-test', '-f', keyFile]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${keyFile}.pub`));
  const knownHosts = join(dir, 'known_hosts');
  const hosts: SshdHost[] = [];
  const names = Array.from({ length: n }, (_, i) => `${prefix}${String(i + 1).padStart(Math.max(2, String(n).length), '0')}`);

  const hostDir = (name: string) => join(dir, name);
  const index = new Map(names.map((name, i) => [name, i]));
  const ns = (name: string) => `${slotOf(index.get(name)!).nsPrefix}${name}`;

  const writeKnown = () => {
    const lines = hosts.map(
      (h) =>
        `${h.address} ${readFileSync(join(hostDir(h.name), 'ssh_host_ed25519_key.pub'), 'utf8')
          .split(' ')
          .slice(0, 2)
          .join(' ')}`,
    );
    writeFileSync(knownHosts, `${lines.join('\n')}\n`);
  };

  const spawnSshd = (h: SshdHost): Starting => {
    const hd = hostDir(h.name);
    const script = [
      'set -e',
      'mount --make-rprivate /',
      `mount -t tmpfs -o size=256m tmpfs ${hd}/layer`,
      `mkdir -p ${hd}/layer/upper ${hd}/layer/work ${hd}/merged`,
      `mount -t overlay overlay -o lowerdir=/,upperdir=${hd}/layer/upper,workdir=${hd}/layer/work ${hd}/merged`,
      `mount --rbind /proc ${hd}/merged/proc`,
      `mount --rbind /dev ${hd}/merged/dev`,
      `mount -t tmpfs tmpfs ${hd}/merged/tmp`,
      `mount -t tmpfs tmpfs ${hd}/merged/run`,
      `mkdir -p ${hd}/merged/run/sshd ${hd}/merged/srv`,
      `cp /etc/skel/.bashrc /etc/skel/.profile ${hd}/merged/root/ 2>/dev/null || true`,
      `rm -f ${hd}/merged/root/.bash_profile ${hd}/merged/root/.bash_login`,
      `echo ${h.name} > ${hd}/merged/etc/hostname`,
      `exec chroot ${hd}/merged /usr/sbin/sshd -D -e -f ${hd}/sshd_config`,
    ].join('\n');
    mkdirSync(join(hd, 'layer'), { recursive: true });
    const child = spawn('ip', ['netns', 'exec', ns(h.name), 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', script], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    let err = '';
    let code: number | null = null;
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (c, sig) => (code = c ?? (sig ? 128 : -1)));
    child.unref();
    h.pid = child.pid!;
    h.root = `/proc/${h.pid}/root`;
    return { host: h, err: () => err, exited: () => code };
  };

  /** set up host i (keys, config, namespace, veth) and start its sshd */
  const setUp = (name: string, i: number): Starting => {
    const hs = slotOf(i);
    const address = `${hs.net}.${11 + (i % HOSTS_PER_SLOT)}`;
    const hd = hostDir(name);
    mkdirSync(hd, { recursive: true });
    run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(hd, 'ssh_host_ed25519_key')]);
    writeFileSync(
      join(hd, 'sshd_config'),
      [
        `ListenAddress ${address}`,
        'Port 22',
        `HostKey ${hd}/ssh_host_ed25519_key`,
        'PidFile none',
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PubkeyAuthentication yes',
        `AuthorizedKeysFile ${dir}/authorized_keys`,
        'StrictModes no',
        'MaxSessions 10',
        'MaxStartups 200:30:400',
        'UseDNS no',
        'PrintMotd no',
        'PrintLastLog no',
        'Subsystem sftp internal-sftp',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    );
    run('ip', ['netns', 'add', ns(name)]);
    const mac = hostMac(hs, i);
    run('ip', ['link', 'add', hs.veth(name), 'type', 'veth', 'peer', 'name', 'wpfeth0', 'address', mac, 'netns', ns(name)]);
    run('ip', ['link', 'set', hs.veth(name), 'master', sl.bridge, 'up']);
    run('ip', ['-n', ns(name), 'addr', 'add', `${address}/24`, 'dev', 'wpfeth0']);
    run('ip', ['-n', ns(name), 'link', 'set', 'wpfeth0', 'up']);
    run('ip', ['-n', ns(name), 'link', 'set', 'lo', 'up']);
    // Static (permanent) neighbour entries both ways: the kernel's ARP table is one for all namespaces and its learned
    // entries are capped (gc_thresh3, 1024 here); 500 hosts learned 1000 of them (each host's entry for the bridge,
    // the bridge's for each host) and the rest of the machine more: "neighbor table overflow", SYNs lost, TCP
    // connects unanswered for 10 s and EHOSTUNREACH (2026-12-06, bench N=500: 13-39 hosts). Permanent entries are
    // outside that cap and are gone with the namespace and the veth.
    run('ip', ['neigh', 'replace', address, 'lladdr', mac, 'dev', sl.bridge, 'nud', 'permanent']);
    run('ip', ['-n', ns(name), 'neigh', 'replace', `${hs.net}.1`, 'lladdr', bridgeMac(sl), 'dev', 'wpfeth0', 'nud', 'permanent']);
    const h: SshdHost = {
      name,
      address,
      port: 22,
      root: '',
      netns: ns(name),
      pid: 0,
      spec: { name, address, port: 22, user: 'root', key: keyFile, groups: [], vars: {} },
    };
    hosts.push(h);
    return spawnSshd(h);
  };
  for (let b = 0; b < n; b += START_BATCH) {
    const batch: Starting[] = [];
    for (let i = b; i < Math.min(n, b + START_BATCH); i++) batch.push(setUp(names[i]!, i));
    await waitListening(batch);
  }
  hosts.sort((a, b) => a.name.localeCompare(b.name));
  writeKnown();
  const inventoryFile = join(dir, 'inventory.yml');
  writeFileSync(
    inventoryFile,
    [
      `settings:`,
      `  known_hosts: ${knownHosts}`,
      // runs on these hosts keep their run directories and retry files here, not in the user's .wpfarm/
      `  run_log_dir: ${join(dir, 'runs')}`,
      `  retry_dir: ${join(dir, 'retry')}`,
      `hosts:`,
      ...hosts.map((h) => `  ${h.name}: { address: ${h.address}, port: 22, user: root, key: ${keyFile} }`),
      `groups:`,
      `  web: { hosts: [${hosts.map((h) => h.name).join(', ')}] }`,
      '',
    ].join('\n'),
  );

  const byName = (name: string): SshdHost => {
    const h = hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no test host ${name}`);
    return h;
  };
  const killAll = (name: string) => {
    for (const pid of run('ip', ['netns', 'pids', ns(name)], true)
      .split(/\s+/)
      .filter(Boolean)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };

  return {
    hosts,
    dir,
    keyFile,
    knownHosts,
    inventoryFile,
    /** kill sshd and every session process of the host (a crashed host) */
    async killSshd(name) {
      killAll(name);
      await new Promise((r) => setTimeout(r, 50));
    },
    async startSshd(name) {
      await waitListening([spawnSshd(byName(name))]);
    },
    async rotateHostKey(name) {
      const h = byName(name);
      killAll(name);
      const hd = hostDir(name);
      rmSync(join(hd, 'ssh_host_ed25519_key'), { force: true });
      rmSync(join(hd, 'ssh_host_ed25519_key.pub'), { force: true });
      run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(hd, 'ssh_host_ed25519_key')]);
      await new Promise((r) => setTimeout(r, 50));
      await waitListening([spawnSshd(h)]);
    },
    async stop() {
      for (const h of hosts) killAll(h.name);
      for (const s of slots) releaseSlot(s);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
