// Plan, then apply exactly that plan (lib/plan.ts), through the CLI, on real sshd hosts: a plan applied unchanged
// makes exactly the planned changes; a file edited on a host between plan and apply makes apply refuse (exit 4)
// naming that host and step, changing nothing; a plan older than an inventory change is refused; no secret in
// the plan file; imperative tasks are listed as running again at apply.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { PlanFile } from '../../lib/plan.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

let lab: SshdLab;
const SECRET = 'Pl4n-Secret-7c1d0e';
let extraInv = '';

interface Out {
  code: number;
  stdout: string;
  stderr: string;
  report?: { results: Array<{ host: string; step: string; status: string; changes: string[] }> };
}

function cli(args: string[]): Promise<Out> {
  const json = join(lab.dir, `r-${Math.random().toString(36).slice(2)}.json`);
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'playbooks/run-role.ts',
        'test/fixtures/roles/demo.ts',
        '-i',
        lab.inventoryFile,
        '-i',
        extraInv,
        '--json',
        json,
        ...args,
      ],
      { env: { ...process.env, CI: 'true', WPFARM_DEMO_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      const report = existsSync(json) ? (JSON.parse(readFileSync(json, 'utf8')) as Out['report']) : undefined;
      resolve({ code: code ?? -1, stdout, stderr, report });
    });
  });
}

const onHost = (h: string, p: string) => join(lab.hosts.find((x) => x.name === h)!.root, p);
const changedOf = (o: Out) =>
  o
    .report!.results.filter((r) => r.status === 'changed')
    .map((r) => `${r.host} | ${r.step}`)
    .sort();

before(async () => {
  lab = await startSshdHosts(2, { prefix: 'p' });
  extraInv = join(lab.dir, 'extra.yml');
  writeFileSync(extraInv, `settings:\n  run_log_dir: ${join(lab.dir, 'runs')}\nvars:\n  note: one\n`);
});
after(async () => {
  await lab?.stop();
});

describe('plan, then apply exactly that plan', () => {
  test('a plan applied unchanged makes exactly the planned changes; no secret in the plan', async () => {
    const planFile = join(lab.dir, 'plan1.json');
    const p = await cli(['--plan-out', planFile]);
    assert.equal(p.code, 0, p.stdout + p.stderr);
    assert.ok(!existsSync(onHost('p01', '/srv/demo')), 'planning changed nothing');
    const text = readFileSync(planFile, 'utf8');
    assert.ok(!text.includes(SECRET), 'the secret is not in the plan file');
    assert.equal(statSync(planFile).mode & 0o777, 0o600);
    const plan = JSON.parse(text) as PlanFile;
    assert.equal(plan.formatVersion, 1);
    assert.ok(
      Object.keys(plan.inputs.files).some((f) => f.endsWith('extra.yml')),
      'the inventory is an input',
    );
    assert.ok(Object.keys(plan.inputs.files).includes('test/fixtures/roles/demo.ts'), 'the role file is an input');
    const planned = plan.steps
      .filter((s) => s.changed)
      .map((s) => `${s.host} | ${s.step}`)
      .sort();
    assert.ok(planned.length >= 2 * 5, planned.join('\n'));
    for (const s of plan.steps.filter((x) => !x.imperative && x.status !== 'skipped'))
      assert.match(s.probeSha256 ?? '', /^[0-9a-f]{64}$/, s.step);
    // the imperative task is said to run again at apply
    assert.ok(plan.steps.some((s) => s.imperative && s.step === 'report facts'));
    assert.match(p.stdout, /imperative step\(s\).*run again at apply/);
    assert.match(p.stdout, /! p01 {2}report facts/);

    const a = await cli(['--apply', planFile]);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.deepEqual(changedOf(a), planned, 'exactly the planned changes');
    assert.equal(readFileSync(onHost('p02', '/srv/demo/conf/app.conf'), 'utf8'), 'name=p02\nport=8080\n');
  });

  test('a file edited on a host between plan and apply: apply refuses naming that host and step, changes nothing', async () => {
    for (const h of ['p01', 'p02']) rmSync(onHost(h, '/srv/demo/conf/other.conf'), { force: true });
    const planFile = join(lab.dir, 'plan2.json');
    const p = await cli(['--plan-out', planFile]);
    assert.equal(p.code, 0, p.stdout + p.stderr);
    const plan = JSON.parse(readFileSync(planFile, 'utf8')) as PlanFile;
    assert.deepEqual(
      plan.steps
        .filter((s) => s.changed && !s.imperative)
        .map((s) => `${s.host} | ${s.step}`)
        .sort(),
      [
        'p01 | file /srv/demo/conf/other.conf',
        "p01 | handler record restart: command sh -c $'echo restarted >> /srv/demo/handler.log'",
        'p02 | file /srv/demo/conf/other.conf',
        "p02 | handler record restart: command sh -c $'echo restarted >> /srv/demo/handler.log'",
      ],
    );
    writeFileSync(onHost('p02', '/srv/demo/conf/app.conf'), 'name=edited-by-hand\n');
    const a = await cli(['--apply', planFile]);
    assert.equal(a.code, 4, a.stdout + a.stderr);
    assert.match(a.stderr, /apply refused/);
    assert.match(a.stderr, /host p02, step 'file \/srv\/demo\/conf\/app\.conf': the host changed since the plan/);
    assert.doesNotMatch(a.stderr, /host p01/, 'p01 did not change since the plan');
    for (const h of ['p01', 'p02']) assert.ok(!existsSync(onHost(h, '/srv/demo/conf/other.conf')), `nothing applied on ${h}`);
    assert.equal(readFileSync(onHost('p02', '/srv/demo/conf/app.conf'), 'utf8'), 'name=edited-by-hand\n');
  });

  test('a plan older than an inventory change is refused; a fresh plan applies', async () => {
    const planFile = join(lab.dir, 'plan3.json');
    assert.equal((await cli(['--plan-out', planFile])).code, 0);
    appendFileSync(extraInv, '  another: two\n');
    const a = await cli(['--apply', planFile]);
    assert.equal(a.code, 4, a.stdout + a.stderr);
    assert.match(a.stderr, /changed since the plan \(changed [^)]*extra\.yml\): plan again/);
    assert.ok(!existsSync(onHost('p01', '/srv/demo/conf/other.conf')), 'nothing applied');
    assert.doesNotMatch(a.stdout, /ROLE demo/, 'no role started');

    const again = await cli(['--plan-out', planFile]);
    assert.equal(again.code, 0);
    const b = await cli(['--apply', planFile]);
    assert.equal(b.code, 0, b.stdout + b.stderr);
    const plan = JSON.parse(readFileSync(planFile, 'utf8')) as PlanFile;
    assert.deepEqual(
      changedOf(b),
      plan.steps
        .filter((s) => s.changed)
        .map((s) => `${s.host} | ${s.step}`)
        .sort(),
    );
    assert.equal(readFileSync(onHost('p02', '/srv/demo/conf/app.conf'), 'utf8'), 'name=p02\nport=8080\n');
  });

  test('bad input: --apply with --check, a missing plan file, a plan of another playbook', async () => {
    const both = await cli(['--apply', join(lab.dir, 'plan1.json'), '--check']);
    assert.equal(both.code, 4);
    assert.match(both.stderr, /--apply .*--check/);
    const missing = await cli(['--apply', join(lab.dir, 'nope.json')]);
    assert.equal(missing.code, 4);
    assert.match(missing.stderr, /no plan file .*nope\.json/);
    const other = join(lab.dir, 'other.json');
    const plan = JSON.parse(readFileSync(join(lab.dir, 'plan3.json'), 'utf8')) as PlanFile;
    writeFileSync(other, JSON.stringify({ ...plan, playbook: 'add-site' }));
    const wrong = await cli(['--apply', other]);
    assert.equal(wrong.code, 4);
    assert.match(wrong.stderr, /a plan of add-site/);
  });
});
