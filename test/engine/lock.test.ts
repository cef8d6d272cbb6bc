// The deploy lock and the audit log (lib/lock.ts, lib/audit.ts) end to end, through the CLI, on real sshd
// hosts: the lock lives on the inventory's first host here (the harness inventory has no `managers` group).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

let lab: SshdLab;

interface Out {
  code: number;
  stdout: string;
  stderr: string;
  pid: number;
  endedAt: number;
}

function node(args: string[], o: { onStdout?: (t: string) => void; onSpawn?: (pid: number) => void } = {}): Promise<Out> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
      env: { ...process.env, CI: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    o.onSpawn?.(child.pid!);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      o.onStdout?.(stdout);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, pid: child.pid!, endedAt: Date.now() }));
  });
}

const demo = (...extra: string[]) => ['playbooks/run-role.ts', 'test/fixtures/roles/demo.ts', '--inventory', lab.inventoryFile, ...extra];
const lockFile = () => join(lab.hosts[0]!.root, 'var/lib/wpfarm/deploy.lock');
const auditFile = () => join(lab.hosts[0]!.root, 'var/lib/wpfarm/audit.log');

/**
 * Start a mutating run that holds the lock until `release()` (test/fixtures/roles/hold.ts waits for a gate file on
 * every host); resolves once its role started, i.e. once it holds the lock.
 */
async function holder(gate: string): Promise<{ done: Promise<Out>; pid: number; release: () => void }> {
  let started: () => void = () => undefined;
  const roleStarted = new Promise<void>((r) => (started = r));
  let pid = 0;
  const args = ['playbooks/run-role.ts', 'test/fixtures/roles/hold.ts', '--inventory', lab.inventoryFile, '-e', `gate=${gate}`];
  const done = node(args, { onSpawn: (p) => (pid = p), onStdout: (t) => t.includes('ROLE hold') && started() });
  await Promise.race([roleStarted, done.then((o) => assert.fail(`holder ended early: ${o.stdout}${o.stderr}`))]);
  const release = () => {
    for (const h of lab.hosts) writeFileSync(join(h.root, `srv/hold-${gate}`), '');
  };
  return { done, pid, release };
}

before(async () => {
  lab = await startSshdHosts(2, { prefix: 'k' });
});
after(async () => {
  await lab?.stop();
});

describe('deploy lock and audit log on real sshd hosts', () => {
  test('a second mutating run refuses naming the holder; a check run takes no lock; the lock is released at the end', async () => {
    const h = await holder('one');
    assert.ok(existsSync(lockFile()), 'the lock file exists while the run holds it');
    const info = JSON.parse(readFileSync(lockFile(), 'utf8')) as { pid: number; owner: string; since: string; command: string };
    assert.equal(info.pid, h.pid);
    const second = await node(demo());
    assert.equal(second.code, 5, second.stdout + second.stderr);
    assert.match(
      second.stderr,
      new RegExp(`locked by another run: \\S+@${hostname()} \\(pid ${h.pid}\\) since ${info.since.replace(/[.]/g, '\\.')}`),
    );
    assert.match(second.stderr, /hold\.ts .*gate=one/, 'the holder command is shown');
    assert.doesNotMatch(second.stdout, /ROLE demo/, 'nothing ran');
    const check = await node(demo('--check'));
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /ROLE demo/);
    h.release();
    const first = await h.done;
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.ok(!existsSync(lockFile()), 'released at the end');
    const lines = readFileSync(auditFile(), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { kind: string; pid: number; check?: boolean });
    assert.deepEqual(
      lines.map((l) => [l.kind, l.pid]),
      [['run', h.pid]],
      'one audit line: the holder; none for the refused or the check run',
    );
  });

  test('--wait-lock waits for the holder, then runs', async () => {
    const h = await holder('two');
    let waiting: () => void = () => undefined;
    const sawWait = new Promise<void>((r) => (waiting = r));
    const w = node(demo('--wait-lock', '120'), { onStdout: (t) => t.includes('waiting for the deploy lock') && waiting() });
    await sawWait;
    await new Promise((r) => setTimeout(r, 1500));
    h.release();
    const first = await h.done;
    const waiter = await w;
    assert.equal(first.code, 0);
    assert.equal(waiter.code, 0, waiter.stdout + waiter.stderr);
    assert.match(waiter.stdout, new RegExp(`waiting for the deploy lock held by \\S+ \\(pid ${h.pid}\\)`));
    assert.ok(waiter.endedAt > first.endedAt, 'the waiter finished after the holder');
    // --wait-lock with too short a wait refuses with exit 5 and says how long it waited
    const h2 = await holder('three');
    const short = await node(demo('--wait-lock', '1'));
    assert.equal(short.code, 5, short.stdout + short.stderr);
    assert.match(short.stderr, /waited 1 s/);
    h2.release();
    assert.equal((await h2.done).code, 0);
  });

  test('kill -9 of the holder leaves a stale lock that the next run takes over; the audit log holds both runs', async () => {
    const h = await holder('four');
    process.kill(h.pid, 'SIGKILL');
    await h.done;
    h.release(); // ends the command the killed run left waiting on the hosts
    assert.ok(existsSync(lockFile()), 'the killed run left its lock');
    const status = await node(['playbooks/lock.ts', 'status', '--inventory', lab.inventoryFile]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`k01: held by \\S+ \\(pid ${h.pid}\\).*STALE: pid ${h.pid} is gone on ${hostname()}`));
    const next = await node(demo());
    assert.equal(next.code, 0, next.stdout + next.stderr);
    assert.match(next.stdout, new RegExp(`took over the stale lock of \\S+ \\(pid ${h.pid}, since .*\\): pid ${h.pid} is gone`));
    assert.ok(!existsSync(lockFile()));
    const audit = await node(['playbooks/audit.ts', '--inventory', lab.inventoryFile, '--format', 'json', '--since', '10m']);
    assert.equal(audit.code, 0, audit.stderr);
    const entries = JSON.parse(audit.stdout) as Array<{
      kind: string;
      pid: number;
      outcome: string;
      note?: string;
      hosts: Record<string, { changed: number }>;
    }>;
    const dead = entries.find((e) => e.pid === h.pid);
    assert.equal(dead?.kind, 'abandoned');
    assert.match(dead!.note!, /taken over by/);
    const taker = entries.find((e) => e.pid === next.pid);
    assert.equal(taker?.kind, 'run');
    assert.equal(taker?.outcome, 'ok');
    assert.deepEqual(Object.keys(taker!.hosts).sort(), ['k01', 'k02']);
    // filters: --host, --until in the past, --site on a word of the command line
    const byHost = await node(['playbooks/audit.ts', '--inventory', lab.inventoryFile, '--host', 'k02', '--format', 'json']);
    assert.ok((JSON.parse(byHost.stdout) as unknown[]).length >= 4, byHost.stdout);
    const none = await node(['playbooks/audit.ts', '--inventory', lab.inventoryFile, '--until', '2000-01-01']);
    assert.match(none.stdout, /^0 of \d+ entries$/m);
    const bySite = await node(['playbooks/audit.ts', '--inventory', lab.inventoryFile, '--site', 'gate', '--format', 'json']);
    assert.equal((JSON.parse(bySite.stdout) as unknown[]).length, 0, 'a key is not a value');
    const bySite2 = await node(['playbooks/audit.ts', '--inventory', lab.inventoryFile, '--site', 'four', '--format', 'json']);
    assert.deepEqual(
      (JSON.parse(bySite2.stdout) as Array<{ pid: number }>).map((e) => e.pid),
      [h.pid],
    );
    const bad = await node(['playbooks/audit.ts', '--inventory', lab.inventoryFile, '--since', 'yesterday']);
    assert.equal(bad.code, 4);
    assert.match(bad.stderr, /--since: 'yesterday'/);
  });

  test('a lock of another controller: refused while its heartbeat is fresh, taken over once expired; lock.ts release', async () => {
    const foreign = {
      token: 'f0f0f0f0f0f0f0f0',
      owner: 'alice@laptop-7',
      controller: 'laptop-7',
      pid: 4242,
      command: 'add-site.ts --domain x',
      since: '2025-01-01T00:00:00.000Z',
      ttlSec: 120,
    };
    writeFileSync(lockFile(), `${JSON.stringify(foreign)}\n`, { mode: 0o600 });
    const refused = await node(demo());
    assert.equal(refused.code, 5);
    assert.match(refused.stderr, /locked by another run: alice@laptop-7 \(pid 4242\) since 2025-01-01T00:00:00\.000Z/);
    const rel = await node(['playbooks/lock.ts', 'release', '--inventory', lab.inventoryFile]);
    assert.equal(rel.code, 5, 'a live holder is not released without --force');
    // the heartbeat stopped 10 minutes ago: stale by the ttl rule
    const old = new Date(Date.now() - 600_000);
    utimesSync(lockFile(), old, old);
    const st = await node(['playbooks/lock.ts', 'status', '--inventory', lab.inventoryFile]);
    assert.match(st.stdout, /STALE: no heartbeat for 6\d\d s \(ttl 120 s\)/);
    const next = await node(demo());
    assert.equal(next.code, 0, next.stdout + next.stderr);
    assert.match(next.stdout, /took over the stale lock of alice@laptop-7 \(pid 4242.*no heartbeat/);
    // release --force of a live foreign lock, logged
    writeFileSync(lockFile(), `${JSON.stringify(foreign)}\n`, { mode: 0o600 });
    const forced = await node(['playbooks/lock.ts', 'release', '--force', '--inventory', lab.inventoryFile]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /k01: released/);
    assert.ok(!existsSync(lockFile()));
    const log = readFileSync(auditFile(), 'utf8');
    assert.match(log, /"kind":"lock-release".*forced/);
  });
});
