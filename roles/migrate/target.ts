// Where a migrated site goes: its database and user on a MariaDB server (the farm's Galera writer; in the engine
// test a second host standing in for it) and its wp-content directory on a files host (the farm's Gluster mount).
// create() is idempotent; remove() takes away everything a migration created there (a site that never reached
// cutover leaves nothing behind). What exists before a migration starts is never touched: exists() refuses it.
import { rows } from '../../lib/mysql.ts';
import { registerSecret } from '../../lib/secrets.ts';
import { quote } from '../../lib/shell.ts';
import type { Connection } from '../../lib/types.ts';
import { type TargetDb, ident, withTargetDb } from './db.ts';

export interface Target {
  /** "db wp_x on db1, files /srv/... on w1" */
  describe: string;
  db: TargetDb;
  /** owner: the uid (or name) every copied file gets on the target (default: the source's, as rsync -a keeps them) */
  files: { conn: Connection; contentDir: string; owner?: string };
}

/** The target's database, user or content directory already there: what? (empty when none) */
export async function targetLeftovers(t: Target): Promise<string[]> {
  const out: string[] = [];
  await withTargetDb(t.db, async (db) => {
    if ((await rows(db, 'SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [t.db.name])).length) {
      out.push(`database ${t.db.name}`);
    }
    if ((await rows(db, 'SELECT 1 FROM mysql.user WHERE User = ?', [t.db.user])).length) out.push(`database user ${t.db.user}`);
  });
  const r = await t.files.conn.exec(`test -e ${quote(t.files.contentDir)} && echo yes || true`);
  if (r.stdout.trim() === 'yes') out.push(`directory ${t.files.contentDir}`);
  return out;
}

/** Database, user (rights on that database only) and content directory. */
export async function createTarget(t: Target): Promise<void> {
  registerSecret(t.db.password);
  await withTargetDb(t.db, async (db) => {
    await db.query(`CREATE DATABASE IF NOT EXISTS ${ident(t.db.name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
    await db.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?', [t.db.user, t.db.userHost, t.db.password]);
    // the site's stored password, whatever an earlier run left (the wp-site role expects the store's)
    await db.query('ALTER USER ?@? IDENTIFIED BY ?', [t.db.user, t.db.userHost, t.db.password]);
    await db.query(`GRANT ALL PRIVILEGES ON ${ident(t.db.name)}.* TO ?@?`, [t.db.user, t.db.userHost]);
  });
  await t.files.conn.exec(`install -d -m 0755 ${quote(t.files.contentDir)}`);
}

/** Remove what createTarget() and the copy made. */
export async function removeTarget(t: Target): Promise<string[]> {
  const done: string[] = [];
  await withTargetDb(t.db, async (db) => {
    await db.query(`DROP DATABASE IF EXISTS ${ident(t.db.name)}`);
    for (const u of await rows(db, 'SELECT Host AS h FROM mysql.user WHERE User = ?', [t.db.user])) {
      await db.query('DROP USER IF EXISTS ?@?', [t.db.user, String(u.h)]);
    }
    done.push(`database ${t.db.name} and user ${t.db.user} dropped`);
  });
  if (!t.files.contentDir.startsWith('/') || t.files.contentDir.split('/').filter(Boolean).length < 2) {
    throw new Error(`refusing to remove '${t.files.contentDir}'`);
  }
  await t.files.conn.exec(`rm -rf -- ${quote(t.files.contentDir)}`);
  done.push(`${t.files.contentDir} removed`);
  return done;
}
