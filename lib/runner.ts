// The runner: applies roles to hosts in parallel (p-limit, --forks), one SSH connection per host.
//
// Speed comes from speculative batched probing: before running step i, the runner sends the probes of
// steps i..j (operations, and tasks that declare a probe) in ONE round trip. Operations whose plan says
// "no change" cost nothing more; after a change is applied, the probes of the following steps are sent again
// (the host changed). A probe read past a task, a runOnce or a delegated step is used only while no command of
// the run could have changed any host since (ConnectionPool.writes: every command not marked readOnly).
// prefetchProbes() goes further: the probes of several roles (a phase, a whole playbook) on each host in ONE
// round trip before the first of them runs, used on the same terms. An idempotent rerun of a role is thus at most
// one round trip per host, and of a prefetched phase one or two per host for all its roles.
// A probe may be read on another host than its step's (Probe.host, and a delegated step's probe): read ahead with
// that host's probes, it holds only while the run has written nothing.
import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import { EXIT, InputError, InterruptedError, RemoteCommandError, UnreachableError } from './errors.ts';
import type { EventOf, EventStream } from './events.ts';
import { FactCache } from './facts.ts';
import { mergeGather } from './ops/base.ts';
import { sha256hex } from './ops/files.ts';
import { retry } from './retry.ts';
import { mask, registerSecret } from './secrets.ts';
import { GATHER_NAME, GATHER_WORD, batchPrelude, sh } from './shell.ts';
import type {
  BarrierResult,
  Connection,
  ExecOptions,
  ExecResult,
  HostSpec,
  Operation,
  Plan,
  Probe,
  Role,
  RunOptions,
  Step,
  StepContext,
  StepResult,
  StepStatus,
  Task,
  TaskOutcome,
  Vars,
} from './types.ts';
import type { ConnectionPool } from './transport.ts';

/** Steps probed together at most (bounds the size of one probe script). */
const MAX_PROBE_BATCH = 64;
/** After a change, the next batch starts this small and doubles while steps report no change. */
const MIN_PROBE_BATCH = 4;

export interface HostOutcome {
  host: string;
  status: 'ok' | 'failed' | 'unreachable' | 'skipped';
  counts: Record<StepStatus, number>;
  ms: number;
  error?: string;
}

export interface RoleRunResult {
  role: string;
  results: StepResult[];
  hosts: HostOutcome[];
  aborted?: string;
}

export interface RunEnv {
  pool: ConnectionPool;
  /** the run's event stream (lib/events.ts): every listener (console, log, report, plan) hears the runner there */
  events: EventStream;
  /** applying a plan (lib/plan.ts): a message when a step's plan is not the planned one (the step fails) */
  planGuard?: (e: EventOf<'step.plan'>) => string | undefined;
  options: RunOptions;
  /** every host of the inventory by name (for delegateTo) */
  allHosts: Map<string, HostSpec>;
  /** hosts of the inventory by pattern (not restricted by --limit) */
  select?: (pattern: string) => HostSpec[];
  /** set on SIGINT: no new step starts */
  signal: { interrupted: boolean };
  /** per-host state kept across roles of one run: facts, registered values */
  hostState: Map<string, HostState>;
  /** probes read ahead for several roles (prefetchProbes): used while the run has written nothing since */
  prefetched?: PrefetchedProbes;
}

/** A probe's output in a HostRun's cache; `quiet`: pool.writes when it was read, if it is valid only while unchanged. */
interface Probed {
  out: string;
  quiet?: number;
}

/** A step's read-only probe: an operation's, or a task's optional one. */
function probeOf(s: Step, ctx: StepContext): Probe | null {
  return isOperation(s) ? s.probe(ctx) : (s.probe?.(ctx) ?? null);
}

function probeKey(p: Probe, s: Step): string {
  return `${(p.become ?? s.options.become) ? 'become' : 'user'}\0${p.script}`;
}

/**
 * One script running many probes, each output after a marker line (parseProbes reads them back). The marker
 * starts on a line of its own even after an output without a final newline (printf '\n'; one more at the end).
 * Its prelude (lib/shell.ts batchPrelude) lets the probes share what they ask alike: a command several of them run
 * (memo) runs once, and the words they gather (Probe.gather) are asked about in one command.
 */
export function probeScript(batch: { id: string | number; script: string; gather?: Probe['gather'] }[]): string {
  const parts = batch.map((b) => `printf '\\n%s\\n' ${sh`${`${PROBE_MARK}:${b.id}`}`}\n( ${b.script}\n) 2>&1 </dev/null`);
  // a word that would need quoting is left out of its list: its probe asks on its own (the same answer)
  const gather = new Map(
    Object.entries(mergeGather(batch.map((b) => b.gather)))
      .filter(([name]) => GATHER_NAME.test(name))
      .map(([name, words]) => [name, words.filter((w) => GATHER_WORD.test(w))] as const)
      .filter(([, words]) => words.length > 1),
  );
  // The output is gathered on the host (dd, up to 1 MiB at a time) and sent at once: written as each probe prints it,
  // it came in ~30 SSH packets per host (as many reads, decryptions and stream events here, and writes for sshd).
  return `${batchPrelude(gather)}\n{\n${parts.join('\n')}\nprintf '\\n'\n} | ${GATHER}`;
}

export function parseProbes(stdout: string): Map<string, string> {
  const parts = stdout.split(PROBE_SPLIT);
  // parts: [before, id, body, id, body, ...]; each body ends with the newline printed before the next marker
  const out = new Map<string, string>();
  for (let k = 1; k < parts.length; k += 2) out.set(parts[k]!, (parts[k + 1] ?? '').replace(/\n$/, '').replace(/\n$/, ''));
  return out;
}

/**
 * Probes read ahead on each host for the roles of a phase (or a whole playbook) by prefetchProbes(), by script.
 * They hold while the run's pool has sent no command that is not read-only (`writes`): then a role's step with the
 * same probe script on the same host takes its output from here instead of a round trip.
 */
export class PrefetchedProbes {
  /** ConnectionPool.writes when these probes were read; -1: none */
  writes = -1;
  /** names of the roles prefetched */
  readonly roles = new Set<string>();
  private readonly byHost = new Map<string, Map<string, string>>();

  valid(pool: { writes: number }): boolean {
    return this.writes >= 0 && this.writes === pool.writes;
  }

  /** the output of this probe on this host, if it was read and still holds */
  get(host: string, key: string, pool: { writes: number }): string | undefined {
    return this.valid(pool) ? this.byHost.get(host)?.get(key) : undefined;
  }

  set(host: string, key: string, out: string): void {
    let m = this.byHost.get(host);
    if (!m) this.byHost.set(host, (m = new Map()));
    m.set(key, out);
  }

  clear(): void {
    this.writes = -1;
    this.roles.clear();
    this.byHost.clear();
  }
}

export interface HostState {
  facts?: FactCache;
  registered: Record<string, StepResult>;
  failed?: string;
  unreachable?: string;
  /** the run was interrupted (Ctrl-C) while this host had steps left: it goes into the retry file */
  interrupted?: boolean;
}

export function newHostState(): HostState {
  return { registered: {} };
}

const PROBE_MARK = '@@@wpfarm-probe';
/** a probe's marker line in a batch's output (parseProbes) */
const PROBE_SPLIT = new RegExp(`^${PROBE_MARK}:(\\d+)\\n`, 'm');
/** reads its whole input (up to 1 MiB at a time) before writing it in one write (GNU coreutils) */
const GATHER = 'dd bs=1M iflag=fullblock status=none';

function emptyCounts(): Record<StepStatus, number> {
  return { ok: 0, changed: 0, failed: 0, skipped: 0, unreachable: 0 };
}

/** Whether --tags/--skip-tags let a step (or, without its own tags, a whole role) run. */
export function tagsMatch(roleTags: readonly string[], ownTags: readonly string[] | undefined, opts: RunOptions): boolean {
  // without --tags/--skip-tags (the common case) only 'never' counts: no list built per step and host
  if (!opts.skipTags?.length && !opts.tags?.length) return !roleTags.includes('never') && !(ownTags?.includes('never') ?? false);
  const stepTags = [...roleTags, ...(ownTags ?? [])];
  if (opts.skipTags?.length && stepTags.some((t) => opts.skipTags!.includes(t))) return false;
  if (opts.tags?.length) {
    if (stepTags.includes('always')) return true;
    return stepTags.some((t) => opts.tags!.includes(t));
  }
  if (stepTags.includes('never')) return false;
  return true;
}

function isOperation(s: Step): s is Operation {
  return s.kind !== 'task';
}

function errMessage(e: unknown): string {
  return mask(e instanceof Error ? e.message : String(e));
}

/** Shared state between the hosts of one role run (runOnce, anyErrorsFatal). */
interface RoleShared {
  once: Map<string, Promise<StepResult>>;
  /** hosts of the current batch, in inventory order: a runOnce step runs on the first one still running */
  order: string[];
  /** hosts whose run ended (done, failed, unreachable), with how it ended */
  gone: Map<string, string>;
  /** hosts that started the role's steps (not skipped for an earlier failure, not unreachable) */
  started: Set<string>;
  /** ctx.barrier(): by name, for the current batch */
  barriers: Map<string, BarrierState>;
  /** hosts run in parallel at most (a barrier needs the whole batch running at once) */
  forks: number;
  /** hosts waiting for a runOnce step to be started by the host in charge of it */
  waiters: Set<() => void>;
  fatal: { stop: boolean };
  /** bad input found while preparing a host's steps: the whole run stops with exit 4 */
  inputError?: InputError;
}

interface BarrierState {
  arrived: Map<string, unknown>;
  open: Promise<BarrierResult>;
  release(r: BarrierResult): void;
  released: boolean;
}

/** Open every barrier that every host of the batch has either reached or left behind (its run ended). */
function settleBarriers(shared: RoleShared): void {
  for (const b of shared.barriers.values()) {
    if (b.released || !shared.order.every((h) => b.arrived.has(h) || shared.gone.has(h))) continue;
    b.released = true;
    const arrived: Record<string, unknown> = {};
    const missing: Record<string, string> = {};
    for (const h of shared.order) {
      if (b.arrived.has(h)) arrived[h] = b.arrived.get(h);
      else if (shared.started.has(h)) missing[h] = shared.gone.get(h) ?? 'ended';
    }
    b.release({ arrived, missing });
  }
}

class HostRun {
  readonly results: StepResult[] = [];
  readonly notified = new Set<string>();
  private probeCache = new Map<number, Probed>();
  private batchSize = MAX_PROBE_BATCH;
  /** ConnectionPool.writes when the task running now started (ctx.run's `probed` holds while it is unchanged) */
  private taskWrites = -1;
  private conn: (Connection & { abortChannels(): Promise<string[]> }) | null = null;

  constructor(
    readonly role: Role,
    readonly host: HostSpec,
    readonly env: RunEnv,
    readonly state: HostState,
    readonly shared: RoleShared,
  ) {}

  async connection(): Promise<Connection & { abortChannels(): Promise<string[]> }> {
    if (!this.conn) this.conn = await this.env.pool.get(this.host);
    return this.conn;
  }

  context(host: HostSpec = this.host, vars: Vars = this.host.vars): StepContext {
    const self = this;
    const connFor = () => (host === self.host ? self.connection() : self.env.pool.get(host));
    const facts = (): FactCache => {
      if (host !== self.host) return new FactCache((cmd) => connFor().then((c) => c.exec(cmd, { readOnly: true })));
      self.state.facts ??= new FactCache((cmd) => connFor().then((c) => c.exec(cmd, { readOnly: true })));
      return self.state.facts;
    };
    let connRef: Connection | null = null;
    const ctx: StepContext = {
      host,
      vars,
      check: self.env.options.check,
      diff: self.env.options.diff,
      registered: self.state.registered,
      interrupted: () => self.env.signal.interrupted,
      async exec(command: string, opts?: ExecOptions): Promise<ExecResult> {
        const c = await connFor();
        if (!opts?.readOnly) {
          self.probeCache.clear(); // a free command may change anything
          self.state.facts?.forgetVolatile();
        }
        return c.exec(command, opts);
      },
      run: (op: Operation, probed?: string) =>
        self.runOperation(op, ctx, [], true, -1, probed !== undefined && self.env.pool.writes === self.taskWrites ? probed : undefined),
      fact: (def, ...args) => facts().get(def, ...args),
      secret(value: string): string {
        return registerSecret(value);
      },
      notify(handler: string) {
        self.notified.add(handler);
      },
      get conn(): Connection {
        if (!connRef) throw new Error('ctx.conn used before the connection was opened');
        return connRef;
      },
      log(message: string) {
        self.env.events.log(host.name, message);
      },
      hosts(pattern: string): HostSpec[] {
        if (!self.env.select) throw new Error('ctx.hosts() needs an inventory (RunEnv.select)');
        return self.env.select(pattern);
      },
      hostContext(name: string): StepContext {
        const h = self.env.allHosts.get(name);
        if (!h) throw new Error(`unknown host '${name}'`);
        return self.context(h, h.vars);
      },
      barrier: <T>(name: string, opts?: { value?: T; timeoutMs?: number }) =>
        self.barrier(name, opts?.value, opts?.timeoutMs) as Promise<BarrierResult<T>>,
    };
    // resolve conn eagerly for operations that need put()
    void connFor().then(
      (c) => (connRef = c),
      () => undefined,
    );
    return ctx;
  }

  /** ctx.barrier(): this host reached `name`; resolves when every host of the batch reached it or ended. */
  async barrier(name: string, value: unknown, timeoutMs?: number): Promise<BarrierResult> {
    const shr = this.shared;
    if (shr.forks < shr.order.length) {
      throw new Error(`barrier '${name}': the ${shr.order.length} hosts of the batch must run at once, but --forks is ${shr.forks}`);
    }
    let b = shr.barriers.get(name);
    if (!b) {
      let release!: (r: BarrierResult) => void;
      const open = new Promise<BarrierResult>((r) => (release = r));
      b = { arrived: new Map(), open, release, released: false };
      shr.barriers.set(name, b);
    }
    if (!b.arrived.has(this.host.name)) b.arrived.set(this.host.name, value);
    settleBarriers(shr);
    if (b.released || timeoutMs === undefined) return b.open;
    const ac = new AbortController();
    const state = b;
    const late = sleep(timeoutMs, undefined, { signal: ac.signal, ref: false }).then(() => {
      const waiting = shr.order.filter((h) => !state.arrived.has(h) && !shr.gone.has(h));
      throw new Error(`barrier '${name}': ${waiting.join(', ')} did not reach it within ${Math.round(timeoutMs / 1000)} s`);
    });
    try {
      return await Promise.race([b.open, late]);
    } finally {
      ac.abort();
      late.catch(() => undefined);
    }
  }

  /** The cached probe output of step `index`, if it holds (a `quiet` one only while the run wrote nothing since). */
  private cached(index: number): string | undefined {
    const e = this.probeCache.get(index);
    if (!e) return undefined;
    if (e.quiet !== undefined && e.quiet !== this.env.pool.writes) {
      this.probeCache.delete(index);
      return undefined;
    }
    return e.out;
  }

  /**
   * Probe steps[from..] in one round trip: operations, and tasks with a probe; delegated steps are left out.
   * Probes read past a task, a runOnce or delegated step (and those of such steps themselves) hold only while the
   * run writes nothing (Probed.quiet); so do those taken from the run's prefetched probes.
   */
  private async probeBatch(ctx: StepContext, steps: Step[], from: number): Promise<void> {
    const batch: { index: number; script: string; gather?: Probe['gather']; become: boolean; quiet?: number }[] = [];
    const size = this.batchSize;
    this.batchSize = Math.min(MAX_PROBE_BATCH, this.batchSize * 2);
    const writes = this.env.pool.writes;
    const pre = this.env.prefetched;
    let past = false;
    for (let i = from; i < steps.length && batch.length < size; i++) {
      const s = steps[i]!;
      if (isFlush(s)) {
        past = true;
        continue;
      }
      if (s.options.tags && !tagsMatch(this.role.tags ?? [], s.options.tags, this.env.options)) continue;
      const to = s.options.delegateTo;
      let p: Probe | null;
      try {
        p = probeOf(s, to ? this.delegateContext(to) : ctx);
      } catch (e) {
        if (!to) throw e;
        past = true; // a delegated step's probe that cannot be built yet: read when it runs
        continue;
      }
      const on = p?.host ?? to;
      if (on && on !== this.host.name) {
        // read on another host (a delegated step, Probe.host): from the read-ahead only, else on its own when it runs
        past = true;
        const known = p ? pre?.get(on, probeKey(p, s), this.env.pool) : '';
        if (known !== undefined && (p || isOperation(s))) this.probeCache.set(i, { out: known, quiet: writes });
        continue;
      }
      if (!isOperation(s) || s.options.runOnce) past = true;
      const quiet = past ? writes : undefined;
      if (!p) {
        if (isOperation(s)) this.probeCache.set(i, { out: '', quiet });
        continue;
      }
      const known = pre?.get(this.host.name, probeKey(p, s), this.env.pool);
      if (known !== undefined) {
        this.probeCache.set(i, { out: known, quiet: pre!.writes });
        continue;
      }
      batch.push({ index: i, script: p.script, gather: p.gather, become: !!(p.become ?? s.options.become), quiet });
    }
    if (!batch.length) return;
    const become = batch.some((b) => b.become);
    const c = await this.connection();
    const r = await c.exec(probeScript(batch.map((b) => ({ id: b.index, script: b.script, gather: b.gather }))), {
      become,
      nothrow: true,
      readOnly: true,
    });
    this.env.events.emit({ kind: 'probe', host: this.host.name, steps: batch.length });
    const outs = parseProbes(r.stdout);
    for (const b of batch) this.probeCache.set(b.index, { out: outs.get(String(b.index)) ?? '', quiet: b.quiet });
  }

  private readonly delegates = new Map<string, StepContext>();

  /** The context a step delegated to `name` runs in (this host's vars there). */
  delegateContext(name: string): StepContext {
    let c = this.delegates.get(name);
    if (!c) {
      const h = this.env.allHosts.get(name);
      if (!h) throw new Error(`delegateTo: unknown host '${name}'`);
      this.delegates.set(name, (c = this.context(h, this.host.vars)));
    }
    return c;
  }

  private async probeOne(step: Step, ctx: StepContext): Promise<string> {
    const p = probeOf(step, ctx);
    if (!p) return '';
    const on = p.host ? this.env.allHosts.get(p.host) : ctx.host;
    if (!on) throw new Error(`${step.title}: probe on unknown host '${p.host}'`);
    const c = await (on === this.host ? this.connection() : this.env.pool.get(on));
    const r = await c.exec(`( ${p.script}\n) 2>&1 </dev/null`, {
      become: !!(p.become ?? step.options.become),
      nothrow: true,
      readOnly: true,
    });
    this.env.events.emit({ kind: 'probe', host: on.name, steps: 1 });
    return r.stdout.replace(/\n$/, '');
  }

  /**
   * A step's probe output: from the batch cache when it holds (probing from here on if not), else on its own;
   * `given`: read by the task that runs this operation (ctx.run), still valid.
   */
  private async probed(step: Step, ctx: StepContext, steps: Step[], index: number, direct: boolean, given?: string): Promise<string> {
    if (given !== undefined) return given;
    if (step.options.delegateTo && index >= 0) {
      // read ahead with the delegate host's probes (probeBatch), else on its own
      const out = this.cached(index);
      this.probeCache.delete(index);
      return out ?? this.probeOne(step, ctx);
    }
    if (direct || index < 0) return this.probeOne(step, ctx);
    let out = this.cached(index);
    if (out === undefined) {
      await this.probeBatch(ctx, steps, index);
      out = this.cached(index);
    }
    this.probeCache.delete(index);
    return out ?? this.probeOne(step, ctx);
  }

  private async applyPlan(plan: Plan, op: Operation, ctx: StepContext): Promise<void> {
    if (!plan.apply) return;
    this.env.events.emit({ kind: 'apply', host: ctx.host.name, step: op.title });
    if (typeof plan.apply === 'function') {
      await plan.apply(ctx);
    } else {
      const c = await (ctx.host === this.host ? this.connection() : this.env.pool.get(ctx.host));
      await c.exec(plan.apply.script, { stdin: plan.apply.stdin, become: plan.apply.become ?? op.options.become });
    }
    this.probeCache.clear();
    this.state.facts?.forgetVolatile();
    this.batchSize = MIN_PROBE_BATCH;
    if (plan.invalidates?.length) {
      this.state.facts?.invalidate(plan.invalidates);
    }
  }

  /**
   * Run one operation: probe (from the batch cache when possible), plan, apply unless check.
   * `steps`/`index` let the caller use the batch cache; `direct` is for ctx.run() inside tasks.
   */
  async runOperation(op: Operation, ctx: StepContext, steps: Step[], direct: boolean, index = -1, given?: string): Promise<StepResult> {
    const t0 = performance.now();
    const base = { host: ctx.host.name, step: op.title, kind: op.kind };
    const attempts = Math.max(1, (op.options.retries ?? 0) + 1);
    const last = await this.retrySteps(op, ctx, attempts, async () => {
      try {
        const out = await this.probed(op, ctx, steps, index, direct, given);
        given = undefined; // a retry probes again
        const plan = await op.plan(ctx, out);
        const planned = this.env.events.emit({
          kind: 'step.plan',
          host: this.host.name,
          on: ctx.host === this.host ? undefined : ctx.host.name,
          role: this.role.name,
          step: op.title,
          stepKind: op.kind,
          changed: plan.changed,
          changes: plan.changes,
          probeSha256: sha256hex(out),
          nested: direct && !op.options.delegateTo,
        }) as EventOf<'step.plan'>;
        const refused = !planned.nested && this.env.planGuard?.(planned);
        if (refused) throw new Error(refused);
        // Ctrl-C between a step's probe and its apply: the step does not apply (within a task, ctx.run() goes on:
        // the task decides where its units end, through ctx.interrupted())
        if (plan.changed && !ctx.check && !direct && this.env.signal.interrupted) {
          throw new InterruptedError(ctx.host.name, 'interrupted before applying');
        }
        if (plan.changed && !ctx.check) await this.applyPlan(plan, op, ctx);
        return {
          ...base,
          status: plan.changed ? 'changed' : 'ok',
          changes: plan.changes.map(mask),
          diff: plan.diff !== undefined ? mask(plan.diff) : undefined,
          result: plan.result,
          reason: plan.changed || plan.reason === undefined ? undefined : mask(plan.reason),
          ms: performance.now() - t0,
        };
      } catch (e) {
        if (e instanceof UnreachableError || e instanceof InterruptedError) throw e;
        return { ...base, status: 'failed', changes: [], error: errMessage(e), ms: performance.now() - t0 };
      }
    });
    return last;
  }

  /**
   * A step's `retries`, `delayMs` and `until` (operations and tasks alike): attempts until one is final,
   * then a result that met no `until` is a failure.
   */
  private async retrySteps(step: Step, ctx: StepContext, attempts: number, attempt: () => Promise<StepResult>): Promise<StepResult> {
    const until = step.options.until;
    const last = await retry(attempt, {
      attempts,
      delayMs: step.options.delayMs ?? 1000,
      // after Ctrl-C no attempt is retried
      done: (r) => this.env.signal.interrupted || (r.status !== 'failed' && (!until || until(r))),
      onRetry: (n) => {
        this.probeCache.clear();
        this.env.events.log(ctx.host.name, `retrying '${step.title}' (${n}/${attempts - 1})`);
      },
    });
    if (last.status !== 'failed' && until && !until(last)) {
      return { ...last, status: 'failed', error: `condition not met after ${attempts} attempts` };
    }
    return last;
  }

  async runTask(t: Task, ctx: StepContext, steps: Step[] = [], index = -1): Promise<StepResult> {
    const t0 = performance.now();
    const base = { host: ctx.host.name, step: t.title, kind: t.kind };
    const attempts = Math.max(1, (t.options.retries ?? 0) + 1);
    return this.retrySteps(t, ctx, attempts, async () => {
      try {
        const writes = this.env.pool.writes;
        const probed = t.probe ? await this.probed(t, ctx, steps, index, false) : undefined;
        this.taskWrites = this.env.pool.writes;
        let o: TaskOutcome;
        try {
          o = (await t.run(ctx, probed)) ?? {};
        } finally {
          this.taskWrites = -1;
        }
        // a task that wrote nothing (only read-only commands, facts, operations without change) leaves the probes
        // read so far valid; anything else may have changed anything
        if (o.changed || this.env.pool.writes !== writes) {
          this.probeCache.clear();
          this.state.facts?.forgetVolatile();
        }
        const standIn = o.standIn ? { standIn: { ...o.standIn, why: mask(o.standIn.why) } } : {};
        return o.skipped
          ? { ...base, ...standIn, status: 'skipped', reason: mask(o.skipped), changes: [], ms: performance.now() - t0 }
          : {
              ...base,
              ...standIn,
              status: o.changed ? 'changed' : 'ok',
              changes: (o.changes ?? []).map(mask),
              diff: o.diff !== undefined ? mask(o.diff) : undefined,
              result: o.result,
              reason: o.changed || o.reason === undefined ? undefined : mask(o.reason),
              ms: performance.now() - t0,
            };
      } catch (e) {
        if (e instanceof UnreachableError || e instanceof InterruptedError) throw e;
        return { ...base, status: 'failed', changes: [], error: errMessage(e), ms: performance.now() - t0 };
      }
    });
  }

  async runStep(step: Step, ctx: StepContext, steps: Step[], index: number): Promise<StepResult> {
    const o = step.options;
    let sctx = ctx;
    if (o.delegateTo) sctx = this.delegateContext(o.delegateTo);
    if (o.when && !(await o.when(sctx))) {
      return { host: this.host.name, step: step.title, kind: step.kind, status: 'skipped', reason: 'condition false', changes: [], ms: 0 };
    }
    return isOperation(step) ? this.runOperation(step, sctx, steps, !!o.delegateTo, index) : this.runTask(step, sctx, steps, index);
  }

  record(r: StepResult, step: Step): void {
    if (step.location) r.location ??= step.location;
    this.results.push(r);
    this.emitEnd(r, step);
    if (step.options.register) this.state.registered[step.options.register] = r;
    if (r.status === 'changed' && step.options.notify) {
      for (const n of ([] as string[]).concat(step.options.notify)) this.notified.add(n);
    }
  }

  private emitEnd(r: StepResult, step?: Step): void {
    const location = step?.location;
    if (r.diff) this.env.events.emit({ kind: 'diff', host: r.host, step: r.step, diff: r.diff });
    this.env.events.emit({ kind: 'step.end', host: this.host.name, role: this.role.name, result: r, location });
  }

  /** Run the role's steps on this host. */
  async run(): Promise<HostOutcome> {
    const t0 = performance.now();
    const counts = emptyCounts();
    const outcome = (status: HostOutcome['status'], error?: string): HostOutcome => {
      for (const r of this.results) counts[r.status]++;
      const ms = performance.now() - t0;
      this.env.events.emit({ kind: 'host.end', host: this.host.name, role: this.role.name, status, ms, error });
      return { host: this.host.name, status, counts, ms, error };
    };
    if (this.state.unreachable) return outcome('unreachable', this.state.unreachable);
    if (this.state.failed) return outcome('skipped', `skipped: failed earlier (${this.state.failed})`);
    this.env.events.emit({ kind: 'host.start', host: this.host.name, role: this.role.name });
    try {
      await this.connection();
      this.env.events.emit({ kind: 'host.connect', host: this.host.name, ok: true, ms: performance.now() - t0 });
    } catch (e) {
      const msg = errMessage(e);
      this.env.events.emit({ kind: 'host.connect', host: this.host.name, ok: false, ms: performance.now() - t0, error: msg });
      this.state.unreachable = msg;
      const r: StepResult = {
        host: this.host.name,
        step: 'connect',
        kind: 'connect',
        status: 'unreachable',
        error: msg,
        changes: [],
        ms: performance.now() - t0,
      };
      this.results.push(r);
      this.emitEnd(r);
      return outcome('unreachable', msg);
    }
    const ctx = this.context();
    this.shared.started.add(this.host.name);
    let steps: Step[];
    try {
      steps = await this.role.steps(ctx);
    } catch (e) {
      if (e instanceof InputError) this.shared.inputError ??= e;
      const msg = errMessage(e);
      this.state.failed = msg;
      const r: StepResult = {
        host: this.host.name,
        step: `${this.role.name}: prepare steps`,
        kind: 'role',
        status: 'failed',
        error: msg,
        changes: [],
        ms: 0,
      };
      this.record(r, { kind: 'task', title: r.step, options: {}, run: async () => undefined });
      return outcome('failed', msg);
    }
    const roleTags = this.role.tags ?? [];
    // handlers run when notified, whatever --tags says (as in Ansible)
    const runList = async (list: Step[], handlers = false, handler?: string): Promise<string | null> => {
      for (let i = 0; i < list.length; i++) {
        if (this.env.signal.interrupted) return 'interrupted';
        if (this.shared.fatal.stop) return 'stopped: another host failed and anyErrorsFatal is set';
        const step = list[i]!;
        if (isFlush(step)) {
          const stop = await runHandlers();
          if (stop) return stop;
          continue;
        }
        if (!handlers && !tagsMatch(roleTags, step.options.tags, this.env.options)) continue;
        const location = step.location;
        const { name: role } = this.role;
        this.env.events.emit({ kind: 'step.start', host: this.host.name, role, step: step.title, stepKind: step.kind, location, handler });
        let r: StepResult;
        try {
          if (step.options.runOnce) {
            // Like Ansible's run_once: on the first host (inventory order) that is still running, so that a
            // rerun runs it where the first run did; the others wait for its outcome. If that host's run
            // ends before it gets there (failed, unreachable), the next host takes over.
            const key = `${i}:${step.title}`;
            let p = this.shared.once.get(key);
            let first = false;
            while (!p) {
              if (this.shared.order.find((h) => !this.shared.gone.has(h)) === this.host.name) {
                first = true;
                p = this.runStep(step, ctx, list, i);
                this.shared.once.set(key, p);
                wakeAll(this.shared);
                break;
              }
              await new Promise<void>((resolve) => {
                const w = () => {
                  this.shared.waiters.delete(w);
                  resolve();
                };
                this.shared.waiters.add(w);
              });
              p = this.shared.once.get(key);
            }
            r = await p;
            // the other hosts mirror the outcome (a change is counted once, on the host that made it)
            if (!first)
              r = {
                ...r,
                host: this.host.name,
                status: r.status === 'failed' || r.status === 'skipped' ? r.status : 'ok',
                changes: [],
                reason: `ran once on ${r.host}${r.status === 'skipped' && r.reason ? `: ${r.reason}` : ''}`,
                ms: 0,
              };
          } else {
            r = await this.runStep(step, ctx, list, i);
          }
        } catch (e) {
          const msg = errMessage(e);
          if (e instanceof InterruptedError) {
            const base = { host: this.host.name, step: step.title, kind: step.kind };
            this.record({ ...base, status: 'failed', error: msg, changes: [], ms: 0 }, step);
            return 'interrupted';
          }
          if (!(e instanceof UnreachableError)) {
            this.record(
              { host: this.host.name, step: step.title, kind: step.kind, status: 'failed', error: msg, changes: [], ms: 0 },
              step,
            );
            return msg;
          }
          this.state.unreachable = msg;
          this.record(
            { host: this.host.name, step: step.title, kind: step.kind, status: 'unreachable', error: msg, changes: [], ms: 0 },
            step,
          );
          return msg;
        }
        if (r.status === 'failed' && step.options.ignoreErrors) {
          this.record({ ...r, status: 'ok', reason: `ignored error: ${r.error}` }, step);
          continue;
        }
        this.record(r, step);
        // a step that failed after Ctrl-C (its command was stopped) is part of the interrupt, not a host failure
        if (r.status === 'failed') return this.env.signal.interrupted ? 'interrupted' : (r.error ?? 'failed');
      }
      return null;
    };
    // handlers: once per host, in the order the role declares them, at the end of the role or at a
    // flushHandlers() step, only when the host did not fail
    const runHandlers = async (): Promise<string | null> => {
      const unknown = [...this.notified].filter((n) => !this.role.handlers?.[n]);
      if (unknown.length) {
        const error = `notified handler(s) not defined in role ${this.role.name}: ${unknown.join(', ')}`;
        const r: StepResult = { host: this.host.name, step: 'handlers', kind: 'handlers', status: 'failed', error, changes: [], ms: 0 };
        this.results.push(r);
        this.emitEnd(r);
        return error;
      }
      for (const [name, make] of Object.entries(this.role.handlers ?? {})) {
        if (!this.notified.has(name)) continue;
        this.notified.delete(name);
        this.env.events.emit({ kind: 'handler', host: this.host.name, role: this.role.name, handler: name });
        const hs = make(ctx).map((s) => relabel(s, `handler ${name}: ${s.title}`));
        // the probe cache is keyed by position in a list: never let a handler list see the main list's entries
        this.probeCache.clear();
        const stop = await runList(hs, true, name);
        this.probeCache.clear();
        if (stop) return stop;
      }
      return null;
    };
    let stop = await runList(steps);
    if (!stop && this.notified.size) stop = await runHandlers();
    if (stop === null) return outcome('ok');
    if (this.state.unreachable) return outcome('unreachable', this.state.unreachable);
    if (stop === 'interrupted') {
      this.state.interrupted = true;
      return outcome('failed', 'interrupted');
    }
    this.state.failed ??= stop;
    if (this.role.anyErrorsFatal) this.shared.fatal.stop = true;
    return outcome('failed', stop);
  }
}

const FLUSH = Symbol.for('wpfarm.flushHandlers');

/** A step that runs the handlers notified so far, now (Ansible's meta: flush_handlers). */
export function flushHandlers(): Task {
  return Object.assign({ kind: 'task' as const, title: 'flush handlers', options: {}, run: async () => undefined }, { [FLUSH]: true });
}

function isFlush(s: Step): boolean {
  return (s as unknown as Record<symbol, unknown>)[FLUSH] === true;
}

function relabel(s: Step, title: string): Step {
  return isOperation(s)
    ? ({ ...s, title, probe: s.probe.bind(s), plan: s.plan.bind(s) } as Operation)
    : ({ ...s, title, run: s.run.bind(s) } as Task);
}

function batchesOf<T>(items: T[], serial: number | string | undefined): T[][] {
  if (serial === undefined) return [items];
  let size = typeof serial === 'number' ? serial : NaN;
  if (typeof serial === 'string') {
    const m = /^(\d+)%$/.exec(serial.trim());
    size = m ? Math.max(1, Math.floor((items.length * Number(m[1])) / 100)) : Number(serial);
  }
  if (!Number.isInteger(size) || size < 1) throw new Error(`invalid serial '${String(serial)}'`);
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function wakeAll(shared: RoleShared): void {
  for (const w of [...shared.waiters]) w();
}

/** Run one role over hosts: parallel within a serial batch (forks), batches one after another. */
export async function runRole(role: Role, hosts: HostSpec[], env: RunEnv): Promise<RoleRunResult> {
  env.events.emit({ kind: 'role.start', role: role.name, hosts: hosts.map((h) => h.name) });
  const results: StepResult[] = [];
  const outcomes: HostOutcome[] = [];
  const shared: RoleShared = {
    once: new Map(),
    order: [],
    gone: new Map(),
    started: new Set(),
    barriers: new Map(),
    forks: Math.max(1, env.options.forks),
    waiters: new Set(),
    fatal: { stop: false },
  };
  const limit = pLimit(Math.max(1, env.options.forks));
  let aborted: string | undefined;
  for (const batch of batchesOf(hosts, role.serial)) {
    if (aborted || env.signal.interrupted) {
      for (const h of batch) {
        if (aborted) continue;
        if (!env.hostState.has(h.name)) env.hostState.set(h.name, newHostState());
        env.hostState.get(h.name)!.interrupted = true;
      }
      for (const h of batch)
        outcomes.push({ host: h.name, status: 'skipped', counts: emptyCounts(), ms: 0, error: aborted ?? 'interrupted' });
      continue;
    }
    const runs = batch.map((h) => {
      let st = env.hostState.get(h.name);
      if (!st) env.hostState.set(h.name, (st = newHostState()));
      return new HostRun(role, h, env, st, shared);
    });
    shared.order = batch.map((h) => h.name);
    shared.barriers = new Map();
    const got = await Promise.all(
      runs.map((r) =>
        limit(async () => {
          let how = 'its run ended before reaching it';
          try {
            const o = await r.run();
            if (o.error) how = `${o.status}: ${o.error}`;
            return o;
          } finally {
            shared.gone.set(r.host.name, how);
            wakeAll(shared);
            settleBarriers(shared);
          }
        }),
      ),
    );
    for (const r of runs) results.push(...r.results);
    outcomes.push(...got);
    if (shared.inputError) {
      env.events.emit({ kind: 'role.end', role: role.name });
      throw shared.inputError;
    }
    const bad = got.filter((o) => o.status === 'failed' || o.status === 'unreachable').length;
    if (role.anyErrorsFatal && bad) aborted = `aborted: a host failed and ${role.name} has anyErrorsFatal`;
    else if (role.maxFailPercentage !== undefined && (bad * 100) / batch.length > role.maxFailPercentage) {
      aborted = `aborted: ${bad}/${batch.length} hosts of the batch failed, more than maxFailPercentage ${role.maxFailPercentage}%`;
    }
    if (aborted) env.events.log('*', aborted);
  }
  env.events.emit({ kind: 'role.end', role: role.name });
  return { role: role.name, results, hosts: outcomes, aborted };
}

/**
 * Read ahead, on every host, the probes of several roles (the roles of a phase, or of a whole playbook) in ONE
 * round trip per host, before the first of them runs: each role's steps are built for the host (their facts
 * gathered together), and the probes of their steps (operations and tasks with a probe; not those --tags leaves out)
 * sent as one script to the host each is read on (a delegated step's on its delegate, a Probe.host one on that host).
 * The roles then run as always, one after another with their own
 * events, recap and check mode; a step whose probe script was read here takes its output from `store` as long as
 * the run has sent no command that is not read-only (ConnectionPool.writes), so a no-change rerun of all these
 * roles costs this round trip (and one for facts, if their steps ask for any). Hosts already failed or
 * unreachable are left out; a host that cannot be reached or whose steps cannot be built here is left to the
 * role run, which reports it. Read-only: nothing is applied, no step result is recorded.
 */
export async function prefetchProbes(roles: { role: Role; hosts: HostSpec[] }[], env: RunEnv, store: PrefetchedProbes): Promise<void> {
  store.clear();
  const byHost = new Map<string, { host: HostSpec; roles: Role[] }>();
  for (const { role, hosts } of roles) {
    store.roles.add(role.name);
    for (const h of hosts) {
      const e = byHost.get(h.name) ?? { host: h, roles: [] };
      e.roles.push(role);
      byHost.set(h.name, e);
    }
  }
  store.writes = env.pool.writes;
  const limit = pLimit(Math.max(1, env.options.forks));
  /** by the host a probe is read on (its step's, a delegated step's, Probe.host): script key → script */
  const scripts = new Map<string, { host: HostSpec; scripts: Map<string, Probe>; become: boolean }>();
  const want = (host: HostSpec, key: string, probe: Probe, become: boolean) => {
    const e = scripts.get(host.name) ?? { host, scripts: new Map<string, Probe>(), become: false };
    e.scripts.set(key, probe);
    e.become ||= become;
    scripts.set(host.name, e);
  };
  const usable = (name: string): HostState => {
    let st = env.hostState.get(name);
    if (!st) env.hostState.set(name, (st = newHostState()));
    return st;
  };
  // 1. every role's steps built on every host (their facts gathered together), their probes routed to where they are read
  await Promise.all(
    [...byHost.values()].map(({ host, roles: rs }) =>
      limit(async () => {
        if (env.signal.interrupted) return;
        const state = usable(host.name);
        if (state.failed || state.unreachable) return;
        try {
          await env.pool.get(host);
        } catch {
          return;
        }
        const shared: RoleShared = {
          once: new Map(),
          order: [host.name],
          gone: new Map(),
          started: new Set(),
          barriers: new Map(),
          forks: 1,
          waiters: new Set(),
          fatal: { stop: false },
        };
        // quiet: a message the steps say when built is said when the role runs
        const quietly = (c: StepContext): StepContext => Object.assign(Object.create(c) as StepContext, { log: () => undefined });
        const built = await Promise.all(
          rs.map(async (role) => {
            const run = new HostRun(role, host, env, state, shared);
            const ctx = quietly(run.context());
            try {
              return { role, run, ctx, steps: await role.steps(ctx) };
            } catch {
              return null;
            }
          }),
        );
        for (const b of built) {
          if (!b) continue;
          for (const s of b.steps) {
            if (isFlush(s)) continue;
            if (!tagsMatch(b.role.tags ?? [], s.options.tags, env.options)) continue;
            let p: Probe | null;
            try {
              p = probeOf(s, s.options.delegateTo ? quietly(b.run.delegateContext(s.options.delegateTo)) : b.ctx);
            } catch {
              continue;
            }
            if (!p) continue;
            const on = env.allHosts.get(p.host ?? s.options.delegateTo ?? host.name);
            if (on) want(on, probeKey(p, s), p, !!(p.become ?? s.options.become));
          }
        }
      }),
    ),
  );
  // 2. one script per host for every probe read there
  await Promise.all(
    [...scripts.values()].map(({ host, scripts: byKey, become }) =>
      limit(async () => {
        if (env.signal.interrupted || !byKey.size) return;
        const state = usable(host.name);
        if (state.failed || state.unreachable) return;
        const keys = [...byKey.keys()];
        const script = probeScript(keys.map((k, i) => ({ id: i, script: byKey.get(k)!.script, gather: byKey.get(k)!.gather })));
        let stdout: string;
        try {
          const conn = await env.pool.get(host);
          stdout = (await conn.exec(script, { become, nothrow: true, readOnly: true })).stdout;
        } catch {
          return;
        }
        env.events.emit({ kind: 'probe', host: host.name, steps: keys.length });
        const outs = parseProbes(stdout);
        keys.forEach((k, i) => {
          const out = outs.get(String(i));
          if (out !== undefined) store.set(host.name, k, out);
        });
      }),
    ),
  );
}

/** Exit code for a finished run: 0 all ok, 2 a host failed, 3 a host unreachable (2 wins over 3? no: 3 if any unreachable and none failed). */
export function exitCodeFor(states: Iterable<HostState>, interrupted: boolean): number {
  let failed = false;
  let unreachable = false;
  for (const s of states) {
    if (s.unreachable) unreachable = true;
    else if (s.failed) failed = true;
  }
  if (interrupted) return EXIT.INTERRUPTED;
  if (failed) return EXIT.FAILED;
  if (unreachable) return EXIT.UNREACHABLE;
  return EXIT.OK;
}

export { RemoteCommandError };
