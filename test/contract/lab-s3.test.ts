// The lab's S3 store (files/lab/s3/wpfarm-lab-s3, what lab-up's `s3` container runs) started here on loopback with
// a temp directory: a real Ceph monitor, memstore OSD and radosgw from Debian. Proves that the S3 user it makes
// answers with the lab's keys, that the secret key is in no process's arguments while it does so (/proc/*/cmdline
// is readable by every local user; strace records every execve of the script's process tree, where a sampler of
// /proc misses some of the short-lived radosgw-admin processes on a loaded machine), and that a bad keys file stops
// it before anything starts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureDebPackages, freePort, RGW_PACKAGES } from '../harness/rgw.ts';
import { FILES_DIR } from '../../scripts/lab/config.ts';
import { generateCredential } from '../../scripts/lab/nodes.ts';
import { ObjectStore } from '../../roles/backup/s3.ts';
import { StoreCredentialsError } from '../../roles/backup/errors.ts';

const execFileP = promisify(execFile);
const SCRIPT = path.join(FILES_DIR, 's3', 'wpfarm-lab-s3');
const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-lab-s3-'));
let store: ChildProcess | undefined;

/** The script and the daemons it starts share one process group (spawned detached): end exactly that group. */
async function stopStore(): Promise<void> {
  const p = store;
  if (!p?.pid || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  process.kill(-p.pid, 'SIGTERM');
  const t = setTimeout(() => {
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {}
  }, 8000);
  await exited;
  clearTimeout(t);
  try {
    process.kill(-p.pid, 'SIGKILL'); // a daemon that outlived the script
  } catch {}
}

after(async () => {
  await stopStore();
  rmSync(work, { recursive: true, force: true });
});

function runScript(env: Record<string, string>, execLog?: string): { child: ChildProcess; out: () => string; ready: Promise<void> } {
  const cmd = ['bash', '--norc', SCRIPT];
  // every execve of the tree with its whole argv (-s), nothing else traced (seccomp: the daemons run at full speed)
  const traced = execLog
    ? ['strace', '-f', '-qq', '--seccomp-bpf', '-e', 'trace=execve', '-e', 'signal=none', '-s', '65536', '-o', execLog, ...cmd]
    : cmd;
  const child = spawn(traced[0]!, traced.slice(1), { env: { ...process.env, ...env }, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/wpfarm lab S3 store ready/.test(out)) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    child.once('exit', (code, sig) => reject(new Error(`wpfarm-lab-s3 exited ${code ?? sig}:\n${out.slice(-3000)}`)));
  });
  return { child, out: () => out, ready };
}

test('a keys file that is not two key lines: exit 4 naming the file, nothing started', async () => {
  const keys = path.join(work, 'bad-keys');
  writeFileSync(keys, 'AKIA"quoted\n', { mode: 0o600 });
  const dir = path.join(work, 'bad');
  const r = runScript({ WPFARM_LAB_S3_DIR: dir, WPFARM_LAB_S3_KEYS: keys });
  r.ready.catch(() => {}); // it exits: that is the point
  const code = await new Promise<number | null>((res) => r.child.once('exit', (c) => res(c)));
  assert.equal(code, 4, r.out());
  assert.match(r.out(), new RegExp(`${keys}: two lines expected`));
  assert.ok(!existsSync(dir), 'no store directory made');
});

test("the store's S3 user answers with the lab's keys; the secret is on no command line while it is made", {
  timeout: 300_000,
}, async (t) => {
  await ensureDebPackages([...RGW_PACKAGES, 'ceph-common', 'curl', 'strace']);
  const access = generateCredential('WPFARM_S3_ACCESS_KEY');
  const secret = generateCredential('WPFARM_S3_SECRET_KEY');
  const keys = path.join(work, 'keys');
  writeFileSync(keys, `${access}\n${secret}\n`, { mode: 0o600 });
  const [port, monPort] = [await freePort(), await freePort()];
  const dir = path.join(work, 'store');
  const execLog = path.join(work, 'execve.log');
  const t0 = Date.now();
  const r = runScript(
    {
      WPFARM_LAB_S3_DIR: dir,
      WPFARM_LAB_S3_KEYS: keys,
      WPFARM_LAB_S3_BIND: '127.0.0.1',
      WPFARM_LAB_S3_PORT: String(port),
      WPFARM_LAB_S3_MONPORT: String(monPort),
      WPFARM_LAB_S3_BYTES: String(256 * 1024 * 1024),
    },
    execLog,
  );
  store = r.child;
  await r.ready;
  const trace = readFileSync(execLog, 'utf8');
  const execs = trace.split('\n').filter((l) => /\bexecve\(/.test(l));
  t.diagnostic(`store ready in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${execs.length} execve traced`);
  // the trace holds the radosgw-admin processes that made the user (so it would hold a secret given to them)
  const admin = execs.filter((c) => /execve\("[^"]*\/radosgw-admin"/.test(c));
  assert.ok(
    admin.some((c) => c.includes('"user", "create"') && c.includes(`"--access-key=${access}"`)),
    `user create traced: ${admin.join(' | ')}`,
  );
  assert.ok(
    admin.some((c) => c.includes('"metadata", "put", "user:wpfarm-lab"')),
    `metadata put traced: ${admin.join(' | ')}`,
  );
  const leaks = trace.split('\n').filter((c) => c.includes(secret));
  assert.deepEqual(leaks, [], "the secret key in a process's arguments");

  // the user has exactly the lab's key, and the gateway signs with it
  const conf = path.join(dir, 'ceph.conf');
  const info = JSON.parse(
    (await execFileP('radosgw-admin', ['-c', conf, '-n', 'client.admin', 'user', 'info', '--uid=wpfarm-lab'])).stdout,
  ) as { keys: Array<{ access_key: string; secret_key: string }> };
  assert.equal(info.keys.length, 1);
  assert.equal(info.keys[0]!.access_key, access);
  assert.ok(info.keys[0]!.secret_key === secret, "the user's secret is the keys file's");
  const cfg = { endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', bucket: 'wpfarm-lab-backups', maxAttempts: 1 };
  const s3 = new ObjectStore({ ...cfg, accessKeyId: access, secretAccessKey: secret });
  try {
    await s3.ensureBucket();
    await s3.putBytes('probe.txt', 'lab store');
    assert.equal((await s3.getBytes('probe.txt')).toString(), 'lab store');
  } finally {
    s3.destroy();
  }
  const wrong = new ObjectStore({
    ...cfg,
    accessKeyId: access,
    secretAccessKey: `${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`,
  });
  try {
    await assert.rejects(wrong.list(''), StoreCredentialsError);
  } finally {
    wrong.destroy();
  }
});
