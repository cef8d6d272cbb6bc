// The eight provisioned Grafana dashboards: each validates against grafana-foundation-sdk's dashboard
// schema (../shared/schemas/grafana), and every PromQL expression in them is parsed by promtool
// (Grafana cannot run here; promtool check rules parses each expression as a recording rule).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { validateAgainst } from '../../roles/traefik/schema-check.ts';
import { dashboards, dashboardPromql, grafanaDatasources, grafanaDashboardProvider, DS } from '../../roles/monitoring/dashboards.ts';
import { ensureMonitoringTools, run, PROMTOOL } from '../../roles/monitoring/tools.ts';

const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-grafana-'));
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
before(async () => ensureMonitoringTools());

test('eight dashboards, unique uids, each valid against the Grafana dashboard schema', () => {
  const ds = dashboards();
  assert.equal(ds.length, 8);
  assert.equal(new Set(ds.map((d) => d.uid)).size, 8);
  for (const d of ds) {
    // what is provisioned is the JSON text
    const v = validateAgainst('grafana-dashboard', JSON.parse(JSON.stringify(d)));
    assert.equal(v.valid, true, `${String(d.uid)}:\n${v.errors.join('\n')}`);
    // biome-ignore lint/suspicious/noExplicitAny: free-form
    const panels = (d.panels as Array<Record<string, any>>).filter((p) => p.type !== 'row'); // free-form
    assert.ok(panels.length >= 4, `${String(d.uid)} has ${panels.length} panels`);
    const ids = (d.panels as Array<{ id: number }>).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    for (const p of panels) {
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} fits the grid`);
      assert.ok(p.targets.length > 0, `${p.title} has a query`);
    }
  }
});

test('the dashboard schema check is not vacuous', () => {
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const d = structuredClone(dashboards()[0]!) as Record<string, any>; // free-form
  d.panels[1].gridPos.w = 30;
  assert.equal(validateAgainst('grafana-dashboard', d).valid, false);
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const e = structuredClone(dashboards()[0]!) as Record<string, any>; // free-form
  delete e.templating;
  assert.equal(validateAgainst('grafana-dashboard', e).valid, false);
});

test('every PromQL expression of the dashboards parses (promtool check rules)', async () => {
  const exprs = dashboardPromql(dashboards());
  assert.ok(exprs.length > 50, `${exprs.length} expressions`);
  const rules = { groups: [{ name: 'dashboards', rules: exprs.map((e, i) => ({ record: `dashboard:expr_${i}`, expr: e.expr })) }] };
  const file = path.join(work, 'dash-exprs.yml');
  writeFileSync(file, YAML.stringify(rules, { lineWidth: 0 }));
  const r = await run(PROMTOOL, ['check', 'rules', file]);
  if (r.code !== 0) {
    // name the panel of the first bad expression
    const m = /dashboard:expr_(\d+)/.exec(r.stdout + r.stderr);
    const bad = m ? exprs[Number(m[1])] : undefined;
    assert.fail(`${bad ? `${bad.dashboard} / ${bad.panel}: ${bad.expr}\n` : ''}${r.stdout}${r.stderr}`);
  }
  assert.match(r.stdout, new RegExp(`SUCCESS: ${exprs.length} rules found`));
  // and a broken expression would be caught
  writeFileSync(file, YAML.stringify({ groups: [{ name: 'x', rules: [{ record: 'x:y', expr: 'sum(rate(foo[5m])' }] }] }));
  assert.notEqual((await run(PROMTOOL, ['check', 'rules', file])).code, 0);
});

test('dashboards use the provisioned datasource uids; provisioning files are consistent', () => {
  const uids = new Set(Object.values(DS).map((d) => d.uid));
  for (const d of dashboards()) {
    // biome-ignore lint/suspicious/noExplicitAny: free-form
    for (const p of d.panels as Array<Record<string, any>>) {
      // free-form
      if (p.type === 'row') continue;
      assert.ok(uids.has(p.datasource.uid), `${p.title}: datasource ${p.datasource.uid}`);
    }
  }
  const dsDoc = YAML.parse(
    grafanaDatasources({
      prometheus: 'http://prometheus:9090',
      loki: 'http://loki:3100',
      tempo: 'http://tempo:3200',
      alertmanager: 'http://alertmanager:9093',
    }),
  );
  assert.deepEqual(new Set(dsDoc.datasources.map((d: { uid: string }) => d.uid)), uids);
  assert.equal(dsDoc.datasources.filter((d: { isDefault?: boolean }) => d.isDefault).length, 1);
  const prov = YAML.parse(grafanaDashboardProvider());
  assert.equal(prov.providers[0].type, 'file');
});
