// The HTML timeline (lib/timeline.ts) of a real run on sshd hosts, rendered by headless Chromium (Debian's
// package): the DOM Chromium builds has one lane per host, one bar per step, the failed step marked; the
// screenshot is a real picture of it (docs/timeline.png is one, refreshed with WPFARM_UPDATE_SCREENSHOT=1).
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

let lab: SshdLab;
before(async () => {
  if (!existsSync('/usr/bin/chromium'))
    execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-q', 'chromium'], { stdio: 'ignore' });
  lab = await startSshdHosts(3, { prefix: 't' });
});
after(async () => {
  await lab?.stop();
});

const chromium = (args: string[]) =>
  spawnSync('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
  });

test('timeline beside the JSON report: Chromium renders lanes = hosts, bars = steps, the failed step marked', async () => {
  const json = join(lab.dir, 'run.json');
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      'playbooks/run-role.ts',
      'test/fixtures/roles/demo.ts',
      '--inventory',
      lab.inventoryFile,
      '-e',
      'fail_on=t02',
      '-e',
      'sleep_ms=800',
      '--json',
      json,
    ],
    { encoding: 'utf8', env: { ...process.env, CI: 'true' } },
  );
  assert.equal(r.status, 2, r.stdout + r.stderr);
  const report = JSON.parse(readFileSync(json, 'utf8')) as {
    results: Array<{ host: string; step: string; status: string; startMs: number; endMs: number }>;
  };
  for (const x of report.results) assert.ok(x.endMs >= x.startMs && x.startMs >= 0, `times of ${x.host} ${x.step}`);
  const html = join(lab.dir, 'run.html');
  assert.ok(existsSync(html), 'written beside the JSON report');
  const text = readFileSync(html, 'utf8');
  assert.doesNotMatch(text, /<script|https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'no script, no network fetch');

  const dom = chromium(['--dump-dom', `file://${html}`]);
  assert.equal(dom.status, 0, dom.stderr);
  const lanes = [...dom.stdout.matchAll(/<g class="lane" data-host="([^"]+)"/g)].map((m) => m[1]);
  assert.deepEqual(lanes, ['t01', 't02', 't03']);
  const bars = [...dom.stdout.matchAll(/<g class="bar status-(\w+)[^"]*" data-status="\w+" data-step="([^"]*)" data-host="([^"]+)"/g)];
  assert.equal(bars.length, report.results.length, 'one bar per step');
  const failed = bars.filter((b) => b[1] === 'failed');
  assert.deepEqual(
    failed.map((b) => b[3]),
    ['t02'],
  );
  assert.match(failed[0]![2]!, /^command sh -c/);
  assert.match(dom.stdout, /<title>command sh -c[^<]*\nhost t02 · role demo · failed\n[^<]*error: /);
  assert.ok(
    bars.some((b) => b[0].includes('critical')),
    'the slowest path is outlined',
  );
  assert.match(dom.stdout, /<line class="rt"/, 'round trips drawn');

  const png = join(lab.dir, 'timeline.png');
  const shot = chromium([`--screenshot=${png}`, '--window-size=1280,560', `file://${html}`]);
  assert.equal(shot.status, 0, shot.stderr);
  const buf = readFileSync(png);
  assert.equal(buf.subarray(1, 4).toString(), 'PNG');
  assert.equal(buf.readUInt32BE(16), 1280, 'width');
  assert.ok(buf.length > 10_000, `a real picture (${buf.length} bytes)`);
  if (process.env.WPFARM_UPDATE_SCREENSHOT) copyFileSync(png, 'docs/timeline.png');
});
