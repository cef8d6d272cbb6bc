// runOnce on real sshd hosts: the step runs on exactly one host; the others mirror its outcome
// (failed and skipped included, with the reason), a change is counted once, and a rerun changes nothing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

interface Report {
  exitCode: number;
  results: { host: string; step: string; status: string; changes: string[]; reason?: string }[];
}

let lab: SshdLab;
before(async () => {
  lab = await startSshdHosts(3);
});
after(async () => {
  await lab?.stop();
});

function run(): Promise<{ code: number; out: string; json: Report }> {
  const json = join(lab.dir, `once-${Math.random().toString(36).slice(2)}.json`);
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'playbooks/run-role.ts', 'test/fixtures/roles/once.ts', '--inventory', lab.inventoryFile, '--json', json],
      {
        env: { ...process.env, CI: 'true' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      if (!existsSync(json)) return reject(new Error(`no report (exit ${code}): ${out}`));
      resolve({ code: code ?? -1, out, json: JSON.parse(readFileSync(json, 'utf8')) as Report });
    });
  });
}

test('runOnce: one host runs it, the others mirror the outcome; skipped stays skipped with its reason', async () => {
  const r = await run();
  assert.equal(r.code, 0, r.out);
  const ran = lab.hosts.filter((h) => existsSync(join(h.root, '/srv/once-ran-here')));
  assert.equal(ran.length, 1, 'the command ran on exactly one host');
  const runner = ran[0]!.name;
  const cmd = r.json.results.filter((x) => x.step.startsWith('command sh'));
  assert.equal(cmd.length, 3, 'every host reports the step');
  assert.deepEqual(
    cmd.filter((x) => x.status === 'changed').map((x) => x.host),
    [runner],
    'the change is counted once, on its host',
  );
  for (const x of cmd.filter((x) => x.host !== runner)) {
    assert.equal(x.status, 'ok');
    assert.deepEqual(x.changes, []);
    assert.equal(x.reason, `ran once on ${runner}`);
  }
  const skipped = r.json.results.filter((x) => x.step === 'only where it is possible');
  assert.equal(skipped.length, 3);
  for (const x of skipped) {
    assert.equal(x.status, 'skipped', `${x.host}: a step skipped once is skipped for every host`);
    assert.match(x.reason ?? '', /not possible here: the thing is missing/);
  }
  // the next steps ran everywhere
  for (const h of lab.hosts) assert.equal(readFileSync(join(h.root, '/srv/once-done'), 'utf8'), 'done\n');
  const again = await run();
  assert.equal(again.code, 0, again.out);
  assert.deepEqual(
    again.json.results.filter((x) => x.status === 'changed'),
    [],
    'the rerun changes nothing',
  );
});
