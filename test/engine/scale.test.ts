// The engine at scale on real OpenSSH sshd hosts: more hosts in parallel (--forks) than handshakes allowed in
// flight, with a connect timeout far shorter than the whole queue takes: every host still connects, because a
// host's timeout counts from the start of its own handshake, not while it waits for a turn.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { command } from '../../lib/ops/command.ts';
import { file } from '../../lib/ops/files.ts';
import { EventStream } from '../../lib/events.ts';
import { runRole } from '../../lib/runner.ts';
import { ConnectionPool, connect } from '../../lib/transport.ts';
import type { Role } from '../../lib/types.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

const N = 60;
let lab: SshdLab;

before(async () => {
  lab = await startSshdHosts(N, { prefix: 's' });
});
after(async () => {
  await lab?.stop();
});

test(`${N} hosts at --forks ${N} through 1 handshake in flight: all connect, none times out while queued`, async () => {
  // One handshake alone, the slowest of 3, sets the scale: the timeout is 8 of those, the queue is N of them.
  let one = 0;
  for (const h of lab.hosts.slice(0, 3)) {
    const t = performance.now();
    const c = await connect(h.spec, { knownHosts: lab.knownHosts });
    one = Math.max(one, performance.now() - t);
    await c.close();
  }
  const timeoutMs = Math.max(250, Math.round(8 * one));
  const role: Role = {
    name: 'scale',
    hosts: 'all',
    steps: () => [file({ path: '/srv/scale-marker', content: 'ok\n', mode: '0644' }), command({ cmd: ['true'] })],
  };
  const pool = new ConnectionPool({ knownHosts: lab.knownHosts, maxHandshakes: 1, connectTimeoutMs: timeoutMs });
  const started = performance.now();
  try {
    const res = await runRole(
      role,
      lab.hosts.map((h) => h.spec),
      {
        pool,
        events: new EventStream(),
        options: { check: false, diff: false, forks: N, verbose: 0 },
        allHosts: new Map(lab.hosts.map((h) => [h.name, h.spec])),
        select: () => lab.hosts.map((h) => h.spec),
        signal: { interrupted: false },
        hostState: new Map(),
      },
    );
    const wall = performance.now() - started;
    const bad = res.hosts.filter((h) => h.status !== 'ok').map((h) => `${h.host}: ${h.status} ${h.error ?? ''}`);
    assert.deepEqual(bad, [], 'every host ok');
    assert.equal(res.results.filter((r) => r.status === 'changed').length, 2 * N, 'both steps changed on every host');
    // the proof: the last hosts waited longer than the timeout for their turn, and still connected
    assert.ok(wall > 2 * timeoutMs, `the run (${Math.round(wall)} ms) outlasted the connect timeout (${timeoutMs} ms) at least twice`);
    console.log(
      `# one handshake ${Math.round(one)} ms, timeout ${timeoutMs} ms, ${N} hosts through 1 handshake at a time: ${Math.round(wall)} ms`,
    );
  } finally {
    await pool.closeAll();
  }
});

test('50 hosts at --forks 50 with 8 handshakes in flight: all clean, never more than 8 handshakes at once (the event stream)', async () => {
  const hosts = lab.hosts.slice(0, 50).map((h) => h.spec);
  const LIMIT = 8;
  const events = new EventStream();
  // counted from the stream's start/end pairs themselves, not from the inFlight field the transport writes in them
  let now = 0;
  let peak = 0;
  let starts = 0;
  let ends = 0;
  let reported = 0;
  const open = new Set<string>();
  events.on((e) => {
    if (e.kind === 'handshake.start') {
      assert.ok(!open.has(e.host), `one handshake at a time per host (${e.host})`);
      open.add(e.host);
      starts++;
      peak = Math.max(peak, ++now);
      reported = Math.max(reported, e.inFlight);
    } else if (e.kind === 'handshake.end') {
      assert.ok(open.delete(e.host), `a handshake ends after it started (${e.host})`);
      ends++;
      now--;
    }
  });
  const pool = new ConnectionPool({
    knownHosts: lab.knownHosts,
    maxHandshakes: LIMIT,
    connectTimeoutMs: 10_000,
    onHandshake: (h, n) => events.handshake(h, n),
  });
  const role: Role = {
    name: 'scale-limit',
    hosts: 'all',
    steps: () => [file({ path: '/srv/scale-limit', content: 'ok\n', mode: '0644' }), command({ cmd: ['true'] })],
  };
  const started = performance.now();
  try {
    const res = await runRole(role, hosts, {
      pool,
      events,
      options: { check: false, diff: false, forks: 50, verbose: 0 },
      allHosts: new Map(hosts.map((h) => [h.name, h])),
      select: () => hosts,
      signal: { interrupted: false },
      hostState: new Map(),
    });
    const bad = res.hosts.filter((h) => h.status !== 'ok').map((h) => `${h.host}: ${h.status} ${h.error ?? ''}`);
    assert.deepEqual(bad, [], 'every host ok');
    assert.equal(res.results.filter((r) => r.status === 'changed').length, 2 * hosts.length, 'both steps changed on every host');
    assert.equal(starts, 50, 'one handshake per host');
    assert.equal(ends, 50, 'every handshake ended');
    assert.ok(peak <= LIMIT, `never more than ${LIMIT} handshakes in flight (the stream shows ${peak})`);
    assert.ok(peak > 1, `with 50 hosts asking at once, handshakes ran in parallel (peak ${peak})`);
    assert.equal(reported, peak, "the transport's own count agrees with the stream's");
    assert.deepEqual(pool.handshakes, { inFlight: 0, peak, started: 50 }, "the pool's counter agrees");
    console.log(`# 50 hosts, -f 50, ${LIMIT} handshakes: peak ${peak} in flight, ${Math.round(performance.now() - started)} ms`);
  } finally {
    await pool.closeAll();
  }
});
