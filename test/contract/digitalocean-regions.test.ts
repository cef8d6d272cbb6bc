// Provisioning over three DigitalOcean regions against the official OpenAPI spec: Prism in proxy mode with
// --errors in front of the stateful fake (test/harness/do-fake.ts), like test/contract/digitalocean.test.ts.
// One VPC per region, a VPC peering per pair, droplets placed region by region (managers and db one per region,
// storage in the primary), a main firewall per region (cluster ports from every VPC range), the engine inventory
// with each host's region. An inventory that splits Gluster storage over regions is refused before any request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import { DoFake } from '../harness/do-fake.ts';
import { startAll, specPath, type PrismServer } from '../harness/prism.ts';
import { runProvision, type Io } from '../../playbooks/provision.ts';

const TOKEN = 'dop_v1_contractregions_8d1e2f';
let fake: DoFake;
let prism: PrismServer;
let dir: string;
let envFile: string;
let outFile: string;

const INVENTORY = `cloud:
  provider: digitalocean
  region: fra1
  regions:
    fra1: { vpc: { name: wpfarm-fra1, ip_range: 10.110.0.0/20 } }
    ams3: { vpc: { name: wpfarm-ams3, ip_range: 10.111.0.0/20 } }
    lon1: { vpc: { name: wpfarm-lon1, ip_range: 10.112.0.0/20 } }
  ssh_keys: ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"]
  image: debian-12-x64
  tags: [wpfarm]
  groups:
    managers: { count: 3, size: s-2vcpu-4gb, regions: [fra1, ams3, lon1] }
    workers:  { count: 2, size: s-4vcpu-8gb, regions: [fra1, ams3] }
    db:       { count: 3, size: s-4vcpu-8gb, regions: [fra1, ams3, lon1] }
    storage:  { count: 2, size: s-2vcpu-4gb, volume_gb: 200 }
  reserved_ip: { group: managers }
  management_cidrs: [203.0.113.0/24]
`;

interface Run {
  code: number;
  out: string;
  err: string;
}

async function provision(inventory: string, ...extra: string[]): Promise<Run> {
  const invFile = path.join(dir, 'production.example.yml');
  writeFileSync(invFile, inventory);
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => out.push(l), err: (l) => err.push(l) };
  const args = ['--inventory', invFile, '--out', outFile, '--api-url', prism.url, '--dotenv', envFile, '--poll-ms', '20', '-v'];
  const code = await runProvision([...args, ...extra], io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

function assertClean(r: Run): void {
  const ex = r.err.split('\n').filter((l) => /^ {2}(GET|POST|PUT|DELETE|PATCH) \S+ -> \d{3}/.test(l));
  assert.ok(ex.length > 0, 'no exchanges were logged');
  for (const line of ex) {
    assert.ok(Number(/-> (\d{3})/.exec(line)![1]) < 400, `an answer failed: ${line}`);
    assert.doesNotMatch(line, /VIOLATIONS/, `Prism reported a violation: ${line}`);
  }
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-do-regions-'));
  envFile = path.join(dir, '.env');
  outFile = path.join(dir, 'production.yml');
  writeFileSync(envFile, `DIGITALOCEAN_TOKEN=${TOKEN}\n`);
  fake = new DoFake(TOKEN);
  await fake.start();
  [prism] = (await startAll([{ spec: specPath('digitalocean-public.v2.bundled.yaml'), mode: 'proxy', upstream: fake.url }])) as [
    PrismServer,
  ];
});

after(async () => {
  await prism?.stop();
  await fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('refused before any request (exit 4, file:line and field): Gluster over regions, 2-region quorum, overlapping VPCs', async () => {
  const cases: [string, string, RegExp][] = [
    [
      'storage:  { count: 2, size: s-2vcpu-4gb, volume_gb: 200 }',
      'storage:  { count: 2, size: s-2vcpu-4gb, volume_gb: 200, regions: [fra1, ams3] }',
      /production\.example\.yml:\d+:\d+.*cloud\.groups\.storage\.regions: storage is Gluster storage: .*within one region/,
    ],
    [
      'db:       { count: 3, size: s-4vcpu-8gb, regions: [fra1, ams3, lon1] }',
      'db:       { count: 2, size: s-4vcpu-8gb, regions: [fra1, ams3] }',
      /cloud\.groups\.db\.regions: db over 2 regions loses its quorum/,
    ],
    [
      'managers: { count: 3, size: s-2vcpu-4gb, regions: [fra1, ams3, lon1] }',
      'managers: { count: 5, size: s-2vcpu-4gb, regions: [fra1, ams3, lon1] }',
      /cloud\.groups\.managers\.count: managers over 3 regions: one per region, so count must be 3 \(got 5\)/,
    ],
    ['10.112.0.0/20', '10.110.8.0/21', /cloud\.regions\.lon1\.vpc\.ip_range: 10\.110\.8\.0\/21 overlaps fra1's 10\.110\.0\.0\/20/],
    ['regions: [fra1, ams3] }', 'regions: [fra1, sgp1] }', /cloud\.groups\.workers\.regions\[1\]: unknown region sgp1/],
  ];
  const before = fake.requests.length;
  for (const [from, to, msg] of cases) {
    assert.ok(INVENTORY.includes(from), from);
    const r = await provision(INVENTORY.replace(from, to), '--check');
    assert.equal(r.code, 4, `${to}: ${r.err}`);
    assert.match(r.err, msg);
  }
  assert.equal(fake.requests.length, before, 'no API request for a refused inventory');
});

test('--check on three regions plans a VPC each, their peerings, droplets region by region, firewalls per region', async () => {
  const r = await provision(INVENTORY, '--check');
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  assert.equal(fake.mutations().length, 0);
  for (const re of [
    /create VPC wpfarm-fra1 in fra1 \(10\.110\.0\.0\/20\)/,
    /create VPC wpfarm-ams3 in ams3/,
    /create VPC wpfarm-lon1 in lon1/,
    /create VPC peering wpfarm-fra1-ams3 \(wpfarm-fra1 <-> wpfarm-ams3\)/,
    /create VPC peering wpfarm-fra1-lon1/,
    /create VPC peering wpfarm-ams3-lon1/,
    /create droplets mgr1 \[managers\] \(s-2vcpu-4gb, debian-12-x64, fra1, tags wpfarm,wpfarm-managers,wpfarm-fra1\)/,
    /create droplets mgr2 \[managers\] \(.*ams3/,
    /create droplets db3 \[db\] \(.*lon1/,
    /create droplets st1, st2 \[storage\] \(.*fra1/,
    /create firewall wpfarm-fw-fra1 for tags wpfarm-fra1/,
    /create firewall wpfarm-fw-lon1 for tags wpfarm-lon1/,
    /create a reserved IP in fra1 assigned to mgr1/,
  ])
    assert.match(r.out, re);
});

test('provision over three regions: every request and answer passes the spec; inventory with regions; rerun changes nothing', async () => {
  const r = await provision(INVENTORY);
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  assert.equal(fake.vpcs.length, 3);
  assert.deepEqual(fake.peerings.map((p) => p['name']).sort(), ['wpfarm-ams3-lon1', 'wpfarm-fra1-ams3', 'wpfarm-fra1-lon1']);
  const vpcId = (region: string) => fake.vpcs.find((v) => v['region'] === region)!['id'];
  const peering = fake.peerings.find((p) => p['name'] === 'wpfarm-fra1-lon1')!;
  assert.deepEqual(peering['vpc_ids'], [vpcId('fra1'), vpcId('lon1')]);
  const regionOf = (name: string) => (fake.droplets.find((d) => d['name'] === name)!['region'] as { slug: string }).slug;
  assert.deepEqual(['mgr1', 'mgr2', 'mgr3', 'db1', 'db2', 'db3', 'wrk1', 'wrk2', 'st1', 'st2'].map(regionOf), [
    'fra1',
    'ams3',
    'lon1',
    'fra1',
    'ams3',
    'lon1',
    'fra1',
    'ams3',
    'fra1',
    'fra1',
  ]);
  const create = (name: string) =>
    fake.requests.find((q) => q.method === 'POST' && q.path === '/v2/droplets' && JSON.stringify(q.body).includes(`"${name}"`))!
      .body as Record<string, unknown>;
  assert.equal(create('db3')['vpc_uuid'], vpcId('lon1'), "db3 joins lon1's VPC");
  const volumes = fake.requests
    .filter((q) => q.method === 'POST' && q.path === '/v2/volumes')
    .map((q) => (q.body as { region: string }).region);
  assert.deepEqual(volumes, ['fra1', 'fra1'], 'storage volumes in the storage region');
  const fw = fake.firewalls.find((f) => f['name'] === 'wpfarm-fw-ams3')!;
  assert.deepEqual(fw['tags'], ['wpfarm-ams3']);
  const galera = (fw['inbound_rules'] as { ports: string; sources: { addresses?: string[] } }[]).find((x) => x.ports === '4567')!;
  assert.deepEqual(galera.sources.addresses, ['10.110.0.0/20', '10.111.0.0/20', '10.112.0.0/20']);
  const inv = parse(readFileSync(outFile, 'utf8')) as {
    vars: Record<string, unknown>;
    hosts: Record<string, { vars: Record<string, unknown> }>;
  };
  assert.deepEqual(inv.vars['regions'], ['fra1', 'ams3', 'lon1']);
  assert.deepEqual(inv.vars['vpc_cidrs'], ['10.110.0.0/20', '10.111.0.0/20', '10.112.0.0/20']);
  assert.equal(inv.hosts['db2']!.vars['region'], 'ams3');
  assert.equal(inv.hosts['st2']!.vars['region'], 'fra1');

  const before = fake.mutations().length;
  const again = await provision(INVENTORY);
  assert.equal(again.code, 0, again.err);
  assertClean(again);
  assert.match(again.out, /plan \(0 change\(s\)\)/);
  assert.equal(fake.mutations().length, before, `new mutations: ${JSON.stringify(fake.mutations().slice(before))}`);
});
