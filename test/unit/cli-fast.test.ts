// The fast CLI (scripts/build-cli.ts): a small project of playbooks, roles and lib files built for real with
// esbuild and run for real through the generated launcher: the bundle runs while every source is unchanged,
// behaves as under tsx (argv[1], import.meta.url, a role loaded at run time shares lib/ with the playbook,
// exit codes), and anything changed or not in the build runs the sources through tsx instead.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { buildCli, staleReason } from '../../scripts/build-cli.ts';

// inside the checkout, so that the launcher and the build find node_modules (tsx, esbuild, yaml) as in the repo
mkdirSync('.wpfarm', { recursive: true });
const root = mkdtempSync(join(process.cwd(), '.wpfarm', 'cli-fast-test-'));
const cliDir = join(root, '.wpfarm/cli');
const put = (rel: string, text: string) => {
  mkdirSync(join(root, rel, '..'), { recursive: true });
  writeFileSync(join(root, rel), text);
};

before(() => {
  put(
    'lib/state.ts',
    `export const VERSION: string = 'v1';\nexport const seen: string[] = [];\nexport const stateUrl = import.meta.url;\n`,
  );
  // a non-literal dynamic import, as lib/play.ts loadRole does
  put(
    'lib/load.ts',
    `import { pathToFileURL } from 'node:url';\nimport { resolve } from 'node:path';\nexport const load = (f: string): Promise<{ default: { name: string } }> => import(pathToFileURL(resolve(f)).href);\n`,
  );
  put(
    'playbooks/hello.ts',
    `import { stringify } from 'yaml';
import { VERSION, seen, stateUrl } from '../lib/state.ts';
import { load } from '../lib/load.ts';
seen.push('playbook');
const arg = process.argv[2] ?? 'greet';
const role = await load(process.env.ROLE_FILE ?? (arg.endsWith('.ts') ? arg : 'roles/' + arg + '/role.ts'));
const main = import.meta.url === (await import('node:url')).pathToFileURL(process.argv[1] ?? '').href;
process.stdout.write(JSON.stringify({ version: VERSION, role: role.default.name, seen, stateUrl, argv1: process.argv[1], main, yaml: stringify({ a: 1 }) }) + '\\n');
process.exit(Number(process.env.EXIT ?? 0));
`,
  );
  put('roles/greet/role.ts', `import { seen } from '../../lib/state.ts';\nseen.push('role');\nexport default { name: 'greet' };\n`);
  put('extra/outside.ts', `import { seen } from '../lib/state.ts';\nseen.push('outside');\nexport default { name: 'outside' };\n`);
});
after(() => rmSync(root, { recursive: true, force: true }));

interface Out {
  version: string;
  role: string;
  seen: string[];
  stateUrl: string;
  argv1: string;
  main: boolean;
  yaml: string;
}
function launch(args: string[], env: Record<string, string> = {}): { code: number; out: Out; path: string } {
  const r = spawnSync(process.execPath, [join(cliDir, 'wpfarm.mjs'), ...args], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, WPFARM_CLI_DEBUG: '1', ...env },
  });
  assert.ok(r.stdout.trim(), `no output (exit ${r.status}): ${r.stderr}`);
  return { code: r.status ?? -1, out: JSON.parse(r.stdout.trim().split('\n').pop()!) as Out, path: r.stderr.trim() };
}

describe('fast CLI: prebuilt bundle, never stale, tsx otherwise', () => {
  test('build, then up to date; the bundle runs as tsx would', async () => {
    const b = await buildCli({ root, cliDir, quiet: true });
    assert.equal(b.built, true);
    assert.deepEqual(Object.keys(b.manifest.entries).sort(), ['playbooks/hello.ts', 'roles/greet/role.ts']);
    assert.ok(b.manifest.inputs.some(([f]) => f === 'lib/state.ts'));
    assert.ok(
      b.manifest.inputs.some(([f]) => f.endsWith('node_modules/yaml/package.json')),
      'a package counts by its package.json',
    );
    assert.ok(!b.manifest.inputs.some(([f]) => /node_modules\/yaml\/(?!package\.json)/.test(f)), 'not file by file');
    assert.equal(staleReason(cliDir, root), null);
    assert.equal((await buildCli({ root, cliDir, quiet: true })).built, false);

    const r = launch(['playbooks/hello.ts', 'greet'], { EXIT: '3' });
    assert.match(r.path, /^wpfarm-cli: bundle [0-9a-f]{16}\/playbooks\/hello\.mjs$/);
    assert.equal(r.code, 3, 'exit code of the playbook');
    assert.deepEqual(r.out, {
      version: 'v1',
      role: 'greet',
      seen: ['playbook', 'role'], // the role shares lib/state.ts with the playbook
      stateUrl: pathToFileURL(join(root, 'lib/state.ts')).href, // import.meta.url of the source file
      argv1: join(root, 'playbooks/hello.ts'),
      main: true,
      yaml: 'a: 1\n',
    });
    // the same through tsx, for comparison
    const t = spawnSync(process.execPath, ['--import', 'tsx', 'playbooks/hello.ts', 'greet'], { cwd: root, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(t.stdout), r.out);
  });

  test('a source touched with the same content: still the bundle (sha256 compared when the mtime moved)', () => {
    const f = join(root, 'lib/state.ts');
    utimesSync(f, new Date(), new Date(Date.now() + 5000));
    assert.equal(staleReason(cliDir, root), null);
    assert.match(launch(['playbooks/hello.ts']).path, /bundle/);
  });

  test('a changed source runs through tsx (the new code) until the next build', async () => {
    writeFileSync(join(root, 'lib/state.ts'), readFileSync(join(root, 'lib/state.ts'), 'utf8').replace("'v1'", "'v2'"));
    assert.equal(staleReason(cliDir, root), 'lib/state.ts changed');
    const r = launch(['playbooks/hello.ts', 'greet']);
    assert.equal(r.path, 'wpfarm-cli: lib/state.ts changed: running the sources through tsx');
    assert.equal(r.out.version, 'v2');
    assert.deepEqual(r.out.seen, ['playbook', 'role']);
    assert.equal(r.out.argv1, join(root, 'playbooks/hello.ts'));
    assert.equal((await buildCli({ root, cliDir, quiet: true })).built, true);
    const again = launch(['playbooks/hello.ts', 'greet']);
    assert.match(again.path, /bundle/);
    assert.equal(again.out.version, 'v2');
  });

  test('what the build lacks runs through tsx: a role file or a new role named on the command line, a role loaded at run time', async () => {
    const outside = launch(['playbooks/hello.ts', 'extra/outside.ts']);
    assert.equal(outside.path, 'wpfarm-cli: extra/outside.ts is not in the build: running the sources through tsx');
    assert.deepEqual([outside.out.role, outside.out.seen], ['outside', ['playbook', 'outside']]);

    // not on the command line: the bundle starts, then hands the whole run to tsx when the role is imported
    const late = launch(['playbooks/hello.ts'], { ROLE_FILE: 'extra/outside.ts', EXIT: '2' });
    assert.match(late.path, /^wpfarm-cli: bundle .*\nwpfarm-cli: .*extra\/outside\.ts is not in the build: rerun through tsx$/);
    assert.equal(late.code, 2);
    assert.deepEqual([late.out.role, late.out.seen], ['outside', ['playbook', 'outside']]);

    put('roles/newer/role.ts', `export default { name: 'newer' };\n`);
    assert.equal(staleReason(cliDir, root), 'not in the build: roles/newer/role.ts');
    const newer = launch(['playbooks/hello.ts', 'newer']);
    assert.equal(newer.path, 'wpfarm-cli: newer is not in the build: running the sources through tsx');
    assert.equal(newer.out.role, 'newer');
    await buildCli({ root, cliDir, quiet: true });
    assert.match(launch(['playbooks/hello.ts', 'newer']).path, /bundle/);
  });

  test('a playbook that is not in the build, or no build at all: tsx', () => {
    put(
      'playbooks/later.ts',
      `process.stdout.write(JSON.stringify({ version: 'later', role: '', seen: [], stateUrl: import.meta.url, argv1: process.argv[1], main: true, yaml: '' }) + '\\n');\n`,
    );
    const r = launch(['playbooks/later.ts']);
    assert.equal(r.path, 'wpfarm-cli: playbooks/later.ts is not in the build: running the sources through tsx');
    assert.equal(r.out.stateUrl, pathToFileURL(join(root, 'playbooks/later.ts')).href);
    rmSync(join(cliDir, 'current.json'));
    assert.equal(launch(['playbooks/hello.ts']).path, 'wpfarm-cli: no build: running the sources through tsx');
  });
});
