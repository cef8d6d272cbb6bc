// Where backup commands run. Backups stream binary data (ciphertext) between the host and the object
// store, so besides the engine's Connection.exec (strings) they need a streaming exec:
//   stdin  = secret lines, then optionally a data stream (restore)
//   stdout = a data stream (backup) consumed by the S3 multipart upload while the command runs
// LocalShell runs on this machine (tests, or the controller acting as a host); connectionShell adapts
// an engine Connection (its execStream: one SSH channel per command, stdout streamed while it runs).
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import type { Connection } from '../../lib/types.ts';
import { mask } from '../../lib/secrets.ts';
import { sh } from '../../lib/shell.ts';
import type { HostCommand } from './commands.ts';
import { secretStdin } from './commands.ts';
import { BackupError } from './errors.ts';
import type { ObjectStore, UploadResult } from './s3.ts';

export interface Finished {
  code: number;
  signal?: string | null;
  stderr: string;
}

export interface Running {
  stdout: Readable;
  /** resolves when the command has exited (never rejects; check code) */
  done: Promise<Finished>;
  /** stop the command (SIGTERM on the local process / the remote channel) */
  kill(): void;
}

export interface Shell {
  readonly name: string;
  /** start `script` under bash; stdin gets `stdin` parts in order then EOF */
  stream(script: string, stdin: Array<Buffer | Readable>): Running;
}

export interface RunOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a HostCommand with its secrets (in its declared order) and optional data on stdin. */
export function startHostCommand(shell: Shell, cmd: HostCommand, secrets: Record<string, string>, data?: Buffer | Readable): Running {
  const values = cmd.secrets.map((n) => {
    const v = secrets[n];
    if (v === undefined) throw new Error(`secret ${n} not provided for the command`);
    return v;
  });
  const parts: Array<Buffer | Readable> = [secretStdin(values)];
  if (data) parts.push(data);
  return shell.stream(cmd.script, parts);
}

/**
 * Stream a host command's stdout into the store at `key` (every backup that uploads: site database, cluster,
 * configuration). An upload failure stops the command; a command that exits non-zero has its object removed.
 * Either throws BackupError (`upload`: "<upload> to <key> failed", `exit.stage`: "<exit.what> exited <code>")
 * and leaves earlier backups untouched.
 */
export async function uploadHostOutput(o: {
  shell: Shell;
  store: ObjectStore;
  key: string;
  cmd: HostCommand;
  secrets?: Record<string, string>;
  upload: string;
  exit: { stage: string; what: string };
}): Promise<UploadResult> {
  const run = startHostCommand(o.shell, o.cmd, o.secrets ?? {});
  let up: UploadResult;
  try {
    up = await o.store.putStream(o.key, run.stdout);
  } catch (e) {
    run.kill();
    await run.done;
    throw new BackupError('upload', `${o.upload} to ${o.key} failed; earlier backups are untouched: ${(e as Error).message}`, { cause: e });
  }
  const fin = await run.done;
  if (fin.code !== 0) {
    await o.store.deleteKeys([o.key]).catch(() => undefined);
    throw new BackupError(o.exit.stage, `${o.exit.what} exited ${fin.code}: ${stderrTail(fin.stderr)}`);
  }
  return up;
}

/** Run to completion and collect stdout as text (for small outputs: JSON, checksums). */
export async function runHostCommand(
  shell: Shell,
  cmd: HostCommand,
  secrets: Record<string, string>,
  data?: Buffer | Readable,
): Promise<RunOutput> {
  const r = startHostCommand(shell, cmd, secrets, data);
  const chunks: Buffer[] = [];
  r.stdout.on('data', (c: Buffer) => chunks.push(c));
  const fin = await r.done;
  await new Promise<void>((res) => (r.stdout.readableEnded || r.stdout.destroyed ? res() : r.stdout.once('close', () => res())));
  return { code: fin.code, stdout: Buffer.concat(chunks).toString('utf8'), stderr: fin.stderr };
}

/** Last lines of stderr with every registered secret masked: safe to put in an error message. */
export function stderrTail(s: string, lines = 8): string {
  return mask(s.trim().split('\n').slice(-lines).join('\n'));
}

async function feed(target: NodeJS.WritableStream & { destroyed?: boolean }, parts: Array<Buffer | Readable>): Promise<void> {
  for (const p of parts) {
    if (Buffer.isBuffer(p)) {
      if (!target.write(p)) await new Promise((r) => target.once('drain', r));
    } else {
      for await (const chunk of p) {
        if (target.destroyed) return;
        if (!target.write(chunk as Buffer)) await new Promise((r) => target.once('drain', r));
      }
    }
  }
  target.end();
}

/** Commands run by bash on this machine. */
export class LocalShell implements Shell {
  readonly name: string;
  constructor(
    name = 'localhost',
    private readonly env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: process.env.HOME ?? '/root',
      LANG: 'C.UTF-8',
    },
  ) {
    this.name = name;
  }

  stream(script: string, stdin: Array<Buffer | Readable>): Running {
    // a clean environment: the controller's credentials are not inherited by the command
    // own process group, so kill() reaches the whole pipeline (dump | gzip | age), not just bash
    const child = spawn('bash', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'], env: this.env, detached: true });
    const err: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdin.on('error', () => undefined); // EPIPE when the command exits early: reported by its exit code
    void feed(child.stdin, stdin).catch(() => child.stdin.destroy());
    const done = new Promise<Finished>((resolve) => {
      child.once('error', (e) => resolve({ code: 127, stderr: String(e) }));
      child.once('close', (code, signal) => resolve({ code: code ?? 128, signal, stderr: Buffer.concat(err).toString('utf8') }));
    });
    const kill = () => {
      if (!child.pid) return;
      try {
        process.kill(-child.pid, 'SIGTERM'); // the group outlives bash when a pipeline member hangs
      } catch {
        // group already gone
      }
      child.stdout.destroy();
    };
    return { stdout: child.stdout, done, kill };
  }
}

/** What an engine Connection must offer for streaming (proposed to the lead; not in lib/types.ts yet). */
export interface StreamingConnection extends Connection {
  execStream(command: string, opts?: { stdin?: Array<Buffer | Readable>; become?: boolean }): Running;
}

/** A Shell over an engine Connection (needs execStream; plain exec is string-only). */
export function connectionShell(conn: Connection): Shell {
  const sc = conn as Partial<StreamingConnection>;
  return {
    name: conn.host.name,
    stream(script, stdin) {
      if (typeof sc.execStream !== 'function') {
        throw new Error(`${conn.host.name}: the transport offers no execStream; backups need streamed stdout (see docs/backups.md)`);
      }
      // bash explicitly: the scripts use pipefail and process substitution, whatever the login shell is.
      // The script carries no secret (they come on stdin), so it may be on the command line.
      return sc.execStream.call(conn, sh`bash -c ${script}`, { stdin, become: true });
    },
  };
}

export { Readable };
