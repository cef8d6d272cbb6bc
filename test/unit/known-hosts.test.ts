// known_hosts semantics (lib/known-hosts.ts) checked against OpenSSH's own reading of the same file:
// `ssh-keygen -F name -f file` lists the lines that apply to a name (negation, wildcards, hashed names, markers).
// Real ssh's refusal of a @revoked key is checked against a real sshd in test/engine/secrets.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { entriesForHost, judgeHostKey, knownHostsFor, parseKnownHosts, verifyHostKey, wildcardMatch } from '../../lib/known-hosts.ts';

const dir = mkdtempSync(join(tmpdir(), 'wpfarm-kh-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

function newKey(name: string): { line: string; blob: Buffer; type: string } {
  const f = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', f]);
  const [type, b64] = readFileSync(`${f}.pub`, 'utf8').trim().split(' ') as [string, string];
  return { line: `${type} ${b64}`, blob: Buffer.from(b64, 'base64'), type };
}

const A = newKey('a');
const B = newKey('b');
const C = newKey('c');

/** line numbers OpenSSH's ssh-keygen -F reports for `name` */
function opensshLines(file: string, name: string): number[] {
  const r = spawnSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8' });
  return [...r.stdout.matchAll(/found: line (\d+)/g)].map((m) => Number(m[1])).sort((x, y) => x - y);
}

const FILE_TEXT = [
  `# comment`,
  `10.0.0.1 ${A.line}`, // 2
  `10.0.0.*,!10.0.0.13 ${B.line}`, // 3 negation
  `[10.0.0.5]:2222 ${C.line}`, // 4 port
  `web?.example.com,!web9.example.com ${A.line}`, // 5
  `@revoked * ${C.line}`, // 6
  `@cert-authority *.farm.test ${B.line}`, // 7
  `@bogus 10.0.0.1 ${A.line}`, // 8 unknown marker: ignored by both
  `WEB.Example.COM ${B.line}`, // 9 case-insensitive
  `10.0.0.13 ssh-ed25519 AAAAnotakey`, // 10 broken key: skipped
  `[10.0.0.*]:22?? ${A.line}`, // 11 wildcard in a bracketed name
  '',
].join('\n');

const NAMES = [
  '10.0.0.1',
  '10.0.0.13',
  '10.0.0.7',
  '[10.0.0.5]:2222',
  '10.0.0.5',
  'web1.example.com',
  'web9.example.com',
  'web.example.com',
  'db.farm.test',
  '[10.0.0.9]:2201',
  '[10.0.0.9]:22',
  'other',
];

test('the lines that apply to a name are the ones ssh-keygen -F finds (negation, wildcards, ports, markers, case)', () => {
  const file = join(dir, 'known_hosts');
  writeFileSync(file, FILE_TEXT);
  const entries = parseKnownHosts(FILE_TEXT);
  assert.ok(!entries.some((e) => e.line === 8 || e.line === 10), 'unknown marker and broken key skipped');
  let compared = 0;
  for (const name of NAMES) {
    const ours = entriesForHost(entries, name).map((e) => e.line);
    // ssh-keygen -F lists a line whose key does not parse (line 10); ssh itself cannot use it, nor do we
    const theirs = opensshLines(file, name).filter((l) => l !== 10);
    assert.deepEqual(ours, theirs, `${name}: wpfarm ${ours.join(',')} vs ssh-keygen -F ${theirs.join(',')}`);
    assert.deepEqual(
      knownHostsFor(file, name).map((e) => e.line),
      ours,
      `${name}: the cached index agrees`,
    );
    compared++;
  }
  assert.equal(compared, NAMES.length);
  // the negation case really excluded a line that a positive pattern matched
  assert.ok(entriesForHost(entries, '10.0.0.7').some((e) => e.line === 3));
  assert.ok(!entriesForHost(entries, '10.0.0.13').some((e) => e.line === 3));
});

test('hashed names (ssh-keygen -H) match exactly the names they hash, as ssh-keygen -F says', () => {
  const file = join(dir, 'hashed');
  writeFileSync(file, [`10.0.0.1 ${A.line}`, `[10.0.0.5]:2222 ${B.line}`, `db.farm.test ${C.line}`, ''].join('\n'));
  execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
  const text = readFileSync(file, 'utf8');
  assert.equal((text.match(/^\|1\|/gm) ?? []).length, 3, 'ssh-keygen hashed the three names');
  const entries = parseKnownHosts(text);
  for (const name of ['10.0.0.1', '[10.0.0.5]:2222', 'db.farm.test', '10.0.0.5', 'DB.farm.test', '10.0.0.10']) {
    // ssh lowercases the host name before it looks it up (ssh.c); ssh-keygen -F hashes the name as given
    assert.deepEqual(
      entriesForHost(entries, name).map((e) => e.line),
      opensshLines(file, name.toLowerCase()),
      name,
    );
  }
  assert.deepEqual(
    entriesForHost(entries, 'DB.farm.test').map((e) => e.line),
    [3],
  );
  assert.deepEqual(judgeHostKey(text, file, { address: '10.0.0.5', port: 2222 }, B.blob), { ok: true });
});

test('@revoked refuses the key even when another line trusts it; other keys of the host are unaffected', () => {
  const text = [`10.0.0.1 ${C.line}`, `10.0.0.1 ${A.line}`, `@revoked 10.0.0.* ${C.line}`, ''].join('\n');
  const v = judgeHostKey(text, '/kh', { address: '10.0.0.1', port: 22 }, C.blob);
  assert.equal(v !== 'unknown' && v.ok, false);
  assert.match((v as { reason: string }).reason, /REVOKED HOST KEY DETECTED for 10\.0\.0\.1: .*\/kh line 3 marks @revoked/);
  assert.deepEqual(judgeHostKey(text, '/kh', { address: '10.0.0.1', port: 22 }, A.blob), { ok: true });
  // a @revoked line for other hosts does not apply; with acceptNew a revoked key is never recorded
  assert.deepEqual(judgeHostKey(`@revoked 10.9.9.9 ${A.line}\n10.0.0.1 ${A.line}\n`, '/kh', { address: '10.0.0.1', port: 22 }, A.blob), {
    ok: true,
  });
  const file = join(dir, 'revoked-only');
  writeFileSync(file, `@revoked * ${B.line}\n`);
  const host = { name: 'h', address: '10.0.0.2', port: 22, user: 'root', groups: [], vars: {} };
  const r = verifyHostKey(file, host, B.blob, true);
  assert.equal(r.ok, false);
  assert.equal(readFileSync(file, 'utf8'), `@revoked * ${B.line}\n`, 'nothing recorded');
});

test('@cert-authority: a host known only through a CA is refused clearly, never accepted as new', () => {
  const file = join(dir, 'ca');
  writeFileSync(file, `@cert-authority *.farm.test ${B.line}\n`);
  const host = { name: 'db', address: 'db.farm.test', port: 22, user: 'root', groups: [], vars: {} };
  const r = verifyHostKey(file, host, A.blob, true);
  assert.equal(r.ok, false);
  assert.match((r as { reason: string }).reason, /@cert-authority, .* line 1\).*does not support host certificates.*Refused/);
  assert.equal(readFileSync(file, 'utf8'), `@cert-authority *.farm.test ${B.line}\n`, 'nothing recorded');
});

test('unknown host: refused without acceptNew; recorded 0600 in a new 0700 directory with it; changed key refused', () => {
  const file = join(dir, 'new', 'sub', 'known_hosts');
  const host = { name: 'h', address: '10.0.0.3', port: 2201, user: 'root', groups: [], vars: {} };
  const no = verifyHostKey(file, host, A.blob, false);
  assert.equal(no.ok, false);
  assert.match((no as { reason: string }).reason, /unknown host key for \[10\.0\.0\.3\]:2201/);
  assert.deepEqual(verifyHostKey(file, host, A.blob, true), { ok: true, recorded: true });
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'new', 'sub')).mode & 0o777, 0o700);
  assert.deepEqual(opensshLines(file, '[10.0.0.3]:2201'), [1], 'OpenSSH reads the line we wrote');
  assert.deepEqual(verifyHostKey(file, host, A.blob, false), { ok: true });
  const changed = verifyHostKey(file, host, B.blob, true);
  assert.match((changed as { reason: string }).reason, /HOST KEY CHANGED for \[10\.0\.0\.3\]:2201/);
});

test('wildcards: * and ? as OpenSSH match_pattern, no regular expression injection', () => {
  assert.ok(wildcardMatch('10.0.*.1', '10.0.200.1'));
  assert.ok(wildcardMatch('a?c', 'abc'));
  assert.ok(!wildcardMatch('a?c', 'ac'));
  assert.ok(wildcardMatch('*', ''));
  assert.ok(!wildcardMatch('a.c', 'abc'), 'a dot is literal');
  assert.ok(!wildcardMatch('(a|b)', 'a'), 'regex syntax is literal');
  assert.ok(wildcardMatch('*a*b*c', 'xxaxxbxxc'));
});
