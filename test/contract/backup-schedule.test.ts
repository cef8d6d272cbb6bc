// Backup schedules: the rendered systemd units are checked by systemd's own tools.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BACKUP_TIMERS, renderBackupUnits } from '../../roles/backup/schedule.ts';
import { ensureDebPackages } from '../harness/rgw.ts';

const run = promisify(execFile);

test('every OnCalendar parses and fires when the architecture says (systemd-analyze calendar)', async () => {
  await ensureDebPackages(['systemd']);
  const next = async (expr: string) =>
    (await run('systemd-analyze', ['calendar', '--iterations=5', expr], { env: { ...process.env, TZ: 'UTC', SYSTEMD_COLORS: '0' } }))
      .stdout;
  const want: Record<string, RegExp> = {
    'sites-db': /Normalized form: \*-\*-\* 00\/6:15:00/,
    'cluster-full': /Normalized form: \*-\*-\* 00:30:00/,
    'cluster-incr': /Normalized form: \*-\*-\* 06,12,18:30:00/,
    files: /Normalized form: \*-\*-\* 03:00:00/,
    config: /Normalized form: \*-\*-\* 04:00:00/,
    'restore-test': /Normalized form: Sun \*-\*-\* 05:00:00/,
    replicate: /Normalized form: \*-\*-\* 00\/6:45:00/,
    'dr-drill': /Normalized form: \*-01,04,07,10-01 06:00:00/,
  };
  assert.deepEqual(Object.keys(want).sort(), BACKUP_TIMERS.map((t) => t.name).sort(), 'every timer is checked');
  for (const t of BACKUP_TIMERS) {
    const out = await next(t.onCalendar);
    assert.match(out, want[t.name] as RegExp, `${t.name}: ${out}`);
    const times = [...out.matchAll(/(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) UTC/g)].map(
      (m) => `${m[1]} ${m[2]}`,
    );
    assert.equal(times.length, 5, out);
    if (t.name === 'sites-db')
      assert.ok(
        times.every((x) => /(00|06|12|18):15:00$/.test(x)),
        out,
      );
    if (t.name === 'cluster-incr')
      assert.ok(
        times.every((x) => /(06|12|18):30:00$/.test(x)),
        out,
      );
    if (t.name === 'dr-drill') {
      // quarterly: the first day of January, April, July and October, nothing in between
      for (const x of times) assert.match(x, /^\d{4}-(01|04|07|10)-01 06:00:00$/, out);
    }
    if (t.name === 'replicate')
      assert.ok(
        times.every((x) => /(00|06|12|18):45:00$/.test(x)),
        out,
      );
    if (t.name === 'restore-test') {
      for (const x of times) assert.equal(new Date(`${x.slice(0, 10)}T00:00:00Z`).getUTCDay(), 0, x);
    }
  }
});

test('rendered units pass systemd-analyze verify', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wpfarm-units-'));
  try {
    const units = renderBackupUnits({ repoDir: '/opt/wpfarm', node: process.execPath, inventory: 'inventory/production.yml' });
    assert.equal(units.length, BACKUP_TIMERS.length * 2);
    for (const u of units) await writeFile(join(dir, u.name), u.content);
    const svc = units.find((u) => u.name === 'wpfarm-backup-cluster-incr.service')?.content ?? '';
    assert.match(
      svc,
      /^ExecStart=\/usr\/bin\/flock \/run\/wpfarm-backup-db\.lock \S+ --import tsx playbooks\/backup\.ts --what cluster-incr --inventory inventory\/production\.yml$/m,
    );
    assert.match(units.find((u) => u.name === 'wpfarm-backup-cluster-full.service')?.content ?? '', /wpfarm-backup-db\.lock/);
    // the drill runs its own playbook; the replication is a backup.ts job
    assert.match(
      units.find((u) => u.name === 'wpfarm-backup-dr-drill.service')?.content ?? '',
      /^ExecStart=\/usr\/bin\/flock \/run\/wpfarm-backup-files\.lock \S+ --import tsx playbooks\/dr-drill\.ts --inventory \S+\.yml$/m,
    );
    assert.match(units.find((u) => u.name === 'wpfarm-backup-replicate.service')?.content ?? '', /--what replicate --prune/);
    const r = await run('systemd-analyze', ['verify', '--man=no', ...units.map((u) => join(dir, u.name))], {
      env: { ...process.env, SYSTEMD_COLORS: '0' },
    }).then(
      (x) => ({ code: 0, out: x.stdout + x.stderr }),
      (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
    );
    // verify parses every unit (unknown keys, bad calendar specs, missing binaries are reported)
    assert.equal(r.code, 0, r.out);
    assert.equal(r.out.trim(), '');
    // and it does catch a broken unit (so the check above is not vacuous)
    await writeFile(join(dir, 'broken.timer'), '[Timer]\nOnCalendar=*-*-* 25:00:00\n');
    const b = await run('systemd-analyze', ['verify', '--man=no', join(dir, 'broken.timer')]).then(
      () => 0,
      (e: { code?: number }) => e.code ?? 1,
    );
    assert.notEqual(b, 0);
    assert.throws(() => renderBackupUnits({ repoDir: 'relative', node: process.execPath }), /absolute/);
    // an argument a shell would quote as $'...' is quoted for systemd instead ($ and % doubled), and verifies
    const odd = renderBackupUnits({ repoDir: '/opt/wpfarm', node: process.execPath, inventory: '/srv/inv dir/a,b $HOME 5%.yml' });
    const oddSvc = odd.find((u) => u.name === 'wpfarm-backup-files.service')!;
    assert.match(oddSvc.content, / --inventory "\/srv\/inv dir\/a,b \$\$HOME 5%%\.yml"$/m);
    await writeFile(join(dir, oddSvc.name), oddSvc.content);
    const v = await run('systemd-analyze', ['verify', '--man=no', join(dir, oddSvc.name)]).then(
      (x) => x.stdout + x.stderr,
      (e: { stdout?: string; stderr?: string }) => `FAILED ${e.stdout ?? ''}${e.stderr ?? ''}`,
    );
    assert.equal(v.trim(), '');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('backup.ts --install-timers: writes the units once (a rerun changes nothing), --check predicts, stale units removed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'wpfarm-units-install-'));
  const play = async (...args: string[]) => {
    const r = await run(
      process.execPath,
      [
        '--no-warnings',
        '--import',
        'tsx',
        'playbooks/backup.ts',
        '--install-timers',
        '--unit-dir',
        dir,
        '-i',
        'inventory/lab.yml',
        ...args,
      ],
      { env: { PATH: process.env.PATH, HOME: process.env.HOME } },
    );
    return JSON.parse(r.stdout) as { changed: boolean; changes: string[]; systemd: boolean; timers: string[]; leftOut: string[] };
  };
  // inventory/lab.yml names no second region: its jobs (replicate, dr-drill) are not scheduled
  const scheduled = BACKUP_TIMERS.filter((t) => !t.replica);
  assert.deepEqual(
    BACKUP_TIMERS.filter((t) => t.replica).map((t) => t.name),
    ['replicate', 'dr-drill'],
  );
  try {
    const check = await play('--check');
    assert.equal(check.changed, true);
    assert.equal(check.changes.length, scheduled.length * 2);
    assert.deepEqual(check.leftOut, ['wpfarm-backup-replicate.timer', 'wpfarm-backup-dr-drill.timer']);
    // with a second region, its jobs too
    const withReplica = await play('--check', '-e', 'backup_replica_endpoint=https://ams3.digitaloceanspaces.com');
    assert.equal(withReplica.changes.length, BACKUP_TIMERS.length * 2);
    assert.deepEqual(withReplica.leftOut, []);
    assert.deepEqual(await readdir(dir), [], 'check mode wrote nothing');
    const first = await play();
    assert.deepEqual(first.changes, check.changes, 'check mode predicted the run');
    assert.equal(first.systemd, false, 'a unit dir other than /etc/systemd/system never touches systemd');
    const files = (await readdir(dir)).sort();
    assert.equal(files.length, scheduled.length * 2);
    const svc = await readFile(join(dir, 'wpfarm-backup-files.service'), 'utf8');
    assert.match(svc, new RegExp(`^WorkingDirectory=${process.cwd()}$`, 'm'));
    assert.match(svc, /--what files --prune --inventory \/\S+\/inventory\/lab\.yml$/m);
    const again = await play();
    assert.equal(again.changed, false);
    assert.deepEqual(again.changes, []);
    // a unit no longer rendered (a removed job) goes; a hand-edited one is put back
    await writeFile(join(dir, 'wpfarm-backup-retired.timer'), '[Timer]\nOnCalendar=daily\n');
    await writeFile(join(dir, 'wpfarm-backup-config.timer'), '[Timer]\nOnCalendar=hourly\n');
    await writeFile(join(dir, 'unrelated.timer'), '[Timer]\nOnCalendar=daily\n');
    const fix = await play();
    assert.deepEqual(fix.changes.map((c) => c.replace(`${dir}/`, '')).sort(), [
      'remove wpfarm-backup-retired.timer',
      'update wpfarm-backup-config.timer',
    ]);
    assert.ok((await readdir(dir)).includes('unrelated.timer'), 'other units are never touched');
    assert.equal((await play()).changed, false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
