// The DNS part of a migration (roles/migrate/dns.ts on lib/cloud/cloudflare.ts) against the spec the `cloudflare`
// SDK is generated from: Prism proxy --errors in front of the stateful fake (test/harness/cf-fake.ts), both
// directions validated. A legacy name's record is recorded, its TTL lowered ahead of the move (content kept, a
// rerun sends no write), switched to the farm's edge at cutover (proxied, as add-site makes it), and put back
// exactly as it was by the rollback: the old address with its old TTL, a CNAME as a CNAME, no record where there
// was none; records of other types at the name are never touched.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { CloudflareDns } from '../../lib/cloud/cloudflare.ts';
import type { Exchange } from '../../lib/cloud/retry.ts';
import { type MigrateDns, lowerTtlAhead, oldTtlLeft, snapshotDns, switchBack, switchToFarm } from '../../roles/migrate/dns.ts';
import { CfFake } from '../harness/cf-fake.ts';
import { type PrismServer, specPath, startPrism } from '../harness/prism.ts';

const TOKEN = 'cf_contract_token_migrate_5b7d9e1f3a';
const ZONE = 'example.com';
const EDGE = '203.0.113.5';
let fake: CfFake;
let proxy: PrismServer;
const seen: Exchange[] = [];
let d: MigrateDns;

before(async () => {
  fake = new CfFake(TOKEN);
  const z = fake.addZone(ZONE);
  const rec = (name: string, type: string, content: string, ttl: number, proxied = false) =>
    fake.records.push({
      id: randomBytes(16).toString('hex'),
      zone_id: z['id'],
      zone_name: ZONE,
      name,
      type,
      content,
      proxiable: type !== 'MX',
      proxied,
      ttl,
      settings: {},
      meta: {},
      data: {},
      comment: 'the legacy host',
      tags: [],
      created_on: new Date().toISOString(),
      modified_on: new Date().toISOString(),
      ...(type === 'MX' ? { priority: 10 } : {}),
    });
  rec('old.example.com', 'A', '198.51.100.7', 3600);
  rec('old.example.com', 'MX', 'mail.example.com', 3600);
  rec('shop.example.com', 'CNAME', 'legacy-host.example.net', 600);
  await fake.start();
  proxy = await startPrism({ spec: specPath('cloudflare-dns-zones.subset.openapi.json'), mode: 'proxy', upstream: fake.url });
  d = {
    dns: new CloudflareDns({ token: TOKEN, baseUrl: proxy.url, baseDelayMs: 5, onExchange: (e) => seen.push(e) }),
    zone: ZONE,
    edge: EDGE,
  };
});

after(async () => {
  await proxy?.stop();
  await fake?.stop();
});

const recs = (name: string) =>
  fake.records
    .filter((r) => r['name'] === name)
    .map((r) => `${r['type'] as string} ${r['content'] as string} ttl=${String(r['ttl'])} proxied=${String(r['proxied'])}`)
    .sort();

function assertAllValid(from: number): void {
  const ex = seen.slice(from);
  assert.ok(ex.length > 0, 'no requests were sent');
  for (const e of ex) {
    assert.equal(e.violations, undefined, `Prism reported: ${e.method} ${e.path} ${e.violations}`);
    assert.ok(e.status < 400, `${e.method} ${e.path} -> ${e.status}`);
  }
}

test('an A record: TTL lowered ahead (content kept), switched to the edge, put back with its old TTL', async () => {
  const from = seen.length;
  const st = await snapshotDns(d, ['old.example.com']);
  assert.deepEqual(st.previous, [{ name: 'old.example.com', type: 'A', content: '198.51.100.7', proxied: false, ttl: 3600 }]);
  await lowerTtlAhead(d, st);
  assert.deepEqual(recs('old.example.com'), ['A 198.51.100.7 ttl=60 proxied=false', 'MX mail.example.com ttl=3600 proxied=false']);
  assert.deepEqual(st.lowered, ['old.example.com A 198.51.100.7 ttl 3600 -> 60']);
  const left = oldTtlLeft(st);
  assert.ok(left > 3500 && left <= 3600, `old TTL left ${left}`);
  // a rerun (a run killed after the lowering) lowers nothing more and keeps the first snapshot
  const writes = fake.mutations().length;
  await lowerTtlAhead(d, st);
  assert.equal(fake.mutations().length, writes, 'no write on a rerun');
  assert.equal(st.previous[0]!.ttl, 3600);

  const sw = await switchToFarm(d, st);
  assert.deepEqual(sw.updated, [`old.example.com 198.51.100.7 -> ${EDGE}`]);
  assert.ok(st.switchedAt);
  assert.deepEqual(recs('old.example.com'), [`A ${EDGE} ttl=1 proxied=true`, 'MX mail.example.com ttl=3600 proxied=false']);

  const back = await switchBack(d, st);
  assert.deepEqual(back.created, ['old.example.com A 198.51.100.7']);
  assert.deepEqual(back.deleted, [`old.example.com A ${EDGE}`]);
  assert.equal(st.switchedAt, undefined);
  assert.deepEqual(recs('old.example.com'), ['A 198.51.100.7 ttl=3600 proxied=false', 'MX mail.example.com ttl=3600 proxied=false']);
  assertAllValid(from);
});

test('a failure before cutover: only the TTL is put back (same record, updated in place)', async () => {
  const from = seen.length;
  const id = fake.records.find((r) => r['name'] === 'old.example.com' && r['type'] === 'A')!['id'];
  const st = await snapshotDns(d, ['old.example.com']);
  await lowerTtlAhead(d, st);
  const back = await switchBack(d, st);
  assert.deepEqual(back.updated, ['old.example.com A 198.51.100.7']);
  assert.deepEqual(back.deleted, []);
  assert.equal(fake.records.find((r) => r['name'] === 'old.example.com' && r['type'] === 'A')!['id'], id);
  assert.deepEqual(recs('old.example.com'), ['A 198.51.100.7 ttl=3600 proxied=false', 'MX mail.example.com ttl=3600 proxied=false']);
  assertAllValid(from);
});

test('a CNAME comes back as a CNAME; a name with no record before has none after the rollback', async () => {
  const from = seen.length;
  const st = await snapshotDns(d, ['shop.example.com', 'fresh.example.com']);
  await lowerTtlAhead(d, st);
  assert.deepEqual(recs('shop.example.com'), ['CNAME legacy-host.example.net ttl=60 proxied=false']);
  await switchToFarm(d, st);
  assert.deepEqual(recs('shop.example.com'), [`A ${EDGE} ttl=1 proxied=true`]);
  assert.deepEqual(recs('fresh.example.com'), [`A ${EDGE} ttl=1 proxied=true`]);
  // --check: says what it would do, sends no write
  const writes = fake.mutations().length;
  const would = await switchBack(d, st, true);
  assert.deepEqual(would.created, ['shop.example.com CNAME legacy-host.example.net']);
  assert.equal(fake.mutations().length, writes);
  await switchBack(d, st);
  assert.deepEqual(recs('shop.example.com'), ['CNAME legacy-host.example.net ttl=600 proxied=false']);
  assert.deepEqual(recs('fresh.example.com'), []);
  assertAllValid(from);
});
