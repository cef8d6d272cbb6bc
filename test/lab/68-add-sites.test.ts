// add-sites on the lab farm (issue 17 item 3), kept short: a bad file is refused before anything is created; a
// file of two sites at --concurrency 2 creates both in one run (one result line each) and each serves its own
// WordPress page; a rerun of the same file creates nothing. Needs what 60-sites needs (phase 1, galera, gluster)
// and phase 3's images (convergeSitePrerequisites runs the images role: add-sites never builds).
// Site records go to a temporary directory (--sites-dir); the sites are removed afterwards.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { quote } from 'zx';
import { assertLabUp, cli as labCli, convergeSitePrerequisites, inService, nodesOf, ssh } from '../harness/lab-sites.ts';

const stamp = Date.now().toString(36).slice(-5);
const SITES = [
  { domain: `m${stamp}.lab.test`, id: `m${stamp}-lab-test`, title: `Many sites M ${stamp}` },
  { domain: `n${stamp}.lab.test`, id: `n${stamp}-lab-test`, title: `Many sites N ${stamp}` },
];
let work = '';
let sitesDir = '';
const cli = (script: string, args: string[], timeoutMs?: number) => labCli(work, script, args, timeoutMs);

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-add-sites-test-'));
  sitesDir = path.join(work, 'sites');
  await assertLabUp(['mgr1', 'wrk1', 'wrk2', 'db1']);
  await convergeSitePrerequisites(work);
});

after(async () => {
  for (const s of SITES) {
    if (existsSync(path.join(sitesDir, `${s.id}.yml`)))
      await cli('playbooks/remove-site.ts', ['--domain', s.domain, '--yes', '--no-backup', '--sites-dir', sitesDir]);
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a bad file: exit 4 naming file:line:col field, nothing created', { timeout: 120_000 }, async () => {
  const file = path.join(work, 'bad.yml');
  writeFileSync(file, `- domain: ${SITES[0]!.domain}\n- domain: x.com;reboot\n  replicas: 0\n`);
  const r = await cli('playbooks/add-sites.ts', ['--from', file, '--sites-dir', sitesDir]);
  assert.equal(r.code, 4, r.out);
  assert.match(r.out, /bad\.yml:2:\d+ \[1\]\.domain: .*;/, r.out);
  assert.match(r.out, /bad\.yml:3:\d+ \[1\]\.replicas: must be an integer from 1 to 20/, r.out);
  assert.ok(!existsSync(sitesDir) || readdirSync(sitesDir).length === 0, 'no record written');
  assert.doesNotMatch(await ssh('mgr1', 'docker service ls --format {{.Name}}'), new RegExp(stamp), 'nothing created on the farm');
});

test('two sites at --concurrency 2: one run, a result line each, both serve; a rerun creates nothing', {
  timeout: 20 * 60_000,
}, async (t) => {
  const file = path.join(work, 'sites.yml');
  writeFileSync(file, SITES.map((s) => `- domain: ${s.domain}\n  title: ${s.title}\n  replicas: 1\n`).join(''));
  const t0 = Date.now();
  const r = await cli('playbooks/add-sites.ts', ['--from', file, '--concurrency', '2', '--sites-dir', sitesDir], 15 * 60_000);
  t.diagnostic(`add-sites of 2 took ${((Date.now() - t0) / 1000).toFixed(1)} s, ${r.report?.roundTrips} round trips`);
  assert.equal(r.code, 0, r.out.slice(-4000));
  for (const s of SITES) {
    assert.match(
      r.out,
      new RegExp(`ok +${s.domain.replace(/\./g, '\\.')} \\(${s.id}\\): created, WordPress installed`),
      r.out.slice(-3000),
    );
    assert.match(r.out, new RegExp(`WordPress admin for ${s.domain.replace(/\./g, '\\.')}: user wpadmin, password \\S{16,}`));
    const stack = `wp-${s.id}`;
    const [n] = await nodesOf(`${stack}_nginx`);
    assert.ok(n, `${stack}_nginx runs`);
    const page = await inService(n!, `${stack}_nginx`, [
      'curl',
      '-sS',
      '-w',
      '\n%{http_code}',
      '-H',
      `Host: ${s.domain}`,
      '-H',
      'X-Forwarded-Proto: https',
      'http://127.0.0.1:8080/',
    ]);
    assert.match(page, /\n200$/, `${s.domain} answers 200`);
    assert.ok(page.includes(s.title), `${s.domain} shows its own title`);
  }
  assert.match(r.out, /2 of 2 site\(s\) ok/);
  // both stacks were deployed by the one run, in one 'site stacks' step
  const stacks = r.report?.results.find((x) => x.step === 'site stacks' && x.status === 'changed');
  assert.deepEqual(
    SITES.map((s) => stacks?.changes.some((c) => c.startsWith(`${s.id}: `))),
    [true, true],
    JSON.stringify(stacks),
  );

  const again = await cli('playbooks/add-sites.ts', ['--from', file, '--concurrency', '2', '--sites-dir', sitesDir], 10 * 60_000);
  assert.equal(again.code, 0, again.out.slice(-3000));
  for (const s of SITES) assert.match(again.out, new RegExp(`ok +${s.domain.replace(/\./g, '\\.')} \\(${s.id}\\): exists, reconciled`));
  const changed = (again.report?.results ?? []).filter((x) => x.changes.length && x.host === 'mgr1');
  assert.deepEqual(
    changed.map((x) => `${x.step}: ${x.changes.join('; ')}`),
    [],
    'the rerun changes nothing',
  );
  assert.equal(await ssh('db1', `mariadb -N -e ${quote(`SHOW DATABASES LIKE 'wp_m${stamp}%'`)}`), `wp_m${stamp}_lab_test`);
});
