// One YAML reader, one validation path: several problems in one file are all reported with their lines,
// duplicate keys are refused in every kind of input file, and -i given twice merges the inventories.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadInventory, groupMembers } from '../../lib/inventory.ts';
import { loadCloudInventory } from '../../lib/cloud/config.ts';
import { InputErrors } from '../../lib/schema.ts';
import { parseSiteRecord } from '../../roles/wp-site/site.ts';
import { parseCli } from '../../lib/cli.ts';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'wpf-schema-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const file = (name: string, lines: string[]) => {
  const f = path.join(tmp, name);
  writeFileSync(f, `${lines.join('\n')}\n`);
  return f;
};

function problemsOf(fn: () => unknown): InputErrors {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof InputErrors, `expected InputErrors, got ${String(e)}`);
    assert.equal(e.exitCode, 4);
    return e;
  }
  assert.fail('expected the input to be refused');
}

test('inventory: several problems in one file are all reported at once, in line order, each with line and field', () => {
  const f = file('many.yml', [
    'hosts:', //                                    1
    '  a: { address: 10.0.0.1, port: 70000 }', //   2
    '  b:', //                                      3
    '    address: 10.0.0.2', //                     4
    '    usr: deploy', //                           5
    'groups:', //                                   6
    '  g: { hosts: [a, nosuch] }', //               7
  ]);
  const e = problemsOf(() => loadInventory(f));
  const m = e.messages;
  assert.equal(m.length, 2, m.join('\n')); // references are checked once the structure is right
  assert.match(m[0]!, new RegExp(`^${f}:2:\\d+ hosts\\.a\\.port: must be an integer from 1 to 65535, got the number 70000$`));
  assert.match(m[1]!, new RegExp(`^${f}:5:5 hosts\\.b\\.usr: unknown key 'usr' in hosts\\.b \\(did you mean 'user'\\?\\)`));
  assert.match(e.message, /and 1 more problem\(s\)/);
  const fixed = file('refs.yml', [
    'hosts:',
    '  a: { address: 10.0.0.1 }',
    'groups:',
    '  g: { hosts: [a, nosuch, a] }',
    '  h: { children: [nope] }',
  ]);
  const r = problemsOf(() => loadInventory(fixed)).messages;
  assert.equal(r.length, 3, r.join('\n'));
  assert.match(r[0]!, /:4:\d+ groups\.g\.hosts\[1\]: group 'g' lists host 'nosuch', which is not declared/);
  assert.match(r[1]!, /:4:\d+ groups\.g\.hosts\[2\]: group 'g' lists host 'a' twice/);
  assert.match(r[2]!, /:5:\d+ groups\.h\.children\[0\]: group 'h': child group 'nope' is not declared/);
});

test('site record and cloud config: several problems at once with their lines', () => {
  const site = problemsOf(() =>
    parseSiteRecord('s/x1.yml', ['id: x1', 'domain: a.com', 'replicas: 0', 'cache_ttl: -1', 'admin_allowlist: [nope]'].join('\n')),
  );
  assert.deepEqual(
    site.messages.map((m) => m.replace(/: .*/, '')),
    ['s/x1.yml:3:11 replicas', 's/x1.yml:4:12 cache_ttl', 's/x1.yml:5:19 admin_allowlist[0]'],
  );
  const cloud = file('cloud.yml', [
    'cloud:',
    '  region: fra1',
    '  vpc: { name: v, ip_range: 10.0.0.0/99 }',
    '  ssh_keys: [hello]',
    '  image: debian-12-x64',
    '  groups: { managers: { count: 1, size: s-1vcpu-1gb, colour: red } }',
    '  management_cidrs: []',
  ]);
  const c = problemsOf(() => loadCloudInventory(cloud)).messages;
  assert.equal(c.length, 4, c.join('\n'));
  assert.match(c[0]!, /cloud\.yml:3:\d+ cloud\.vpc\.ip_range: not a CIDR/);
  assert.match(c[1]!, /cloud\.yml:4:\d+ cloud\.ssh_keys\[0\]: not a key id or fingerprint: "hello"/);
  assert.match(c[2]!, /cloud\.yml:6:\d+ cloud\.groups\.managers\.colour: unknown key 'colour'/);
  assert.match(c[3]!, /cloud\.yml:7:\d+ cloud\.management_cidrs: at least one address range/);
});

test('duplicate keys are refused in every kind of file (inventory, site record, cloud config), each named', () => {
  const inv = file('dup-inv.yml', ['hosts:', '  a: { address: 10.0.0.1 }', 'vars: {}', 'vars: {}', '  ']);
  assert.match(problemsOf(() => loadInventory(inv)).messages[0]!, new RegExp(`^${inv}:4:1: YAML duplicate key: Map keys must be unique`));
  assert.match(
    problemsOf(() => parseSiteRecord('s/x1.yml', 'id: x1\ndomain: a.com\nphp:\n  memory_limit: 1G\n  memory_limit: 2G\n')).messages[0]!,
    /^s\/x1\.yml:5:3: YAML duplicate key: Map keys must be unique/,
  );
  const cloud = file('dup-cloud.yml', ['cloud:', '  region: fra1', '  region: ams3']);
  assert.match(
    problemsOf(() => loadCloudInventory(cloud)).messages[0]!,
    new RegExp(`^${cloud}:3:3: YAML duplicate key: Map keys must be unique`),
  );
  // two syntax problems in one file: both
  const two = file('two.yml', ['hosts:', '  a: { address: 10.0.0.1 }', '  a: { address: 10.0.0.2 }', 'vars: {}', 'vars: {}']);
  assert.deepEqual(
    problemsOf(() => loadInventory(two)).problems.map((p) => p.line),
    [3, 5],
  );
});

test('-i twice: inventories merged as Ansible does (hosts and groups unioned, later vars win)', () => {
  const a = file('a.yml', [
    'vars: { timezone: UTC, level: a }',
    'hosts:',
    '  mgr1: { address: 10.0.0.1, user: admin, vars: { role: first, keep: 1 } }',
    '  db1: { address: 10.0.0.21 }',
    'groups:',
    '  managers: { hosts: [mgr1], vars: { swarm_role: manager, tier: a } }',
    '  db: { hosts: [db1] }',
  ]);
  const b = file('b.yml', [
    'vars: { level: b }',
    'hosts:',
    '  mgr1: { address: 10.0.0.99, vars: { role: second } }',
    '  mgr2: { address: 10.0.0.2 }',
    'groups:',
    '  managers: { hosts: [mgr2], vars: { tier: b } }',
    '  swarm: { children: [managers, db] }',
  ]);
  const flags = parseCli(['-i', a, '-i', b]).flags;
  assert.deepEqual(flags.inventory, [a, b]);
  const inv = loadInventory(flags.inventory);
  assert.deepEqual(inv.files, [a, b]);
  assert.deepEqual([...inv.hosts.keys()], ['mgr1', 'db1', 'mgr2']);
  assert.deepEqual(groupMembers(inv, 'managers'), ['mgr1', 'mgr2']);
  assert.deepEqual(groupMembers(inv, 'swarm'), ['mgr1', 'mgr2', 'db1'], "a group of the second file names the first file's group");
  const mgr1 = inv.hosts.get('mgr1')!;
  assert.equal(mgr1.address, '10.0.0.99', 'later file wins');
  assert.equal(mgr1.user, 'admin', 'a field the later file does not set is kept');
  assert.deepEqual(
    {
      role: mgr1.vars.role,
      keep: mgr1.vars.keep,
      level: mgr1.vars.level,
      tz: mgr1.vars.timezone,
      tier: mgr1.vars.tier,
      sr: mgr1.vars.swarm_role,
    },
    { role: 'second', keep: 1, level: 'b', tz: 'UTC', tier: 'b', sr: 'manager' },
  );
  assert.equal(mgr1.source, `${a}:3`);
  // problems of both files at once
  const bad = file('bad.yml', ['hosts:', '  x: { address: 10.0.0.5, port: 0 }']);
  const e = problemsOf(() => loadInventory([file('bad0.yml', ['hosts: { y: { adress: 1 } }']), bad]));
  assert.equal(e.problems.length, 3, e.message);
  assert.deepEqual([...new Set(e.problems.map((p) => path.basename(p.file)))], ['bad.yml', 'bad0.yml']);
});
