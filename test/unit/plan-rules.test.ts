// The rules of --apply (lib/plan.ts), without hosts: what the check pass before a role is compared on, what the
// real pass refuses, what changed among the inputs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { EventOf } from '../../lib/events.ts';
import { type PlanFile, type PlanStep, compareRole, guardMessage, inputChanges } from '../../lib/plan.ts';

const step = (o: Partial<PlanStep>): PlanStep => ({
  roleIndex: 0,
  role: 'r',
  host: 'h1',
  step: 'file /a',
  occurrence: 1,
  stepKind: 'file',
  imperative: false,
  status: 'changed',
  changed: true,
  changes: ['create'],
  probeSha256: 'a'.repeat(64),
  ...o,
});
const plan = (steps: PlanStep[]): PlanFile => ({
  formatVersion: 1,
  kind: 'wpfarm-plan',
  createdAt: '',
  playbook: 'p',
  command: '',
  inputs: { sha256: '', files: {} },
  roles: [{ roleIndex: 0, role: 'r', hosts: ['h1', 'h2'] }],
  steps,
});

test('check pass vs plan: a probe that differs names host and step; imperative steps are not compared', () => {
  const p = plan([step({}), step({ host: 'h2' }), step({ step: 'task t', stepKind: 'task', imperative: true, probeSha256: undefined })]);
  const now = [
    step({}),
    step({ host: 'h2', probeSha256: 'b'.repeat(64) }),
    step({ step: 'task t', stepKind: 'task', imperative: true, changed: false, changes: [], status: 'ok', probeSha256: undefined }),
  ];
  assert.deepEqual(compareRole(p, 0, 'r', now, new Set()), [
    "host h2, step 'file /a': the host changed since the plan (its probe result differs)",
  ]);
  // a host an earlier role changed: compared by its change lines (the same here: accepted)
  assert.deepEqual(compareRole(p, 0, 'r', now, new Set(['h2'])), []);
  // ... and refused when those differ
  const other = [step({}), step({ host: 'h2', probeSha256: 'b'.repeat(64), changes: ['mode 0644 -> 0600'] }), now[2]!];
  assert.deepEqual(compareRole(p, 0, 'r', other, new Set(['h2'])), ["host h2, step 'file /a': planned create, now mode 0644 -> 0600"]);
});

test('check pass vs plan: steps more or less, another role, a skipped step', () => {
  const p = plan([step({}), step({ host: 'h2' })]);
  assert.deepEqual(compareRole(p, 0, 'r', [step({}), step({ host: 'h3' })], new Set()), [
    "host h3, step 'file /a': not in the plan",
    "host h2, step 'file /a': in the plan, not in this run",
  ]);
  assert.deepEqual(compareRole(p, 0, 'other', [], new Set()), ['role #1: the plan has r, this run other']);
  assert.match(compareRole(p, 1, 'r', [], new Set())[0]!, /the plan has no role #2/);
  const skipped = step({ status: 'skipped', changed: false, changes: [] });
  assert.deepEqual(compareRole(p, 0, 'r', [skipped, step({ host: 'h2' })], new Set()), [
    "host h1, step 'file /a': planned changed, now skipped",
  ]);
});

test('real pass: only a change the plan did not have is refused', () => {
  const ev = (changed: boolean): EventOf<'step.plan'> => ({
    kind: 'step.plan',
    host: 'h1',
    role: 'r',
    step: 'file /a',
    stepKind: 'file',
    changed,
    changes: changed ? ['create (mode 0750)'] : [],
    probeSha256: '',
    nested: false,
    seq: 1,
    t: 0,
  });
  assert.equal(guardMessage(step({}), ev(true)), undefined, 'planned change, other words: allowed');
  assert.equal(guardMessage(step({}), ev(false)), undefined, 'already converged: nothing to do');
  assert.match(
    guardMessage(step({ changed: false, changes: [] }), ev(true))!,
    /apply refused: host h1, step 'file \/a': the plan has no change here/,
  );
  assert.match(guardMessage(undefined, ev(false))!, /is not in the plan/);
  assert.equal(guardMessage(step({ imperative: true }), ev(true)), undefined);
});

test('inputs: changed, added and removed files are named', () => {
  const a = { sha256: '1', files: { 'inv.yml': 'x', 'roles/a.ts': 'y' } };
  const b = { sha256: '2', files: { 'inv.yml': 'z', 'sites/s.yml': 'w' } };
  assert.deepEqual(inputChanges(a, b), ['changed inv.yml', 'added sites/s.yml', 'removed roles/a.ts']);
  assert.deepEqual(inputChanges(a, { ...a }), []);
});
