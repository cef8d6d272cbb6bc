// Lab tier, issue 16's lab proofs, kept short (~2 min):
// Deploy lock + audit log: real concurrent runs of playbooks/run-role.ts with test/fixtures/roles/hold.ts on two
//   workers. The hold role's one step waits on each host until the test creates its gate file: a real mutating run
//   that holds the farm-wide lock (on the managers, settings.lock_group's default) for as long as the test needs.
//   A second run refuses naming holder and start; a --check run takes no lock; --wait-lock waits, then runs;
//   kill -9 of a holder leaves a stale lock that the next run takes over (docs/operations-run.md); audit.ts reads
//   every run back from the managers.
// Drift: the drift check runs on the controller (it needs this checkout, the inventory and the SSH key); this
//   machine has no systemd, so a throwaway systemd container on the lab network is the controller: this checkout
//   and this machine's node bind-mounted. `drift.ts --install-timer --period 30` installs the real units there and
//   the real timer fires the check (common, on VICTIM); node-exporter on VICTIM serves the metric (and Prometheus
//   on mon1 scrapes it when the monitoring role ran: test/lab/75-monitoring.test.ts).
//
// Needs: the lab up with phase 1 (00-lab, 20-cluster). node-exporter on VICTIM: installed here by the monitoring
// role limited to VICTIM when 75 did not run before.
// first: it selects the test lab's profile before anything loads scripts/lab/config.ts
import { ADDR, INVENTORY, ROOT, assertLabUp, run, ssh } from '../harness/lab-sites.ts';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { IMAGES, LABEL, LABEL_VALUE, NETWORK, STATE_DIR, containerName } from '../../scripts/lab/config.ts';
import { systemdFlags } from '../../scripts/lab/nodes.ts';

const HOLD = 'test/fixtures/roles/hold.ts';
const TARGETS = ['wrk1', 'wrk2'];
const MANAGERS = ['mgr1', 'mgr2', 'mgr3'];
const LOCK = '/var/lib/wpfarm/deploy.lock';
const VICTIM = 'wrk1';
// longer than one check takes here under load (a check still running when the period ends delays the next one)
const PERIOD = 30;
// a container of the test lab's own (its name prefix and label: lab-down of this profile removes it, never the user's)
const CTL = containerName('test-controller');
const TAG = `t${process.pid}`;
const STARTED = new Date();
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const t = () => new Date().toISOString().slice(11, 19);

interface Out {
  code: number;
  stdout: string;
  stderr: string;
  pid: number;
  ms: number;
  endedAt: number;
}

/** runs still going (a failed assertion leaves a holder waiting on its gate): after() interrupts them */
const running = new Map<number, Promise<Out>>();

function node(args: string[], o: { onStdout?: (t: string) => void; onSpawn?: (pid: number) => void } = {}): Promise<Out> {
  const t0 = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: ROOT,
    env: { ...process.env, CI: 'true' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p = new Promise<Out>((resolve) => {
    o.onSpawn?.(child.pid!);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      o.onStdout?.(stdout);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), 5 * 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      running.delete(child.pid!);
      resolve({ code: code ?? -1, stdout, stderr, pid: child.pid!, ms: Date.now() - t0, endedAt: Date.now() });
    });
  });
  running.set(child.pid!, p);
  return p;
}

/** The hold role on the two workers, gate `gate`. */
const hold = (gate: string, ...extra: string[]) => [
  'playbooks/run-role.ts',
  HOLD,
  '--inventory',
  INVENTORY,
  '--limit',
  TARGETS.join(','),
  '-e',
  `gate=${TAG}-${gate}`,
  ...extra,
];
const openGate = (gate: string) => Promise.all(TARGETS.map((h) => ssh(h, `touch /srv/hold-${TAG}-${gate}`)));
const lockOn = (m: string) => ssh(m, `cat ${LOCK} 2>/dev/null || echo free`);

/** A mutating run that holds the lock until its gate opens; resolves once its role started (it holds the lock). */
async function holder(gate: string): Promise<{ done: Promise<Out>; pid: number; acquireMs: number }> {
  let started: () => void = () => undefined;
  const roleStarted = new Promise<void>((r) => (started = r));
  let pid = 0;
  const t0 = Date.now();
  const done = node(hold(gate), { onSpawn: (p) => (pid = p), onStdout: (s) => s.includes('ROLE hold') && started() });
  await Promise.race([roleStarted, done.then((o) => assert.fail(`holder ended early (${o.code}): ${o.stdout}${o.stderr}`))]);
  return { done, pid, acquireMs: Date.now() - t0 };
}

const docker = (...args: string[]) => run('docker', args, { timeout: 120_000, maxBuffer: 16 << 20 }).then((r) => r.stdout.trim());
const inCtl = (...cmd: string[]) => docker('exec', '-w', ROOT, CTL, ...cmd);

interface Drift {
  changes: number;
  success: number;
  ts: number;
}
/** VICTIM's drift metrics as node-exporter serves them (textfile collector), or null before the first check. */
async function driftMetric(): Promise<Drift | null> {
  const out = await ssh(VICTIM, `curl -sf http://${ADDR[VICTIM]}:9100/metrics | grep '^wpfarm_' || true`);
  const val = (name: string, labels: RegExp) =>
    out
      .split('\n')
      .map((l) => /^(\w+)\{([^}]*)\} (\S+)$/.exec(l))
      .find((m) => m?.[1] === name && labels.test(m[2]!))?.[3];
  const changes = val('wpfarm_drift_changes', new RegExp(`(?=.*host="${VICTIM}")(?=.*role="common")`));
  const success = val('wpfarm_drift_check_success', new RegExp(`host="${VICTIM}"`));
  const ts = val('wpfarm_last_run_timestamp', new RegExp(`host="${VICTIM}"`));
  return changes === undefined || ts === undefined ? null : { changes: Number(changes), success: Number(success), ts: Number(ts) };
}
/** Poll node-exporter every second until a check newer than `afterSec` is served. */
async function nextDrift(afterSec: number, timeoutSec: number): Promise<Drift & { seenAt: number }> {
  const deadline = Date.now() + timeoutSec * 1000;
  for (;;) {
    const m = await driftMetric();
    if (m && m.ts > afterSec) return { ...m, seenAt: Date.now() / 1000 };
    if (Date.now() > deadline) assert.fail(`no drift check newer than ${afterSec} within ${timeoutSec} s (last: ${JSON.stringify(m)})`);
    await sleep(1000);
  }
}

/** When systemd started wpfarm-drift.service on the controller (epoch seconds, from its journal). */
async function firings(): Promise<number[]> {
  const out = await inCtl('journalctl', '-u', 'wpfarm-drift.service', '-o', 'short-unix', '--no-pager');
  return out
    .split('\n')
    .filter((l) => / systemd\[1\]: Starting (wpfarm-drift\.service|wpfarm drift check)/.test(l))
    .map((l) => Number(l.split(' ')[0]));
}

let timerInstalledAt = 0;

before(async () => {
  await assertLabUp([...MANAGERS, ...TARGETS]);
  // node-exporter on VICTIM (the monitoring role, as 75 converges it; here limited to VICTIM when missing)
  const ne = await ssh(VICTIM, 'systemctl is-active prometheus-node-exporter', { nothrow: true });
  if (ne !== 'active') {
    const r = await node(['playbooks/run-role.ts', 'monitoring', '--inventory', INVENTORY, '--limit', VICTIM]);
    assert.equal(r.code, 0, `monitoring --limit ${VICTIM}:\n${r.stdout.slice(-3000)}${r.stderr}`);
  }
  // the controller: systemd as PID 1, this checkout at the same path, this machine's node
  await docker('rm', '-f', CTL).catch(() => '');
  // node_modules and the lab's keys may be symlinks out of this checkout (a worktree): their targets too
  const links = [path.join(ROOT, 'node_modules'), STATE_DIR]
    .map((p) => realpathSync(p))
    .filter((p) => !p.startsWith(`${ROOT}/`))
    .flatMap((p) => ['-v', `${p}:${p}`]);
  await docker(
    'run',
    '-d',
    '--name',
    CTL,
    '--hostname',
    'wpfarm-test-controller',
    '--label',
    `${LABEL}=${LABEL_VALUE}`,
    '--network',
    NETWORK,
    ...systemdFlags(),
    '-v',
    `${ROOT}:${ROOT}`,
    ...links,
    '-v',
    `${process.execPath}:/usr/bin/node:ro`,
    IMAGES.node,
  );
  const state = await docker(
    'exec',
    CTL,
    'sh',
    '-c',
    'for i in $(seq 90); do s=$(systemctl is-system-running --wait 2>/dev/null); [ -n "$s" ] && break; sleep 1; done; echo "$s"',
  );
  assert.match(state, /^(running|degraded)$/, `the controller's systemd: ${state}`);
  const args = ['--install-timer', '--period', String(PERIOD), '--roles', 'common', '--limit', VICTIM, '--inventory', INVENTORY];
  const inst = JSON.parse(await inCtl('/usr/bin/node', '--import', 'tsx', 'playbooks/drift.ts', ...args)) as {
    systemd: boolean;
    changed: boolean;
  };
  timerInstalledAt = Date.now() / 1000;
  assert.deepEqual([inst.systemd, inst.changed], [true, true], 'units written, timer enabled and started by systemd');
  assert.equal(await inCtl('systemctl', 'is-active', 'wpfarm-drift.timer'), 'active');
  console.log(`${t()} controller up, wpfarm-drift.timer active (every ${PERIOD} s)`);
});

after(async () => {
  // a run left waiting on its gate (a failed assertion): Ctrl-C releases its lock
  for (const pid of running.keys()) process.kill(pid, 'SIGINT');
  await Promise.race([Promise.all(running.values()), sleep(15_000)]);
  for (const pid of running.keys()) process.kill(pid, 'SIGKILL');
  await Promise.all(TARGETS.map((h) => ssh(h, `pkill -f 'until \\[ -e /srv/hold-${TAG}-'`, { nothrow: true })));
  await Promise.all(TARGETS.map((h) => ssh(h, `rm -f /srv/hold-${TAG}-* /srv/held-${TAG}-*`, { nothrow: true })));
  await docker('rm', '-f', CTL).catch(() => '');
});

describe('deploy lock and audit log on the lab (lock on mgr1-3)', () => {
  let firstPid = 0;
  let waiterPid = 0;
  const noAudit: number[] = [];

  test('a second run refuses naming holder and start; --check takes no lock; --wait-lock waits, then runs', async () => {
    const h = await holder('a');
    firstPid = h.pid;
    const recs = await Promise.all(MANAGERS.map(lockOn));
    for (const r of recs) assert.equal((JSON.parse(r) as { pid: number }).pid, h.pid, `lock on every manager: ${r}`);
    const info = JSON.parse(recs[0]!) as { since: string; owner: string };
    assert.equal(info.owner.split('@')[1], hostname());
    const st = await node(['playbooks/lock.ts', 'status', '--inventory', INVENTORY]);
    assert.equal(st.code, 0, st.stderr);
    for (const m of MANAGERS)
      assert.match(st.stdout, new RegExp(`^${m}: held by \\S+ \\(pid ${h.pid}\\) since ${esc(info.since)}, heartbeat \\d+ s ago`, 'm'));

    await openGate('b');
    const second = await node(hold('b'));
    noAudit.push(second.pid);
    assert.equal(second.code, 5, second.stdout + second.stderr);
    const refusal = second.stderr.split('\n').find((l) => l.includes('locked by another run')) ?? '';
    assert.match(
      refusal,
      new RegExp(`locked by another run: \\S+@${esc(hostname())} \\(pid ${h.pid}\\) since ${esc(info.since)}, on mgr1, mgr2, mgr3: `),
    );
    assert.match(refusal, new RegExp(`hold\\.ts .*gate=${TAG}-a`), 'the holder command is named');
    assert.doesNotMatch(second.stdout, /ROLE hold/, 'the refused run ran nothing');

    const check = await node(hold('b', '--check'));
    noAudit.push(check.pid);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /ROLE hold/);
    assert.doesNotMatch(check.stdout + check.stderr, /deploy lock/, 'a check run does not touch the lock');
    for (const m of MANAGERS) assert.equal((JSON.parse(await lockOn(m)) as { pid: number }).pid, h.pid, 'still the holder');

    let waiting: () => void = () => undefined;
    const sawWait = new Promise<void>((r) => (waiting = r));
    const w = node(hold('b', '--wait-lock', '120'), {
      onSpawn: (p) => (waiterPid = p),
      onStdout: (s) => s.includes('waiting for the deploy lock') && waiting(),
    });
    await sawWait;
    await sleep(2000);
    const openedAt = Date.now();
    await openGate('a');
    const first = await h.done;
    const waiter = await w;
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.equal(waiter.code, 0, waiter.stdout + waiter.stderr);
    assert.match(waiter.stdout, new RegExp(`waiting for the deploy lock held by \\S+ \\(pid ${h.pid}\\) since ${esc(info.since)}`));
    assert.match(waiter.stdout, /ROLE hold/);
    assert.ok(waiter.endedAt > first.endedAt, 'the waiter ran after the holder');
    for (const m of MANAGERS) assert.equal(await lockOn(m), 'free', `released on ${m}`);
    console.log(
      `${t()} holder took the lock ${h.acquireMs} ms after spawn; refused run exit 5 after ${second.ms} ms: ${refusal.trim()}; ` +
        `check run ${check.ms} ms; waiter ended ${waiter.endedAt - first.endedAt} ms after the holder ` +
        `(gate opened ${first.endedAt - openedAt} ms before the holder ended)`,
    );
  });

  test('kill -9 of the holder: stale lock, taken over by the next run; the audit log holds every run', async () => {
    const h = await holder('c');
    process.kill(h.pid, 'SIGKILL');
    await h.done;
    await openGate('c'); // ends the step the killed run left waiting on the workers
    for (const m of MANAGERS) assert.equal((JSON.parse(await lockOn(m)) as { pid: number }).pid, h.pid, `stale lock left on ${m}`);
    const st = await node(['playbooks/lock.ts', 'status', '--inventory', INVENTORY]);
    for (const m of MANAGERS)
      assert.match(st.stdout, new RegExp(`^${m}: held by .*\\(pid ${h.pid}\\).*STALE: pid ${h.pid} is gone on ${esc(hostname())}$`, 'm'));
    const next = await node(hold('b'));
    assert.equal(next.code, 0, next.stdout + next.stderr);
    const took = next.stdout.split('\n').filter((l) => l.includes('took over the stale lock'));
    assert.deepEqual(took.map((l) => /deploy lock on (\w+):/.exec(l)?.[1]).sort(), MANAGERS, `one takeover per manager:\n${next.stdout}`);
    for (const l of took) assert.match(l, new RegExp(`of \\S+ \\(pid ${h.pid}, since \\S+\\): pid ${h.pid} is gone on `));
    for (const m of MANAGERS) assert.equal(await lockOn(m), 'free', `released on ${m}`);

    const audit = await node(['playbooks/audit.ts', '--inventory', INVENTORY, '--since', STARTED.toISOString(), '--format', 'json']);
    assert.equal(audit.code, 0, audit.stderr);
    const entries = JSON.parse(audit.stdout) as Array<{ kind: string; pid: number; outcome: string; note?: string; hosts: object }>;
    const byPid = (pid: number) => entries.filter((e) => e.pid === pid).map((e) => [e.kind, e.outcome]);
    assert.deepEqual(byPid(firstPid), [['run', 'ok']], 'the first holder');
    assert.deepEqual(byPid(waiterPid), [['run', 'ok']], 'the waiter');
    assert.deepEqual(byPid(next.pid), [['run', 'ok']], 'the run that took over');
    assert.equal(byPid(h.pid).length, 1);
    const dead = entries.find((e) => e.pid === h.pid)!;
    assert.equal(dead.kind, 'abandoned');
    assert.match(dead.note ?? '', /taken over by/);
    for (const pid of noAudit) assert.deepEqual(byPid(pid), [], 'no line for the refused run or the check run');
    assert.deepEqual(Object.keys(entries.find((e) => e.pid === next.pid)!.hosts).sort(), TARGETS);
    // the filters an operator uses: --host, --site (a word of the command line)
    const byHost = await node(['playbooks/audit.ts', '--inventory', INVENTORY, '--host', 'wrk2', '--since', '10m', '--format', 'json']);
    const hostPids = (JSON.parse(byHost.stdout) as Array<{ pid: number }>).map((e) => e.pid);
    for (const pid of [firstPid, waiterPid, next.pid]) assert.ok(hostPids.includes(pid), `--host wrk2 lists ${pid}`);
    const text = await node(['playbooks/audit.ts', '--inventory', INVENTORY, '--site', `${TAG}-c`]);
    assert.match(text.stdout, /^1 of \d+ entries$/m, text.stdout);
    console.log(`${t()} stale takeover: ${took[0]?.trim()}\n${text.stdout.trim()}`);
  });
});

describe('drift on the lab: the real systemd timer on the controller', () => {
  test(`a hand-edited managed file on ${VICTIM} shows in node-exporter within one period; restored, it clears`, async () => {
    // the check fired at least once since the timer started (during the lock tests: drift checks take no lock)
    const base = await nextDrift(timerInstalledAt, PERIOD * 3 + 60);
    assert.equal(base.success, 1, 'the check ran every step');
    const saved = await ssh(VICTIM, 'cat /etc/timezone');
    const editAt = Date.now() / 1000;
    await ssh(VICTIM, `printf 'Europe/Berlin\\n' > /etc/timezone`);
    let drifted: Drift & { seenAt: number };
    try {
      drifted = await nextDrift(editAt, PERIOD * 3 + 60);
    } finally {
      await ssh(VICTIM, `cat > /etc/timezone`, { stdin: `${saved}\n` });
    }
    const restoreAt = Date.now() / 1000;
    assert.equal(drifted.changes, base.changes + 1, `one more step would change (/etc/timezone): ${JSON.stringify([base, drifted])}`);
    assert.equal(drifted.success, 1);
    const delay = drifted.seenAt - editAt;
    // the timer's first start of the check after the edit: at most one period later (AccuracySec=1s, random delay 2 s)
    const fire = (await firings()).find((x) => x > editAt) ?? Number.NaN;
    assert.ok(
      fire - editAt <= PERIOD + 3,
      `the timer started the check ${(fire - editAt).toFixed(1)} s after the edit (period ${PERIOD} s)`,
    );
    // meanwhile (the file is restored already): Prometheus on mon1 scraped the drifted value, and the next check clears it
    const prometheus = async (): Promise<string> => {
      if ((await ssh('mon1', 'systemctl is-active prometheus', { nothrow: true })) !== 'active')
        return 'Prometheus not running on mon1 (75-monitoring not run)';
      const q = `max_over_time(wpfarm_drift_changes{host="${VICTIM}",role="common"}[5m])`;
      const deadline = Date.now() + 60_000;
      let v = '';
      for (; Date.now() < deadline; await sleep(1000)) {
        const out = await ssh('mon1', `curl -sf http://localhost:9090/api/v1/query --data-urlencode 'query=${q}'`, { nothrow: true });
        const res = (JSON.parse(out.startsWith('{') ? out : '{}') as { data?: { result?: { value: [number, string] }[] } }).data?.result;
        v = res?.[0]?.value[1] ?? '';
        if (v === String(drifted.changes)) break;
      }
      assert.equal(v, String(drifted.changes), `Prometheus on mon1: ${q}`);
      return `Prometheus on mon1: ${q} = ${v} ${(Date.now() / 1000 - editAt).toFixed(1)} s after the edit`;
    };
    const [prom, clean] = await Promise.all([prometheus(), nextDrift(restoreAt, PERIOD * 3 + 60)]);
    assert.equal(clean.changes, base.changes, 'restored: the drift is gone at the next check');
    const fired = (await firings()).filter((x) => x > timerInstalledAt);
    assert.ok(fired.length >= 3, `the timer started the check at least 3 times (baseline, drift, clean): ${fired.length}`);
    console.log(
      `${t()} drift: baseline ${base.changes}, after the edit ${drifted.changes} seen ${delay.toFixed(1)} s after it ` +
        `(timer fired ${(fire - editAt).toFixed(1)} s after the edit, the check took ${(drifted.seenAt - fire).toFixed(1)} s; ` +
        `period ${PERIOD} s); restored: ${clean.changes} ${(clean.seenAt - restoreAt).toFixed(1)} s later; ${prom}; ` +
        `timer firings: ${fired.length} in ${(Date.now() / 1000 - timerInstalledAt).toFixed(0)} s`,
    );
  });
});
