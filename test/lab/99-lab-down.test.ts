// The lab suite, last part: lab-down removes every container, network, volume, bridge and firewall rule
// the lab created, restores the FORWARD policy, and the host matches the snapshot taken before lab-up.
// Then the whole cycle again: lab-up && lab-down twice in a row.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { PATHS, SUBNET, labDown, labUp, takeSnapshot, type HostSnapshot } from '../../scripts/lab.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

async function out(cmd: string, ...args: string[]): Promise<string> {
  return (await run(cmd, args)).stdout.trim();
}

/** Direct checks, independent of the snapshot code: nothing named or labelled as the lab is left. */
async function assertNoLabLeft(before: HostSnapshot): Promise<void> {
  assert.equal(await out('docker', 'ps', '-aq', '--filter', 'label=wpfarm.lab=1'), '', 'lab containers left');
  assert.equal(await out('docker', 'volume', 'ls', '-q', '--filter', 'label=wpfarm.lab=1'), '', 'lab volumes left');
  assert.equal(await out('docker', 'network', 'ls', '-q', '--filter', 'label=wpfarm.lab=1'), '', 'lab networks left');
  await assert.rejects(run('ip', ['link', 'show', 'wpfarm-lab0']), 'the lab bridge is gone');
  const prefix = SUBNET.replace(/0\/24$/, '');
  const rules = await out('iptables-save');
  assert.ok(!rules.includes('wpfarm-lab0') && !rules.includes(prefix), 'no iptables rule names the lab bridge or subnet');
  const policy = (await out('iptables', '-S', 'FORWARD')).split('\n')[0];
  assert.equal(policy, `-P FORWARD ${before.forwardPolicy}`, 'FORWARD policy restored');
}

test('lab-down leaves the host as it was before lab-up', { timeout: 5 * 60_000 }, async (t) => {
  assert.ok(fs.existsSync(PATHS.before), `${PATHS.before} (written by lab-up in 00-lab.test.ts)`);
  const before = JSON.parse(fs.readFileSync(PATHS.before, 'utf8')) as HostSnapshot;
  const r = await labDown();
  t.diagnostic(
    `lab-down ${r.seconds.toFixed(1)} s: removed ${r.removed.containers} containers, ${r.removed.volumes} volumes, ${r.removed.networks} networks`,
  );
  assert.ok(r.removed.containers >= 12, 'the 11 nodes and the services node were removed');
  assert.equal(r.leftovers, '', `host differs from before lab-up:\n${r.leftovers}`);
  assert.ok(!fs.existsSync(PATHS.before), 'the snapshot is consumed (moved to before.last.json)');
  await assertNoLabLeft(before);
});

test('lab-up && lab-down again: the second cycle also leaves the host clean', { timeout: 8 * 60_000 }, async (t) => {
  process.chdir(ROOT);
  const up = await labUp();
  t.diagnostic(
    `second lab-up ${up.seconds.toFixed(1)} s (images built: ${up.imagesBuilt.join(', ') || 'none'}), created ${up.created.length}`,
  );
  assert.equal(up.created.length, 12, 'a fresh lab after lab-down');
  const before = JSON.parse(fs.readFileSync(PATHS.before, 'utf8')) as HostSnapshot;
  const down = await labDown();
  assert.equal(down.leftovers, '', `host differs from before lab-up:\n${down.leftovers}`);
  await assertNoLabLeft(before);
  // and the snapshot code itself agrees with a fresh snapshot
  const now = await takeSnapshot();
  assert.deepEqual(now.containers, before.containers);
  assert.deepEqual(now.volumes, before.volumes);
  assert.deepEqual(now.networks, before.networks);
});
