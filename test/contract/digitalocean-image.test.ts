// Golden images on DigitalOcean (playbooks/image.ts) against the official OpenAPI spec: Prism in proxy mode with
// --errors validates every request wpfarm sends and every answer of the stateful fake behind it (builder droplet,
// droplet actions shutdown + snapshot, action polling, private images, pruning, a droplet created from the snapshot).
// The spec is cut to the paths used (test/harness/spec-subset.ts): Prism loads it in seconds instead of ~45 s.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DoFake } from '../harness/do-fake.ts';
import { startPrism, type PrismServer } from '../harness/prism.ts';
import { specSubsetPath } from '../harness/spec-subset.ts';
import { runImage, goldenSnapshotName, type Prepare } from '../../playbooks/image.ts';
import { applyProvision, makeDoClient, readActual, planProvision, type DropletInfo } from '../../lib/cloud/digitalocean.ts';
import { parseCloudSection } from '../../lib/cloud/config.ts';
import { CLUSTER_PORTS } from '../../roles/common/firewall.ts';

const TOKEN = 'dop_v1_contracttest_golden_8d1e2f';
const CLOUD = {
  region: 'fra1',
  vpc: { name: 'wpfarm-vpc', ip_range: '10.110.0.0/20' },
  ssh_keys: ['3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa'],
  image: 'debian-12-x64',
  tags: ['wpfarm'],
  groups: { workers: { count: 1, size: 's-4vcpu-8gb' } },
  reserved_ip: false,
  management_cidrs: ['203.0.113.0/24'],
};
const INVENTORY = `# test inventory (cloud part)
cloud:
  region: fra1
  vpc: { name: wpfarm-vpc, ip_range: 10.110.0.0/20 }
  ssh_keys: ["3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa"]
  image: debian-12-x64
  tags: [wpfarm]
  groups:
    workers: { count: 1, size: s-4vcpu-8gb }
  reserved_ip: false
  management_cidrs: [203.0.113.0/24]
`;

let fake: DoFake;
let prism: PrismServer;
let dir: string;
let invFile: string;
let envFile: string;

interface Run {
  code: number;
  out: string;
  err: string;
  prepared: DropletInfo[];
}

async function image(...extra: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const prepared: DropletInfo[] = [];
  // the SSH part (roles/common/golden.ts through the engine) has no place behind Prism: record the droplet instead
  const prepare: Prepare = async (d) => {
    prepared.push(d);
  };
  const code = await runImage(
    ['--inventory', invFile, '--api-url', prism.url, '--dotenv', envFile, '--poll-ms', '10', '-v', ...extra],
    { out: (l) => out.push(l), err: (l) => err.push(l) },
    prepare,
  );
  return { code, out: out.join('\n'), err: err.join('\n'), prepared };
}

/** the exchanges printed by -v: "  METHOD /path -> status" */
function exchanges(r: { err: string }): { method: string; path: string; status: number; line: string }[] {
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
  dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-do-image-'));
  envFile = path.join(dir, '.env');
  invFile = path.join(dir, 'production.yml');
  writeFileSync(envFile, `DIGITALOCEAN_TOKEN=${TOKEN}\n`);
  writeFileSync(invFile, INVENTORY);
  fake = new DoFake(TOKEN);
  await fake.start();
  const spec = specSubsetPath('digitalocean-public.v2.bundled.yaml', [
    /^\/v2\/droplets(\/\{droplet_id\}(\/actions)?)?$/,
    /^\/v2\/actions\/\{action_id\}$/,
    /^\/v2\/images(\/\{image_id\})?$/,
    /^\/v2\/(vpcs|firewalls|reserved_ips)$/,
  ]);
  prism = await startPrism({ spec, mode: 'proxy', upstream: fake.url });
});

after(async () => {
  await prism?.stop();
  await fake?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('--check on an account without the snapshot says what it would build and changes nothing', async () => {
  const r = await image('--check');
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  assert.equal(fake.mutations().length, 0);
  const { name } = goldenSnapshotName(parseCloudSection(CLOUD));
  assert.match(r.out, new RegExp(`would build snapshot ${name} from debian-12-x64 in fra1 with .*docker\\.io`));
  assert.equal(r.prepared.length, 0);
});

test('image bakes a snapshot: builder droplet, prepare, shutdown, snapshot, builder deleted; every exchange passes the spec', async () => {
  const r = await image();
  assert.equal(r.code, 0, `${r.out}\n${r.err}`);
  assertClean(r);
  const { name } = goldenSnapshotName(parseCloudSection(CLOUD));
  // the builder was prepared once, with its address, and is gone; only the snapshot remains
  assert.equal(r.prepared.length, 1);
  assert.equal(r.prepared[0]!.name, 'wpfarm-image-builder');
  assert.match(r.prepared[0]!.publicV4 ?? '', /^192\.0\.2\./);
  assert.equal(fake.droplets.length, 0, 'the builder droplet was deleted');
  assert.deepEqual(
    fake.images.map((i) => i['name']),
    [name],
  );
  const muts = fake
    .mutations()
    .map((m) => ({ ...m, path: m.path.replace(/\d{5,}/g, 'N'), body: (m.body ?? {}) as Record<string, unknown> }));
  assert.deepEqual(
    muts.map((m) => `${m.method} ${m.path}`),
    ['POST /v2/droplets', 'POST /v2/droplets/N/actions', 'POST /v2/droplets/N/actions', 'DELETE /v2/droplets/N'],
  );
  const [create, shutdown, snapshot] = muts.map((m) => m.body);
  assert.deepEqual(
    [create!['name'], create!['image'], create!['region'], create!['tags']],
    ['wpfarm-image-builder', 'debian-12-x64', 'fra1', ['wpfarm-image-builder']],
  );
  assert.deepEqual(shutdown, { type: 'shutdown' });
  assert.deepEqual([snapshot!['type'], snapshot!['name']], ['snapshot', name]);
  // actions were polled until completed
  assert.ok(
    exchanges(r).some((e) => e.method === 'GET' && /^\/v2\/actions\/\d+$/.test(e.path)),
    'actions polled',
  );
  const id = fake.images[0]!['id'] as number;
  assert.match(r.out, new RegExp(`golden image ${name}: id ${id} \\(built\\)`));
  assert.match(r.out, new RegExp(`"image: ${id}" in the cloud: section`));
});

test('a second run reuses the snapshot (same inputs, same name): no droplet, no action', async () => {
  const before = fake.mutations().length;
  const r = await image();
  assert.equal(r.code, 0, r.err);
  assertClean(r);
  assert.equal(fake.mutations().length, before, 'nothing changed');
  assert.equal(r.prepared.length, 0);
  assert.match(r.out, /\(already there\)/);
});

test('a new snapshot (changed inputs) prunes the family beyond --keep, never other images', async () => {
  // two older snapshots of the family and one image of someone else's
  const old = (n: number, name: string) => ({ ...fake.images[0]!, id: 9000 + n, name, created_at: `2026-0${n}-01T00:00:00Z` });
  fake.images.push(old(1, 'wpfarm-node-000000000001'), old(2, 'wpfarm-node-000000000002'), old(3, 'my-own-backup'));
  // another base image gives another name
  writeFileSync(invFile, INVENTORY.replace('image: debian-12-x64', 'image: debian-13-x64'));
  try {
    const r = await image('--keep', '2');
    assert.equal(r.code, 0, `${r.out}\n${r.err}`);
    assertClean(r);
    const names = fake.images.map((i) => String(i['name'])).sort();
    const fresh = goldenSnapshotName(parseCloudSection({ ...CLOUD, image: 'debian-13-x64' })).name;
    const prev = goldenSnapshotName(parseCloudSection(CLOUD)).name;
    // kept: the new one and the newest older one (the one built above); the two old ones pruned; the foreign one untouched
    assert.deepEqual(names, ['my-own-backup', fresh, prev].sort());
    assert.match(r.out, /pruned wpfarm-node-000000000002 \(9002\), wpfarm-node-000000000001 \(9001\)|pruned wpfarm-node-000000000001/);
    assert.ok(exchanges(r).some((e) => e.method === 'DELETE' && e.path === '/v2/images/9001'));
  } finally {
    writeFileSync(invFile, INVENTORY);
  }
});

test('provision creates a droplet from the golden image id (cloud.image: <id>) and the request passes the spec', async () => {
  const id = fake.images.find((i) => i['name'] === goldenSnapshotName(parseCloudSection(CLOUD)).name)!['id'] as number;
  const spec = parseCloudSection({ ...CLOUD, image: id });
  assert.equal(spec.image, id);
  const lines: string[] = [];
  const client = makeDoClient({
    token: TOKEN,
    baseUrl: prism.url,
    onExchange: (e) => lines.push(`  ${e.method} ${e.path} -> ${e.status}${e.violations ? ` VIOLATIONS: ${e.violations}` : ''}`),
  });
  const actual = await readActual(client, spec);
  const plan = planProvision(spec, actual, CLUSTER_PORTS).filter((a) => a.kind === 'create-droplets');
  assert.equal(plan.length, 1);
  const res = await applyProvision(client, spec, plan, { pollIntervalMs: 10 });
  assert.ok(!lines.some((l) => /VIOLATIONS| -> [45]\d\d/.test(l)), lines.join('\n'));
  const made = fake.droplets.find((d) => d['name'] === 'wrk1')!;
  assert.equal((made['image'] as Record<string, unknown>)['id'], id, 'the droplet starts from the snapshot');
  assert.ok(res.actual.droplets.some((d) => d.name === 'wrk1'));
  const post = fake.requests.find((q) => q.method === 'POST' && q.path === '/v2/droplets' && JSON.stringify(q.body).includes('"wrk1"'))!;
  assert.equal((post.body as Record<string, unknown>)['image'], id, 'the image id is sent as a number');
});

test('bad input: an image that is neither a slug nor an id names the field, exit 4', async () => {
  writeFileSync(invFile, INVENTORY.replace('image: debian-12-x64', 'image: "Debian 12!"'));
  try {
    const r = await image('--check');
    assert.equal(r.code, 4, r.out + r.err);
    assert.match(r.err, /image/);
    assert.match(r.err, /production\.yml:\d+/);
  } finally {
    writeFileSync(invFile, INVENTORY);
  }
});
