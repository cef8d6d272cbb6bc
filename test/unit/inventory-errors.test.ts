// Every inventory error path: an InputError (exit code 4) whose message starts with "file:line field".
// Run: node --import tsx --test test/unit/inventory*.test.ts
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadInventory, parseExtraVars } from '../../lib/inventory.ts';
import { InputError } from '../../lib/errors.ts';
import { InputErrors } from '../../lib/schema.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
process.chdir(root);
const FIX = 'test/fixtures/inventory';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'wpf-inv-err-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
let seq = 0;

/** write an inventory (outside the repository, so messages show its absolute path) */
function inline(lines: string[]): string {
  const file = path.join(tmp, `inv${++seq}.yml`);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * fn must throw an InputError (exit 4) whose message starts with the place `prefix` names ("file:line field",
 * printed as "file:line:col field: ") and matches `re`
 */
function rejects(fn: () => unknown, prefix: string, re: RegExp): InputError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof InputError, `expected an InputError, got ${String(caught)}`);
  assert.equal(caught.exitCode, 4);
  const [, at, field] = /^(.*?:\d+)(?: (.*))?$/.exec(prefix)!;
  const start = new RegExp(`^${esc(at!)}:\\d+${field ? ` ${esc(field)}` : ''}: `);
  // every problem of the file is reported: one of them is the expected one
  const lines = caught instanceof InputErrors ? caught.messages : [caught.message];
  assert.ok(
    lines.some((l) => start.test(l) && re.test(l)),
    `a problem should start with "${prefix}: " (a column after the line) and match ${re}\n  got: ${caught.message}`,
  );
  return caught;
}

const load = (file: string, envFile?: string) => () => loadInventory(file, envFile ? { envFile } : {});

// ---------------------------------------------------------------- fixtures with known line numbers

test('malformed YAML names file:line', () => {
  // the flow map opened on line 3 is never closed: the parser notices on line 4
  rejects(load(`${FIX}/bad-syntax.yml`), `${FIX}/bad-syntax.yml:4`, /YAML syntax error: Flow map .* end with a \}/);
});

test('a typo in a key names file:line, the key and a suggestion', () => {
  rejects(
    load(`${FIX}/bad-typo.yml`),
    `${FIX}/bad-typo.yml:6 hosts.db1.adress`,
    /unknown key 'adress' in hosts\.db1 \(did you mean 'address'\?\)/,
  );
});

test('a port out of range names file:line and field', () => {
  rejects(load(`${FIX}/bad-port.yml`), `${FIX}/bad-port.yml:5 hosts.db1.port`, /must be an integer from 1 to 65535, got the number 70000/);
});

test('a group member not declared under hosts names the group, file and line', () => {
  rejects(
    load(`${FIX}/bad-undeclared.yml`),
    `${FIX}/bad-undeclared.yml:9 groups.managers.hosts[2]`,
    /group 'managers' lists host 'mgr3', which is not declared under hosts/,
  );
});

test('a cycle in children is named', () => {
  rejects(
    load(`${FIX}/bad-cycle.yml`),
    `${FIX}/bad-cycle.yml:8 groups.gamma.children[0]`,
    /cycle through children: alpha -> beta -> gamma -> alpha/,
  );
  rejects(
    load(inline(['hosts: {}', 'groups:', '  solo: { children: [solo] }'])),
    `${tmp}/inv${seq}.yml:3 groups.solo.children[0]`,
    /cycle through children: solo -> solo/,
  );
});

test('a missing env var names the variable and the file:line of the reference', () => {
  delete process.env.WPF_TEST_SURELY_UNSET_VAR;
  rejects(
    load(`${FIX}/bad-missing-env.yml`),
    `${FIX}/bad-missing-env.yml:6 hosts.db1.become_password`,
    /env var WPF_TEST_SURELY_UNSET_VAR is not set \(or empty\) in the environment, and there is no \.env file/,
  );
  // with an env file that lacks it, the message names that file
  rejects(
    load(`${FIX}/bad-missing-env.yml`, `${FIX}/farm.env`),
    `${FIX}/bad-missing-env.yml:6 hosts.db1.become_password`,
    /WPF_TEST_SURELY_UNSET_VAR is not set \(or empty\) in the environment nor in test\/fixtures\/inventory\/farm\.env/,
  );
});

// ---------------------------------------------------------------- structure

test('YAML duplicate key, unknown tag, empty file, wrong top-level type, missing file, a directory', () => {
  let f = inline(['hosts:', '  a: { address: 10.0.0.1 }', '  a: { address: 10.0.0.2 }']);
  rejects(load(f), `${f}:3`, /YAML duplicate key: Map keys must be unique/);
  f = inline(['hosts:', '  a: { address: 10.0.0.1 }', 'vars:', '  pw: !vault abc']);
  rejects(load(f), `${f}:4`, /Unresolved tag: !vault/);
  f = inline(['# nothing here']);
  rejects(load(f), `${f}:1`, /inventory is empty/);
  f = inline(['- a', '- b']);
  rejects(load(f), `${f}:1 inventory`, /must be a mapping, got a list/);
  assert.throws(
    load(path.join(tmp, 'nope.yml')),
    (e: unknown) => e instanceof InputError && e.exitCode === 4 && /file not found: .*nope\.yml/.test(e.message),
  );
  assert.throws(load(tmp), (e: unknown) => e instanceof InputError && /is a directory/.test(e.message));
});

test('unknown keys at every level, each with a suggestion', () => {
  let f = inline(['host:', '  a: { address: 10.0.0.1 }']);
  rejects(load(f), `${f}:1 host`, /unknown key 'host' at top level \(did you mean 'hosts'\?\)/);
  f = inline(['settings:', '  known_host: x', 'hosts: {}']);
  rejects(load(f), `${f}:2 settings.known_host`, /unknown key 'known_host' in settings \(did you mean 'known_hosts'\?\)/);
  f = inline(['hosts:', '  a: { address: 10.0.0.1 }', 'groups:', '  g:', '    host: [a]']);
  rejects(load(f), `${f}:5 groups.g.host`, /unknown key 'host' in groups\.g \(did you mean 'hosts'\?\)/);
  f = inline(['hosts:', '  a: { address: 10.0.0.1, become_pasword: { env: X } }']);
  rejects(load(f), `${f}:2 hosts.a.become_pasword`, /did you mean 'become_password'/);
  f = inline(['hosts:', '  a: { address: 10.0.0.1, colour: blue }']);
  const e = rejects(
    load(f),
    `${f}:2 hosts.a.colour`,
    /unknown key 'colour'; allowed: address, port, user, key, become_password, vars|unknown key 'colour' in hosts\.a; allowed/,
  );
  assert.doesNotMatch(e.message, /did you mean/, 'no suggestion when nothing is close');
});

test('sections owned by other loaders (cloud, cloudflare) are accepted and skipped', () => {
  const f = inline([
    'cloud: { provider: digitalocean, region: fra1 }',
    'cloudflare: { zone: example.com }',
    'hosts:',
    '  a: { address: 10.0.0.1 }',
  ]);
  assert.deepEqual([...loadInventory(f).hosts.keys()], ['a']);
});

test('settings types', () => {
  let f = inline(['settings:', '  accept_new_host_keys: "yes"', 'hosts: {}']);
  rejects(load(f), `${f}:2 settings.accept_new_host_keys`, /must be true or false, got the string 'yes'/);
  f = inline(['settings:', '  known_hosts: ""', 'hosts: {}']);
  rejects(load(f), `${f}:2 settings.known_hosts`, /must be a non-empty string/);
  f = inline(['settings: [a]', 'hosts: {}']);
  rejects(load(f), `${f}:1 settings`, /must be a mapping, got a list/);
  f = inline(['settings:', '  key: 42', 'hosts: {}']);
  rejects(load(f), `${f}:2 settings.key`, /must be a string, got the number 42/);
});

test('host fields: address, port, user, shapes', () => {
  const cases: Array<[string[], string, RegExp]> = [
    [['hosts:', '  a: { address: "" }'], '2 hosts.a.address', /must be a non-empty string/],
    [['hosts:', '  a: { port: 22 }'], '2 hosts.a.address', /is required: every host needs an address/],
    [['hosts:', '  a:', '    address: 10.0.0.1', '  b:'], '4 hosts.b', /a host needs at least an address/],
    [['hosts:', '  a: { address: 1.5 }'], '2 hosts.a.address', /must be a string, got the number 1\.5/],
    [['hosts:', '  a: { address: -oProxyCommand=evil }'], '2 hosts.a.address', /not starting with '-'/],
    [['hosts:', '  a: { address: "10.0.0.1 x" }'], '2 hosts.a.address', /without spaces/],
    [['hosts:', '  a: { address: 10.0.0.1, port: "22" }'], '2 hosts.a.port', /must be an integer from 1 to 65535, got the string '22'/],
    [['hosts:', '  a: { address: 10.0.0.1, port: 0 }'], '2 hosts.a.port', /got the number 0/],
    [['hosts:', '  a: { address: 10.0.0.1, port: 22.5 }'], '2 hosts.a.port', /got the number 22\.5/],
    [['hosts:', '  a:', '    address: 10.0.0.1', '    user: -oProxyCommand=x'], '4 hosts.a.user', /is not a valid user name/],
    [['hosts:', '  a: { address: 10.0.0.1, key: "" }'], '2 hosts.a.key', /must be a non-empty string/],
    [['hosts:', '  a: [10.0.0.1]'], '2 hosts.a', /must be a mapping, got a list/],
    [['hosts:', '  - a'], '2 hosts', /must be a mapping, got a list/],
    [['hosts:', '  a: { address: 10.0.0.1, vars: [x] }'], '2 hosts.a.vars', /must be a mapping, got a list/],
  ];
  for (const [lines, where, re] of cases) {
    const f = inline(lines);
    rejects(load(f), `${f}:${where}`, re);
  }
});

test('names: reserved all, pattern characters, host/group clash, var names', () => {
  const cases: Array<[string[], string, RegExp]> = [
    [['hosts:', '  all: { address: 10.0.0.1 }'], '2 hosts.all', /'all' is reserved/],
    [['hosts:', '  "web,1": { address: 10.0.0.1 }'], '2 hosts.web,1', /host name 'web,1' may only contain/],
    [['hosts:', '  "web*": { address: 10.0.0.1 }'], '2 hosts.web*', /host name 'web\*' may only contain/],
    [
      ['hosts:', '  a: { address: 10.0.0.1 }', 'groups:', '  all: { vars: { x: 1 } }'],
      '4 groups.all',
      /'all' is implicit .* top-level vars/,
    ],
    [['hosts:', '  a: { address: 10.0.0.1 }', 'groups:', '  "!g": { hosts: [a] }'], '4 groups.!g', /group name '!g' may only contain/],
    [['hosts:', '  a: { address: 10.0.0.1 }', 'groups:', '  a: { hosts: [a] }'], '4 groups.a', /same name as a host/],
    [['vars:', '  my-var: 1', 'hosts: {}'], '2 vars.my-var', /var name 'my-var' may only contain/],
    [['hosts:', '  a: { address: 10.0.0.1, vars: { 2x: 1 } }'], '2 hosts.a.vars.2x', /var name '2x'/],
  ];
  for (const [lines, where, re] of cases) {
    const f = inline(lines);
    rejects(load(f), `${f}:${where}`, re);
  }
});

test('groups: hosts and children lists, undeclared names, duplicates', () => {
  const base = ['hosts:', '  mgr1: { address: 10.0.0.1 }', '  wrk1: { address: 10.0.0.2 }', 'groups:'];
  const cases: Array<[string[], string, RegExp]> = [
    [['  g: { hosts: { mgr1: {} } }'], '5 groups.g.hosts', /must be a list, got a mapping/],
    [
      ['  g: { hosts: [mgr1, wrk2] }'],
      '5 groups.g.hosts[1]',
      /group 'g' lists host 'wrk2', which is not declared under hosts \(did you mean 'wrk1'\?\)/,
    ],
    [['  g: { hosts: [mgr1, mgr1] }'], '5 groups.g.hosts[1]', /lists host 'mgr1' twice/],
    [['  g: { hosts: [42] }'], '5 groups.g.hosts[0]', /must be a string, got the number 42/],
    [['  g:', '    children:', '      - managers'], '7 groups.g.children[0]', /child group 'managers' is not declared under groups/],
    [
      ['  managers: { hosts: [mgr1] }', '  g: { children: [manager] }'],
      '6 groups.g.children[0]',
      /child group 'manager' is not declared under groups \(did you mean 'managers'\?\)/,
    ],
    [['  g: { children: [mgr1] }'], '5 groups.g.children[0]', /'mgr1' is a host, not a group/],
    [['  g: { children: [all] }'], '5 groups.g.children[0]', /'all' is implicit/],
    [['  g: { children: h }', '  h: {}'], '5 groups.g.children', /must be a list, got the string 'h'/],
    [['  h: {}', '  g: { children: [h, h] }'], '6 groups.g.children[1]', /lists child group 'h' twice/],
    [['  g: { vars: 3 }'], '5 groups.g.vars', /must be a mapping, got the number 3/],
    [['  g: [mgr1]'], '5 groups.g', /must be a mapping, got a list/],
  ];
  for (const [lines, where, re] of cases) {
    const f = inline([...base, ...lines]);
    rejects(load(f), `${f}:${where}`, re);
  }
});

// ---------------------------------------------------------------- credentials

test('credentials are never written into the inventory', () => {
  let f = inline(['hosts:', '  db1:', '    address: 10.0.0.1', '    become_password: hunter2-literal']);
  let e = rejects(load(f), `${f}:4 hosts.db1.become_password`, /must be a credential reference \{ env: NAME \}/);
  assert.doesNotMatch(e.message, /hunter2/, 'the value is not echoed');
  f = inline(['vars:', '  db_password: s3cr3t-literal', 'hosts: {}']);
  e = rejects(
    load(f),
    `${f}:2 vars.db_password`,
    /looks like a credential written into the inventory; put it in \.env and write \{ env: NAME \}/,
  );
  assert.doesNotMatch(e.message, /s3cr3t/);
  f = inline(['vars:', '  db:', '    user: wp', '    password: nested-literal', 'hosts: {}']);
  rejects(load(f), `${f}:4 vars.db.password`, /looks like a credential/);
  f = inline(['hosts:', '  a: { address: 10.0.0.1, vars: { cloudflare_api_token: tok-literal-123 } }']);
  rejects(load(f), `${f}:2 hosts.a.vars.cloudflare_api_token`, /looks like a credential/);
  // non-credential names and non-string values are plain vars
  f = inline(['vars: { token_ttl: 300, password_min_length: 12, secret_count: 0, api_key_file: /run/secrets/k }', 'hosts: {}']);
  assert.deepEqual(loadInventory(f).vars, { token_ttl: 300, password_min_length: 12, secret_count: 0, api_key_file: '/run/secrets/k' });
});

test('env references: invalid names, non-string names, values too short, missing explicit env file', () => {
  const env = path.join(tmp, 'short.env');
  writeFileSync(env, 'WPF_SHORT=abc\nWPF_EMPTY=\n');
  let f = inline(['vars:', '  t: { env: "BAD-NAME" }', 'hosts: {}']);
  rejects(load(f, env), `${f}:2 vars.t`, /invalid env var name 'BAD-NAME'/);
  f = inline(['vars:', '  t: { env: 3 }', 'hosts: {}']);
  rejects(load(f, env), `${f}:2 vars.t.env`, /must be a string, got the number 3/);
  f = inline(['vars:', '  t: { env: WPF_SHORT }', 'hosts: {}']);
  const e = rejects(load(f, env), `${f}:2 vars.t`, /env var WPF_SHORT is too short to be a credential \(3 characters; at least 4/);
  assert.doesNotMatch(e.message, /abc/);
  f = inline(['vars:', '  t: { env: WPF_EMPTY }', 'hosts: {}']);
  rejects(load(f, env), `${f}:2 vars.t`, /env var WPF_EMPTY is not set \(or empty\)/);
  f = inline(['hosts: {}']);
  assert.throws(
    load(f, path.join(tmp, 'missing.env')),
    (x: unknown) => x instanceof InputError && x.exitCode === 4 && /env file not found: .*missing\.env/.test(x.message),
  );
});

test('several missing credentials are reported together, the first one as the place', () => {
  for (const v of ['WPF_MISS_A', 'WPF_MISS_B', 'WPF_MISS_C']) delete process.env[v];
  const f = inline([
    'vars:',
    '  a: { env: WPF_MISS_A }',
    'hosts:',
    '  h: { address: 10.0.0.1, become_password: { env: WPF_MISS_B } }',
    'groups:',
    '  g: { hosts: [h], vars: { deep: { list: [ { env: WPF_MISS_C } ] } } }',
  ]);
  const e = rejects(load(f, `${FIX}/farm.env`), `${f}:2 vars.a`, /env var WPF_MISS_A is not set/);
  assert.match(e.message, /and 2 more problem\(s\)/);
  assert.match(e.message, new RegExp(`${f.replace(/[.]/g, '\\.')}:4:\\d+ hosts\\.h\\.become_password: env var WPF_MISS_B is not set`));
  assert.match(
    e.message,
    new RegExp(`${f.replace(/[.]/g, '\\.')}:6:\\d+ groups\\.g\\.vars\\.deep\\.list\\[0\\]: env var WPF_MISS_C is not set`),
  );
});

test('an alias bomb in vars is stopped, quickly', () => {
  const lines = ['vars:', '  a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i <= 7; i++) lines.push(`  a${i}: &a${i} [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}]`);
  lines.push('hosts: {}');
  const f = inline(lines);
  const t0 = performance.now();
  assert.throws(
    load(f),
    (e: unknown) =>
      e instanceof InputError &&
      e.exitCode === 4 &&
      e.message.startsWith(`${f}:`) &&
      /vars\.a\d[[\]\d]*: value too large \(alias expansion limit\)/.test(e.message),
  );
  const ms = performance.now() - t0;
  assert.ok(ms < 5000, `took ${ms} ms`);
});

test('extra vars must be key=value', () => {
  assert.deepEqual(parseExtraVars(['a=1', 'b=', 'c=x=y']), { a: '1', b: '', c: 'x=y' });
  for (const bad of ['novalue', '=x', 'bad-key=1', ' =1']) {
    assert.throws(
      () => parseExtraVars([bad]),
      (e: unknown) => e instanceof InputError && e.exitCode === 4 && /must be key=value/.test(e.message),
      bad,
    );
  }
});

test('a process that loads a bad inventory exits 4 with the message on stderr', () => {
  const script = [
    `import { loadInventory } from ${JSON.stringify(path.join(root, 'lib/inventory.ts'))};`,
    `try { loadInventory(process.argv[1]); } catch (e) { process.stderr.write(e.message + '\\n'); process.exit(e.exitCode ?? 1); }`,
  ].join('\n');
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, `${FIX}/bad-port.yml`], {
    cwd: root,
    encoding: 'utf8',
  });
  assert.equal(r.status, 4, r.stderr);
  assert.match(r.stderr, /^test\/fixtures\/inventory\/bad-port\.yml:5:\d+ hosts\.db1\.port: must be an integer/);
});

test('mutated inventories (fixed seed): every failure is an InputError that starts with file:line', () => {
  const base = readFileSync(`${FIX}/farm.yml`, 'utf8');
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pieces = [' ', ':', '{', '}', '[', ']', ',', '-', '\n', '  ', '&a', '*a', '!x', '"', "'", 'env', '#', '~', '0', 'null', 'all'];
  const file = path.join(tmp, 'mutated.yml');
  let loaded = 0;
  let refused = 0;
  for (let i = 0; i < 150; i++) {
    let t = base;
    for (let j = 1 + rnd(3); j > 0; j--) {
      const pos = rnd(t.length);
      const op = rnd(3);
      if (op === 0) t = t.slice(0, pos) + t.slice(pos + 1 + rnd(5));
      else if (op === 1) t = t.slice(0, pos) + pieces[rnd(pieces.length)] + t.slice(pos);
      else {
        const ls = t.split('\n');
        const a = rnd(ls.length);
        const b = rnd(ls.length);
        [ls[a], ls[b]] = [ls[b]!, ls[a]!];
        t = ls.join('\n');
      }
    }
    writeFileSync(file, t);
    try {
      loadInventory(file, { envFile: `${FIX}/farm.env` });
      loaded++;
    } catch (e) {
      assert.ok(e instanceof InputError, `mutation ${i}: ${(e as Error).stack}\n--- input:\n${t}`);
      assert.match(e.message, new RegExp(`^${file.replace(/[.]/g, '\\.')}:\\d+[ :]`), `mutation ${i}: ${e.message}`);
      refused++;
    }
  }
  assert.ok(loaded > 0 && refused > 0, `loaded ${loaded}, refused ${refused}`);
});
