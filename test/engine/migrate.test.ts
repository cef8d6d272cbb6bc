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
import { farmSite } from '../../roles/migrate/farm.ts';
import type { MigrateDns } from '../../roles/migrate/dns.ts';
import { CloudflareDns } from '../../lib/cloud/cloudflare.ts';
import { CfFake } from '../harness/cf-fake.ts';
import { rows } from '../../lib/mysql.ts';
import { LEGACY_PW, PHP_CASES, ROOT, seedLegacy, startMariadb, tree, wpConfig } from '../harness/legacy-wp.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

const DOMAIN = 'old.example';
const NEW_DOMAIN = 'nouveau.example.net';
const NEW_BASE = `https://${NEW_DOMAIN}`;

let lab: SshdLab;
let legacy: Connection;
let farm: Connection;
let stateDir: string;
const conns: Connection[] = [];
// the Cloudflare path wired into the states (the requests themselves: test/contract/migrate-dns.test.ts, through Prism)
let cf: CfFake;
let dns: MigrateDns;
const EDGE = '203.0.113.5';
const dnsOf = (name: string) =>
  cf.records
    .filter((r) => r['name'] === name)
    .map((r) => `${r['type'] as string} ${r['content'] as string} ttl=${String(r['ttl'])} proxied=${String(r['proxied'])}`);

function target(name = 'old-example'): Target {
  const db = `wp_${name.replace(/-/g, '_')}`;
  return {
    describe: `db ${db} on ${farm.host.name}`,
    db: { conn: farm, socketPath: '/run/mysqld/mysqld.sock', name: db, user: db, userHost: '%', password: 'TargetPw-0123456789abcdef' },
    files: { conn: farm, contentDir: `/srv/gluster/sites/${name}/wp-content` },
  };
}

async function sourceChecksum(): Promise<string> {
  return (
    await legacy.exec("mariadb -N -e 'CHECKSUM TABLE legacydb.lg7_options, legacydb.lg7_posts, legacydb.lg7_postmeta, legacydb.other_app'")
  ).stdout;
}

function opts(over: Partial<Parameters<typeof migrateSite>[0]> = {}): Parameters<typeof migrateSite>[0] {
  const src = parseSourceUrl(`ssh://root@${lab.hosts[0]!.address}${ROOT}`);
  assert.ok(typeof src !== 'string', String(src));
  return { domain: DOMAIN, newDomain: NEW_DOMAIN, source: src, sourceConn: legacy, target: target(), stateDir, dns, ...over };
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
    made = await seedLegacy(legacy);
    before0 = await sourceChecksum();
    stateDir = mkdtempSync(join(tmpdir(), 'wpfarm-migrate-'));
    cf = new CfFake('cf-engine-token-0123456789');
    cf.addZone('example.net');
    await cf.start();
    dns = { dns: new CloudflareDns({ token: cf.token, baseUrl: cf.url, baseDelayMs: 5 }), zone: 'example.net', edge: EDGE };
    // the legacy name's record, DNS only, one hour
    await dns.dns.restoreRecords({
      zoneName: 'example.net',
      names: [NEW_DOMAIN],
      records: [{ name: NEW_DOMAIN, type: 'A', content: '198.51.100.7', proxied: false, ttl: 3600 }],
    });
  });
  after(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
    await lab?.stop();
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    await cf?.stop();
  });

  test('refusals name the site and the reason, create nothing, never show the DB password', async () => {
    await tree(legacy, '/srv/www/multi', { config: wpConfig({ extra: "define( 'MULTISITE', true );" }) });
    await tree(legacy, '/srv/www/newer', { version: '9.9.1' });
    await tree(legacy, '/srv/www/badpw', { config: wpConfig({ password: 'wrong-password-QZ1' }) });
    await tree(legacy, '/srv/www/noconf', { config: null });
    await legacy.exec('ln -s /nonexistent/wp-config.php /srv/www/noconf/wp-config.php');
    await tree(legacy, '/srv/www/getenv', {
      config: wpConfig({}).replace(/define\( 'DB_PASSWORD'.*\n/, "define( 'DB_PASSWORD', getenv('PW') );\n"),
    });
    await tree(legacy, '/srv/www/prefix', { config: wpConfig({ prefix: 'zz_' }) });
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
    assert.match(r.plan!, /^run inspect → copy → rewrite → verify → cutover → done \(WordPress 6\.1\.9, 6 tables, /);
    assert.equal(existsSync(join(stateDir, `${DOMAIN}.json`)), false);
    assert.deepEqual(await targetLeftovers(target()), []);
  });

  test('a failure before cutover removes what was created on the target and in the farm', async () => {
    const sitesDir = mkdtempSync(join(tmpdir(), 'wpfarm-migrate-sites-'));
    let undeployed = 0;
    const farmSiteOf = () =>
      farmSite({
        id: 'nouveau-example-net',
        domain: NEW_DOMAIN,
        sitesDir,
        managementCidrs: ['192.0.2.0/24'],
        managers: [farm],
        deploy: async () => ({ skipped: 'not reached' }),
        // the swarm part (the stack deployed at verify) is the lab's (test/lab/66); here: it is asked for, once
        undeploy: async () => {
          undeployed++;
          return ['stack wp-nouveau-example-net removed'];
        },
      });
    const fs = farmSiteOf();
    let seen: string[] = [];
    await assert.rejects(
      migrateSite(
        opts({
          farm: fs,
          onState: async (s) => {
            if (s === 'rewrite') seen = [existsSync(fs.recordFile) ? 'record' : '', ...(await fs.leftovers())];
            if (s === 'rewrite') throw new Error('injected failure at rewrite');
          },
        }),
      ),
      /injected failure at rewrite/,
    );
    // there before the failure: the record and the secret store entry; gone after it
    assert.equal(seen[0], 'record');
    assert.ok(
      seen.some((x) => /secret store entry/.test(x)),
      seen.join('; '),
    );
    assert.deepEqual(await fs.leftovers(), []);
    assert.equal(existsSync(fs.recordFile), false);
    assert.equal(undeployed, 1, "the cleanup removes the site's stack too");
    assert.deepEqual(await targetLeftovers(target()), []);
    // the TTL lowered at copy is back to the hour
    assert.ok(cf.mutations().some((m) => m.method === 'PUT' && (m.body as { ttl?: number }).ttl === 60));
    assert.deepEqual(dnsOf(NEW_DOMAIN), ['A 198.51.100.7 ttl=3600 proxied=false']);
    rmSync(join(stateDir, `${DOMAIN}.json`));
    rmSync(sitesDir, { recursive: true });
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

  test('disk full on the target: the site and the reason named, nothing half-created left', async () => {
    // a full Gluster volume: a 512 KiB tmpfs for the site directories (the uploads hold more than 1 MB)
    await farm.exec('install -d /srv/small-volume && mount -t tmpfs -o size=512k tmpfs /srv/small-volume');
    const small: Target = {
      ...target('full-example'),
      files: { conn: farm, contentDir: '/srv/small-volume/full-example' },
    };
    await assert.rejects(migrateSite(opts({ target: small, dns: undefined })), (e: Error) => {
      assert.match(e.message, /^site old\.example: copy failed: the target is out of disk space: rsync .*No space left on device/);
      assert.match(e.message, /what it created was removed$/);
      assert.ok(!e.message.includes(LEGACY_PW));
      return true;
    });
    assert.deepEqual(await targetLeftovers(small), []);
    assert.equal((await farm.exec('ls -A /srv/small-volume')).stdout, '');
    const st = loadState(stateDir, DOMAIN)!;
    assert.equal(st.status, 'failed');
    assert.ok(st.history.some((h) => h.state === 'cleanup' && h.ok));
    await farm.exec('umount /srv/small-volume');
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
    await farm.exec(
      'install -d /srv/gluster/sites/old-example/wp-content/uploads && echo partial > /srv/gluster/sites/old-example/wp-content/junk',
    );

    const logs: string[] = [];
    const r = await migrateSite(opts({ until: 'verify', log: (m) => logs.push(m) }));
    assert.equal(r.state.completed, 'verify', logs.join('\n'));
    assert.deepEqual(
      r.state.history.filter((h) => h.ok).map((h) => h.state),
      ['inspect', 'copy', 'rewrite', 'verify'],
    );
    const verify = r.state.history.find((h) => h.state === 'verify' && h.ok)!.summary!;
    assert.equal(verify.tables, 6);
    assert.equal(verify.uploads, 2);
    assert.deepEqual(verify.countsChangedDuringCopy, []);
    // the TTL lowered ahead of the move, the original recorded
    assert.deepEqual(dnsOf(NEW_DOMAIN), ['A 198.51.100.7 ttl=60 proxied=false']);
    assert.deepEqual(r.state.dns?.previous, [{ name: NEW_DOMAIN, type: 'A', content: '198.51.100.7', proxied: false, ttl: 3600 }]);
    // only the malformed option still holds the old URL (guid is not rewritten by design, and not counted)
    // still holding the old URL text: the malformed option, an option whose only URL is an array KEY (kept, as
    // wp-cli does), and text naming other hosts (old.example.org, old.example-shop.test: not the site's origin)
    assert.deepEqual(verify.oldUrlsLeft, { 'wp_options.option_value': 3, 'wp_posts.post_content': 1 });
    const rw = r.state.history.find((h) => h.state === 'rewrite' && h.ok)!.summary!;
    assert.equal((rw.problems as string[]).length, 1);
    assert.match((rw.problems as string[])[0]!, /wp_options\.option_value option_id=4: malformed serialized value left as it is/);
    assert.ok(Number(rw.replaced) >= 70, `replaced ${rw.replaced}`);

    // the copy: no leftovers of the killed run, no cache, no other application's table
    const files = (await farm.exec('cd /srv/gluster/sites/old-example/wp-content && find . -type f | sort')).stdout;
    assert.equal(
      files,
      './plugins/hello/hello.php\n./themes/classic/style.css\n./uploads/2024/05/big.bin\n./uploads/2024/05/na me 😀.txt\n',
    );
    const tables = await withTargetDb(target().db, (db) => rows(db, 'SHOW TABLES'), 'wp_old_example');
    assert.deepEqual(tables.map((t) => Object.values(t)[0]).sort(), [
      'wp_options',
      'wp_postmeta',
      'wp_posts',
      'wp_term_relationships',
      'wp_usermeta',
      'wp_users',
    ]);
  });

  test('rewritten values: PHP unserialize() equals the original with the URL replaced; text, guid, broken value', async () => {
    const got = await withTargetDb(
      target().db,
      (db) => rows(db, "SELECT option_name AS n, option_value AS v FROM wp_options WHERE option_name LIKE 'case\\_%' ORDER BY option_id"),
      'wp_old_example',
    );
    assert.equal(got.length, made.length);
    const pairs = got.map((r, i) => ({ original: made[i]!, rewritten: String(r.v) }));
    const out = execFileSync('/usr/bin/php', [PHP_CASES, 'check'], { input: JSON.stringify(pairs), encoding: 'utf8' });
    assert.equal(out.split('\n').filter((l) => l.endsWith(': ok')).length, made.length, out);
    const meta = await withTargetDb(
      target().db,
      (db) => rows(db, 'SELECT meta_value AS v FROM wp_postmeta ORDER BY meta_id'),
      'wp_old_example',
    );
    const metaOut = execFileSync('/usr/bin/php', [PHP_CASES, 'check'], {
      input: JSON.stringify(meta.map((r, i) => ({ original: made[i]!, rewritten: String(r.v) }))),
      encoding: 'utf8',
    });
    assert.equal(metaOut.split('\n').filter((l) => l.endsWith(': ok')).length, 4, metaOut);
    const o = await withTargetDb(
      target().db,
      (db) =>
        rows(
          db,
          "SELECT option_name AS n, option_value AS v FROM wp_options WHERE option_name IN ('siteurl','home','blogname','broken_serialized')",
        ),
      'wp_old_example',
    );
    const byName = Object.fromEntries(o.map((r) => [String(r.n), String(r.v)]));
    assert.deepEqual(byName, {
      siteurl: NEW_BASE,
      home: NEW_BASE,
      blogname: 'Vieux site 😀',
      broken_serialized: 'a:1:{s:3:"url";s:5:"http://old.example/broken";}',
    });
    const posts = await withTargetDb(
      target().db,
      (db) => rows(db, 'SELECT post_title AS t, post_content AS c, guid AS g FROM wp_posts ORDER BY ID'),
      'wp_old_example',
    );
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
    const [u] = await withTargetDb(target().db, (db) => rows(db, 'SELECT user_pass AS p, user_url AS u FROM wp_users'), 'wp_old_example');
    assert.deepEqual([u!.p, u!.u], ['$P$Bq3YyS4YH6T0nLgk9o0cU2yJ0ZlW1.0', NEW_BASE], 'password hashes kept');
    // the farm's prefix: what WordPress keys by the prefix is renamed with the tables
    const keyed = await withTargetDb(
      target().db,
      async (db) => [
        ...(await rows(db, "SELECT option_name AS k FROM wp_options WHERE option_name LIKE '%user\\_roles'")),
        ...(await rows(db, 'SELECT meta_key AS k FROM wp_usermeta ORDER BY umeta_id')),
      ],
      'wp_old_example',
    );
    assert.deepEqual(
      keyed.map((r) => r.k),
      ['wp_user_roles', 'wp_capabilities', 'wp_user_level', 'nickname'],
    );
  });

  test('cutover: maintenance flag on the source, final delta, done; a rerun does nothing; rollback removes the flag', async () => {
    // a change on the source after the first copy must reach the target with the delta
    await legacy.exec(`printf 'late upload' > ${ROOT}/wp-content/uploads/2024/05/late.txt`);
    await legacy.exec(
      `mariadb legacydb -e "INSERT INTO lg7_posts (post_title, post_content, guid) VALUES ('Late', 'http://old.example/late', 'x')"`,
    );
    const r = await migrateSite(opts());
    assert.equal(r.state.status, 'done');
    assert.equal(r.state.completed, 'done');
    const cut = r.state.history.find((h) => h.state === 'cutover' && h.ok)!.summary!;
    assert.equal((cut.verified as { uploads: number }).uploads, 3);
    assert.ok(Number(cut.maintenanceMs) > 0);
    // the name points at the farm's edge, as add-site makes it
    assert.deepEqual(dnsOf(NEW_DOMAIN), [`A ${EDGE} ttl=1 proxied=true`]);
    assert.deepEqual((cut.dns as { updated: string[] }).updated, [`${NEW_DOMAIN} 198.51.100.7 -> ${EDGE}`]);
    const flag = (await legacy.exec(`cat ${ROOT}/.maintenance`)).stdout;
    assert.match(flag, /^<\?php \$upgrading = time\(\); \/\/ wpfarm migration: old\.example/);
    const [late] = await withTargetDb(
      target().db,
      (db) => rows(db, "SELECT post_content AS c FROM wp_posts WHERE post_title = 'Late'"),
      'wp_old_example',
    );
    assert.equal(late?.c, `${NEW_BASE}/late`);
    const n = r.state.history.length;
    const again = await migrateSite(opts());
    assert.equal(again.state.history.length, n, 'a finished cutover is never redone');

    const check = await rollbackSite({ ...opts(), check: true });
    assert.equal(check.plan, `remove the maintenance flag from the source; put the DNS records of ${NEW_DOMAIN} back as they were`);
    const rb = await rollbackSite(opts());
    assert.equal(rb.state.status, 'rolled-back');
    assert.deepEqual(dnsOf(NEW_DOMAIN), ['A 198.51.100.7 ttl=3600 proxied=false'], 'the old address, its old TTL');
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
