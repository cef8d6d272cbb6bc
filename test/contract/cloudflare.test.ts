// Cloudflare DNS against the spec the `cloudflare` SDK is generated from: Prism proxy --errors in front
// of a small stateful fake (both directions validated), and Prism mock for the forced 429.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CfFake } from '../harness/cf-fake.ts';
import { startAll, specPath, type PrismServer } from '../harness/prism.ts';
import { CloudflareDns, cfError } from '../../lib/cloud/cloudflare.ts';
import { InputError } from '../../lib/errors.ts';
import type { Exchange, FetchLike } from '../../lib/cloud/retry.ts';
import { runDns } from '../../playbooks/dns.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

const TOKEN = 'cf_contract_token_9c1f2e7d5a4b3c2d1e0f';
const ZONE = 'example.com';
let fake: CfFake;
let proxy: PrismServer;
let mock: PrismServer;
const seen: Exchange[] = [];
let dns: CloudflareDns;

before(async () => {
  fake = new CfFake(TOKEN);
  fake.addZone('other.org');
  fake.addZone(ZONE);
  await fake.start();
  const spec = specPath('cloudflare-dns-zones.subset.openapi.json');
  [proxy, mock] = (await startAll([
    { spec, mode: 'proxy', upstream: fake.url },
    { spec, mode: 'mock' },
  ])) as [PrismServer, PrismServer];
  dns = new CloudflareDns({ token: TOKEN, baseUrl: proxy.url, baseDelayMs: 5, onExchange: (e) => seen.push(e) });
});

after(async () => {
  await proxy?.stop();
  await mock?.stop();
  await fake?.stop();
});

function assertAllValid(from: number): void {
  const ex = seen.slice(from);
  assert.ok(ex.length > 0, 'no requests were sent');
  for (const e of ex) {
    assert.equal(e.violations, undefined, `Prism reported: ${e.method} ${e.path} ${e.violations}`);
    assert.ok(e.status < 400 || e.status === 429, `${e.method} ${e.path} -> ${e.status}`);
  }
}

const recs = (name: string) =>
  fake.records
    .filter((r) => r['name'] === name)
    .map((r) => `${r['type'] as string} ${r['content'] as string} proxied=${String(r['proxied'])}`)
    .sort();

test('create: one proxied A record per domain and alias', async () => {
  const from = seen.length;
  const r = await dns.ensureSiteRecords({
    zoneName: ZONE,
    names: ['site1.example.com', 'www.site1.example.com'],
    target: '192.0.2.10',
    proxied: true,
  });
  assert.deepEqual(r.created, ['site1.example.com', 'www.site1.example.com']);
  assert.deepEqual(r.updated, []);
  assert.deepEqual(recs('site1.example.com'), ['A 192.0.2.10 proxied=true']);
  assert.deepEqual(recs('www.site1.example.com'), ['A 192.0.2.10 proxied=true']);
  assert.equal(fake.records[0]!['zone_name'], ZONE, 'created in the right zone');
  assertAllValid(from);
});

test('rerun: nothing changes, no write request', async () => {
  const before = fake.mutations().length;
  const r = await dns.ensureSiteRecords({
    zoneName: ZONE,
    names: ['site1.example.com', 'www.site1.example.com'],
    target: '192.0.2.10',
    proxied: true,
  });
  assert.deepEqual(r, { created: [], updated: [], unchanged: ['site1.example.com', 'www.site1.example.com'], deleted: [] });
  assert.equal(fake.mutations().length, before);
});

test('update: the edge address changes, the records follow', async () => {
  const from = seen.length;
  const r = await dns.ensureSiteRecords({
    zoneName: ZONE,
    names: ['site1.example.com', 'www.site1.example.com'],
    target: '198.51.100.7',
    proxied: true,
  });
  assert.deepEqual(r.updated, ['site1.example.com 192.0.2.10 -> 198.51.100.7', 'www.site1.example.com 192.0.2.10 -> 198.51.100.7']);
  assert.deepEqual(recs('site1.example.com'), ['A 198.51.100.7 proxied=true']);
  assert.equal(fake.mutations().filter((m) => m.method === 'PUT').length, 2);
  assertAllValid(from);
});

test('IPv6 edge gives AAAA; a host name target replaces the A/AAAA records by a CNAME', async () => {
  const from = seen.length;
  const a = await dns.ensureSiteRecords({ zoneName: ZONE, names: ['v6.example.com'], target: '2001:db8::7' });
  assert.deepEqual(a.created, ['v6.example.com']);
  assert.deepEqual(recs('v6.example.com'), ['AAAA 2001:db8::7 proxied=true']);
  const c = await dns.ensureSiteRecords({ zoneName: ZONE, names: ['site1.example.com'], target: 'edge.example.net' });
  assert.deepEqual(c.deleted, ['site1.example.com A 198.51.100.7']);
  assert.deepEqual(c.created, ['site1.example.com']);
  assert.deepEqual(recs('site1.example.com'), ['CNAME edge.example.net proxied=true']);
  assertAllValid(from);
});

test('duplicates at one name are collapsed, across several pages (bounded pagination)', async () => {
  const zone = fake.zones.find((z) => z['name'] === ZONE)!;
  for (const ip of ['192.0.2.31', '192.0.2.32', '192.0.2.33']) {
    fake.records.push({
      id: `dup${ip.replace(/\./g, '')}`.padEnd(32, '0'),
      name: 'dup.example.com',
      type: 'A',
      content: ip,
      proxiable: true,
      proxied: false,
      ttl: 1,
      settings: {},
      meta: {},
      data: {},
      comment: '',
      tags: [],
      created_on: new Date().toISOString(),
      modified_on: new Date().toISOString(),
      zone_id: zone['id'],
      zone_name: ZONE,
    });
  }
  const small = new CloudflareDns({ token: TOKEN, baseUrl: proxy.url, perPage: 1, onExchange: (e) => seen.push(e) });
  const from = seen.length;
  const r = await small.ensureSiteRecords({ zoneName: ZONE, names: ['dup.example.com'], target: '192.0.2.31' });
  assert.equal(r.deleted.length, 2);
  assert.deepEqual(r.updated, ['dup.example.com 192.0.2.31 -> 192.0.2.31']); // proxied false -> true
  assert.deepEqual(recs('dup.example.com'), ['A 192.0.2.31 proxied=true']);
  assert.equal(seen.slice(from).filter((e) => e.method === 'GET' && /dns_records\?/.test(e.path)).length, 3, 'three pages of one record');
  assertAllValid(from);
  const tiny = new CloudflareDns({ token: TOKEN, baseUrl: proxy.url, perPage: 1, maxPages: 2 });
  fake.records.push(
    { ...fake.records.find((x) => x['name'] === 'dup.example.com')!, id: 'e'.repeat(32), content: '192.0.2.40' },
    { ...fake.records.find((x) => x['name'] === 'dup.example.com')!, id: 'f'.repeat(32), content: '192.0.2.41' },
  );
  await assert.rejects(tiny.recordsAt(zone['id'] as string, 'dup.example.com'), /more than 2 pages/);
  await small.ensureSiteRecords({ zoneName: ZONE, names: ['dup.example.com'], target: '192.0.2.31' });
  assert.deepEqual(recs('dup.example.com'), ['A 192.0.2.31 proxied=true']);
});

test('remove: the records go; removing again finds them absent; other types are not touched', async () => {
  const zone = fake.zones.find((z) => z['name'] === ZONE)!;
  fake.records.push({
    id: 'a'.repeat(32),
    name: 'www.site1.example.com',
    type: 'TXT',
    content: '"keep me"',
    proxiable: false,
    proxied: false,
    ttl: 1,
    settings: {},
    meta: {},
    data: {},
    comment: '',
    tags: [],
    created_on: new Date().toISOString(),
    modified_on: new Date().toISOString(),
    zone_id: zone['id'],
    zone_name: ZONE,
  });
  const from = seen.length;
  const r = await dns.removeSiteRecords({ zoneName: ZONE, names: ['site1.example.com', 'www.site1.example.com'] });
  assert.deepEqual(r.deleted, ['site1.example.com CNAME edge.example.net', 'www.site1.example.com A 198.51.100.7']);
  assert.deepEqual(recs('site1.example.com'), []);
  assert.deepEqual(recs('www.site1.example.com'), ['TXT "keep me" proxied=false']);
  const again = await dns.removeSiteRecords({ zoneName: ZONE, names: ['site1.example.com', 'www.site1.example.com'] });
  assert.deepEqual(again.deleted, []);
  assert.deepEqual(again.absent, ['site1.example.com', 'www.site1.example.com']);
  assertAllValid(from);
});

test('bad records are refused before any request, with the field named', async () => {
  const before = fake.requests.length;
  const cases: [Parameters<CloudflareDns['ensureSiteRecords']>[0], RegExp][] = [
    [
      { zoneName: ZONE, names: ['site.other.org'], target: '192.0.2.1' },
      /names\[0\]: site\.other\.org is not inside the zone example\.com/,
    ],
    [{ zoneName: ZONE, names: ['bad_name!.example.com'], target: '192.0.2.1' }, /names\[0\]: not a host name/],
    [{ zoneName: ZONE, names: ['a.example.com'], target: '300.1.2.3' }, /target: not an IPv4\/IPv6 address or host name: "300\.1\.2\.3"/],
    [{ zoneName: ZONE, names: ['a.example.com'], target: '192.0.2.1', ttl: 0 }, /ttl: must be 1 \(automatic\) or 30\.\.86400, got 0/],
    [{ zoneName: ZONE, names: [], target: '192.0.2.1' }, /names: at least one name is required/],
    [{ zoneName: 'not a zone', names: ['a.example.com'], target: '192.0.2.1' }, /zoneName: not a domain name/],
  ];
  for (const [args, re] of cases) {
    await assert.rejects(dns.ensureSiteRecords(args), (err: unknown) => err instanceof InputError && re.test(err.message));
  }
  assert.equal(fake.requests.length, before, 'no request was sent for bad input');
  await assert.rejects(
    dns.ensureSiteRecords({ zoneName: 'missing.net', names: ['a.missing.net'], target: '192.0.2.1' }),
    /zone missing\.net not found/,
  );
});

test('a record the API refuses surfaces as a clear error naming the problem (and never the token)', async () => {
  const zoneId = fake.zones.find((z) => z['name'] === ZONE)!['id'] as string;
  const before = fake.records.length;
  let caught: Error | undefined;
  try {
    // bypass the local checks on purpose: ttl 0 and a type that does not exist
    await dns.client.dns.records.create({ zone_id: zoneId, name: 'x.example.com', type: 'BOGUS', content: '1.2.3.4', ttl: 0 } as never);
  } catch (err) {
    caught = cfError(err, `POST /zones/${zoneId}/dns_records`, [TOKEN]);
  }
  assert.ok(caught, 'the API accepted an invalid record');
  assert.match(caught.message, /^cloudflare: POST \/zones\/[0-9a-f]{32}\/dns_records -> 422: Invalid request: body/);
  assert.match(caught.message, /type|ttl/);
  assert.doesNotMatch(caught.message, new RegExp(TOKEN));
  assert.equal(fake.records.length, before, 'nothing was created');
});

test('a 429 from the service is retried (through the proxy, answer validated)', async () => {
  fake.failNext(1, 429);
  const from = seen.length;
  const r = await dns.ensureSiteRecords({ zoneName: ZONE, names: ['rl.example.com'], target: '192.0.2.50' });
  assert.deepEqual(r.created, ['rl.example.com']);
  const ex = seen.slice(from);
  const first = ex.find((e) => e.status === 429);
  assert.ok(first, 'no 429 was seen');
  assert.ok(
    ex.some((e) => e.path === first.path && e.attempt === 2 && e.status === 200),
    'the same request was retried and succeeded',
  );
  assert.ok(ex.every((e) => e.violations === undefined));
});

test("Prism mock: 'Prefer: code=429' on the first attempt is retried; listing a static mock ends", async () => {
  let injected = 0;
  const preferOnce: FetchLike = async (input, init) => {
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    if (injected === 0) {
      headers.set('Prefer', 'code=429');
      injected++;
    }
    return fetch(input instanceof Request ? input.url : input, { ...init, headers });
  };
  const log: Exchange[] = [];
  const m = new CloudflareDns({ token: TOKEN, baseUrl: mock.url, fetch: preferOnce, baseDelayMs: 5, onExchange: (e) => log.push(e) });
  // the mock answers with the spec's example zone, which is named example.com
  const id = await m.zoneId(ZONE);
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.equal(log[0]!.status, 429);
  assert.equal(log[1]!.status, 200);
  assert.equal(log[1]!.attempt, 2);
  const started = Date.now();
  const recsAt = await m.recordsAt('023e105f4ecef8ad9ca31a8372d0c353', 'www.example.com');
  assert.ok(Array.isArray(recsAt));
  assert.ok(Date.now() - started < 20_000, 'listing a static mock must stop');
  assert.ok(log.filter((e) => /dns_records/.test(e.path)).length <= 20);
});

test('playbooks/dns.ts: zone and target from the provisioned inventory; ensure, rerun, remove; exit codes', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-dns-'));
  try {
    const env = path.join(dir, '.env');
    const inv = path.join(dir, 'production.yml');
    writeFileSync(env, `CLOUDFLARE_API_TOKEN=${TOKEN}\n`);
    writeFileSync(inv, 'vars:\n  cloudflare_zone: example.com\n  edge_address: 192.0.2.77\nhosts: {}\n');
    const run = async (...args: string[]) => {
      const lines: string[] = [];
      const code = await runDns([...args, '--inventory', inv, '--dotenv', env, '--api-url', proxy.url], {
        out: (l) => lines.push(l),
        err: (l) => lines.push(l),
      });
      return { code, text: lines.join('\n') };
    };
    const writes = fake.mutations().length;
    let r = await run('ensure', 'cli.example.com', 'www.cli.example.com', '--check');
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /created cli\.example\.com\ncreated www\.cli\.example\.com\nwould change: 2/);
    assert.equal(fake.mutations().length, writes, '--check sends no write');
    assert.deepEqual(recs('cli.example.com'), []);
    r = await run('ensure', 'cli.example.com', 'www.cli.example.com');
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /created cli\.example\.com\ncreated www\.cli\.example\.com\nchanged: 2/);
    assert.deepEqual(recs('www.cli.example.com'), ['A 192.0.2.77 proxied=true']);
    r = await run('ensure', 'cli.example.com', 'www.cli.example.com');
    assert.match(r.text, /changed: 0/);
    r = await run('remove', 'cli.example.com', 'www.cli.example.com');
    assert.equal(r.code, 0, r.text);
    assert.match(r.text, /changed: 2/);
    assert.deepEqual(recs('cli.example.com'), []);
    r = await run('ensure', 'x.other.org');
    assert.equal(r.code, 4);
    assert.match(r.text, /names\[0\]: x\.other\.org is not inside the zone example\.com/);
    r = await run('frobnicate', 'a.example.com');
    assert.equal(r.code, 4);
    assert.doesNotMatch(r.text, new RegExp(TOKEN));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
