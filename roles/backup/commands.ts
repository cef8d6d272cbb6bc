// Pure builders of the shell commands that backups run on a host (Kamal style: data in, string out).
// Every value is quoted with zx's quote (through lib/shell.ts `sh`). The same strings run on a lab host
// through the engine (Connection.exec / a streaming exec) or locally in tests (bash -c).
//
// Secrets (age identity, restic password, S3 keys, MariaDB password) are never on a command line:
// the command starts with `read` lines and the caller gives the values on stdin, one per line, before
// any data (bash's `read` consumes exactly one line of a pipe, so the data that follows stays on stdin).
// On the host they live only in the environment of the processes that need them.
import { sh, raw, quote } from '../../lib/shell.ts';

/** bash prologue: strict mode, private umask, and read the named secrets from the first stdin lines. */
export function secretPrologue(names: readonly string[]): string {
  const lines = ['set -euo pipefail', 'umask 077'];
  for (const n of names) {
    if (!/^[A-Z_][A-Z0-9_]*$/.test(n)) throw new Error(`invalid secret variable name ${n}`);
    lines.push(`IFS= read -r ${n} || { echo "missing secret ${n} on stdin" >&2; exit 97; }`, `export ${n}`);
  }
  return lines.join('\n');
}

/** The stdin bytes that feed secretPrologue(names): values in the same order, one per line. */
export function secretStdin(values: readonly string[]): Buffer {
  for (const v of values) if (/[\n\r\0]/.test(v)) throw new Error('a secret value contains a newline or NUL and cannot be passed on stdin');
  return Buffer.from(values.map((v) => `${v}\n`).join(''));
}

/** A host command: the script and the names of the secrets its stdin must start with (in order). */
export interface HostCommand {
  script: string;
  secrets: string[];
}

function withSecrets(secrets: string[], body: string): HostCommand {
  return { script: `${secretPrologue(secrets)}\n${body}`, secrets };
}

// ---------------------------------------------------------------------------------------------------
// encryption: age (X25519 recipients). The host needs only the public recipient to encrypt; the
// identity (private key, WPFARM_BACKUP_AGE_IDENTITY in .env) is needed only where a restore runs.

export const AGE_IDENTITY_ENV = 'WPFARM_AGE_IDENTITY';
const AGE_RECIPIENT_RE = /^age1[02-9ac-hj-np-z]{58}$/;

export function checkRecipient(r: string): string {
  if (!AGE_RECIPIENT_RE.test(r)) throw new Error('invalid age recipient (expected age1... public key)');
  return r;
}
export const encryptPipe = (recipient: string): string => sh`age --encrypt --recipient ${checkRecipient(recipient)}`;
/** decrypt stdin to stdout with the identity from $WPFARM_AGE_IDENTITY (printf is a builtin: no argv) */
export const decryptPipe = (): string => `age --decrypt --identity <(printf '%s\\n' "$${AGE_IDENTITY_ENV}")`;

// ---------------------------------------------------------------------------------------------------
// MariaDB

export interface MariaDbConn {
  socket?: string;
  host?: string;
  port?: number;
  user?: string;
  /** whether a password is given (as MYSQL_PWD on stdin) */
  password?: boolean;
  /** words run before the client, e.g. ['docker', 'exec', '-i', '-e', 'MYSQL_PWD', 'galera_db.1'] */
  prefix?: string[];
}

const DB_NAME_RE = /^[A-Za-z0-9_]{1,64}$/;
export function checkDbName(db: string): string {
  if (!DB_NAME_RE.test(db)) throw new Error(`invalid database name ${JSON.stringify(db)}`);
  return db;
}

function connArgs(c: MariaDbConn): string[] {
  const a: string[] = [];
  if (c.socket) a.push(`--socket=${c.socket}`);
  if (c.host) a.push(`--host=${c.host}`, '--protocol=tcp');
  if (c.port) a.push(`--port=${c.port}`);
  if (c.user) a.push(`--user=${c.user}`);
  return a;
}
const dbSecrets = (c: MariaDbConn): string[] => (c.password ? ['MYSQL_PWD'] : []);
/** The secret values the commands built on `conn` read from stdin (MYSQL_PWD when it has a password). */
export const dbSecretValues = (t: { conn: MariaDbConn; dbPassword?: string }): Record<string, string> =>
  t.conn.password ? { MYSQL_PWD: t.dbPassword ?? '' } : {};
const client = (c: MariaDbConn, bin: string, extra: string[] = []): string => sh`${c.prefix ?? []} ${bin} ${connArgs(c)} ${extra}`.trim();

/** Logical dump of one site's database, gzip, encrypt: the ciphertext on stdout. */
export function mariadbDumpCommand(db: string, opts: { conn: MariaDbConn; recipient: string }): HostCommand {
  const dump = client(opts.conn, 'mariadb-dump', [
    '--single-transaction',
    '--quick',
    '--routines',
    '--triggers',
    '--events',
    '--hex-blob',
    '--default-character-set=utf8mb4',
    '--skip-dump-date',
    checkDbName(db),
  ]);
  return withSecrets([...dbSecrets(opts.conn)], `${dump} | gzip -c | ${encryptPipe(opts.recipient)}`);
}

/**
 * Restore one site's database from the encrypted dump on stdin (after the secret lines).
 * The whole dump is decrypted and decompressed to a private temp file first: a bad or truncated
 * backup fails BEFORE the database is touched. Then the database is dropped, recreated and loaded.
 */
export function mariadbRestoreCommand(db: string, opts: { conn: MariaDbConn; tmpDir?: string }): HostCommand {
  const name = checkDbName(db);
  const tmp = sh`tmp=$(mktemp -p ${opts.tmpDir ?? '/tmp'} wpfarm-restore.XXXXXX)`;
  const body = [
    tmp,
    `trap 'rm -f "$tmp"' EXIT`,
    `${decryptPipe()} | gunzip -c > "$tmp"`,
    `${client(opts.conn, 'mariadb', ['-e', `DROP DATABASE IF EXISTS \`${name}\`; CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`])}`,
    `${client(opts.conn, 'mariadb', [name])} < "$tmp"`,
  ].join('\n');
  return withSecrets([AGE_IDENTITY_ENV, ...dbSecrets(opts.conn)], body);
}

/** Row checksums of every table of a database (CHECKSUM TABLE), as "table<TAB>checksum" lines. */
export function tableChecksumsCommand(db: string, conn: MariaDbConn): HostCommand {
  const name = checkDbName(db);
  const q = `SELECT GROUP_CONCAT(CONCAT('\`', table_schema, '\`.\`', table_name, '\`') ORDER BY table_name SEPARATOR ', ') FROM information_schema.tables WHERE table_schema = '${name}' AND table_type = 'BASE TABLE'`;
  const body = [
    `tables=$(${client(conn, 'mariadb', ['-N', '-B', '-e', q])})`,
    `if [ -z "$tables" ] || [ "$tables" = NULL ]; then exit 0; fi`,
    `${client(conn, 'mariadb', ['-N', '-B'])} -e "CHECKSUM TABLE $tables EXTENDED"`,
  ].join('\n');
  return withSecrets(dbSecrets(conn), body);
}

// ---------------------------------------------------------------------------------------------------
// mariabackup (whole server: full daily, incremental every 6 hours)

/**
 * Physical backup streamed as xbstream, gzip, encrypt. `lsnDir` keeps this backup's checkpoints on the
 * host (the base of the next incremental); `baseLsnDir` makes it an incremental on top of that base.
 */
export function mariabackupCommand(opts: { conn: MariaDbConn; recipient: string; lsnDir: string; baseLsnDir?: string }): HostCommand {
  const extra = ['--backup', '--stream=xbstream', `--extra-lsndir=${opts.lsnDir}`];
  if (opts.baseLsnDir) extra.push(`--incremental-basedir=${opts.baseLsnDir}`);
  const body = [
    sh`mkdir -p ${opts.lsnDir}`,
    'work=$(mktemp -d)',
    `trap 'rm -rf "$work"' EXIT`,
    `${client(opts.conn, 'mariadb-backup', extra)} --target-dir="$work" | gzip -c | ${encryptPipe(opts.recipient)}`,
  ].join('\n');
  return withSecrets(dbSecrets(opts.conn), body);
}

/** The checkpoints of a backup kept in its lsn dir ("backup_type = ...", "from_lsn = ...", "to_lsn = ..."). */
export const checkpointsCommand = (lsnDir: string): string => sh`cat ${`${lsnDir}/xtrabackup_checkpoints`}`;

export function parseCheckpoints(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of text.split('\n')) {
    const m = /^\s*([a-z_]+)\s*=\s*(\S+)\s*$/.exec(l);
    if (m) out[m[1] as string] = m[2] as string;
  }
  return out;
}

/** Unpack one encrypted xbstream (stdin) into `dir` (must not exist or be empty). */
export function mariabackupUnpackCommand(dir: string): HostCommand {
  return withSecrets([AGE_IDENTITY_ENV], [sh`mkdir -p ${dir}`, `${decryptPipe()} | gunzip -c | ${sh`mbstream -x -C ${dir}`}`].join('\n'));
}

/** Prepare a full backup dir, applying incremental dirs in order. */
export function mariabackupPrepareCommand(fullDir: string, incrDirs: string[]): string {
  const lines = [sh`mariadb-backup --prepare --target-dir=${fullDir}`];
  for (const d of incrDirs) lines.push(sh`mariadb-backup --prepare --target-dir=${fullDir} --incremental-dir=${d}`);
  return ['set -euo pipefail', ...lines].join('\n');
}

// ---------------------------------------------------------------------------------------------------
// restic (site files: uploads, plugins, themes). restic encrypts itself (RESTIC_PASSWORD).

export interface ResticRepo {
  /** s3:https://fra1.digitaloceanspaces.com/bucket/files/site12 */
  url: string;
}
export const RESTIC_SECRETS = ['RESTIC_PASSWORD', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'];

export function resticRepoUrl(endpoint: string, bucket: string, prefix: string): string {
  const u = new URL(endpoint);
  return `s3:${u.protocol}//${u.host}/${bucket}/${prefix}`;
}

const restic = (repo: ResticRepo, args: Array<string | number>, timeoutSec?: number): string => {
  // --foreground: timeout signals restic only, not its own process group (which holds the calling bash);
  // restic gets SIGINT (it writes no snapshot, tries to remove its lock), then SIGKILL 10 s later
  const limit = timeoutSec ? sh`timeout --foreground --signal=INT --kill-after=10 ${Math.max(1, Math.floor(timeoutSec))} ` : '';
  return `TZ=UTC ${limit}${sh`restic --no-cache -r ${repo.url} ${args.map(String)}`}`;
};

/** Create the repository unless it exists. */
export function resticInitCommand(repo: ResticRepo): HostCommand {
  // `cat config` distinguishes "no repository" from other failures (wrong keys, store down): only the
  // former may lead to init; init itself refuses to overwrite an existing repository.
  const body = [
    // an existing repository: remove stale locks (left by a run killed while the store was unreachable;
    // restic only removes locks of dead processes of this host or older than 30 minutes)
    `if out=$(${restic(repo, ['cat', 'config'])} 2>&1 >/dev/null); then ${restic(repo, ['unlock'])} >&2; exit 0; fi`,
    `case "$out" in *"does not exist"*|*"unable to open config file"*|*"Is there a repository at the following location"*) ;; *) printf '%s\\n' "$out" >&2; exit 1;; esac`,
    restic(repo, ['init']),
  ].join('\n');
  return withSecrets(RESTIC_SECRETS, body);
}

/** exit code of a command stopped by resticBackupCommand's timeoutSec (coreutils timeout) */
export const TIMEOUT_EXIT = 124;

export function resticBackupCommand(
  repo: ResticRepo,
  opts: { paths: string[]; host: string; tags: string[]; time?: Date; excludes?: string[]; timeoutSec?: number },
): HostCommand {
  if (opts.paths.length === 0) throw new Error('restic backup needs at least one path');
  const args: Array<string | number> = ['backup', '--json', '--host', opts.host];
  for (const t of opts.tags) args.push('--tag', t);
  for (const e of opts.excludes ?? []) args.push('--exclude', e);
  if (opts.time) args.push('--time', opts.time.toISOString().slice(0, 19).replace('T', ' '));
  args.push('--', ...opts.paths);
  // restic retries an unreachable store for many minutes: bound the run (SIGINT: restic writes no snapshot)
  return withSecrets(RESTIC_SECRETS, restic(repo, args, opts.timeoutSec));
}

export function resticSnapshotsCommand(repo: ResticRepo, opts: { tags?: string[] } = {}): HostCommand {
  const args: string[] = ['snapshots', '--json'];
  for (const t of opts.tags ?? []) args.push('--tag', t);
  return withSecrets(RESTIC_SECRETS, restic(repo, args));
}

/**
 * Restore directory `path` of a snapshot into place: restic restores into a staging dir next to it
 * (same filesystem), then the live dir is swapped with the restored one (two renames) and the old one
 * removed. A failed restore leaves the live dir as it was.
 */
export function resticRestoreDirCommand(repo: ResticRepo, opts: { snapshot: string; path: string; keepOld?: boolean }): HostCommand {
  if (!opts.path.startsWith('/') || opts.path.includes('/../') || opts.path.endsWith('/..'))
    throw new Error(`restore path must be absolute: ${opts.path}`);
  const path = opts.path.replace(/\/+$/, '');
  if (path === '') throw new Error('refusing to restore over /');
  if (!/^[0-9a-f]{8,64}$/.test(opts.snapshot)) throw new Error(`invalid snapshot id ${opts.snapshot}`);
  const parent = path.slice(0, path.lastIndexOf('/')) || '/';
  const body = [
    sh`stage=$(mktemp -d -p ${parent} .wpfarm-restore.XXXXXX)`,
    `trap 'rm -rf "$stage"' EXIT`,
    `${restic(repo, ['restore', opts.snapshot, '--target'])} "$stage" ${sh`--include ${path}`}`,
    sh`test -d "$stage"${raw(quote(path))} || { echo "snapshot has no directory "${path} >&2; exit 3; }`,
    sh`old=${path}.pre-restore.$$`,
    sh`if [ -e ${path} ]; then mv ${path} "$old"; fi`,
    sh`mv "$stage"${raw(quote(path))} ${path}`,
    opts.keepOld ? 'echo "previous content kept in $old" >&2' : 'rm -rf "$old"',
  ].join('\n');
  return withSecrets(RESTIC_SECRETS, body);
}

export function resticForgetCommand(
  repo: ResticRepo,
  opts: { policyArgs: string[]; tags?: string[]; prune?: boolean; dryRun?: boolean },
): HostCommand {
  const args: string[] = ['forget', '--json', '--group-by', 'host,tags'];
  for (const t of opts.tags ?? []) args.push('--tag', t);
  args.push(...opts.policyArgs);
  if (opts.dryRun) args.push('--dry-run');
  else if (opts.prune) args.push('--prune');
  return withSecrets(RESTIC_SECRETS, restic(repo, args));
}

/** `restic check` of a repository; `readDataSubset` (e.g. "1/10", "5%") also re-reads that part of the packs. */
export function resticCheckCommand(repo: ResticRepo, opts: { readDataSubset?: string } = {}): HostCommand {
  const args = ['check'];
  if (opts.readDataSubset) {
    if (!/^(\d+\/\d+|\d+(\.\d+)?%)$/.test(opts.readDataSubset)) throw new Error(`invalid --read-data-subset ${opts.readDataSubset}`);
    args.push(`--read-data-subset=${opts.readDataSubset}`);
  }
  return withSecrets(RESTIC_SECRETS, restic(repo, args));
}

/** Row counts of every table of a database (COUNT(*), exact), as "table<TAB>rows" lines. */
export function tableRowCountsCommand(db: string, conn: MariaDbConn): HostCommand {
  const name = checkDbName(db);
  const q = [
    'SET SESSION group_concat_max_len = 1048576;',
    "SELECT GROUP_CONCAT(CONCAT('SELECT ''', table_name, ''', COUNT(*) FROM `', table_schema, '`.`', table_name, '`')",
    "ORDER BY table_name SEPARATOR ' UNION ALL ') FROM information_schema.tables",
    `WHERE table_schema = '${name}' AND table_type = 'BASE TABLE'`,
  ].join(' ');
  const body = [
    `q=$(${client(conn, 'mariadb', ['-N', '-B', '-e', q])})`,
    `if [ -z "$q" ] || [ "$q" = NULL ]; then exit 0; fi`,
    `${client(conn, 'mariadb', ['-N', '-B'])} -e "$q"`,
  ].join('\n');
  return withSecrets(dbSecrets(conn), body);
}

/** Restore a snapshot into a scratch directory (restic --verify re-reads every restored file). */
export function resticRestoreToCommand(repo: ResticRepo, opts: { snapshot: string; target: string; include?: string }): HostCommand {
  if (!/^[0-9a-f]{8,64}$/.test(opts.snapshot)) throw new Error(`invalid snapshot id ${opts.snapshot}`);
  const args = ['restore', opts.snapshot, '--target', opts.target, '--verify'];
  if (opts.include) args.push('--include', opts.include);
  return withSecrets(RESTIC_SECRETS, [sh`mkdir -p ${opts.target}`, restic(repo, args)].join('\n'));
}

export function dropDatabaseCommand(db: string, conn: MariaDbConn): HostCommand {
  const name = checkDbName(db);
  return withSecrets(dbSecrets(conn), client(conn, 'mariadb', ['-e', `DROP DATABASE IF EXISTS \`${name}\``]));
}

/** sha256 of every regular file under dir, sorted by relative path ("hash  ./rel/path" lines). */
export function fileHashesCommand(dir: string): string {
  return sh`cd ${dir} && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum`;
}
