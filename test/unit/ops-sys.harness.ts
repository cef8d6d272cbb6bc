// Test harness for the system operations: runs probe and apply scripts for real, in bash on this
// machine (no SSH), following the contract of lib/types.ts: probe → plan → apply unless check → re-probe.
// It stands in for the lead's runner only in these unit tests; the lab tier uses the real runner.
import { spawn } from 'node:child_process';
import type { Connection, ExecOptions, ExecResult, HostSpec, Operation, Plan, StepContext, StepResult } from '../../lib/types.ts';
import { FactCache } from '../../lib/facts.ts';

/** Run a command with bash locally. Throws on non-zero exit unless nothrow. */
export function localExec(command: string, opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    // --norc: bash started with a socket as stdin and SHLVL 0 reads ~/.bashrc as if run by sshd (root's sets PATH
    // and runs pyenv, which recursed without end under a test's reduced PATH): the tests see only their own env
    const p = spawn('bash', ['--norc', '-c', command], { cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = opts.timeoutMs ? setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs) : undefined;
    p.on('error', reject);
    p.on('close', (code) => {
      if (timer) clearTimeout(timer);
      const r = { stdout, stderr, code: code ?? -1 };
      if (r.code !== 0 && !opts.nothrow)
        reject(Object.assign(new Error(`exit ${r.code}: ${command.split('\n')[0]}\n${stderr}`), { result: r }));
      else resolve(r);
    });
    p.stdin.on('error', () => {}); // the script may not read its stdin
    p.stdin.end(opts.stdin ?? '');
  });
}

export interface LocalRun {
  plan: Plan;
  status: 'ok' | 'changed';
  /** the plan made from the re-probe after a change (what a second run would see) */
  after?: Plan;
  roundTrips: number;
}

export function localContext(check = false, exec = localExec): StepContext & { secrets: string[] } {
  const host: HostSpec = { name: 'local', address: '127.0.0.1', port: 22, user: 'root', groups: [], vars: {} };
  const facts = new FactCache((c) => exec(c, { nothrow: true }));
  let trips = 0;
  const conn: Connection = {
    host,
    exec: (c, o) => {
      trips++;
      return exec(c, o);
    },
    put: async () => {
      throw new Error('put is not used by the system operations');
    },
    forward: async () => {
      throw new Error('forward is not used by these operations');
    },
    get roundTrips() {
      return trips;
    },
    close: async () => {},
  };
  const secrets: string[] = [];
  const ctx: StepContext & { secrets: string[] } = {
    host,
    vars: {},
    check,
    diff: true,
    registered: {},
    interrupted: () => false,
    exec: (c, o) => conn.exec(c, o),
    run: async (op: Operation): Promise<StepResult> => {
      const r = await runLocal(op, { check, ctx });
      return { host: 'local', step: op.title, kind: op.kind, status: r.status, changes: r.plan.changes, result: r.plan.result, ms: 0 };
    },
    fact: (def, ...args) => facts.get(def, ...args),
    secret: (v: string) => {
      secrets.push(v);
      return v;
    },
    notify: () => {},
    conn,
    log: () => {},
    hosts: () => [],
    hostContext: () => {
      throw new Error('no other hosts here');
    },
    // one host: a barrier opens at once
    barrier: async (_name, opts) => ({ arrived: { [host.name]: opts?.value as never }, missing: {} }),
    secrets,
  };
  return ctx;
}

/** probe → plan → apply (unless check) → re-probe and plan again. */
export async function runLocal(op: Operation, o: { check?: boolean; ctx?: StepContext } = {}): Promise<LocalRun> {
  const ctx = o.ctx ?? localContext(!!o.check);
  const before = ctx.conn.roundTrips;
  const probe = async (): Promise<Plan> => {
    const p = op.probe(ctx);
    const out = p ? (await ctx.exec(p.script, { nothrow: true })).stdout : '';
    return op.plan(ctx, out);
  };
  const plan = await probe();
  if (!plan.changed || ctx.check) return { plan, status: plan.changed ? 'changed' : 'ok', roundTrips: ctx.conn.roundTrips - before };
  if (typeof plan.apply === 'function') await plan.apply(ctx);
  else if (plan.apply) await ctx.exec(plan.apply.script, { stdin: plan.apply.stdin });
  const after = await probe();
  return { plan, status: plan.changed ? 'changed' : 'ok', after, roundTrips: ctx.conn.roundTrips - before };
}
