// The host command builders run for real (bash, restic, age, gzip) with hostile names: quoting holds,
// nothing is injected, secrets go through stdin only, and bad input is refused before anything runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, mkdir, writeFile, readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkDbName,
  encryptPipe,
  fileHashesCommand,
  mariadbDumpCommand,
  resticBackupCommand,
  resticInitCommand,
  resticRestoreDirCommand,
  resticSnapshotsCommand,
  secretPrologue,
  secretStdin,
  AGE_IDENTITY_ENV,
  decryptPipe,
} from '../../roles/backup/commands.ts';
import { LocalShell, runHostCommand } from '../../roles/backup/runner.ts';
import { ageKeygen } from '../../roles/backup/keys.ts';
import { checkSite, siteDbKey } from '../../roles/backup/catalog.ts';
import { ensureDebPackages } from '../harness/rgw.ts';
import { quote } from 'zx';

const shell = new LocalShell('controller');

test('restic restore of a directory whose path has spaces, quotes and $(...) — restored in place, nothing injected', async () => {
  await ensureDebPackages(['restic', 'age']);
  const root = await mkdtemp(join(tmpdir(), 'wpfarm-cmds-'));
  try {
    const pwned = join(root, 'pwned');
    const dir = join(root, `site's dir $(touch ${pwned})`, 'wp content');
    await mkdir(join(dir, 'uploads'), { recursive: true });
    await writeFile(join(dir, 'uploads', 'a "b".txt'), 'one');
    await writeFile(join(dir, 'x.php'), '<?php');
    const repo = { url: join(root, 'repo') };
    const secrets = { RESTIC_PASSWORD: `pa'ss $(touch ${pwned}) word`, AWS_ACCESS_KEY_ID: 'unused', AWS_SECRET_ACCESS_KEY: 'unused' };
    for (const c of [
      resticInitCommand(repo),
      resticInitCommand(repo),
      resticBackupCommand(repo, { paths: [dir], host: 'web1', tags: ['site-a'] }),
    ]) {
      const r = await runHostCommand(shell, c, secrets);
      assert.equal(r.code, 0, r.stderr);
    }
    const before = (await runHostCommand(shell, { script: fileHashesCommand(dir), secrets: [] }, {})).stdout;
    assert.equal(before.trim().split('\n').length, 2);
    await rm(join(dir, 'uploads'), { recursive: true });
    await writeFile(join(dir, 'x.php'), 'defaced');
    const snaps = JSON.parse((await runHostCommand(shell, resticSnapshotsCommand(repo), secrets)).stdout) as Array<{ id: string }>;
    const r = await runHostCommand(shell, resticRestoreDirCommand(repo, { snapshot: snaps[0]!.id, path: dir }), secrets);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await runHostCommand(shell, { script: fileHashesCommand(dir), secrets: [] }, {})).stdout, before);
    assert.equal(existsSync(pwned), false, 'nothing was injected');
    // no staging or old directory left next to the live one
    const parent = (await runHostCommand(shell, { script: `ls -A ${quote(join(dir, '..'))}`, secrets: [] }, {})).stdout.trim();
    assert.equal(parent, 'wp content');
    // a snapshot that does not contain the path fails and leaves the live dir alone
    const other = join(root, 'other');
    await mkdir(other);
    await writeFile(join(other, 'keep.txt'), 'keep');
    const bad = await runHostCommand(shell, resticRestoreDirCommand(repo, { snapshot: snaps[0]!.id, path: other }), secrets);
    assert.notEqual(bad.code, 0);
    assert.equal(await readFile(join(other, 'keep.txt'), 'utf8'), 'keep');
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

test('age round trip through the builders; a missing secret line fails with a clear message (exit 97)', async () => {
  const k = await ageKeygen();
  const enc = await runHostCommand(
    shell,
    { script: `set -o pipefail; printf 'hello wpfarm' | ${encryptPipe(k.recipient)} | base64 -w0`, secrets: [] },
    {},
  );
  assert.equal(enc.code, 0, enc.stderr);
  const dec = await runHostCommand(
    shell,
    { script: `${secretPrologue([AGE_IDENTITY_ENV])}\nbase64 -d | ${decryptPipe()}`, secrets: [AGE_IDENTITY_ENV] },
    { [AGE_IDENTITY_ENV]: k.identity },
    Buffer.from(enc.stdout),
  );
  assert.equal(dec.code, 0, dec.stderr);
  assert.equal(dec.stdout, 'hello wpfarm');
  const missing = await runHostCommand(
    shell,
    { script: secretPrologue(['A_SECRET', 'B_SECRET']), secrets: [] },
    {},
    Buffer.from('only-one\n'),
  );
  assert.equal(missing.code, 97);
  assert.match(missing.stderr, /missing secret B_SECRET on stdin/);
});

test('bad input is refused before any command is built', () => {
  assert.throws(() => checkDbName('wp_x; DROP DATABASE y'), /invalid database name/);
  assert.throws(() => mariadbDumpCommand('wp`x`', { conn: {}, recipient: 'age1' + 'q'.repeat(58) }), /invalid database name/);
  assert.throws(() => encryptPipe('age1$(reboot)'), /invalid age recipient/);
  assert.throws(() => secretStdin(['two\nlines']), /newline/);
  assert.throws(() => secretPrologue(['lower']), /invalid secret variable name/);
  assert.throws(() => resticRestoreDirCommand({ url: '/r' }, { snapshot: 'abcdef12', path: 'relative/dir' }), /absolute/);
  assert.throws(() => resticRestoreDirCommand({ url: '/r' }, { snapshot: 'abcdef12', path: '/' }), /refusing/);
  assert.throws(() => resticRestoreDirCommand({ url: '/r' }, { snapshot: 'latest; rm -rf /', path: '/srv/x' }), /invalid snapshot id/);
  assert.throws(() => checkSite('../etc'), /invalid site name/);
  assert.throws(() => checkSite('cluster'), /invalid site name/);
  assert.equal(siteDbKey('shop-1', new Date('2026-11-20T03:04:05.678Z')), 'db/shop-1/2026-11-20T030405Z.sql.gz.age');
  // the dump command carries no secret: the password is read from stdin
  const c = mariadbDumpCommand('wp_shop1', {
    conn: { host: '10.0.0.5', port: 3306, user: 'backup', password: true },
    recipient: 'age1' + 'q'.repeat(58),
  });
  assert.deepEqual(c.secrets, ['MYSQL_PWD']);
  assert.match(c.script, /^IFS= read -r MYSQL_PWD \|\|/m);
  assert.match(
    c.script,
    /mariadb-dump --host=10\.0\.0\.5 --protocol=tcp --port=3306 --user=backup --single-transaction .* wp_shop1 \| gzip -c \| age --encrypt --recipient age1q+$/m,
  );
});
