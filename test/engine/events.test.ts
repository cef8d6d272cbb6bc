// The run's event stream (lib/events.ts) end to end, through the CLI, on real sshd hosts: the order and content of
// the events of a run with handlers, a failure and an interrupt (SIGINT to the run process), as its NDJSON log
// records them; the JSON report and the console agree with it; no secret anywhere; the run directory's modes and
// its retention.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AuditEntry, AuditHostSummary } from '../../lib/audit.ts';
import type { RunEvent } from '../../lib/events.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

let lab: SshdLab;
const SECRET = 'Ev3nt-Secret-4b2a9c';
let settingsFile = '';
const runsDir = () => join(lab.dir, 'runs');
// paths in settings are relative to the working directory (like known_hosts): an absolute one here
const settings = (count: number) => `settings:\n  run_log_dir: ${runsDir()}\n  run_log_retention: { count: ${count} }\n`;

interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(args: string[], o: { env?: Record<string, string>; poll?: (kill: (s: NodeJS.Signals) => void) => void } = {}) {
  return new Promise<Out>((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'playbooks/run-role.ts', 'test/fixtures/roles/demo.ts', '-i', lab.inventoryFile, '-i', settingsFile, ...args],
      { env: { ...process.env, CI: 'true', ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    const timer = o.poll ? setInterval(() => o.poll!((s) => child.kill(s)), 100) : undefined;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      clearInterval(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

const runDirs = () => (existsSync(runsDir()) ? readdirSync(runsDir()).sort() : []);
const lastRun = () => join(runsDir(), runDirs().at(-1)!);
const readLog = (dir: string): RunEvent[] =>
  readFileSync(join(dir, 'events.ndjson'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as RunEvent);

type Ev<K extends RunEvent['kind']> = Extract<RunEvent, { kind: K }>;
const ofKind = <K extends RunEvent['kind']>(evs: RunEvent[], k: K) => evs.filter((e) => e.kind === k) as Ev<K>[];

interface Report {
  formatVersion: number;
  exitCode: number;
  roundTrips: number;
  roundTripsAt: Record<string, number[]>;
  results: Array<{ host: string; step: string; status: string; changes: string[]; startMs: number; endMs: number; role: string }>;
  runDir: string;
  lock?: { hosts: string[] };
}

before(async () => {
  lab = await startSshdHosts(3, { prefix: 'e' });
  settingsFile = join(lab.dir, 'settings.yml');
  writeFileSync(settingsFile, settings(3));
});
after(async () => {
  await lab?.stop();
});

describe('the event stream of a run on real sshd hosts', () => {
  test('handlers and a failure: order and content of the events; the log, the report and the console agree', async () => {
    const r = await cli(['-e', 'fail_on=e02', '--diff', '-v'], { env: { WPFARM_DEMO_SECRET: SECRET } });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const dir = lastRun();
    assert.match(dir, /\/\d{8}T\d{6}\.\d{3}Z-run-role-test_fixtures_roles_demo\.ts$/);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    assert.equal(statSync(runsDir()).mode & 0o777, 0o700);
    assert.equal(statSync(join(dir, 'events.ndjson')).mode & 0o777, 0o600);
    const evs = readLog(dir);
    const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as Report;
    const html = readFileSync(join(dir, 'timeline.html'), 'utf8');

    // no secret in any of them (the role writes it into a file and prints it in the failing command)
    const logText = readFileSync(join(dir, 'events.ndjson'), 'utf8');
    for (const [what, text] of Object.entries({ log: logText, report: JSON.stringify(report), html, stdout: r.stdout, stderr: r.stderr })) {
      assert.ok(!text.includes(SECRET), `the secret leaked into the ${what}`);
    }
    assert.match(logText, /failing \*\*\*/, 'the masked secret is there, masked');

    // stamps: seq 1..n in order, t never goes back
    assert.deepEqual(
      evs.map((e) => e.seq),
      evs.map((_, i) => i + 1),
    );
    for (let i = 1; i < evs.length; i++) assert.ok(evs[i]!.t >= evs[i - 1]!.t, `t goes back at seq ${evs[i]!.seq}`);
    assert.equal(evs[0]!.kind, 'run.start');
    assert.equal(evs.at(-1)!.kind, 'run.end');
    const end = evs.at(-1) as Ev<'run.end'>;
    assert.equal(end.exitCode, 2);
    assert.equal(end.interrupted, false);
    const roleStart = evs.findIndex((e) => e.kind === 'role.start');
    assert.deepEqual((evs[roleStart] as Ev<'role.start'>).hosts, ['e01', 'e02', 'e03']);
    const roleEnd = evs.findIndex((e) => e.kind === 'role.end');
    assert.ok(roleStart < roleEnd);
    // the deploy lock (on the inventory's first host here): taken before the role, given back before run.end
    const locks = ofKind(evs, 'lock');
    assert.deepEqual(
      locks.map((e) => [e.action, e.hosts]),
      [
        ['acquired', ['e01']],
        ['released', ['e01']],
      ],
    );
    assert.ok(evs.indexOf(locks[0]!) < roleStart && evs.indexOf(locks[1]!) > roleEnd);
    assert.deepEqual(report.lock?.hosts, ['e01'], 'the report names the lock hosts');

    // per host: its SSH handshake first (start, end ok: the run's connections are made while the deploy lock is taken,
    // Run.takeLock, so it starts before host.start and may end after it), host.connect ok once it ended, then
    // step.start/step.end pairs, then host.end
    for (const h of ['e01', 'e02', 'e03']) {
      const all = evs.filter((e) => 'host' in e && e.host === h && e.kind !== 'command.start' && e.kind !== 'command.end');
      const kinds = all.map((e) => e.kind);
      assert.equal(kinds[0], 'handshake.start', `${h}: the handshake first, made while the lock is taken`);
      assert.ok(evs.indexOf(all[0]!) < evs.indexOf(locks[0]!), `${h}: its handshake started before the lock was acquired`);
      const he = kinds.indexOf('handshake.end');
      assert.ok(he > 0 && he < kinds.indexOf('host.connect'), `${h}: the handshake ended before host.connect`);
      assert.equal((all[he] as Ev<'handshake.end'>).ok, true);
      assert.equal(all.filter((e) => e.kind.startsWith('handshake.')).length, 2, `${h}: one handshake`);
      const mine = all.filter((e) => !e.kind.startsWith('handshake.'));
      assert.equal(mine[0]!.kind, 'host.start', h);
      assert.equal(mine[1]!.kind, 'host.connect', h);
      assert.equal((mine[1] as Ev<'host.connect'>).ok, true);
      assert.equal(mine.at(-1)!.kind, 'host.end', h);
      let open: string | null = null;
      for (const e of mine) {
        if (e.kind === 'step.start') {
          assert.equal(open, null, `${h}: step '${e.step}' started while '${open}' runs`);
          open = e.step;
        } else if (e.kind === 'step.end') {
          assert.equal(e.result.step, open, `${h}: step.end of the step that started`);
          open = null;
        }
      }
      assert.equal(open, null);
      assert.ok(roleStart < evs.indexOf(mine[0]!) && evs.indexOf(mine.at(-1)!) < roleEnd);
    }
    // the failure: e02's failing command ends failed, its host ends failed, and no handler runs there
    const ends = ofKind(evs, 'step.end');
    const failed = ends.filter((e) => e.result.status === 'failed');
    assert.deepEqual(
      failed.map((e) => [e.host, e.result.step.startsWith('command sh -c')]),
      [['e02', true]],
    );
    assert.match(failed[0]!.result.error ?? '', /exit 3/);
    const hostEnds = ofKind(evs, 'host.end');
    assert.deepEqual(hostEnds.map((e) => [e.host, e.status]).sort(), [
      ['e01', 'ok'],
      ['e02', 'failed'],
      ['e03', 'ok'],
    ]);
    // handlers: notified by two steps, run once on each host that did not fail, announced before their steps
    const handlers = ofKind(evs, 'handler');
    assert.deepEqual(handlers.map((e) => [e.host, e.handler]).sort(), [
      ['e01', 'record restart'],
      ['e03', 'record restart'],
    ]);
    for (const hd of handlers) {
      const i = evs.indexOf(hd);
      const next = evs.slice(i).find((e) => e.kind === 'step.start' && e.host === hd.host) as Ev<'step.start'>;
      assert.ok(next.step.startsWith('handler record restart: command sh -c'), next.step);
      assert.equal(next.handler, 'record restart');
    }
    // probes and applies: the first step of each host is planned from a batched probe; every change was applied
    const plans = ofKind(evs, 'step.plan');
    assert.ok(
      ofKind(evs, 'probe').some((e) => e.steps > 1),
      'a batched probe round trip',
    );
    for (const p of plans) assert.match(p.probeSha256, /^[0-9a-f]{64}$/);
    const applies = ofKind(evs, 'apply');
    const changedOps = ends.filter((e) => e.result.status === 'changed' && e.result.kind !== 'task');
    assert.equal(applies.length, changedOps.length + 1, 'one apply per changed operation, plus the failing command');
    // diffs: app.conf's content on every host, before its step.end
    for (const h of ['e01', 'e02', 'e03']) {
      const d = ofKind(evs, 'diff').find((e) => e.host === h && e.step === 'file /srv/demo/conf/app.conf');
      assert.ok(d?.diff.includes(`+name=${h}`), `diff of app.conf on ${h}`);
    }
    // commands: every start has its end (same id, same host), the count is the report's round trips
    const starts = ofKind(evs, 'command.start');
    const cends = new Map(ofKind(evs, 'command.end').map((e) => [e.id, e]));
    for (const s of starts) {
      const e = cends.get(s.id);
      assert.ok(e && e.host === s.host && e.seq > s.seq, `command ${s.id} ended`);
    }
    assert.equal(starts.length, report.roundTrips);
    for (const h of ['e01', 'e02', 'e03']) {
      assert.deepEqual(
        report.roundTripsAt[h],
        starts.filter((s) => s.host === h).map((s) => s.t),
        `round trip times of ${h}`,
      );
    }

    // the report: format version, the same steps with the same outcomes, in the same order, timed by the events
    assert.equal(report.formatVersion, 1);
    assert.equal(report.exitCode, 2);
    assert.equal(report.runDir, dir);
    assert.deepEqual(
      report.results.map((x) => [x.host, x.step, x.status, x.changes.join('|'), x.endMs, x.role]),
      ends.map((e) => [e.result.host, e.result.step, e.result.status, e.result.changes.join('|'), e.t, 'demo']),
    );
    const startsOf = ofKind(evs, 'step.start');
    for (const x of report.results) {
      const s = startsOf.find((e) => e.host === x.host && e.step === x.step);
      assert.equal(x.startMs, s!.t, `start of ${x.host} ${x.step}`);
    }
    // the console (a listener too) printed every change and the failure
    for (const e of ends.filter((x) => x.result.status !== 'ok')) {
      assert.ok(r.stdout.includes(`${e.result.status.padEnd(9)} ${e.result.host}  ${e.result.step}`), `console: ${e.result.step}`);
    }
    assert.match(r.stdout, /e02\s+ok=\d+\s+changed=\d+\s+failed=1/);

    // the audit line on the lock host is built from the same stream: its start, outcome and per-host counts
    const start = evs[0] as Ev<'run.start'>;
    const auditLog = join(lab.hosts[0]!.root, 'var/lib/wpfarm/audit.log');
    const line = readFileSync(auditLog, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditEntry)
      .find((a) => a.kind === 'run' && a.start === start.startedAt);
    assert.ok(line, `an audit line for the run started at ${start.startedAt}`);
    assert.equal(line.outcome, 'failed');
    assert.equal(line.exitCode, end.exitCode);
    assert.equal(line.command, start.command);
    assert.ok(!JSON.stringify(line).includes(SECRET), 'no secret in the audit line');
    for (const h of ['e01', 'e02', 'e03']) {
      const mine = ends.filter((e) => e.result.host === h);
      const count = (s: string) => mine.filter((e) => e.result.status === s).length;
      const a: AuditHostSummary = line.hosts[h]!;
      assert.deepEqual([a.ok, a.changed, a.failed, a.skipped], [count('ok'), count('changed'), count('failed'), count('skipped')], h);
      assert.deepEqual(
        a.changes,
        mine
          .filter((e) => ['changed', 'failed'].includes(e.result.status))
          .map((e) => (e.result.status === 'failed' ? 'FAILED ' : '') + e.result.step),
        `${h}: the changed and failed steps`,
      );
    }
  });

  test('an interrupt (SIGINT to the run): the event, the step it cut short, no step after it, exit 130', async () => {
    let sent = false;
    const r = await cli(['-e', 'sleep_ms=4000', '--limit', 'e01'], {
      poll: (kill) => {
        if (sent || !runDirs().length) return;
        // the log shows the sleep step started: interrupt then
        const dir = lastRun();
        if (!existsSync(join(dir, 'events.ndjson'))) return;
        if (!/"kind":"step\.start"[^\n]*"step":"command sleep 4"/.test(readFileSync(join(dir, 'events.ndjson'), 'utf8'))) return;
        sent = true;
        kill('SIGINT');
      },
      env: { WPFARM_DEMO_SECRET: SECRET },
    });
    assert.ok(sent, 'SIGINT sent while the sleep step ran');
    assert.equal(r.code, 130, r.stdout + r.stderr);
    const evs = readLog(lastRun());
    const irq = evs.findIndex((e) => e.kind === 'interrupt');
    assert.ok(irq > 0, 'interrupt event');
    assert.equal((evs[irq] as Ev<'interrupt'>).signal, 'SIGINT');
    assert.ok(!evs.slice(irq).some((e) => e.kind === 'step.start'), 'no step starts after the interrupt');
    const cut = evs.slice(irq).find((e) => e.kind === 'step.end') as Ev<'step.end'>;
    assert.equal(cut.result.step, 'command sleep 4');
    // the command running when the interrupt came is not killed on the host (closing the SSH channel does not
    // stop it: measured here); the run waits for it, records its outcome, and starts nothing after it
    assert.ok(['changed', 'failed'].includes(cut.result.status), cut.result.status);
    const hostEnd = evs.slice(irq).find((e) => e.kind === 'host.end') as Ev<'host.end'>;
    assert.equal(hostEnd.status, 'failed');
    assert.equal(hostEnd.error, 'interrupted');
    const end = evs.at(-1) as Ev<'run.end'>;
    assert.equal(end.kind, 'run.end');
    assert.equal(end.exitCode, 130);
    assert.equal(end.interrupted, true);
    const all = ofKind(readLog(lastRun()), 'step.start').map((e) => e.step);
    assert.ok(!all.includes('report facts'), 'the step after the sleep never started');
    assert.ok(!readFileSync(join(lastRun(), 'events.ndjson'), 'utf8').includes(SECRET));
  });

  test('retention: old run directories are removed at the start of a run (settings.run_log_retention.count)', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await cli(['--check'])).code, 0);
    const dirs = runDirs();
    assert.equal(dirs.length, 3, dirs.join(', '));
    writeFileSync(settingsFile, settings(1));
    assert.equal((await cli(['--check'])).code, 0);
    const left = runDirs();
    assert.equal(left.length, 1);
    assert.ok(!dirs.includes(left[0]!), 'the one left is the newest run');
    writeFileSync(settingsFile, settings(3));
  });
});
