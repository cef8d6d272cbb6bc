// The machine's Docker engine: use the one that answers; otherwise (Debian/Ubuntu, root) install
// docker.io and start dockerd in the background, saying so, after clearing what a killed dockerd left.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { $ } from 'zx';
import { pidAlive } from '../../lib/lock.ts';
import { PATHS } from './config.ts';
import { ensureDir, readJson, runLogged, say, tryOut, waitFor, withLock, writeJson } from './util.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export const DOCKERD_LOG = '/var/log/wpfarm-dockerd.log';

export interface HostState {
  /** FORWARD policy found before the lab first started dockerd (dockerd sets DROP) */
  forwardPolicy?: string;
  /** ip_forward before dockerd started (dockerd turns it on; it stays on while dockerd runs) */
  ipForward?: string;
  /** fs.inotify.max_user_instances before the lab raised it (restored when the last lab goes down) */
  inotifyInstances?: string;
  startedDockerd?: boolean;
  dockerdPid?: number;
  at?: string;
}

export interface DockerInfo {
  serverVersion: string;
  started: boolean;
}

export async function dockerAnswers(): Promise<string | undefined> {
  const out = await tryOut`timeout 15 docker info --format ${'{{.ServerVersion}}'}`;
  return out?.trim() || undefined;
}

export async function forwardPolicy(): Promise<string | undefined> {
  const out = await tryOut`iptables -S FORWARD`;
  const m = out?.match(/^-P FORWARD (\w+)/m);
  return m?.[1];
}

function procName(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

/** A pid file whose process is gone (or is now some other program) is removed. */
function clearStalePidFile(file: string, expect: string): void {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim());
  } catch {
    return;
  }
  if (Number.isInteger(pid) && pid > 0 && pidAlive(pid) && procName(pid) === expect) return;
  say(`removing stale ${file} (pid ${pid} is not a running ${expect})`);
  fs.rmSync(file, { force: true });
}

async function installDockerIo(): Promise<void> {
  const osRelease = fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '';
  if (!/^ID(_LIKE)?=.*(debian|ubuntu)/m.test(osRelease)) {
    throw new Error('no Docker engine answers and this is not Debian/Ubuntu: start a Docker engine, then retry');
  }
  if (process.getuid?.() !== 0) throw new Error('no Docker engine answers: installing docker.io needs root');
  say("no Docker engine here: installing Debian's docker.io (apt-get)");
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = ['apt-get', '-o', 'DPkg::Lock::Timeout=600', '-y', '-q'];
  await runLogged([...apt, 'install', '--no-install-recommends', 'docker.io', 'iptables'], {
    name: 'apt-docker',
    what: 'apt-get install docker.io',
    env,
  }).catch(async () => {
    await runLogged([...apt, 'update'], { name: 'apt-update', what: 'apt-get update', env });
    await runLogged([...apt, 'install', '--no-install-recommends', 'docker.io', 'iptables'], {
      name: 'apt-docker',
      what: 'apt-get install docker.io',
      env,
    });
  });
}

/**
 * Make sure a Docker engine answers. Returns its version and whether this call started it.
 * Records the host's FORWARD policy before starting dockerd so that lab-down can restore it.
 */
export async function ensureDocker(): Promise<DockerInfo> {
  const v = await dockerAnswers();
  if (v) return { serverVersion: v, started: false };
  return withLock('dockerd', async () => {
    const again = await dockerAnswers();
    if (again) return { serverVersion: again, started: false };
    if (!fs.existsSync('/usr/sbin/dockerd') || !(await tryOut`sh -c ${'command -v iptables'}`)) await installDockerIo();
    // Leftovers of a killed dockerd: pid files that would stop the new one.
    clearStalePidFile('/var/run/docker.pid', 'dockerd');
    clearStalePidFile('/var/run/docker/containerd/containerd.pid', 'containerd');
    const state = readJson<HostState>(PATHS.hostState) ?? {};
    // Keep the first recorded value: after a killed dockerd the kernel still has its DROP policy.
    state.forwardPolicy ??= (await forwardPolicy()) ?? 'ACCEPT';
    state.ipForward ??= fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
    say(`no Docker engine answers: starting dockerd in the background (log ${DOCKERD_LOG}; FORWARD policy was ${state.forwardPolicy})`);
    const log = fs.openSync(DOCKERD_LOG, 'a');
    const child = spawn('/usr/sbin/dockerd', [], { detached: true, stdio: ['ignore', log, log] });
    child.unref();
    fs.closeSync(log);
    state.startedDockerd = true;
    state.dockerdPid = child.pid;
    state.at = new Date().toISOString();
    ensureDir(PATHS.locks);
    writeJson(PATHS.hostState, state);
    const version = await waitFor(
      'dockerd to answer',
      async () => {
        if (child.pid && !pidAlive(child.pid)) {
          const tail = fs.readFileSync(DOCKERD_LOG, 'utf8').trim().split('\n').slice(-15).join('\n');
          throw new Error(`dockerd exited at start; ${DOCKERD_LOG}:\n${tail}`);
        }
        return dockerAnswers();
      },
      60_000,
    );
    say(`dockerd ${version} is up (pid ${child.pid})`);
    return { serverVersion: version, started: true };
  });
}

/** Restore the FORWARD policy the host had before the lab started dockerd (dockerd leaves DROP). */
export async function restoreForwardPolicy(fallback?: string): Promise<string | undefined> {
  const state = readJson<HostState>(PATHS.hostState);
  const want = state?.forwardPolicy ?? fallback;
  if (!want) return undefined;
  const now = await forwardPolicy();
  if (now && now !== want) {
    say(`restoring the host's iptables FORWARD policy: ${now} -> ${want}`);
    await $`iptables -P FORWARD ${want}`;
  }
  return want;
}

/** Stop the dockerd that the lab started (only that one, by its pid), then restore ip_forward. */
export async function stopOwnDockerd(): Promise<boolean> {
  const state = readJson<HostState>(PATHS.hostState);
  const pid = state?.dockerdPid;
  if (!state?.startedDockerd || !pid || !pidAlive(pid) || procName(pid) !== 'dockerd') {
    say('dockerd was not started by the lab (or is gone): leaving the engine alone');
    return false;
  }
  say(`stopping dockerd (pid ${pid}, started by the lab)`);
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 120 && pidAlive(pid); i++) await sleep(250);
  if (state.ipForward) fs.writeFileSync('/proc/sys/net/ipv4/ip_forward', `${state.ipForward}\n`);
  await restoreForwardPolicy();
  fs.rmSync(PATHS.hostState, { force: true });
  return true;
}

/**
 * inotify instances per user that the labs need: each node's systemd (and later its dockerd, containerd and
 * services) holds several, all as root. Debian's default of 128 does not hold two labs: measured 2026-12-06, the
 * test lab's 12th machine started beside the user's lab had its .path units fail (Result: resources) and its
 * boot hung in "initializing" with every job waiting.
 */
export const INOTIFY_INSTANCES = 1024;
const INOTIFY_FILE = '/proc/sys/fs/inotify/max_user_instances';

/** Raise fs.inotify.max_user_instances to INOTIFY_INSTANCES when lower, recording the old value once. */
export function ensureInotifyInstances(): void {
  const now = Number(fs.readFileSync(INOTIFY_FILE, 'utf8').trim());
  if (now >= INOTIFY_INSTANCES) return;
  const state = readJson<HostState>(PATHS.hostState) ?? {};
  state.inotifyInstances ??= String(now);
  writeJson(PATHS.hostState, state);
  say(
    `raising fs.inotify.max_user_instances ${now} -> ${INOTIFY_INSTANCES} (every lab node's systemd needs its own; lab-down restores it)`,
  );
  fs.writeFileSync(INOTIFY_FILE, `${INOTIFY_INSTANCES}\n`);
}

/** Put back the fs.inotify.max_user_instances the host had before the lab raised it (the last lab's lab-down). */
export function restoreInotifyInstances(): void {
  const state = readJson<HostState>(PATHS.hostState);
  if (!state?.inotifyInstances) return;
  const now = fs.readFileSync(INOTIFY_FILE, 'utf8').trim();
  if (now !== state.inotifyInstances) {
    say(`restoring fs.inotify.max_user_instances ${now} -> ${state.inotifyInstances}`);
    fs.writeFileSync(INOTIFY_FILE, `${state.inotifyInstances}\n`);
  }
  delete state.inotifyInstances;
  writeJson(PATHS.hostState, state);
}
