// The lab's two profiles (scripts/lab/config.ts): the user's lab stays exactly as it was (the committed
// inventory/lab.yml is what its profile generates), the test lab shares no name, address, path or port with it,
// and its inventory is the same text with only those changed. Run: node --import tsx --test test/unit/lab-profile.test.ts
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { PROFILES, ROOT, nodesOf, pathsOf, profileFromEnv, svcOf } from '../../scripts/lab/config.ts';
import { inventoryText } from '../../scripts/lab/nodes.ts';

test('WPFARM_LAB selects the profile: unset, empty or "user" is the user lab; "test" the test lab; anything else is refused', () => {
  for (const v of ['', ' ', 'user']) assert.equal(profileFromEnv(v).name, 'user', JSON.stringify(v));
  // unset: read from the environment (make's test targets export WPFARM_LAB=test: cleared for this case)
  const saved = process.env.WPFARM_LAB;
  delete process.env.WPFARM_LAB;
  try {
    assert.equal(profileFromEnv().name, 'user', 'WPFARM_LAB unset');
    assert.equal(profileFromEnv(undefined).name, 'user', 'undefined');
  } finally {
    if (saved !== undefined) process.env.WPFARM_LAB = saved;
  }
  assert.equal(profileFromEnv('test').name, 'test');
  for (const v of ['prod', 'TEST', 'toString', '__proto__', 'constructor']) {
    assert.throws(() => profileFromEnv(v), /WPFARM_LAB=.*must be "user" \(the default\) or "test"/, v);
  }
});

test('the user profile generates the committed inventory/lab.yml byte for byte (its lab is unchanged)', () => {
  assert.equal(inventoryText(PROFILES.user), readFileSync(path.join(ROOT, 'inventory/lab.yml'), 'utf8'));
  const u = PROFILES.user;
  assert.deepEqual(
    [u.label, u.network, u.bridge, u.net, u.containerPrefix, u.stateDir, u.inventory, svcOf(u).hostRegistry],
    ['1', 'wpfarm-lab', 'wpfarm-lab0', '10.77.0', 'wpfarm-lab-', '.wpfarm/lab', 'inventory/lab.yml', '127.0.0.1:5077'],
  );
});

test('the test profile shares no name, address, path or port with the user profile', () => {
  const [u, t] = [PROFILES.user, PROFILES.test];
  assert.ok(t.bridge.length <= 15, 'an interface name fits IFNAMSIZ');
  const values = (p: typeof u): string[] => [
    p.label,
    p.network,
    p.bridge,
    `${p.net}.`,
    p.containerPrefix,
    p.lock,
    svcOf(p).hostRegistry,
    ...nodesOf(p).map((n) => n.address),
    ...Object.entries(pathsOf(p))
      .filter(([k]) => k !== 'hostState' && k !== 'locks') // the machine's, shared on purpose
      .map(([, v]) => v),
  ];
  const user = new Set(values(u));
  for (const v of values(t)) assert.ok(!user.has(v), `${v} is also the user lab's`);
  // no test name starts with a user name (a prefix filter would catch the other lab's objects)
  for (const [a, b] of [
    [t.containerPrefix, u.containerPrefix],
    [t.network, `${u.network}-`],
    [t.stateDir, `${u.stateDir}/`],
  ]) {
    assert.ok(!a!.startsWith(b!), `${a} starts with ${b}`);
  }
});

test("the test lab's inventory is the same text with only the profile's names, plus its own site records, run logs and retry files", () => {
  const [u, t] = [PROFILES.user, PROFILES.test];
  const text = inventoryText(t);
  const inv = parse(text) as {
    hosts: Record<string, { address: string; key: string }>;
    vars: Record<string, unknown>;
    settings: Record<string, string>;
  };
  assert.equal(inv.hosts.mgr1?.address, '10.78.0.11');
  assert.equal(inv.hosts.mgr1?.key, '.wpfarm/test-lab/id_ed25519');
  assert.equal(inv.settings.known_hosts, '.wpfarm/test-lab/known_hosts');
  assert.equal(inv.settings.env_file, '.wpfarm/test-lab/lab.env');
  assert.equal(inv.vars.wp_sites_dir, '.wpfarm/test-lab/sites');
  // runs on the test lab never write into the user's run directories or retry files (.wpfarm/runs, .wpfarm/retry)
  assert.equal(inv.settings.run_log_dir, '.wpfarm/test-lab/runs');
  assert.equal(inv.settings.retry_dir, '.wpfarm/test-lab/retry');
  assert.ok(!/run_log_dir|retry_dir/.test(inventoryText(u)), "the user's lab keeps the defaults");
  assert.equal(inv.vars.registry_push, '127.0.0.1:5078');
  assert.deepEqual(inv.vars.management_cidrs, ['10.78.0.0/24']);
  assert.ok(!/10\.77\.|wpfarm-lab0|\.wpfarm\/lab\/|:5077/.test(text), 'nothing of the user lab in it');
  // mapped back onto the user's names, it is the user's inventory (one text, no drift)
  const back = text
    .split(t.inventory)
    .join(u.inventory)
    .replace(`${t.title} (written by ${t.writer},`, `${u.title} (written by ${u.writer},`)
    .replace(/\n {2}# this lab's site records.*\n {2}wp_sites_dir: .*/, '')
    .replace(/\n {2}# runs on this lab keep.*\n {2}run_log_dir: .*\n {2}retry_dir: .*/, '')
    .replaceAll(t.stateDir, u.stateDir)
    .replaceAll(`${t.net}.`, `${u.net}.`)
    .replaceAll(t.bridge, u.bridge)
    .replaceAll(`:${t.hostRegistryPort}`, `:${u.hostRegistryPort}`);
  assert.equal(back, inventoryText(u));
});
