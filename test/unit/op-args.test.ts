// Declarative argument specs (lib/ops/base.ts argSpec): one bad argument per operation. Each error is an
// InputErrors (exit 4) naming the operation's field and the file:line:col of the call that built the step.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { EXIT, explainExit, RemoteCommandError } from '../../lib/errors.ts';
import { apt } from '../../lib/ops/apt.ts';
import { blockinfile } from '../../lib/ops/blockinfile.ts';
import { command } from '../../lib/ops/command.ts';
import { dockerConfig, dockerNetwork, dockerSecret, secretPrune, stackDeploy } from '../../lib/ops/docker.ts';
import { download } from '../../lib/ops/download.ts';
import { copy, directory, file } from '../../lib/ops/files.ts';
import { lineinfile } from '../../lib/ops/lineinfile.ts';
import { replace } from '../../lib/ops/replace.ts';
import { stat } from '../../lib/ops/stat.ts';
import { sysctl } from '../../lib/ops/sysctl.ts';
import { systemd, unitFile } from '../../lib/ops/systemd.ts';
import { template } from '../../lib/ops/template.ts';
import { absPath, argSpec, pattern } from '../../lib/ops/base.ts';
import { authorizedKey, group, user } from '../../lib/ops/users.ts';
import { registerSecret } from '../../lib/secrets.ts';
import { InputErrors, z } from '../../lib/schema.ts';
import { localExec } from './ops-sys.harness.ts';

/** the line this is called from */
function here(): number {
  return Number(/op-args\.test\.ts:(\d+):\d+/.exec(new Error().stack!.split('\n')[2]!)![1]);
}

const SOURCE = readFileSync(import.meta.filename, 'utf8');

/** 1-based line:col of a character offset in this file */
function lineCol(offset: number): [number, number] {
  const before = SOURCE.slice(0, offset).split('\n');
  return [before.length, before.at(-1)!.length + 1];
}

/**
 * build() must throw InputErrors naming `field`, with a message matching `msg`, located at this file's line:col of
 * the call to `callee` written just before the field's quoted name (found in the source text, so the formatter
 * may wrap the call freely; each field is named once in this file).
 */
function bad(build: () => unknown, field: string, msg: RegExp, callee = field.split('.')[0]!): void {
  const quoted = `'${field}'`;
  const named = SOURCE.indexOf(quoted);
  assert.ok(named >= 0 && SOURCE.indexOf(quoted, named + 1) < 0, `${quoted} is written once in this file`);
  const at = SOURCE.lastIndexOf(`${callee}(`, named);
  assert.ok(at >= 0, `a call to ${callee} precedes ${quoted}`);
  const [line, col] = lineCol(at);
  assert.throws(build, (e: unknown) => {
    assert.ok(e instanceof InputErrors, `InputErrors expected, got ${String(e)}`);
    assert.equal(e.exitCode, EXIT.BAD_INPUT);
    const first = e.messages[0]!;
    assert.match(first, new RegExp(`^test/unit/op-args\\.test\\.ts:${line}:${col} ${field.replace(/[.[\]]/g, '\\$&')}: `), first);
    assert.match(first, msg, first);
    return true;
  });
}

// biome-ignore lint/suspicious/noExplicitAny: bad arguments on purpose (what a JavaScript caller or a spread could pass)
const anyArgs = (v: unknown) => v as any;

test('every operation: one bad argument, named, at the caller file:line', () => {
  bad(() => apt({ packages: ['nginx; rm -rf /'] }), 'apt.packages[0]', /invalid Debian package name/);
  bad(() => apt(anyArgs({ packages: ['nginx'], state: 'installed' })), 'apt.state', /must be "present" or "absent" or "latest"/);
  bad(() => command({ cmd: '' }), 'command.cmd', /invalid value|non-empty/);
  bad(() => command({ cmd: 'true', env: { 'BAD-NAME': 'x' } }), 'command.env.BAD-NAME', /invalid environment variable name "BAD-NAME"/);
  bad(() => dockerNetwork({ name: '-x' }), 'dockerNetwork.name', /invalid network name "-x"/);
  bad(() => dockerSecret({ name: 'a;b', content: 'x' }), 'dockerSecret.name', /invalid secret name prefix/);
  bad(() => dockerConfig(anyArgs({ name: 'ok', content: 3 })), 'dockerConfig.content', /invalid value|must be/);
  bad(() => secretPrune(anyArgs({ kind: 'volume', prefixes: [] })), 'secretPrune.kind', /must be "secret" or "config"/);
  bad(
    () => stackDeploy(anyArgs({ name: 's', compose: 'services: {}', resolveImage: 'sometimes' })),
    'stackDeploy.resolveImage',
    /must be "always"/,
  );
  bad(() => download({ url: 'http://x', dest: '/x', sha256: 'abc' }), 'download.sha256', /must be 64 hex digits/);
  bad(() => directory({ path: '/', state: 'absent' }), 'directory.path', /refusing to remove \//);
  bad(() => file({ path: 'relative', content: 'x' }), 'file.path', /must be an absolute path/);
  bad(() => file({ path: '/x', state: 'link' }), 'file.src', /is required when state is "link"/);
  bad(
    () => copy(anyArgs({ path: '/x', src: 'a', contnet: 'typo' })),
    'file.contnet',
    /unknown key 'contnet'.*did you mean 'content'/,
    'copy',
  );
  bad(() => lineinfile({ path: '/x', regexp: 'a', searchString: 'a' }), 'lineinfile.searchString', /mutually exclusive with regexp/);
  bad(() => lineinfile({ path: '/x', line: 'a', backrefs: true }), 'lineinfile.regexp', /is required when backrefs is true/);
  bad(() => blockinfile(anyArgs({ path: '/x' })), 'blockinfile.block', /is required when state is "present"/);
  bad(() => blockinfile({ path: '/x', block: 'a', insertAfter: 'x', insertBefore: 'y' }), 'blockinfile.insertBefore', /mutually exclusive/);
  bad(() => replace(anyArgs({ path: '/x' })), 'replace.regexp', /invalid value|is required/);
  bad(() => replace({ path: '/x', regexp: 'a', after: '' }), 'replace.after', /must be a non-empty regexp/);
  bad(() => template({ path: '/x', src: '' }), 'template.src', /non-empty/);
  bad(() => sysctl({ name: 'a b', value: 1 }), 'sysctl.name', /invalid name "a b"/);
  bad(() => systemd(anyArgs({ name: 'ssh', state: 'running' })), 'systemd.state', /must be "started" or "stopped"/);
  bad(() => unitFile({ name: '../etc/passwd', content: '' }), 'unitFile.name', /invalid unit name/);
  bad(() => user({ name: 'x', shell: 'bash' }), 'user.shell', /must be an absolute path/);
  bad(() => group({ name: 'g', gid: -1 }), 'group.gid', /must be at least 0/);
  bad(() => authorizedKey(anyArgs({ user: 'a b', key: 'ssh-ed25519 AAAA x' })), 'authorizedKey.user', /invalid account name/);
  bad(() => stat('etc/x'), 'stat.path', /must be an absolute path/);
});

test('a check inside the operation (not in the spec) is reported at the same place, under the operation', () => {
  bad(() => lineinfile({ path: '/x', line: 'a', regexp: '(' }), 'lineinfile', /invalid regular expression/);
  bad(() => file({ path: '/x', mode: 'u+y' }), 'file', /invalid mode/);
});

test('defaults are applied (state present, markers, timeout) and the step records where it was built', () => {
  const line = here() + 1;
  const op = blockinfile({ path: '/etc/x', block: 'a' });
  assert.equal(op.location, `test/unit/op-args.test.ts:${line}:14`);
  assert.equal(op.title, 'blockinfile /etc/x');
});

test('the location of a step built again on the same line (once per host) is the same; other lines keep their own', () => {
  const build = () => file({ path: '/etc/y', content: 'y' }); // one helper, two callers below: its own line is the caller
  const line = here() + 2;
  const seen = new Set<string | undefined>();
  for (let i = 0; i < 3; i++) seen.add(file({ path: `/etc/x${i}`, content: 'x' }).location);
  assert.deepEqual([...seen], [`test/unit/op-args.test.ts:${line}:40`]);
  const a = build().location;
  const b = [0].map(() => build().location)[0];
  assert.equal(a, `test/unit/op-args.test.ts:${line - 3}:23`);
  assert.equal(b, a, 'the helper line, whoever calls it');
  const other = directory({ path: '/etc/z' }).location;
  assert.equal(other, `test/unit/op-args.test.ts:${here() - 1}:17`);
});

test('the same arguments again (once per host) are checked once: equal values, never shared; bad ones refused each time', () => {
  const spec = argSpec<{ path: string; mode?: string; tags?: string[]; re?: string | RegExp }>()('probe', {
    path: absPath,
    mode: z.string().default('0644'),
    tags: z.array(z.string()).optional(),
    re: pattern.optional(),
  });
  const a = spec.parse({ path: '/etc/x/', tags: ['a'] });
  const b = spec.parse({ path: '/etc/x/', tags: ['a'] });
  assert.deepEqual(a, { path: '/etc/x', mode: '0644', tags: ['a'] }, 'transforms and defaults applied');
  assert.deepEqual(b, a);
  assert.notEqual(b, a, 'each call gets its own object');
  assert.notEqual(b.tags, a.tags, 'and its own nested values');
  a.tags!.push('changed by the first host');
  assert.deepEqual(spec.parse({ path: '/etc/x/', tags: ['a'] }).tags, ['a'], 'what one caller does to its values stays its own');
  for (let i = 0; i < 2; i++) assert.throws(() => spec.parse({ path: 'relative', tags: ['a'] }, 'r.ts:1:1'), InputErrors);
  const re = /x/;
  assert.equal(spec.parse({ path: '/etc/x', re }).re, re, 'a RegExp is checked as it is (not remembered as data)');
  assert.throws(() => spec.parse({ path: '/etc/x', re: 5 as unknown as string }, 'r.ts:1:1'), InputErrors);
});
test('exit codes explained with real processes: 127, 126, 137, 1; stderr tail masked', async () => {
  const secret = registerSecret('Pw-op-args-7c1d');
  const run = async (cmd: string) => {
    const r = await localExec(cmd, { nothrow: true });
    return new RemoteCommandError('h1', cmd, r.code, r.stdout, r.stderr);
  };
  const e127 = await run(`wpfarm-nope-${secret} 2>&1 >&2`);
  assert.equal(e127.code, 127);
  assert.match(e127.message, /^h1: command failed \(exit 127: command not found \(not installed, or not in PATH\)\)/);
  assert.match(e127.message, /wpfarm-nope-\*\*\*: command not found/, 'stderr tail present, secret masked');
  assert.doesNotMatch(e127.message, new RegExp(secret));
  const e126 = await run('f=$(mktemp); printf "echo hi\\n" > "$f"; chmod 0644 "$f"; "$f"; c=$?; rm -f "$f"; exit $c');
  assert.equal(e126.code, 126);
  assert.match(e126.message, /exit 126: command found but not executable/);
  assert.match(e126.message, /Permission denied/);
  const e137 = await run("bash -c 'echo about to die >&2; kill -9 $$'; exit $?");
  assert.equal(e137.code, 137);
  assert.match(e137.message, /exit 137: killed \(kill -9, the out-of-memory killer, or a timeout\): signal SIGKILL \(9\)/);
  assert.match(e137.message, /about to die/);
  const e1 = await run('echo nope >&2; false');
  assert.match(e1.message, /exit 1: general error/);
  assert.match(explainExit(130), /interrupted \(Ctrl-C\): signal SIGINT/);
  assert.match(explainExit(143), /terminated .*SIGTERM/);
  assert.match(explainExit(2), /misuse/);
});
