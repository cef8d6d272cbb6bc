// The plugin store and the package switch (roles/update/plugins.ts), plugins and themes alike: specs, the store
// index, versions, the probe, and the switch script as text and run by sh against a directory laid out as a
// site's Gluster directory; the record's activation (steps.ts activationOf) and the PHP that applies it (php -l).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InputError } from '../../lib/errors.ts';
import {
  checkInStore,
  checkZipEntries,
  compareVersions,
  parsePluginProbe,
  parsePluginSpec,
  pluginChanges,
  pluginProbeScript,
  packageSet,
  pluginSet,
  PREVIOUS,
  removePluginScript,
  storeIndex,
  storeZip,
  switchPluginScript,
} from '../../roles/update/plugins.ts';
import { activationOf } from '../../roles/update/steps.ts';

test('plugin specs: SLUG@VERSION; bad ones are bad input naming the flag', () => {
  assert.deepEqual(parsePluginSpec('akismet@5.3.1'), { slug: 'akismet', version: '5.3.1' });
  for (const bad of ['akismet', 'ak ismet@1', 'Akismet@1', '../x@1', 'a@1;rm', 'a@', '@1', 'a@1@2'])
    assert.throws(
      () => parsePluginSpec(bad),
      (e) => e instanceof InputError && e.exitCode === 4 && /--plugin/.test(e.message),
      bad,
    );
  assert.deepEqual(pluginSet(['a@1', 'b@2.0', 'a@1']), { a: '1', b: '2.0' });
  assert.throws(() => pluginSet(['a@1', 'a@2']), /a is given twice \(1, 2\)/);
  // both kinds: the same slug may be a plugin and a theme; a bad theme spec names --theme
  assert.deepEqual(packageSet({ plugins: ['hello@1'], themes: ['hello@2', 'lab@1.0'] }), {
    plugins: { hello: '1' },
    themes: { hello: '2', lab: '1.0' },
  });
  assert.deepEqual(packageSet({}), { plugins: {}, themes: {} });
  assert.throws(
    () => packageSet({ themes: ['Lab@1'] }),
    (e) => e instanceof InputError && /^--theme "Lab@1"/.test(e.message),
  );
});

test('versions compare as a person reads them', () => {
  assert.ok(compareVersions('5.10', '5.9') > 0);
  assert.ok(compareVersions('5.3', '5.3.1') < 0);
  assert.equal(compareVersions('1.0', '1.0'), 0);
  assert.deepEqual(['2.0', '10.1', '1.9.9', '1.10'].sort(compareVersions), ['1.9.9', '1.10', '2.0', '10.1']);
});

test('store index from its files; a set not in the store is bad input listing what is missing and what is there', () => {
  const idx = storeIndex(['akismet/akismet-5.3.zip', 'akismet/akismet-5.10.zip', 'akismet/readme.txt', 'x/y-1.zip', 'hello/hello-1.0.zip']);
  assert.deepEqual(
    [...idx],
    [
      ['akismet', ['5.3', '5.10']],
      ['hello', ['1.0']],
    ],
  );
  assert.equal(storeZip('/s', { slug: 'akismet', version: '5.3' }), '/s/akismet/akismet-5.3.zip');
  const files = ['akismet/akismet-5.3.zip', 'akismet/akismet-5.10.zip', 'themes/lab/lab-1.0.zip', 'themes/lab/lab-2.0.zip'];
  checkInStore({ plugins: { akismet: '5.10' }, themes: { lab: '2.0' } }, files, '/s');
  assert.throws(
    () => checkInStore({ plugins: { akismet: '6.0', nope: '1' }, themes: {} }, files, '/s'),
    (e) =>
      e instanceof InputError &&
      /plugin akismet@6\.0 \(\/s\/akismet\/akismet-6\.0\.zip; the store has 5\.3, 5\.10\); plugin nope@1/.test(e.message),
  );
  // themes: STORE/themes/<slug>/<slug>-<version>.zip, never mistaken for plugins (nor a plugin named "themes")
  const mixed = [...files, 'themes/themes-1.0.zip'];
  assert.deepEqual([...storeIndex(mixed, 'themes')], [['lab', ['1.0', '2.0']]]);
  assert.deepEqual(
    [...storeIndex(mixed, 'plugins')].map(([slug]) => slug),
    ['akismet', 'themes'],
  );
  assert.equal(storeZip('/s', { slug: 'lab', version: '1.0' }, 'themes'), '/s/themes/lab/lab-1.0.zip');
  assert.throws(
    () => checkInStore({ plugins: {}, themes: { lab: '3.0', akismet: '5.3' } }, files, '/s'),
    (e) =>
      e instanceof InputError &&
      /theme lab@3\.0 \(\/s\/themes\/lab\/lab-3\.0\.zip; the store has 1\.0, 2\.0\); theme akismet@5\.3 \(\/s\/themes\/akismet/.test(
        e.message,
      ),
  );
});

test('zip entries: one top directory, the slug; nothing outside it', () => {
  checkZipEntries(['hello/', 'hello/hello.php', 'hello/inc/a.php'], { slug: 'hello', version: '1' }, 'z.zip');
  assert.throws(() => checkZipEntries(['hello.php'], { slug: 'hello', version: '1' }, 'z.zip'), /"hello.php" is not under hello\//);
  assert.throws(() => checkZipEntries(['hello/../../etc/x'], { slug: 'hello', version: '1' }, 'z.zip'), /not under hello\//);
  assert.throws(() => checkZipEntries([], { slug: 'hello', version: '1' }, 'z.zip'), /empty/);
  assert.throws(() => checkZipEntries(['style.css'], { slug: 'lab', version: '1' }, 'z.zip', 'themes'), /a theme zip holds one directory/);
});

test('pluginChanges from the probe output (plugins and themes)', () => {
  const m = parsePluginProbe(
    's1 plugins hello 1.0 - 1.0\ns1 plugins akismet unmanaged - \ns2 plugins hello - 1.0 1.0 2.0\ns1 themes lab 1.0 unmanaged-1 1.0\n',
  );
  assert.deepEqual(m.get('s1'), {
    plugins: {
      hello: { current: '1.0', previous: null, versions: ['1.0'] },
      akismet: { current: 'unmanaged', previous: null, versions: [] },
    },
    themes: { lab: { current: '1.0', previous: 'unmanaged-1', versions: ['1.0'] } },
  });
  assert.deepEqual(m.get('s2')!.plugins.hello, { current: null, previous: '1.0', versions: ['1.0', '2.0'] });
  assert.deepEqual(pluginChanges(m.get('s1'), { plugins: { hello: '2.0', akismet: '5.3' }, themes: { lab: '2.0' } }), [
    'plugin hello: 1.0 -> 2.0',
    'plugin akismet: unmanaged -> 5.3',
    'theme lab: 1.0 -> 2.0',
  ]);
  assert.deepEqual(pluginChanges(m.get('s1'), { plugins: { hello: '1.0' }, themes: { lab: '1.0' } }), []);
  assert.deepEqual(pluginChanges(undefined, { plugins: { hello: '1.0' }, themes: { hello: '1' } }), [
    'plugin hello: (none) -> 1.0',
    'theme hello: (none) -> 1',
  ]);
});

test("the record's activation: exactly its plugins (sorted) and/or its theme; neither: not managed", () => {
  assert.equal(activationOf({}), undefined);
  assert.deepEqual(activationOf({ active_plugins: ['b', 'a'] }), { plugins: ['a', 'b'] });
  assert.deepEqual(activationOf({ active_plugins: [] }), { plugins: [] }, 'an empty list: every plugin deactivated');
  assert.deepEqual(activationOf({ theme: 'lab' }), { theme: 'lab' });
  assert.deepEqual(activationOf({ active_plugins: ['hello'], theme: 'lab' }), { plugins: ['hello'], theme: 'lab' });
});

test('the activation PHP (sent to php in a php-fpm task) is valid PHP', { skip: !hasPhp() && 'no php here' }, () => {
  const out = execFileSync('php', ['-l', path.join(import.meta.dirname, '../../roles/update/files/wp-activation.php')]).toString();
  assert.match(out, /No syntax errors detected/);
});

test('command builders: quoted paths, one rename for the switch, no unchecked input', () => {
  const s = switchPluginScript({ siteDir: '/mnt/gluster/sites/blog1', slug: 'hello', version: '2.0', tar: true });
  assert.match(s, /^set -eu\n/);
  assert.match(
    s,
    /p=\/mnt\/gluster\/sites\/blog1\/plugins; v=\/mnt\/gluster\/sites\/blog1\/plugins\/\.wpfarm-versions\/hello; l=\/mnt\/gluster\/sites\/blog1\/plugins\/hello/,
  );
  assert.match(s, /tar -x -f - -C "\$t" --strip-components=1 --no-same-owner/);
  assert.match(s, /mv -T "\$t" "\$v\/\$want"/);
  assert.match(s, /ln -s \.wpfarm-versions\/hello\/"\$want" "\$l\.wpfarm-new\.\$\$"\n.*\nmv -T "\$l\.wpfarm-new\.\$\$" "\$l"/);
  assert.doesNotMatch(switchPluginScript({ siteDir: '/m/s', slug: 'hello', version: '2.0', tar: false }), /tar -x/);
  assert.match(switchPluginScript({ siteDir: '/m/s', slug: 'hello', version: PREVIOUS, tar: false }), /want=\$\(cat "\$v\/previous"/);
  assert.throws(() => switchPluginScript({ siteDir: '/m/s', slug: 'hello', version: PREVIOUS, tar: true }), /bad plugin/);
  assert.throws(() => switchPluginScript({ siteDir: '/m/s; rm -rf /', slug: 'hello', version: '1', tar: false }), /bad site directory/);
  assert.throws(() => switchPluginScript({ siteDir: '/m/s', slug: '$(x)', version: '1', tar: false }), /bad plugin/);
  assert.match(
    pluginProbeScript({ blog1: '/m/blog1' }, { plugins: { hello: 1 }, themes: { lab: 1 } }),
    /l=\/m\/blog1\/plugins\/hello; v=\/m\/blog1\/plugins\/\.wpfarm-versions\/hello;[\s\S]*\nl=\/m\/blog1\/themes\/lab; v=/,
  );
  assert.throws(() => pluginProbeScript({ a: '/m/a' }, { plugins: { 'a b': 1 }, themes: {} }), /bad plugin slug/);
  assert.throws(() => pluginProbeScript({ a: '/m/a' }, { plugins: {}, themes: { 'a b': 1 } }), /bad theme slug/);
  assert.match(
    switchPluginScript({ siteDir: '/m/s', kind: 'themes', slug: 'lab', version: '1', tar: true }),
    /p=\/m\/s\/themes; v=\/m\/s\/themes\/\.wpfarm-versions\/lab; l=\/m\/s\/themes\/lab/,
  );
});

/** A tar of <slug>/ holding main.php with the version in it (what pluginTar sends). */
function tarOf(work: string, slug: string, version: string): Buffer {
  const src = mkdtempSync(path.join(work, 'src-'));
  mkdirSync(path.join(src, slug));
  writeFileSync(path.join(src, slug, `${slug}.php`), `<?php /* Plugin Name: ${slug} Version: ${version} */\n`);
  return execFileSync('tar', ['-C', src, '-cf', '-', slug]);
}
function hasPhp(): boolean {
  try {
    execFileSync('php', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const sh = (script: string, stdin?: Buffer) =>
  execFileSync('sh', ['-c', script], { input: stdin ?? '' })
    .toString()
    .trim()
    .split('\n')
    .pop();

test('the switch script on a site directory: install, switch, keep the previous, roll back, prune, idempotent', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-plugins-'));
  try {
    const site = path.join(work, 'blog1');
    mkdirSync(path.join(site, 'plugins', 'hello'), { recursive: true });
    writeFileSync(path.join(site, 'plugins', 'hello', 'hello.php'), '<?php /* unmanaged */\n');
    const link = path.join(site, 'plugins', 'hello');
    const file = () => readFileSync(path.join(link, 'hello.php'), 'utf8');
    const sw = (version: string, tar: boolean) =>
      sh(switchPluginScript({ siteDir: site, slug: 'hello', version, tar }), tar ? tarOf(work, 'hello', version) : undefined);

    // an unmanaged directory is moved aside and becomes the previous version
    assert.match(sw('1.0', true)!, /^switched unmanaged-\d{14}$/);
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.equal(readlinkSync(link), '.wpfarm-versions/hello/1.0');
    assert.match(file(), /Version: 1\.0/);
    const vdir = path.join(site, 'plugins', '.wpfarm-versions', 'hello');
    assert.match(readFileSync(path.join(vdir, 'previous'), 'utf8'), /^unmanaged-/);
    assert.equal(sw('1.0', true), 'unchanged');

    assert.equal(sw('2.0', true), 'switched 1.0');
    assert.match(file(), /Version: 2\.0/);
    assert.equal(readFileSync(path.join(vdir, 'previous'), 'utf8').trim(), '1.0');
    // rollback: to the previous, which is kept on the site; twice toggles
    assert.equal(sh(switchPluginScript({ siteDir: site, slug: 'hello', version: PREVIOUS, tar: false })), 'switched 2.0');
    assert.match(file(), /Version: 1\.0/);
    assert.equal(sw('2.0', false), 'switched 1.0');
    // a version not on the site cannot be switched to without its files
    assert.throws(() => sw('9.9', false), /Command failed/);
    // prune: current + previous + 2 others kept
    for (const v of ['3.0', '4.0', '5.0', '6.0']) sw(v, true);
    const kept = readdirSync(vdir).filter((d) => d !== 'previous');
    assert.ok(kept.includes('6.0') && kept.includes('5.0'), kept.join(','));
    assert.equal(kept.length, 4, kept.join(','));
    assert.ok(!readdirSync(vdir).some((d) => d.includes('.new.')), 'no temporary directory left');
    // remove (rollback of a plugin the update added): the link goes, the version stays as previous
    assert.equal(sh(removePluginScript({ siteDir: site, slug: 'hello' })), 'removed 6.0');
    assert.ok(!existsSync(link));
    assert.equal(readFileSync(path.join(vdir, 'previous'), 'utf8').trim(), '6.0');
    assert.equal(sh(removePluginScript({ siteDir: site, slug: 'hello' })), 'unchanged');
    // the probe reads it all back
    const probe = parsePluginProbe(
      execFileSync('sh', ['-c', pluginProbeScript({ blog1: site }, { plugins: { hello: 1 }, themes: {} })]).toString(),
    );
    assert.deepEqual(probe.get('blog1')!.plugins.hello!.current, null);
    assert.equal(probe.get('blog1')!.plugins.hello!.previous, '6.0');
    assert.ok(probe.get('blog1')!.plugins.hello!.versions.includes('6.0'));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('the same switch for a theme: wp-content/themes, its own versions and previous, the plugins untouched', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-themes-'));
  try {
    const site = path.join(work, 'blog1');
    mkdirSync(path.join(site, 'plugins', 'lab'), { recursive: true });
    writeFileSync(path.join(site, 'plugins', 'lab', 'lab.php'), '<?php /* a plugin of the same slug */\n');
    mkdirSync(path.join(site, 'themes', 'twentytwentythree'), { recursive: true });
    const sw = (version: string, tar: boolean) =>
      sh(switchPluginScript({ siteDir: site, kind: 'themes', slug: 'lab', version, tar }), tar ? tarOf(work, 'lab', version) : undefined);
    const link = path.join(site, 'themes', 'lab');
    assert.equal(sw('1.0', true), 'switched -');
    assert.equal(readlinkSync(link), '.wpfarm-versions/lab/1.0');
    assert.equal(sw('1.0', true), 'unchanged');
    assert.equal(sw('2.0', true), 'switched 1.0');
    assert.match(readFileSync(path.join(link, 'lab.php'), 'utf8'), /Version: 2\.0/);
    const vdir = path.join(site, 'themes', '.wpfarm-versions', 'lab');
    assert.equal(readFileSync(path.join(vdir, 'previous'), 'utf8').trim(), '1.0');
    assert.equal(sh(switchPluginScript({ siteDir: site, kind: 'themes', slug: 'lab', version: PREVIOUS, tar: false })), 'switched 2.0');
    assert.match(readFileSync(path.join(link, 'lab.php'), 'utf8'), /Version: 1\.0/);
    const probe = parsePluginProbe(
      execFileSync('sh', ['-c', pluginProbeScript({ blog1: site }, { plugins: { lab: 1 }, themes: { lab: 1 } })]).toString(),
    );
    assert.deepEqual(probe.get('blog1'), {
      plugins: { lab: { current: 'unmanaged', previous: null, versions: [] } },
      themes: { lab: { current: '1.0', previous: '2.0', versions: ['1.0', '2.0'] } },
    });
    assert.equal(sh(removePluginScript({ siteDir: site, kind: 'themes', slug: 'lab' })), 'removed 1.0');
    assert.ok(!existsSync(link));
    assert.ok(lstatSync(path.join(site, 'plugins', 'lab')).isDirectory(), 'the plugin of the same slug is untouched');
    assert.deepEqual(readdirSync(path.join(site, 'themes')).sort(), ['.wpfarm-versions', 'twentytwentythree']);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
