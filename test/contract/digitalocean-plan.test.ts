// The pure parts of provisioning: inventory checks, the plan (desired vs actual), firewall diff,
// retry timing. No network (a local loopback server for the retry wrapper only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { parseCloudSection, type CloudSpec } from '../../lib/cloud/config.ts';
import {
  desiredFirewalls,
  firewallDiff,
  planDestroy,
  planProvision,
  planChanges,
  describeAction,
  type DoActual,
  type DropletInfo,
} from '../../lib/cloud/digitalocean.ts';
import { backoffMs, isRetryableStatus, maskSecrets, retryingFetch, serverDelayMs, type Exchange } from '../../lib/cloud/retry.ts';
import { inventoryFromActual, writeInventory } from '../../lib/cloud/inventory-out.ts';
import { CLUSTER_PORTS } from '../../roles/common/firewall.ts';
import { loadInventory, groupMembers } from '../../lib/inventory.ts';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { InputError } from '../../lib/errors.ts';

const RAW = {
  region: 'fra1',
  vpc: { name: 'wpfarm-vpc', ip_range: '10.110.0.0/20' },
  ssh_keys: ['3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa', 12345],
  image: 'debian-12-x64',
  tags: ['wpfarm'],
  groups: {
    managers: { count: 3, size: 's-2vcpu-4gb' },
    workers: { count: 2, size: 's-4vcpu-8gb' },
    storage: { count: 2, size: 's-2vcpu-4gb', volume_gb: 200 },
  },
  reserved_ip: { group: 'managers' },
  management_cidrs: ['203.0.113.0/24'],
};

const spec = (over: Record<string, unknown> = {}): CloudSpec => parseCloudSection({ ...structuredClone(RAW), ...over });
const empty: DoActual = { vpcs: [], peerings: [], droplets: [], firewalls: [], reservedIps: [], volumes: [] };

function droplet(id: number, name: string, group: string, size: string): DropletInfo {
  return {
    id,
    name,
    tags: ['wpfarm', `wpfarm-${group}`],
    size,
    status: 'active',
    publicV4: `192.0.2.${id}`,
    privateV4: `10.110.0.${id}`,
    volumeIds: [],
  };
}

function converged(s: CloudSpec): DoActual {
  const droplets = [
    droplet(1, 'mgr1', 'managers', 's-2vcpu-4gb'),
    droplet(2, 'mgr2', 'managers', 's-2vcpu-4gb'),
    droplet(3, 'mgr3', 'managers', 's-2vcpu-4gb'),
    droplet(4, 'wrk1', 'workers', 's-4vcpu-8gb'),
    droplet(5, 'wrk2', 'workers', 's-4vcpu-8gb'),
    droplet(6, 'st1', 'storage', 's-2vcpu-4gb'),
    droplet(7, 'st2', 'storage', 's-2vcpu-4gb'),
  ];
  const vpc = { id: 'v', name: 'wpfarm-vpc', ipRange: '10.110.0.0/20' };
  return {
    vpc,
    vpcs: [vpc],
    peerings: [],
    droplets,
    firewalls: desiredFirewalls(s, CLUSTER_PORTS).map((f, i) => ({ ...f, id: `fw${i}` })),
    reservedIps: [{ ip: '198.51.100.1', dropletId: 1 }],
    volumes: [
      { id: 'a', name: 'st1-data', sizeGb: 200, dropletIds: [6] },
      { id: 'b', name: 'st2-data', sizeGb: 200, dropletIds: [7] },
    ],
  };
}

test('config: names, defaults and tags', () => {
  const s = spec();
  assert.deepEqual(
    s.groups.map((g) => g.prefix),
    ['mgr', 'wrk', 'st'],
  );
  assert.deepEqual(s.groups[0]!.tags, ['wpfarm', 'wpfarm-managers']);
  assert.deepEqual(s.sshKeys, ['3b:16:bf:e4:8b:00:8b:b8:59:8c:a9:d3:f0:19:45:fa', 12345]);
  assert.equal(s.edgeGroup, 'managers');
  assert.equal(s.firewallName, 'wpfarm-fw');
  assert.equal(s.loadBalancer.enabled, false);
});

test('config: each bad field is named, as InputError (exit 4)', () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ region: undefined }, /cloud\.region: is required/],
    [{ provider: 'aws' }, /cloud\.provider: unsupported provider "aws"/],
    [{ groups: { db: { count: 3 } } }, /cloud\.groups\.db\.size: is required/],
    [
      { groups: { db: { count: -1, size: 's-1vcpu-1gb' } } },
      /cloud\.groups\.db\.count: must be an integer from 0 to 100, got the number -1/,
    ],
    [{ groups: { db: { count: 1.5, size: 's-1vcpu-1gb' } } }, /cloud\.groups\.db\.count: must be an integer/],
    [{ vpc: { name: 'v', ip_range: '10.0.0.0/99' } }, /cloud\.vpc\.ip_range: not a CIDR/],
    [{ ssh_keys: [] }, /cloud\.ssh_keys: at least one key id or fingerprint/],
    [{ ssh_keys: ['hello'] }, /cloud\.ssh_keys\[0\]: not a key id or fingerprint/],
    [{ management_cidrs: [] }, /cloud\.management_cidrs: at least one address range/],
    [{ reserved_ip: { group: 'edge' } }, /cloud\.reserved_ip\.group: unknown group "edge"/],
    [{ spaces: { bucket: 'No_Such' } }, /cloud\.spaces\.bucket: invalid value "No_Such"/],
    [{ load_balancer: { enabled: 'yes' } }, /cloud\.load_balancer\.enabled: must be true or false/],
  ];
  for (const [over, re] of bad) {
    assert.throws(
      () => spec(over),
      (err: unknown) => err instanceof InputError && err.exitCode === 4 && re.test(err.message),
      `expected ${re}`,
    );
  }
  assert.throws(() => parseCloudSection(undefined), /cloud: missing/);
});

test('plan on an empty account creates everything in dependency order', () => {
  const s = spec();
  const plan = planProvision(s, empty, CLUSTER_PORTS).map(describeAction);
  assert.deepEqual(plan, [
    'create VPC wpfarm-vpc in fra1 (10.110.0.0/20)',
    'create droplets mgr1, mgr2, mgr3 [managers] (s-2vcpu-4gb, debian-12-x64, fra1, tags wpfarm,wpfarm-managers)',
    'create droplets wrk1, wrk2 [workers] (s-4vcpu-8gb, debian-12-x64, fra1, tags wpfarm,wpfarm-workers)',
    'create droplets st1, st2 [storage] (s-2vcpu-4gb, debian-12-x64, fra1, tags wpfarm,wpfarm-storage)',
    'create volume st1-data 200 GB in fra1 for st1',
    'attach volume st1-data to st1',
    'create volume st2-data 200 GB in fra1 for st2',
    'attach volume st2-data to st2',
    'create firewall wpfarm-fw for tags wpfarm (13 inbound, 3 outbound rules)',
    'create firewall wpfarm-fw-edge for tags wpfarm-managers (2 inbound, 0 outbound rules)',
    'create a reserved IP in fra1 assigned to mgr1',
  ]);
});

test('plan on a converged account is empty; drift is reported, never destroyed', () => {
  const s = spec();
  const actual = converged(s);
  assert.deepEqual(planProvision(s, actual, CLUSTER_PORTS), []);
  actual.droplets[3]!.size = 's-2vcpu-4gb';
  actual.droplets.push(droplet(9, 'wrk3', 'workers', 's-4vcpu-8gb'));
  const plan = planProvision(s, actual, CLUSTER_PORTS);
  assert.deepEqual(planChanges(plan), []);
  assert.deepEqual(plan.map(describeAction), [
    'note: wrk1 is s-2vcpu-4gb, inventory says s-4vcpu-8gb (resize is not automatic)',
    'note: wrk3 (tag wpfarm-workers) is not in the inventory any more (not deleted)',
  ]);
});

test('more than 10 droplets in a group are created in batches of 10 (API limit)', () => {
  const s = spec({ groups: { workers: { count: 23, size: 's-1vcpu-1gb' } }, reserved_ip: undefined });
  const creates = planProvision(s, empty, CLUSTER_PORTS).filter((a) => a.kind === 'create-droplets');
  assert.deepEqual(
    creates.map((a) => (a.kind === 'create-droplets' ? a.names.length : 0)),
    [10, 10, 3],
  );
});

test('firewall: SSH from management only, web only on the edge, cluster ports only from the VPC', () => {
  const [main, edge] = desiredFirewalls(spec(), CLUSTER_PORTS);
  const allAddresses = main!.inbound.filter((r) => r.ports !== '22').flatMap((r) => r.addresses ?? []);
  assert.deepEqual([...new Set(allAddresses)], ['10.110.0.0/20']);
  assert.deepEqual(main!.inbound.find((r) => r.ports === '22')!.addresses, ['203.0.113.0/24']);
  assert.deepEqual(edge!.tags, ['wpfarm-managers']);
  assert.deepEqual(
    edge!.inbound.map((r) => `${r.protocol}/${r.ports}`),
    ['tcp/80', 'tcp/443'],
  );
  // without an ip_range the cluster rules use the owner tag as source
  const noRange = desiredFirewalls(spec({ vpc: { name: 'wpfarm-vpc' } }), CLUSTER_PORTS)[0]!;
  assert.ok(noRange.inbound.filter((r) => r.ports !== '22').every((r) => r.tags?.[0] === 'wpfarm' && !r.addresses));
});

test('firewall diff ignores order and names what differs', () => {
  const [main] = desiredFirewalls(spec(), CLUSTER_PORTS);
  const shuffled = { ...main!, inbound: [...main!.inbound].reverse() };
  assert.deepEqual(firewallDiff(main!, shuffled), []);
  const changed = { ...main!, inbound: main!.inbound.filter((r) => r.ports !== '3306'), tags: ['other'] };
  assert.deepEqual(firewallDiff(main!, changed), ['+ in tcp:3306 a=10.110.0.0/20 t= lb=', 'tags other -> wpfarm']);
});

test('destroy plan: only owned things, droplets before volumes and VPC', () => {
  const s = spec();
  const actual = converged(s);
  actual.reservedIps.push({ ip: '198.51.100.99', dropletId: 4242 }); // someone else's
  const kinds = planDestroy(s, actual).map((a) => a.kind);
  assert.deepEqual(kinds, [
    'delete-reserved-ip',
    'delete-firewall',
    'delete-firewall',
    ...Array(7).fill('delete-droplet'),
    'delete-volume',
    'delete-volume',
    'delete-vpc',
  ]);
});

test('inventory output: hosts, groups and edge address from what exists', () => {
  const s = spec();
  const inv = inventoryFromActual(s, converged(s), { zone: 'example.com' });
  assert.deepEqual(inv.groups['managers'], { hosts: ['mgr1', 'mgr2', 'mgr3'] });
  assert.deepEqual(inv.hosts['st2'], {
    address: '192.0.2.7',
    port: 22,
    user: 'root',
    key: '~/.ssh/id_ed25519',
    vars: { private_address: '10.110.0.7', public_address: '192.0.2.7', droplet_id: 7, region: 'fra1' },
  });
  assert.equal(inv.vars['edge_address'], '198.51.100.1');
  assert.equal(inv.vars['cloudflare_zone'], 'example.com');
  const priv = inventoryFromActual(s, converged(s), { address: 'private' });
  assert.equal(priv.hosts['mgr1']!.address, '10.110.0.1');
  const partial = converged(s);
  partial.droplets[0]!.publicV4 = undefined;
  assert.throws(() => inventoryFromActual(s, partial), /no address yet for: mgr1/);
});

test('retry timing: Retry-After (seconds and date), ratelimit-reset, full-jitter backoff, what is retried', () => {
  const now = Date.parse('2026-11-26T10:00:00Z');
  assert.equal(serverDelayMs(new Headers({ 'retry-after': '3' }), now), 3000);
  assert.equal(serverDelayMs(new Headers({ 'retry-after': 'Thu, 26 Nov 2026 10:00:05 GMT' }), now), 5000);
  assert.equal(serverDelayMs(new Headers({ 'ratelimit-remaining': '0', 'ratelimit-reset': String(now / 1000 + 7) }), now), 7000);
  assert.equal(serverDelayMs(new Headers({ 'ratelimit-remaining': '10', 'ratelimit-reset': String(now / 1000 + 7) }), now), undefined);
  assert.equal(
    backoffMs(1, 500, 30_000, () => 0.999),
    500,
  );
  assert.equal(
    backoffMs(4, 500, 30_000, () => 0.5),
    2000,
  );
  assert.equal(
    backoffMs(20, 500, 30_000, () => 1),
    30_000,
  );
  assert.equal(isRetryableStatus(429, 'POST'), true);
  assert.equal(isRetryableStatus(503, 'POST'), true);
  assert.equal(isRetryableStatus(500, 'POST'), false, 'a POST may have been applied');
  assert.equal(isRetryableStatus(500, 'GET'), true);
  assert.equal(isRetryableStatus(422, 'GET'), false);
});

test('retry wrapper: waits as told, stops after maxAttempts, resends the body, masks secrets', async () => {
  let n = 0;
  const bodies: string[] = [];
  const srv = createServer((req, res) => {
    let b = '';
    req.on('data', (c: Buffer) => (b += c.toString()));
    req.on('end', () => {
      bodies.push(b);
      n++;
      if (req.url === '/always') {
        res.writeHead(503, { 'retry-after': '0' });
        return res.end('{"id":"service_unavailable","message":"try later"}');
      }
      if (n < 3) {
        res.writeHead(429, { 'retry-after': '1' });
        return res.end('{}');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  const waits: number[] = [];
  const log: Exchange[] = [];
  const f = retryingFetch({ maxAttempts: 4, sleep: async (ms) => void waits.push(ms), onExchange: (e) => log.push(e) });
  try {
    const res = await f(`http://127.0.0.1:${port}/x`, { method: 'POST', body: '{"name":"a"}' });
    assert.equal(res.status, 200);
    assert.deepEqual(waits, [1000, 1000]);
    assert.deepEqual(bodies, ['{"name":"a"}', '{"name":"a"}', '{"name":"a"}']);
    assert.deepEqual(
      log.map((e) => `${e.attempt}:${e.status}`),
      ['1:429', '2:429', '3:200'],
    );
    const last = await f(`http://127.0.0.1:${port}/always`);
    assert.equal(last.status, 503, 'after the last attempt the answer is returned to the caller');
    assert.equal(log.filter((e) => e.path === '/always').length, 4);
    await assert.rejects(
      retryingFetch({ maxAttempts: 2, sleep: async () => {}, secrets: ['s3cr3t-token'] })('http://127.0.0.1:1/s3cr3t-token'),
      (err: Error) => !err.message.includes('s3cr3t-token') && /after 2 attempt/.test(err.message),
    );
  } finally {
    srv.close();
  }
  assert.equal(maskSecrets('Authorization: Bearer abcdefgh12345678 and tok123456', ['tok123456']), 'Authorization: Bearer *** and ***');
});

test('the written inventory loads with the engine loader; other keys survive a rewrite', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-inv-'));
  try {
    const file = path.join(dir, 'production.yml');
    const s = spec();
    writeFileSync(
      file,
      '# kept comment\nsettings:\n  known_hosts: .wpfarm/production/known_hosts\nvars:\n  timezone: Europe/Berlin\nhosts:\n  backup1: { address: 192.0.2.200 }\ngroups:\n  managers: { hosts: [], vars: { swarm_role: manager } }\n  offsite: { hosts: [backup1] }\n',
    );
    writeInventory(file, inventoryFromActual(s, converged(s), { zone: 'example.com' }));
    const inv = loadInventory(file);
    assert.deepEqual(groupMembers(inv, 'managers'), ['mgr1', 'mgr2', 'mgr3']);
    assert.deepEqual(groupMembers(inv, 'offsite'), ['backup1']);
    assert.equal(inv.hosts.get('mgr2')!.address, '192.0.2.2');
    assert.equal(inv.hosts.get('mgr2')!.vars['swarm_role'], 'manager', 'a group var kept by the rewrite');
    assert.equal(inv.hosts.get('st1')!.vars['private_address'], '10.110.0.6');
    assert.equal(inv.vars['timezone'], 'Europe/Berlin');
    assert.equal(inv.vars['edge_address'], '198.51.100.1');
    assert.match(readFileSync(file, 'utf8'), /^# kept comment/);
    // a second write with the same state changes nothing
    const before = readFileSync(file, 'utf8');
    writeInventory(file, inventoryFromActual(s, converged(s), { zone: 'example.com' }));
    assert.equal(readFileSync(file, 'utf8'), before);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the CLI entry point: exit 4 with the field named, and for a missing token (no network used)', () => {
  const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-cli-'));
  try {
    const inv = path.join(dir, 'p.yml');
    const env = path.join(dir, 'empty.env');
    writeFileSync(env, '# no token here\n');
    writeFileSync(
      inv,
      'cloud:\n  region: fra1\n  vpc: { name: wpfarm-vpc }\n  ssh_keys: [1234]\n  image: debian-12-x64\n  groups:\n    db: { count: 3 }\n  management_cidrs: [203.0.113.0/24]\n',
    );
    const envNoToken = { ...process.env };
    delete envNoToken['DIGITALOCEAN_TOKEN'];
    const run = (args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'playbooks/provision.ts'), ...args], {
        cwd: repo,
        encoding: 'utf8',
        env: envNoToken,
        timeout: 60_000,
      });
    let r = run(['--inventory', inv, '--dotenv', env, '--check']);
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /p\.yml:7:\d+ cloud\.groups\.db\.size: is required/);
    writeFileSync(inv, readFileSync(inv, 'utf8').replace('{ count: 3 }', '{ count: 3, size: s-1vcpu-1gb }'));
    r = run(['--inventory', inv, '--dotenv', env, '--check']);
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /env var DIGITALOCEAN_TOKEN is not set/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
