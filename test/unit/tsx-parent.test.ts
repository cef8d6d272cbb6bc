// lib/tsx-parent.ts: under `npx tsx`, a worker thread acknowledges SIGINT to tsx's CLI while our main thread is
// busy, and only then (tsx SIGKILLs a child that does not acknowledge within 30 ms, twice). A socket server of
// the test's own stands in for tsx's IPC server: same framing (4-byte big-endian length + JSON).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { type Server, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { guardAgainstTsxParent } from '../../lib/tsx-parent.ts';

let dir = '';
let server: Server;
let pipe = '';
const received: { at: number; msg: { type?: string; signal?: string } }[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wpfarm-tsx-parent-'));
  pipe = join(dir, '1.pipe');
  server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readInt32BE(0)) {
        const n = buf.readInt32BE(0);
        received.push({ at: performance.now(), msg: JSON.parse(buf.subarray(4, 4 + n).toString()) });
        buf = buf.subarray(4 + n);
      }
    });
  });
  await new Promise<void>((r) => server.listen(pipe, r));
});
after(() => {
  server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Keep this thread busy (as hashing a large upload does) for `ms`. */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* spin */
  }
}

test('SIGINT acknowledged for a busy main thread within the 60 ms tsx waits before SIGKILL', async () => {
  const stop = guardAgainstTsxParent(pipe);
  try {
    await sleep(300); // the worker starts and connects; the main thread is idle
    // an idle main thread acknowledges for itself (tsx's preload) and the worker stays quiet (a spare frame would
    // be harmless: tsx drops an acknowledgement when it is not waiting for one)
    const idle = received.length;
    // tsx waits 30 ms, relays, waits 30 ms more, then SIGKILLs: an acknowledgement must come within 60 ms
    busy(60);
    await sleep(50); // the server (on this thread) reads what the worker sent while we spun
    assert.ok(received.length >= 1, 'acknowledged within 60 ms of the main thread going busy');
    busy(200);
    await sleep(50);
    const acks = received.filter((r) => r.msg.type === 'signal');
    assert.ok(acks.length >= 5, `acknowledgements while busy: ${acks.length}`);
    for (const a of acks) assert.deepEqual(a.msg, { type: 'signal', signal: 'SIGINT' });
    // idle again: no more frames
    const n = received.length;
    await sleep(200);
    console.log(`busy 200 ms: ${acks.length} frames; idle 200 ms after: ${received.length - n}; idle first 300 ms: ${idle}`);
    // not asserted: how quiet the worker is while we are idle (0 frames on a quiet machine; at a load average of 40
    // on 2 cores this thread's own 10 ms timer is late by more than 20 ms too, and the worker acknowledges then)
  } finally {
    stop();
  }
});

test('not under tsx (no socket for our parent): nothing is started', () => {
  const stop = guardAgainstTsxParent(null);
  assert.equal(typeof stop, 'function');
  stop();
});
