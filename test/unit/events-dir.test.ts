// The run's directory and NDJSON log (lib/events.ts), without hosts: names, modes, retention by count and by age,
// every event stamped and masked.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { EventStream, RunLog, makeRunDir, pruneRuns, runDirName } from '../../lib/events.ts';
import { clearSecretsForTests, registerSecret } from '../../lib/secrets.ts';

const root = mkdtempSync(join(tmpdir(), 'wpfarm-events-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('run directory names sort by time; the directory and its parent are 0700', () => {
  const a = runDirName(new Date('2026-01-02T03:04:05.678Z'), 'add site/x');
  assert.equal(a, '20260102T030405.678Z-add_site_x');
  assert.ok(runDirName(new Date('2026-01-02T03:04:05.679Z'), 'a') > runDirName(new Date('2026-01-02T03:04:05.678Z'), 'z'));
  const dir = makeRunDir(join(root, 'runs'), a);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(root, 'runs')).mode & 0o777, 0o700);
});

test('retention: by count (the new run counts) and by age; other names are left alone', () => {
  const dir = join(root, 'prune');
  const names = [1, 2, 3, 4, 5].map((d) => runDirName(new Date(`2026-01-0${d}T00:00:00.000Z`), 'p'));
  for (const n of names) mkdirSync(join(dir, n), { recursive: true });
  mkdirSync(join(dir, 'notes'));
  const gone = pruneRuns(dir, { count: 3 });
  assert.deepEqual(gone, names.slice(0, 3));
  assert.deepEqual(readdirSync(dir).sort(), [...names.slice(3), 'notes'].sort());
  const old = Date.now() / 1000 - 10 * 86_400;
  utimesSync(join(dir, names[3]!), old, old);
  assert.deepEqual(pruneRuns(dir, { days: 7 }), [names[3]]);
  assert.deepEqual(readdirSync(dir).sort(), [names[4], 'notes'].sort());
  assert.deepEqual(pruneRuns(join(root, 'missing'), { count: 1 }), []);
});

test('the log: one stamped event per line, 0600, every string masked', () => {
  clearSecretsForTests();
  registerSecret('tok-3f9a8b7c');
  const file = join(root, 'events.ndjson');
  const log = new RunLog(file);
  const events = new EventStream();
  events.on(log.listener);
  events.emit({ kind: 'run.start', name: 'x', command: 'x --token tok-3f9a8b7c', check: false, pid: 1, startedAt: 'now' });
  events.log('h1', 'using tok-3f9a8b7c');
  const end = events.command('h1', 'curl -H "Authorization: tok-3f9a8b7c" http://127.0.0.1\nsecond line');
  end(0);
  log.close();
  assert.equal(statSync(file).mode & 0o777, 0o600);
  const text = readFileSync(file, 'utf8');
  assert.ok(!text.includes('tok-3f9a8b7c'));
  const lines = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { seq: number; kind: string; command?: string; id?: number });
  assert.deepEqual(
    lines.map((l) => [l.seq, l.kind]),
    [
      [1, 'run.start'],
      [2, 'log'],
      [3, 'command.start'],
      [4, 'command.end'],
    ],
  );
  assert.equal(lines[2]!.command, 'curl -H "Authorization: ***" http://127.0.0.1');
  assert.equal(lines[3]!.id, lines[2]!.id);
  clearSecretsForTests();
});

test('a listener that throws does not stop the others', () => {
  const events = new EventStream();
  const seen: string[] = [];
  events.on(() => {
    throw new Error('disk full');
  });
  events.on((e) => seen.push(e.kind));
  events.say('one');
  events.say('two');
  assert.deepEqual(seen, ['say', 'say']);
});
