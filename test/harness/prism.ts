// Start/stop Prism (mock or proxy) on 127.0.0.1 with a free port, for the contract tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** The shared specs folder: env WPFARM_SHARED (the shared/ folder or its specs/), else ../shared/specs. */
export function specsDir(): string {
  const env = process.env['WPFARM_SHARED'];
  if (env) return existsSync(path.join(env, 'specs')) ? path.join(env, 'specs') : env;
  return path.resolve(repoRoot, '../shared/specs');
}

export function specPath(name: string): string {
  const p = path.join(specsDir(), name);
  if (existsSync(p)) return p;
  // a gzipped spec is unpacked once into .wpfarm/specs (Prism reads plain files)
  if (existsSync(`${p}.gz`)) {
    const dir = path.join(repoRoot, '.wpfarm', 'specs');
    mkdirSync(dir, { recursive: true });
    const out = path.join(dir, name);
    if (!existsSync(out)) writeFileSync(out, gunzipSync(readFileSync(`${p}.gz`)));
    return out;
  }
  throw new Error(`spec ${name} not found in ${specsDir()} (set WPFARM_SHARED)`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

// every Prism this process started is killed when it exits, even if a test forgot to stop it
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Start several servers at once; if one fails, the others are stopped before the error is thrown. */
export async function startAll(specs: Parameters<typeof startPrism>[0][]): Promise<PrismServer[]> {
  const settled = await Promise.allSettled(specs.map((s) => startPrism(s)));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    throw failed.reason;
  }
  return settled.map((r) => (r as PromiseFulfilledResult<PrismServer>).value);
}

export interface PrismServer {
  url: string;
  port: number;
  /** everything Prism printed (its validation log) */
  output(): string;
  stop(): Promise<void>;
}

/** mode 'mock': `prism mock spec`; mode 'proxy': `prism proxy spec upstream --errors` (validates both
 *  requests and responses, and answers with an error when either violates the spec). */
export async function startPrism(opts: {
  spec: string;
  mode: 'mock' | 'proxy';
  upstream?: string;
  timeoutMs?: number;
}): Promise<PrismServer> {
  const port = await freePort();
  const cli = path.join(repoRoot, 'node_modules/@stoplight/prism-cli/dist/index.js');
  const args = [cli, opts.mode, opts.spec];
  if (opts.mode === 'proxy') {
    if (!opts.upstream) throw new Error('proxy needs an upstream');
    args.push(opts.upstream, '--errors');
  }
  args.push('-h', '127.0.0.1', '-p', String(port));
  const child: ChildProcess = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  };
  // the 3 MB DigitalOcean spec takes 45 s to load on a busy 2-core machine
  const deadline = Date.now() + (opts.timeoutMs ?? 300_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`prism exited (${child.exitCode}):\n${out.slice(-2000)}`);
    if (/Prism is listening/.test(out)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prism did not start in time:\n${out.slice(-2000)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url: `http://127.0.0.1:${port}`, port, output: () => out, stop };
}
