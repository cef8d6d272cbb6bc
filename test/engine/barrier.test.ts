// ctx.barrier() on real sshd hosts: three hosts reach it at different times and go on together; a host that
// fails before it does not block the others (they are released when it fails, and told which host is missing).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

interface Met {
  arrivedAt: number;
  passedAt: number;
  arrived: string[];
  missing: Record<string, string>;
}
interface Report {
  exitCode: number;
  results: { host: string; step: string; status: string; error?: string; result?: unknown }[];
}

let lab: SshdLab;
before(async () => {
  lab = await startSshdHosts(3);
});
after(async () => {
  await lab?.stop();
});

function run(...extra: string[]): Promise<{ code: number; out: string; json: Report }> {
  const json = join(lab.dir, `barrier-${Math.random().toString(36).slice(2)}.json`);
  const args = [
    '--import',
    'tsx',
    'playbooks/run-role.ts',
    'test/fixtures/roles/barrier.ts',
    '--inventory',
    lab.inventoryFile,
    '--json',
    json,
    ...extra,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      if (!existsSync(json)) return reject(new Error(`no report (exit ${code}): ${out}`));
      resolve({ code: code ?? -1, out, json: JSON.parse(readFileSync(json, 'utf8')) as Report });
    });
  });
}

const met = (r: Report): Map<string, Met> =>
  new Map(r.results.filter((x) => x.step === 'meet at the barrier' && x.status === 'ok').map((x) => [x.host, x.result as Met]));

test('three hosts reach the barrier at different times and continue together', async () => {
  const r = await run();
  assert.equal(r.code, 0, r.out);
  const m = met(r.json);
  const names = lab.hosts.map((h) => h.name);
  assert.deepEqual([...m.keys()].sort(), [...names].sort(), 'every host passed the barrier');
  const arrivals = names.map((n) => m.get(n)!.arrivedAt);
  const passes = names.map((n) => m.get(n)!.passedAt);
  // they arrived at different times (the sleeps are 0.8 s apart) ...
  assert.ok(arrivals[2]! - arrivals[0]! >= 1200, `arrivals spread: ${arrivals.map((a) => a - arrivals[0]!).join(', ')} ms`);
  // ... and nobody passed before the last one arrived; they passed together
  const last = Math.max(...arrivals);
  for (const [i, p] of passes.entries()) assert.ok(p >= last, `${names[i]} passed ${last - p} ms before the last arrival`);
  assert.ok(Math.max(...passes) - Math.min(...passes) < 200, `passes spread: ${passes.map((p) => p - last).join(', ')} ms`);
  for (const x of m.values()) {
    assert.deepEqual(x.arrived, names, 'every host sees who arrived, in inventory order');
    assert.deepEqual(x.missing, {});
  }
  for (const h of lab.hosts) assert.equal(readFileSync(join(h.root, '/srv/after-barrier'), 'utf8'), 'passed\n');
});

test('a host that fails before the barrier does not block the others: its failure releases them', async () => {
  for (const h of lab.hosts) rmSync(join(h.root, '/srv/after-barrier'), { force: true });
  const names = lab.hosts.map((h) => h.name);
  const failer = names[2]!; // the last to arrive: the two others are already waiting when it fails
  const t0 = Date.now();
  const r = await run('-e', `barrier_fail=${failer}`);
  assert.equal(r.code, 2, r.out);
  assert.ok(Date.now() - t0 < 60_000, 'the run did not hang');
  const failed = r.json.results.filter((x) => x.status === 'failed');
  assert.deepEqual(
    failed.map((x) => `${x.host} ${x.step}`),
    [`${failer} arrive late`],
  );
  const m = met(r.json);
  assert.deepEqual([...m.keys()].sort(), names.slice(0, 2).sort(), 'the two others passed');
  for (const x of m.values()) {
    assert.deepEqual(x.arrived, names.slice(0, 2));
    assert.deepEqual(Object.keys(x.missing), [failer]);
    assert.match(x.missing[failer]!, /failed on purpose before the barrier/);
    // released by the failure (about 1.6 s after the first arrival), not by a timeout
    assert.ok(x.passedAt - x.arrivedAt < 10_000, `waited ${x.passedAt - x.arrivedAt} ms`);
  }
  for (const h of lab.hosts.slice(0, 2)) assert.equal(readFileSync(join(h.root, '/srv/after-barrier'), 'utf8'), 'passed\n');
  assert.equal(existsSync(join(lab.hosts[2]!.root, '/srv/after-barrier')), false, 'the failed host went no further');
});
