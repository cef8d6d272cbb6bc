// command: guards evaluated in the probe, check mode predicts, second run changes nothing.
// Everything runs for real in bash on this machine, in a temporary directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { command, type CommandResult } from '../../lib/ops/command.ts';
import { InputError } from '../../lib/errors.ts';
import { localContext, runLocal } from './ops-sys.harness.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-cmd-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

test('creates: check mode predicts the run, the run creates, the second run skips', async () => {
  const marker = path.join(tmp, 'made it');
  const op = command({ cmd: `echo hello > ${JSON.stringify(marker)}`, creates: marker });
  const checked = await runLocal(op, { check: true });
  assert.equal(checked.status, 'changed');
  assert.match(checked.plan.changes[0]!, /^would run \(.*made it missing\)/);
  assert.equal(fs.existsSync(marker), false, 'check mode changes nothing');
  const first = await runLocal(op);
  assert.equal(first.status, 'changed');
  assert.equal(fs.readFileSync(marker, 'utf8'), 'hello\n');
  assert.equal((first.plan.result as CommandResult).code, 0);
  assert.equal(first.after?.changed, false, 're-probe after the change sees it done');
  const second = await runLocal(op);
  assert.equal(second.status, 'ok');
  assert.deepEqual(second.plan.result, { skipped: true, reason: `skipped: ${marker} exists` });
  assert.equal(second.roundTrips, 1, 'a skipped command costs its probe only');
});

test('removes: runs only while the path exists', async () => {
  const f = path.join(tmp, 'to-remove');
  fs.writeFileSync(f, 'x');
  const op = command({ cmd: ['rm', '-f', '--', f], removes: f });
  assert.equal((await runLocal(op)).status, 'changed');
  assert.equal(fs.existsSync(f), false);
  const again = await runLocal(op);
  assert.equal(again.status, 'ok');
  assert.match((again.plan.result as CommandResult).reason, /does not exist/);
});

test('unless / onlyIf: read-only checks decide; their output never leaks', async () => {
  const f = path.join(tmp, 'counter');
  const op = command({ cmd: `echo x >> ${JSON.stringify(f)}`, unless: `echo noisy; grep -q x ${JSON.stringify(f)}` });
  assert.equal((await runLocal(op, { check: true })).status, 'changed');
  assert.equal((await runLocal(op)).status, 'changed');
  const second = await runLocal(op);
  assert.equal(second.status, 'ok');
  assert.equal(second.plan.changes.length, 0);
  assert.equal(fs.readFileSync(f, 'utf8'), 'x\n', 'ran exactly once');
  const only = command({ cmd: 'true', onlyIf: ['test', '-e', path.join(tmp, 'nope')] });
  const r = await runLocal(only);
  assert.equal(r.status, 'ok');
  assert.match((r.plan.result as CommandResult).reason, /onlyIf check failed \(exit 1\)/);
});

test('unguarded: always runs and says so; changedWhen can report ok', async () => {
  const op = command({ cmd: 'echo same' });
  assert.equal(op.probe(localContext()), null, 'no probe needed');
  const c = await runLocal(op, { check: true });
  assert.equal(c.status, 'changed');
  assert.match(c.plan.changes[0]!, /^would run \(unguarded\): echo same$/);
  assert.equal((await runLocal(op)).status, 'changed');
  const quiet = command({ cmd: 'echo same', changedWhen: (r) => r.stdout.trim() !== 'same' });
  const q = await runLocal(quiet);
  assert.equal(q.status, 'ok');
  assert.equal((q.plan.result as CommandResult).stdout, 'same\n');
  assert.deepEqual(q.plan.changes, []);
});

test('chdir and env are quoted; relative creates resolve in chdir', async () => {
  const dir = path.join(tmp, "dir with 'quotes' $HOME");
  fs.mkdirSync(dir);
  const op = command({ cmd: 'printf %s "$GREETING" > out.txt', chdir: dir, env: { GREETING: "it's $(not run) `x`" }, creates: 'out.txt' });
  assert.equal((await runLocal(op)).status, 'changed');
  assert.equal(fs.readFileSync(path.join(dir, 'out.txt'), 'utf8'), "it's $(not run) `x`");
  assert.equal((await runLocal(op)).status, 'ok');
});

test('missing chdir: check mode warns, the real run fails', async () => {
  const op = command({ cmd: 'true', chdir: path.join(tmp, 'absent'), creates: 'x' });
  const c = await runLocal(op, { check: true });
  assert.match(c.plan.changes[0]!, /chdir .*absent missing/);
  await assert.rejects(() => runLocal(op), /exit 1/);
});

test('failure: non-zero exit throws with stderr; okCodes accepts', async () => {
  await assert.rejects(
    () => runLocal(command({ cmd: 'echo boom >&2; exit 4' })),
    (e: Error) => /exit 4/.test(e.message) && /boom/.test(e.message),
  );
  const ok = await runLocal(command({ cmd: 'exit 4', okCodes: [0, 4] }));
  assert.equal((ok.plan.result as CommandResult).code, 4);
});

test('stdin reaches the command', async () => {
  const f = path.join(tmp, 'stdin.txt');
  await runLocal(command({ cmd: ['tee', f], stdin: 'from stdin\n', creates: f }));
  assert.equal(fs.readFileSync(f, 'utf8'), 'from stdin\n');
});

test('bad input is rejected at definition', () => {
  assert.throws(() => command({ cmd: '' }), InputError);
  assert.throws(() => command({ cmd: 'true', env: { 'BAD-NAME': 'x' } }), InputError);
});
