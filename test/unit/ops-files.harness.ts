// Test harness for the file operations: runs their probe and apply scripts for real with bash on this
// machine (no SSH), following lib/types.ts: probe → plan → apply unless check. The engine tier
// (test/engine/ops-files.test.ts) does the same through the real runner on sshd hosts.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sh } from '../../lib/shell.ts';
import type { Connection, ExecOptions, ExecResult, HostSpec, Operation, Plan, StepContext, Vars } from '../../lib/types.ts';

export interface BashOptions extends ExecOptions {
  env?: Record<string, string>;
  /** command prefix, e.g. ['ip', 'netns', 'exec', 'ns1'] */
  wrap?: string[];
}

/** Run a script with bash; throws on non-zero exit unless nothrow. */
export function bash(script: string, opts: BashOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    // --norc: bash started with a socket as stdin and SHLVL 0 reads ~/.bashrc as if run by sshd (root's sets PATH
    // and runs pyenv, which recursed without end under a test's reduced PATH): the tests see only their own env
    const argv = [...(opts.wrap ?? []), 'bash', '--norc', '-c', script];
    const p = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => {
      const r = { stdout, stderr, code: code ?? -1 };
      if (r.code !== 0 && !opts.nothrow) reject(new Error(`exit ${r.code}: ${script.split('\n')[0]}\n${stderr}`));
      else resolve(r);
    });
    p.stdin.on('error', () => {});
    p.stdin.end(opts.stdin ?? '');
  });
}

/** Debian packages the file-operation tests drive: command → package. */
const TOOLS: Record<string, string> = {
  ip: 'iproute2',
  curl: 'curl',
  wget: 'wget',
  patch: 'patch',
  diff: 'diffutils',
  getent: 'libc-bin',
  python3: 'python3',
  ansible: 'ansible-core',
};

/** Install what the tests need when missing (idempotent; apt only when something is missing). */
export function ensureTools(names: string[] = Object.keys(TOOLS)): void {
  const missing = names.filter((t) => spawnSync('bash', ['-c', `command -v ${t}`]).status !== 0).map((t) => TOOLS[t] ?? t);
  if (!missing.length) return;
  execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-q', '--no-install-recommends', ...missing], {
    stdio: 'ignore',
  });
}

/** A StepContext for plan(): plain data; exec runs bash locally. */
export function context(o: { check?: boolean; diff?: boolean; vars?: Vars; bashOpts?: BashOptions; logs?: string[] } = {}): StepContext {
  const host: HostSpec = { name: 'local', address: '127.0.0.1', port: 22, user: 'root', groups: [], vars: o.vars ?? {} };
  const exec = (c: string, e?: ExecOptions) => bash(c, { ...o.bashOpts, ...e });
  const conn: Connection = {
    host,
    exec,
    put: async () => {
      throw new Error('put is not used by the file operations');
    },
    forward: async () => {
      throw new Error('forward is not used by these operations');
    },
    roundTrips: 0,
    close: async () => {},
  };
  return {
    host,
    vars: o.vars ?? {},
    check: o.check ?? false,
    diff: o.diff ?? false,
    registered: {},
    interrupted: () => false,
    exec,
    run: async () => {
      throw new Error('not used');
    },
    fact: async () => {
      throw new Error('no facts here');
    },
    secret: (v: string) => v,
    notify: () => {},
    conn,
    log: (m: string) => o.logs?.push(m),
    hosts: () => [],
    hostContext: () => {
      throw new Error('no other hosts here');
    },
    // one host: a barrier opens at once
    barrier: async (_name, opts) => ({ arrived: { [host.name]: opts?.value as never }, missing: {} }),
  };
}

/** Probe output of an operation, produced by really running its probe script the way the runner does. */
export async function probeOutput(op: Operation, ctx: StepContext, bashOpts: BashOptions = {}): Promise<string> {
  const p = op.probe(ctx);
  if (!p) return '';
  const r = await bash(`( ${p.script}\n) 2>&1 </dev/null`, { ...bashOpts, nothrow: true });
  if (r.code !== 0) throw new Error(`probe exited ${r.code} (must always exit 0): ${r.stdout}`);
  return r.stdout.replace(/\n$/, '');
}

export interface RunOutcome {
  plan: Plan;
  status: 'ok' | 'changed';
  /** what the plan said through ctx.log */
  logs: string[];
}

/** probe → plan → apply unless check (as the runner does). */
export async function runOp(
  op: Operation,
  o: { check?: boolean; diff?: boolean; vars?: Vars; bashOpts?: BashOptions } = {},
): Promise<RunOutcome> {
  const logs: string[] = [];
  const ctx = context({ ...o, logs });
  const out = await probeOutput(op, ctx, o.bashOpts);
  const plan = await op.plan(ctx, out);
  if (plan.changed && !ctx.check && plan.apply) {
    if (typeof plan.apply === 'function') await plan.apply(ctx);
    else await bash(plan.apply.script, { ...o.bashOpts, stdin: plan.apply.stdin });
  }
  return { plan, status: plan.changed ? 'changed' : 'ok', logs };
}

/** Check, then run, then rerun: returns the three outcomes. */
export async function cycle(make: () => Operation, o: { diff?: boolean; vars?: Vars; bashOpts?: BashOptions } = {}) {
  const check = await runOp(make(), { ...o, check: true });
  const run = await runOp(make(), o);
  const rerun = await runOp(make(), o);
  return { check, run, rerun };
}

/** A temp directory for a test file; fresh() makes a new sub-directory of it (one per test). */
export function tempDir(prefix = 'wpf-files-'): { dir: string; cleanup: () => void; fresh: () => string } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  let n = 0;
  const fresh = (): string => {
    const d = join(dir, `t${++n}`);
    mkdirSync(d);
    return d;
  };
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }), fresh };
}

/** A listing of a tree (path, type, mode, owner, content hash) to assert that check mode changed nothing. */
export async function snapshot(dir: string): Promise<string> {
  const r = await bash(
    sh`cd ${dir} && find . -printf '%p %y %m %u %g %s %l\n' | sort && find . -type f -print0 | sort -z | xargs -0r sha256sum`,
  );
  return r.stdout;
}
