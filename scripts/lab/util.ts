// Small helpers for the lab: progress output, logged long-running commands, a cross-process lock.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import { pidAlive } from '../../lib/lock.ts';
import { PATHS } from './config.ts';
import { setTimeout as sleep } from 'node:timers/promises';

$.verbose = false;

const t0 = Date.now();
let quiet = false;

/** Silence progress (tests set this when they want terse output). */
export function setQuiet(q: boolean): void {
  quiet = q;
}

export function secondsSince(start: number): string {
  return `${((Date.now() - start) / 1000).toFixed(1)}s`;
}

/** Progress line on stdout: "[lab   12.3s] message". */
export function say(message: string): void {
  if (quiet) return;
  const s = ((Date.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stdout.write(`[lab ${s}s] ${message}\n`);
}

export function ensureDir(dir: string, mode = 0o755): void {
  fs.mkdirSync(dir, { recursive: true, mode });
}

export interface LoggedOptions {
  /** short name: the log goes to .wpfarm/lab/logs/<name>.log */
  name: string;
  /** said every `heartbeatMs` while the command runs, with its last output line */
  what: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  stdin?: 'ignore' | NodeJS.ReadableStream;
  heartbeatMs?: number;
}

/**
 * Run a long command (argv, no shell) with its output in a log file and a heartbeat line every 15 s
 * (no silent minutes). Throws with the log's tail when it fails.
 */
export async function runLogged(argv: string[], opts: LoggedOptions): Promise<void> {
  ensureDir(PATHS.logs);
  const logPath = path.join(PATHS.logs, `${opts.name}.log`);
  const log = fs.createWriteStream(logPath);
  const started = Date.now();
  let last = '';
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('runLogged: empty command');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.stdin && opts.stdin !== 'ignore' ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    if (opts.stdin && opts.stdin !== 'ignore' && child.stdin) opts.stdin.pipe(child.stdin);
    const onData = (chunk: Buffer): void => {
      log.write(chunk);
      const lines = chunk
        .toString('utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
      if (lines.length) last = lines[lines.length - 1] ?? last;
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const beat = setInterval(() => {
      say(`  ... ${opts.what}: ${secondsSince(started)}${last ? ` (${last.slice(0, 100)})` : ''}`);
    }, opts.heartbeatMs ?? 15_000);
    child.on('error', (err) => {
      clearInterval(beat);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearInterval(beat);
      log.end(() => {
        if (code === 0) return resolve();
        const tail = fs.readFileSync(logPath, 'utf8').trim().split('\n').slice(-25).join('\n');
        reject(new Error(`${opts.what} failed (${signal ?? `exit ${code}`}); log ${logPath}:\n${tail}`));
      });
    });
  });
}

/**
 * A lock between processes (several helpers and tests may call ensureDocker/base-image at once):
 * O_EXCL file holding the owner's pid; a lock whose owner is dead is taken over.
 */
export async function withLock<T>(name: string, fn: () => Promise<T>, timeoutMs = 15 * 60_000): Promise<T> {
  ensureDir(PATHS.locks);
  const file = path.join(PATHS.locks, `${name}.lock`);
  const start = Date.now();
  let told = false;
  for (;;) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const owner = Number(fs.readFileSync(file, 'utf8').trim());
      if (!Number.isInteger(owner) || owner <= 0 || !pidAlive(owner) || owner === process.pid) {
        fs.rmSync(file, { force: true });
        continue;
      }
      if (!told) {
        say(`waiting for another wpfarm process (pid ${owner}) holding the ${name} lock`);
        told = true;
      }
      if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for lock ${file} (pid ${owner})`);
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** Poll until fn returns a truthy value or the time is up. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs: number, everyMs = 500): Promise<T> {
  const start = Date.now();
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() - start > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    }
    await sleep(everyMs);
  }
}

/** Run a command; the output when it exits 0, undefined otherwise (never throws on exit codes). */
export async function tryOut(pieces: TemplateStringsArray, ...args: unknown[]): Promise<string | undefined> {
  const p = await $(pieces, ...args)
    .nothrow()
    .quiet();
  return p.exitCode === 0 ? p.stdout : undefined;
}

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function writeJson(file: string, value: unknown): void {
  ensureDir(path.dirname(file));
  fs.writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}
