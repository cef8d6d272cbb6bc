// A real MariaDB server for backup tests: Debian's mariadbd run as a child process in a temp datadir,
// on a unix socket and a free loopback port. The Debian service is never enabled or started.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, rm, open, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureDebPackages, freePort } from './rgw.ts';

const execFileP = promisify(execFile);

export const MARIADB_PACKAGES = ['mariadb-server', 'mariadb-client', 'mariadb-backup', 'age', 'restic', 'gzip'];

export interface LocalMariaDb {
  dir: string;
  datadir: string;
  socket: string;
  port: number;
  /** run SQL as root over the socket; returns tab-separated rows */
  sql(query: string, db?: string): Promise<string>;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** `datadir`: boot an existing datadir (e.g. a prepared mariabackup) instead of a fresh one. */
export async function startMariaDb(opts: { datadir?: string } = {}): Promise<LocalMariaDb> {
  await ensureDebPackages(MARIADB_PACKAGES);
  const dir = await mkdtemp(join(tmpdir(), 'wpfarm-mariadb-'));
  const datadir = opts.datadir ?? join(dir, 'data');
  if (!opts.datadir) await mkdir(datadir);
  const socket = join(dir, 'mysqld.sock');
  const port = await freePort();
  if (!opts.datadir)
    await execFileP(
      'mariadb-install-db',
      ['--no-defaults', `--datadir=${datadir}`, '--user=root', '--skip-test-db', '--auth-root-authentication-method=socket'],
      {
        maxBuffer: 16 << 20,
        timeout: 120_000,
      },
    );
  const log = await open(join(dir, 'mariadbd.out'), 'a');
  const child = spawn(
    'mariadbd',
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      `--socket=${socket}`,
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      '--user=root',
      `--pid-file=${join(dir, 'mariadbd.pid')}`,
      `--log-error=${join(dir, 'error.log')}`,
      '--skip-name-resolve',
      '--innodb-buffer-pool-size=64M',
      '--innodb-log-file-size=64M',
      '--max-allowed-packet=64M',
    ],
    { stdio: ['ignore', log.fd, log.fd] },
  );
  live.add(child);
  child.once('exit', () => {
    live.delete(child);
    void log.close();
  });
  // SQL on stdin (big INSERTs do not fit in argv)
  const sql = (query: string, db?: string) =>
    new Promise<string>((resolve, reject) => {
      const c = execFile(
        'mariadb',
        ['--no-defaults', `--socket=${socket}`, '-uroot', '--default-character-set=utf8mb4', '-N', '-B', ...(db ? [db] : [])],
        { maxBuffer: 256 << 20 },
        (err, stdout, stderr) =>
          err
            ? reject(new Error(`mariadb: ${(stderr || err.message).trim().split('\n').slice(-2).join(' ').slice(-400)}`))
            : resolve(stdout),
      );
      // a client that exits before reading (server not up yet) closes its stdin: that EPIPE is reported by the
      // client's own exit status above, not as an uncaught stream error
      c.stdin?.on('error', () => {});
      c.stdin?.end(query.trimEnd().endsWith(';') ? query : `${query};`);
    });
  const end = Date.now() + 60_000;
  for (;;) {
    try {
      await sql('SELECT 1');
      break;
    } catch (e) {
      if (child.exitCode !== null || Date.now() > end) {
        const err = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
        throw new Error(`mariadbd did not start: ${(e as Error).message}\n${err.split('\n').slice(-10).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  return {
    dir,
    datadir,
    socket,
    port,
    sql,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
