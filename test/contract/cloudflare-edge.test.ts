// Cloudflare's edge (cache rules in the http_request_cache_settings entry point, Access applications with their
// allow policy) against the spec the `cloudflare` SDK is generated from: Prism proxy --errors (requests and answers
// validated) in front of the stateful fake. The subset of the spec holds the operations used (test/harness/spec-subset.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CfFake } from '../harness/cf-fake.ts';
import { startPrism, type PrismServer } from '../harness/prism.ts';
import { specSubsetPath } from '../harness/spec-subset.ts';
import { CloudflareEdge } from '../../lib/cloud/cloudflare-edge.ts';
import type { Exchange } from '../../lib/cloud/retry.ts';
import { runEdgeRules } from '../../playbooks/edge-rules.ts';

const TOKEN = 'cf_edge_contract_token_5e2a9b7c1d3f4a6b';
const COM = 'example.com';
const ORG = 'example.org';
const PHASE = 'http_request_cache_settings';
let fake: CfFake;
let proxy: PrismServer;
const seen: Exchange[] = [];
let dir = '';
let com: Record<string, unknown>;
let org: Record<string, unknown>;

const EDGE_SPEC_PATHS = [
  /^\/zones$/,
  /^\/\{accounts_or_zones\}\/\{account_or_zone_id\}\/rulesets$/,
  /^\/\{accounts_or_zones\}\/\{account_or_zone_id\}\/rulesets\/phases\/\{ruleset_phase\}\/entrypoint$/,
  /^\/\{accounts_or_zones\}\/\{account_or_zone_id\}\/access\/(apps|groups)(\/\{(app|group)_id\})?$/,
];

const INVENTORY = (edgeTtl?: number) => `vars:
  cloudflare_zones: [${COM}, ${ORG}]
  management_cidrs: [203.0.113.0/24]
  wp_sites_dir: SITES
  traefik_dashboard_host: traefik.${COM}
  grafana_host: grafana.${COM}
${edgeTtl ? `  cloudflare_cache:\n    static_edge_ttl: ${edgeTtl}\n` : ''}  cloudflare_access:
    emails: [ops@example.com]
    groups: [Operators]
hosts: {}
`;

function writeInventory(edgeTtl?: number): void {
  writeFileSync(path.join(dir, 'production.yml'), INVENTORY(edgeTtl).replace('SITES', path.join(dir, 'sites')));
}
function writeSite(id: string, domain: string, aliases: string[] = []): void {
  writeFileSync(
    path.join(dir, 'sites', `${id}.yml`),
    `id: ${id}\ndomain: ${domain}\n${aliases.length ? `aliases: [${aliases.join(', ')}]\n` : ''}`,
  );
}

async function run(...args: string[]): Promise<{ code: number; text: string }> {
  const lines: string[] = [];
  const code = await runEdgeRules(
    [...args, '--inventory', path.join(dir, 'production.yml'), '--dotenv', path.join(dir, '.env'), '--api-url', proxy.url, '-v'],
    { out: (l) => lines.push(l), err: (l) => lines.push(l) },
  );
  return { code, text: lines.join('\n') };
}

/** every exchange the playbook printed (-v) was valid for Prism and succeeded */
function assertValid(text: string): void {
  const ex = text.split('\n').filter((l) => /^\s+(GET|PUT|POST|DELETE|PATCH) /.test(l));
  assert.ok(ex.length > 0, `no requests were sent:\n${text}`);
  for (const l of ex) {
    assert.doesNotMatch(l, /VIOLATIONS/, l);
    assert.match(l, /-> (200|201|202)\b/, l);
  }
}

const rulesOf = (zone: Record<string, unknown>) =>
  ((fake.rulesets.get(`${zone['id'] as string} ${PHASE}`)?.['rules'] as Record<string, unknown>[] | undefined) ?? []).map((r) => ({
    id: r['id'] as string,
    ref: r['ref'] as string,
    expression: r['expression'] as string,
    params: r['action_parameters'] as Record<string, unknown>,
  }));
const appsOf = (zone: Record<string, unknown>) =>
  fake.apps
    .filter((a) => a['zone_id'] === zone['id'])
    .map((a) => a as { id: string; name: string; destinations: { uri: string }[]; policies: Record<string, unknown>[] })
    .sort((a, b) => a.name.localeCompare(b.name));

before(async () => {
  fake = new CfFake(TOKEN);
  com = fake.addZone(COM);
  org = fake.addZone(ORG);
  await fake.start();
  proxy = await startPrism({
    spec: specSubsetPath('cloudflare-sdk-v7.1.0.openapi.json', EDGE_SPEC_PATHS),
    mode: 'proxy',
    upstream: fake.url,
  });
  dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-edge-'));
  mkdirSync(path.join(dir, 'sites'));
  writeFileSync(path.join(dir, '.env'), `CLOUDFLARE_API_TOKEN=${TOKEN}\n`);
  writeInventory();
  writeSite('blog', `blog.${COM}`, [`www.blog.${COM}`]);
  writeSite('shop', `shop.${ORG}`);
  // what the operators made by hand, which wpfarm must keep: a cache rule, an Access application, the groups
  fake.rulesets.set(`${com['id'] as string} ${PHASE}`, {
    id: 'a'.repeat(32),
    name: 'default',
    description: '',
    kind: 'zone',
    phase: PHASE,
    version: '1',
    last_updated: new Date().toISOString(),
    rules: [
      {
        id: 'b'.repeat(32),
        ref: 'manual_api_nocache',
        version: '1',
        last_updated: new Date().toISOString(),
        action: 'set_cache_settings',
        action_parameters: { cache: false },
        expression: '(http.host eq "api.example.com")',
        description: 'by hand',
        enabled: true,
      },
    ],
  });
  fake.apps.push({
    id: '11111111-2222-4333-8444-555555555555',
    aud: 'c'.repeat(64),
    zone_id: com['id'],
    type: 'self_hosted',
    name: 'Team wiki',
    domain: `wiki.${COM}`,
    destinations: [{ type: 'public', uri: `wiki.${COM}` }],
    session_duration: '24h',
    policies: [],
    created_at: new Date().toISOString(),
    updated_at: new Date().toISOString(),
  });
  for (const z of [com, org])
    fake.groups.push({
      id: z === com ? '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9' : '9f8e7d6c-5b4a-4392-8190-a1b2c3d4e5f6',
      zone_id: z['id'],
      name: 'Operators',
      include: [{ email_domain: { domain: 'example.com' } }],
      exclude: [],
      require: [],
      created_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
    });
});

after(async () => {
  await proxy?.stop();
  await fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let predicted = '';

test('--check: lists every rule and application that would be made, sends no write', async () => {
  const writes = fake.mutations().length;
  const r = await run('--check');
  assert.equal(r.code, 0, r.text);
  assertValid(r.text);
  assert.equal(fake.mutations().length, writes, '--check sent a write');
  assert.match(
    r.text,
    /zone example\.com: cache rules \(2 site names\)\n {2}\+ wpfarm_bypass_admin_logged_in\n {2}\+ wpfarm_static_assets/,
  );
  assert.match(r.text, /zone example\.org: cache rules \(1 site names\)/);
  for (const app of ['blog wp-admin', 'blog admin-ajax', 'mgmt grafana.example.com', 'mgmt traefik.example.com', 'shop wp-admin'])
    assert.match(r.text, new RegExp(`\\+ wpfarm ${app.replace(/\./g, '\\.')}`));
  assert.match(r.text, /would change: 10/);
  predicted = r.text
    .split('\n')
    .filter((l) => /^ {2}[+~-] /.test(l))
    .join('\n');
});

test('apply: the rules and applications exist as built; the operators’ own rule and application are kept', async () => {
  const r = await run();
  assert.equal(r.code, 0, r.text);
  assertValid(r.text);
  assert.match(r.text, /changed: 10/);
  assert.equal(
    r.text
      .split('\n')
      .filter((l) => /^ {2}[+~-] /.test(l))
      .join('\n'),
    predicted,
    'check mode predicted the first run exactly',
  );
  const rules = rulesOf(com);
  assert.deepEqual(
    rules.map((x) => x.ref),
    ['manual_api_nocache', 'wpfarm_static_assets', 'wpfarm_bypass_admin_logged_in'],
    'ours after the hand-made rule, the bypass last',
  );
  assert.equal(rules[0]!.id, 'b'.repeat(32), 'the hand-made rule kept its id');
  const [, statics, bypass] = rules;
  assert.match(statics!.expression, /http\.host in \{"blog\.example\.com" "www\.blog\.example\.com"\}/);
  assert.match(statics!.expression, /http\.request\.uri\.path\.extension in \{"css" "js"/);
  assert.deepEqual(statics!.params, {
    cache: true,
    edge_ttl: { mode: 'override_origin', default: 2592000 },
    browser_ttl: { mode: 'respect_origin' },
  });
  assert.deepEqual(bypass!.params, { cache: false });
  for (const part of [
    'starts_with(http.request.uri.path, "/wp-admin/")',
    '"/wp-login.php"',
    'http.cookie contains "wordpress_logged_in_"',
    'http.cookie contains "comment_author_"',
    'http.cookie contains "woocommerce_items_in_cart"',
    'http.cookie contains "wp_woocommerce_session_"',
  ])
    assert.ok(bypass!.expression.includes(part), `bypass lacks ${part}: ${bypass!.expression}`);
  assert.deepEqual(
    rulesOf(org).map((x) => x.ref),
    ['wpfarm_static_assets', 'wpfarm_bypass_admin_logged_in'],
  );
  assert.match(rulesOf(org)[0]!.expression, /\{"shop\.example\.org"\}/);
  const apps = appsOf(com);
  assert.deepEqual(
    apps.map((a) => a.name),
    ['Team wiki', 'wpfarm blog admin-ajax', 'wpfarm blog wp-admin', 'wpfarm mgmt grafana.example.com', 'wpfarm mgmt traefik.example.com'],
  );
  const admin = apps.find((a) => a.name === 'wpfarm blog wp-admin')!;
  assert.deepEqual(
    admin.destinations.map((d) => d.uri),
    ['blog.example.com/wp-admin', 'blog.example.com/wp-login.php', 'www.blog.example.com/wp-admin', 'www.blog.example.com/wp-login.php'],
  );
  assert.equal(admin.policies.length, 1);
  assert.equal(admin.policies[0]!['decision'], 'allow');
  assert.deepEqual(admin.policies[0]!['include'], [
    { email: { email: 'ops@example.com' } },
    { group: { id: '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9' } },
  ]);
  const ajax = apps.find((a) => a.name === 'wpfarm blog admin-ajax')!;
  assert.deepEqual(
    ajax.policies.map((p) => [p['decision'], p['include']]),
    [['bypass', [{ everyone: {} }]]],
  );
  const shop = appsOf(org).find((a) => a.name === 'wpfarm shop wp-admin')!;
  assert.deepEqual(shop.policies[0]!['include'], [
    { email: { email: 'ops@example.com' } },
    { group: { id: '9f8e7d6c-5b4a-4392-8190-a1b2c3d4e5f6' } },
  ]);
});

test('rerun: nothing changes, no write request', async () => {
  const writes = fake.mutations().length;
  const r = await run();
  assert.equal(r.code, 0, r.text);
  assertValid(r.text);
  assert.match(r.text, /changed: 0/);
  assert.equal(fake.mutations().length, writes);
});

test('a changed setting and a new alias update the rules and applications in place (same ids, no duplicates)', async () => {
  const ids = new Map(rulesOf(org).map((x) => [x.ref, x.id]));
  const appId = appsOf(org).find((a) => a.name === 'wpfarm shop wp-admin')!.id;
  writeInventory(86400);
  writeSite('shop', `shop.${ORG}`, [`www.shop.${ORG}`]);
  const r = await run();
  assert.equal(r.code, 0, r.text);
  assertValid(r.text);
  assert.match(r.text, /zone example\.org: cache rules \(2 site names\)\n {2}~ wpfarm_bypass_admin_logged_in\n {2}~ wpfarm_static_assets/);
  assert.match(r.text, /~ wpfarm blog wp-admin|= wpfarm blog wp-admin/);
  const after = rulesOf(org);
  assert.deepEqual(
    after.map((x) => x.ref),
    ['wpfarm_static_assets', 'wpfarm_bypass_admin_logged_in'],
    'no duplicate',
  );
  for (const x of after) assert.equal(x.id, ids.get(x.ref), `${x.ref} kept its id`);
  assert.deepEqual(after[0]!.params['edge_ttl'], { mode: 'override_origin', default: 86400 });
  assert.match(after[0]!.expression, /\{"shop\.example\.org" "www\.shop\.example\.org"\}/);
  const shop = appsOf(org).filter((a) => a.name === 'wpfarm shop wp-admin');
  assert.equal(shop.length, 1);
  assert.equal(shop[0]!.id, appId, 'the application was updated, not made again');
  assert.ok(shop[0]!.destinations.some((d) => d.uri === 'www.shop.example.org/wp-admin'));
  assert.match((await run()).text, /changed: 0/);
});

test('a removed site: its rules and applications go, the hand-made ones stay', async () => {
  rmSync(path.join(dir, 'sites', 'shop.yml'));
  const r = await run();
  assert.equal(r.code, 0, r.text);
  assertValid(r.text);
  assert.match(r.text, /zone example\.org: cache rules \(0 site names\)\n {2}- wpfarm_bypass_admin_logged_in\n {2}- wpfarm_static_assets/);
  assert.match(r.text, /- wpfarm shop admin-ajax\n {2}- wpfarm shop wp-admin/);
  assert.deepEqual(rulesOf(org), []);
  assert.deepEqual(appsOf(org), []);
  assert.equal(rulesOf(com)[0]!.ref, 'manual_api_nocache');
  assert.ok(appsOf(com).some((a) => a.name === 'Team wiki'));
});

test('a rule of ours edited by hand is put back in place; the client reads the three rules', async () => {
  const rs = fake.rulesets.get(`${com['id'] as string} ${PHASE}`)!;
  const rules = rs['rules'] as Record<string, unknown>[];
  rules[2] = { ...rules[2]!, action_parameters: { cache: true } }; // someone edited the bypass in the dashboard
  const log: Exchange[] = [];
  const cf = new CloudflareEdge({ token: TOKEN, baseUrl: proxy.url, onExchange: (e) => log.push(e) });
  const id = rulesOf(com)[2]!.id;
  const r = await run('cache');
  assert.equal(r.code, 0, r.text);
  assertValid(r.text);
  assert.match(r.text, /~ wpfarm_bypass_admin_logged_in/);
  assert.doesNotMatch(r.text, /Access applications/, 'cache only');
  assert.equal(rulesOf(com)[2]!.id, id);
  assert.deepEqual(rulesOf(com)[2]!.params, { cache: false });
  assert.deepEqual(await cf.phaseRules(com['id'] as string, PHASE).then((x) => x?.length), 3);
  assert.ok(log.every((e) => e.violations === undefined && e.status === 200));
});

test('bad input: exit 4 naming the file and field, before any request', async () => {
  const before = fake.requests.length;
  writeSite('other', 'blog.example.net');
  let r = await run('--check');
  assert.equal(r.code, 4, r.text);
  assert.match(r.text, /sites\/other\.yml: domain: blog\.example\.net is in none of the Cloudflare zones example\.com, example\.org/);
  rmSync(path.join(dir, 'sites', 'other.yml'));
  writeFileSync(path.join(dir, 'production.yml'), INVENTORY(5).replace('SITES', path.join(dir, 'sites')));
  r = await run();
  assert.equal(r.code, 4, r.text);
  assert.match(
    r.text,
    /production\.yml:\d+:\d+ vars\.cloudflare_cache\.static_edge_ttl: must be an integer from 60 to 31536000, got the number 5/,
  );
  writeFileSync(
    path.join(dir, 'production.yml'),
    INVENTORY()
      .replace('SITES', path.join(dir, 'sites'))
      .replace('    emails: [ops@example.com]\n    groups: [Operators]\n', '    session_duration: 8h\n'),
  );
  r = await run();
  assert.equal(r.code, 4, r.text);
  assert.match(r.text, /vars\.cloudflare_access: the allow policy needs operators/);
  r = await run('purge');
  assert.equal(r.code, 4);
  assert.equal(fake.requests.length, before, 'no request for bad input');
  assert.doesNotMatch(r.text, new RegExp(TOKEN));
  // an Access group that does not exist: refused after reading the groups, before any write
  writeFileSync(path.join(dir, 'production.yml'), INVENTORY().replace('SITES', path.join(dir, 'sites')).replace('[Operators]', '[Admins]'));
  const writes = fake.mutations().length;
  r = await run('access');
  assert.equal(r.code, 4, r.text);
  assert.match(r.text, /Access group "Admins" not found in zone example\.com \(groups: Operators\)/);
  assert.equal(fake.mutations().length, writes);
  writeInventory();
});

test('--zone: only that zone is read and changed; names of the other zones are not refused', async () => {
  writeSite('shop', `shop.${ORG}`);
  const writes = fake.mutations().length;
  const r = await run('cache', '--zone', ORG, '--check');
  assert.equal(r.code, 0, r.text);
  assertValid(r.text);
  assert.doesNotMatch(r.text, /zone example\.com/);
  assert.doesNotMatch(r.text, new RegExp(`/zones/${com['id'] as string}`), 'example.com was not read');
  assert.match(
    r.text,
    /zone example\.org: cache rules \(1 site names\)\n {2}\+ wpfarm_bypass_admin_logged_in\n {2}\+ wpfarm_static_assets/,
  );
  assert.match(r.text, /would change: 2/);
  assert.equal(fake.mutations().length, writes);
});
