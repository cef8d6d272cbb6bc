// Migrating the lab's seeded legacy sites onto the test lab's farm for real (issue 14). The legacy host
// (scripts/lab.ts legacy-up, made here and only here: Debian's wordpress, nginx + php-fpm, MariaDB on
// 127.0.0.1:3307) holds two sites of different shapes: blog.legacy.test (a plain tree, prefix lg7_, DB_HOST
// 127.0.0.1:3307, its own theme) and shop.legacy.test (Debian's package layout, the DB on the socket, 210 MB of
// uploads). Each goes through playbooks/migrate-site.ts as an operator runs it:
//  - inspect → copy → rewrite → verify: row counts, upload checksums, the home page and sampled posts compared
//    over HTTP (the new site through its nginx, the farm's request path), admin login with the existing password;
//    the stack is deployed by the wp-site role (the path the engine tier cannot run)
//  - a serialized option read back through WordPress (get_option in the site's php-fpm container) equals the
//    source's, read through the source's WordPress, with the URL replaced
//  - cutover with a request loop (a container on traefik-public): the site's name resolved to the old host
//    until the cutover ends, to the farm after, as DNS would; no failure but the maintenance window (503), and
//    the window measured (the issue's aim: under 30 s for the 200 MB site)
// The migrations are rolled back at the end (the sources' maintenance flags removed) and the farm sites removed.
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { quote } from 'zx';
import {
  KEY,
  LEGACY_HOSTS,
  ROOT,
  assertLabUp,
  cli as labCli,
  convergeSitePrerequisites,
  inService,
  nodesOf,
  run,
  ssh,
  stopLoop,
} from '../harness/lab-sites.ts';
import { LEGACY_BIG_UPLOADS_MB, LEGACY_SITES, type LegacySite } from '../../scripts/lab/config.ts';
import { labEnvValue } from '../../scripts/lab/legacy.ts';
import { siteIdFor } from '../../roles/wp-site/playbook-util.ts';

const BLOG = LEGACY_SITES.find((s) => s.domain === 'blog.legacy.test')!;
const SHOP = LEGACY_SITES.find((s) => s.domain === 'shop.legacy.test')!;
const LOOP = 'wpfarm-migrate-loop';
const LOOP_NODE = 'mgr1';
/** the issue's aim for the maintenance window of a 200 MB site */
const WINDOW_AIM_S = 30;
let work = '';
let sitesDir = '';
let stateDir = '';
const cli = (script: string, args: string[], timeoutMs?: number) => labCli(work, script, args, timeoutMs);
const hostOf = (s: LegacySite) => LEGACY_HOSTS.find((h) => h.name === s.host)!;
const stackOf = (s: LegacySite) => `wp-${siteIdFor(s.domain)}`;
const common = (s: LegacySite) => [
  ...['--from', `ssh://root@${hostOf(s).address}${s.root}`, '--domain', s.domain, '--key', KEY],
  ...['--state-dir', stateDir, '--sites-dir', sitesDir],
];
const stateFile = (s: LegacySite) => path.join(stateDir, `${s.domain}.json`);
const stateOf = (s: LegacySite) => JSON.parse(readFileSync(stateFile(s), 'utf8'));
// biome-ignore lint/suspicious/noExplicitAny: the state file's JSON (each state's summary has its own shape)
type Entry = { state: string; ok?: boolean; ms: number; summary: Record<string, any> };

/** get_option(NAME) as JSON, through the legacy site's own WordPress (run on its host; Debian's dispatcher by Host) */
const oldOption = async (s: LegacySite, name: string) => {
  const php = `$_SERVER['HTTP_HOST']='${s.domain}'; require 'wp-load.php'; echo json_encode(get_option($argv[1]));`;
  return ssh(hostOf(s).address, `cd ${quote(s.root)} && php -r ${quote(php)} ${quote(name)}`);
};
/** get_option(NAME) as JSON, through the farm site's WordPress (its php-fpm container) */
const newOption = async (s: LegacySite, name: string) => {
  const fpm = `${stackOf(s)}_php-fpm`;
  const php = `require '/var/www/html/wp-load.php'; echo json_encode(get_option($argv[1]));`;
  return inService((await nodesOf(fpm))[0]!, fpm, ['php', '-r', php, name]);
};

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-migrate-lab-'));
  sitesDir = path.join(work, 'sites');
  stateDir = path.join(work, 'state');
  await assertLabUp(['mgr1', 'wrk1', 'wrk2', 'db1', 'db2', 'db3']);
  // the legacy host beside the running lab (image, container and seed once; seconds when there)
  const t0 = Date.now();
  const up = await run(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', 'legacy-up'], { cwd: ROOT, timeout: 20 * 60_000 });
  console.log(`# legacy-up: ${((Date.now() - t0) / 1000).toFixed(1)} s: ${up.stdout.trim().split('\n').pop()}`);
  await convergeSitePrerequisites(work);
  const pw = labEnvValue('LEGACY_WP_ADMIN_PASSWORD');
  assert.ok(pw, 'the legacy sites’ admin password is in lab.env');
  process.env.WPFARM_MIGRATE_LOGIN_PASSWORD = pw;
});

after(async () => {
  await stopLoop(LOOP_NODE, LOOP);
  for (const s of [BLOG, SHOP]) {
    if (existsSync(stateFile(s))) await cli('playbooks/migrate-site.ts', [...common(s), '--rollback']);
    if (existsSync(path.join(sitesDir, `${siteIdFor(s.domain)}.yml`)))
      await cli('playbooks/remove-site.ts', ['--domain', s.domain, '--yes', '--no-backup', '--sites-dir', sitesDir]);
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

/** inspect → verify of one site, every verification checked, and a nested serialized option through WordPress */
async function migrateToVerify(t: TestContext, s: LegacySite, minUploads: number): Promise<void> {
  const t0 = Date.now();
  const r = await cli('playbooks/migrate-site.ts', [...common(s), '--until', 'verify', '--verify-login', 'admin'], 20 * 60_000);
  t.diagnostic(`migrate-site ${s.domain} --until verify: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(r.code, 0, r.out.slice(-5000));
  assert.ok(!r.out.includes(process.env.WPFARM_MIGRATE_LOGIN_PASSWORD!), 'the password is in no output');
  const st = stateOf(s);
  assert.equal(st.completed, 'verify');
  const v = (st.history as Entry[]).find((h) => h.state === 'verify' && h.ok)!.summary;
  for (const h of st.history as Entry[]) t.diagnostic(`${s.domain} ${h.state}: ${h.ms} ms`);
  t.diagnostic(`${s.domain} verify: ${JSON.stringify({ tables: v.tables, rows: v.rows, uploads: v.uploads, http: v.http })}`);
  assert.ok(v.tables >= 12 && v.rows > 50 && v.uploads >= minUploads, `counts and checksums compared: ${JSON.stringify(v)}`);
  assert.equal(v.http.login, 'ok', 'admin login with the existing password works on the new site');
  assert.equal(v.http.pages, 6, 'the home page and 5 sampled posts');
  assert.equal(v.http.samePages, v.http.pages, `every page the same after normalising URLs: ${JSON.stringify(v.http)}`);
  // every copied file belongs to the site's owner in the farm (uid 33), whatever owned it on the source (the image's
  // own mu-plugins, root's by design, are not copied: left out)
  const fpm = `${stackOf(s)}_php-fpm`;
  const wpc = '/var/www/html/wp-content';
  const notOwned = ['find', wpc, '-path', `${wpc}/mu-plugins`, '-prune', '-o', '!', '-uid', '33', '-print'];
  assert.equal(await inService((await nodesOf(fpm))[0]!, fpm, notOwned), '');
  // a nested serialized option through WordPress on both sides: the new one is the old one with the URL replaced
  const before = await oldOption(s, 'legacy_settings');
  const oldUrl = `http:\\/\\/${s.domain}`;
  assert.ok(before.includes(oldUrl), `the source's option holds the old URL: ${before}`);
  const got = await newOption(s, 'legacy_settings');
  t.diagnostic(`${s.domain} get_option('legacy_settings'): ${got}`);
  assert.deepEqual(JSON.parse(got), JSON.parse(before.replaceAll(oldUrl, `https:\\/\\/${s.domain}`)));
  // the title in utf8mb4 (emoji, RTL) through WordPress on both sides
  assert.equal(await newOption(s, 'blogname'), await oldOption(s, 'blogname'));
}

interface Sample {
  at: number;
  n: number;
  code: string;
  ms: number;
  where: string;
}

/**
 * The rest of the migration (cutover, done) while a request loop asks for the site by its name every 200 ms: to the
 * old host until the cutover has ended, to the farm after (DNS switching when the migration switches it, last in
 * its cutover). Returns the window: from the last good answer before the first failure to the first good one after
 * the last failure (what a visitor sees), and the span of the 503s.
 */
async function cutoverUnderLoop(t: TestContext, s: LegacySite): Promise<{ windowS: number; span503S: number; cutoverS: number }> {
  const stack = stackOf(s);
  const image = await ssh(
    'mgr1',
    `docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' ${quote(`${stack}_nginx`)}`,
  );
  const loop = String.raw`
i=0; end=$(( $(date +%s) + 1200 ))
while [ ! -e /tmp/stop ] && [ "$(date +%s)" -lt "$end" ]; do
  i=$((i+1))
  if [ -e /tmp/dns-farm ]; then where=farm; url="http://$SVC/?loop=$i"; else where=old; url="http://$OLD/?loop=$i"; fi
  r=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --connect-timeout 5 --max-time 15 \
    -H "Host: $SITE" -H 'X-Forwarded-Proto: https' "$url")
  echo "$(date +%s.%N) $i $r $where"
  sleep 0.2
done`;
  await ssh(
    LOOP_NODE,
    `docker rm -f ${quote(LOOP)} >/dev/null 2>&1; docker run -d --name ${quote(LOOP)} --network traefik-public ` +
      `-e SITE=${quote(s.domain)} -e OLD=${quote(hostOf(s).address)} -e SVC=${quote(`${stack}_nginx:8080`)} ` +
      `--entrypoint bash ${quote(image)} -c ${quote(loop)}`,
  );
  await new Promise((r) => setTimeout(r, 4000));
  assert.equal(stateOf(s).completed, 'verify', `${s.domain} stands verified before its cutover`);
  let finished = false;
  const pb = cli('playbooks/migrate-site.ts', [...common(s), '--verify-login', 'admin'], 20 * 60_000).finally(() => {
    finished = true;
  });
  // "DNS" switches when the cutover is over (the migration switches a Cloudflare name last in its cutover)
  // the state is read before the end of the run is looked at: a cutover done between two reads, just before the run
  // ends, must still switch (the CI-like run at 15:26 missed it: 0 requests to the farm)
  let switchedAt = 0;
  while (!switchedAt) {
    const ended = finished;
    const st = stateOf(s);
    if (st.completed === 'cutover' || st.completed === 'done') {
      await ssh(LOOP_NODE, `docker exec ${quote(LOOP)} touch /tmp/dns-farm`);
      switchedAt = Date.now() / 1000;
    } else if (ended) break;
    else await new Promise((r) => setTimeout(r, 100));
  }
  const r = await pb;
  assert.equal(r.code, 0, r.out.slice(-5000));
  const read = async (): Promise<Sample[]> =>
    (await ssh(LOOP_NODE, `docker logs ${quote(LOOP)} 2>&1`))
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((c) => c.length === 5)
      .map(([at, n, code, secs, where]) => ({
        at: Number(at),
        n: Number(n),
        code: code!,
        ms: Math.round(Number(secs) * 1000),
        where: where!,
      }));
  // the loop goes on until it has asked the farm 5 times (a fixed 4 s gave 2 requests at load 57 in the CI-like run
  // of 12-06 18:10: each took seconds), for at most 60 s
  let samples = await read();
  for (const t0 = Date.now(); samples.filter((x) => x.where === 'farm').length < 5 && Date.now() - t0 < 60_000; samples = await read())
    await new Promise((r) => setTimeout(r, 1000));
  await stopLoop(LOOP_NODE, LOOP);
  const bad = samples.filter((x) => x.code !== '200');
  const cut = (stateOf(s).history as Entry[]).find((h) => h.state === 'cutover' && h.ok)!;
  const firstBad = bad[0];
  const lastBad = bad[bad.length - 1];
  const lastOk = firstBad ? samples.filter((x) => x.n < firstBad.n && x.code === '200').pop() : undefined;
  const firstOk = lastBad ? samples.find((x) => x.n > lastBad.n && x.code === '200') : undefined;
  const windowS = lastOk && firstOk ? firstOk.at - lastOk.at : Number.POSITIVE_INFINITY;
  const span503S = firstBad && lastBad ? lastBad.at - firstBad.at : 0;
  t.diagnostic(
    `${s.domain}: ${samples.length} requests (${samples.filter((x) => x.where === 'old').length} to the old host, ` +
      `${samples.filter((x) => x.where === 'farm').length} to the farm); ${bad.length} answered 503 (maintenance) over ` +
      `${span503S.toFixed(1)} s; WINDOW (last 200 before to first 200 after) ${windowS.toFixed(1)} s; the cutover state took ` +
      `${(cut.ms / 1000).toFixed(1)} s (maintenance ${(cut.summary.maintenanceMs / 1000).toFixed(1)} s); ` +
      `deploy: ${JSON.stringify(cut.summary.deployed)}`,
  );
  assert.ok(samples.filter((x) => x.where === 'old' && x.code === '200').length >= 5, 'the old site served before its cutover');
  assert.ok(samples.filter((x) => x.where === 'farm' && x.code === '200').length >= 5, 'the farm serves after');
  assert.deepEqual(
    bad.filter((x) => x.code !== '503' || x.where !== 'old'),
    [],
    'no failure but the old site’s maintenance answer (503) during the cutover',
  );
  assert.ok(bad.length >= 1, 'the maintenance window was seen by the loop');
  assert.ok(
    bad.every((x) => x.at >= switchedAt - cut.ms / 1000 - 1 && x.at <= switchedAt + 1),
    'the 503s are within the cutover',
  );
  assert.equal(stateOf(s).status, 'done');
  const rec = readFileSync(path.join(sitesDir, `${siteIdFor(s.domain)}.yml`), 'utf8');
  assert.ok(rec.includes(`migrated_from:\n  source: "ssh://root@${hostOf(s).address}${s.root}"\n  domain: ${s.domain}\n`), rec);
  assert.match(rec, /cutover: "/);
  // the source is untouched but for the maintenance flag (WordPress answers 503 there now)
  assert.match(await ssh(hostOf(s).address, `cat ${quote(`${s.root}/.maintenance`)}`), /wpfarm migration/);
  return { windowS, span503S, cutoverS: cut.ms / 1000 };
}

test('blog.legacy.test (plain tree, prefix lg7_, DB on :3307) inspect → verify: every check, get_option', {
  timeout: 25 * 60_000,
}, async (t) => {
  await migrateToVerify(t, BLOG, 2);
});

test(`shop.legacy.test (Debian layout, ${LEGACY_BIG_UPLOADS_MB} MB of uploads) inspect → verify: every check, get_option`, {
  timeout: 25 * 60_000,
}, async (t) => {
  await migrateToVerify(t, SHOP, LEGACY_BIG_UPLOADS_MB + 1);
});

test('blog.legacy.test cutover under a request loop: only the maintenance window fails, and it is measured', {
  timeout: 20 * 60_000,
}, async (t) => {
  const w = await cutoverUnderLoop(t, BLOG);
  console.log(
    `# MIGRATE WINDOW ${BLOG.domain}: ${w.windowS.toFixed(1)} s (503s over ${w.span503S.toFixed(1)} s, cutover ${w.cutoverS.toFixed(1)} s)`,
  );
  assert.ok(Number.isFinite(w.windowS), 'the window has a good answer on each side');
});

test(`shop.legacy.test (${LEGACY_BIG_UPLOADS_MB} MB) cutover under a request loop: the window is measured and under ${WINDOW_AIM_S} s`, {
  timeout: 20 * 60_000,
}, async (t) => {
  const w = await cutoverUnderLoop(t, SHOP);
  console.log(
    `# MIGRATE WINDOW ${SHOP.domain}: ${w.windowS.toFixed(1)} s (503s over ${w.span503S.toFixed(1)} s, cutover ${w.cutoverS.toFixed(1)} s)`,
  );
  assert.ok(w.windowS < WINDOW_AIM_S, `the maintenance window of the ${LEGACY_BIG_UPLOADS_MB} MB site: ${w.windowS.toFixed(1)} s`);
});
