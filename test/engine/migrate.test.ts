// Migrating a site from a real "legacy VPS" to a stand-in for the farm: two sshd hosts of test/harness/sshd.ts,
// each running its own mariadbd. The legacy host holds a plain WordPress tree (wp-config.php with a quoted,
// tricky password, DB_HOST 127.0.0.1:3307, table prefix lg7_), posts with emoji and RTL text, options and
// postmeta holding PHP-serialized values made by PHP's serialize() (nested, objects, double serialization),
// a malformed serialized option, uploads (1 MB of random bytes, a file name with spaces and an emoji), a page
// cache, and a table of another application in the same database. The farm host gets the site's database,
// user and wp-content. Checked: every refusal (not WordPress, unreadable config, multisite, WordPress too new,
// wrong DB password, target already there) names the site and the reason and leaves nothing on the target;
// --check changes nothing; inspect → copy → rewrite → verify; PHP's unserialize() of every rewritten option
// equals the original with the URL replaced; guid and the malformed value kept; a run killed mid-copy (its
// state file as the kill left it) resumes; cutover puts our maintenance flag on the source, rollback removes
// it; a failure before cutover removes what was created; the source database is unchanged (CHECKSUM TABLE);
// the source's DB password is in no error and no state file.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { quote } from '../../lib/shell.ts';
import { connect } from '../../lib/transport.ts';
import type { Connection } from '../../lib/types.ts';
import { withTargetDb } from '../../roles/migrate/db.ts';
import { migrateSite, rollbackSite } from '../../roles/migrate/migrate.ts';
import { SiteRefused, parseSourceUrl } from '../../roles/migrate/source.ts';
import { loadState, saveState } from '../../roles/migrate/state.ts';
import { type Target, createTarget, targetLeftovers } from '../../roles/migrate/target.ts';
import { rows } from '../../lib/mysql.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

const PHP_CASES = join(import.meta.dirname, '../fixtures/migrate/serialize-cases.php');
const DOMAIN = 'old.example';
const NEW_DOMAIN = 'nouveau.example.net';
const NEW_BASE = `https://${NEW_DOMAIN}`;
const LEGACY_PW = `Leg#acy'Pw"9;x\\y`;
const ROOT = '/srv/www/old';

let lab: SshdLab;
let legacy: Connection;
let farm: Connection;
let stateDir: string;
const conns: Connection[] = [];

/** a SQL string literal of any bytes (hex: the client changes nothing in it, not even a \r) */
const sql = (s: string) => `_utf8mb4 X'${Buffer.from(s, 'utf8').toString('hex')}'`;
const phpSq = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

async function startMariadb(c: Connection, opts: { port?: number }): Promise<void> {
  const net = opts.port ? `--port=${opts.port} --bind-address=127.0.0.1` : '--skip-networking';
  await c.exec(
    [
      'set -e',
      'install -d -o mysql -g mysql /srv/db /run/mysqld',
      'mariadb-install-db --no-defaults --user=mysql --datadir=/srv/db --auth-root-authentication-method=socket --skip-test-db >/dev/null 2>&1',
      `setsid mariadbd --no-defaults --user=mysql --datadir=/srv/db --socket=/run/mysqld/mysqld.sock ${net} ` +
        '--innodb-log-file-size=8M --innodb-buffer-pool-size=16M --pid-file=/run/mysqld/mysqld.pid --log-error=/srv/db/err.log ' +
        '</dev/null >/dev/null 2>&1 &',
      'for i in $(seq 300); do mariadb -e "select 1" >/dev/null 2>&1 && exit 0; sleep 0.1; done',
      'cat /srv/db/err.log; exit 1',
    ].join('\n'),
    { timeoutMs: 90_000 },
  );
}

function wpConfig(o: { password?: string; extra?: string; prefix?: string }): string {
  return [
    '<?php',
    '/** The base configuration for WordPress */',
    "define( 'DB_NAME', 'legacydb' );",
    "define('DB_USER', \"lguser\");",
    `define( 'DB_PASSWORD', ${phpSq(o.password ?? LEGACY_PW)} );`,
    "define( 'DB_HOST', '127.0.0.1:3307' ); // MariaDB on another port",
    "define( 'DB_CHARSET', 'utf8mb4' );",
    "# define( 'DB_HOST', 'commented.out' );",
    "/* define( 'DB_NAME', 'nope' ); */",
    "define( 'WP_ALLOW_MULTISITE', true );",
    o.extra ?? '',
    `$table_prefix = '${o.prefix ?? 'lg7_'}';`,
    "if ( ! defined( 'ABSPATH' ) ) { define( 'ABSPATH', __DIR__ . '/' ); }",
    "require_once ABSPATH . 'wp-settings.php';",
    '',
  ].join('\n');
}

/** a WordPress tree (the files inspect reads) at `root` */
async function tree(root: string, o: { version?: string; config?: string | null }): Promise<void> {
  await legacy.exec(`install -d ${quote(`${root}/wp-includes`)} ${quote(`${root}/wp-content/uploads/2024/05`)}`);
  await legacy.put(`${root}/wp-settings.php`, '<?php // WordPress bootstrap\n');
  await legacy.put(`${root}/wp-includes/version.php`, `<?php\n$wp_version = '${o.version ?? '6.1.9'}';\n$wp_db_version = 53496;\n`);
  if (o.config !== null) await legacy.put(`${root}/wp-config.php`, o.config ?? wpConfig({}));
}

async function seedLegacy(): Promise<string[]> {
  const made = JSON.parse(execFileSync('/usr/bin/php', [PHP_CASES, 'make'], { encoding: 'utf8' })) as string[];
  const p = 'lg7_';
  const ddl = [
    'CREATE DATABASE legacydb CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;',
    'USE legacydb;',
    `CREATE TABLE ${p}options (option_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, option_name varchar(191) NOT NULL UNIQUE,
      option_value longtext NOT NULL, autoload varchar(20) NOT NULL DEFAULT 'yes') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;`,
    `CREATE TABLE ${p}posts (ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, post_title text NOT NULL, post_content longtext NOT NULL,
      post_status varchar(20) NOT NULL DEFAULT 'publish', guid varchar(255) NOT NULL DEFAULT '') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;`,
    `CREATE TABLE ${p}postmeta (meta_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, post_id bigint unsigned NOT NULL,
      meta_key varchar(255), meta_value longtext) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;`,
    `CREATE TABLE ${p}users (ID bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, user_login varchar(60) NOT NULL,
      user_pass varchar(255) NOT NULL, user_url varchar(100) NOT NULL DEFAULT '') ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;`,
    `CREATE TABLE ${p}term_relationships (object_id bigint unsigned NOT NULL, term_taxonomy_id bigint unsigned NOT NULL,
      term_order int NOT NULL DEFAULT 0, PRIMARY KEY (object_id, term_taxonomy_id)) ENGINE=InnoDB;`,
    'CREATE TABLE other_app (id int PRIMARY KEY, v text) ENGINE=InnoDB;',
    "INSERT INTO other_app VALUES (1, 'http://old.example/not-ours');",
    `CREATE USER 'lguser'@'127.0.0.1' IDENTIFIED BY '${LEGACY_PW.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}';`,
    "GRANT ALL ON legacydb.* TO 'lguser'@'127.0.0.1';",
  ];
  const opts: [string, string][] = [
    ['siteurl', 'http://old.example'],
    ['home', 'http://old.example'],
    ['blogname', 'Vieux site 😀'],
    ['broken_serialized', 'a:1:{s:3:"url";s:5:"http://old.example/broken";}'],
    ...made.map((v, i): [string, string] => [`case_${i}`, v]),
  ];
  const posts = [
    ['Bonjour 😀🎉', 'Voir <a href="http://old.example/2024/05/hello/">ici</a> et <img src="https://old.example/wp-content/uploads/2024/05/big.bin">'],
    ['مرحبا بالعالم', '<p dir="rtl">שלום עולם http://old.example/צילום and http://old.example.org stays</p>'],
    ['Block', '<!-- wp:image {"url":"http:\\/\\/old.example\\/wp-content\\/uploads\\/x.png"} /-->'],
  ];
  const ins = [
    ...opts.map(([n, v]) => `INSERT INTO ${p}options (option_name, option_value) VALUES (${sql(n)}, ${sql(v)});`),
    ...posts.map(([t, c], i) => `INSERT INTO ${p}posts (post_title, post_content, guid) VALUES (${sql(t!)}, ${sql(c!)}, 'http://old.example/?p=${i + 1}');`),
    ...made.slice(0, 4).map((v, i) => `INSERT INTO ${p}postmeta (post_id, meta_key, meta_value) VALUES (1, 'meta_${i}', ${sql(v)});`),
    `INSERT INTO ${p}users (user_login, user_pass, user_url) VALUES ('admin', '$P$Bq3YyS4YH6T0nLgk9o0cU2yJ0ZlW1.0', 'http://old.example');`,
    `INSERT INTO ${p}term_relationships VALUES (1, 1, 0), (2, 1, 0);`,
  ];
  await legacy.exec('mariadb --default-character-set=utf8mb4', { stdin: [...ddl, ...ins].join('\n') });
  await tree(ROOT, {});
  await legacy.exec(
    [
      `cd ${ROOT}/wp-content`,
      'head -c 1048576 /dev/urandom > uploads/2024/05/big.bin',
      "printf 'bonjour' > 'uploads/2024/05/na me 😀.txt'",
      'install -d cache plugins/hello themes/classic && echo cached > cache/page.html',
      "echo '<?php /* Plugin Name: Hello */' > plugins/hello/hello.php && echo '/* Theme Name: Classic */' > themes/classic/style.css",
    ].join(' && '),
  );
  return made;
}

function target(name = 'old-example'): Target {
  const db = `wp_${name.replace(/-/g, '_')}`;
  return {
    describe: `db ${db} on ${farm.host.name}`,
    db: { conn: farm, socketPath: '/run/mysqld/mysqld.sock', name: db, user: db, userHost: '%', password: 'TargetPw-0123456789abcdef' },
    files: { conn: farm, contentDir: `/srv/gluster/sites/${name}/wp-content` },
  };
}

async function sourceChecksum(): Promise<string> {
  return (await legacy.exec("mariadb -N -e 'CHECKSUM TABLE legacydb.lg7_options, legacydb.lg7_posts, legacydb.lg7_postmeta, legacydb.other_app'"))
    .stdout;
}

function opts(over: Partial<Parameters<typeof migrateSite>[0]> = {}): Parameters<typeof migrateSite>[0] {
  const src = parseSourceUrl(`ssh://root@${lab.hosts[0]!.address}${ROOT}`);
  assert.ok(typeof src !== 'string', String(src));
  return { domain: DOMAIN, newDomain: NEW_DOMAIN, source: src, sourceConn: legacy, target: target(), stateDir, ...over };
}

/** every file under the state directory, as text */
function stateText(): string {
  return readdirSync(stateDir)
    .map((f) => readFileSync(join(stateDir, f), 'utf8'))
    .join('\n');
}

describe('migrate a legacy site (engine: two sshd hosts with MariaDB)', { timeout: 600_000 }, () => {
  let made: string[] = [];
  let before0 = '';
  before(async () => {
    lab = await startSshdHosts(2, { prefix: 'mig' });
    legacy = await connect(lab.hosts[0]!.spec, { knownHosts: lab.knownHosts });
    farm = await connect(lab.hosts[1]!.spec, { knownHosts: lab.knownHosts });
    conns.push(legacy, farm);
    await Promise.all([startMariadb(legacy, { port: 3307 }), startMariadb(farm, {})]);
    made = await seedLegacy();
    before0 = await sourceChecksum();
    stateDir = mkdtempSync(join(tmpdir(), 'wpfarm-migrate-'));
  });
  after(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
    await lab?.stop();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
  });

  test('refusals name the site and the reason, create nothing, never show the DB password', async () => {
    await tree('/srv/www/multi', { config: wpConfig({ extra: "define( 'MULTISITE', true );" }) });
    await tree('/srv/www/newer', { version: '9.9.1' });
    await tree('/srv/www/badpw', { config: wpConfig({ password: 'wrong-password-QZ1' }) });
    await tree('/srv/www/noconf', { config: null });
    await legacy.exec('ln -s /nonexistent/wp-config.php /srv/www/noconf/wp-config.php');
    await tree('/srv/www/getenv', { config: wpConfig({}).replace(/define\( 'DB_PASSWORD'.*\n/, "define( 'DB_PASSWORD', getenv('PW') );\n") });
    await tree('/srv/www/prefix', { config: wpConfig({ prefix: 'zz_' }) });
    const cases: [string, RegExp][] = [
      ['/srv', /\/srv is not a WordPress tree/],
      ['/nonexistent', /\/nonexistent is not a directory/],
      ['/srv/www/multi', /defines MULTISITE: multisite networks are not migrated/],
      ['/srv/www/newer', /WordPress 9\.9\.1 is newer than the farm's image \(6\.1\.9\)/],
      ['/srv/www/badpw', /cannot query database legacydb as lguser@127\.0\.0\.1:3307: .*Access denied/],
      ['/srv/www/noconf', /cannot read \/srv\/www\/noconf\/wp-config\.php: .*No such file/],
      ['/srv/www/getenv', /DB_PASSWORD is an expression, not a literal string/],
      ['/srv/www/prefix', /no table zz_options in legacydb/],
    ];
    for (const [path, re] of cases) {
      const src = parseSourceUrl(`ssh://root@${lab.hosts[0]!.address}${path}`);
      assert.ok(typeof src !== 'string');
      await assert.rejects(migrateSite(opts({ source: src })), (e: Error) => {
        assert.ok(e instanceof SiteRefused, `${path}: ${e.message}`);
        assert.equal(e.exitCode, 4);
        assert.match(e.message, /^site old\.example: /, path);
        assert.match(e.message, re, path);
        assert.ok(!e.message.includes(LEGACY_PW) && !e.message.includes('wrong-password-QZ1'), e.message);
        return true;
      });
      assert.deepEqual(await targetLeftovers(target()), [], `${path}: nothing on the target`);
    }
    rmSync(join(stateDir, `${DOMAIN}.json`), { force: true });
    // the target's name already taken in the farm
    const taken = target('taken-example');
    await createTarget(taken);
    await assert.rejects(migrateSite(opts({ target: taken })), /site old\.example: already in the farm: database wp_taken_example/);
    assert.equal((await targetLeftovers(taken)).length, 3, 'what was there before is left alone');
    rmSync(join(stateDir, `${DOMAIN}.json`), { force: true });
  });

  test('--check says what would happen and changes nothing', async () => {
    const r = await migrateSite(opts({ check: true }));
    assert.match(r.plan!, /^run inspect → copy → rewrite → verify → cutover → done \(WordPress 6\.1\.9, 5 tables, /);
    assert.equal(existsSync(join(stateDir, `${DOMAIN}.json`)), false);
    assert.deepEqual(await targetLeftovers(target()), []);
  });

  test('a failure before cutover removes what was created on the target', async () => {
    await assert.rejects(
      migrateSite(
        opts({
          onState: (s) => {
            if (s === 'rewrite') throw new Error('injected failure at rewrite');
          },
        }),
      ),
      /injected failure at rewrite/,
    );
    assert.deepEqual(await targetLeftovers(target()), []);
    const st = loadState(stateDir, DOMAIN)!;
    assert.equal(st.status, 'failed');
    assert.equal(st.completed, '');
    assert.ok(st.history.some((h) => h.state === 'cleanup' && h.ok));
    rmSync(join(stateDir, `${DOMAIN}.json`));
  });

  test('a run killed mid-copy resumes; inspect → copy → rewrite → verify', async () => {
    // what a SIGKILL during copy leaves: inspect recorded, copy running, the target half made
    await migrateSite(opts({ until: 'inspect' }));
    const st = loadState(stateDir, DOMAIN)!;
    assert.equal(st.completed, 'inspect');
    st.running = 'copy';
    st.status = 'running';
    st.createdOnTarget = true;
    st.history.push({ state: 'copy', startedAt: new Date().toISOString() });
    saveState(stateDir, st);
    await createTarget(target());
    await withTargetDb(target().db, (db) => db.query('CREATE TABLE half_copied (x int)'), 'wp_old_example');
    await farm.exec('install -d /srv/gluster/sites/old-example/wp-content/uploads && echo partial > /srv/gluster/sites/old-example/wp-content/junk');

    const logs: string[] = [];
    const r = await migrateSite(opts({ until: 'verify', log: (m) => logs.push(m) }));
    assert.equal(r.state.completed, 'verify', logs.join('\n'));
    assert.deepEqual(
      r.state.history.filter((h) => h.ok).map((h) => h.state),
      ['inspect', 'copy', 'rewrite', 'verify'],
    );
    const verify = r.state.history.find((h) => h.state === 'verify' && h.ok)!.summary!;
    assert.equal(verify.tables, 5);
    assert.equal(verify.uploads, 2);
    assert.deepEqual(verify.countsChangedDuringCopy, []);
    // only the malformed option still holds the old URL (guid is not rewritten by design, and not counted)
    // still holding the old URL text: the malformed option, an option whose only URL is an array KEY (kept, as
    // wp-cli does), and text naming other hosts (old.example.org, old.example-shop.test: not the site's origin)
    assert.deepEqual(verify.oldUrlsLeft, { 'lg7_options.option_value': 3, 'lg7_posts.post_content': 1 });
    const rw = r.state.history.find((h) => h.state === 'rewrite' && h.ok)!.summary!;
    assert.equal((rw.problems as string[]).length, 1);
    assert.match((rw.problems as string[])[0]!, /lg7_options\.option_value option_id=4: malformed serialized value left as it is/);
    assert.ok(Number(rw.replaced) >= 70, `replaced ${rw.replaced}`);

    // the copy: no leftovers of the killed run, no cache, no other application's table
    const files = (await farm.exec('cd /srv/gluster/sites/old-example/wp-content && find . -type f | sort')).stdout;
    assert.equal(
      files,
      './plugins/hello/hello.php\n./themes/classic/style.css\n./uploads/2024/05/big.bin\n./uploads/2024/05/na me 😀.txt\n',
    );
    const tables = await withTargetDb(target().db, (db) => rows(db, 'SHOW TABLES'), 'wp_old_example');
    assert.deepEqual(tables.map((t) => Object.values(t)[0]).sort(), ['lg7_options', 'lg7_postmeta', 'lg7_posts', 'lg7_term_relationships', 'lg7_users']);
  });

  test('rewritten values: PHP unserialize() equals the original with the URL replaced; text, guid, broken value', async () => {
    const got = await withTargetDb(
      target().db,
      (db) => rows(db, "SELECT option_name AS n, option_value AS v FROM lg7_options WHERE option_name LIKE 'case\\_%' ORDER BY option_id"),
      'wp_old_example',
    );
    assert.equal(got.length, made.length);
    const pairs = got.map((r, i) => ({ original: made[i]!, rewritten: String(r.v) }));
    const out = execFileSync('/usr/bin/php', [PHP_CASES, 'check'], { input: JSON.stringify(pairs), encoding: 'utf8' });
    assert.equal(out.split('\n').filter((l) => l.endsWith(': ok')).length, made.length, out);
    const meta = await withTargetDb(target().db, (db) => rows(db, 'SELECT meta_value AS v FROM lg7_postmeta ORDER BY meta_id'), 'wp_old_example');
    const metaOut = execFileSync('/usr/bin/php', [PHP_CASES, 'check'], {
      input: JSON.stringify(meta.map((r, i) => ({ original: made[i]!, rewritten: String(r.v) }))),
      encoding: 'utf8',
    });
    assert.equal(metaOut.split('\n').filter((l) => l.endsWith(': ok')).length, 4, metaOut);
    const o = await withTargetDb(
      target().db,
      (db) => rows(db, "SELECT option_name AS n, option_value AS v FROM lg7_options WHERE option_name IN ('siteurl','home','blogname','broken_serialized')"),
      'wp_old_example',
    );
    const byName = Object.fromEntries(o.map((r) => [String(r.n), String(r.v)]));
    assert.deepEqual(byName, {
      siteurl: NEW_BASE,
      home: NEW_BASE,
      blogname: 'Vieux site 😀',
      broken_serialized: 'a:1:{s:3:"url";s:5:"http://old.example/broken";}',
    });
    const posts = await withTargetDb(target().db, (db) => rows(db, 'SELECT post_title AS t, post_content AS c, guid AS g FROM lg7_posts ORDER BY ID'), 'wp_old_example');
    assert.deepEqual(
      posts.map((p) => [p.t, p.c, p.g]),
      [
        [
          'Bonjour 😀🎉',
          `Voir <a href="${NEW_BASE}/2024/05/hello/">ici</a> et <img src="${NEW_BASE}/wp-content/uploads/2024/05/big.bin">`,
          'http://old.example/?p=1',
        ],
        ['مرحبا بالعالم', `<p dir="rtl">שלום עולם ${NEW_BASE}/צילום and http://old.example.org stays</p>`, 'http://old.example/?p=2'],
        ['Block', '<!-- wp:image {"url":"https:\\/\\/nouveau.example.net\\/wp-content\\/uploads\\/x.png"} /-->', 'http://old.example/?p=3'],
      ],
    );
    const [u] = await withTargetDb(target().db, (db) => rows(db, 'SELECT user_pass AS p, user_url AS u FROM lg7_users'), 'wp_old_example');
    assert.deepEqual([u!.p, u!.u], ['$P$Bq3YyS4YH6T0nLgk9o0cU2yJ0ZlW1.0', NEW_BASE], 'password hashes kept');
  });

  test('cutover: maintenance flag on the source, final delta, done; a rerun does nothing; rollback removes the flag', async () => {
    // a change on the source after the first copy must reach the target with the delta
    await legacy.exec(`printf 'late upload' > ${ROOT}/wp-content/uploads/2024/05/late.txt`);
    await legacy.exec(`mariadb legacydb -e "INSERT INTO lg7_posts (post_title, post_content, guid) VALUES ('Late', 'http://old.example/late', 'x')"`);
    const r = await migrateSite(opts());
    assert.equal(r.state.status, 'done');
    assert.equal(r.state.completed, 'done');
    const cut = r.state.history.find((h) => h.state === 'cutover' && h.ok)!.summary!;
    assert.equal((cut.verified as { uploads: number }).uploads, 3);
    assert.ok(Number(cut.maintenanceMs) > 0);
    const flag = (await legacy.exec(`cat ${ROOT}/.maintenance`)).stdout;
    assert.match(flag, /^<\?php \$upgrading = time\(\); \/\/ wpfarm migration: old\.example/);
    const [late] = await withTargetDb(target().db, (db) => rows(db, "SELECT post_content AS c FROM lg7_posts WHERE post_title = 'Late'"), 'wp_old_example');
    assert.equal(late?.c, `${NEW_BASE}/late`);
    const n = r.state.history.length;
    const again = await migrateSite(opts());
    assert.equal(again.state.history.length, n, 'a finished cutover is never redone');

    const check = await rollbackSite({ ...opts(), check: true });
    assert.equal(check.plan, 'remove the maintenance flag from the source');
    const rb = await rollbackSite(opts());
    assert.equal(rb.state.status, 'rolled-back');
    assert.equal((await legacy.exec(`test -e ${ROOT}/.maintenance && echo yes || echo no`)).stdout.trim(), 'no');
  });

  test('the source was only read; the DB password is in no state file', async () => {
    await legacy.exec(`mariadb legacydb -e "DELETE FROM lg7_posts WHERE post_title = 'Late'"`);
    assert.equal(await sourceChecksum(), before0);
    const text = stateText();
    assert.ok(text.length > 1000);
    assert.ok(!text.includes(LEGACY_PW) && !text.includes(JSON.stringify(LEGACY_PW).slice(1, -1)));
    assert.ok(!text.includes('TargetPw-0123456789abcdef'));
    writeFileSync(join(stateDir, 'keep'), '');
  });
});
