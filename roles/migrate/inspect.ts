// inspect: what a legacy site is, read from its host without changing anything. wp-config.php (DB name, user,
// host[:port|:/socket], prefix, multisite; Debian's dispatcher followed to /etc/wordpress/config-<domain>.php),
// the WordPress version (wp-includes/version.php), the PHP version, the sizes of wp-content, uploads and the
// database, siteurl/home. Refuses what cannot be migrated: not a WordPress tree, an unreadable config, a
// multisite, a WordPress newer than the farm's image, a prefix with no options table, wrong DB credentials.
// The DB password is registered as a secret the moment it is read; it is never in the state file.
import { registerSecret } from '../../lib/secrets.ts';
import { quote, sections } from '../../lib/shell.ts';
import type { Connection } from '../../lib/types.ts';
import { type SourceUrl, SiteRefused } from './source.ts';
import { type DbHost, WpConfigError, compareVersions, isDebianDispatcher, parseWpConfig, parseWpVersion } from './wpconfig.ts';

/** What a migration needs to reach the source's database (the password is in memory only). */
export interface SourceDb {
  name: string;
  user: string;
  password: string;
  host: DbHost;
  charset: string;
}

/** The recorded result of inspect (no secret in it). */
export interface Inspection {
  root: string;
  configFile: string;
  contentDir: string;
  wpVersion: string;
  phpVersion: string;
  db: { name: string; user: string; host: string; charset: string };
  tablePrefix: string;
  siteurl: string;
  home: string;
  tables: number;
  dbBytes: number;
  contentBytes: number;
  uploadsBytes: number;
}

export interface InspectOptions {
  domain: string;
  source: SourceUrl;
  /** the WordPress version of the farm's image: a newer source is refused (no downgrade of the schema) */
  farmWpVersion: string;
}

/** An option file for the MariaDB/MySQL clients, given on stdin (--defaults-extra-file=/dev/stdin): no password in argv. */
export function clientOptions(db: SourceDb): string {
  const q = (v: string) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
  const lines = ['[client]', `user=${q(db.user)}`, `password=${q(db.password)}`];
  if (db.host.socket) lines.push(`socket=${q(db.host.socket)}`);
  else if (db.host.host !== 'localhost' || db.host.port) {
    // MySQL clients take "localhost" as the socket: with a port WordPress (mysqli) still uses the socket, as we do
    if (db.host.host !== 'localhost') lines.push(`host=${q(db.host.host)}`, 'protocol=TCP');
    if (db.host.port && db.host.host !== 'localhost') lines.push(`port=${db.host.port}`);
  }
  lines.push(`default-character-set=${db.charset === 'utf8' ? 'utf8mb4' : db.charset}`);
  return `${lines.join('\n')}\n`;
}

/** run the `mysql` client on the source with the site's credentials; tab-separated rows */
export async function sourceQuery(conn: Connection, db: SourceDb, sql: string): Promise<string[][]> {
  const r = await conn.exec(`mysql --defaults-extra-file=/dev/stdin -N -B ${quote(db.name)} -e ${quote(sql)}`, {
    stdin: clientOptions(db),
    nothrow: true,
  });
  if (r.code !== 0) throw new Error(r.stderr.trim().split('\n').pop() || `mysql exited ${r.code}`);
  return r.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split('\t'));
}

export async function inspectSource(conn: Connection, o: InspectOptions): Promise<{ inspection: Inspection; db: SourceDb }> {
  const refuse = (why: string): never => {
    throw new SiteRefused(o.domain, why);
  };
  const root = o.source.path;
  const probe = await conn.exec(
    [
      `cd -- ${quote(root)} 2>/dev/null || { echo @@nodir; exit 0; }`,
      'echo @@files',
      'for f in wp-settings.php wp-includes/version.php wp-config.php ../wp-config.php ../wp-settings.php; do',
      '  { [ -e "$f" ] || [ -L "$f" ]; } && echo "$f"', // a dangling wp-config.php link: there, and unreadable
      'done',
      'echo @@version',
      'cat wp-includes/version.php 2>/dev/null',
      'echo @@php',
      "php -r 'echo PHP_VERSION;' 2>/dev/null || true",
    ].join('\n'),
    { nothrow: true },
  );
  const s = sections(probe.stdout);
  if (s.has('nodir')) refuse(`${root} is not a directory on ${o.source.host}`);
  const files = new Set((s.get('files') ?? '').split('\n').filter(Boolean));
  if (!files.has('wp-settings.php') || !files.has('wp-includes/version.php')) {
    refuse(`${root} is not a WordPress tree (no wp-settings.php and wp-includes/version.php)`);
  }
  let wpVersion = '';
  try {
    wpVersion = parseWpVersion(s.get('version') ?? '', `${root}/wp-includes/version.php`);
  } catch (e) {
    refuse((e as Error).message);
  }
  if (compareVersions(wpVersion, o.farmWpVersion) > 0) {
    refuse(`WordPress ${wpVersion} is newer than the farm's image (${o.farmWpVersion}): its database cannot be run by an older WordPress`);
  }
  // WordPress looks for wp-config.php in ABSPATH, then one level up when that one is not another install
  const configFile = files.has('wp-config.php')
    ? `${root}/wp-config.php`
    : files.has('../wp-config.php') && !files.has('../wp-settings.php')
      ? `${root.replace(/\/[^/]+$/, '') || ''}/wp-config.php`
      : refuse(`no wp-config.php in ${root} or its parent`);
  const read = async (file: string): Promise<{ text: string } | { error: string }> => {
    const r = await conn.exec(`cat -- ${quote(file)}`, { nothrow: true });
    return r.code === 0 ? { text: r.stdout } : { error: r.stderr.trim().split('\n').pop() || `cat exited ${r.code}` };
  };
  let cfgFile = configFile;
  let cfg = await read(cfgFile);
  if ('error' in cfg) refuse(`cannot read ${cfgFile}: ${cfg.error}`);
  let debian = false;
  if ('text' in cfg && isDebianDispatcher(cfg.text)) {
    // Debian's dispatcher: config-<host>.php, config-<host minus its first label>.php, config-default.php
    debian = true;
    const host = o.domain.toLowerCase();
    const candidates = [host, host.replace(/^[^.]+\./, ''), 'default'].map((n) => `/etc/wordpress/config-${n}.php`);
    const r = await conn.exec(`for f in ${candidates.map(quote).join(' ')}; do [ -e "$f" ] && { echo "$f"; break; }; done; true`);
    const found = r.stdout.trim();
    if (!found) refuse(`${configFile} is Debian's dispatcher and none of ${candidates.join(', ')} exists`);
    cfgFile = found;
    cfg = await read(cfgFile);
    if ('error' in cfg) refuse(`cannot read ${cfgFile}: ${cfg.error}`);
  }
  let parsed: ReturnType<typeof parseWpConfig> | undefined;
  try {
    parsed = parseWpConfig((cfg as { text: string }).text, cfgFile, { debianDefaults: debian });
  } catch (e) {
    if (e instanceof WpConfigError) refuse(e.message);
    throw e;
  }
  const c = parsed!;
  if (c.dbPassword.length >= 4) registerSecret(c.dbPassword);
  if (c.multisite) refuse(`${cfgFile} defines MULTISITE: multisite networks are not migrated (one site per farm site)`);
  const contentDir = c.contentDir ?? (debian ? '/var/lib/wordpress/wp-content' : `${root}/wp-content`);
  const db: SourceDb = { name: c.dbName, user: c.dbUser, password: c.dbPassword, host: c.dbHost, charset: c.dbCharset };

  // the database: credentials, prefix, multisite tables, siteurl/home, size
  const p = c.tablePrefix;
  let tableRows: string[][] = [];
  try {
    tableRows = await sourceQuery(
      conn,
      db,
      `SELECT TABLE_NAME, COALESCE(DATA_LENGTH + INDEX_LENGTH, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()`,
    );
  } catch (e) {
    refuse(`cannot query database ${c.dbName} as ${c.dbUser}@${c.dbHost.raw}: ${(e as Error).message}`);
  }
  const names = new Set(tableRows.map((r) => r[0]));
  if (!names.has(`${p}options`)) refuse(`no table ${p}options in ${c.dbName} (table prefix '${p}' from ${cfgFile})`);
  if (names.has(`${p}blogs`) || names.has(`${p}site`)) refuse(`${c.dbName} has ${p}blogs/${p}site tables: a multisite network`);
  const opts = await sourceQuery(
    conn,
    db,
    `SELECT option_name, option_value FROM \`${p}options\` WHERE option_name IN ('siteurl', 'home')`,
  );
  const opt = new Map(opts.map((r) => [r[0], r[1] ?? '']));
  const siteurl = c.siteurl ?? opt.get('siteurl') ?? '';
  const home = c.home ?? opt.get('home') ?? '';
  if (!/^https?:\/\//.test(siteurl) || !/^https?:\/\//.test(home)) refuse(`siteurl/home are not URLs ('${siteurl}', '${home}')`);
  const ours = c.tablePrefix;
  const dbBytes = tableRows.filter((r) => r[0]?.startsWith(ours)).reduce((a, r) => a + Number(r[1] ?? 0), 0);

  const du = await conn.exec(
    `du -sb -- ${quote(contentDir)} ${quote(`${contentDir}/uploads`)} 2>/dev/null | cut -f1; test -d ${quote(contentDir)} || echo missing`,
    { nothrow: true },
  );
  const sizes = du.stdout.split('\n').filter(Boolean);
  if (sizes.includes('missing')) refuse(`wp-content directory ${contentDir} does not exist`);
  const inspection: Inspection = {
    root,
    configFile: cfgFile,
    contentDir,
    wpVersion,
    phpVersion: (s.get('php') ?? '').trim() || 'unknown',
    db: { name: c.dbName, user: c.dbUser, host: c.dbHost.raw, charset: c.dbCharset },
    tablePrefix: p,
    siteurl,
    home,
    tables: [...names].filter((n) => n?.startsWith(p)).length,
    dbBytes,
    contentBytes: Number(sizes[0] ?? 0),
    uploadsBytes: Number(sizes[1] ?? 0),
  };
  return { inspection, db };
}
