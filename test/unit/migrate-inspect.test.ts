// roles/migrate: wp-config.php and version.php read without PHP, DB_HOST forms, source URLs, the plan file,
// the state machine's bookkeeping.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { InputErrors } from '../../lib/schema.ts';
import { registerSecret } from '../../lib/secrets.ts';
import { clientOptions } from '../../roles/migrate/inspect.ts';
import { loadPlan } from '../../roles/migrate/plan.ts';
import { formatSourceUrl, parseSourceUrl } from '../../roles/migrate/source.ts';
import { describePlan, loadState, newState, nextState, saveState } from '../../roles/migrate/state.ts';
import {
  compareVersions,
  isDebianDispatcher,
  parseDbHost,
  parseWpConfig,
  parseWpVersion,
  WpConfigError,
} from '../../roles/migrate/wpconfig.ts';

const tmp = mkdtempSync(join(tmpdir(), 'wpfarm-migrate-unit-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const CONFIG = `<?php
/**
 * define('DB_NAME', 'in_a_comment');
 */
// define( 'DB_USER', 'also_a_comment' );
# define( 'DB_HOST', 'hash_comment' );
define( 'DB_NAME', 'site_db' );
define("DB_USER", "site_user");
define( 'DB_PASSWORD', 'p\\'w#//x\\\\y' );   // a quote, a hash, slashes, a backslash
define( 'DB_HOST', 'db.internal:3307' );
define('DB_CHARSET','utf8mb4');
define( 'WP_ALLOW_MULTISITE', true );
define( 'WP_CONTENT_DIR', '/srv/content' );
$table_prefix  = "x9_";
if ( ! defined( 'ABSPATH' ) ) { define( 'ABSPATH', __DIR__ . '/' ); }
require_once ABSPATH . 'wp-settings.php';
`;

describe('wp-config.php', () => {
  it('reads the literals, skips comments, leaves WP_ALLOW_MULTISITE alone', () => {
    const c = parseWpConfig(CONFIG, 'wp-config.php');
    assert.deepEqual(c, {
      dbName: 'site_db',
      dbUser: 'site_user',
      dbPassword: "p'w#//x\\y",
      dbHost: { raw: 'db.internal:3307', host: 'db.internal', port: 3307 },
      dbCharset: 'utf8mb4',
      tablePrefix: 'x9_',
      multisite: false,
      contentDir: '/srv/content',
      home: undefined,
      siteurl: undefined,
    });
  });

  it('MULTISITE true is a multisite', () => {
    assert.equal(parseWpConfig(`${CONFIG}\ndefine('MULTISITE', true);`, 'f').multisite, true);
    assert.equal(parseWpConfig(`${CONFIG}\ndefine('MULTISITE', false);`, 'f').multisite, false);
  });

  it('refuses what is not a literal, naming file:line, never quoting the password expression', () => {
    const pw = CONFIG.replace(/define\( 'DB_PASSWORD'.*\n/, "define( 'DB_PASSWORD', getenv('SECRET_PW') . 'tail' );\n");
    assert.throws(
      () => parseWpConfig(pw, '/srv/wp-config.php'),
      (e: Error) => {
        assert.ok(e instanceof WpConfigError);
        assert.equal(e.message, '/srv/wp-config.php:9: DB_PASSWORD is an expression, not a literal string (write the value in the file)');
        return true;
      },
    );
    const name = CONFIG.replace("'site_db'", "getenv('DBN')");
    assert.throws(() => parseWpConfig(name, 'f'), /f:7: DB_NAME is 'getenv \( 'DBN' \)', not a literal string/);
    assert.throws(() => parseWpConfig(CONFIG.replace(/\$table_prefix.*\n/, ''), 'f'), /f: \$table_prefix is not set/);
    assert.throws(() => parseWpConfig(CONFIG.replace(/define\( 'DB_PASSWORD'.*\n/, ''), 'f'), /f: DB_PASSWORD is not defined/);
    assert.throws(() => parseWpConfig(CONFIG.replace('"x9_"', '"x9-"'), 'f'), /has characters WordPress refuses/);
    assert.throws(() => parseWpConfig(`<?php define('DB_NAME', "a$b");`, 'f'), /double-quoted string with a variable/);
    assert.throws(() => parseWpConfig(`<?php define('DB_NAME', 'open`, 'f'), /unterminated string/);
  });

  it("Debian's dispatcher and its defaults", () => {
    const dispatcher = "<?php\n$debian_file = '/etc/wordpress/config-' . strtolower($debian_server) . '.php';\n";
    assert.equal(isDebianDispatcher(dispatcher), true);
    assert.equal(isDebianDispatcher(CONFIG), false);
    const c = parseWpConfig("<?php define('DB_PASSWORD', 'secret-pw');", '/etc/wordpress/config-x.php', { debianDefaults: true });
    assert.deepEqual([c.dbName, c.dbUser, c.dbHost.host, c.tablePrefix], ['wordpress', 'wordpress', 'localhost', 'wp_']);
  });

  it('DB_HOST forms (wpdb::parse_db_host)', () => {
    assert.deepEqual(parseDbHost('localhost'), { raw: 'localhost', host: 'localhost' });
    assert.deepEqual(parseDbHost('127.0.0.1:3307'), { raw: '127.0.0.1:3307', host: '127.0.0.1', port: 3307 });
    assert.deepEqual(parseDbHost('localhost:/run/mysqld/other.sock'), {
      raw: 'localhost:/run/mysqld/other.sock',
      host: 'localhost',
      socket: '/run/mysqld/other.sock',
    });
    assert.deepEqual(parseDbHost('db:3308:/tmp/s.sock'), { raw: 'db:3308:/tmp/s.sock', host: 'db', port: 3308, socket: '/tmp/s.sock' });
    assert.deepEqual(parseDbHost('[::1]:3309'), { raw: '[::1]:3309', host: '::1', port: 3309 });
    assert.deepEqual(parseDbHost(':/tmp/only.sock'), { raw: ':/tmp/only.sock', host: 'localhost', socket: '/tmp/only.sock' });
    assert.throws(() => parseDbHost('db:99999'), /port 99999 out of range/);
    assert.throws(() => parseDbHost('db:abc'), /cannot read it/);
  });

  it('client option file: quoted values, socket or TCP, no password elsewhere', () => {
    const db = { name: 'd', user: 'u', password: 'p"w\\#x', host: parseDbHost('127.0.0.1:3307'), charset: 'utf8' };
    assert.equal(
      clientOptions(db),
      '[client]\nuser="u"\npassword="p\\"w\\\\#x"\nhost="127.0.0.1"\nprotocol=TCP\nport=3307\ndefault-character-set=utf8mb4\n',
    );
    assert.equal(
      clientOptions({ ...db, host: parseDbHost('localhost:3307') }),
      '[client]\nuser="u"\npassword="p\\"w\\\\#x"\ndefault-character-set=utf8mb4\n',
      'localhost:port is the socket, as mysqli does',
    );
  });

  it('version.php and version order', () => {
    assert.equal(parseWpVersion("<?php\n$wp_version = '6.1.9';\n$wp_db_version = 53496;\n", 'v'), '6.1.9');
    assert.throws(() => parseWpVersion('<?php $x = 1;', 'v.php'), /v\.php: no \$wp_version/);
    assert.ok(compareVersions('6.1.9', '6.1.9') === 0);
    assert.ok(compareVersions('6.2', '6.1.9') > 0);
    assert.ok(compareVersions('6.1', '6.1.9') < 0);
    assert.ok(compareVersions('6.5-RC1', '6.4.3') > 0);
  });
});

describe('source URL', () => {
  it('parses and refuses', () => {
    assert.deepEqual(parseSourceUrl('ssh://deploy@legacy.example.net:2222/var/www/site/'), {
      user: 'deploy',
      host: 'legacy.example.net',
      port: 2222,
      path: '/var/www/site',
    });
    assert.deepEqual(parseSourceUrl('ssh://10.0.0.5/srv/wp'), { user: 'root', host: '10.0.0.5', port: 22, path: '/srv/wp' });
    assert.equal(formatSourceUrl(parseSourceUrl('ssh://10.0.0.5/srv/wp') as never), 'ssh://root@10.0.0.5/srv/wp');
    assert.match(String(parseSourceUrl('http://x/y')), /is not ssh:\/\/user@host/);
    assert.match(String(parseSourceUrl('ssh://h:70000/x')), /port 70000 out of range/);
    assert.match(String(parseSourceUrl('ssh://h/a/../etc')), /must be absolute and plain/);
    assert.match(String(parseSourceUrl('ssh://bad_host!/x')), /'bad_host!' is not a host name or address/);
  });
});

describe('plan file', () => {
  const write = (name: string, text: string) => {
    const f = join(tmp, name);
    writeFileSync(f, text);
    return f;
  };
  it('reads sites with defaults', () => {
    const f = write(
      'ok.yml',
      'defaults:\n  key: /root/.ssh/m\nsites:\n  - from: ssh://root@l1/var/www/a\n    domain: a.example\n' +
        '  - from: ssh://u@l2:2222/srv/b\n    domain: b.example\n    new_domain: b.farm.example\n    farm_wordpress: 6.4.3\n',
    );
    assert.deepEqual(
      loadPlan(f).map((s) => [s.domain, s.newDomain, s.source.host, s.source.port, s.key, s.farmWordpress]),
      [
        ['a.example', 'a.example', 'l1', 22, '/root/.ssh/m', undefined],
        ['b.example', 'b.farm.example', 'l2', 2222, '/root/.ssh/m', '6.4.3'],
      ],
    );
  });
  it('every problem at once, as file:line:col field: message (exit 4)', () => {
    const f = write(
      'bad.yml',
      [
        'sites:',
        '  - from: http://l1/var/www/a', // 2
        '    domain: A.example', // 3
        '  - from: ssh://root@l1/x',
        '    domian: b.example', // 5
        '  - from: ssh://root@l1/y',
        '    domain: c.example',
        '  - from: ssh://root@l1/z',
        '    domain: c.example', // 9
        '',
      ].join('\n'),
    );
    assert.throws(
      () => loadPlan(f),
      (e: Error) => {
        assert.ok(e instanceof InputErrors);
        assert.equal(e.exitCode, 4);
        const m = e.messages.map((x) => x.replace(tmp, 'T'));
        assert.deepEqual(m, [
          "T/bad.yml:2:11 sites[0].from: 'http://l1/var/www/a' is not ssh://user@host[:port]/path/to/wordpress",
          'T/bad.yml:3:13 sites[0].domain: "A.example" must be lowercase (write "a.example")',
          'T/bad.yml:4:5 sites[1].domain: is required',
          "T/bad.yml:5:5 sites[1].domian: unknown key 'domian' in sites[1] (did you mean 'domain'?); allowed: from, domain, new_domain, key, farm_wordpress",
        ]);
        return true;
      },
    );
    const dup = write('dup.yml', 'sites:\n  - from: ssh://l1/y\n    domain: c.example\n  - from: ssh://l1/z\n    domain: c.example\n');
    assert.throws(() => loadPlan(dup), /dup\.yml:5:13 sites\[1\]\.domain: c\.example is already planned by sites\[0\]/);
    assert.throws(() => loadPlan(join(tmp, 'none.yml')), /file not found: .*none\.yml/);
    assert.throws(() => loadPlan(write('empty.yml', 'sites: []\n')), /sites: must have at least 1 item/);
  });
});

describe('state file', () => {
  it('next state, plan in words, resume after a kill', () => {
    const s = newState('a.example', 'a.example', 'ssh://root@l1/srv');
    assert.equal(nextState(s), 'inspect');
    assert.equal(describePlan(null), 'run inspect → copy → rewrite → verify → cutover → done');
    s.completed = 'inspect';
    s.running = 'copy';
    assert.equal(nextState(s), 'copy');
    assert.equal(describePlan(s), 'resume at copy (copy was interrupted: run again): copy → rewrite → verify → cutover → done');
    s.completed = 'done';
    s.status = 'done';
    assert.equal(nextState(s), null);
    assert.equal(describePlan(s), 'nothing: done');
    assert.equal(describePlan(s, { rollback: true }), 'nothing to roll back on the source (no maintenance flag)');
  });
  it('saved atomically, private, secrets masked; a broken file is bad input', () => {
    const dir = join(tmp, 'states');
    const s = newState('b.example', 'b.example', 'ssh://root@l1/srv');
    s.error = `connect failed with ${registerSecret('Very-Secret-Pw-42')}`;
    saveState(dir, s);
    const text = readFileSync(join(dir, 'b.example.json'), 'utf8');
    assert.ok(!text.includes('Very-Secret-Pw-42') && text.includes('connect failed with ***'));
    assert.equal(loadState(dir, 'b.example')?.domain, 'b.example');
    assert.equal(loadState(dir, 'c.example'), null);
    writeFileSync(join(dir, 'c.example.json'), '{nope');
    assert.throws(
      () => loadState(dir, 'c.example'),
      (e: Error & { exitCode?: number }) => e.exitCode === 4 && /not JSON/.test(e.message),
    );
  });
});
