// Farm-wide updates, the pure part (roles/update/plan.ts): site selection, waves, the error budget, images
// per service, Swarm's verdict, the resumable state file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../../lib/errors.ts';
import {
  budgetVerdict,
  coreChanged,
  countOf,
  imageChanges,
  newState,
  parseCount,
  parseState,
  pendingSites,
  planWaves,
  recordSite,
  resumeOrNew,
  selectSites,
  stackImages,
  stateText,
  targetKey,
  verdict,
  waveSites,
  type Target,
} from '../../roles/update/plan.ts';

const sites = ['blog1', 'blog2', 'shop1', 'shop2', 'news'].map((id) => ({
  id,
  domain: `${id}.example.com`,
  aliases: [`www.${id}.example.com`],
}));
const ids = (xs: { id: string }[]) => xs.map((x) => x.id);

test('selectSites: every site by default, --only and --except by id, domain, alias or glob, in record order', () => {
  assert.deepEqual(ids(selectSites(sites, [], [])), ['blog1', 'blog2', 'shop1', 'shop2', 'news']);
  assert.deepEqual(ids(selectSites(sites, ['shop*'], [])), ['shop1', 'shop2']);
  assert.deepEqual(ids(selectSites(sites, ['news.example.com', 'blog1'], [])), ['blog1', 'news']);
  assert.deepEqual(ids(selectSites(sites, ['www.blog2.example.com'], [])), ['blog2']);
  assert.deepEqual(ids(selectSites(sites, [], ['blog?', 'shop2.example.com'])), ['shop1', 'news']);
  assert.deepEqual(ids(selectSites(sites, ['*'], ['*'])), []);
});

test('selectSites: a term that matches no site is bad input naming the flag and the term', () => {
  assert.throws(
    () => selectSites(sites, ['blgo1'], []),
    (e) => e instanceof InputError && /--only "blgo1" matches no site/.test(e.message),
  );
  assert.throws(
    () => selectSites(sites, [], ['x*']),
    (e) => e instanceof InputError && e.exitCode === 4 && /--except "x\*"/.test(e.message),
  );
});

test('counts: N or N %, a percentage rounds up, within 1..total', () => {
  assert.deepEqual(parseCount('3', '--canary'), { n: 3 });
  assert.deepEqual(parseCount('10%', '--canary'), { pct: 10 });
  for (const bad of ['0', '0%', '101%', 'two', '-1', '1.5', ''])
    assert.throws(
      () => parseCount(bad, '--wave-size'),
      (e) => e instanceof InputError && /--wave-size/.test(e.message),
      bad,
    );
  assert.equal(countOf({ pct: 10 }, 25), 3);
  assert.equal(countOf({ pct: 1 }, 5), 1);
  assert.equal(countOf({ n: 50 }, 5), 5);
});

test('planWaves: a canary wave, then waves of the given size; every site exactly once, in order', () => {
  const ten = Array.from({ length: 10 }, (_, i) => `s${i}`);
  assert.deepEqual(planWaves(ten, { n: 1 }, { n: 4 }), [['s0'], ['s1', 's2', 's3', 's4'], ['s5', 's6', 's7', 's8'], ['s9']]);
  assert.deepEqual(planWaves(ten, { pct: 20 }, { pct: 50 }), [
    ['s0', 's1'],
    ['s2', 's3', 's4', 's5', 's6'],
    ['s7', 's8', 's9'],
  ]);
  assert.deepEqual(planWaves(['a'], { n: 3 }, { n: 3 }), [['a']]);
  assert.deepEqual(planWaves([], { n: 1 }, { n: 1 }), []);
  assert.deepEqual(planWaves(ten, { n: 1 }, { n: 4 }).flat(), ten);
});

test('budgetVerdict: a failed canary always stops; later waves stop past the budget', () => {
  assert.match(budgetVerdict({ wave: 0, failedThisWave: ['a'], failedTotal: ['a'], maxFailures: 5 }) ?? '', /canary failed \(a\)/);
  assert.equal(budgetVerdict({ wave: 0, failedThisWave: [], failedTotal: [], maxFailures: 0 }), null);
  assert.equal(budgetVerdict({ wave: 2, failedThisWave: ['b'], failedTotal: ['b'], maxFailures: 1 }), null);
  assert.match(
    budgetVerdict({ wave: 3, failedThisWave: ['c'], failedTotal: ['b', 'c'], maxFailures: 1 }) ?? '',
    /2 site\(s\) failed \(b, c\), more than the error budget of 1/,
  );
});

const ls = [
  { ID: '1', Name: 'wp-blog1_nginx', Image: 'r:5000/wpfarm/nginx:aaa@sha256:' + 'f'.repeat(64), Mode: 'replicated', Replicas: '2/2' },
  { ID: '2', Name: 'wp-blog1_php-fpm', Image: 'r:5000/wpfarm/wordpress-fpm:bbb', Mode: 'replicated', Replicas: '2/2' },
  { ID: '3', Name: 'wp-blog1_redis', Image: 'r:5000/wpfarm/redis:ccc', Mode: 'replicated', Replicas: '1/1' },
  { ID: '4', Name: 'traefik_traefik', Image: 'traefik:x', Mode: 'global', Replicas: '1/1' },
]
  .map((e) => JSON.stringify(e))
  .join('\n');

test('stackImages: image per service of every wp-* stack, digest removed; imageChanges and coreChanged', () => {
  const m = stackImages(ls);
  assert.deepEqual([...m.keys()], ['wp-blog1']);
  const from = m.get('wp-blog1')!;
  assert.deepEqual(from, {
    nginx: 'r:5000/wpfarm/nginx:aaa',
    'php-fpm': 'r:5000/wpfarm/wordpress-fpm:bbb',
    redis: 'r:5000/wpfarm/redis:ccc',
  });
  const to = { ...from, nginx: 'r:5000/wpfarm/nginx:ddd', 'php-fpm': 'r:5000/wpfarm/wordpress-fpm:eee' };
  assert.deepEqual(imageChanges(from, to), [
    'nginx: r:5000/wpfarm/nginx:aaa -> r:5000/wpfarm/nginx:ddd',
    'php-fpm: r:5000/wpfarm/wordpress-fpm:bbb -> r:5000/wpfarm/wordpress-fpm:eee',
  ]);
  assert.deepEqual(imageChanges(from, from), []);
  assert.equal(coreChanged(from, to), true);
  assert.equal(coreChanged(from, { ...from, nginx: 'x' }), false);
  assert.deepEqual(imageChanges({}, { redis: 'r' }), ['redis: (none) -> r']);
});

test('verdict: kept, rolled back by Swarm, running another image, service missing', () => {
  const want = { nginx: 'n:2', 'php-fpm': 'w:2' };
  const ok = 'wp-a_nginx|n:2@sha256:' + 'a'.repeat(64) + '|completed|update completed\nwp-a_php-fpm|w:2||';
  assert.deepEqual(verdict('wp-a', ok, want), { ok: true, reasons: [] });
  const rolled = 'wp-a_nginx|n:2|completed|\nwp-a_php-fpm|w:1|rollback_completed|rollback completed';
  assert.deepEqual(verdict('wp-a', rolled, want), { ok: false, reasons: ['php-fpm: update rollback_completed (rollback completed)'] });
  const other = 'wp-a_nginx|n:1||\nwp-a_php-fpm|w:2|completed|';
  assert.deepEqual(verdict('wp-a', other, want).reasons, ['nginx: runs n:1, not n:2']);
  assert.deepEqual(verdict('wp-a', 'wp-ab_nginx|n:2||\nwp-a_nginx|n:2||', want).reasons, ['php-fpm: service missing']);
  assert.match(
    verdict('wp-a', 'wp-a_nginx|n:2|paused|task failed\nwp-a_php-fpm|w:2||', want).reasons[0]!,
    /nginx: update paused \(task failed\)/,
  );
  // a service this update did not change keeps an older update's status: not this update's failure
  const old = 'wp-a_nginx|n:2|completed|\nwp-a_php-fpm|w:2|rollback_completed|rollback completed';
  assert.deepEqual(verdict('wp-a', old, want, { nginx: 'n:1', 'php-fpm': 'w:2' }), { ok: true, reasons: [] });
  assert.equal(verdict('wp-a', old, want, { nginx: 'n:1', 'php-fpm': 'w:1' }).ok, false);
});

const target: Target = { images: { wordpressFpm: 'w:2', nginx: 'n:2', redis: 'r:1', varnish: 'v:1' }, plugins: { akismet: '5.3' } };

test('targetKey: the same target (plugins in any order) gives the same key; another image another key', () => {
  const k = targetKey(target);
  assert.match(k, /^[0-9a-f]{64}$/);
  assert.equal(targetKey({ ...target, plugins: { b: '1', a: '2' } }), targetKey({ ...target, plugins: { a: '2', b: '1' } }));
  assert.notEqual(targetKey({ ...target, images: { ...target.images, nginx: 'n:3' } }), k);
  // themes and the records' activation are part of the target; empty ones keep the key of an update without them
  assert.equal(targetKey({ ...target, themes: {}, activation: {} }), k);
  const withTheme = targetKey({ ...target, themes: { lab: '1.0' } });
  assert.notEqual(withTheme, k);
  assert.equal(targetKey({ ...target, plugins: {}, themes: { akismet: '5.3' } }) === k, false, 'a theme is not a plugin of the same slug');
  const act = targetKey({ ...target, activation: { a: { plugins: ['akismet'] } } });
  assert.notEqual(act, k);
  assert.notEqual(targetKey({ ...target, activation: { a: { plugins: ['akismet'], theme: 'lab' } } }), act);
});

test('state file: written, read back, resumed for the same target (finished sites skipped), fresh for another', () => {
  const t0 = new Date('2026-12-06T03:00:00Z');
  let s = newState(target, [['a'], ['b', 'c']], t0);
  s = recordSite(
    s,
    'a',
    {
      status: 'done',
      wave: 0,
      from: {
        images: { nginx: 'n:1' },
        plugins: { akismet: null },
        themes: { lab: 'unmanaged' },
        activation: { plugins: [], theme: 'tt3' },
      },
      to: {
        images: { nginx: 'n:2' },
        plugins: { akismet: '5.3' },
        themes: { lab: '1.0' },
        activation: { plugins: ['akismet'], theme: 'lab' },
      },
      db_upgraded: true,
    },
    t0,
  );
  s = recordSite(
    s,
    'b',
    { status: 'failed', wave: 1, from: { images: { nginx: 'n:1' } }, to: { images: { nginx: 'n:2' } }, error: 'php-fpm: rolled back' },
    t0,
  );
  const back = parseState(stateText(s), 'update.json');
  assert.deepEqual(back, s);
  assert.deepEqual(pendingSites(back, ['a', 'b', 'c']), ['b', 'c']);
  assert.deepEqual(waveSites(back, 1), ['b']);
  const resumed = resumeOrNew(back, target, [['b', 'c']]);
  assert.deepEqual(resumed.sites, s.sites);
  assert.deepEqual(resumed.waves, [['a'], ['b', 'c'], ['b', 'c']]);
  const fresh = resumeOrNew(back, { ...target, plugins: {} }, [['a', 'b', 'c']]);
  assert.deepEqual(fresh.sites, {});
  assert.deepEqual(fresh.waves, [['a', 'b', 'c']]);
});

test('state file: a damaged one is bad input naming the file, the line and the field', () => {
  const s = newState(target, [['a']], new Date('2026-12-06T03:00:00Z'));
  const text = stateText({ ...s, sites: { a: { status: 'done', wave: 0, from: { images: {} }, to: { images: {} }, at: 'x' } } }).replace(
    '"done"',
    '"finished"',
  );
  assert.throws(
    () => parseState(text, '.wpfarm/state/update.json'),
    (e) => e instanceof InputError && e.exitCode === 4 && /update\.json:\d+:\d+ sites\.a\.status/.test(e.message),
  );
  assert.throws(
    () => parseState('{"version": 2}', 'u.json'),
    (e) => e instanceof InputError && /u\.json:1:\d+ version/.test(e.message),
  );
});
