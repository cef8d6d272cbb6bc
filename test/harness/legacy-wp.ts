// A "legacy VPS" for the migration tests: mariadbd on an sshd test host (test/harness/sshd.ts), a plain
// WordPress tree (the files roles/migrate/inspect.ts reads), and a seeded site: table prefix lg7_, DB_HOST
// 127.0.0.1:3307, a password with a quote, a hash and a backslash, posts with emoji and RTL text, options and
// postmeta holding values made by PHP's serialize() (test/fixtures/migrate/serialize-cases.php), a malformed
// serialized option, the prefix-keyed user_roles option and user meta keys, uploads, a page cache, and a table of another application in the same database.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { quote } from '../../lib/shell.ts';
import type { Connection } from '../../lib/types.ts';

export const PHP_CASES = join(import.meta.dirname, '../fixtures/migrate/serialize-cases.php');
export const LEGACY_PW = `Leg#acy'Pw"9;x\\y`;
export const ROOT = '/srv/www/old';

/** a SQL string literal of any bytes (hex: the client changes nothing in it, not even a \r) */
const sql = (s: string) => `_utf8mb4 X'${Buffer.from(s, 'utf8').toString('hex')}'`;
const phpSq = (s: string) => `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/** mariadbd on the host (own datadir; TCP on 127.0.0.1:port when given, else the socket only), ready when it returns */
export async function startMariadb(c: Connection, opts: { port?: number }): Promise<void> {
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

/** a wp-config.php of the seeded site (DB on 127.0.0.1:3307, prefix lg7_) */
export function wpConfig(o: { password?: string; extra?: string; prefix?: string }): string {
  return [
    '<?php',
    '/** The base configuration for WordPress */',
    "define( 'DB_NAME', 'legacydb' );",
    'define(\'DB_USER\', "lguser");',
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
export async function tree(legacy: Connection, root: string, o: { version?: string; config?: string | null }): Promise<void> {
  await legacy.exec(`install -d ${quote(`${root}/wp-includes`)} ${quote(`${root}/wp-content/uploads/2024/05`)}`);
  await legacy.put(`${root}/wp-settings.php`, '<?php // WordPress bootstrap\n');
  await legacy.put(`${root}/wp-includes/version.php`, `<?php\n$wp_version = '${o.version ?? '6.1.9'}';\n$wp_db_version = 53496;\n`);
  if (o.config !== null) await legacy.put(`${root}/wp-config.php`, o.config ?? wpConfig({}));
}

/** the seeded site at `root`: database legacydb (prefix lg7_), its tree, uploads of `uploadsMb` + 1 MB; returns PHP's cases */
export async function seedLegacy(legacy: Connection, root = ROOT, uploadsMb = 0): Promise<string[]> {
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
    `CREATE TABLE ${p}usermeta (umeta_id bigint unsigned NOT NULL AUTO_INCREMENT PRIMARY KEY, user_id bigint unsigned NOT NULL DEFAULT 0,
      meta_key varchar(255), meta_value longtext) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;`,
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
    // keyed by the table prefix in WordPress: renamed with it
    [`${p}user_roles`, 'a:1:{s:13:"administrator";a:2:{s:4:"name";s:13:"Administrator";s:12:"capabilities";a:1:{s:4:"read";b:1;}}}'],
  ];
  const posts = [
    [
      'Bonjour 😀🎉',
      'Voir <a href="http://old.example/2024/05/hello/">ici</a> et <img src="https://old.example/wp-content/uploads/2024/05/big.bin">',
    ],
    ['مرحبا بالعالم', '<p dir="rtl">שלום עולם http://old.example/צילום and http://old.example.org stays</p>'],
    ['Block', '<!-- wp:image {"url":"http:\\/\\/old.example\\/wp-content\\/uploads\\/x.png"} /-->'],
  ];
  const ins = [
    ...opts.map(([n, v]) => `INSERT INTO ${p}options (option_name, option_value) VALUES (${sql(n)}, ${sql(v)});`),
    ...posts.map(
      ([t, c], i) =>
        `INSERT INTO ${p}posts (post_title, post_content, guid) VALUES (${sql(t!)}, ${sql(c!)}, 'http://old.example/?p=${i + 1}');`,
    ),
    ...made.slice(0, 4).map((v, i) => `INSERT INTO ${p}postmeta (post_id, meta_key, meta_value) VALUES (1, 'meta_${i}', ${sql(v)});`),
    `INSERT INTO ${p}users (user_login, user_pass, user_url) VALUES ('admin', '$P$Bq3YyS4YH6T0nLgk9o0cU2yJ0ZlW1.0', 'http://old.example');`,
    `INSERT INTO ${p}term_relationships VALUES (1, 1, 0), (2, 1, 0);`,
    `INSERT INTO ${p}usermeta (user_id, meta_key, meta_value) VALUES (1, '${p}capabilities', 'a:1:{s:13:"administrator";b:1;}'),
      (1, '${p}user_level', '10'), (1, 'nickname', 'admin');`,
  ];
  await legacy.exec('mariadb --default-character-set=utf8mb4', { stdin: [...ddl, ...ins].join('\n') });
  await tree(legacy, root, {});
  await legacy.exec(
    [
      `cd ${root}/wp-content`,
      `for i in $(seq ${uploadsMb}); do head -c 1048576 /dev/urandom > uploads/2024/05/extra-$i.bin; done`,
      'head -c 1048576 /dev/urandom > uploads/2024/05/big.bin',
      "printf 'bonjour' > 'uploads/2024/05/na me 😀.txt'",
      'install -d cache plugins/hello themes/classic && echo cached > cache/page.html',
      "echo '<?php /* Plugin Name: Hello */' > plugins/hello/hello.php && echo '/* Theme Name: Classic */' > themes/classic/style.css",
    ].join(' && '),
  );
  return made;
}
