// SQL on a host through the engine's SSH connection (no open database port): mysql2 over a stream that
// the transport tunnels to a Unix socket or a TCP port as seen FROM the host.
//
//   await withMysql(ctx.conn, { socketPath: '/run/mysqld/mysqld.sock', user: 'root' }, async (db) => {
//     const [rows] = await db.query('SHOW STATUS LIKE ?', ['wsrep_%']);
//   });
//
// Through a Unix socket, sshd opens the socket as the SSH login user: with MariaDB's unix_socket
// authentication, root logged in over SSH is root in SQL without any password.
import mysql from 'mysql2/promise';
import type { Connection } from './types.ts';

export type MysqlTarget = ({ socketPath: string } | { host: string; port: number }) & {
  user: string;
  password?: string;
  database?: string;
  /** milliseconds for the handshake (default 10 s) */
  connectTimeoutMs?: number;
};

export type Db = mysql.Connection;

/** Open one SQL connection through `conn`, run fn, always close (even when fn throws). */
export async function withMysql<T>(conn: Connection, target: MysqlTarget, fn: (db: Db) => Promise<T>): Promise<T> {
  const stream = await conn.forward('socketPath' in target ? { socketPath: target.socketPath } : { host: target.host, port: target.port });
  let db: Db | undefined;
  try {
    db = await mysql.createConnection({
      // mysql2 accepts any Duplex as the transport (its typings say `any`)
      stream,
      user: target.user,
      password: target.password,
      database: target.database,
      connectTimeout: target.connectTimeoutMs ?? 10_000,
      multipleStatements: false,
      supportBigNumbers: true,
      bigNumberStrings: true,
    });
    return await fn(db);
  } finally {
    if (db) await db.end().catch(() => db?.destroy());
    stream.destroy();
  }
}

/** `SHOW GLOBAL STATUS LIKE pattern` as a name → value map. */
export async function statusVars(db: Db, like: string): Promise<Record<string, string>> {
  const [rows] = await db.query<mysql.RowDataPacket[]>('SHOW GLOBAL STATUS LIKE ?', [like]);
  const out: Record<string, string> = {};
  for (const r of rows) out[String(r.Variable_name)] = String(r.Value);
  return out;
}

/** Rows of a query, typed loosely (column name → value). */
export async function rows(db: Db, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const [r] = await db.query<mysql.RowDataPacket[]>(sql, params);
  return r as Record<string, unknown>[];
}
