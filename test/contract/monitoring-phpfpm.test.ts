// PHP-FPM needs no exporter: PHP 8.1+ serves its status page in OpenMetrics format. Proof with Debian's
// php8.2-fpm and prometheus on loopback: the generated `phpfpm` scrape job (its metrics_path and params;
// only the service discovery is replaced by the loopback target) scrapes the status page, the target is
// up, and every phpfpm_* metric the dashboards use exists. In a site, nginx passes /fpm-status to
// php-fpm; here a small HTTP relay does that job with cgi-fcgi (libfcgi-bin), headers passed through.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { prometheusConfig, toYaml } from '../../roles/monitoring/prometheus.ts';
import { dashboards, dashboardPromql } from '../../roles/monitoring/dashboards.ts';
import { ensureDebPackages, ensureMonitoringTools, PROMETHEUS_BIN } from '../../roles/monitoring/tools.ts';

const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-fpm-'));
const children: ChildProcess[] = [];
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)));
  rmSync(work, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test("the phpfpm job scrapes PHP-FPM 8.2 OpenMetrics status directly; the dashboards' phpfpm metrics exist", {
  timeout: 600_000,
}, async (t) => {
  await ensureMonitoringTools();
  await ensureDebPackages(['php8.2-fpm', 'libfcgi-bin']);
  const fpmPort = await freePort();
  const relayPort = await freePort();
  const promPort = await freePort();
  writeFileSync(
    path.join(work, 'fpm.conf'),
    `[global]\npid = ${work}/fpm.pid\nerror_log = ${work}/fpm.log\ndaemonize = no\n[www]\nlisten = 127.0.0.1:${fpmPort}\npm = static\npm.max_children = 2\npm.status_path = /fpm-status\n`,
  );
  const fpm = spawn('/usr/sbin/php-fpm8.2', ['-n', '-y', path.join(work, 'fpm.conf'), '-R'], { stdio: 'ignore' });
  children.push(fpm);

  // what nginx does for /fpm-status: FastCGI request, response headers and body passed through
  const relay = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const env = {
      ...process.env,
      SCRIPT_NAME: url.pathname,
      SCRIPT_FILENAME: url.pathname,
      QUERY_STRING: url.search.slice(1),
      REQUEST_METHOD: 'GET',
    };
    execFile('/usr/bin/cgi-fcgi', ['-bind', '-connect', `127.0.0.1:${fpmPort}`], { env, encoding: 'latin1' }, (err, out) => {
      const sep = out.indexOf('\r\n\r\n');
      if (err || sep < 0) {
        res.writeHead(502);
        res.end(String(err ?? 'no FastCGI response'));
        return;
      }
      const headers: Record<string, string> = {};
      for (const l of out.slice(0, sep).split('\r\n')) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i)] = l.slice(i + 1).trim();
      }
      const status = Number(/^(\d{3})/.exec(headers.Status ?? '200')?.[1] ?? 200);
      delete headers.Status;
      res.writeHead(status, headers);
      res.end(Buffer.from(out.slice(sep + 4), 'latin1'));
    });
  });
  await new Promise<void>((r) => relay.listen(relayPort, '127.0.0.1', () => r()));
  after(() => new Promise<void>((r) => relay.close(() => r())));

  // the generated job, with its service discovery swapped for the loopback relay
  const cfg = prometheusConfig({
    hosts: [],
    sites: [{ id: 'a', stack: 'site-a' }],
    farm: 't',
    alertmanagers: [],
    self: `127.0.0.1:${promPort}`,
    scrapeInterval: '2s',
  });
  const job = (cfg.scrape_configs as Array<Record<string, unknown>>).find((j) => j.job_name === 'phpfpm')!;
  assert.equal(job.metrics_path, '/fpm-status');
  delete job.dns_sd_configs;
  delete job.relabel_configs;
  job.static_configs = [{ targets: [`127.0.0.1:${relayPort}`], labels: { stack: 'site-a' } }];
  cfg.scrape_configs = [job];
  cfg.alerting = undefined;
  (cfg.global as Record<string, unknown>).scrape_timeout = '1s';
  writeFileSync(path.join(work, 'prometheus.yml'), toYaml({ ...cfg, alerting: undefined, rule_files: undefined }));
  mkdirSync(path.join(work, 'tsdb'));
  const prom = spawn(
    PROMETHEUS_BIN,
    [
      `--config.file=${path.join(work, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(work, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: 'ignore' },
  );
  children.push(prom);

  const api = `http://127.0.0.1:${promPort}/api/v1`;
  type Target = { health: string; lastError: string; labels: Record<string, string> };
  let last: Target | undefined;
  const t0 = Date.now();
  while (Date.now() - t0 < 60_000) {
    const r = await fetch(`${api}/targets`)
      .then((x) => x.json() as Promise<{ data: { activeTargets: Target[] } }>)
      .catch(() => undefined);
    last = r?.data.activeTargets[0];
    if (last?.health === 'up') break;
    await new Promise((r2) => setTimeout(r2, 500));
  }
  assert.equal(last?.health, 'up', `phpfpm target: ${JSON.stringify(last)}`);
  const names = new Set(((await (await fetch(`${api}/label/__name__/values`)).json()) as { data: string[] }).data);
  const used = new Set(dashboardPromql(dashboards()).flatMap((e) => [...e.expr.matchAll(/\b(phpfpm_[a-z_]+)/g)].map((m) => m[1]!)));
  assert.ok(used.size >= 6, [...used].join(' '));
  const missing = [...used].filter((n) => !names.has(n));
  assert.deepEqual(missing, [], `phpfpm metrics used by dashboards but not served by PHP-FPM: ${missing.join(', ')}`);
  t.diagnostic(`PHP-FPM 8.2 status scraped as OpenMetrics; ${used.size} phpfpm metrics used by dashboards, all present`);
});
