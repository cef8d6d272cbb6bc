// The site's database: copied from the legacy host (mysqldump --single-transaction, streamed through the two SSH
// connections into the target's MariaDB, never held whole in memory), rewritten in place (old URL → new URL,
// serialized-safe: ./serialized.ts), and counted on both sides (verify).
import { Transform } from 'node:stream';
import type { ResultSetHeader } from 'mysql2/promise';
import { type Db, rows, withMysql } from '../../lib/mysql.ts';
import { quote } from '../../lib/shell.ts';
import type { Connection } from '../../lib/types.ts';
import { execStream } from './files.ts';
import { type SourceDb, clientOptions, sourceQuery } from './inspect.ts';
import { type UrlPair, expandPairs, rewriteValue } from './serialized.ts';

/** The site's database on the target, reached as root through the DB host's socket. */
export interface TargetDb {
  conn: Connection;
  socketPath: string;
  name: string;
  user: string;
  /** the Host part of the site user ('%', a CIDR pattern, 'localhost') */
  userHost: string;
  password: string;
}

const IDENT = /^[A-Za-z0-9_$]+$/;
/** a table or database name safe to write in backquotes (WordPress's are; anything else is refused) */
export function ident(name: string): string {
  if (!IDENT.test(name)) throw new Error(`refusing the identifier '${name}' (only letters, digits, _ and $)`);
  return `\`${name}\``;
}

export function withTargetDb<T>(t: TargetDb, fn: (db: Db) => Promise<T>, database?: string): Promise<T> {
  return withMysql(t.conn, { socketPath: t.socketPath, user: 'root', database }, fn);
}

/** The base tables of the site (its prefix) in the source database. */
export async function sourceTables(conn: Connection, db: SourceDb, prefix: string): Promise<string[]> {
  const r = await sourceQuery(
    conn,
    db,
    `SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`,
  );
  return r.map((x) => x[0]!).filter((n) => n.startsWith(prefix));
}

export interface CopyStats {
  tables: number;
  bytes: number;
  ms: number;
}

/** Dump `tables` on the source into the (emptied) target database, streamed. */
export async function copyDatabase(src: Connection, srcDb: SourceDb, tables: string[], tgt: TargetDb): Promise<CopyStats> {
  const t0 = performance.now();
  for (const t of tables) ident(t);
  await withTargetDb(tgt, async (db) => {
    await db.query(`DROP DATABASE IF EXISTS ${ident(tgt.name)}`);
    await db.query(`CREATE DATABASE ${ident(tgt.name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  });
  const dump = execStream(src)(
    `mysqldump --defaults-extra-file=/dev/stdin --single-transaction --quick --hex-blob --no-tablespaces --skip-lock-tables ` +
      `--add-drop-table --skip-triggers ${quote(srcDb.name)} ${tables.map(quote).join(' ')}`,
    { stdin: [Buffer.from(clientOptions(srcDb))] },
  );
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  dump.stdout.pipe(counter);
  const load = execStream(tgt.conn)(`mariadb --default-character-set=utf8mb4 ${quote(tgt.name)}`, { stdin: [counter] });
  const [d, l] = await Promise.all([dump.done, load.done]);
  if (d.code !== 0) throw new Error(`mysqldump on ${src.host.name} failed (exit ${d.code}): ${lastLine(d.stderr)}`);
  if (l.code !== 0) throw new Error(`loading into ${tgt.name} on ${tgt.conn.host.name} failed (exit ${l.code}): ${lastLine(l.stderr)}`);
  return { tables: tables.length, bytes, ms: Math.round(performance.now() - t0) };
}

/** The table prefix of every farm site (files/images/wordpress-fpm/wp-config.php). */
export const FARM_PREFIX = 'wp_';

/** The target's name of a source table: the site's prefix becomes the farm's. */
export function targetTable(table: string, prefix: string): string {
  return table.startsWith(prefix) ? `${FARM_PREFIX}${table.slice(prefix.length)}` : table;
}

/**
 * Rename the copied tables from the site's prefix to the farm's, with what WordPress keys by prefix: the
 * `<prefix>user_roles` option (and any option named with the prefix) and the `<prefix>capabilities`,
 * `<prefix>user_level`, ... user meta keys. Nothing to do for a site already on wp_.
 */
export async function renamePrefix(tgt: TargetDb, prefix: string): Promise<{ tables: number; options: number; usermeta: number }> {
  const out = { tables: 0, options: 0, usermeta: 0 };
  if (prefix === FARM_PREFIX) return out;
  await withTargetDb(
    tgt,
    async (db) => {
      const tables = (await rows(db, 'SELECT TABLE_NAME AS t FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()')).map((r) =>
        String(r.t),
      );
      const ours = tables.filter((t) => t.startsWith(prefix));
      const clash = ours.map((t) => targetTable(t, prefix)).filter((t) => tables.includes(t));
      if (clash.length) throw new Error(`cannot rename the table prefix ${prefix} to ${FARM_PREFIX}: ${clash.join(', ')} exist`);
      if (ours.length) {
        await db.query(`RENAME TABLE ${ours.map((t) => `${ident(t)} TO ${ident(targetTable(t, prefix))}`).join(', ')}`);
      }
      out.tables = ours.length;
      const like = `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      const renamed = (col: string) => `CONCAT(?, SUBSTRING(${col}, ${prefix.length + 1}))`;
      if (ours.includes(`${prefix}options`)) {
        const [r] = await db.query<ResultSetHeader>(
          `UPDATE ${ident(`${FARM_PREFIX}options`)} SET option_name = ${renamed('option_name')} WHERE option_name LIKE BINARY ?`,
          [FARM_PREFIX, like],
        );
        out.options = r.affectedRows;
      }
      if (ours.includes(`${prefix}usermeta`)) {
        const [r] = await db.query<ResultSetHeader>(
          `UPDATE ${ident(`${FARM_PREFIX}usermeta`)} SET meta_key = ${renamed('meta_key')} WHERE meta_key LIKE BINARY ?`,
          [FARM_PREFIX, like],
        );
        out.usermeta = r.affectedRows;
      }
    },
    tgt.name,
  );
  return out;
}

const lastLine = (s: string) => s.trim().split('\n').pop() ?? '';

/** The URL pairs of a migration: home and siteurl, over http and https, to the new base URL. */
export function urlPairs(urls: string[], newBase: string): UrlPair[] {
  const out: UrlPair[] = [];
  for (const u of urls) {
    const m = /^https?:\/\/(.+?)\/*$/.exec(u);
    if (!m) continue;
    for (const scheme of ['http', 'https']) out.push({ from: `${scheme}://${m[1]}`, to: newBase.replace(/\/+$/, '') });
  }
  return expandPairs(out);
}

export interface RewriteReport {
  rows: number;
  replaced: number;
  /** "table.column key=...: problem" */
  problems: string[];
  ms: number;
}

/** columns never rewritten: the post GUID is an identifier, not a link (WordPress's own advice) */
export const SKIP_COLUMNS = new Set(['guid']);

/** Rewrite every text column of the site's tables on the target. */
export async function rewriteDatabase(tgt: TargetDb, prefix: string, pairs: readonly UrlPair[]): Promise<RewriteReport> {
  const t0 = performance.now();
  const report: RewriteReport = { rows: 0, replaced: 0, problems: [], ms: 0 };
  await withTargetDb(
    tgt,
    async (db) => {
      const cols = await rows(
        db,
        `SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()
         AND DATA_TYPE IN ('char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext') ORDER BY TABLE_NAME, ORDINAL_POSITION`,
      );
      const keys = await rows(
        db,
        `SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE()
         AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY TABLE_NAME, ORDINAL_POSITION`,
      );
      const byTable = new Map<string, string[]>();
      for (const r of cols) {
        const t = String(r.t);
        if (!t.startsWith(prefix) || SKIP_COLUMNS.has(String(r.c))) continue;
        byTable.set(t, [...(byTable.get(t) ?? []), String(r.c)]);
      }
      const pk = new Map<string, string[]>();
      for (const r of keys) pk.set(String(r.t), [...(pk.get(String(r.t)) ?? []), String(r.c)]);
      const likes = pairs.map((p) => `%${p.from.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      for (const [table, columns] of byTable) {
        const key = pk.get(table);
        const where = columns.map((c) => `(${likes.map(() => `${ident(c)} LIKE ?`).join(' OR ')})`).join(' OR ');
        const params = columns.flatMap(() => likes);
        if (!key?.length) {
          const [n] = await rows(db, `SELECT COUNT(*) AS n FROM ${ident(table)} WHERE ${where}`, params);
          if (Number(n?.n)) report.problems.push(`${table}: ${n?.n} row(s) with the old URL, no primary key: not rewritten`);
          continue;
        }
        const select = `SELECT ${[...key, ...columns].map(ident).join(', ')} FROM ${ident(table)}`;
        // keyset pages on a one-column key (WordPress's tables); a composite key in one query
        let last: unknown = null;
        for (;;) {
          const page =
            key.length === 1
              ? await rows(
                  db,
                  `${select} WHERE (${where})${last === null ? '' : ` AND ${ident(key[0]!)} > ?`} ORDER BY ${ident(key[0]!)} LIMIT 500`,
                  last === null ? params : [...params, last],
                )
              : await rows(db, `${select} WHERE ${where}`, params);
          for (const r of page) {
            const set: string[] = [];
            const vals: unknown[] = [];
            for (const c of columns) {
              const v = r[c];
              if (typeof v !== 'string') continue;
              const res = rewriteValue(v, pairs);
              const at = `${table}.${c} ${key.map((k) => `${k}=${String(r[k])}`).join(',')}`;
              for (const p of res.problems) report.problems.push(`${at}: ${p}`);
              if (res.value !== v) {
                set.push(`${ident(c)} = ?`);
                vals.push(res.value);
                report.replaced += res.replaced;
              }
            }
            if (!set.length) continue;
            await db.query(`UPDATE ${ident(table)} SET ${set.join(', ')} WHERE ${key.map((k) => `${ident(k)} = ?`).join(' AND ')}`, [
              ...vals,
              ...key.map((k) => r[k]),
            ]);
            report.rows++;
          }
          if (key.length !== 1 || page.length < 500) break;
          last = page[page.length - 1]![key[0]!];
        }
      }
    },
    tgt.name,
  );
  report.ms = Math.round(performance.now() - t0);
  return report;
}

/** exact row counts per table, source side (through the mysql client, in one query) */
export async function sourceCounts(conn: Connection, db: SourceDb, tables: string[]): Promise<Map<string, number>> {
  if (!tables.length) return new Map();
  const sql = tables.map((t) => `SELECT '${t}', COUNT(*) FROM ${ident(t)}`).join(' UNION ALL ');
  return new Map((await sourceQuery(conn, db, sql)).map((r) => [r[0]!, Number(r[1])]));
}

/** exact row counts per table on the target, keyed by the SOURCE table names (the target's have the farm prefix) */
export async function targetCounts(tgt: TargetDb, tables: string[], prefix: string): Promise<Map<string, number>> {
  if (!tables.length) return new Map();
  return withTargetDb(
    tgt,
    async (db) => {
      const sql = tables.map((t) => `SELECT '${t}' AS t, COUNT(*) AS n FROM ${ident(targetTable(t, prefix))}`).join(' UNION ALL ');
      return new Map((await rows(db, sql)).map((r) => [String(r.t), Number(r.n)]));
    },
    tgt.name,
  );
}

/** rows still holding an old URL on the target (skipped columns aside), per table */
export async function remainingOldUrls(tgt: TargetDb, prefix: string, pairs: readonly UrlPair[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  await withTargetDb(
    tgt,
    async (db) => {
      const cols = await rows(
        db,
        `SELECT TABLE_NAME AS t, COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()
         AND DATA_TYPE IN ('char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext')`,
      );
      for (const r of cols) {
        const t = String(r.t);
        const c = String(r.c);
        if (!t.startsWith(prefix) || SKIP_COLUMNS.has(c)) continue;
        // whole-origin matches only would need the rewrite's own test; LIKE over-counts `old.example.org`: fine for a check
        const ors = pairs.map(() => `BINARY ${ident(c)} LIKE BINARY ?`).join(' OR ');
        const [n] = await rows(
          db,
          `SELECT COUNT(*) AS n FROM ${ident(t)} WHERE ${ors}`,
          pairs.map((p) => `%${p.from.replace(/[\\%_]/g, (x) => `\\${x}`)}%`),
        );
        if (Number(n?.n)) out.set(`${t}.${c}`, Number(n?.n));
      }
    },
    tgt.name,
  );
  return out;
}
