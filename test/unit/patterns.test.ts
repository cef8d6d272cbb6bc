// Host patterns (--limit and a role's hosts:), Ansible semantics, on the fixture farm.
// Run: node --import tsx --test test/unit/patterns*.test.ts
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadInventory } from '../../lib/inventory.ts';
import { globToRegExp, parseLimit, selectHosts, splitPattern } from '../../lib/patterns.ts';
import { InputError } from '../../lib/errors.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
process.chdir(root);
const FIX = 'test/fixtures/inventory';
const inv = loadInventory(`${FIX}/farm.yml`, { envFile: `${FIX}/farm.env` });
const ALL = ['mgr1', 'mgr2', 'mgr3', 'wrk1', 'wrk2', 'db1', 'db2', 'web10'];
const names = (pattern: string, limit?: string) => selectHosts(inv, pattern, limit).map((h) => h.name);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'wpf-pat-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function unknownPattern(fn: () => unknown, term: string): InputError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof InputError, `expected an InputError for '${term}', got ${String(caught)}`);
  assert.equal(caught.exitCode, 4);
  assert.ok(caught.message.startsWith(`unknown host pattern '${term}'`), caught.message);
  return caught;
}

test('all and * select every host in inventory order', () => {
  assert.deepEqual(names('all'), ALL);
  assert.deepEqual(names('*'), ALL);
  assert.equal(selectHosts(inv, 'all')[0], inv.hosts.get('mgr1'), 'the HostSpec objects of the inventory');
});

test('a host name, a group name (recursive through children)', () => {
  assert.deepEqual(names('db1'), ['db1']);
  assert.deepEqual(names('managers'), ['mgr1', 'mgr2', 'mgr3']);
  assert.deepEqual(names('swarm'), ['mgr1', 'mgr2', 'mgr3', 'wrk1', 'wrk2']);
  assert.deepEqual(names('edge'), ['mgr1', 'wrk1'], 'inventory order, not the group listing order');
  assert.deepEqual(names('empty'), [], 'a known empty group is not an error');
});

test('union by comma or colon, duplicates once, inventory order', () => {
  assert.deepEqual(names('wrk1,mgr1'), ['mgr1', 'wrk1']);
  assert.deepEqual(names('wrk1:mgr1'), ['mgr1', 'wrk1']);
  assert.deepEqual(names('managers,mgr1,edge'), ['mgr1', 'mgr2', 'mgr3', 'wrk1']);
  assert.deepEqual(names(' db1 , db2 ,'), ['db1', 'db2'], 'spaces and a trailing comma are tolerated');
});

test('globs on host and group names: * ? [..] [!..]', () => {
  assert.deepEqual(names('mgr*'), ['mgr1', 'mgr2', 'mgr3']);
  assert.deepEqual(names('wrk?'), ['wrk1', 'wrk2']);
  assert.deepEqual(names('db[12]'), ['db1', 'db2']);
  assert.deepEqual(names('mgr[2-3]'), ['mgr2', 'mgr3']);
  assert.deepEqual(names('db[!1]'), ['db2']);
  assert.deepEqual(names('work*'), ['wrk1', 'wrk2'], 'matches the group workers');
  assert.deepEqual(names('*ers'), ['mgr1', 'mgr2', 'mgr3', 'wrk1', 'wrk2'], 'groups managers and workers');
  assert.deepEqual(names('w*'), ['wrk1', 'wrk2', 'web10'], 'hosts wrk*, web10 and group workers');
  assert.deepEqual(names('MGR*'.toLowerCase()), ['mgr1', 'mgr2', 'mgr3']);
  unknownPattern(() => names('MGR*'), 'MGR*'); // case-sensitive, like fnmatch on Linux
});

test('~regex on host and group names, anchored at the start', () => {
  assert.deepEqual(names('~mgr[13]'), ['mgr1', 'mgr3']);
  assert.deepEqual(names('~(db|web)\\d+$'), ['db1', 'db2', 'web10']);
  unknownPattern(() => names('~gr1'), '~gr1');
  assert.throws(
    () => names('~('),
    (e: unknown) => e instanceof InputError && e.exitCode === 4 && /invalid regular expression in host pattern '~\('/.test(e.message),
  );
});

test('!exclude and &intersect, evaluated as Ansible: union, then intersections, then exclusions', () => {
  assert.deepEqual(names('swarm:!managers'), ['wrk1', 'wrk2']);
  assert.deepEqual(names('swarm,!managers'), ['wrk1', 'wrk2']);
  assert.deepEqual(names('swarm,&edge'), ['mgr1', 'wrk1']);
  assert.deepEqual(names('swarm:&edge:!mgr1'), ['wrk1']);
  // order of the terms does not matter
  assert.deepEqual(names('!mgr1:&edge:swarm'), ['wrk1']);
  assert.deepEqual(names('&edge,!wrk*,swarm'), ['mgr1']);
  // only exclusions / intersections: they apply to all
  assert.deepEqual(names('!swarm'), ['db1', 'db2', 'web10']);
  assert.deepEqual(names('&databases'), ['db1', 'db2']);
  assert.deepEqual(names('!swarm:!db*'), ['web10']);
  // two intersections narrow further
  assert.deepEqual(names('all:&swarm:&edge:&wrk*'), ['wrk1']);
  // an empty result is not an error
  assert.deepEqual(names('managers:&workers'), []);
});

test('an unknown term is an InputError (exit 4) with a suggestion, except inside !', () => {
  let e = unknownPattern(() => names('webservers'), 'webservers');
  assert.match(e.message, /no host or group of inventory test\/fixtures\/inventory\/farm\.yml matches/);
  e = unknownPattern(() => names('manager'), 'manager');
  assert.match(e.message, /did you mean 'managers'\?/);
  unknownPattern(() => names('managers,wrk3'), 'wrk3');
  unknownPattern(() => names('swarm:&nosuch'), 'nosuch');
  unknownPattern(() => names('zz*'), 'zz*');
  unknownPattern(() => names('db[3-9]'), 'db[3-9]');
  assert.deepEqual(names('swarm:!nosuch'), ['mgr1', 'mgr2', 'mgr3', 'wrk1', 'wrk2'], 'an exclusion that matches nothing is fine');
  assert.deepEqual(names('!zz*'), ALL);
});

test('malformed patterns', () => {
  for (const bad of ['', '   ', ',', '!', '&', '!&x', '&!x', '@', '!@', '~']) {
    assert.throws(
      () => parseLimit(bad),
      (e: unknown) => e instanceof InputError && e.exitCode === 4,
      `pattern '${bad}'`,
    );
  }
});

test('@retry file: one host per line, # comments, relative to cwd; unknown host names file:line', () => {
  const retry = path.join(tmp, 'site.retry');
  writeFileSync(retry, '# failed on the last run\nwrk2\n\n  db1   # timed out\nwrk2\n');
  assert.deepEqual(
    names(`@${retry}`),
    ['wrk2', 'db1'].sort((a, b) => ALL.indexOf(a) - ALL.indexOf(b)),
  );
  assert.deepEqual(names(`@${retry},mgr1`), ['mgr1', 'wrk2', 'db1']);
  assert.deepEqual(names(`swarm:&@${retry}`), ['wrk2'], 'a retry file can intersect');
  assert.deepEqual(names(`all:!@${retry}`), ['mgr1', 'mgr2', 'mgr3', 'wrk1', 'db2', 'web10'], 'or exclude');
  // relative to the current directory (the repository root)
  const rel = path.join(FIX, 'farm.retry.tmp');
  writeFileSync(rel, 'mgr3\n');
  try {
    assert.deepEqual(names(`@${rel}`), ['mgr3']);
    assert.equal(parseLimit(`@${rel}`)[0]!.value, path.join(root, rel));
  } finally {
    rmSync(rel);
  }

  const bad = path.join(tmp, 'bad.retry');
  writeFileSync(bad, 'wrk1\n# comment\nwrk3\n');
  assert.throws(
    () => names(`@${bad}`),
    (e: unknown) =>
      e instanceof InputError &&
      e.exitCode === 4 &&
      e.message.startsWith(`${bad}:3: host 'wrk3' is not in inventory ${FIX}/farm.yml (did you mean 'wrk1'?)`),
  );
  writeFileSync(bad, 'wrk1\nweb,1\n');
  assert.throws(
    () => names(`@${bad}`),
    (e: unknown) => e instanceof InputError && e.message.startsWith(`${bad}:2: 'web,1' is not a host name`),
  );
  writeFileSync(bad, '# nothing failed\n\n');
  assert.throws(
    () => names(`@${bad}`),
    (e: unknown) => e instanceof InputError && /retry file .*bad\.retry lists no hosts/.test(e.message),
  );
  assert.throws(
    () => names(`@${path.join(tmp, 'none.retry')}`),
    (e: unknown) => e instanceof InputError && e.exitCode === 4 && /retry file not found: .*none\.retry/.test(e.message),
  );
});

test('selectHosts with a --limit: the pattern restricted by the limit', () => {
  assert.deepEqual(names('swarm', 'mgr1'), ['mgr1']);
  assert.deepEqual(names('swarm', 'edge,db1'), ['mgr1', 'wrk1']);
  assert.deepEqual(names('managers', '!mgr2'), ['mgr1', 'mgr3']);
  assert.deepEqual(names('managers', 'db1'), [], 'a limit outside the pattern gives no hosts');
  unknownPattern(() => names('swarm', 'mgr9'), 'mgr9');
  // parsed terms can be passed instead of strings
  assert.deepEqual(
    selectHosts(inv, parseLimit('databases'), parseLimit('!db2')).map((h) => h.name),
    ['db1'],
  );
});

test('parseLimit: terms with their operation and kind', () => {
  const terms = parseLimit('swarm:&edge*:!~db\\d:@x.retry');
  assert.deepEqual(
    terms.map(({ op, kind, value, raw }) => ({ op, kind, value, raw })),
    [
      { op: 'union', kind: 'name', value: 'swarm', raw: 'swarm' },
      { op: 'intersect', kind: 'glob', value: 'edge*', raw: '&edge*' },
      { op: 'exclude', kind: 'regex', value: 'db\\d', raw: '!~db\\d' },
      { op: 'union', kind: 'file', value: path.join(root, 'x.retry'), raw: '@x.retry' },
    ],
  );
  assert.deepEqual(
    parseLimit('*').map((t) => t.kind),
    ['all'],
  );
  assert.deepEqual(
    parseLimit('all,!db1').map((t) => [t.op, t.kind]),
    [
      ['union', 'all'],
      ['exclude', 'name'],
    ],
  );
});

test('splitting: commas first, colons otherwise, IPv6 and [a:b] kept whole', () => {
  assert.deepEqual(splitPattern('a:b:!c'), ['a', 'b', '!c']);
  assert.deepEqual(splitPattern('a,b:c'), ['a', 'b:c'], 'with a comma, colons do not split');
  assert.deepEqual(splitPattern('fd00::10'), ['fd00::10']);
  assert.deepEqual(splitPattern('!2001:db8:0:0:0:0:0:1'), ['!2001:db8:0:0:0:0:0:1']);
  assert.deepEqual(splitPattern('[fe80::1%eth0]'), ['[fe80::1%eth0]']);
  assert.deepEqual(splitPattern('web[1:3]:db'), ['web[1:3]', 'db']);
  assert.deepEqual(splitPattern('ab:cd'), ['ab', 'cd'], 'two hex-looking names are not an IPv6 address');
  // an IPv6 address is not a host name: it is an unknown pattern (hosts are selected by name)
  unknownPattern(() => names('fd00::10'), 'fd00::10');
});

test('globToRegExp: fnmatch semantics', () => {
  const m = (g: string, s: string) => globToRegExp(g).test(s);
  assert.ok(m('a*', 'abc') && m('a*', 'a') && !m('a*', 'ba'));
  assert.ok(m('a?c', 'abc') && !m('a?c', 'ac'));
  assert.ok(m('n[0-9]', 'n5') && !m('n[0-9]', 'nx'));
  assert.ok(m('n[!0-9]', 'nx') && !m('n[!0-9]', 'n5'));
  assert.ok(m('a.b', 'a.b') && !m('a.b', 'axb'), 'dots are literal');
  assert.ok(m('a[', 'a['), 'an unclosed [ is literal');
  assert.ok(m('[]]x', ']x'), '] first in a class is a member');
});
