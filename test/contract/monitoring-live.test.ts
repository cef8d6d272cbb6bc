// Live proof on the controller, loopback only: Debian's prometheus, prometheus-alertmanager and
// prometheus-node-exporter run with wpfarm's generated configuration. Prometheus scrapes every target
// (all up); stopping one node-exporter makes NodeDown reach a webhook receiver this test runs. The
// rule's `for:` is shortened with the generator's forOverride (lab speed); the production 5m is proven
// by promtool test rules in monitoring.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { prometheusConfig, alertRules, rulesFile, toYaml } from '../../roles/monitoring/prometheus.ts';
import { parseChannels, renderAlertmanager } from '../../roles/monitoring/alertmanager.ts';
import { dashboards, dashboardPromql } from '../../roles/monitoring/dashboards.ts';
import { ensureMonitoringTools, PROMETHEUS_BIN, ALERTMANAGER_BIN, NODE_EXPORTER_BIN } from '../../roles/monitoring/tools.ts';

const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-mon-live-'));
const children: ChildProcess[] = [];
const logs = new Map<ChildProcess, string>();

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)));
  rmSync(work, { recursive: true, force: true });
});

function start(bin: string, args: string[]): ChildProcess {
  const c = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  logs.set(c, '');
  const add = (b: Buffer) => logs.set(c, (logs.get(c)! + b.toString()).slice(-20_000));
  c.stdout!.on('data', add);
  c.stderr!.on('data', add);
  children.push(c);
  return c;
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

async function freePort(hosts: string[]): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = 20000 + Math.floor(Math.random() * 20000);
    if ((await Promise.all(hosts.map((h) => portFree(h, p)))).every(Boolean)) return p;
  }
  throw new Error('no free port');
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs: number, proc?: ChildProcess): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (proc && proc.exitCode !== null) throw new Error(`${what}: process exited: ${logs.get(proc)}`);
    if (Date.now() - t0 > timeoutMs)
      throw new Error(`${what}: not within ${timeoutMs} ms${proc ? `\n${logs.get(proc)?.slice(-3000)}` : ''}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** the collectors the dashboards and rules read (the rest stay off: the machine's 2 cores are shared) */
const NODE_COLLECTORS = ['cpu', 'loadavg', 'meminfo', 'filesystem', 'diskstats', 'netdev', 'textfile'];

/** Metric names an expression refers to (identifiers not followed by "(" and not PromQL keywords/labels). */
function metricNames(expr: string): string[] {
  const noStrings = expr.replace(/"[^"]*"/g, '""').replace(/\{[^}]*\}/g, '{}');
  const words = [...noStrings.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()/g)].map((m) => m[1]!);
  const keywords = new Set([
    'by',
    'without',
    'on',
    'ignoring',
    'group_left',
    'group_right',
    'and',
    'or',
    'unless',
    'bool',
    'offset',
    'le',
    'e9',
    'instance',
    'service',
    'code',
    'mode',
    'cn',
    'stack',
    'entrypoint',
    'integration',
    'alertname',
  ]);
  return words.filter((w) => !keywords.has(w) && !/^\d/.test(w) && !/^[smhdwy]$/.test(w));
}

interface WebhookAlert {
  status: string;
  labels: Record<string, string>;
}

test('Prometheus scrapes every exporter; a stopped node-exporter raises NodeDown at the webhook receiver', {
  timeout: 300_000,
}, async (t) => {
  await ensureMonitoringTools(true);
  const nodes = [
    { name: 'n1', address: '127.0.0.11' },
    { name: 'n2', address: '127.0.0.12' },
    { name: 'n3', address: '127.0.0.13' },
  ];
  const nodePort = await freePort(nodes.map((n) => n.address));
  const promPort = await freePort(['127.0.0.1']);
  const amPort = await freePort(['127.0.0.1']);

  // the webhook receiver (an alert channel of type webhook)
  const received: WebhookAlert[] = [];
  const hook = createHttpServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      try {
        received.push(...((JSON.parse(body) as { alerts: WebhookAlert[] }).alerts ?? []));
      } catch {
        /* not JSON: ignored, the assertion below reports what arrived */
      }
      res.end('ok');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()));
  after(() => new Promise<void>((r) => hook.close(() => r())));
  const hookUrl = `http://127.0.0.1:${(hook.address() as { port: number }).port}/alerts`;

  const exporters = new Map<string, ChildProcess>();
  for (const n of nodes) {
    // a few collectors only: the machine's 2 cores are shared
    exporters.set(
      n.name,
      start(NODE_EXPORTER_BIN, [
        `--web.listen-address=${n.address}:${nodePort}`,
        '--collector.disable-defaults',
        ...NODE_COLLECTORS.map((c) => `--collector.${c}`),
        `--collector.textfile.directory=${work}`,
      ]),
    );
  }

  const am = renderAlertmanager(parseChannels([{ type: 'webhook', url: hookUrl }]), () => undefined, {
    groupWait: '1s',
    groupInterval: '5s',
    repeatInterval: '1h',
  });
  writeFileSync(path.join(work, 'alertmanager.yml'), am.yaml);
  mkdirSync(path.join(work, 'am-data'));
  const amProc = start(ALERTMANAGER_BIN, [
    `--config.file=${path.join(work, 'alertmanager.yml')}`,
    `--storage.path=${path.join(work, 'am-data')}`,
    `--web.listen-address=127.0.0.1:${amPort}`,
    '--cluster.listen-address=',
  ]);

  const rulesDir = path.join(work, 'rules');
  mkdirSync(rulesDir);
  writeFileSync(path.join(rulesDir, 'wpfarm.yml'), toYaml(rulesFile(alertRules({ forOverride: '10s' }))));
  const cfg = prometheusConfig({
    hosts: nodes.map((n) => ({ ...n, groups: [] })),
    farm: 'controller-test',
    alertmanagers: [`127.0.0.1:${amPort}`],
    ports: { node: nodePort },
    self: `127.0.0.1:${promPort}`,
    scrapeInterval: '2s',
    evaluationInterval: '2s',
    rulesDir,
  });
  (cfg.global as Record<string, unknown>).scrape_timeout = '1s';
  writeFileSync(path.join(work, 'prometheus.yml'), toYaml(cfg));
  mkdirSync(path.join(work, 'tsdb'));
  const prom = start(PROMETHEUS_BIN, [
    `--config.file=${path.join(work, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(work, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
  ]);

  const api = `http://127.0.0.1:${promPort}/api/v1`;
  type Target = { labels: Record<string, string>; health: string; lastError: string };
  const targets = async (): Promise<Target[]> =>
    ((await (await fetch(`${api}/targets`)).json()) as { data: { activeTargets: Target[] } }).data.activeTargets;

  // every exporter scraped and up: 3 nodes + Prometheus + Alertmanager
  const up = await waitFor(
    'all targets up',
    async () => {
      const t = await targets();
      return t.length === 5 && t.every((x) => x.health === 'up') ? t : undefined;
    },
    60_000,
    prom,
  );
  assert.deepEqual(
    up
      .filter((t) => t.labels.job === 'node')
      .map((t) => t.labels.instance)
      .sort(),
    ['n1', 'n2', 'n3'],
  );
  void amProc;

  // every node-exporter, Prometheus and Alertmanager metric the dashboards and rules use exists in what
  // Debian's exporters really expose (a misspelt metric would leave a panel or an alert silently empty)
  const exprs = [...dashboardPromql(dashboards()).map((e) => e.expr), ...alertRules().map((r) => r.expr)];
  const used = new Set(exprs.flatMap(metricNames).filter((n) => /^(node_|alertmanager_|prometheus_|up$)/.test(n)));
  assert.ok(used.size >= 15, `${used.size} metric names`);
  const have = await waitFor(
    'metric names',
    async () => {
      const names = new Set(((await (await fetch(`${api}/label/__name__/values`)).json()) as { data: string[] }).data);
      return [...used].every((n) => names.has(n)) ? names : undefined;
    },
    30_000,
  ).catch(async () => new Set(((await (await fetch(`${api}/label/__name__/values`)).json()) as { data: string[] }).data));
  const missing = [...used].filter((n) => !have.has(n));
  assert.deepEqual(missing, [], `metrics used by dashboards/rules but not exposed: ${missing.join(', ')}`);
  t.diagnostic(`${used.size} node/prometheus/alertmanager metric names used by dashboards and rules, all exposed`);

  // stop node-exporter on n2
  const stoppedAt = Date.now();
  exporters.get('n2')!.kill('SIGTERM');
  const firing = await waitFor(
    'NodeDown for n2 at the webhook',
    async () => received.find((a) => a.status === 'firing' && a.labels.alertname === 'NodeDown' && a.labels.instance === 'n2'),
    90_000,
    prom,
  );
  const ms = Date.now() - stoppedAt;
  assert.equal(firing.labels.severity, 'critical');
  assert.equal(firing.labels.farm, 'controller-test', 'external label of the farm');
  // not before the (shortened) for: window, and only for the stopped node
  assert.ok(ms >= 10_000, `fired after ${ms} ms, before for: 10s`);
  assert.ok(!received.some((a) => a.labels.alertname === 'NodeDown' && a.labels.instance !== 'n2'), JSON.stringify(received));
  const now = await targets();
  assert.equal(now.find((x) => x.labels.instance === 'n2')!.health, 'down');
  t.diagnostic(`NodeDown for n2 reached the webhook ${ms} ms after node-exporter stopped (for: 10s, scrape/eval 2s)`);
});
