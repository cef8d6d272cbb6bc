// lib/cli.ts, the one command-line parser: --help is generated from the option declarations (every option in
// it), values are checked (exit 4 naming the option), one inventory default; and every playbook's --help runs
// (exit 0, its own options listed) and an unknown option exits 4 naming it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { COMMON_OPTIONS, type CommandSpec, defaultInventory, helpText, parseCli } from '../../lib/cli.ts';
import { list, splitList, str } from '../../lib/vars.ts';
import { EXIT, InputError } from '../../lib/errors.ts';
import { PHASES } from '../../playbooks/phases.ts';

const CMD: CommandSpec = {
  name: 'demo.ts',
  summary: 'A demo command.',
  options: [
    { name: 'domain', type: 'string', arg: 'DOMAIN', help: 'the domain' },
    { name: 'aliases', type: 'list', repeatable: true, help: 'other names' },
    { name: 'replicas', short: 'r', type: 'integer', min: 1, max: 20, help: 'tasks' },
    { name: 'format', type: 'string', choices: ['table', 'json'], default: 'table', help: 'output' },
    { name: 'yes', type: 'boolean', help: 'confirm' },
  ],
  epilog: 'The end.',
};

function inputError(f: () => unknown, re: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.exitCode, EXIT.BAD_INPUT);
    assert.match(e.message, re);
    return true;
  });
}

test('--help is generated from the declarations: every option, its short flag, choices, default', () => {
  const h = helpText(CMD);
  assert.match(h, /^usage: demo\.ts \[options\]\n\nA demo command\./);
  for (const o of [...CMD.options!, ...COMMON_OPTIONS]) {
    assert.match(h, new RegExp(`--${o.name}\\b`), `--${o.name} in the help`);
    if (o.short) assert.match(h, new RegExp(`-${o.short}, --${o.name}\\b`), `-${o.short} in the help`);
    assert.ok(h.includes(o.help), `help text of --${o.name}`);
  }
  assert.match(h, /--format VALUE\s+output \(one of table, json; default: table\)/);
  assert.match(h, /-r, --replicas N\s+tasks \(1\.\.20\)/);
  assert.match(h, /-i, --inventory FILE\s+.*default: \$WPFARM_INVENTORY, else inventory\/lab\.yml; repeatable/);
  assert.match(h, /The end\.\n$/);
  // a command that takes only some common options lists only those
  const few = helpText({ name: 'few.ts', summary: 'x', common: ['inventory', 'check'] });
  assert.match(few, /--inventory/);
  assert.match(few, /--check/);
  assert.match(few, /--help/);
  assert.doesNotMatch(few, /--forks|--limit|--extra-vars/);
});

test('values: types, defaults, lists, repeatable, counted -v', () => {
  const p = parseCli(
    [
      '--domain',
      'a.com',
      '--aliases',
      'b.com, c.com,,',
      '--aliases=d.com',
      '-r',
      '3',
      '--yes',
      '-vv',
      '-t',
      'x,y',
      '-e',
      'a=1',
      '-e',
      'b=2',
    ],
    CMD,
  );
  assert.equal(p.opts.domain, 'a.com');
  assert.deepEqual(p.opts.aliases, ['b.com', 'c.com', 'd.com']);
  assert.equal(p.opts.replicas, 3);
  assert.equal(p.opts.format, 'table');
  assert.equal(p.opts.yes, true);
  assert.equal(p.flags.verbose, 2);
  assert.deepEqual(p.flags.tags, ['x', 'y']);
  assert.deepEqual(p.flags.extraVars, ['a=1', 'b=2']);
  assert.equal(p.flags.forks, 50);
  assert.equal(p.flags.check, false);
  const none = parseCli([], CMD);
  assert.equal(none.opts.domain, undefined);
  assert.equal(none.opts.yes, false);
  assert.equal(none.opts.aliases, undefined);
  assert.deepEqual(splitList(' a ,b,, c'), ['a', 'b', 'c']);
  assert.deepEqual(splitList('a'), ['a']);
});

test("lib/vars.ts: one str and one list for every role ('a,b' is two items, as from -e name=a,b)", () => {
  assert.deepEqual(list('a,b'), ['a', 'b']);
  assert.deepEqual(list(' 10.0.0.0/8 , 192.168.0.0/16 '), ['10.0.0.0/8', '192.168.0.0/16']);
  assert.deepEqual(list(['a,b', 3]), ['a,b', '3'], 'a YAML list is taken as is');
  assert.deepEqual(list(''), []);
  assert.deepEqual(list(undefined), []);
  assert.deepEqual(list(7), []);
  assert.equal(str('x', 'd'), 'x');
  assert.equal(str('', 'd'), 'd');
  assert.equal(str(5, 'd'), 'd');
});

test('one inventory default: $WPFARM_INVENTORY, else inventory/lab.yml; -i repeatable, passed on in order', () => {
  const saved = process.env.WPFARM_INVENTORY;
  try {
    delete process.env.WPFARM_INVENTORY;
    assert.equal(defaultInventory(), 'inventory/lab.yml');
    assert.deepEqual(parseCli([], CMD).flags.inventory, ['inventory/lab.yml']);
    process.env.WPFARM_INVENTORY = 'inventory/other.yml';
    assert.deepEqual(parseCli([], CMD).flags.inventory, ['inventory/other.yml']);
    assert.deepEqual(parseCli(['-i', 'x.yml'], CMD).flags.inventory, ['x.yml']);
    // several -i: every file, in order (loadInventory merges them, later wins)
    assert.deepEqual(parseCli(['-i', 'a.yml', '--inventory', 'b.yml', '--inventory=c.yml'], CMD).flags.inventory, [
      'a.yml',
      'b.yml',
      'c.yml',
    ]);
  } finally {
    if (saved === undefined) delete process.env.WPFARM_INVENTORY;
    else process.env.WPFARM_INVENTORY = saved;
  }
});

test('bad input: unknown options and bad values are InputErrors (exit 4) naming the option', () => {
  inputError(() => parseCli(['--bogus'], CMD), /unknown option '--bogus'\nusage: demo\.ts \[options\]/);
  inputError(() => parseCli(['-Z'], CMD), /unknown option '-Z'/);
  inputError(() => parseCli(['--replicas', 'many'], CMD), /--replicas must be an integer from 1 to 20, got 'many'/);
  inputError(() => parseCli(['--replicas', '21'], CMD), /--replicas must be an integer from 1 to 20, got '21'/);
  inputError(() => parseCli(['--forks', '0'], CMD), /--forks must be an integer from 1 to 1000, got '0'/);
  inputError(() => parseCli(['--format', 'xml'], CMD), /--format must be one of table, json, got 'xml'/);
  inputError(() => parseCli(['--domain'], CMD), /option '--domain' needs a value/);
  inputError(() => parseCli(['--yes=no'], CMD), /option '--yes' takes no value/);
  inputError(() => parseCli(['stray'], CMD), /unexpected argument 'stray'/);
  const withArgs: CommandSpec = { name: 'r.ts', summary: 'x', positionals: { usage: 'ROLE', min: 1, max: 1 } };
  assert.deepEqual(parseCli(['common', '-l', 'web1'], withArgs).positionals, ['common']);
  inputError(() => parseCli([], withArgs), /missing ROLE/);
  inputError(() => parseCli(['a', 'b'], withArgs), /unexpected argument 'b'/);
  assert.throws(
    () => parseCli([], { name: 'x.ts', summary: '', options: [{ name: 'check', type: 'boolean', help: '' }] }),
    /--check declared twice/,
  );
});

// ---------------------------------------------------------------------------------------------------
// every playbook, spawned as an operator runs it

function spawnNode(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** each playbook's own options (the common ones are checked for the Run playbooks) */
const OWN: Record<string, string[]> = {
  'audit.ts': ['site', 'host', 'since', 'until', 'format', 'inventory', 'extra-vars', 'accept-new-host-keys'],
  'add-site.ts': ['domain', 'aliases', 'title', 'admin-email', 'admin-user', 'replicas', 'id', 'sites-dir'],
  'add-sites.ts': ['from', 'concurrency', 'sites-dir'],
  'backup.ts': [
    'what',
    'site',
    'prune',
    'restore-test',
    'verify-replica',
    'deep',
    'textfile-dir',
    'install-timers',
    'unit-dir',
    'local',
    'sites-dir',
  ],
  'bootstrap.ts': ['phase', 'from-phase'],
  'capacity.ts': [
    'target-sites',
    'size',
    'nodes',
    'sites-dir',
    'prices',
    'reserve',
    'mem-per-site',
    'cpu-per-site',
    'no-measure',
    'format',
    'inventory',
    'limit',
    'forks',
    'connect-timeout',
    'accept-new-host-keys',
    'extra-vars',
    'verbose',
  ],
  'dr-drill.ts': ['sample', 'site', 'markdown', 'local', 'sites-dir'],
  'drift.ts': ['roles', 'textfile-dir', 'install-timer', 'unit-dir'],
  'dns.ts': ['zone', 'target', 'no-proxy', 'api-url', 'dotenv', 'inventory', 'check', 'verbose'],
  'edge-rules.ts': ['zone', 'sites-dir', 'api-url', 'dotenv', 'inventory', 'check', 'verbose'],
  'lock.ts': ['force', 'format', 'inventory', 'extra-vars', 'accept-new-host-keys'],
  'image.ts': ['lab', 'keep', 'size', 'api-url', 'dotenv', 'poll-ms', 'inventory', 'check', 'verbose'],
  'list-sites.ts': ['sites-dir', 'format'],
  'migrate-site.ts': ['from', 'domain', 'new-domain', 'state-dir', 'key', 'farm-wordpress', 'until', 'rollback'],
  'migrate-sites.ts': ['plan', 'concurrency', 'state-dir', 'key', 'farm-wordpress', 'until', 'rollback'],
  'provision.ts': [
    'out',
    'destroy',
    'yes',
    'api-url',
    'address',
    'dotenv',
    'spaces-endpoint',
    'per-page',
    'poll-ms',
    'inventory',
    'check',
    'verbose',
  ],
  'remove-site.ts': ['domain', 'id', 'yes', 'no-backup', 'keep-files', 'sites-dir'],
  'restore-db.ts': ['site', 'date', 'into', 'yes', 'local', 'sites-dir'],
  'restore-files.ts': ['site', 'date', 'yes', 'local', 'sites-dir'],
  'rollback.ts': ['site', 'wave', 'state', 'sites-dir'],
  'rotate-secrets.ts': ['domain', 'all', 'due', 'sites-dir'],
  'run-role.ts': [],
  'scale-site.ts': ['domain', 'id', 'replicas', 'sites-dir'],
  'update.ts': ['images', 'plugin', 'plugin-store', 'only', 'except', 'canary', 'wave-size', 'max-failures', 'state', 'sites-dir'],
};
/** commands that take only some of the common options (their own list above names them) */
const FEW = new Set(['dns.ts', 'edge-rules.ts', 'image.ts', 'provision.ts', 'audit.ts', 'lock.ts', 'capacity.ts']);
/** modules of playbooks/ that are not commands */
const NOT_COMMANDS = new Set(['phases.ts']);

test('every playbook: --help runs (exit 0) and lists its options; an unknown option exits 4 naming it', async () => {
  const playbooks = readdirSync('playbooks')
    .filter((f) => f.endsWith('.ts') && !NOT_COMMANDS.has(f))
    .sort();
  assert.deepEqual(playbooks, Object.keys(OWN).sort(), 'every playbook is listed in this test');
  // two at a time: the machine has 2 cores
  const queue = [...playbooks];
  const problems: string[] = [];
  const worker = async () => {
    for (let pb = queue.shift(); pb; pb = queue.shift()) {
      const h = await spawnNode([`playbooks/${pb}`, '--help']);
      if (h.code !== 0) problems.push(`${pb} --help: exit ${h.code}: ${h.stderr.slice(0, 300)}`);
      if (!h.stdout.startsWith(`usage: ${pb} [options]`)) problems.push(`${pb} --help: starts ${JSON.stringify(h.stdout.slice(0, 60))}`);
      const want = [...OWN[pb]!, 'help', ...(FEW.has(pb) ? [] : COMMON_OPTIONS.map((o) => o.name))];
      for (const o of want) if (!new RegExp(`--${o}\\b`).test(h.stdout)) problems.push(`${pb} --help lacks --${o}`);
      // bootstrap's help prints the roadmap from playbooks/phases.ts
      if (pb === 'bootstrap.ts')
        for (const p of PHASES)
          if (!h.stdout.includes(`${p.n}. ${p.title}: ${p.roles.join(', ')}`)) problems.push(`bootstrap.ts --help lacks phase ${p.n}`);
      // the parser is one: an unknown option is proved on one playbook of each kind (Run, backup, cloud)
      if (!['add-site.ts', 'restore-db.ts', 'provision.ts', 'run-role.ts'].includes(pb)) continue;
      const bad = await spawnNode([`playbooks/${pb}`, '--no-such-option']);
      if (bad.code !== 4) problems.push(`${pb} --no-such-option: exit ${bad.code} (want 4)`);
      if (!/unknown option '--no-such-option'/.test(bad.stderr))
        problems.push(`${pb} --no-such-option: ${JSON.stringify(bad.stderr.slice(0, 200))}`);
    }
  };
  await Promise.all([worker(), worker()]);
  assert.deepEqual(problems, []);
});

test('the phases of bootstrap and drift: numbered 1..N, every role once, each one in roles/ (a missing one would be skipped)', () => {
  assert.deepEqual(
    PHASES.map((p) => p.n),
    PHASES.map((_, i) => i + 1),
  );
  const roles = PHASES.flatMap((p) => p.roles);
  assert.deepEqual(
    roles.filter((r, i) => roles.indexOf(r) !== i),
    [],
    'no role twice',
  );
  assert.deepEqual(
    roles.filter((r) => !existsSync(`roles/${r}/role.ts`)),
    [],
    'every role exists',
  );
  // the management layer comes after what it stands on: Traefik in front of its API, the sites it gives teams
  const phaseOf = (r: string) => PHASES.find((p) => p.roles.includes(r))?.n ?? 0;
  assert.equal(phaseOf('portainer'), 4);
  for (const before of ['swarm-manager', 'gluster', 'traefik', 'wp-site']) assert.ok(phaseOf(before) < phaseOf('portainer'), before);
});
