// The pure parts of the cross-region copies and the DR drill: which keys are replicated, restic's content addresses,
// the replica's settings (bad input names the inventory and the variable), the lag metric's text, the drill's sample
// and its markdown. The stores themselves are tested against two real gateways (test/contract/backup-replica.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { contentAddress, replicaStoreConfig, replicated, replicationMetrics, resticRepoOf } from '../../roles/backup/replica.ts';
import { drillMarkdown, sampleSites, type DrillReport } from '../../roles/backup/drill.ts';
import { InputError } from '../../lib/errors.ts';
import type { StoreConfig } from '../../roles/backup/s3.ts';

const H = 'a'.repeat(64);

test('replicated keys: everything but the ledger and restic locks; restic content addresses', () => {
  assert.equal(replicated('db/shop1/2026-11-20T030000Z.sql.gz.age'), true);
  assert.equal(replicated('files/shop1/data/aa/' + H), true);
  assert.equal(replicated('files/shop1/config'), true);
  assert.equal(replicated('files/shop1/locks/' + H), false);
  assert.equal(replicated('replication/ledger.json'), false);
  assert.equal(contentAddress(`files/shop1/data/aa/${H}`), H);
  assert.equal(contentAddress(`files/shop1/index/${H}`), H);
  assert.equal(contentAddress(`files/shop1/snapshots/${H}`), H);
  assert.equal(contentAddress(`files/shop1/keys/${H}`), H);
  assert.equal(contentAddress('files/shop1/config'), undefined);
  assert.equal(contentAddress(`db/shop1/${H}`), undefined);
  assert.equal(resticRepoOf(`files/shop1/data/aa/${H}`), 'files/shop1');
  assert.equal(resticRepoOf('db/shop1/x'), undefined);
});

const primary: StoreConfig = {
  endpoint: 'https://fra1.digitaloceanspaces.com',
  region: 'us-east-1',
  bucket: 'farm',
  accessKeyId: 'x',
  secretAccessKey: 'y',
};
// an .env with the replica's keys (not read from disk)
const src = {
  file: '/nonexistent/.env',
  exists: true,
  values: new Map([
    ['WPFARM_S3_REPLICA_ACCESS_KEY', 'AKIAREPLICA0001'],
    ['WPFARM_S3_REPLICA_SECRET_KEY', 'replica-secret-key-0001'],
  ]),
};

test('replica settings: from the inventory and .env; missing, malformed or the primary itself refused (InputError)', () => {
  const ok = replicaStoreConfig(
    { backup_replica_endpoint: 'https://ams3.digitaloceanspaces.com', backup_replica_bucket: 'farm-dr' },
    primary,
    'inv.yml',
    src,
  );
  assert.equal(ok.endpoint, 'https://ams3.digitaloceanspaces.com');
  assert.equal(ok.bucket, 'farm-dr');
  assert.equal(ok.accessKeyId, 'AKIAREPLICA0001');
  assert.throws(
    () => replicaStoreConfig({ backup_replica_endpoint: 'https://ams3.digitaloceanspaces.com' }, primary, 'inv.yml', src),
    (e: Error) => e instanceof InputError && /inv\.yml: no replica store: set backup_replica_bucket/.test(e.message),
  );
  assert.throws(
    () => replicaStoreConfig({ backup_replica_endpoint: 'ams3', backup_replica_bucket: 'b' }, primary, 'inv.yml', src),
    /backup_replica_endpoint "ams3" is not a URL/,
  );
  assert.throws(
    () => replicaStoreConfig({ backup_replica_endpoint: `${primary.endpoint}/`, backup_replica_bucket: 'farm' }, primary, 'inv.yml', src),
    /name the primary bucket itself/,
  );
});

test('lag metric: last success only once there was one; ok and problems; labels escaped', () => {
  const at = new Date('2026-12-06T06:45:00Z');
  const t = replicationMetrics({
    replica: 'https://ams3/x"y',
    lastSuccess: at,
    lastRun: at,
    problems: 0,
    sourceObjects: 5,
    replicaObjects: 6,
  });
  assert.match(t, /^wpfarm_backup_replication_last_success_timestamp_seconds\{replica="https:\/\/ams3\/x\\"y"\} 1796539500$/m);
  assert.match(t, /^wpfarm_backup_replication_ok\{replica="[^}]+\} 1$/m);
  assert.match(t, /^wpfarm_backup_replication_objects\{replica="[^}]+",store="replica"\} 6$/m);
  const never = replicationMetrics({ replica: 'r', lastRun: at, problems: 2, sourceObjects: 5, replicaObjects: 0 });
  assert.doesNotMatch(never, /last_success/);
  assert.match(never, /^wpfarm_backup_replication_ok\{replica="r"\} 0$/m);
  assert.match(never, /^wpfarm_backup_replication_problems\{replica="r"\} 2$/m);
});

test('drill sample: n distinct sites in the farm order, all of them when n is larger', () => {
  const ids = ['a', 'b', 'c', 'd', 'e'];
  let i = 0;
  const seq = [4, 0, 1]; // picks e, then a, then c (from [a b c d], index 1 of the remaining [b c d])
  assert.deepEqual(
    sampleSites(ids, 3, () => seq[i++] as number),
    ['a', 'c', 'e'],
  );
  assert.deepEqual(sampleSites(ids, 9), ids);
  for (let k = 0; k < 20; k++) {
    const s = sampleSites(ids, 2);
    assert.equal(new Set(s).size, 2);
    assert.ok(s.every((x) => ids.includes(x)));
  }
});

test('drill markdown: a row per site with its RTO, the problems listed, FAILED when one failed', () => {
  const r: DrillReport = {
    version: 1,
    startedAt: '2027-01-01T06:00:00.000Z',
    endedAt: '2027-01-01T06:01:00.000Z',
    replica: 'https://ams3/farm-dr',
    sitesTotal: 10,
    sampled: ['shop1', 'blog2'],
    ok: false,
    maxRtoMs: 12_345,
    sites: [
      {
        site: 'shop1',
        ok: true,
        problems: [],
        rtoMs: 12_345,
        wallMs: 15_000,
        db: {
          key: 'k',
          backupTime: '2027-01-01T00:15:00.000Z',
          sha256: H,
          tables: 6,
          rows: 4242,
          restoreMs: 4_000,
          verifyMs: 500,
          identicalToLive: true,
          rowCountsMatchLive: true,
        },
        files: {
          snapshot: 'abcd1234',
          backupTime: '2027-01-01T03:00:00.000Z',
          files: 22,
          restoreMs: 8_345,
          verifyMs: 300,
          identicalToLive: false,
        },
        dbBackupAgeS: 20_700,
        filesBackupAgeS: 10_800,
      },
      { site: 'blog2', ok: false, problems: ['db: verify: sha256 differs'], rtoMs: 0, wallMs: 100 },
    ],
  };
  const md = drillMarkdown(r);
  assert.match(md, /^# DR drill 2027-01-01: FAILED$/m);
  assert.match(
    md,
    new RegExp(
      String.raw`^\| shop1 \| ok \| 12\.3 s \| 4\.0 s \| 8\.3 s \| 0\.8 s \| — \| — \| — \| — \| 6 \| 4242 \| 22 \| ` +
        String.raw`checksums yes, rows yes, files no \| 5\.8 h \| 3\.0 h \|$`,
      'm',
    ),
  );
  // a failed site has not recovered: no RTO
  assert.match(md, /^\| blog2 \| FAILED \| — \|/m);
  assert.match(md, /^- blog2: db: verify: sha256 differs$/m);
  assert.match(md, /2 of 10 site\(s\) sampled/);
});

test('drill markdown with scratch stacks: RTO until the site answered, the stack times, the HTTP checks', () => {
  const stack = {
    stack: 'wp-shop1-drdrill',
    readyMs: 21_000,
    answerMs: 23_500,
    answeredAt: 0,
    ok: true,
    home: { path: '/', code: 200, title: 'Shop', found: true },
    post: { path: '/hello-world/', code: 200, title: 'Hello', found: true },
    problems: [],
    leftovers: [],
  };
  const r: DrillReport = {
    version: 1,
    startedAt: '2027-04-01T06:00:00.000Z',
    endedAt: '2027-04-01T06:02:00.000Z',
    replica: 'https://ams3/farm-dr',
    sitesTotal: 3,
    sampled: ['shop1', 'blog2'],
    ok: false,
    maxRtoMs: 41_000,
    sites: [
      { site: 'shop1', ok: true, problems: [], rtoMs: 41_000, rtoUntil: 'site answering', wallMs: 60_000, stack },
      {
        site: 'blog2',
        ok: false,
        problems: ['stack: GET /: 500, no "Blog"'],
        rtoMs: 0,
        rtoUntil: 'site answering',
        wallMs: 90_000,
        stack: { ...stack, stack: 'wp-blog2-drdrill', ok: false, answerMs: 0, home: { path: '/', code: 500, title: 'Blog', found: false } },
      },
    ],
  };
  const md = drillMarkdown(r);
  assert.match(md, /served by scratch stacks on the farm/);
  assert.match(
    md,
    new RegExp(
      String.raw`^\| shop1 \| ok \| 41\.0 s \| — \| — \| 0\.0 s \| 21\.0 s \| 23\.5 s \| ` +
        String.raw`200, title found \(/\) \| 200, title found \(/hello-world/\) \|`,
      'm',
    ),
  );
  assert.match(md, /^\| blog2 \| FAILED \| — \| .* \| 500, title MISSING \(\/\) \|/m);
  assert.match(md, /^- blog2: stack: GET \/: 500, no "Blog"$/m);
  assert.match(md, /RTO: from the start of the restore to the scratch site answering/);
});

test("a playbook's own result through the run's event stream: RunRecord keeps the last 'data' event of each name", async () => {
  const { EventStream, RunRecord } = await import('../../lib/events.ts');
  const events = new EventStream();
  const rec = new RunRecord();
  const seen: string[] = [];
  events.on(rec.listener);
  events.on((e) => seen.push(e.kind));
  events.emit({ kind: 'data', name: 'drDrill', data: { ok: false } });
  events.emit({ kind: 'data', name: 'drDrill', data: { ok: true, sites: [{ site: 'shop1', rtoMs: 1234 }] } });
  assert.deepEqual(rec.data, { drDrill: { ok: true, sites: [{ site: 'shop1', rtoMs: 1234 }] } });
  assert.deepEqual(seen, ['data', 'data']);
});
