// Farm-wide updates on the lab (issue 15 item 1): playbooks/update.ts and playbooks/rollback.ts on 4 small sites
// while request loops hit 2 of them (the canary and one more; lab 62's loop: GET every 200 ms through the site's
// nginx, no retry, any non-200 is a failed request).
//  - --check lists per site the image and plugin changes and the waves, and changes nothing
//  - a new image (a copy of files/images with one more LABEL: new content-hashed tags) and a plugin from the
//    store rolled in a canary wave and a wave of 3: every site on the new tags, the plugin's files on each site,
//    the database upgrade ran once per site, 0 failed requests; the rerun has nothing to do (resume)
//  - a plugin update and a new theme, the canary's record asking for the plugin active and the theme (check mode
//    predicts the activation, WordPress serves the theme, the rerun has nothing to do), then rollback.ts --site on
//    it: its files back to the previous versions, its activation back, the others not
//  - a broken image (the php-fpm health check fails) on the canary: Swarm rolls it back, the canary is pinned and
//    back on its previous images, the waves stop, the other sites untouched, exit 2 naming the canary, 0 failed
//    requests
//  - each run's progress in wpfarm_update.prom on the managers (sites by status, wave, outcome)
// Needs the lab up (00-lab); converges bootstrap phase 1, galera and gluster itself (cheap when done).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { quote } from 'zx';
import {
  assertLabUp,
  cli as labCli,
  convergeSitePrerequisites,
  inService,
  loopSamples,
  nodesOf,
  ssh,
  startLoop,
  stopLoop,
} from '../harness/lab-sites.ts';
import { IMAGES_DIR } from '../../roles/wp-site/images.ts';
import { recordYaml } from '../../roles/wp-site/playbook-util.ts';
import { parseState } from '../../roles/update/plan.ts';

const stamp = Date.now().toString(36).slice(-5);
const SITES = ['a', 'b', 'c', 'd'].map((x, i) => ({
  id: `u${stamp}-${x}`,
  domain: `u${stamp}-${x}.lab.test`,
  stack: `wp-u${stamp}-${x}`,
  replicas: i < 2 ? 2 : 1, // the looped sites keep two tasks, like production
}));
const [A, B] = SITES as [(typeof SITES)[0], (typeof SITES)[0]];
const LOOPS = [A, B].map((s) => ({ site: s, name: `wpfarm-upd-${s.id}`, node: 'wrk1' }));
let work = '';
let sitesDir = '';
let store = '';
const cli = (script: string, args: string[], timeoutMs?: number) => labCli(work, script, args, timeoutMs);
// the role's wait covers Swarm's own rollback of a broken canary (health check failing, then stop-first back)
const common = () => ['--sites-dir', sitesDir, '--plugin-store', store, '-e', 'wp_site_wait=480'];

const image = async (svc: string) =>
  ssh('mgr1', `docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' ${quote(svc)}`);
const images = async () =>
  Object.fromEntries(
    await Promise.all(
      SITES.flatMap((s) => ['php-fpm', 'nginx'].map(async (svc) => [`${s.stack}_${svc}`, await image(`${s.stack}_${svc}`)])),
    ),
  ) as Record<string, string>;

/** Every request the loops sent between t0 and now (after 3 s for requests in flight), and the failed ones. */
async function loopsSince(t0: number): Promise<{ total: number; failed: string[] }> {
  await new Promise((r) => setTimeout(r, 3000));
  let total = 0;
  const failed: string[] = [];
  for (const l of LOOPS) {
    const s = (await loopSamples(l.node, l.name)).filter((x) => x.at >= t0);
    total += s.length;
    failed.push(...s.filter((x) => x.code !== '200').map((x) => `${l.site.id} #${x.n}: ${x.code} after ${x.ms} ms`));
  }
  return { total, failed };
}

/** The update metrics on a manager (node-exporter's textfile collector): sample name → value. */
async function updateMetrics(): Promise<Record<string, number>> {
  const text = await ssh('mgr1', 'cat /var/lib/prometheus/node-exporter/wpfarm_update.prom');
  return Object.fromEntries([...text.matchAll(/^(wpfarm_update_[a-z_]+(?:\{[^}]*\})?) (\S+)$/gm)].map((m) => [m[1], Number(m[2])]));
}

/** A plugin zip in the store: hello/hello.php naming its version. */
function storePlugin(version: string): void {
  const src = mkdtempSync(path.join(work, 'zip-'));
  mkdirSync(path.join(src, 'hello'));
  writeFileSync(path.join(src, 'hello', 'hello.php'), `<?php\n/*\n * Plugin Name: wpfarm hello\n * Version: ${version}\n */\n`);
  mkdirSync(path.join(store, 'hello'), { recursive: true });
  execFileSync('zip', ['-qr', path.join(store, 'hello', `hello-${version}.zip`), 'hello'], { cwd: src });
}

/** A theme zip in the store (STORE/themes/<slug>/...): wpfarmlab/ whose index.php prints its version. */
function storeTheme(version: string): void {
  const src = mkdtempSync(path.join(work, 'zip-'));
  mkdirSync(path.join(src, 'wpfarmlab'));
  writeFileSync(path.join(src, 'wpfarmlab', 'style.css'), `/*\nTheme Name: wpfarm lab\nVersion: ${version}\n*/\n`);
  writeFileSync(path.join(src, 'wpfarmlab', 'index.php'), `<?php echo "wpfarm lab theme ${version}";\n`);
  mkdirSync(path.join(store, 'themes', 'wpfarmlab'), { recursive: true });
  execFileSync('zip', ['-qr', path.join(store, 'themes', 'wpfarmlab', `wpfarmlab-${version}.zip`), 'wpfarmlab'], { cwd: src });
}

/** What WordPress has active on a site: the plugin files and the theme, and the home page's body. */
async function activeOf(s: (typeof SITES)[0]): Promise<{ plugins: string[]; theme: string }> {
  const node = (await nodesOf(`${s.stack}_php-fpm`))[0]!;
  const php =
    "require '/var/www/html/wp-load.php'; " +
    "echo json_encode(['plugins' => array_values(get_option('active_plugins')), 'theme' => get_stylesheet()]);";
  return JSON.parse(await inService(node, `${s.stack}_php-fpm`, ['php', '-r', php])) as { plugins: string[]; theme: string };
}

/** The plugin as the site serves it: the link on Gluster and the file seen inside a php-fpm task. */
async function pluginOf(s: (typeof SITES)[0]): Promise<{ link: string; file: string }> {
  const link = await ssh('wrk1', `readlink /mnt/gluster/sites/${s.id}/plugins/hello || echo none`);
  const node = (await nodesOf(`${s.stack}_php-fpm`))[0]!;
  const file = await inService(node, `${s.stack}_php-fpm`, [
    'sh',
    '-c',
    'grep Version: /var/www/html/wp-content/plugins/hello/hello.php || echo none',
  ]);
  return { link, file: file.trim() };
}

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-update-test-'));
  sitesDir = path.join(work, 'sites');
  store = path.join(work, 'plugins');
  mkdirSync(sitesDir);
  await assertLabUp(['mgr1', 'wrk1', 'wrk2', 'db1', 'db2', 'db3']);
  await convergeSitePrerequisites(work);
  for (const s of SITES)
    writeFileSync(path.join(sitesDir, `${s.id}.yml`), recordYaml({ id: s.id, domain: s.domain, aliases: [], replicas: s.replicas }));
  // the 4 sites in one reconcile (stacks deployed together, WordPress installed in each)
  const t = Date.now();
  const r = await cli('playbooks/run-role.ts', ['wp-site', '-e', `wp_sites_dir=${sitesDir}`], 20 * 60_000);
  assert.equal(r.code, 0, r.out.slice(-4000));
  process.stdout.write(`# 4 sites created in ${((Date.now() - t) / 1000).toFixed(0)} s\n`);
  const nginxImage = await image(`${A.stack}_nginx`);
  for (const l of LOOPS) await startLoop({ name: l.name, node: l.node, domain: l.site.domain, stack: l.site.stack, image: nginxImage });
  const base = await loopsSince(Date.now() / 1000);
  await new Promise((r) => setTimeout(r, 5000));
  const warm = await loopsSince(Date.now() / 1000 - 8);
  assert.ok(warm.total >= 10, `the loops answer before anything happens (${warm.total} requests)`);
  assert.deepEqual(warm.failed, [], 'baseline: no failed request');
  void base;
});

after(async () => {
  for (const l of LOOPS) await stopLoop(l.node, l.name);
  for (const s of SITES) {
    if (existsSync(path.join(sitesDir, `${s.id}.yml`)))
      await cli('playbooks/remove-site.ts', ['--domain', s.domain, '--yes', '--no-backup', '--sites-dir', sitesDir]);
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

test('update: --check, then a new image and a plugin in a canary + 1 wave with 0 failed requests; the rerun resumes', {
  timeout: 30 * 60_000,
}, async (t) => {
  const newImages = path.join(work, 'images-new');
  cpSync(IMAGES_DIR, newImages, { recursive: true });
  appendFileSync(path.join(newImages, 'wordpress-fpm', 'Dockerfile'), `\nLABEL org.wpfarm.test.update="${stamp}"\n`);
  storePlugin('1.0');
  const state = path.join(work, 'update.json');
  const args = ['--images', newImages, '--plugin', 'hello@1.0', '--canary', '1', '--wave-size', '3', '--state', state, ...common()];
  const before = await images();

  const c = await cli('playbooks/update.ts', [...args, '--check'], 15 * 60_000);
  assert.equal(c.code, 0, c.out.slice(-4000));
  for (const s of SITES) {
    assert.match(c.out, new RegExp(`${s.id}: php-fpm: \\S+ -> \\S+`), `check lists ${s.id}'s image change`);
    assert.match(c.out, new RegExp(`${s.id}: plugin hello: \\(none\\) -> 1\\.0`), `check lists ${s.id}'s plugin`);
  }
  assert.match(c.out, new RegExp(`wave 0 \\(canary\\): ${A.id}\\n`));
  assert.match(
    c.out,
    new RegExp(
      `wave 1: ${SITES.slice(1)
        .map((s) => s.id)
        .join(' ')}`,
    ),
  );
  assert.deepEqual(await images(), before, 'check mode changed no service');
  assert.ok(!existsSync(state), 'check mode wrote no state file');
  assert.equal((await pluginOf(A)).link, 'none', 'check mode installed no plugin');

  const t0 = Date.now() / 1000;
  const u = await cli('playbooks/update.ts', args, 25 * 60_000);
  const secs = Date.now() / 1000 - t0;
  assert.equal(u.code, 0, u.out.slice(-5000));
  const now = await images();
  const fpm = new Set(SITES.map((s) => now[`${s.stack}_php-fpm`]));
  assert.equal(fpm.size, 1, `every site runs one wordpress-fpm tag: ${[...fpm].join(', ')}`);
  for (const s of SITES) {
    assert.notEqual(now[`${s.stack}_php-fpm`], before[`${s.stack}_php-fpm`], `${s.id}: php-fpm rolled`);
    assert.notEqual(now[`${s.stack}_nginx`], before[`${s.stack}_nginx`], `${s.id}: nginx rolled`);
    assert.deepEqual(await pluginOf(s), { link: '.wpfarm-versions/hello/1.0', file: '* Version: 1.0' }, `${s.id}: plugin 1.0 installed`);
  }
  const st = parseState(readFileSync(state, 'utf8'), state);
  assert.deepEqual(
    SITES.map((s) => [s.id, st.sites[s.id]?.status, st.sites[s.id]?.wave, st.sites[s.id]?.db_upgraded]),
    SITES.map((s, i) => [s.id, 'done', i === 0 ? 0 : 1, true]),
  );
  const loops = await loopsSince(t0);
  t.diagnostic(`update of 4 sites (2 waves): ${secs.toFixed(0)} s; loops: ${loops.total} requests, ${loops.failed.length} failed`);
  assert.ok(loops.total >= 50, `the loops ran during the update (${loops.total} requests)`);
  assert.deepEqual(loops.failed, [], 'no failed request during the update');
  const m = await updateMetrics();
  assert.deepEqual(
    [m['wpfarm_update_sites{status="total"}'], m['wpfarm_update_sites{status="updated"}'], m['wpfarm_update_sites{status="failed"}']],
    [4, 4, 0],
    'metrics: 4 sites, 4 updated, 0 failed',
  );
  assert.deepEqual([m.wpfarm_update_wave, m.wpfarm_update_running, m['wpfarm_update_outcome{outcome="ok"}']], [1, 0, 1]);

  const again = await cli('playbooks/update.ts', args, 15 * 60_000);
  assert.equal(again.code, 0, again.out.slice(-3000));
  assert.match(again.out, /0 site\(s\) to update in 0 wave\(s\)/);
  assert.deepEqual(await images(), now, 'the rerun changed no service');
});

test('plugin update and a new theme, activated on the canary through WordPress; rollback.ts --site: its files and activation back', {
  timeout: 20 * 60_000,
}, async () => {
  storePlugin('2.0');
  storeTheme('1.0');
  // the canary's record: the plugin active, the theme; the other sites leave the activation alone
  appendFileSync(path.join(sitesDir, `${A.id}.yml`), 'active_plugins: [hello]\ntheme: wpfarmlab\n');
  const was = await activeOf(A);
  const state = path.join(work, 'update-plugin.json');
  const imgs = await images();
  const args = ['--images', path.join(work, 'images-new'), '--plugin', 'hello@2.0', '--theme', 'wpfarmlab@1.0'];
  const all = [...args, '--canary', '1', '--wave-size', '3', '--state', state, ...common()];
  const c = await cli('playbooks/update.ts', [...all, '--check'], 15 * 60_000);
  assert.equal(c.code, 0, c.out.slice(-4000));
  assert.match(c.out, new RegExp(`${A.id}: theme wpfarmlab: \\(none\\) -> 1\\.0`));
  assert.match(c.out, new RegExp(`${A.id}: activate plugin hello;`));
  assert.match(c.out, new RegExp(`${A.id}: theme: ${was.theme} -> wpfarmlab;`));
  assert.doesNotMatch(c.out, new RegExp(`${B.id}: (activate|theme:)`), 'no activation on a site whose record does not ask');
  assert.deepEqual(await activeOf(A), was, 'check mode activated nothing');

  const u = await cli('playbooks/update.ts', all, 15 * 60_000);
  assert.equal(u.code, 0, u.out.slice(-4000));
  for (const s of SITES) {
    assert.deepEqual(await pluginOf(s), { link: '.wpfarm-versions/hello/2.0', file: '* Version: 2.0' }, s.id);
    const theme = await ssh('wrk1', `readlink /mnt/gluster/sites/${s.id}/themes/wpfarmlab || echo none`);
    assert.equal(theme, '.wpfarm-versions/wpfarmlab/1.0', `${s.id}: the theme's files`);
  }
  assert.deepEqual(await activeOf(A), { plugins: ['hello/hello.php'], theme: 'wpfarmlab' }, 'activated through WordPress');
  assert.deepEqual(await activeOf(B), { plugins: [], theme: was.theme }, 'B: its record asks for no activation');
  const home = await inService((await nodesOf(`${A.stack}_nginx`))[0]!, `${A.stack}_nginx`, [
    'curl',
    '-s',
    '-H',
    `Host: ${A.domain}`,
    '-H',
    'X-Forwarded-Proto: https',
    'http://127.0.0.1:8080/?theme-check=1',
  ]);
  assert.equal(home.trim(), 'wpfarm lab theme 1.0', 'the site serves the new theme');
  assert.deepEqual(await images(), imgs, 'a plugin update rolls no image');
  const v1 = await ssh('wrk1', `cat /mnt/gluster/sites/${A.id}/plugins/.wpfarm-versions/hello/1.0/hello.php`);
  assert.match(v1, /Version: 1\.0/, 'the previous version is kept on the site');
  const again = await cli('playbooks/update.ts', all, 15 * 60_000);
  assert.equal(again.code, 0, again.out.slice(-3000));
  assert.match(again.out, /0 site\(s\) to update in 0 wave\(s\)/, 'the rerun: activation and packages as wanted');

  const r = await cli('playbooks/rollback.ts', ['--site', A.domain, '--state', state, '--sites-dir', sitesDir], 10 * 60_000);
  assert.equal(r.code, 0, r.out.slice(-4000));
  assert.deepEqual(await pluginOf(A), { link: '.wpfarm-versions/hello/1.0', file: '* Version: 1.0' }, 'rolled back');
  assert.equal(await ssh('wrk1', `readlink /mnt/gluster/sites/${A.id}/themes/wpfarmlab || echo none`), 'none', 'the theme taken off');
  assert.deepEqual(await activeOf(A), was, 'the activation as before the update');
  assert.deepEqual(await pluginOf(B), { link: '.wpfarm-versions/hello/2.0', file: '* Version: 2.0' }, 'another site untouched');
  assert.equal(parseState(readFileSync(state, 'utf8'), state).sites[A.id]?.status, 'rolled-back');
  const m = await updateMetrics();
  assert.deepEqual([m['wpfarm_update_sites{status="rolled_back"}'], m['wpfarm_update_outcome{outcome="rolled-back"}']], [1, 1]);
  assert.deepEqual(await images(), imgs, 'a plugin rollback rolls no image');
});

test('a broken image on the canary: Swarm rolls it back, the waves stop, the others untouched, exit 2 names it', {
  timeout: 30 * 60_000,
}, async (t) => {
  const broken = path.join(work, 'images-broken');
  cpSync(path.join(work, 'images-new'), broken, { recursive: true });
  writeFileSync(path.join(broken, 'wordpress-fpm', 'bin', 'wpfarm-healthcheck'), '#!/bin/sh\necho "broken on purpose" >&2\nexit 1\n', {
    mode: 0o755,
  });
  const state = path.join(work, 'update-broken.json');
  const before = await images();
  const t0 = Date.now() / 1000;
  const u = await cli(
    'playbooks/update.ts',
    ['--images', broken, '--canary', '1', '--wave-size', '3', '--state', state, ...common()],
    25 * 60_000,
  );
  const secs = Date.now() / 1000 - t0;
  assert.equal(u.code, 2, u.out.slice(-5000));
  assert.match(u.out, new RegExp(`error: update failed for site\\(s\\) ${A.id}\\n`));
  assert.match(u.out, new RegExp(`error: site ${A.id} failed: .*php-fpm: update rollback_`));
  assert.match(u.out, /update stopped: the canary failed/);
  assert.deepEqual(await images(), before, 'the canary is back on its previous images; the other sites were not touched');
  const pin = JSON.parse(await ssh('mgr1', `cat /var/lib/wpfarm/site-pins/${A.id}.json`)) as { images: Record<string, string> };
  // the spec carries the digest Swarm resolved; the pin holds the reference as rendered
  assert.equal(
    pin.images['php-fpm'],
    before[`${A.stack}_php-fpm`]!.replace(/@sha256:[0-9a-f]+$/, ''),
    'the canary is pinned to its previous images',
  );
  const st = parseState(readFileSync(state, 'utf8'), state);
  assert.equal(st.sites[A.id]?.status, 'failed');
  assert.deepEqual(Object.keys(st.sites), [A.id], 'no later wave started');
  const m = await updateMetrics();
  assert.deepEqual(
    [m['wpfarm_update_sites{status="failed"}'], m['wpfarm_update_sites{status="pending"}'], m['wpfarm_update_outcome{outcome="stopped"}']],
    [1, 3, 1],
    'metrics: the failed canary, 3 sites not reached, the update stopped',
  );
  const loops = await loopsSince(t0);
  t.diagnostic(
    `broken canary: ${secs.toFixed(0)} s to detect and roll back; loops: ${loops.total} requests, ${loops.failed.length} failed`,
  );
  assert.deepEqual(loops.failed, [], 'no failed request while the canary failed and was rolled back');
});
