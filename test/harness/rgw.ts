// A real Ceph RADOS Gateway (the software DigitalOcean Spaces is built on) on 127.0.0.1, for tests.
// One monitor + one memstore OSD + radosgw, all from Debian packages, in a temp directory, on free
// loopback ports. Installs what it needs (idempotent, apt lock timeout 600 s), creates an S3 user with
// keys (radosgw-admin) and tears everything down. Only processes it started are ever signalled.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, rm, readFile, open } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Install Debian packages that are missing (idempotent). Never starts services (policy-rc.d / no init). */
export async function ensureDebPackages(pkgs: string[]): Promise<void> {
  const missing: string[] = [];
  for (const p of pkgs) {
    const r = await execFileP('dpkg-query', ['-W', '-f=${Status}', p]).catch(() => ({ stdout: '' }));
    if (!r.stdout.includes('install ok installed')) missing.push(p);
  }
  if (missing.length === 0) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = ['-o', 'DPkg::Lock::Timeout=600', '-y', '-q'];
  const install = () => execFileP('apt-get', [...apt, 'install', '--no-install-recommends', ...missing], { env, maxBuffer: 64 << 20 });
  try {
    await install();
  } catch {
    await execFileP('apt-get', [...apt, 'update'], { env, maxBuffer: 64 << 20 });
    await install();
  }
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

async function startDaemon(name: string, cmd: string, args: string[], logPath: string): Promise<ChildProcess> {
  const log = await open(logPath, 'a');
  const child = spawn(cmd, args, { stdio: ['ignore', log.fd, log.fd] });
  live.add(child);
  child.once('exit', () => {
    live.delete(child);
    void log.close();
  });
  child.once('error', () => live.delete(child));
  if (!child.pid) throw new Error(`${name}: failed to start ${cmd}`);
  return child;
}

async function stopDaemon(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM', graceMs = 8000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

async function until<T>(what: string, timeoutMs: number, f: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export interface Rgw {
  /** http://127.0.0.1:PORT */
  endpoint: string;
  port: number;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  dir: string;
  /** ms from start() call to the gateway answering */
  startupMs: number;
  /** SIGKILL the gateway only (mon and OSD keep the data) */
  killGateway(): Promise<void>;
  /** start the gateway again after killGateway */
  startGateway(): Promise<void>;
  /** create another S3 user; returns its keys */
  createUser(uid: string): Promise<{ accessKeyId: string; secretAccessKey: string }>;
  stop(): Promise<void>;
}

export const RGW_PACKAGES = ['ceph-mon', 'ceph-osd', 'radosgw'];

export async function startRgw(opts: { memstoreBytes?: number; keepDir?: boolean } = {}): Promise<Rgw> {
  const t0 = Date.now();
  await ensureDebPackages(RGW_PACKAGES);
  const dir = await mkdtemp(join(tmpdir(), 'wpfarm-rgw-'));
  for (const d of ['mon/a', 'osd/0', 'run', 'log', 'rgw']) await mkdir(join(dir, d), { recursive: true });
  const monPort = await freePort();
  const port = await freePort();
  const fsid = randomUUID();
  const conf = join(dir, 'ceph.conf');
  const keyring = join(dir, 'keyring');
  const memBytes = opts.memstoreBytes ?? 2 * 1024 ** 3;
  await writeFile(
    conf,
    [
      '[global]',
      `fsid = ${fsid}`,
      `mon host = v2:127.0.0.1:${monPort}`,
      'mon initial members = a',
      'public addr = 127.0.0.1',
      'auth cluster required = cephx',
      'auth service required = cephx',
      'auth client required = cephx',
      // without this the gateway hangs at start (measured on these machines)
      'ms mon client mode = crc secure',
      'osd pool default size = 1',
      'osd pool default min size = 1',
      'osd pool default pg num = 8',
      'osd pool default pgp num = 8',
      'osd crush chooseleaf type = 0',
      'mon allow pool size one = true',
      'mon max pg per osd = 1000',
      'mon warn on pool no redundancy = false',
      `keyring = ${keyring}`,
      `run dir = ${dir}/run`,
      `admin socket = ${dir}/run/$name.asok`,
      `log file = ${dir}/log/$name.log`,
      `pid file = ${dir}/run/$name.pid`,
      '[mon.a]',
      `mon data = ${dir}/mon/a`,
      '[osd.0]',
      `osd data = ${dir}/osd/0`,
      'osd objectstore = memstore',
      `memstore device bytes = ${memBytes}`,
      '[client.rgw.a]',
      `rgw frontends = beast endpoint=127.0.0.1:${port}`,
      `rgw data = ${dir}/rgw`,
      '',
    ].join('\n'),
  );
  const run = async (cmd: string, args: string[], timeout = 30_000) =>
    (await execFileP(cmd, args, { cwd: dir, timeout, maxBuffer: 16 << 20 })).stdout;
  const authtool = async (args: string[]) => run('ceph-authtool', args);
  await authtool(['--create-keyring', keyring, '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *']);
  await authtool([
    keyring,
    '--gen-key',
    '-n',
    'client.admin',
    '--cap',
    'mon',
    'allow *',
    '--cap',
    'osd',
    'allow *',
    '--cap',
    'mgr',
    'allow *',
  ]);
  await authtool([
    keyring,
    '--gen-key',
    '-n',
    'osd.0',
    '--cap',
    'mon',
    'allow profile osd',
    '--cap',
    'osd',
    'allow *',
    '--cap',
    'mgr',
    'allow profile osd',
  ]);
  await authtool([keyring, '--gen-key', '-n', 'client.rgw.a', '--cap', 'mon', 'allow rw', '--cap', 'osd', 'allow rwx']);
  await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, join(dir, 'monmap')]);
  await run('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap'), '--keyring', keyring]);

  let mon: ChildProcess | undefined;
  let osd: ChildProcess | undefined;
  let gw: ChildProcess | undefined;
  const stopAll = async () => {
    await stopDaemon(gw);
    await stopDaemon(osd);
    await stopDaemon(mon);
  };
  try {
    mon = await startDaemon('mon', 'ceph-mon', ['-c', conf, '-i', 'a', '-f'], join(dir, 'log/mon.out'));
    const ceph = (args: string[]) => run('ceph', ['-c', conf, '--connect-timeout', '10', ...args], 20_000);
    const osdUuid = randomUUID();
    await until('ceph-mon', 20_000, async () => ((await ceph(['osd', 'new', osdUuid])).trim() === '0' ? true : undefined));
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]);
    osd = await startDaemon('osd', 'ceph-osd', ['-c', conf, '-i', '0', '-f'], join(dir, 'log/osd.out'));
    await until('ceph-osd up', 30_000, async () =>
      (JSON.parse(await ceph(['osd', 'stat', '-f', 'json'])) as { num_up_osds: number }).num_up_osds === 1 ? true : undefined,
    );
    const endpoint = `http://127.0.0.1:${port}`;
    const startGateway = async () => {
      gw = await startDaemon('radosgw', 'radosgw', ['-c', conf, '-n', 'client.rgw.a', '-f'], join(dir, 'log/rgw.out'));
      const me = gw;
      await until('radosgw to answer', 60_000, async () => {
        if (me.exitCode !== null) throw new Error(`radosgw exited ${me.exitCode}; see ${dir}/log/rgw.out`);
        const res = await fetch(endpoint + '/', { signal: AbortSignal.timeout(2000) });
        return res.status > 0 ? true : undefined;
      });
    };
    await startGateway();
    const createUser = async (uid: string) => {
      const accessKeyId = 'WPF' + randomBytes(8).toString('hex').toUpperCase();
      const secretAccessKey = randomBytes(24).toString('base64url');
      await run('radosgw-admin', [
        '-c',
        conf,
        '-n',
        'client.admin',
        'user',
        'create',
        `--uid=${uid}`,
        `--display-name=${uid}`,
        `--access-key=${accessKeyId}`,
        `--secret-key=${secretAccessKey}`,
      ]);
      return { accessKeyId, secretAccessKey };
    };
    const keys = await createUser('wpfarm-test');
    return {
      endpoint,
      port,
      region: 'us-east-1',
      ...keys,
      dir,
      startupMs: Date.now() - t0,
      killGateway: () => stopDaemon(gw, 'SIGKILL'),
      startGateway,
      createUser,
      async stop() {
        await stopAll();
        if (!opts.keepDir) await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    const tail = await readFile(join(dir, 'log/rgw.out'), 'utf8').catch(() => '');
    await stopAll();
    throw new Error(`RGW harness failed to start: ${(e as Error).message}\n${tail.split('\n').slice(-10).join('\n')}`);
  }
}
