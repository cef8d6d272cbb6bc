// A site is a web page (issue 17): add-site on the lab, then the site through the farm's whole request path:
// the controller → the edge stand-in (HAProxy from Traefik's router model, host-mode 443 on a manager, the lab
// CA's certificate) → nginx → php-fpm. curl with the lab CA; Debian's headless Chromium (puppeteer-core) opens
// the home page, a post and the wp-admin login, checks the rendered titles, that every request succeeded (no
// 4xx/5xx, no failed or blocked request, no mixed content, no CSP refusal), and logs in with the generated admin
// password to the dashboard. The admin allow list holds through the stand-in: a client outside the management
// ranges gets 403 on wp-login.php, even with a forged X-Forwarded-For. Needs 60-sites' prerequisites (galera,
// gluster); the site is removed after. Screenshot of the home page: $SITE_SCREENSHOT (docs/site-home.png).
import { ADDR, INVENTORY, ROOT, assertLabUp, cli as labCli, convergeSitePrerequisites, run, ssh } from '../harness/lab-sites.ts';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash, X509Certificate } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import puppeteer, { type Page } from 'puppeteer-core';
import { quote } from 'zx';

const stamp = Date.now().toString(36).slice(-5);
const S = { domain: `web${stamp}.lab.test`, id: `web${stamp}-lab-test`, title: `Lab browser site ${stamp}` };
const edge = ADDR.mgr1!;
const vars = (parseYaml(readFileSync(INVENTORY, 'utf8')) as { vars: Record<string, string> }).vars;
const caCert = path.resolve(ROOT, vars.edge_ca_dir ?? '', 'ca.crt');
let work = '';
let sitesDir = '';
let password = '';
let user = '';
const cli = (script: string, args: string[]) => labCli(work, script, [...args, '--sites-dir', sitesDir]);

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-browser-test-'));
  sitesDir = path.join(work, 'sites');
  assert.equal(vars.edge_standin, 'haproxy', 'the lab inventory names the edge stand-in');
  await assertLabUp(['mgr1', 'wrk1', 'wrk2', 'db1', 'db2', 'db3']);
  await convergeSitePrerequisites(work);
});

after(async () => {
  if (existsSync(path.join(sitesDir, `${S.id}.yml`))) await cli('playbooks/remove-site.ts', ['--domain', S.domain, '--yes', '--no-backup']);
  if (work) rmSync(work, { recursive: true, force: true });
});

test('add-site: a site the controller opens over https through the edge stand-in (lab CA), allow list held', {
  timeout: 15 * 60_000,
}, async (t) => {
  const t0 = Date.now();
  const r = await cli('playbooks/add-site.ts', ['--domain', S.domain, '--title', S.title]);
  t.diagnostic(`add-site (with the edge stand-in) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  [, user = '', password = ''] = /WordPress admin for .*: user (\S+), password (\S{16,})/.exec(r.out) ?? [];
  assert.equal(r.code, 0, r.out.slice(-4000));
  assert.ok(password, 'the admin password is printed');
  assert.match(r.out, /wall time [\d.]+ s; not as in production: traefik → haproxy/, 'the summary line names the stand-in');
  assert.match(r.out, /traefik: replaced by haproxy: edge_standin: haproxy in the inventory/);
  // curl with the lab CA, as the README says: TLS verified, the site's title, the edge's headers
  const page = await run('curl', [
    ...['-sS', '--cacert', caCert, '--resolve', `${S.domain}:443:${edge}`, '-D', '-', `https://${S.domain}/`],
  ]);
  assert.match(page.stdout, /^HTTP\/\S+ 200/);
  assert.match(page.stdout, /strict-transport-security: max-age=31536000; includeSubDomains; preload/i);
  assert.ok(page.stdout.includes(`<title>${S.title}`), 'the home page has the site title');
  const redirect = await run('curl', [
    '-sS',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} %{redirect_url}',
    '-H',
    `Host: ${S.domain}`,
    `http://${edge}/x`,
  ]);
  assert.equal(redirect.stdout, `301 https://${S.domain}/x`);
  // outside the management ranges (a container on traefik-public: its address is the Docker gateway's, not the
  // lab's): the home page yes, wp-login.php no, and a forged X-Forwarded-For changes nothing
  const image = await ssh('mgr1', `docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' wp-${S.id}_nginx`);
  const outside = async (p: string, extra = '') =>
    ssh(
      'mgr1',
      `docker run --rm --network traefik-public --entrypoint curl ${quote(image)} -sk -o /dev/null -w '%{http_code}' ${extra} ` +
        `--resolve ${S.domain}:443:${edge} https://${S.domain}${p}`,
    );
  assert.equal(await outside('/'), '200');
  assert.equal(await outside('/wp-login.php'), '403');
  assert.equal(await outside('/wp-login.php', `-H 'X-Forwarded-For: ${edge}'`), '403');
});

/** Open a page; every response and failure recorded. */
async function visit(page: Page, url: string, problems: string[]): Promise<void> {
  const res = await page.goto(url, { waitUntil: 'networkidle0', timeout: 60_000 });
  assert.ok(res, `${url}: no response`);
  if (res.status() >= 400) problems.push(`${url}: ${res.status()}`);
}

test('headless Chromium: home page, a post, wp-admin login to the dashboard; every asset loaded over https', {
  timeout: 5 * 60_000,
}, async (t) => {
  assert.ok(password, 'the site was created');
  const spki = createHash('sha256').update(new X509Certificate(readFileSync(caCert)).publicKey.export({ type: 'spki', format: 'der' }));
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      `--host-resolver-rules=MAP ${S.domain} ${edge}`,
      // trust the lab CA only (what importing ca.crt does in a browser)
      `--ignore-certificate-errors-spki-list=${spki.digest('base64')}`,
    ],
  });
  const t0 = Date.now();
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    const problems: string[] = [];
    const requests: string[] = [];
    page.on('request', (q) => requests.push(q.url()));
    page.on('response', (r) => {
      if (r.status() >= 400) problems.push(`${r.status()} ${r.url()}`);
    });
    page.on('requestfailed', (q) => problems.push(`failed ${q.url()}: ${q.failure()?.errorText}`));
    page.on('console', (m) => {
      if (/Mixed Content|Refused to|Content Security Policy|blocked/i.test(m.text())) problems.push(`console: ${m.text()}`);
    });
    const base = `https://${S.domain}`;
    await visit(page, `${base}/`, problems);
    assert.ok((await page.title()).startsWith(S.title), `the rendered title: ${await page.title()}`);
    const shot = process.env.SITE_SCREENSHOT ?? path.join(work, 'site-home.png');
    await page.screenshot({ path: shot });
    t.diagnostic(`screenshot ${shot}`);
    // the first post WordPress creates, linked from the home page
    const post = await page.$eval('a[href*="hello-world"], a[href*="?p=1"]', (a) => (a as HTMLAnchorElement).href);
    await visit(page, post, problems);
    assert.match(await page.title(), /^Hello world! [–-] /);
    await visit(page, `${base}/wp-login.php`, problems);
    assert.match(await page.title(), /Log In/);
    await page.type('#user_login', user);
    await page.type('#user_pass', password);
    await Promise.all([page.waitForNavigation({ waitUntil: 'networkidle0', timeout: 60_000 }), page.click('#wp-submit')]);
    assert.match(page.url(), /\/wp-admin\/$/);
    assert.match(await page.title(), /^Dashboard /);
    assert.ok(await page.$('#wpadminbar'), 'the admin bar is rendered');
    if (process.env.SITE_SCREENSHOT) await page.screenshot({ path: process.env.SITE_SCREENSHOT.replace(/\.png$/, '-dashboard.png') });
    assert.deepEqual(problems, [], 'no 4xx/5xx, failed, blocked or mixed-content request');
    const insecure = requests.filter((u) => !u.startsWith('https://') && !u.startsWith('data:'));
    assert.deepEqual(insecure, [], 'every request over https');
    t.diagnostic(`${requests.length} requests, browser part ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await browser.close();
  }
});
