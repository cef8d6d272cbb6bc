// The farm-wide deploy lock: one mutating run at a time (a `--check` run takes none).
//
// Where: on the hosts of the inventory's lock group (settings.lock_group, default `managers`; the first host of
// the inventory when there is no such group), file /var/lib/wpfarm/deploy.lock (0600, directory 0700).
// A run holds the lock when it holds it on a MAJORITY of the lock hosts (all of them when they answer): two
// runs can never both hold a majority, and one manager down does not stop the farm's operators.
//
// Taking it (one round trip per lock host, in parallel): the holder's record (one JSON line: token, owner
// user@controller, pid, command line with secrets masked, start time, ttl) is written to a temporary file
// and hard-linked to deploy.lock: link(2) fails when the lock exists, so the lock appears whole or not at all.
//
// Heartbeat: the holder touches deploy.lock every ttl/3 seconds (ttl 120 s); its mtime is the heartbeat,
// judged by the lock host's own clock (no clock skew between controllers).
//
// Stale (taken over, and the takeover logged to the audit log as an `abandoned` entry for the dead run):
//   - the heartbeat is older than the ttl (the holder's controller crashed, lost its network, was killed -9
//     on another machine), or
//   - the holder ran on THIS controller (same hostname) and its pid is gone (kill -9 here: no ttl wait).
// The takeover itself is guarded by mkdir deploy.lock.takeover (atomic; a guard older than 1 min is removed)
// and replaces the lock only when it still carries the stale holder's token.
//
// Refused: another live holder → LockHeldError (exit 5) naming who holds it, from where, since when; with
// --wait-lock the run polls every 2 s until the lock is free or the wait is over.
import { hostname, userInfo } from 'node:os';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Inventory } from './inventory.ts';
import { EXIT } from './errors.ts';
import { mask, maskDeep } from './secrets.ts';
import { sh } from './shell.ts';
import type { ConnectionPool } from './transport.ts';
import type { HostSpec } from './types.ts';

export const LOCK_DIR = '/var/lib/wpfarm';
export const LOCK_FILE = `${LOCK_DIR}/deploy.lock`;
export const DEFAULT_LOCK_GROUP = 'managers';
export const LOCK_TTL_SEC = 120;

/** The record written in the lock file. */
export interface LockInfo {
  token: string;
  /** user@controller */
  owner: string;
  controller: string;
  pid: number;
  /** command line, secrets masked */
  command: string;
  /** ISO time the run took the lock */
  since: string;
  ttlSec: number;
}

/** A lock found on a host, with its heartbeat age (host clock) and, when stale, why. */
export interface LockHolder extends LockInfo {
  host: string;
  heartbeatAgeSec: number;
  stale?: string;
}

/** The deploy lock is held by another run (exit 5). */
export class LockHeldError extends Error {
  readonly exitCode = EXIT.LOCKED;
  constructor(message: string) {
    super(message);
    this.name = 'LockHeldError';
  }
}

/** The hosts holding the lock and the audit log: the lock group's hosts, else the inventory's first host. */
export function lockHosts(inv: Inventory): HostSpec[] {
  const group = inv.settings.lockGroup ?? DEFAULT_LOCK_GROUP;
  const members = [...inv.hosts.values()].filter((h) => h.groups.includes(group));
  if (members.length) return members;
  const first = inv.hosts.values().next().value;
  return first ? [first] : [];
}

/** The command line of this process as the lock and audit log show it: secrets masked, `-e k=v` of credentials hidden. */
export function commandLine(argv: string[] = process.argv.slice(1)): string {
  const cred = /(?:^|_)(?:password|passwd|secret|token|api_?key|private_?key)=/i;
  return mask(argv.map((a) => (cred.test(a) ? a.replace(/=.*/s, '=***') : a)).join(' '));
}

export function newLockInfo(command = commandLine(), ttlSec = LOCK_TTL_SEC): LockInfo {
  const controller = hostname();
  let user = process.env.SUDO_USER || process.env.USER || '';
  try {
    user ||= userInfo().username;
  } catch {
    user ||= 'unknown';
  }
  return {
    token: randomBytes(8).toString('hex'),
    owner: `${user}@${controller}`,
    controller,
    pid: process.pid,
    command,
    since: new Date().toISOString(),
    ttlSec,
  };
}

/** Is a process with this pid alive on this machine (EPERM: alive, owned by another user)? */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why a holder is stale, or undefined when it is live (see the rule at the top of this file). */
export function staleReason(h: Omit<LockHolder, 'stale'>, here = hostname()): string | undefined {
  if (h.heartbeatAgeSec > h.ttlSec) return `no heartbeat for ${h.heartbeatAgeSec} s (ttl ${h.ttlSec} s)`;
  if (h.controller === here && h.pid !== process.pid && !pidAlive(h.pid)) return `pid ${h.pid} is gone on ${here}`;
  return undefined;
}

const TOKEN_RE = (token: string) => `"token":"${token}"`;

/** One round trip: link the lock, or report the current holder (`@@held AGE` then its record). */
function acquireScript(info: LockInfo): string {
  const tmp = `${LOCK_DIR}/.deploy.lock.${info.token}`;
  return [
    `mkdir -p ${LOCK_DIR} && chmod 0700 ${LOCK_DIR} && umask 077`,
    `printf '%s\\n' ${sh`${mask(JSON.stringify(maskDeep(info)))}`} > ${tmp}`,
    `if ln ${tmp} ${LOCK_FILE} 2>/dev/null; then rm -f ${tmp}; echo @@acquired; exit 0; fi`,
    `rm -f ${tmp}`,
    `m=$(stat -c %Y ${LOCK_FILE} 2>/dev/null) || { echo @@gone; exit 0; }`,
    `echo "@@held $(( $(date +%s) - m ))"`,
    `cat ${LOCK_FILE} 2>/dev/null || true`,
  ].join('\n');
}

/** One round trip: replace a stale lock (still carrying `oldToken`) by ours, under the takeover guard. */
function takeoverScript(info: LockInfo, oldToken: string): string {
  const guard = `${LOCK_FILE}.takeover`;
  const tmp = `${LOCK_DIR}/.deploy.lock.${info.token}`;
  return [
    `umask 077`,
    `find ${LOCK_DIR} -maxdepth 1 -name deploy.lock.takeover -mmin +1 -exec rmdir {} + 2>/dev/null`,
    `mkdir ${guard} 2>/dev/null || { echo @@busy; exit 0; }`,
    `trap 'rmdir ${guard}' EXIT`,
    `if ! grep -qF ${sh`${TOKEN_RE(oldToken)}`} ${LOCK_FILE} 2>/dev/null; then echo @@changed; exit 0; fi`,
    `printf '%s\\n' ${sh`${mask(JSON.stringify(maskDeep(info)))}`} > ${tmp} && mv -f ${tmp} ${LOCK_FILE} && echo @@acquired`,
  ].join('\n');
}

/** Remove the lock when it is ours (or `token`), then run `after` (e.g. the audit append) in the same round trip. */
export function releaseScript(token: string, after = ''): string {
  const ours = `grep -qF ${sh`${TOKEN_RE(token)}`} ${LOCK_FILE} 2>/dev/null`;
  return `${after ? `${after}\n` : ''}if ${ours}; then rm -f ${LOCK_FILE}; echo @@released; else echo @@notours; fi`;
}

function parseHeld(host: string, out: string): Omit<LockHolder, 'stale'> | null {
  const m = /^@@held (-?\d+)\n(.*)$/m.exec(out);
  if (!m) return null;
  try {
    const info = JSON.parse(m[2]!) as LockInfo;
    return { ...info, host, heartbeatAgeSec: Math.max(0, Number(m[1])) };
  } catch {
    // a lock file that is not ours to read (hand-written, truncated): treat it as held by someone unknown
    return {
      token: '',
      owner: 'unknown',
      controller: 'unknown',
      pid: 0,
      command: m[2] ?? '',
      since: '?',
      ttlSec: LOCK_TTL_SEC,
      host,
      heartbeatAgeSec: Number(m[1]),
    };
  }
}

/** Read the lock on each host (one round trip each): holder or none; unreachable hosts carry `error`. */
export async function lockStatus(
  hosts: HostSpec[],
  pool: ConnectionPool,
): Promise<Array<{ host: string; holder?: LockHolder; error?: string }>> {
  return Promise.all(
    hosts.map(async (h) => {
      try {
        const c = await pool.get(h);
        const r = await c.exec(
          `m=$(stat -c %Y ${LOCK_FILE} 2>/dev/null) || exit 0\necho "@@held $(( $(date +%s) - m ))"\ncat ${LOCK_FILE}`,
          { become: true, nothrow: true },
        );
        const held = parseHeld(h.name, r.stdout);
        return held ? { host: h.name, holder: { ...held, stale: staleReason(held) } } : { host: h.name };
      } catch (e) {
        return { host: h.name, error: (e as Error).message };
      }
    }),
  );
}

export interface DeployLockOptions {
  hosts: HostSpec[];
  /** a pool of its own: the lock's round trips are not the run's */
  pool: ConnectionPool;
  info?: LockInfo;
  /** progress messages (waiting, takeover, lost heartbeat) */
  say: (message: string) => void;
}

export class DeployLock {
  readonly info: LockInfo;
  /** hosts where we hold the lock */
  readonly held: string[] = [];
  /** stale holders we replaced (for the audit log) */
  readonly tookOver: LockHolder[] = [];
  /** lock hosts that did not answer when the lock was taken */
  readonly unreachable: string[] = [];
  roundTrips = 0;
  private heartbeat: NodeJS.Timeout | null = null;

  constructor(private readonly o: DeployLockOptions) {
    this.info = o.info ?? newLockInfo();
  }

  /** Take the lock on a majority of the lock hosts; wait up to `waitSec` for a live holder; else LockHeldError. */
  async acquire(waitSec = 0): Promise<void> {
    const deadline = Date.now() + waitSec * 1000;
    let said = '';
    for (;;) {
      const holders = await this.tryOnce();
      if (!holders.length) {
        this.startHeartbeat();
        return;
      }
      const h = holders[0]!;
      const who = `${h.owner} (pid ${h.pid}) since ${h.since}, on ${holders.map((x) => x.host).join(', ')}: ${h.command}`;
      if (Date.now() >= deadline) {
        throw new LockHeldError(
          `the farm is locked by another run: ${who}` +
            (waitSec ? ` (waited ${waitSec} s)` : '. Wait with --wait-lock [SECONDS]; see playbooks/lock.ts status'),
        );
      }
      if (said !== h.token) this.o.say(`waiting for the deploy lock held by ${who}`);
      said = h.token;
      await sleep(1500 + Math.random() * 1000);
    }
  }

  /** One attempt on every host. Returns the live holders found (empty: we hold a majority). */
  private async tryOnce(): Promise<LockHolder[]> {
    this.unreachable.length = 0;
    this.info.since = new Date().toISOString();
    const live: LockHolder[] = [];
    const got: string[] = [];
    await Promise.all(
      this.o.hosts.map(async (h) => {
        let c: Awaited<ReturnType<typeof this.o.pool.get>>;
        try {
          c = await this.o.pool.get(h);
        } catch (e) {
          this.unreachable.push(`${h.name} (${(e as Error).message.split('\n')[0]})`);
          return;
        }
        for (let attempt = 0; attempt < 3; attempt++) {
          this.roundTrips++;
          const r = await c.exec(acquireScript(this.info), { become: true });
          if (r.stdout.includes('@@acquired')) return void got.push(h.name);
          if (r.stdout.includes('@@gone')) continue; // released between our link and our read
          const held = parseHeld(h.name, r.stdout);
          if (!held) throw new Error(`${h.name}: unexpected answer from the lock script: ${r.stdout.slice(0, 200)}`);
          const stale = staleReason(held);
          if (!stale) return void live.push(held);
          this.roundTrips++;
          const t = await c.exec(takeoverScript(this.info, held.token), { become: true });
          if (t.stdout.includes('@@acquired')) {
            this.tookOver.push({ ...held, stale });
            this.o.say(
              `deploy lock on ${h.name}: took over the stale lock of ${held.owner} (pid ${held.pid}, since ${held.since}): ${stale}`,
            );
            return void got.push(h.name);
          }
          // @@busy or @@changed: someone else is on it; look again
        }
        live.push({
          token: '?',
          owner: 'another run taking over a stale lock',
          controller: '?',
          pid: 0,
          command: '',
          since: 'now',
          ttlSec: 0,
          host: h.name,
          heartbeatAgeSec: 0,
        });
      }),
    );
    // answers arrive in any order: messages and the report list the lock hosts in inventory order
    const order = (name: string) => this.o.hosts.findIndex((h) => h.name === name);
    live.sort((a, b) => order(a.host) - order(b.host));
    got.sort((a, b) => order(a) - order(b));
    this.unreachable.sort((a, b) => order(a.split(' ')[0]!) - order(b.split(' ')[0]!));
    const reachable = this.o.hosts.length - this.unreachable.length;
    if (!live.length && got.length * 2 > this.o.hosts.length && got.length === reachable) {
      this.held.push(...got);
      if (this.unreachable.length) this.o.say(`deploy lock: held on ${got.join(', ')}; not reachable: ${this.unreachable.join(', ')}`);
      return [];
    }
    // not a majority, or someone holds it somewhere: give back what we took
    await this.releaseOn(got);
    if (live.length) return live;
    throw new LockHeldError(
      `cannot take the deploy lock: a majority of the lock hosts (${this.o.hosts.map((h) => h.name).join(', ')}) must answer; ` +
        `not reachable: ${this.unreachable.join(', ')}. Run with --no-lock only if you know no one else is deploying.`,
    );
  }

  private startHeartbeat(): void {
    const every = Math.max(1, Math.floor(this.info.ttlSec / 3)) * 1000;
    this.heartbeat = setInterval(() => void this.beat(), every);
    this.heartbeat.unref();
  }

  private async beat(): Promise<void> {
    for (const name of this.held) {
      const h = this.o.hosts.find((x) => x.name === name)!;
      try {
        const c = await this.o.pool.get(h);
        this.roundTrips++;
        const r = await c.exec(
          `grep -qF ${sh`${TOKEN_RE(this.info.token)}`} ${LOCK_FILE} && touch ${LOCK_FILE} && echo @@ok || echo @@lost`,
          { become: true, nothrow: true },
        );
        if (!r.stdout.includes('@@ok'))
          this.o.say(`WARNING: the deploy lock on ${name} is no longer ours (taken over or removed by an operator)`);
      } catch (e) {
        this.o.say(`WARNING: deploy lock heartbeat on ${name} failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }

  private async releaseOn(names: string[], after = ''): Promise<void> {
    await Promise.all(
      names.map(async (name) => {
        const h = this.o.hosts.find((x) => x.name === name)!;
        const c = await this.o.pool.get(h);
        this.roundTrips++;
        await c.exec(releaseScript(this.info.token, after), { become: true, nothrow: true });
      }),
    );
  }

  /** Release the lock (stop the heartbeat); `after` runs first in the same round trip (the audit append). */
  async release(after = ''): Promise<void> {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    const names = this.held.splice(0);
    await this.releaseOn(names, after);
  }
}
