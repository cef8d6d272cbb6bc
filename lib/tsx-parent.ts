// Ctrl-C under `npx tsx` / `tsx`: tsx's CLI process is our parent and owns a kill switch over us.
//
// tsx 4.x relays each SIGINT/SIGTERM it gets to its child and SIGKILLs the child unless the child acknowledges
// the signal on tsx's IPC socket ($TMPDIR/tsx-<uid>/<parent pid>.pipe; a 4-byte length + JSON
// {type:'signal', signal}) within 30 ms, twice (before and after relaying). tsx's preload in the child sends
// that acknowledgement from a signal handler, i.e. on the main thread's event loop. A terminal's Ctrl-C reaches
// every process of the group at once, while our main thread may be busy for longer than 60 ms (hashing a large
// upload, ssh2 encrypting it, a GC pause on a loaded machine): the run was then SIGKILLed before its own SIGINT
// handler ran, with no recap, and the remote commands in flight survived on the hosts (sshd does not signal the
// commands of a session without a tty when the connection drops).
//
// So, when our parent is tsx's CLI: a worker thread acknowledges SIGINT for us while the main thread is busy
// (it has not ticked for STALE_MS); the main thread's handler runs as soon as the loop is free. The terminal's
// Ctrl-C has reached us directly (same process group); tsx's relay would only have been a second copy of it.
// Under `node --import tsx`, the fast CLI or make there is no such socket and nothing is started.
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';

/** The main thread ticks this often; the worker acknowledges for it once it has not ticked for STALE_MS. */
const TICK_MS = 10;
const STALE_MS = 20;

/** tsx's IPC socket when our parent is tsx's CLI, else null */
export function tsxParentPipe(): string | null {
  const pipe = join(tmpdir(), `tsx-${process.geteuid?.() ?? userInfo().username}`, `${process.ppid}.pipe`);
  return existsSync(pipe) ? pipe : null;
}

function ackFrame(): Buffer {
  const body = Buffer.from(JSON.stringify({ type: 'signal', signal: 'SIGINT' }));
  const frame = Buffer.concat([Buffer.alloc(4), body]);
  frame.writeInt32BE(body.length, 0);
  return frame;
}

/**
 * After a Ctrl-C, from the main thread: acknowledge every 5 ms for 0.4 s. tsx keeps one pending wait, and a
 * Ctrl-C reaches it more than once (the terminal, npm's relay): one acknowledgement per signal can be lost.
 */
export function ackTsxParent(): void {
  const pipe = tsxParentPipe();
  if (!pipe) return;
  const frame = ackFrame();
  const sock = createConnection(pipe);
  sock.on('error', () => undefined);
  sock.unref();
  const timer = setInterval(() => sock.writable && sock.write(frame), 5);
  timer.unref();
  setTimeout(() => {
    clearInterval(timer);
    sock.destroy();
  }, 400).unref();
}

// Plain JavaScript run by the worker (eval: no loader, no TypeScript; the fast CLI bundles it as a string).
const WORKER = `
const { workerData } = require('node:worker_threads');
const { createConnection } = require('node:net');
const beat = new Int32Array(workerData.beat);
const frame = Buffer.from(workerData.frame);
const sock = createConnection(workerData.pipe);
let seen = Atomics.load(beat, 0);
let since = Date.now();
const timer = setInterval(() => {
  const b = Atomics.load(beat, 0);
  if (b !== seen) { seen = b; since = Date.now(); return; }
  if (Date.now() - since > workerData.staleMs && sock.writable) sock.write(frame);
}, 5);
sock.on('error', () => clearInterval(timer));
`;

/**
 * Start the worker that acknowledges SIGINT to tsx's CLI while our main thread is busy (see the top of this
 * file). Returns the function that stops it; a no-op when our parent is not tsx's CLI. `pipe`: for tests.
 */
export function guardAgainstTsxParent(pipe = tsxParentPipe()): () => void {
  if (!pipe) return () => undefined;
  const beat = new Int32Array(new SharedArrayBuffer(4));
  const tick = setInterval(() => Atomics.add(beat, 0, 1), TICK_MS);
  tick.unref();
  // execArgv []: not tsx's preload and loader again (the worker is plain JavaScript)
  const worker = new Worker(WORKER, {
    eval: true,
    execArgv: [],
    workerData: { beat: beat.buffer, frame: ackFrame(), pipe, staleMs: STALE_MS },
  });
  worker.on('error', () => undefined);
  worker.unref();
  return () => {
    clearInterval(tick);
    void worker.terminate();
  };
}
