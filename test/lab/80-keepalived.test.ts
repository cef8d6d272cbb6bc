// Lab tier: edge failover with keepalived (roles/keepalived) on the edge nodes mgr1-3.
//  - converge: check mode on the lab predicts the first run's changes; the run; rerun and --check → 0 changes
//  - exactly one edge node holds the virtual IP (labAddress(250) on the lab network) and answers on it
//  - a request loop from the controller (the lab bridge's gateway) to the VIP, every 100 ms, while the
//    master is killed (scripts/lab.ts kill): the VIP moves to another node; the loop's gap is measured
//  - the killed node returns (scripts/lab.ts start): with nopreempt (the default) the VIP stays where it is
//  - the health check: the master's edge listener stops → the VIP moves within seconds
//  - the state metric (wpfarm_keepalived_state, written by the notify script) follows: master on the new holder, fault on an
//    unhealthy node
// The edge listener here is a stand-in of the test's own on port 80 of each edge node (a transient
// systemd unit answering its host name): Traefik cannot run on this machine (see 70-edge-security).
// Runnable alone when the (test) lab is up: flock /run/wpfarm-lab.lock node --import tsx --test test/lab/80-keepalived.test.ts
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { ROOT, assertLabUp, changesOf, cli as labCli, labAddress, removeEdgeStandin, ssh, type Report } from '../harness/lab-sites.ts';

const run = promisify(execFile);
const EDGE = ['mgr1', 'mgr2', 'mgr3'];
const VIP = labAddress(250);
const PORT = 80; // the edge firewall (roles/common) opens 80/443 on the edge nodes: the controller reaches it
const VARS = ['-e', `keepalived_vip=${VIP}/24`, '-e', `keepalived_check_url=http://127.0.0.1:${PORT}/`, '-e', 'keepalived_advert_int=0.1'];
let work = '';
const role = (...args: string[]) => labCli(work, 'playbooks/run-role.ts', ['keepalived', ...VARS, ...args], 15 * 60_000);

/** the stand-in edge listener: answers GET with the node's name */
const LISTENER =
  `systemctl stop wpfarm-test-edge 2>/dev/null; systemctl reset-failed wpfarm-test-edge 2>/dev/null; ` +
  `systemd-run --unit wpfarm-test-edge python3 -c "import http.server,socket
class H(http.server.BaseHTTPRequestHandler):
  def do_GET(s):
    b=socket.gethostname().encode(); s.send_response(200); s.send_header('Content-Length',str(len(b))); s.end_headers(); s.wfile.write(b)
  def log_message(s,*a): pass
http.server.ThreadingHTTPServer(('0.0.0.0',${PORT}),H).serve_forever()" >/dev/null`;

async function holders(nodes = EDGE): Promise<string[]> {
  const out = await Promise.all(
    nodes.map(async (n) => ((await ssh(n, `ip -4 -o addr show | grep -c ' ${VIP}/' || true`, { nothrow: true })) === '1' ? n : '')),
  );
  return out.filter(Boolean);
}

async function viaVip(): Promise<string> {
  try {
    return (await run('curl', ['-sS', '-m', '1', `http://${VIP}:${PORT}/`])).stdout.trim();
  } catch {
    return '';
  }
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** The VRRP state the notify script's metrics mark 1 on a node (node-exporter's textfile collector reads the file). */
async function metricState(node: string): Promise<string> {
  const text = await ssh(node, 'cat /var/lib/prometheus/node-exporter/wpfarm_keepalived.prom', { nothrow: true });
  const on = [...text.matchAll(/^wpfarm_keepalived_state\{vrrp_instance="WPFARM_EDGE",state="([a-z]+)"\} 1$/gm)].map((m) => m[1]);
  return on.length === 1 ? on[0]! : `none or several in: ${text}`;
}

async function lab(cmd: 'kill' | 'start', node: string): Promise<void> {
  await run(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', cmd, node], { cwd: ROOT, timeout: 180_000 });
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-ka-'));
  await assertLabUp(EDGE);
  // the lab's edge stand-in holds port 80 of the edge nodes since add-site deploys it: this file's listener takes it
  await removeEdgeStandin(EDGE);
  await Promise.all(EDGE.map((n) => ssh(n, LISTENER)));
});

after(async () => {
  for (const n of EDGE) await ssh(n, 'systemctl stop wpfarm-test-edge', { nothrow: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

const changedSteps = (r: Report | undefined) =>
  (r?.results ?? [])
    .filter((x) => x.status === 'changed')
    .map((x) => `${x.host} ${x.step}`)
    .sort();

test('converge: check mode predicts the run, rerun and check → 0 changes', { timeout: 20 * 60_000 }, async (t) => {
  const predicted = await role('--check');
  assert.equal(predicted.code, 0, predicted.out.slice(-3000));
  const first = await role();
  assert.equal(first.code, 0, first.out.slice(-3000));
  // handlers run only in the real run (a reload after a changed config); the rest must match exactly
  const real = changedSteps(first.report).filter((s) => !/systemd keepalived.*reload|reloaded/.test(s));
  assert.deepEqual(
    changedSteps(predicted.report).filter((s) => !/reload/.test(s)),
    real,
    'check mode predicted the run',
  );
  t.diagnostic(`first run: ${real.length} changed steps (${first.report?.roundTrips} round trips)`);
  const again = await role();
  assert.equal(again.code, 0, again.out.slice(-3000));
  assert.deepEqual(changesOf(again.report), [], 'rerun: 0 changes');
  const check = await role('--check');
  assert.equal(check.code, 0);
  assert.deepEqual(changesOf(check.report), [], 'check on the converged lab: 0 changes');
  for (const n of EDGE) assert.equal(await ssh(n, 'systemctl is-active keepalived'), 'active', `${n}: keepalived active`);
});

test('failover: kill the master, the VIP moves, the gap is measured; the node returns and the VIP stays (nopreempt)', {
  timeout: 10 * 60_000,
}, async (t) => {
  const master = await waitFor(
    'one VIP holder',
    async () => {
      const h = await holders();
      return h.length === 1 ? h[0] : undefined;
    },
    30_000,
  );
  assert.equal(await viaVip(), master, 'the VIP answers from its holder');
  // the loop: every 100 ms, curl -m 0.3, from the controller on the lab bridge
  const samples: { at: number; who: string }[] = [];
  let stop = false;
  const loop = (async () => {
    const end = Date.now() + 60_000;
    while (!stop && Date.now() < end) {
      const at = Date.now();
      const who = await run('curl', ['-sS', '-m', '0.3', `http://${VIP}:${PORT}/`]).then(
        (r) => r.stdout.trim(),
        () => '',
      );
      samples.push({ at, who });
      await sleep(Math.max(0, 100 - (Date.now() - at)));
    }
  })();
  await sleep(1500);
  const killedAt = Date.now();
  await lab('kill', master);
  const newMaster = await waitFor(
    'the VIP on another node',
    async () => {
      const w = await viaVip();
      return w && w !== master ? w : undefined;
    },
    30_000,
  );
  await sleep(2000);
  stop = true;
  await loop;
  const before = samples.filter((s) => s.at < killedAt && s.who === master);
  const firstNew = samples.find((s) => s.at >= killedAt && s.who === newMaster);
  assert.ok(before.length > 5 && firstNew, 'the loop saw the old and the new master');
  const lastOld = before[before.length - 1]!;
  const gap = (firstNew.at - lastOld.at) / 1000;
  const failed = samples.filter((s) => s.at > lastOld.at && s.at < firstNew.at).length;
  t.diagnostic(
    `VIP ${VIP}: ${master} killed, ${newMaster} answers; gap ${gap.toFixed(2)} s (${failed} failed polls of ${samples.length}; kill took ${((Date.now() - killedAt) / 1000).toFixed(1)} s to settle)`,
  );
  assert.ok(EDGE.includes(newMaster) && newMaster !== master);
  assert.deepEqual(await holders(EDGE.filter((n) => n !== master)), [newMaster], 'exactly one holder among the live nodes');
  assert.equal(await metricState(newMaster), 'master', `the state metric of ${newMaster} flipped to master`);
  for (const n of EDGE.filter((x) => x !== master && x !== newMaster)) assert.equal(await metricState(n), 'backup', n);
  assert.ok(gap < 3, `gap ${gap.toFixed(2)} s (aim: under 3 s)`);
  // the node returns: keepalived starts with it (enabled); its edge listener is back too
  await lab('start', master);
  await ssh(master, LISTENER);
  await waitFor(
    `keepalived active on ${master}`,
    async () => ((await ssh(master, 'systemctl is-active keepalived', { nothrow: true })) === 'active' ? true : undefined),
    60_000,
  );
  await sleep(5000);
  assert.deepEqual(await holders(), [newMaster], `nopreempt: the VIP stays on ${newMaster} after ${master} returned`);
  assert.equal(await viaVip(), newMaster);
  t.diagnostic(`${master} back: VIP stays on ${newMaster} (nopreempt)`);
});

test('health check: the master edge listener stops → the VIP moves; the notify script recorded the states', {
  timeout: 5 * 60_000,
}, async (t) => {
  const master = (await holders())[0]!;
  assert.ok(master);
  const t0 = Date.now();
  await ssh(master, 'systemctl stop wpfarm-test-edge');
  const moved = await waitFor(
    'the VIP away from the unhealthy node',
    async () => {
      const h = await holders();
      return h.length === 1 && h[0] !== master ? h[0] : undefined;
    },
    30_000,
  );
  t.diagnostic(`listener stopped on ${master}: VIP on ${moved} after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.match(await ssh(master, 'cat /var/lib/wpfarm/keepalived.state'), /^FAULT [0-9]+$/, 'the notify script recorded FAULT');
  assert.match(await ssh(moved, 'cat /var/lib/wpfarm/keepalived.state'), /^MASTER [0-9]+$/, 'and MASTER on the new holder');
  assert.deepEqual([await metricState(master), await metricState(moved)], ['fault', 'master'], 'the state metrics flipped');
  await ssh(master, LISTENER);
  await sleep(4000);
  assert.deepEqual(await holders(), [moved], 'healthy again, the node does not take the VIP back (nopreempt)');
});
