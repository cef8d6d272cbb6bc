// Portainer's configuration through its HTTP API (issue 18, item 3), checked against Portainer 2.23's own
// swagger.yaml: Prism in proxy mode with --errors validates every request wpfarm sends and every answer of a
// small stateful fake behind it (test/harness/portainer-fake.ts). Plus the stack file against Docker's schemas.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import { PortainerFake } from '../harness/portainer-fake.ts';
import { startPrism, specPath, type PrismServer } from '../harness/prism.ts';
import { PortainerClient } from '../../lib/cloud/portainer.ts';
import type { Exchange } from '../../lib/cloud/retry.ts';
import { mask } from '../../lib/secrets.ts';
import { configurePortainer } from '../../roles/portainer/configure.ts';
import { portainerSettings, portainerStack, PortainerVarsError, agentUrl } from '../../roles/portainer/config.ts';
import { validateAgainst } from '../../roles/traefik/schema-check.ts';
import { labelsToDynamic, checkReferences, type DynamicConfig } from '../../roles/traefik/labels.ts';
import { traefikDynamicConfig, traefikSettings, ENTRY_POINTS } from '../../roles/traefik/config.ts';

const PASSWORD = 'pt-admin-Secr3t-7f1c2a9e';
let fake: PortainerFake;
let prism: PrismServer;

const vars = {
  portainer_host: 'portainer.mgmt.example.net',
  portainer_site_groups: { 'agency-a': ['alpha', 'beta'], 'agency-b': ['gamma'] },
};

before(async () => {
  fake = new PortainerFake();
  await fake.start();
  prism = await startPrism({ spec: specPath('portainer-2.23.swagger.yaml'), mode: 'proxy', upstream: `${fake.url}/api` });
});
after(async () => {
  await prism?.stop();
  await fake?.stop();
});

function client(exchanges: Exchange[], baseUrl = prism.url): PortainerClient {
  return new PortainerClient({ baseUrl, maxAttempts: 2, baseDelayMs: 1, onExchange: (e) => exchanges.push(e) });
}

function noViolations(exchanges: Exchange[]): void {
  assert.ok(exchanges.length > 0, 'no exchange at all');
  const bad = exchanges.filter((e) => e.violations);
  assert.deepEqual(
    bad.map((e) => `${e.method} ${e.path} ${e.status}: ${e.violations}`),
    [],
    'Prism reported spec violations',
  );
}

test('first run: administrator, Swarm environment, one team per site group, access policies, stack resource controls', async () => {
  const s = portainerSettings(vars, ['alpha', 'beta', 'gamma', 'delta']);
  const ex: Exchange[] = [];
  const r = await configurePortainer(client(ex), s, PASSWORD);
  noViolations(ex);
  assert.deepEqual(fake.admin, { username: 'admin', password: PASSWORD });
  assert.equal(fake.endpoints.length, 1);
  assert.equal(fake.endpoints[0]!.Name, 'swarm');
  assert.equal(fake.endpoints[0]!.Type, 2, 'agent environment');
  assert.equal(fake.endpoints[0]!.URL, agentUrl());
  assert.deepEqual(fake.teams.map((t) => t.Name).sort(), ['agency-a', 'agency-b']);
  const eid = fake.endpoints[0]!.Id;
  assert.deepEqual(fake.endpoints[0]!.TeamAccessPolicies, Object.fromEntries(fake.teams.map((t) => [String(t.Id), { RoleId: 0 }])));
  const teamOf = (name: string) => fake.teams.find((t) => t.Name === name)!.Id;
  assert.deepEqual(fake.controls.map((c) => [c.ResourceId, c.Type, c.TeamAccesses.map((a) => a.TeamId)]).sort(), [
    [`${eid}_wp-alpha`, 5, [teamOf('agency-a')]],
    [`${eid}_wp-beta`, 5, [teamOf('agency-a')]],
    [`${eid}_wp-gamma`, 5, [teamOf('agency-b')]],
  ]);
  assert.equal(r.changes.length, 1 + 1 + 2 + 1 + 3, r.changes.join('\n'));
  // every authenticated call carried the token; the password travelled only in the two JSON bodies
  const withPassword = fake.requests.filter((q) => q.body.includes(PASSWORD)).map((q) => q.path);
  assert.deepEqual(withPassword, ['/api/users/admin/init', '/api/auth']);
  assert.ok(fake.requests.every((q) => !q.path.includes(PASSWORD)));
  // the report and the exchange log never hold the secret
  assert.ok(!JSON.stringify({ r, ex }).includes(PASSWORD));
});

test('rerun: no change, no duplicate team, policy or resource control; check mode agrees', async () => {
  const s = portainerSettings(vars);
  const before = { teams: fake.teams.length, controls: fake.controls.length, mutations: fake.mutations().length };
  const ex: Exchange[] = [];
  const r = await configurePortainer(client(ex), s, PASSWORD);
  noViolations(ex);
  assert.deepEqual(r.changes, []);
  assert.equal(fake.teams.length, before.teams);
  assert.equal(fake.controls.length, before.controls);
  // the only writes: the login, and the resource controls Portainer refused as existing (409, nothing created)
  const writes = fake.mutations().slice(before.mutations);
  assert.deepEqual(
    writes.map((w) => w.path),
    ['/api/auth', '/api/resource_controls', '/api/resource_controls', '/api/resource_controls'],
  );
  const check = await configurePortainer(client([]), s, PASSWORD, { check: true });
  assert.deepEqual(check.changes, []);
});

test('a new site group and a new site: only those are added; teams made in the UI are left alone', async () => {
  fake.teams.push({ Id: 900, Name: 'ui-made' });
  const s = portainerSettings({ ...vars, portainer_site_groups: { ...vars.portainer_site_groups, 'agency-c': ['delta'] } });
  const check = await configurePortainer(client([]), s, PASSWORD, { check: true });
  assert.deepEqual(check.changes, ['create team agency-c', 'access policies on swarm for agency-c (role 0)']);
  const teamsBefore = fake.teams.length;
  const ex: Exchange[] = [];
  const r = await configurePortainer(client(ex), s, PASSWORD);
  noViolations(ex);
  assert.equal(fake.teams.length, teamsBefore + 1);
  assert.equal(r.changes.length, 3, r.changes.join('\n'));
  assert.match(r.notes.join('\n'), /teams not in portainer_site_groups \(left as they are\): ui-made/);
  assert.ok(fake.teams.some((t) => t.Name === 'ui-made'));
  const again = await configurePortainer(client([]), s, PASSWORD);
  assert.deepEqual(again.changes, []);
});

test('the contract check is not vacuous: a request without the token and a malformed answer are caught by Prism', async () => {
  // no Authorization header on a jwt-secured path: Prism refuses it (401 with its validation report)
  const res = await fetch(`${prism.url}/teams`);
  assert.equal(res.status, 401);
  // a team created without its required name
  const ex: Exchange[] = [];
  const c = client(ex);
  await c.login('admin', PASSWORD);
  await assert.rejects(
    () => (c as unknown as { call: (m: string, p: string, b: unknown) => Promise<unknown> }).call('POST', '/team', { nom: 'x' }),
    /422|400|violations/,
  );
  // an answer that breaks the contract (a team Id as a string) is caught on the way back
  fake.corruptTeams = true;
  try {
    const seen: Exchange[] = [];
    const caught = await client(seen)
      .listTeams()
      .then(
        () => seen.some((e) => e.violations),
        () => true,
      );
    assert.ok(caught, 'a malformed answer went through unnoticed');
  } finally {
    fake.corruptTeams = false;
  }
});

test('a wrong password fails with a clear, masked error', async () => {
  const ex: Exchange[] = [];
  const wrong = 'not-the-Password-4242';
  await assert.rejects(
    () => configurePortainer(client(ex), portainerSettings(vars), wrong),
    (e: unknown) => {
      const m = (e as Error).message;
      return /portainer: POST \S*\/auth -> 422/.test(m) && !m.includes(wrong) && !m.includes(PASSWORD);
    },
  );
  // registered as secrets: masked in whatever wpfarm prints
  assert.equal(mask(`pw=${wrong}`), 'pw=***');
  assert.equal(mask(`pw=${PASSWORD}`), 'pw=***');
});

test('portainer stack: valid for docker stack deploy, on the management network, UI behind the management allow list', () => {
  const s = portainerSettings(vars);
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const doc = YAML.parse(portainerStack(s).stackYaml) as Record<string, any>; // free-form document
  for (const schema of ['docker-stack-v3', 'compose'] as const) {
    const v = validateAgainst(schema, doc);
    assert.equal(v.valid, true, `${schema}: ${v.errors.join('\n')}`);
  }
  assert.deepEqual(doc.networks.management, { external: true, name: 'management' });
  assert.deepEqual(doc.services.agent.networks, ['management']);
  assert.equal(doc.services.agent.deploy.mode, 'global');
  assert.ok(doc.services.portainer.networks.includes('management'));
  assert.deepEqual(doc.services.portainer.deploy.placement.constraints, ['node.role == manager']);
  assert.equal(doc.services.portainer.deploy.replicas, 1);
  assert.equal(doc.services.portainer.ports, undefined, 'no published port: only through Traefik');
  assert.ok(!YAML.stringify(doc).includes(PASSWORD));
  const { config } = labelsToDynamic(doc.services.portainer.deploy.labels, 'portainer_portainer');
  assert.equal(validateAgainst('traefik-dynamic', config).valid, true);
  const file = traefikDynamicConfig(
    traefikSettings({ management_cidrs: ['10.0.0.0/8'], acme_email: 'a@b.cd', traefik_dashboard_host: 't.example.net' }),
  ) as DynamicConfig;
  assert.deepEqual(checkReferences(config, file, Object.keys(ENTRY_POINTS)), []);
  assert.equal((config.http!.routers!.portainer!.middlewares as string[])[0], 'dashboard-allowlist@file');
});

test('portainer variables are checked', () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ portainer_host: 'Portainer' }, /portainer_host/],
    [{ portainer_site_groups: ['a'] }, /must be a mapping/],
    [{ portainer_site_groups: { A: ['alpha'] } }, /team name "A"/],
    [{ portainer_site_groups: { a: ['alpha'], b: ['alpha'] } }, /site alpha is in both a and b/],
    [{ portainer_site_groups: { a: ['nosuch'] } }, /no site record nosuch/],
    [{ portainer_api_url: 'https://admin:pw@portainer.example.net' }, /without credentials/],
    [{ portainer_team_role_id: -1 }, /portainer_team_role_id/],
  ];
  for (const [extra, msg] of bad) {
    assert.throws(
      () => portainerSettings({ ...vars, ...extra }, ['alpha', 'beta', 'gamma']),
      (e: unknown) => e instanceof PortainerVarsError && msg.test(e.message),
      JSON.stringify(extra),
    );
  }
});
