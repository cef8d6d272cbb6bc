// The engine's core contracts. Everything in lib/ is generic: it knows nothing of WordPress.
//
// A run = a role (or a playbook composing roles) applied to the hosts an inventory pattern selects.
// A role is a list of steps; a step is an Operation (declarative: probe, plan, apply) or a Task
// (a function that may call operations itself). The runner probes many operations in ONE round trip
// per host (speculatively, in order), applies only what must change, and re-probes the rest after a change.

import type { ZodType } from 'zod';

export type Vars = Record<string, unknown>;

/** One target host after inventory load (credentials already resolved, never printed). */
export interface HostSpec {
  name: string;
  address: string;
  port: number;
  user: string;
  /** path of a private key file (absolute after load) */
  key?: string;
  /** password for sudo (become), from .env; registered as secret */
  becomePassword?: string;
  groups: string[];
  /** merged vars: all < group (parents before children) < host */
  vars: Vars;
  /** where a key was declared, for error messages: "inventory/lab.yml:12" */
  source?: string;
}

/** Result of one remote command. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ExecOptions {
  /** bytes given on stdin */
  stdin?: string | Buffer;
  /** run through sudo (or as is when already root) */
  become?: boolean;
  /** milliseconds; the channel is closed after (a command not safe to stop half-way, apt/dpkg or docker, outlives its
   *  channel and runs to its end on the host: lib/shell.ts outlivingOutput) */
  timeoutMs?: number;
  /** working directory */
  cwd?: string;
  /** don't throw on non-zero exit (default: false → throw RemoteCommandError) */
  nothrow?: boolean;
  /**
   * The command changes nothing on any host (a probe, a fact gather, a query in a task): probes the runner read
   * before it stay valid. Any other command may change anything (ConnectionPool.writes).
   */
  readOnly?: boolean;
}

/** Transport to one host: one persistent SSH connection, bounded channels. */
export interface Connection {
  readonly host: HostSpec;
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  /** Atomic upload: temp file in the same directory + rename. */
  put(
    remotePath: string,
    content: string | Buffer,
    opts?: { mode?: number; owner?: string; group?: string; become?: boolean },
  ): Promise<void>;
  /**
   * A byte stream to a TCP port or a Unix socket as seen FROM the host, tunnelled through this same SSH
   * connection (direct-tcpip / streamlocal): e.g. mysql2 to /run/mysqld/mysqld.sock without an open port.
   */
  forward(target: { socketPath: string } | { host: string; port: number }): Promise<import('node:stream').Duplex>;
  /** stream a command's stdout while it runs; stdin parts written in order (binary-safe) */
  execStream?(
    command: string,
    opts?: { stdin?: Array<Buffer | import('node:stream').Readable>; become?: boolean },
  ): { stdout: import('node:stream').Readable; done: Promise<{ code: number; signal?: string | null; stderr: string }>; kill(): void };
  /** number of round trips (exec/put) made on this connection; used by tests and the bench */
  readonly roundTrips: number;
  close(): Promise<void>;
}

/** What an operation wants to change; pure data produced by plan(). */
export interface Plan {
  /** true when apply is needed */
  changed: boolean;
  /** one line per change, human readable: "mode 0644 -> 0600" */
  changes: string[];
  /** unified diff of content, when relevant */
  diff?: string;
  /** the shell script that applies the change (built with zx quoting), or a function for complex cases */
  apply?: ApplyScript | ((ctx: StepContext) => Promise<void>);
  /** fact names this change invalidates (e.g. "packages", "services", "docker") */
  invalidates?: string[];
  /** value registered under the step's `register` name */
  result?: unknown;
  /** why nothing changes ("file already has that content"), shown at -v and in the JSON report */
  reason?: string;
}

export interface ApplyScript {
  script: string;
  stdin?: string | Buffer;
  become?: boolean;
}

/** A read-only probe: a shell command whose output plan() parses. It must never change the host
 *  and must exit 0 (report state on stdout instead of failing). */
export interface Probe {
  script: string;
  become?: boolean;
  /**
   * Read on this inventory host (by name) instead of the step's: e.g. a node's state as a manager of its cluster sees
   * it. Read ahead with that host's probes (prefetchProbes); its output holds only while the run has written nothing.
   */
  host?: string;
  /**
   * Words this probe adds to lists its batch asks about once (lib/shell.ts batchPrelude, gathered): e.g. its unit
   * under `units`, for one `systemctl show` of every unit of the batch. The script must answer the same without them
   * (a probe run alone has none).
   */
  gather?: Readonly<Record<string, readonly string[]>>;
}

export interface StepOptions {
  name?: string;
  tags?: string[];
  when?: (ctx: StepContext) => boolean | Promise<boolean>;
  notify?: string | string[];
  register?: string;
  /** run on one host only (the first of the batch) */
  runOnce?: boolean;
  /** run on this host (by name) instead of the current one, with the current host's vars */
  delegateTo?: string;
  retries?: number;
  delayMs?: number;
  /** with retries: repeat until this holds on the result */
  until?: (result: StepResult) => boolean;
  ignoreErrors?: boolean;
  /** become root through sudo for this step */
  become?: boolean;
}

/** Declarative operation: read actual (probe) → compare (plan) → apply unless check. */
export interface Operation {
  readonly kind: string; // "file", "apt", "systemd", ...
  readonly title: string; // "file /etc/motd"
  readonly options: StepOptions;
  /** where the step was built: "roles/common/role.ts:42:7" (lib/ops/base.ts callerLocation) */
  readonly location?: string;
  /** null when nothing needs to be read from the host */
  probe(ctx: StepContext): Probe | null;
  /** pure: from the probe's stdout to a plan */
  plan(ctx: StepContext, probeOutput: string): Plan | Promise<Plan>;
}

/** Imperative task: free code that may call ctx.run(op) and ctx.exec(...). Must report changes honestly. */
export interface Task {
  readonly kind: 'task';
  readonly title: string;
  readonly options: StepOptions;
  readonly location?: string;
  /**
   * Optional read-only probe (its no-change fast path): the runner reads it with the probes of the steps around it,
   * in the same round trip, and gives its output to run(); a task that sees there that nothing is to be done
   * returns without a command of its own.
   */
  probe?(ctx: StepContext): Probe | null;
  /** `probed`: the output of probe(), when the task has one */
  run(ctx: StepContext, probed?: string): Promise<TaskOutcome | void>;
}

/** A production component this run did not deploy as such: replaced by a stand-in (`by`), or skipped (no `by`). */
export interface StandIn {
  component: string;
  by?: string;
  why: string;
}

export interface TaskOutcome {
  /** the step put a stand-in in place of a component, or skipped it: listed in the recap */
  standIn?: StandIn;
  changed?: boolean;
  changes?: string[];
  diff?: string;
  result?: unknown;
  skipped?: string;
  /** why nothing changed (with changed false), as Plan.reason */
  reason?: string;
}

export type Step = Operation | Task;

export type StepStatus = 'ok' | 'changed' | 'failed' | 'skipped' | 'unreachable';

export interface StepResult {
  host: string;
  step: string;
  kind: string;
  status: StepStatus;
  changes: string[];
  diff?: string;
  error?: string;
  result?: unknown;
  ms: number;
  /** why: skipped ("condition false"), or ok without change ("package already installed") */
  reason?: string;
  /** where the step was built: "roles/common/role.ts:42:7" */
  location?: string;
  /** a component replaced by a stand-in or skipped (TaskOutcome.standIn) */
  standIn?: StandIn;
}

export interface RunOptions {
  check: boolean;
  diff: boolean;
  forks: number;
  tags?: string[];
  skipTags?: string[];
  verbose: number;
}

/** What a step sees. */
export interface StepContext {
  readonly host: HostSpec;
  readonly vars: Vars;
  readonly check: boolean;
  readonly diff: boolean;
  /** results registered by earlier steps on this host */
  readonly registered: Record<string, StepResult>;
  /**
   * true once the run is interrupted (Ctrl-C): a task made of several units (sites, nodes, backups) checks it
   * between units, as the runner does between steps, and stops before the next one (each unit whole or not started)
   */
  interrupted(): boolean;
  /** run a remote command on this host (counts as one round trip); in check mode tasks must guard themselves */
  exec(command: string, opts?: ExecOptions): Promise<ExecResult>;
  /**
   * Run an operation from within a task; honours check mode. `probed`: the operation's probe output when the task
   * read it with its own probe (Task.probe, e.g. through lib/ops/base.ts nestedProbe): used only while the run has
   * written nothing since the task started (else the operation is probed again).
   */
  run(op: Operation, probed?: string): Promise<StepResult>;
  /**
   * A cached fact of this host, typed by its definition: `await ctx.fact(kernelFact)`, `ctx.fact(fileStat, '/etc/x')`.
   * Facts asked for together (`Promise.all([...])`) are gathered in ONE round trip (lib/facts.ts).
   */
  fact<T, A extends readonly unknown[]>(def: import('./facts.ts').FactDef<T, A>, ...args: A): Promise<T>;
  /** mark a value as secret: masked as *** in every output */
  secret(value: string): string;
  /** notify a handler by name */
  notify(handler: string): void;
  /** the connection, for put() and advanced use */
  readonly conn: Connection;
  /** say something in the progress output */
  log(message: string): void;
  /** other hosts of the run (for delegate/runOnce style coordination) */
  hostContext(name: string): StepContext;
  /** hosts of the inventory that a pattern selects (not restricted by --limit): group members, addresses */
  hosts(pattern: string): HostSpec[];
  /**
   * Wait until every host of the current role run (serial batch) that is still running has reached the barrier
   * of this name, then go on together. A host whose run ends before it gets there (failed, unreachable,
   * interrupted, or its steps did not include it) does not block the others: they are released when it ends,
   * and the result names it. `value` is this host's contribution, given to every host in `arrived`.
   * Call it from a step every host runs (not from a runOnce or delegated step: the others would never arrive).
   */
  barrier<T = unknown>(name: string, opts?: { value?: T; timeoutMs?: number }): Promise<BarrierResult<T>>;
}

/** What a barrier saw when it opened. */
export interface BarrierResult<T = unknown> {
  /** hosts that reached it, in the run's order, with the value each gave */
  arrived: Record<string, T>;
  /** hosts of the role run whose run ended before reaching it, with the reason */
  missing: Record<string, string>;
}

export interface Role {
  name: string;
  /** default host pattern (group names, globs, ...) */
  hosts: string;
  tags?: string[];
  description?: string;
  /** serial batches: a count or "30%" */
  serial?: number | string;
  maxFailPercentage?: number;
  anyErrorsFatal?: boolean;
  handlers?: Record<string, (ctx: StepContext) => Step[]>;
  /**
   * Schemas of the role's inventory variables, by name (like Ansible's argument specs): checked by the run
   * (lib/inventory.ts checkVars) wherever the inventory sets them, before the role touches any host; a bad
   * value is bad input (exit 4, file:line:col field).
   */
  vars?: Record<string, ZodType>;
  /** the steps for one host; called once per host, may depend on its vars */
  steps(ctx: StepContext): Step[] | Promise<Step[]>;
  /**
   * Controller-side work of the role that touches no host (building images on the controller, say), which a playbook
   * running several roles starts ahead of the role's turn (Run.warmup) so that it overlaps the earlier roles' host
   * work. It must be idempotent: the role's steps do (or wait for) the same work in their turn, so a warm-up that
   * fails or never starts costs only time. Given the vars of the role's first host and a progress log.
   */
  warmup?(vars: Vars, log: (line: string) => void): Promise<unknown>;
}
