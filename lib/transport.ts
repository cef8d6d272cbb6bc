// SSH transport: ONE persistent connection per host for the whole run (ssh2), with TCP_NODELAY (Nagle costs
// ~40 ms per command otherwise; see shared notes), keepalive, a bounded number of channels in flight (OpenSSH's
// MaxSessions defaults to 10), one reconnect on a dropped connection, become (sudo), host keys checked against
// a known_hosts file, atomic uploads.
// At scale (hundreds of hosts on a small controller) the cost is connection setup, so: a bounded number of
// handshakes in flight per pool, separate from --forks; the connect timeout counts from the start of a host's
// own handshake, never while it waits for a turn; each private key file parsed once; known_hosts read once per
// run (re-read when the file changes); no work the security of the connection does not need (no "none" auth
// probe, no proof of the extra host keys OpenSSH advertises after login: we never use them).
import { createHash, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism, constants as osConstants } from 'node:os';
import { isAbsolute, resolve } from 'node:path';
import pLimit from 'p-limit';
import ssh2, {
  type AgentAuthMethod,
  type AuthenticationType,
  type Client,
  type ClientChannel,
  type ConnectConfig,
  type ParsedKey,
  type PublicKeyAuthMethod,
} from 'ssh2';
import { PassThrough, type Readable } from 'node:stream';
import { HostKeyError, InterruptedError, RemoteCommandError, UnreachableError } from './errors.ts';
import { type KnownHostEntry, fileStamp, knownHostName, knownKeysFor, verifyHostKey } from './known-hosts.ts';
import { mask } from './secrets.ts';
import { atomicWriteScript, outlivingOutput, sh } from './shell.ts';
import type { Connection, ExecOptions, ExecResult, HostSpec } from './types.ts';

export interface ConnectOptions {
  /** known_hosts file; required unless hostKeyCheck is 'off' */
  knownHosts?: string;
  /** accept and record the key of a host seen for the first time */
  acceptNew?: boolean;
  /**
   * how long a host may stay silent during its connect: from the start of its own handshake to the TCP connect,
   * then between the server's packets up to the login (a host that answers is never timed out for load reasons)
   */
  connectTimeoutMs?: number;
  /** handshakes in flight at once (per pool; default: HANDSHAKES_PER_CORE per core) */
  maxHandshakes?: number;
  keepaliveMs?: number;
  /** channels in flight per connection (≤ 10: OpenSSH MaxSessions) */
  maxChannels?: number;
  /** called as each round trip starts (the run's event stream); the function it returns, when it ends */
  onCommand?: (host: string, command: string) => ((code: number) => void) | void;
  /**
   * called as a host's handshake takes its turn (TCP connect, key exchange, login), with the handshakes of the pool
   * then in flight, this one included; the function it returns, when the handshake ends
   */
  onHandshake?: (host: string, inFlight: number) => ((ok: boolean, inFlight: number) => void) | void;
}

/** A pool's handshakes: in flight now, the most ever in flight at once, and how many started. */
export interface HandshakeStats {
  inFlight: number;
  peak: number;
  started: number;
}

/** Measured on 2 cores with 500 loopback sshd hosts (bench/README.md): see defaultMaxHandshakes. */
export const HANDSHAKES_PER_CORE = 8;
export function defaultMaxHandshakes(): number {
  return HANDSHAKES_PER_CORE * availableParallelism();
}
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/**
 * The SSH options of a run from its inventory's settings and its command line (the flag wins over the setting):
 * known_hosts (default .wpfarm/known_hosts, relative paths from the working directory), first contact, connect
 * timeout, handshakes in flight. Every pool a command opens is made from these.
 */
export function sshOptions(
  settings: { knownHosts?: string; acceptNewHostKeys: boolean; connectTimeoutS?: number; handshakes?: number },
  flags: { acceptNewHostKeys: boolean; connectTimeout?: number; handshakes?: number },
): ConnectOptions {
  const kh = settings.knownHosts;
  return {
    knownHosts: kh ? (isAbsolute(kh) ? kh : resolve(kh)) : resolve('.wpfarm/known_hosts'),
    acceptNew: flags.acceptNewHostKeys || settings.acceptNewHostKeys,
    connectTimeoutMs: (flags.connectTimeout ?? settings.connectTimeoutS ?? DEFAULT_CONNECT_TIMEOUT_MS / 1000) * 1000,
    maxHandshakes: flags.handshakes ?? settings.handshakes,
  };
}
const DEFAULTS = { connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS, keepaliveMs: 5_000, maxChannels: 8 };
type Limit = ReturnType<typeof pLimit>;
/** `writes`: the pool's commands that were not read-only (ExecOptions.readOnly), for the runner's probe caches */
type Opts = ConnectOptions & typeof DEFAULTS & { handshakes: Limit; stats: HandshakeStats; writes: { n: number } };

// ---------------------------------------------------------------------------------------------
// known_hosts: lib/known-hosts.ts (OpenSSH semantics: @revoked, negation, hashed names, @cert-authority; parsed once
// per run and again when the file changes)
export { fingerprint, knownHostName, keysForHost, parseKnownHosts, verifyHostKey, type KnownHostEntry } from './known-hosts.ts';

// ---------------------------------------------------------------------------------------------
// private keys: each file read and parsed once (ssh2's parser); every connection gets the parsed key object

const keyCache = new Map<string, { stamp: string; key: ParsedKey | Error }>();

export function loadPrivateKey(file: string): ParsedKey | Error {
  const stamp = fileStamp(file);
  const cached = keyCache.get(file);
  if (cached?.stamp === stamp) return cached.key;
  let key: ParsedKey | Error;
  try {
    const parsed = ssh2.utils.parseKey(readFileSync(file));
    key = Array.isArray(parsed) ? parsed[0]! : parsed; // OpenSSH's format holds one key
    if (!(key instanceof Error) && !key.isPrivateKey()) key = new Error('not a private key');
    if (!(key instanceof Error)) holdKeyObject(key);
  } catch (e) {
    key = e as Error;
  }
  keyCache.set(file, { stamp, key });
  return key;
}

/**
 * ssh2 keeps the private key as PEM text and hands that text to crypto.sign for every signature, which parses it
 * again each time (ed25519 here: ~630 µs of CPU per login instead of ~50 µs). Node's signing accepts a KeyObject
 * wherever it accepts PEM, so the parsed key holds one (ssh2 reads the field only to sign and to test presence).
 */
function holdKeyObject(key: ParsedKey): void {
  const holder = key as unknown as Record<symbol, unknown>;
  const sym = Object.getOwnPropertySymbols(key).find((s) => s.description === 'Private key PEM');
  const pem = sym ? holder[sym] : undefined;
  if (sym && typeof pem === 'string') holder[sym] = createPrivateKey(pem);
}

// ---------------------------------------------------------------------------------------------
// algorithms: ssh2's defaults are already the fast, secure ones here (curve25519 key exchange; ed25519 host keys
// first; aes128-gcm, then chacha20-poly1305 or aes-ctr+etm MACs), so only the host key order is adjusted: the
// types known_hosts holds for the host come first, as OpenSSH does, so that a host with several keys is checked
// against the one recorded rather than refused as changed.

const HOST_KEY_ORDER = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256'];

function hostKeyOrder(known: KnownHostEntry[]): string[] {
  const types = new Set<string>();
  for (const e of known) {
    if (e.type === 'ssh-rsa') types.add('rsa-sha2-512').add('rsa-sha2-256');
    else if (HOST_KEY_ORDER.includes(e.type)) types.add(e.type);
  }
  return [...types, ...HOST_KEY_ORDER.filter((t) => !types.has(t))];
}

// ---------------------------------------------------------------------------------------------
// connection

const UNSAFE: [string, string[]][] = [
  ['apt/dpkg', ['apt-get', 'apt', 'aptitude', 'dpkg', 'unattended-upgrades?']],
  ['docker', ['docker']],
];
/**
 * Commands that are not stopped on Ctrl-C but allowed to finish: killing apt/dpkg half-way can leave the package
 * database broken, and a docker client killed half-way leaves the daemon's operation going on without us.
 */
export function unsafeToStop(command: string): string | null {
  for (const [kind, words] of UNSAFE) if (new RegExp(`(?:^|[\\s;&|(\`'"])(?:${words.join('|')})(?=\\s|$)`, 'm').test(command)) return kind;
  return null;
}
/**
 * The same test on the host (grep -E). Atomic writes (lib/shell.ts) are stopped like any command: their script
 * traps TERM and removes its temp file (waiting for EOF instead let a slow host hash a partial 200 MB file for
 * seconds after we exited, or land the whole file when its last bytes were already sent).
 */
const KEEP_ON_HOST = UNSAFE.map(([, w]) => `(^|[[:space:];&|(\`'"])(${w.join('|')})([[:space:]]|$)`);

/**
 * The longest command sent as the SSH command line. sshd has the login shell run it as one argument (`bash -c CMD`),
 * and Linux refuses an argument over 128 KiB (MAX_ARG_STRLEN: exec fails with E2BIG, the command never runs): a
 * longer one (a probe batch of a manager runs to 150 KB) goes ahead of its stdin instead, read back by the shell.
 */
export const SCRIPT_ARG_MAX = 100 * 1024;

/** A command as sent (wrapCommand). */
export interface WrappedCommand {
  command: string;
  /** what the run's events, errors and the Ctrl-C check see: the command as written (with cd and sudo) */
  shown: string;
  /** bytes sent ahead of the command's own stdin (sudo's password, a long command's script) */
  stdinPrefix?: string;
}

/**
 * The command as sent to a host (pure): with `cd` for opts.cwd and sudo for become; a command left to finish on
 * Ctrl-C (unsafeToStop: apt/dpkg, docker) with its output through relays that outlive the channel (outlivingOutput);
 * a command longer than SCRIPT_ARG_MAX ahead of stdin, read back by `head -c` (see there).
 */
export function wrapCommand(host: Pick<HostSpec, 'user' | 'becomePassword'>, command: string, opts: ExecOptions): WrappedCommand {
  const cmd = opts.cwd ? sh`cd ${opts.cwd} && ` + command : command;
  const password = opts.become && host.user !== 'root' && host.becomePassword ? `${host.becomePassword}\n` : '';
  const sudo = (c: string): string =>
    !opts.become || host.user === 'root' ? c : password ? sh`sudo -S -p '' -- bash -c ${c}` : sh`sudo -n -- bash -c ${c}`;
  const shown = sudo(cmd);
  const unsafe = unsafeToStop(cmd);
  const sent = (c: string): string => (unsafe ? outlivingOutput(c) : c);
  if (Buffer.byteLength(shown) <= SCRIPT_ARG_MAX) return { command: sent(shown), shown, ...(password ? { stdinPrefix: password } : {}) };
  // sudo reads the password byte by byte up to the newline, head -c exactly the script's bytes (never more: the rest
  // of stdin is the command's own); the comment keeps what the host's Ctrl-C check looks for in the command line
  const read = `eval "$(head -c ${Buffer.byteLength(cmd)})"${unsafe ? ` # runs ${UNSAFE.find(([k]) => k === unsafe)![1][0]}` : ''}`;
  return { command: sent(sudo(read)), shown, stdinPrefix: password + cmd };
}

const CONNECTION_LOST =
  /Not connected|No response from server|ECONNRESET|EPIPE|socket|Connection lost|channel open failure.*closed|Unable to exec/i;
/**
 * The server refused a session channel: nothing ran. OpenSSH answers "open failed" ("no more sessions" in its log) when
 * MaxSessions is reached, and it counts a session until it has processed our close of it, which lags behind our
 * channel limit under load (100 sites at 8 at once on the lab, load 100+: 6 of 25 sites failed so). Retried after a pause.
 */
const CHANNEL_REFUSED = /^\(SSH\) Channel open failure: (?!server closed)/;
/** pauses before the retries of a refused channel (about 11 s in all) */
const CHANNEL_RETRY_MS = [100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000];

/** ssh2's protocol object, for the one message handler we replace (not in ssh2's public types). */
type SignCallback = (data: Buffer, done: (signature: Buffer) => void) => void;
interface Ssh2Internals {
  _protocol?: {
    _handlers: { GLOBAL_REQUEST?: (p: unknown, name: string, wantReply: boolean, data: unknown) => void };
    authPK(username: string, key: ParsedKey, keyAlgo: string | undefined, sign?: SignCallback): void;
  };
}

/** the hash of each public key signature algorithm that names one (ssh2's getKeyAlgos; ed25519/ecdsa: none given) */
const SIGN_HASH: Record<string, string> = { 'rsa-sha2-512': 'sha512', 'rsa-sha2-256': 'sha256', 'ssh-rsa': 'sha1' };

/**
 * ssh2 writes each SSH packet with its own socket write; a command is several packets sent in the same tick
 * (channel request, data, EOF...). With TCP_NODELAY each write is a syscall and a segment through the network stack,
 * on the controller's CPU. Corked until the end of the tick, the packets of a tick leave in one writev.
 */
function corked(sock: net.Socket): net.Socket {
  const write = sock.write;
  let pending = false;
  const uncork = () => {
    pending = false;
    sock.uncork();
  };
  sock.write = function (this: net.Socket, ...args: Parameters<net.Socket['write']>): boolean {
    if (!pending) {
      pending = true;
      sock.cork();
      process.nextTick(uncork);
    }
    return write.apply(this, args);
  } as net.Socket['write'];
  return sock;
}

class SshConnection implements Connection {
  private client: Client | null = null;
  private connecting: Promise<void> | null = null;
  private dropped = false;
  private reconnects = 0;
  private dead: UnreachableError | null = null;
  private readonly limit: Limit;
  private readonly channels = new Set<ClientChannel>();
  /** the command of each exec channel, and how to end its wait at once when abortChannels() stops it */
  private readonly commandOf = new WeakMap<ClientChannel, string>();
  private readonly stopper = new WeakMap<ClientChannel, () => void>();
  private killing?: Promise<void>;
  /** set by abortChannels() (Ctrl-C): a command sent after it does not start; one whose channel opens after it is stopped */
  private aborted = false;
  private trips = 0;

  constructor(
    readonly host: HostSpec,
    private readonly opts: Opts,
  ) {
    this.limit = pLimit(Math.min(Math.max(1, opts.maxChannels), 10));
  }

  get roundTrips(): number {
    return this.trips;
  }

  async open(): Promise<void> {
    if (this.dead) throw this.dead;
    if (this.client && !this.dropped) return;
    if (!this.connecting) {
      // wait for a turn among the pool's handshakes; the timeout starts with ours
      this.connecting = this.opts
        .handshakes(() => this.doConnect())
        .finally(() => {
          this.connecting = null;
        });
    }
    return this.connecting;
  }

  /** One handshake, counted in the pool's stats (and the run's events) from its start to its end. */
  private async doConnect(): Promise<void> {
    const { stats } = this.opts;
    stats.inFlight++;
    stats.started++;
    stats.peak = Math.max(stats.peak, stats.inFlight);
    const ended = this.opts.onHandshake?.(this.host.name, stats.inFlight);
    let ok = false;
    try {
      await this.handshake();
      ok = true;
    } finally {
      stats.inFlight--;
      ended?.(ok, stats.inFlight);
    }
  }

  private handshake(): Promise<void> {
    const { host, opts } = this;
    let auth: ConnectConfig['authHandler'];
    if (host.key) {
      const key = loadPrivateKey(host.key);
      if (key instanceof Error) return Promise.reject(new UnreachableError(host.name, `cannot use key ${host.key}: ${key.message}`));
      const pk: PublicKeyAuthMethod = { type: 'publickey', username: host.user, key };
      auth = [pk];
    } else if (process.env.SSH_AUTH_SOCK) {
      const agent: AgentAuthMethod = { type: 'agent', username: host.user, agent: process.env.SSH_AUTH_SOCK };
      auth = [agent];
    } else {
      auth = ['none' as AuthenticationType];
    }
    const known = opts.knownHosts ? knownKeysFor(opts.knownHosts, knownHostName(host.address, host.port)) : [];
    return new Promise<void>((resolve, reject) => {
      let keyRefusal: string | null = null;
      let settled = false;
      const client = new ssh2.Client();
      const sock = corked(net.connect({ host: host.address, port: host.port, noDelay: true }));
      const finish = (err?: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.off('data', progress);
        if (!err) return resolve();
        sock.destroy();
        client.end();
        if (keyRefusal) {
          this.dead = new UnreachableError(host.name, keyRefusal);
          return reject(new HostKeyError(host.name, keyRefusal));
        }
        reject(err instanceof UnreachableError ? err : new UnreachableError(host.name, err.message));
      };
      // The timeout is for a host that does not answer, not for a slow controller or host: it runs from the start of
      // this handshake (never while waiting for a turn) to the TCP connect, then restarts with each packet the server
      // sends, up to the login (as OpenSSH's ConnectTimeout covers the connect and the server's banner). Under load,
      // every host that answers gets in; one silent for the whole timeout at any point of the handshake fails.
      // A timer that fires late on a busy loop runs before the I/O that arrived meanwhile (timers come first in a turn
      // of the event loop): the host is given up only if that I/O, read first (setImmediate), brought no progress.
      let phase = 'TCP connect';
      let timer: NodeJS.Timeout;
      let armed = 0;
      const arm = () => {
        clearTimeout(timer);
        const gen = ++armed;
        timer = setTimeout(() => {
          setImmediate(() => {
            if (gen !== armed) return;
            const what = `no answer for ${opts.connectTimeoutMs} ms (${phase})`;
            finish(new UnreachableError(host.name, `connect to ${host.address}:${host.port} timed out: ${what}`));
          });
        }, opts.connectTimeoutMs);
      };
      const progress = () => {
        phase = 'key exchange and login';
        arm();
      };
      arm();
      sock.once('connect', () => {
        phase = "waiting for the server's banner";
        arm();
      });
      sock.on('data', progress);
      sock.once('error', (e: NodeJS.ErrnoException) =>
        finish(new UnreachableError(host.name, `${host.address}:${host.port}: ${e.code ?? e.message}`)),
      );
      client.once('ready', () => {
        client.on('close', () => {
          this.dropped = true;
        });
        this.client = client;
        this.dropped = false;
        finish();
      });
      client.on('error', (e) => {
        this.dropped = true;
        finish(e);
      });
      client.once('close', () => finish(new Error('connection closed during the handshake')));
      client.connect({
        sock,
        host: host.address,
        port: host.port,
        username: host.user,
        authHandler: auth,
        readyTimeout: 0, // our timer above covers connect + handshake + login
        keepaliveInterval: opts.keepaliveMs,
        keepaliveCountMax: 3,
        algorithms: { serverHostKey: hostKeyOrder(known) as NonNullable<ConnectConfig['algorithms']>['serverHostKey'] },
        hostVerifier: (key: Buffer) => {
          if (!opts.knownHosts) return true;
          const v = verifyHostKey(opts.knownHosts, host, key, !!opts.acceptNew);
          if (!v.ok) keyRefusal = v.reason;
          return v.ok;
        },
      });
      // OpenSSH announces all its host keys after login (hostkeys-00@openssh.com, for UpdateHostKeys); ssh2 then
      // asks the server to prove each one (a signature per key on the host, a verification per key here) for an
      // event we never use. The key that authenticated this connection was checked above; the rest is skipped.
      const proto = (client as unknown as Ssh2Internals)._protocol;
      const global = proto?._handlers.GLOBAL_REQUEST;
      if (proto && global) {
        proto._handlers.GLOBAL_REQUEST = (p, name, wantReply, data) => {
          if (name === 'hostkeys-00@openssh.com' && !wantReply) return;
          global(p, name, wantReply, data);
        };
      }
      // Public key login: ssh2 first asks whether the host would accept the key (a round trip), then signs; OpenSSH
      // accepts the signed request at once (RFC 4252 7: the query is optional), so it is sent first. A host that
      // refuses the key answers it as it would the query (the next algorithm, or the next method, is tried).
      if (proto && host.key) {
        const authPK = proto.authPK;
        proto.authPK = (user, key, keyAlgo, sign) =>
          authPK.call(
            proto,
            user,
            key,
            keyAlgo,
            sign ??
              ((data, done) => {
                const signature = key.sign(data, SIGN_HASH[keyAlgo ?? '']);
                if (signature instanceof Error) throw signature;
                done(signature);
              }),
          );
      }
    });
  }

  /** Reconnect once after a drop; a second drop that cannot be repaired makes the host unreachable. */
  private async recover(cause: Error): Promise<void> {
    if (this.reconnects >= 1 && this.dropped) {
      this.dead = new UnreachableError(this.host.name, `connection lost (${cause.message}) and reconnect failed before`);
      throw this.dead;
    }
    this.reconnects++;
    this.dropped = true;
    try {
      this.client?.end();
    } catch {
      /* already gone */
    }
    this.client = null;
    try {
      await this.open();
    } catch (e) {
      this.dead = e instanceof UnreachableError ? e : new UnreachableError(this.host.name, (e as Error).message);
      throw this.dead;
    }
  }

  wrap(command: string, opts: ExecOptions): WrappedCommand {
    return wrapCommand(this.host, command, opts);
  }

  async exec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
    const wrapped = this.wrap(command, opts);
    let stdin: Buffer | undefined;
    if (opts.stdin !== undefined || wrapped.stdinPrefix) {
      stdin = Buffer.concat([Buffer.from(wrapped.stdinPrefix ?? ''), Buffer.from(opts.stdin ?? '')]);
    }
    return this.limit(async () => {
      await this.open();
      let started = false;
      try {
        return await this.once(wrapped, stdin, opts, () => (started = true));
      } catch (e) {
        if (e instanceof RemoteCommandError || e instanceof UnreachableError || e instanceof InterruptedError) throw e;
        let err = e as Error;
        for (const ms of CHANNEL_RETRY_MS) {
          if (started || this.dropped || !CHANNEL_REFUSED.test(err.message)) break;
          await new Promise((r) => setTimeout(r, ms));
          try {
            return await this.once(wrapped, stdin, opts, () => (started = true));
          } catch (again) {
            if (again instanceof RemoteCommandError || again instanceof UnreachableError || again instanceof InterruptedError) throw again;
            err = again as Error;
          }
        }
        if (!this.dropped && !CONNECTION_LOST.test(err.message)) throw err;
        await this.recover(err);
        // Safe to retry only when the command never started on the host.
        if (started)
          throw new UnreachableError(
            this.host.name,
            `connection dropped while a command was running (${err.message}); reconnected, not retried`,
          );
        return this.once(wrapped, stdin, opts, () => undefined);
      }
    });
  }

  private once(
    wrapped: { command: string; shown: string },
    stdin: Buffer | undefined,
    opts: ExecOptions,
    onStart: () => void,
  ): Promise<ExecResult> {
    const command = wrapped.shown;
    const client = this.client;
    if (!client) return Promise.reject(new Error('Not connected'));
    if (this.aborted && !unsafeToStop(command)) {
      return Promise.reject(new InterruptedError(this.host.name, `not started (Ctrl-C): ${mask(command.split('\n')[0]!)}`));
    }
    this.trips++;
    if (!opts.readOnly) this.opts.writes.n++;
    const ended = this.opts.onCommand?.(this.host.name, command);
    return new Promise<ExecResult>((resolve, reject) => {
      client.exec(wrapped.command, (err, stream) => {
        if (err) {
          ended?.(255);
          return reject(err);
        }
        onStart();
        this.channels.add(stream);
        this.commandOf.set(stream, command);
        // sshd reports the close only when the command's whole process tree is gone: do not wait for it
        this.stopper.set(stream, () => {
          if (timer) clearTimeout(timer);
          this.channels.delete(stream);
          reject(new InterruptedError(this.host.name, `stopped (Ctrl-C): ${mask(command.split('\n')[0]!)}`));
        });
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let timer: NodeJS.Timeout | undefined;
        let timedOut = false;
        if (opts.timeoutMs) {
          timer = setTimeout(() => {
            timedOut = true;
            stream.signal('KILL');
            stream.close();
          }, opts.timeoutMs);
        }
        stream.on('data', (d: Buffer) => out.push(d));
        stream.stderr.on('data', (d: Buffer) => errOut.push(d));
        stream.on('close', (code: number | null, signal?: string) => {
          if (timer) clearTimeout(timer);
          this.channels.delete(stream);
          const res: ExecResult = {
            stdout: Buffer.concat(out).toString('utf8'),
            stderr: Buffer.concat(errOut).toString('utf8'),
            // killed by a signal without an exit status: the shell's convention, 128 + the signal's number
            code: code ?? (timedOut ? 124 : signal ? 128 + (osConstants.signals[`SIG${signal}` as NodeJS.Signals] ?? 127) : 255),
          };
          if (timedOut) res.stderr += `\n(timed out after ${opts.timeoutMs} ms)`;
          ended?.(code ?? res.code);
          // no exit status and no signal: the session ended under us (sshd or the host died)
          if (code == null && !timedOut && (this.dropped || !signal))
            return reject(new Error(`Connection lost (no exit status${signal ? `, signal ${signal}` : ''})`));
          if (res.code !== 0 && !opts.nothrow) {
            return reject(new RemoteCommandError(this.host.name, mask(command), res.code, mask(res.stdout), mask(res.stderr)));
          }
          resolve(res);
        });
        if (stdin) stream.end(stdin);
        else stream.end();
        // sent before Ctrl-C, its channel opened after abortChannels() looked: stop it the same way
        if (this.aborted) void this.abortChannels();
      });
    });
  }

  async put(
    remotePath: string,
    content: string | Buffer,
    o: { mode?: number; owner?: string; group?: string; become?: boolean } = {},
  ): Promise<void> {
    const sha = createHash('sha256').update(content).digest('hex');
    await this.exec(atomicWriteScript(remotePath, { mode: o.mode, owner: o.owner, group: o.group, sha }), {
      stdin: content,
      become: o.become,
    });
  }

  /**
   * Stream a command: stdout is a Readable consumed while the command runs (backups: dump → encrypt → S3),
   * stdin is a list of Buffers and Readables written in order. One channel; counts as one round trip.
   */
  execStream(
    command: string,
    opts: { stdin?: Array<Buffer | Readable>; become?: boolean } = {},
  ): { stdout: Readable; done: Promise<{ code: number; signal?: string | null; stderr: string }>; kill(): void } {
    const stdout = new PassThrough();
    let channel: ClientChannel | null = null;
    let killed = false;
    const wrapped = this.wrap(command, { become: opts.become });
    const done = this.limit(async () => {
      await this.open();
      const client = this.client!;
      this.trips++;
      this.opts.writes.n++;
      const ended = this.opts.onCommand?.(this.host.name, wrapped.shown);
      return new Promise<{ code: number; signal?: string | null; stderr: string }>((resolve) => {
        client.exec(wrapped.command, (err, stream) => {
          if (err) {
            stdout.destroy(err);
            ended?.(255);
            return resolve({ code: 255, stderr: err.message });
          }
          channel = stream;
          this.channels.add(stream);
          this.commandOf.set(stream, wrapped.shown);
          this.stopper.set(stream, () => {
            this.channels.delete(stream);
            stdout.end();
            resolve({ code: 130, signal: 'INT', stderr: 'stopped (Ctrl-C)' });
          });
          if (killed) stream.close();
          const errOut: Buffer[] = [];
          stream.stderr.on('data', (d: Buffer) => errOut.push(d));
          stream.pipe(stdout);
          stream.on('close', (code: number | null, signal?: string) => {
            this.channels.delete(stream);
            ended?.(code ?? 255);
            resolve({ code: code ?? 255, signal: signal ?? null, stderr: mask(Buffer.concat(errOut).toString('utf8')) });
          });
          void (async () => {
            try {
              if (wrapped.stdinPrefix) stream.write(wrapped.stdinPrefix);
              for (const part of opts.stdin ?? []) {
                if (Buffer.isBuffer(part)) {
                  if (!stream.write(part)) await new Promise((r) => stream.once('drain', r));
                } else {
                  for await (const chunk of part) if (!stream.write(chunk as Buffer)) await new Promise((r) => stream.once('drain', r));
                }
              }
              stream.end();
            } catch {
              stream.close();
            }
          })();
        });
      });
    });
    return {
      stdout,
      done,
      kill: () => {
        killed = true;
        if (channel) {
          try {
            channel.signal('TERM');
          } catch {
            /* ignore */
          }
          channel.close();
        }
      },
    };
  }

  async forward(target: { socketPath: string } | { host: string; port: number }): Promise<import('node:stream').Duplex> {
    return this.limit(async () => {
      await this.open();
      const client = this.client!;
      this.trips++;
      // a tunnel may carry writes (the Docker API's swarm join): probes read before it are stale
      this.opts.writes.n++;
      return new Promise<import('node:stream').Duplex>((resolve, reject) => {
        const done = (err: Error | undefined, stream: ClientChannel) => {
          if (err)
            return reject(
              new Error(
                `${this.host.name}: cannot open a tunnel to ${'socketPath' in target ? target.socketPath : `${target.host}:${target.port}`}: ${err.message}`,
              ),
            );
          this.channels.add(stream);
          stream.on('close', () => this.channels.delete(stream));
          resolve(stream);
        };
        if ('socketPath' in target) client.openssh_forwardOutStreamLocal(target.socketPath, done);
        else client.forwardOut('127.0.0.1', 0, target.host, target.port, done);
      });
    });
  }

  /**
   * SIGINT: stop every command in flight where that is safe, and end its wait at once. apt/dpkg and docker
   * commands are left to finish (unsafeToStop); returns them ("host: kind: command") so that the caller says
   * what it waits for. sshd refuses signal requests on root sessions, so the commands are stopped from the
   * host: TERM to the process group of each command of this connection (the children of its sshd process);
   * an atomic upload's script traps it and removes its temp file, nothing lands at its final path.
   */
  async abortChannels(): Promise<string[]> {
    this.aborted = true;
    const left: string[] = [];
    const stop: ClientChannel[] = [];
    for (const ch of [...this.channels]) {
      const cmd = this.commandOf.get(ch);
      const unsafe = cmd === undefined ? null : unsafeToStop(cmd);
      if (unsafe) {
        left.push(`${this.host.name}: ${unsafe}: ${mask(cmd!.split('\n')[0]!).slice(0, 100)}`);
        continue;
      }
      stop.push(ch);
      this.stopper.get(ch)?.();
    }
    // TERM first, then close the channels: an EOF first would let an upload whose last bytes were already sent
    // land. close() waits for this (the connection must outlive it).
    const closeAll = () => {
      for (const ch of stop) {
        try {
          ch.close();
        } catch {
          /* already closed */
        }
      }
    };
    if (stop.length) {
      const before = this.killing;
      this.killing = (async () => {
        await before;
        await this.killStoppable().catch(() => undefined);
        closeAll();
      })();
    }
    return left;
  }

  /**
   * TERM to the process group of every command of this connection on the host (the children of its sshd
   * process; sshd setsid()s each), but the unsafe ones. One round trip, outside the channel limit.
   */
  private async killStoppable(): Promise<void> {
    const client = this.client;
    if (!client) return;
    const keep = KEEP_ON_HOST.map((re) => sh`-e ${re}`).join(' ');
    const script =
      'c=$(cat /proc/$PPID/task/*/children 2>/dev/null) || c=$(ps -o pid= --ppid $PPID); k=; for p in $c; do ' +
      '[ "$p" = $$ ] && continue; a=$(tr "\\0" " " < /proc/$p/cmdline 2>/dev/null) || continue; ' +
      `printf "%s\\n" "$a" | grep -Eq ${keep} || k="$k -$p"; done; [ -z "$k" ] || kill -TERM -- $k 2>/dev/null; true`;
    await new Promise<void>((resolve) => {
      client.exec(script, (err, stream) => {
        if (err) return resolve();
        stream.resume();
        stream.stderr.resume();
        stream.on('close', () => resolve());
        stream.end();
      });
    });
  }

  async close(): Promise<void> {
    if (this.killing) await Promise.race([this.killing, new Promise((r) => setTimeout(r, 1500).unref())]);
    this.dead ??= new UnreachableError(this.host.name, 'connection closed');
    try {
      this.client?.end();
    } catch {
      /* ignore */
    }
    this.client = null;
  }
}

function withDefaults(opts: ConnectOptions): Opts {
  const o = { ...DEFAULTS, ...opts };
  const stats: HandshakeStats = { inFlight: 0, peak: 0, started: 0 };
  return { ...o, handshakes: pLimit(Math.max(1, o.maxHandshakes ?? defaultMaxHandshakes())), stats, writes: { n: 0 } };
}

export async function connect(host: HostSpec, opts: ConnectOptions = {}): Promise<Connection & { abortChannels(): Promise<string[]> }> {
  const c = new SshConnection(host, withDefaults(opts));
  await c.open();
  return c;
}

/** A pool: one connection per host for the whole run, opened lazily and shared by every step. */
export class ConnectionPool {
  private readonly conns = new Map<string, Promise<Connection & { abortChannels(): Promise<string[]> }>>();
  private readonly opts: Opts;
  constructor(opts: ConnectOptions = {}) {
    this.opts = withDefaults(opts);
  }

  /**
   * Commands sent so far that were not read-only (exec without ExecOptions.readOnly, put, execStream), on every
   * host: while it stays the same, nothing this run did can have changed any host (the runner's probe caches).
   */
  get writes(): number {
    return this.opts.writes.n;
  }

  /** the handshakes of this pool so far (a copy) */
  get handshakes(): HandshakeStats {
    return { ...this.opts.stats };
  }

  get(host: HostSpec): Promise<Connection & { abortChannels(): Promise<string[]> }> {
    let c = this.conns.get(host.name);
    if (!c) {
      const conn = new SshConnection(host, this.opts);
      c = conn.open().then(() => conn);
      c.catch(() => undefined);
      this.conns.set(host.name, c);
    }
    return c;
  }

  totalRoundTrips(): Promise<number> {
    return Promise.all([...this.conns.values()].map((p) => p.then((c) => c.roundTrips).catch(() => 0))).then((a) =>
      a.reduce((x, y) => x + y, 0),
    );
  }

  /** Stop the commands in flight on every host (abortChannels); resolves to those left to finish. */
  async abortAll(): Promise<string[]> {
    const left = await Promise.all([...this.conns.values()].map((p) => p.then((c) => c.abortChannels()).catch(() => [])));
    return left.flat();
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.conns.values()].map((p) => p.then((c) => c.close()).catch(() => undefined)));
    this.conns.clear();
  }
}
