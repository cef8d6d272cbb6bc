// The WordPress exporter on the lab (issue 18 item 1). One site added with add-site (a temporary sites
// directory, as lab 60 does): its wp-site run deploys the exporter stack (roles/wp-exporter) on the first
// Gluster client, with a read-only DB user; then
//  - the exporter's /metrics (its host-mode port, as Prometheus scrapes it) has every part of the site read
//    (probe_success 1), the core version, the database and uploads size, the cron lag, the cache counters;
//  - wp-login is timed as the login form (status 200: the site's nginx lets the farm's own unproxied GET of it
//    through the admin allowlist), while from outside the management ranges wp-login is still refused: through
//    the edge stand-in (with and without a forged X-Forwarded-For), and straight to nginx a POST or a request a
//    proxy forwarded;
//  - a test must-use plugin that sleeps 2.5 s in every request of the site's php-fpm tasks makes the
//    WordPressSiteSlow rule's condition true: Prometheus on mon1 is asked when it runs the wordpress job,
//    else promtool evaluates the farm's rule file against the series scraped from the exporter (the test says
//    which in its diagnostics);
//  - the plugin is removed and the site is removed at the end.
// Prerequisites: the lab up and phase 1 converged (00, 20); galera and gluster are converged here if needed. The
// edge stand-in's stack is removed after when this file made it (as lab 61 does).
// first: it selects the test lab's profile before anything loads scripts/lab/config.ts
import { ADDR, assertLabUp, cli as labCli, convergeSitePrerequisites, nodesOf, ssh } from '../harness/lab-sites.ts';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { quote } from 'zx';
import { alertRules, rulesFile, toYaml } from '../../roles/monitoring/prometheus.ts';
import { ensureMonitoringTools, PROMTOOL, run as tool } from '../../roles/monitoring/tools.ts';
import { STANDIN_STACK } from '../../roles/traefik/standin-steps.ts';
import { EXPORTER_PORT, EXPORTER_STACK } from '../../roles/wp-exporter/stack.ts';
import { writeLabEnv } from '../../scripts/lab/nodes.ts';

const stamp = Date.now().toString(36).slice(-5);
const S = { domain: `x${stamp}.lab.test`, id: `x${stamp}-lab-test` };
const MU = '/var/www/html/wp-content/mu-plugins/zz-wpfarm-test-slow.php';
let work = '';
let sitesDir = '';
let edgeBefore = true; // the edge stand-in's stack was there before this file (else it is removed after)
const cli = (script: string, args: string[], timeoutMs?: number) => labCli(work, script, args, timeoutMs);

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-wpx-test-'));
  sitesDir = path.join(work, 'sites');
  await assertLabUp(['mgr1', 'wrk1', 'wrk2', 'db1', 'mon1']);
  writeLabEnv(); // adds WP_EXPORTER_DB_PASSWORD to a lab env file written before it existed
  edgeBefore = (await ssh('mgr1', `docker stack ls --format '{{.Name}}'`)).split('\n').includes(STANDIN_STACK);
  await convergeSitePrerequisites(work);
});

after(async () => {
  if (existsSync(path.join(sitesDir, `${S.id}.yml`)))
    await cli('playbooks/remove-site.ts', ['--domain', S.domain, '--yes', '--no-backup', '--sites-dir', sitesDir]);
  // the shared test lab as found: other files bind the edge nodes' 80/443 themselves (71-edge-filter, 80)
  if (!edgeBefore) await ssh('mgr1', `docker stack rm ${STANDIN_STACK}`, { nothrow: true });
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The exporter's answer, fetched from mon1 as Prometheus does (the port is open to the monitoring hosts only). */
async function scrape(): Promise<{ text: string; ms: number; node: string }> {
  const node = (await nodesOf(`${EXPORTER_STACK}_exporter`))[0];
  assert.ok(node, 'the exporter task runs');
  const t0 = Date.now();
  const text = await ssh('mon1', `curl -sS --fail -m 25 http://${ADDR[node]}:${EXPORTER_PORT}/metrics`, { timeoutMs: 40_000 });
  return { text, ms: Date.now() - t0, node };
}
const value = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

/** The php-fpm containers of the site, on every node running one: `docker exec -u root` each. */
async function inEveryFpm(cmd: string): Promise<number> {
  const svc = `wp-${S.id}_php-fpm`;
  let n = 0;
  for (const node of await nodesOf(svc)) {
    const out = await ssh(
      node,
      `for c in $(docker ps -q --filter ${quote(`label=com.docker.swarm.service.name=${svc}`)}); ` +
        `do docker exec -u root "$c" sh -c ${quote(cmd)} && echo ok; done`,
    );
    n += out.split('\n').filter((l) => l === 'ok').length;
  }
  return n;
}

test('add-site deploys the exporter; its metrics cover every part of the site', { timeout: 15 * 60_000 }, async (t) => {
  const t0 = Date.now();
  const r = await cli('playbooks/add-site.ts', ['--domain', S.domain, '--title', `Exporter ${stamp}`, '--sites-dir', sitesDir]);
  t.diagnostic(`add-site (with the exporter step) took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(r.code, 0, r.out.slice(-4000));
  const step = r.report?.results.find((x) => x.step === 'site exporter');
  assert.equal(step?.status, 'changed', `site exporter step: ${JSON.stringify(step)}`);
  // the task may need a few seconds to start after the deploy
  let s: Awaited<ReturnType<typeof scrape>> | undefined;
  for (let i = 0; i < 15 && !s; i++) s = await scrape().catch(() => sleep(3000).then(() => undefined));
  assert.ok(s, 'the exporter answers on its host port');
  t.diagnostic(
    `scrape of ${s.node}:${EXPORTER_PORT} took ${s.ms} ms, ${s.text.split('\n').filter((l) => l && !l.startsWith('#')).length} samples`,
  );
  // wp-login: the login form itself (200), not the admin allowlist's 403 (what the exporter timed until the site's
  // nginx let the farm's own unproxied GET through, 2026-12-06)
  const loginStatus = value(s.text, `wordpress_http_status{site="${S.id}",page="login"}`);
  t.diagnostic(`wp-login answered ${loginStatus} to the exporter`);
  assert.equal(loginStatus, 200, `wp-login status seen by the exporter:\n${s.text}`);
  assert.equal(value(s.text, `wordpress_http_status{site="${S.id}",page="home"}`), 200, 'home page status');
  for (const part of ['home', 'login', 'core', 'plugins', 'themes', 'database', 'uploads', 'cron', 'cache'])
    assert.equal(value(s.text, `wordpress_probe_success{site="${S.id}",part="${part}"}`), 1, `part ${part} read:\n${s.text}`);
  assert.match(s.text, new RegExp(`^wordpress_core_info\\{site="${S.id}",version="[0-9][^"]*"\\} 1$`, 'm'));
  assert.ok((value(s.text, `wordpress_database_size_bytes{site="${S.id}"}`) ?? 0) > 100_000, 'database size');
  assert.ok(value(s.text, `wordpress_uploads_size_bytes{site="${S.id}"}`) !== undefined, 'uploads size');
  assert.ok(value(s.text, `wordpress_cron_lag_seconds{site="${S.id}"}`) !== undefined, 'cron lag');
  assert.ok((value(s.text, `wordpress_object_cache_hits_total{site="${S.id}"}`) ?? -1) >= 0, 'cache hits');
  const home = value(s.text, `wordpress_http_response_seconds{site="${S.id}",page="home"}`) ?? NaN;
  const login = value(s.text, `wordpress_http_response_seconds{site="${S.id}",page="login"}`) ?? NaN;
  t.diagnostic(`site ${S.id}: home ${home.toFixed(3)} s, wp-login ${login.toFixed(3)} s before the slow plugin`);
  // no assertion on the speed before the plugin: under the lab's load the uncached home page took 2.6 s once
});

test("outside the management ranges wp-login is still refused; only the farm's unproxied GET of the form passes", {
  timeout: 5 * 60_000,
}, async (t) => {
  const edge = ADDR.mgr1!;
  const image = await ssh('mgr1', `docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' wp-${S.id}_nginx`);
  // a container on traefik-public (its address is the Docker gateway's or its overlay one, not the lab's
  // management range): curl's status code for each request
  const codes = async (reqs: Record<string, string>): Promise<Record<string, string>> => {
    const script = Object.values(reqs)
      .map((args) => `curl -sk -o /dev/null -w '%{http_code}\\n' --max-time 20 ${args}`)
      .join('; ');
    const out = await ssh('mgr1', `docker run --rm --network traefik-public --entrypoint sh ${quote(image)} -c ${quote(script)}`);
    const lines = out.split('\n');
    return Object.fromEntries(Object.keys(reqs).map((k, i) => [k, lines[i] ?? '']));
  };
  const viaEdge = `--resolve ${S.domain}:443:${edge} https://${S.domain}`;
  const direct = `-H ${quote(`Host: ${S.domain}`)} -H 'X-Forwarded-Proto: https' http://wp-${S.id}_nginx:8080`;
  const c = await codes({
    edgeHome: `${viaEdge}/`,
    edgeLogin: `${viaEdge}/wp-login.php`,
    edgeLoginForged: `-H ${quote(`X-Forwarded-For: ${edge}`)} ${viaEdge}/wp-login.php`,
    edgeAdmin: `${viaEdge}/wp-admin/`,
    directPost: `-X POST --data 'log=admin&pwd=x' ${direct}/wp-login.php`,
    directForwarded: `-H 'X-Forwarded-For: 198.51.100.7' ${direct}/wp-login.php`,
    directAdmin: `${direct}/wp-admin/`,
    directProbe: `${direct}/wp-login.php`,
    directProbeCheck: `${direct}/wpfarm-farm-probe`,
  });
  t.diagnostic(`status codes from a container on traefik-public: ${JSON.stringify(c)}`);
  assert.equal(c.edgeHome, '200', 'the home page through the edge');
  assert.equal(c.edgeLogin, '403', 'wp-login through the edge, outside the management ranges');
  assert.equal(c.edgeLoginForged, '403', 'wp-login through the edge with a forged X-Forwarded-For');
  assert.equal(c.edgeAdmin, '403', 'wp-admin through the edge');
  assert.equal(c.directPost, '403', 'a login (POST) straight to nginx from the overlay');
  assert.equal(c.directForwarded, '403', 'a forwarded request is judged by its client address');
  assert.equal(c.directAdmin, '403', 'wp-admin straight to nginx from the overlay');
  // the one opening: a GET of the login form from inside the farm that no proxy forwarded (the exporter's probe)
  assert.equal(c.directProbe, '200', "the farm's own unproxied GET of the login form");
  assert.equal(c.directProbeCheck, '404', 'the probe check is internal to nginx');
});

test('a sleeping must-use plugin makes WordPressSiteSlow true', { timeout: 5 * 60_000 }, async (t) => {
  const n = await inEveryFpm(`printf '%s\\n' '<?php usleep(2500000);' > ${MU} && chmod 0644 ${MU}`);
  assert.ok(n >= 1, 'the plugin is in every php-fpm task');
  try {
    const s = await scrape();
    const home = value(s.text, `wordpress_http_response_seconds{site="${S.id}",page="home"}`) ?? NaN;
    const login = value(s.text, `wordpress_http_response_seconds{site="${S.id}",page="login"}`) ?? NaN;
    t.diagnostic(`with the plugin in ${n} task(s): home ${home.toFixed(3)} s, wp-login ${login.toFixed(3)} s (scrape ${s.ms} ms)`);
    assert.ok(home > 2.4, `the home page is slow (home ${home})`);
    assert.equal(value(s.text, `wordpress_http_status{site="${S.id}",page="login"}`), 200, 'wp-login answered 200');
    assert.ok(login > 2.4, `wp-login is slow (${login})`);

    const rule = alertRules({ forOverride: '0s' }).find((x) => x.alert === 'WordPressSiteSlow')!;
    const prom = await fetch(`http://${ADDR.mon1}:9090/api/v1/query?query=${encodeURIComponent('up{job="wordpress"}')}`, {
      signal: AbortSignal.timeout(5000),
    })
      .then((r) => r.json() as Promise<{ data?: { result?: unknown[] } }>)
      .catch(() => null);
    if (prom?.data?.result?.length) {
      // Prometheus scrapes the exporter: ask it for the rule's expression until the next scrape saw the slow site
      let hits: Array<{ metric: Record<string, string> }> = [];
      for (let i = 0; i < 20 && !hits.some((h) => h.metric.site === S.id); i++) {
        await sleep(5000);
        const q = await fetch(`http://${ADDR.mon1}:9090/api/v1/query?query=${encodeURIComponent(rule.expr)}`).then(
          (r) => r.json() as Promise<{ data: { result: Array<{ metric: Record<string, string> }> } }>,
        );
        hits = q.data.result;
      }
      t.diagnostic(`Prometheus on mon1: ${rule.expr} → ${JSON.stringify(hits.map((h) => h.metric))}`);
      assert.ok(
        hits.some((h) => h.metric.site === S.id),
        'the condition is true in Prometheus',
      );
      return;
    }
    // no Prometheus with the wordpress job on this lab: the farm's rule file, evaluated by promtool on the
    // series the exporter answered with (each sample held for the test's 3 minutes)
    await ensureMonitoringTools();
    const series = s.text
      .split('\n')
      .filter((l) =>
        [`wordpress_http_response_seconds{site="${S.id}",`, `wordpress_http_status{site="${S.id}",`].some((p) => l.startsWith(p)),
      )
      .map((l) => {
        const i = l.lastIndexOf(' ');
        return { series: l.slice(0, i).replace('{', '{job="wordpress",instance="exporter",'), values: `${l.slice(i + 1)}x3` };
      });
    // the pages the scrape saw answer 200 slower than the rule's threshold (both, asserted above)
    const slowPages = ['home', 'login'].filter(
      (p) =>
        (value(s.text, `wordpress_http_response_seconds{site="${S.id}",page="${p}"}`) ?? 0) > 2 &&
        value(s.text, `wordpress_http_status{site="${S.id}",page="${p}"}`) === 200,
    );
    const rules = path.join(work, 'rules.yml');
    writeFileSync(rules, toYaml(rulesFile([rule])));
    const testFile = path.join(work, 'test.yml');
    const exp = (page: string) => ({
      exp_labels: { severity: 'warning', site: S.id, page },
      exp_annotations: Object.fromEntries(
        Object.entries(rule.annotations).map(([k, v]) => [k, v.replace('{{ $labels.page }}', page).replace('{{ $labels.site }}', S.id)]),
      ),
    });
    writeFileSync(
      testFile,
      toYaml({
        rule_files: [rules],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: series,
            alert_rule_test: [{ eval_time: '1m', alertname: rule.alert, exp_alerts: slowPages.map((p) => exp(p)) }],
          },
        ],
      }),
    );
    const r = await tool(PROMTOOL, ['test', 'rules', testFile]);
    t.diagnostic(`promtool test rules (no Prometheus with the wordpress job on mon1): exit ${r.code}`);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
  } finally {
    const removed = await inEveryFpm(`rm -f ${MU}`);
    t.diagnostic(`slow plugin removed from ${removed} task(s)`);
  }
});
