// Retention with simulated dates: the pure policy engine against hand-derived expectations, and
// against restic's own `forget` (a real restic repository, snapshots with --time).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  prune,
  isoWeek,
  DB_POLICY,
  FILES_POLICY,
  resticForgetArgs,
  type BackupRef,
  type RetentionPolicy,
} from '../../roles/backup/retention.ts';
import { formatStamp, parseRestoreDate, parseStamp, pickAtOrBefore } from '../../roles/backup/catalog.ts';
import { resticBackupCommand, resticForgetCommand, resticInitCommand, resticSnapshotsCommand } from '../../roles/backup/commands.ts';
import { LocalShell, runHostCommand } from '../../roles/backup/runner.ts';
import { ensureDebPackages } from '../harness/rgw.ts';

const H = 3_600_000;
const D = 24 * H;
const refs = (times: number[]): BackupRef[] =>
  times.map((t) => ({ key: `db/site1/${formatStamp(new Date(t))}.sql.gz.age`, time: new Date(t) }));
const stamps = (l: BackupRef[]) => l.map((b) => formatStamp(b.time)).sort();

test('db policy: 6-hourly dumps over 82 days (330), now 2026-11-22T12:00Z → exactly the 120 of the last 30 days are kept', () => {
  const times: number[] = [];
  for (let t = Date.UTC(2026, 8, 1); t <= Date.UTC(2026, 10, 22, 6); t += 6 * H) times.push(t);
  assert.equal(times.length, 330);
  const r = prune(refs(times), DB_POLICY, new Date('2026-11-22T12:00:00Z'));
  assert.equal(r.keep.length, 120);
  assert.equal(r.delete.length, 210);
  assert.equal(formatStamp(r.keep[r.keep.length - 1]!.time), '2026-10-23T120000Z'); // exactly 30 days old: kept
  assert.equal(formatStamp(r.delete[0]!.time), '2026-10-23T060000Z');
  assert.equal(formatStamp(r.delete[r.delete.length - 1]!.time), '2026-09-01T000000Z');
  assert.deepEqual(r.reasons.get(r.keep[0]!.key), ['within 30 days']);
});

test('db policy boundary: 30 days old is kept, 30 days + 1 s is deleted', () => {
  const now = Date.UTC(2026, 10, 22, 12);
  const r = prune(refs([now - 30 * D, now - 30 * D - 1000, now - H]), DB_POLICY, new Date(now));
  assert.deepEqual(stamps(r.keep), ['2026-10-23T120000Z', '2026-11-22T110000Z']);
  assert.deepEqual(stamps(r.delete), ['2026-10-23T115959Z']);
});

test('db policy safety: when every backup is older than 30 days (stalled job) the newest is still kept', () => {
  const now = Date.UTC(2026, 10, 22);
  const r = prune(refs([now - 40 * D, now - 45 * D, now - 50 * D]), DB_POLICY, new Date(now));
  assert.deepEqual(stamps(r.keep), ['2026-10-13T000000Z']);
  assert.deepEqual(r.reasons.get(r.keep[0]!.key), ['newest backup (always kept)']);
  assert.equal(r.delete.length, 2);
  // a backup dated in the future (clock skew) is kept, and counts as the newest
  const f = prune(refs([now + 2 * H, now - 40 * D]), DB_POLICY, new Date(now));
  assert.deepEqual(stamps(f.keep), ['2026-11-22T020000Z']);
  assert.deepEqual(stamps(f.delete), ['2026-10-13T000000Z']);
});

test('db policy with mariabackup chains: a kept incremental keeps its whole chain back to the full', () => {
  // fulls daily at 00:00, incrementals at 06/12/18 each based on the previous backup
  const list: BackupRef[] = [];
  let prev: string | undefined;
  for (let day = Date.UTC(2026, 9, 20); day <= Date.UTC(2026, 10, 22); day += D) {
    for (const h of [0, 6, 12, 18]) {
      const t = new Date(day + h * H);
      const key = `db/cluster/${h === 0 ? 'full' : 'incr'}/${formatStamp(t)}.xbstream.gz.age`;
      list.push({ key, time: t, base: h === 0 ? undefined : prev });
      prev = key;
    }
  }
  const now = new Date('2026-11-22T21:00:00Z'); // cutoff 2026-10-23T21:00Z
  const r = prune(list, DB_POLICY, now);
  // 2026-10-23 18:00 is older than the cutoff, but nothing kept is based on it except... nothing:
  // the first kept by age is 2026-10-24 00:00 (a full): so the 23rd goes entirely.
  assert.equal(formatStamp(r.keep[r.keep.length - 1]!.time), '2026-10-24T000000Z');
  assert.ok(r.delete.every((b) => b.time.getTime() < Date.UTC(2026, 9, 24)));
  // now with the cutoff in the middle of a day: 2026-10-24T13:00Z → the 18:00 incremental is kept by
  // age and pulls in 12:00, 06:00 and the 00:00 full of that day
  const r2 = prune(list, DB_POLICY, new Date('2026-11-23T13:00:00Z'));
  const kept24 = r2.keep
    .filter((b) => formatStamp(b.time).startsWith('2026-10-24'))
    .map((b) => formatStamp(b.time))
    .sort();
  assert.deepEqual(kept24, ['2026-10-24T000000Z', '2026-10-24T060000Z', '2026-10-24T120000Z', '2026-10-24T180000Z']);
  assert.match(
    r2.reasons.get('db/cluster/full/2026-10-24T000000Z.xbstream.gz.age')!.join(),
    /base of db\/cluster\/incr\/2026-10-24T060000Z/,
  );
  assert.ok(r2.delete.every((b) => b.time.getTime() < Date.UTC(2026, 9, 24)));
});

test('files policy 7 daily / 4 weekly / 3 monthly on daily snapshots Jul 1 – Nov 26 2026: the 11 expected', () => {
  const times: number[] = [];
  for (let t = Date.UTC(2026, 6, 1, 2); t <= Date.UTC(2026, 10, 26, 2); t += D) times.push(t);
  const r = prune(refs(times), FILES_POLICY, new Date('2026-11-26T12:00:00Z'));
  // daily: Nov 20..26; weekly (ISO weeks, newest in each): Nov 26 (W48), Nov 22 (Sun, W47), Nov 15 (W46),
  // Nov 8 (W45); monthly (newest in each): Nov 26, Oct 31, Sep 30.
  assert.deepEqual(stamps(r.keep), [
    '2026-09-30T020000Z',
    '2026-10-31T020000Z',
    '2026-11-08T020000Z',
    '2026-11-15T020000Z',
    '2026-11-20T020000Z',
    '2026-11-21T020000Z',
    '2026-11-22T020000Z',
    '2026-11-23T020000Z',
    '2026-11-24T020000Z',
    '2026-11-25T020000Z',
    '2026-11-26T020000Z',
  ]);
  assert.equal(r.delete.length, times.length - 11);
  assert.deepEqual(r.reasons.get(r.keep.find((b) => formatStamp(b.time) === '2026-11-26T020000Z')!.key), [
    'daily snapshot',
    'weekly snapshot',
    'monthly snapshot',
  ]);
});

test('iso weeks and restore-date parsing', () => {
  assert.deepEqual(isoWeek(new Date('2026-11-26T00:00:00Z')), { year: 2026, week: 48 });
  assert.deepEqual(isoWeek(new Date('2027-01-01T00:00:00Z')), { year: 2026, week: 53 }); // Friday of 2026's week 53
  assert.deepEqual(isoWeek(new Date('2024-12-30T00:00:00Z')), { year: 2025, week: 1 });
  assert.equal(parseRestoreDate('2026-11-20').toISOString(), '2026-11-20T23:59:59.999Z');
  assert.equal(parseRestoreDate('2026-11-20T030000Z').toISOString(), '2026-11-20T03:00:00.000Z');
  assert.equal(parseRestoreDate('2026-11-20T05:00+02:00').toISOString(), '2026-11-20T03:00:00.000Z');
  assert.throws(() => parseRestoreDate('2026-02-30'), /invalid --date/);
  assert.throws(() => parseRestoreDate('yesterday'), /invalid --date/);
  assert.throws(() => parseRestoreDate('2026-11-20T05:00'), /invalid --date/); // no zone: ambiguous
  assert.equal(parseStamp('2026-11-20T030000Z')?.toISOString(), '2026-11-20T03:00:00.000Z');
  const e = [
    { time: new Date('2026-11-20T03:00:00Z'), complete: true },
    { time: new Date('2026-11-21T03:00:00Z'), complete: false },
  ];
  assert.equal(pickAtOrBefore(e, new Date('2026-11-22T00:00:00Z')), e[0]); // incomplete one skipped
  assert.equal(pickAtOrBefore(e, new Date('2026-11-20T02:59:59Z')), undefined);
  assert.throws(() => prune([], { daily: 0 }, new Date()), /keeps nothing/);
  assert.deepEqual(resticForgetArgs(FILES_POLICY), ['--keep-daily', '7', '--keep-weekly', '4', '--keep-monthly', '3']);
});

test('the same policies give the same answer as restic forget (real repository, simulated snapshot times)', async () => {
  await ensureDebPackages(['restic']);
  const dir = await mkdtemp(join(tmpdir(), 'wpfarm-restic-policy-'));
  try {
    const shell = new LocalShell('controller');
    const repo = { url: join(dir, 'repo') };
    const secrets = { RESTIC_PASSWORD: 'policy-test-pass', AWS_ACCESS_KEY_ID: 'unused', AWS_SECRET_ACCESS_KEY: 'unused' };
    await writeFile(join(dir, 'f.txt'), 'x');
    const init = await runHostCommand(shell, resticInitCommand(repo), secrets);
    assert.equal(init.code, 0, init.stderr);
    // irregular times: several a day, gaps of days and weeks, month and year boundaries
    const times: number[] = [];
    let t = Date.UTC(2025, 10, 3, 9, 17);
    let step = 0;
    while (times.length < 24) {
      times.push(t);
      step = (step * 7 + 5) % 11;
      t += [3 * H, 20 * H, D, 2 * D + 5 * H, 9 * D, 26 * H, 5 * H, 4 * D, 13 * D, D + H, 45 * D][step]!;
    }
    const started = Date.now();
    for (const tm of times) {
      const r = await runHostCommand(
        shell,
        resticBackupCommand(repo, { paths: [join(dir, 'f.txt')], host: 'web1', tags: ['site-site1'], time: new Date(tm) }),
        secrets,
      );
      assert.equal(r.code, 0, r.stderr);
    }
    const snapsOut = await runHostCommand(shell, resticSnapshotsCommand(repo), secrets);
    const snaps = (JSON.parse(snapsOut.stdout) as Array<{ id: string; time: string }>).map((s) => ({ key: s.id, time: new Date(s.time) }));
    assert.deepEqual(
      snaps.map((s) => s.time.getTime()).sort((a, b) => a - b),
      [...times].sort((a, b) => a - b),
    );
    const policies: RetentionPolicy[] = [FILES_POLICY, { daily: 3, weekly: 2, monthly: 6, yearly: 2 }, { last: 4, hourly: 5, monthly: 1 }];
    for (const p of policies) {
      const f = await runHostCommand(shell, resticForgetCommand(repo, { policyArgs: resticForgetArgs(p), dryRun: true }), secrets);
      assert.equal(f.code, 0, f.stderr);
      const groups = JSON.parse(f.stdout.split('\n').find((l) => l.startsWith('['))!) as Array<{ keep: Array<{ id: string }> }>;
      const resticKeep = groups.flatMap((g) => g.keep.map((s) => s.id)).sort();
      const ours = prune(snaps, p, new Date(Math.max(...times)))
        .keep.map((s) => s.key)
        .sort();
      assert.deepEqual(ours, resticKeep, `policy ${JSON.stringify(p)}`);
      assert.ok(ours.length < snaps.length);
    }
    console.log(`# restic policy comparison: ${times.length} snapshots, ${policies.length} policies, ${Date.now() - started} ms`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
