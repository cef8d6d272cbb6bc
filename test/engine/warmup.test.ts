// Role warm-ups (lib/play.ts Run.warmup, issue 17): controller-side work of a role (the images) started by a playbook
// ahead of the role's turn, beside the earlier roles' host work. On real sshd hosts, through run-role.ts: the warm-up
// starts before the first role and overlaps it; the run waits for it before its recap; check mode and --skip-tags
// start none; one that fails is said and the run goes on (its role does the work in its turn). And the run's
// connections are made while the deploy lock is taken, no command sent before it.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runRoles } from '../harness/run-role.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

const ROLES = ['test/fixtures/roles/phase-a.ts', 'test/fixtures/roles/warm.ts'];
let lab: SshdLab;

interface Event {
  kind: string;
  role?: string;
  action?: string;
  message?: string;
  t: number;
}

async function cli(args: string[]): Promise<{ code: number; out: string; events: Event[] }> {
  const r = await runRoles<{ log: string }>(lab, ROLES, args);
  const events = readFileSync(r.json.log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Event);
  return { code: r.code, out: r.out, events };
}

const orderOf = (dir: string): string[] =>
  existsSync(join(dir, 'order'))
    ? readFileSync(join(dir, 'order'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[0]!)
    : [];
const index = (events: Event[], pred: (e: Event) => boolean): number => events.findIndex(pred);

before(async () => {
  lab = await startSshdHosts(2);
});
after(async () => {
  await lab?.stop();
});

describe('role warm-ups', () => {
  test('started before the first role, overlapping it; the run waits for it before its end', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wpfarm-warm-'));
    const r = await cli(['-e', `warm_dir=${dir}`, '-e', 'warm_ms=1500']);
    assert.equal(r.code, 0, r.out);
    const start = index(r.events, (e) => e.kind === 'warmup' && e.action === 'start');
    const firstRole = index(r.events, (e) => e.kind === 'role.start' && e.role === 'phase-a');
    const end = index(r.events, (e) => e.kind === 'warmup' && e.action === 'end');
    const runEnd = index(r.events, (e) => e.kind === 'run.end');
    assert.ok(start >= 0 && end > start, 'a warm-up start and end event');
    assert.ok(start < firstRole, 'the warm-up starts before the first role');
    assert.ok(end > firstRole, 'it ends after the first role started: the two overlap');
    assert.ok(end < runEnd, 'the run ends after its warm-ups');
    // the run's connections are made while the deploy lock is taken (lib/play.ts takeLock): handshakes start before
    // the lock is acquired, and no command is sent before it
    const lock = index(r.events, (e) => e.kind === 'lock' && e.action === 'acquired');
    assert.ok(lock >= 0, 'the lock was taken');
    assert.ok(index(r.events, (e) => e.kind === 'handshake.start') < lock, 'a handshake started before the lock was acquired');
    assert.ok(index(r.events, (e) => e.kind === 'command.start') > lock, 'no command before the lock');
    // the warm-up's log lines reach the run's log and the console
    assert.ok(r.events.some((e) => e.kind === 'warmup' && e.action === 'log' && e.message === 'warming up'));
    assert.match(r.out, /warm-up of warm: started beside the hosts' work \(the warm-up fixture\)/);
    assert.match(r.out, /warm-up of warm: done in \d+\.\d s/);
    // the role's step ran once and saw the warm-up's start; the warm-up's end is in the file when the run is over
    const order = orderOf(dir);
    assert.equal(order[0], 'warmup.start');
    assert.ok(order.includes('step') && order.includes('warmup.end'), order.join(','));
  });

  test('check mode and --skip-tags start no warm-up', async () => {
    for (const extra of [['--check'], ['--skip-tags', 'warm']]) {
      const dir = mkdtempSync(join(tmpdir(), 'wpfarm-warm-'));
      const r = await cli(['-e', `warm_dir=${dir}`, ...extra]);
      assert.equal(r.code, 0, `${extra.join(' ')}: ${r.out}`);
      assert.ok(!r.events.some((e) => e.kind === 'warmup'), `${extra.join(' ')}: a warm-up event`);
      assert.ok(!orderOf(dir).includes('warmup.start'), `${extra.join(' ')}: the warm-up ran`);
    }
  });

  test('a warm-up that fails is said, and the run goes on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wpfarm-warm-'));
    const r = await cli(['-e', `warm_dir=${dir}`, '-e', 'warm_fail=true']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /warm-up of warm failed \(the role does this work in its turn\): the warm-up broke/);
    assert.ok(r.events.some((e) => e.kind === 'warmup' && e.action === 'failed' && e.message === 'the warm-up broke'));
    assert.deepEqual(orderOf(dir), ['warmup.start', 'step']);
  });
});
