// Provisioning against the official DigitalOcean OpenAPI spec: Prism in proxy mode with --errors
// validates every request wpfarm sends and every answer of a small stateful fake behind it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { DoFake } from '../harness/do-fake.ts';
import { startAll, specPath, type PrismServer } from '../harness/prism.ts';
import { runProvision, type Io } from '../../playbooks/provision.ts';
import { makeDoClient, listDroplets } from '../../lib/cloud/digitalocean.ts';
import type { Exchange, FetchLike } from '../../lib/cloud/retry.ts';

const TOKEN = 'dop_v1_contracttest_5f0c9a7e41d2b3';
let fake: DoFake;
let prism: PrismServer;
let mock: PrismServer;
let dir: string;
let envFile: string;
let invFile: string;
let outFile: string;

const INVENTORY = `# test inventory (cloud part)
vars:
  timezone: UTC
cloud:
  provider: digitalocean
  region: fra1
  vpc: { name: wpfarm-vpc, ip_range: 10.110.0.0/20 }
  ssh_keys: ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"]
  image: debian-12-x64
  tags: [wpfarm]
  groups:
    managers: { count: 3, size: s-2vcpu-4gb }
    workers:  { count: 2, size: s-4vcpu-8gb }
    db:       { count: 3, size: s-4vcpu-8gb }
    storage:  { count: 2, size: s-2vcpu-4gb, volume_gb: 200 }
    monitoring: { count: 1, size: s-2vcpu-4gb }
  reserved_ip: { group: managers }
  load_balancer: { enabled: true }
  spaces: { bucket: wpfarm-backups, region: fra1 }
  management_cidrs: [203.0.113.0/24]
cloudflare:
  zone: example.com
`;

interface Run {
  code: number;
  out: string;
  err: string;
}

async function provision(...extra: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l) };
  // -v: every exchange is printed with its status and Prism's violations, if any; per-page 4 forces pagination
  const code = await runProvision(
    [
      '--inventory',
      invFile,
      '--out',
      outFile,
      '--api-url',
      prism.url,
      '--dotenv',
      envFile,
      '--per-page',
      '4',
      '--poll-ms',
      '20',
      '-v',
      ...extra,
    ],
    io,
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** the exchange lines printed by -v: "  METHOD /path -> status" */
function exchanges(r: Run): { method: string; path: string; status: number; line: string }[] {
  return r.err
    .split('\n')
    .map((line) => ({ line, m: /^ {2}(GET|POST|PUT|DELETE|PATCH) (\S+) -> (\d{3})/.exec(line) }))
    .filter((x) => x.m)
    .map(({ line, m }) => ({ method: m![1]!, path: m![2]!, status: Number(m![3]), line }));
}

function assertClean(r: Run): void {
  const ex = exchanges(r);
  assert.ok(ex.length > 0, 'no exchanges were logged');
  for (const e of ex) {
    assert.ok(e.status < 400, `an answer failed: ${e.line}`);
    assert.doesNotMatch(e.line, /VIOLATIONS/, `Prism reported a violation: ${e.line}`);
  }
  assert.doesNotMatch(r.out + r.err, new RegExp(TOKEN), 'the token was printed');
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-do-'));
  envFile = path.join(dir, '.env');
  invFile = path.join(dir, 'production.example.yml');
  outFile = path.join(dir, 'production.yml');
  writeFileSync(envFile, `DIGITALOCEAN_TOKEN=${TOKEN}\n`);
  writeFileSync(invFile, INVENTORY);
  fake = new DoFake(TOKEN);
  await fake.start();
  const spec = specPath('digitalocean-public.v2.bundled.yaml');
  [prism, mock] = (await startAll([
    { spec, mode: 'proxy', upstream: fake.url },
    { spec, mode: 'mock' },
  ])) as [PrismServer, PrismServer];
});

after(async () => {
  await prism?.stop();
  await mock?.stop();
  await fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('--check on an empty account prints the plan and changes nothing', async () => {
  const r = await provision('--check');
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  assert.equal(fake.mutations().length, 0);
  assert.match(r.out, /plan \(\d+ change\(s\)\)/);
  assert.match(r.out, /create VPC wpfarm-vpc in fra1 \(10\.110\.0\.0\/20\)/);
  assert.match(r.out, /create droplets mgr1, mgr2, mgr3 \[managers\]/);
  assert.match(r.out, /create droplets db1, db2, db3 \[db\]/);
  assert.match(r.out, /create firewall wpfarm-fw for tags wpfarm/);
  assert.match(r.out, /create firewall wpfarm-fw-edge for tags wpfarm-managers/);
  assert.match(r.out, /create a reserved IP in fra1 assigned to mgr1/);
  assert.match(r.out, /create load balancer wpfarm-lb/);
  assert.match(r.out, /ensure Spaces bucket wpfarm-backups/);
});

test('provision creates everything, every request and answer passes the spec, inventory written', async () => {
  const r = await provision();
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  const posts = fake.mutations().map((m) => `${m.method} ${m.path.replace(/[0-9a-f-]{36}/g, 'ID')}`);
  assert.deepEqual(posts.filter((p) => p === 'POST /v2/vpcs').length, 1);
  assert.deepEqual(posts.filter((p) => p === 'POST /v2/droplets').length, 5, 'one create per group');
  assert.deepEqual(posts.filter((p) => p === 'POST /v2/firewalls').length, 2);
  assert.deepEqual(posts.filter((p) => p === 'POST /v2/reserved_ips').length, 1);
  assert.deepEqual(posts.filter((p) => p === 'POST /v2/volumes').length, 2);
  assert.deepEqual(posts.filter((p) => p === 'POST /v2/volumes/ID/actions').length, 2);
  assert.deepEqual(posts.filter((p) => p === 'POST /v2/load_balancers').length, 1);
  assert.equal(fake.droplets.length, 11);
  // 11 droplets with 4 per page: the reads walked several pages
  assert.ok(
    exchanges(r).some((e) => /\/v2\/droplets\?page=3&/.test(e.path)),
    'pagination was not exercised',
  );
  // the multi-create request carried what the inventory says
  const dbCreate = fake.requests.find((q) => q.method === 'POST' && q.path === '/v2/droplets' && JSON.stringify(q.body).includes('"db1"'))!;
  const body = dbCreate.body as Record<string, unknown>;
  assert.deepEqual(body['names'], ['db1', 'db2', 'db3']);
  assert.equal(body['size'], 's-4vcpu-8gb');
  assert.equal(body['region'], 'fra1');
  assert.deepEqual(body['tags'], ['wpfarm', 'wpfarm-db']);
  assert.equal(body['vpc_uuid'], fake.vpcs[0]!['id']);
  // firewall: 80/443 only on the edge tag; cluster ports from the VPC range only; SSH from management
  const main = fake.firewalls.find((f) => f['name'] === 'wpfarm-fw')!;
  const edge = fake.firewalls.find((f) => f['name'] === 'wpfarm-fw-edge')!;
  const rules = (f: Record<string, unknown>) =>
    (f['inbound_rules'] as { protocol: string; ports: string; sources: { addresses?: string[] } }[]).map(
      (x) => `${x.protocol}/${x.ports}<${(x.sources.addresses ?? []).join(',')}`,
    );
  assert.deepEqual(edge['tags'], ['wpfarm-managers']);
  assert.deepEqual(rules(edge).sort(), ['tcp/443<0.0.0.0/0,::/0', 'tcp/80<0.0.0.0/0,::/0']);
  assert.ok(rules(main).includes('tcp/22<203.0.113.0/24'));
  for (const p of [
    'tcp/2377',
    'tcp/7946',
    'udp/7946',
    'udp/4789',
    'tcp/3306',
    'tcp/4444',
    'tcp/4567',
    'tcp/4568',
    'tcp/24007-24008',
    'tcp/49152-49251',
  ])
    assert.ok(rules(main).includes(`${p}<10.110.0.0/20`), `missing cluster rule ${p}`);
  assert.ok(!rules(main).some((x) => /^tcp\/(80|443)</.test(x)), 'web ports must not be open on every node');
  // the inventory in the engine's format
  const inv = parse(readFileSync(outFile, 'utf8')) as {
    settings: unknown;
    vars: Record<string, unknown>;
    hosts: Record<string, { address: string; port: number; user: string; vars: Record<string, unknown> }>;
    groups: Record<string, { hosts: string[] }>;
  };
  assert.deepEqual(inv.groups['managers']!.hosts, ['mgr1', 'mgr2', 'mgr3']);
  assert.deepEqual(inv.groups['storage']!.hosts, ['st1', 'st2']);
  assert.deepEqual(Object.keys(inv.hosts).sort(), ['db1', 'db2', 'db3', 'mgr1', 'mgr2', 'mgr3', 'mon1', 'st1', 'st2', 'wrk1', 'wrk2']);
  const d = fake.droplets.find((x) => x['name'] === 'mgr2')!;
  const pub = (d['networks'] as { v4: { ip_address: string; type: string }[] }).v4.find((n) => n.type === 'public')!.ip_address;
  assert.equal(inv.hosts['mgr2']!.address, pub);
  assert.equal(inv.hosts['mgr2']!.port, 22);
  assert.equal(inv.hosts['mgr2']!.user, 'root');
  assert.match(String(inv.hosts['mgr2']!.vars['private_address']), /^10\.110\./);
  assert.equal(inv.vars['reserved_ip'], fake.reservedIps[0]!['ip']);
  assert.equal(inv.vars['cloudflare_zone'], 'example.com');
  assert.equal(inv.vars['vpc_cidr'], '10.110.0.0/20');
  assert.equal(inv.vars['timezone'], 'UTC', "the desired-state file's vars are carried over");
  assert.ok(inv.settings, 'settings kept/added');
  assert.match(r.out, /ensure Spaces bucket wpfarm-backups.*skipped/);
});

test('a rerun creates nothing new', async () => {
  const before = fake.mutations().length;
  const r = await provision();
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  assert.match(r.out, /plan \(0 change\(s\)\)/);
  assert.equal(fake.mutations().length, before, `new mutations: ${JSON.stringify(fake.mutations().slice(before))}`);
  assert.match(r.out, /changed: 0;/);
});

test('the output file keeps keys it did not write', async () => {
  const text = readFileSync(outFile, 'utf8').replace(/^vars:\n/m, 'vars:\n  ntp_server: ntp.example.org\n') + 'groups_note_kept: true\n';
  writeFileSync(outFile, `# my comment\n${text}`);
  const r = await provision();
  assert.equal(r.code, 0, r.err);
  const after = readFileSync(outFile, 'utf8');
  assert.match(after, /# my comment/);
  assert.match(after, /ntp_server: ntp\.example\.org/);
  assert.match(after, /groups_note_kept: true/);
});

test('firewall drift is repaired, then the rerun is quiet again', async () => {
  const fw = fake.firewalls.find((f) => f['name'] === 'wpfarm-fw')!;
  fw['inbound_rules'] = (fw['inbound_rules'] as { ports: string }[]).filter((r) => r.ports !== '22');
  const check = await provision('--check');
  assert.equal(check.code, 0, check.err);
  assert.match(check.out, /update firewall wpfarm-fw: \+ in tcp:22 a=203\.0\.113\.0\/24/);
  const r = await provision();
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  assert.ok((fake.firewalls.find((f) => f['name'] === 'wpfarm-fw')!['inbound_rules'] as { ports: string }[]).some((x) => x.ports === '22'));
  const again = await provision('--check');
  assert.match(again.out, /plan \(0 change\(s\)\)/);
});

test('a 429 answer is retried (Retry-After honoured) and the run succeeds', async () => {
  fake.failNext(2, 429);
  const r = await provision('--check');
  assert.equal(r.code, 0, r.err);
  const ex = exchanges(r);
  assert.equal(ex[0]!.status, 429);
  assert.equal(ex[1]!.status, 429);
  assert.equal(ex[2]!.status, 200);
  assert.equal(ex[2]!.path, ex[0]!.path, 'the same request was sent again');
  assert.match(ex[2]!.line, /attempt 3/);
  assert.ok(!ex.some((e) => /VIOLATIONS/.test(e.line)), 'the 429 answers are in the contract too');
});

test("Prism mock: 'Prefer: code=429' forced on the first attempt is retried by the dots client", async () => {
  let sent = 0;
  const preferOnce: FetchLike = async (input, init) => {
    const headers = new Headers(init?.headers);
    if (sent++ === 0) headers.set('Prefer', 'code=429');
    return fetch(input instanceof Request ? input.url : input, { ...init, headers });
  };
  const log: Exchange[] = [];
  const client = makeDoClient({ token: TOKEN, baseUrl: mock.url, fetch: preferOnce, baseDelayMs: 5, onExchange: (e) => log.push(e) });
  const ds = await listDroplets(client, 'wpfarm', { perPage: 20 });
  assert.ok(ds.length > 0, 'the spec example droplets were parsed');
  assert.deepEqual(
    log.slice(0, 2).map((e) => `${e.attempt}:${e.status}`),
    ['1:429', '2:200'],
  );
  assert.equal(log[0]!.path, log[1]!.path);
  assert.ok(
    log.every((e) => e.violations === undefined),
    'the request passes the spec',
  );
});

test('a 5xx on a read is retried; bounded attempts end with a clear error, exit 2', async () => {
  fake.failNext(1, 500);
  const ok = await provision('--check');
  assert.equal(ok.code, 0, ok.err);
  assert.equal(exchanges(ok)[0]!.status, 500);
  fake.failNext(50, 429);
  const bad = await provision('--check');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /error: digitalocean: GET \/v2\/vpcs\?page=1&per_page=4 -> 429: too_many_requests: API rate limit exceeded\./);
  assert.equal(exchanges(bad).length, 5, 'default: 5 attempts');
  assert.doesNotMatch(bad.err, new RegExp(TOKEN));
  // drain what is left so later tests start clean
  fake.clearFaults();
});

test('Prism catches an answer that breaks the contract (the harness is really validating)', async () => {
  fake.corruptDroplets = true;
  try {
    const r = await provision('--check');
    assert.equal(r.code, 2, 'a broken answer must fail the run');
    assert.match(r.err, /error: digitalocean: GET \/v2\/droplets\?page=1&per_page=4&tag_name=wpfarm -> 500: .*memory/);
  } finally {
    fake.corruptDroplets = false;
  }
});

test('a wrong token: 401 with a clear message that does not echo any credential', async () => {
  const bad = path.join(dir, 'bad.env');
  writeFileSync(bad, 'DIGITALOCEAN_TOKEN=dop_v1_wrongwrongwrong_123456\n');
  const out: string[] = [];
  const code = await runProvision(['--inventory', invFile, '--out', outFile, '--api-url', prism.url, '--dotenv', bad, '--check'], {
    out: (l) => out.push(l),
    err: (l) => out.push(l),
  });
  assert.equal(code, 2);
  assert.match(out.join('\n'), /-> 401: unauthorized: Unable to authenticate you/);
  assert.doesNotMatch(out.join('\n'), /wrongwrong|Bearer|authorization/i);
});

test('bad input: a missing field is named with file:line, exit 4; a missing token too', async () => {
  const broken = path.join(dir, 'broken.yml');
  writeFileSync(broken, INVENTORY.replace('db:       { count: 3, size: s-4vcpu-8gb }', 'db:       { count: 3 }'));
  let r = { code: 0, text: '' };
  const io = (): Io => ({ out: (l) => (r.text += `${l}\n`), err: (l) => (r.text += `${l}\n`) });
  r.code = await runProvision(['--inventory', broken, '--dotenv', envFile, '--api-url', prism.url, '--check'], io());
  assert.equal(r.code, 4);
  assert.match(r.text, /broken\.yml:14:\d+ cloud\.groups\.db\.size: is required/);
  r = { code: 0, text: '' };
  writeFileSync(broken, INVENTORY.replace('management_cidrs: [203.0.113.0/24]', 'management_cidrs: [203.0.113.0/33]'));
  r.code = await runProvision(['--inventory', broken, '--dotenv', envFile, '--api-url', prism.url, '--check'], io());
  assert.equal(r.code, 4);
  assert.match(r.text, /cloud\.management_cidrs\[0\]: not a CIDR: "203\.0\.113\.0\/33"/);
  r = { code: 0, text: '' };
  const empty = path.join(dir, 'empty.env');
  writeFileSync(empty, '# nothing\n');
  const saved = process.env['DIGITALOCEAN_TOKEN'];
  delete process.env['DIGITALOCEAN_TOKEN'];
  try {
    r.code = await runProvision(['--inventory', invFile, '--dotenv', empty, '--api-url', prism.url, '--check'], io());
  } finally {
    if (saved !== undefined) process.env['DIGITALOCEAN_TOKEN'] = saved;
  }
  assert.equal(r.code, 4);
  assert.match(r.text, /env var DIGITALOCEAN_TOKEN is not set/);
  r = { code: 0, text: '' };
  r.code = await runProvision(['--bogus'], io());
  assert.equal(r.code, 4);
  assert.match(r.text, /usage:/);
});

test('pagination of the library call is bounded and complete', async () => {
  const seen: Exchange[] = [];
  const client = makeDoClient({ token: TOKEN, baseUrl: prism.url, onExchange: (e) => seen.push(e) });
  const all = await listDroplets(client, 'wpfarm', { perPage: 2 });
  assert.equal(all.length, 11);
  assert.equal(new Set(all.map((d) => d.id)).size, 11);
  assert.equal(seen.length, 6, '11 droplets, 2 per page: 6 pages');
  await assert.rejects(listDroplets(client, 'wpfarm', { perPage: 2, maxPages: 3 }), /more than 3 pages/);
});

test('--destroy asks for confirmation; without a terminal and without --yes nothing is deleted', async () => {
  const before = fake.mutations().length;
  const r = await provision('--destroy');
  assert.equal(r.code, 4);
  assert.match(r.err, /needs confirmation/);
  assert.equal(fake.mutations().length, before);
  // a wrong answer at the prompt: nothing deleted
  const out: string[] = [];
  const code = await runProvision(['--inventory', invFile, '--api-url', prism.url, '--dotenv', envFile, '--destroy'], {
    out: (l) => out.push(l),
    err: (l) => out.push(l),
    ask: async () => 'no',
  });
  assert.equal(code, 4);
  assert.equal(fake.mutations().length, before);
});

test('--destroy --yes removes what wpfarm owns (bucket kept), then a rerun has nothing to destroy', async () => {
  const r = await provision('--destroy', '--yes');
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  assert.match(r.out, /never deleted here/);
  assert.equal(fake.droplets.length, 0);
  assert.equal(fake.firewalls.length, 0);
  assert.equal(fake.reservedIps.length, 0);
  assert.equal(fake.volumes.length, 0);
  assert.equal(fake.loadBalancers.length, 0);
  assert.equal(fake.vpcs.length, 0);
  assert.match(r.out, /11 host\(s\) removed from/);
  const inv = parse(readFileSync(outFile, 'utf8')) as {
    hosts?: Record<string, unknown>;
    groups: Record<string, { hosts: string[] }>;
    vars: Record<string, unknown>;
  };
  assert.deepEqual(Object.keys(inv.hosts ?? {}), []);
  assert.deepEqual(inv.groups['managers']!.hosts, []);
  assert.match(readFileSync(outFile, 'utf8'), /ntp_server/, 'other keys are kept');
  const again = await provision('--destroy', '--yes');
  assert.equal(again.code, 0);
  assert.match(again.out, /destroy plan \(0 action\(s\)\)/);
});
