// SSH transport: ONE persistent connection per host for the whole run (node-ssh over ssh2), with
// TCP_NODELAY (Nagle costs ~40 ms per command otherwise; see shared notes), connect timeout, keepalive,
// a bounded number of channels in flight (OpenSSH's MaxSessions defaults to 10), one reconnect on a dropped
// connection, become (sudo), host keys checked against a known_hosts file, atomic uploads.
import { createHash, createHmac } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname } from 'node:path';
import { NodeSSH } from 'node-ssh';
import pLimit from 'p-limit';
import type { ClientChannel } from 'ssh2';
import { PassThrough, type Readable } from 'node:stream';
import { HostKeyError, RemoteCommandError, UnreachableError } from './errors.ts';
import { mask } from './secrets.ts';
import { atomicWriteScript, sh } from './shell.ts';
import type { Connection, ExecOptions, ExecResult, HostSpec } from './types.ts';

export interface ConnectOptions {
  /** known_hosts file; required unless hostKeyCheck is 'off' */
  knownHosts?: string;
  /** accept and record the key of a host seen for the first time */
  acceptNew?: boolean;
  connectTimeoutMs?: number;
  keepaliveMs?: number;
  /** channels in flight per connection (≤ 10: OpenSSH MaxSessions) */
  maxChannels?: number;
  /** called on each round trip (for verbose logs) */
  onCommand?: (host: string, command: string) => void;
}

const DEFAULTS = { connectTimeoutMs: 10_000, keepaliveMs: 5_000, maxChannels: 8 };

// ---------------------------------------------------------------------------------------------
// known_hosts

export interface KnownHostEntry {
  patterns: string[]; // plain host patterns, or one hashed "|1|salt|hash"
  type: string;
  key: string; // base64 blob
  line: number;
}

export function knownHostName(address: string, port: number): string {
  return port === 22 ? address : `[${address}]:${port}`;
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const parts = line.split(/\s+/);
    if (parts[0]?.startsWith('@')) parts.shift(); // @cert-authority / @revoked markers: not supported, ignored
    if (parts.length < 3) return;
    out.push({ patterns: parts[0]!.split(','), type: parts[1]!, key: parts[2]!, line: i + 1 });
  });
  return out;
}

function patternMatches(pattern: string, name: string): boolean {
  if (pattern.startsWith('|1|')) {
    const [, , salt, hash] = pattern.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  if (pattern.includes('*') || pattern.includes('?')) {
    const re = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
    return re.test(name);
  }
  return pattern === name;
}

export function keysForHost(entries: KnownHostEntry[], name: string): KnownHostEntry[] {
  return entries.filter((e) => e.patterns.some((p) => !p.startsWith('!') && patternMatches(p, name)));
}

function keyType(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('ascii');
}

export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** Decide on a presented host key. Returns null when accepted, or the reason for refusal. */
export function verifyHostKey(
  file: string,
  host: HostSpec,
  blob: Buffer,
  acceptNew: boolean,
): { ok: true; recorded?: boolean } | { ok: false; reason: string } {
  const name = knownHostName(host.address, host.port);
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const mine = keysForHost(parseKnownHosts(text), name);
  const b64 = blob.toString('base64');
  if (mine.some((e) => e.key === b64)) return { ok: true };
  if (mine.length > 0) {
    const lines = mine.map((e) => e.line).join(', ');
    return {
      ok: false,
      reason:
        `HOST KEY CHANGED for ${name}: it presented ${keyType(blob)} ${fingerprint(blob)}, which does not match ` +
        `${file} line ${lines}. This can mean a man-in-the-middle attack or a rebuilt host. ` +
        `If the host was rebuilt on purpose, remove line ${lines} of ${file} and reconnect with --accept-new-host-keys.`,
    };
  }
  if (!acceptNew) {
    return {
      ok: false,
      reason:
        `unknown host key for ${name} (${keyType(blob)} ${fingerprint(blob)}), not in ${file}. ` +
        `Verify the fingerprint, then rerun with --accept-new-host-keys to record it.`,
    };
  }
  mkdirSync(dirname(file), { recursive: true });
  appendFileSync(file, `${name} ${keyType(blob)} ${b64}\n`, { mode: 0o600 });
  return { ok: true, recorded: true };
}

// ---------------------------------------------------------------------------------------------
// connection

const CONNECTION_LOST = /Not connected|No response from server|ECONNRESET|EPIPE|socket|Connection lost|channel open failure.*closed|Unable to exec/i;

class SshConnection implements Connection {
  private ssh: NodeSSH | null = null;
  private connecting: Promise<void> | null = null;
  private dropped = false;
  private reconnects = 0;
  private dead: UnreachableError | null = null;
  private readonly limit: ReturnType<typeof pLimit>;
  private readonly channels = new Set<ClientChannel>();
  private trips = 0;

  constructor(
    readonly host: HostSpec,
    private readonly opts: ConnectOptions & typeof DEFAULTS,
  ) {
    this.limit = pLimit(Math.min(Math.max(1, opts.maxChannels), 10));
  }

  get roundTrips(): number {
    return this.trips;
  }

  async open(): Promise<void> {
    if (this.dead) throw this.dead;
    if (this.ssh && !this.dropped) return;
    if (!this.connecting) {
      this.connecting = this.doConnect().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  }

  private async doConnect(): Promise<void> {
    const { host, opts } = this;
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: host.address, port: host.port, noDelay: true });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new UnreachableError(host.name, `connect to ${host.address}:${host.port} timed out after ${opts.connectTimeoutMs} ms`));
      }, opts.connectTimeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (e: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new UnreachableError(host.name, `${host.address}:${host.port}: ${e.code ?? e.message}`));
      });
    });
    let keyRefusal: string | null = null;
    const ssh = new NodeSSH();
    let privateKey: string | undefined;
    if (host.key) {
      try {
        privateKey = readFileSync(host.key, 'utf8');
      } catch (e) {
        sock.destroy();
        throw new UnreachableError(host.name, `cannot read key ${host.key}: ${(e as Error).message}`);
      }
    }
    try {
      await ssh.connect({
        sock,
        host: host.address,
        port: host.port,
        username: host.user,
        privateKey,
        agent: privateKey ? undefined : process.env.SSH_AUTH_SOCK,
        readyTimeout: opts.connectTimeoutMs,
        keepaliveInterval: opts.keepaliveMs,
        keepaliveCountMax: 3,
        hostVerifier: (key: Buffer) => {
          if (!opts.knownHosts) return true;
          const v = verifyHostKey(opts.knownHosts, host, key, !!opts.acceptNew);
          if (!v.ok) keyRefusal = v.reason;
          return v.ok;
        },
      });
    } catch (e) {
      sock.destroy();
      if (keyRefusal) {
        const err = new HostKeyError(host.name, keyRefusal);
        this.dead = new UnreachableError(host.name, keyRefusal);
        throw err;
      }
      throw new UnreachableError(host.name, (e as Error).message);
    }
    const client = ssh.connection!;
    client.on('close', () => {
      this.dropped = true;
    });
    client.on('error', () => {
      this.dropped = true;
    });
    this.ssh = ssh;
    this.dropped = false;
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
      this.ssh?.dispose();
    } catch {
      /* already gone */
    }
    this.ssh = null;
    try {
      await this.open();
    } catch (e) {
      this.dead = e instanceof UnreachableError ? e : new UnreachableError(this.host.name, (e as Error).message);
      throw this.dead;
    }
  }

  wrap(command: string, opts: ExecOptions): { command: string; stdinPrefix?: string } {
    let cmd = opts.cwd ? sh`cd ${opts.cwd} && ` + command : command;
    if (opts.become && this.host.user !== 'root') {
      if (this.host.becomePassword) {
        // sudo reads the password byte by byte up to the newline; the rest of stdin reaches the command.
        return { command: sh`sudo -S -p '' -- bash -c ${cmd}`, stdinPrefix: `${this.host.becomePassword}\n` };
      }
      cmd = sh`sudo -n -- bash -c ${cmd}`;
    }
    return { command: cmd };
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
        return await this.once(wrapped.command, stdin, opts, () => (started = true));
      } catch (e) {
        if (e instanceof RemoteCommandError || e instanceof UnreachableError) throw e;
        const err = e as Error;
        if (!this.dropped && !CONNECTION_LOST.test(err.message)) throw err;
        await this.recover(err);
        // Safe to retry only when the command never started on the host.
        if (started) throw new UnreachableError(this.host.name, `connection dropped while a command was running (${err.message}); reconnected, not retried`);
        return this.once(wrapped.command, stdin, opts, () => undefined);
      }
    });
  }

  private once(command: string, stdin: Buffer | undefined, opts: ExecOptions, onStart: () => void): Promise<ExecResult> {
    const client = this.ssh?.connection;
    if (!client) return Promise.reject(new Error('Not connected'));
    this.trips++;
    this.opts.onCommand?.(this.host.name, command);
    return new Promise<ExecResult>((resolve, reject) => {
      client.exec(command, (err, stream) => {
        if (err) return reject(err);
        onStart();
        this.channels.add(stream);
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
            code: code ?? (timedOut ? 124 : 255),
          };
          if (timedOut) res.stderr += `\n(timed out after ${opts.timeoutMs} ms)`;
          // no exit status and no signal: the session ended under us (sshd or the host died)
          if (code == null && !timedOut && (this.dropped || !signal)) return reject(new Error(`Connection lost (no exit status${signal ? `, signal ${signal}` : ''})`));
          if (res.code !== 0 && !opts.nothrow) {
            return reject(new RemoteCommandError(this.host.name, mask(command), res.code, mask(res.stdout), mask(res.stderr)));
          }
          resolve(res);
        });
        if (stdin) stream.end(stdin);
        else stream.end();
      });
    });
  }

  async put(
    remotePath: string,
    content: string | Buffer,
    o: { mode?: number; owner?: string; group?: string; become?: boolean } = {},
  ): Promise<void> {
    const sha = createHash('sha256').update(content).digest('hex');
    await this.exec(atomicWriteScript(remotePath, { mode: o.mode, owner: o.owner, group: o.group, sha }), { stdin: content, become: o.become });
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
      const client = this.ssh!.connection!;
      this.trips++;
      this.opts.onCommand?.(this.host.name, wrapped.command);
      return new Promise<{ code: number; signal?: string | null; stderr: string }>((resolve) => {
        client.exec(wrapped.command, (err, stream) => {
          if (err) {
            stdout.destroy(err);
            return resolve({ code: 255, stderr: err.message });
          }
          channel = stream;
          this.channels.add(stream);
          if (killed) stream.close();
          const errOut: Buffer[] = [];
          stream.stderr.on('data', (d: Buffer) => errOut.push(d));
          stream.pipe(stdout);
          stream.on('close', (code: number | null, signal?: string) => {
            this.channels.delete(stream);
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
      const client = this.ssh!.connection!;
      this.trips++;
      return new Promise<import('node:stream').Duplex>((resolve, reject) => {
        const done = (err: Error | undefined, stream: ClientChannel) => {
          if (err) return reject(new Error(`${this.host.name}: cannot open a tunnel to ${'socketPath' in target ? target.socketPath : `${target.host}:${target.port}`}: ${err.message}`));
          this.channels.add(stream);
          stream.on('close', () => this.channels.delete(stream));
          resolve(stream);
        };
        if ('socketPath' in target) client.openssh_forwardOutStreamLocal(target.socketPath, done);
        else client.forwardOut('127.0.0.1', 0, target.host, target.port, done);
      });
    });
  }

  /** Close every open channel now (SIGINT): remote commands get EOF/HUP; atomic writes never land half-done. */
  abortChannels(): void {
    for (const ch of this.channels) {
      try {
        ch.close();
      } catch {
        /* ignore */
      }
    }
  }

  async close(): Promise<void> {
    this.dead ??= new UnreachableError(this.host.name, 'connection closed');
    try {
      this.ssh?.dispose();
    } catch {
      /* ignore */
    }
    this.ssh = null;
  }
}

export async function connect(host: HostSpec, opts: ConnectOptions = {}): Promise<Connection & { abortChannels(): void }> {
  const c = new SshConnection(host, { ...DEFAULTS, ...opts } as ConnectOptions & typeof DEFAULTS);
  await c.open();
  return c;
}

/** A pool: one connection per host for the whole run, opened lazily and shared by every step. */
export class ConnectionPool {
  private readonly conns = new Map<string, Promise<Connection & { abortChannels(): void }>>();
  constructor(private readonly opts: ConnectOptions = {}) {}

  get(host: HostSpec): Promise<Connection & { abortChannels(): void }> {
    let c = this.conns.get(host.name);
    if (!c) {
      c = connect(host, this.opts);
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

  abortAll(): void {
    for (const p of this.conns.values()) p.then((c) => c.abortChannels()).catch(() => undefined);
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.conns.values()].map((p) => p.then((c) => c.close()).catch(() => undefined)));
    this.conns.clear();
  }
}
