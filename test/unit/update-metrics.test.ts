// Update progress as metrics (roles/update/metrics.ts): the counts come from the state file, the text is the
// exposition format node-exporter's textfile collector reads (one family per HELP/TYPE, every sample once).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newState, recordSite, type Target } from '../../roles/update/plan.ts';
import { OUTCOMES, updateCounts, updateMetrics } from '../../roles/update/metrics.ts';
import { labelValue, textfileWriteCmd } from '../../roles/monitoring/textfile.ts';

const target: Target = { images: { wordpressFpm: 'w:1', nginx: 'n:1', redis: 'r:1', varnish: 'v:1' }, plugins: {} };
const entry = (status: 'done' | 'failed' | 'rolled-back', wave: number) => ({
  status,
  wave,
  from: { images: { nginx: 'n:0' } },
  to: { images: { nginx: 'n:1' } },
});

function sample(text: string, series: string): number {
  const lines = text.split('\n').filter((l) => l.startsWith(`${series} `));
  assert.equal(lines.length, 1, `${series} once in\n${text}`);
  return Number(lines[0]!.slice(series.length + 1));
}

test('counts: total = every site of the waves; updated, failed, rolled back from the state; the rest pending', () => {
  const t0 = new Date('2026-12-06T06:00:00Z');
  let s = newState(target, [['a'], ['b', 'c', 'd'], ['e', 'f']], t0);
  assert.deepEqual(updateCounts(s), { total: 6, updated: 0, failed: 0, rolled_back: 0, pending: 6 });
  s = recordSite(s, 'a', entry('done', 0));
  s = recordSite(s, 'b', entry('done', 1));
  s = recordSite(s, 'c', entry('failed', 1));
  s = recordSite(s, 'd', entry('rolled-back', 1));
  assert.deepEqual(updateCounts(s), { total: 6, updated: 2, failed: 1, rolled_back: 1, pending: 2 });
  const text = updateMetrics({ state: s, wave: 1, outcome: 'running', started: t0, now: new Date('2026-12-06T06:10:00Z') });
  assert.equal(sample(text, 'wpfarm_update_sites{status="total"}'), 6);
  assert.equal(sample(text, 'wpfarm_update_sites{status="updated"}'), 2);
  assert.equal(sample(text, 'wpfarm_update_sites{status="failed"}'), 1);
  assert.equal(sample(text, 'wpfarm_update_sites{status="rolled_back"}'), 1);
  assert.equal(sample(text, 'wpfarm_update_sites{status="pending"}'), 2);
  assert.equal(sample(text, 'wpfarm_update_wave'), 1);
  assert.equal(sample(text, 'wpfarm_update_waves'), 3);
  assert.equal(sample(text, 'wpfarm_update_running'), 1);
  assert.equal(sample(text, 'wpfarm_update_last_run_timestamp_seconds'), t0.getTime() / 1000);
  assert.equal(sample(text, 'wpfarm_update_last_progress_timestamp_seconds'), t0.getTime() / 1000 + 600);
  // exactly one outcome is 1
  assert.deepEqual(
    OUTCOMES.filter((o) => sample(text, `wpfarm_update_outcome{outcome="${o}"}`) === 1),
    ['running'],
  );
  // every family declared once, before its samples; the file ends with a newline
  const families = [...text.matchAll(/^# TYPE (\S+) (gauge|counter)$/gm)].map((m) => m[1]);
  assert.equal(new Set(families).size, families.length);
  for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) {
    const name = /^[a-z_]+/.exec(line)![0];
    assert.ok(families.includes(name), `${name} has a TYPE line`);
    assert.ok(text.indexOf(`# TYPE ${name} `) < text.indexOf(`\n${line}\n`), `${name}: TYPE before samples`);
  }
  assert.ok(text.endsWith('\n'));
});

test('outcome of a finished run, no wave started yet, and a stopped one', () => {
  const t0 = new Date('2026-12-06T06:00:00Z');
  const s = newState(target, [], t0);
  const done = updateMetrics({ state: s, wave: null, outcome: 'ok', started: t0, now: t0 });
  assert.equal(sample(done, 'wpfarm_update_wave'), -1);
  assert.equal(sample(done, 'wpfarm_update_running'), 0);
  assert.equal(sample(done, 'wpfarm_update_sites{status="total"}'), 0);
  assert.equal(sample(done, 'wpfarm_update_outcome{outcome="ok"}'), 1);
  const stopped = updateMetrics({
    state: recordSite(newState(target, [['a'], ['b']], t0), 'a', entry('failed', 0)),
    wave: 0,
    outcome: 'stopped',
    started: t0,
  });
  assert.equal(sample(stopped, 'wpfarm_update_outcome{outcome="stopped"}'), 1);
  assert.equal(sample(stopped, 'wpfarm_update_outcome{outcome="running"}'), 0);
  assert.equal(sample(stopped, 'wpfarm_update_running'), 0);
  assert.equal(sample(stopped, 'wpfarm_update_sites{status="pending"}'), 1);
});

test('textfile: label values escaped; the write is tmp + rename of an absolute .prom path', () => {
  assert.equal(labelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const cmd = textfileWriteCmd('/var/lib/prometheus/node-exporter/wpfarm_update.prom');
  assert.match(cmd, /^mkdir -p .*node-exporter.* && cat > .*wpfarm_update\.prom\.tmp.* && mv -f .*\.tmp.* .*wpfarm_update\.prom'?$/);
  assert.throws(() => textfileWriteCmd('relative/x.prom'), /absolute/);
  assert.throws(() => textfileWriteCmd('/tmp/x.txt'), /\.prom/);
});
