// One event stream per run (like zx's $.log kinds): the runner, the transport and the run emit typed events
// through one function, EventStream.emit(), which stamps each event (seq, t: ms since the run's start), masks
// every string in it (lib/secrets.ts) and hands it to the listeners in order. Everything else listens: the live
// view and the plain lines (lib/output.ts), the NDJSON run log (RunLog), the recap, the JSON report and the
// timeline (RunRecord), the plan file (lib/plan.ts).
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { mask, maskedView, secretCount } from './secrets.ts';
import type { StepResult } from './types.ts';

/** Bumped when a field changes meaning or goes away (adding a field or an event kind does not bump it). */
export const EVENTS_FORMAT_VERSION = 1;

export type LockAction = 'acquired' | 'refused' | 'released' | 'release-failed' | 'skipped';

/** Every kind of event, without the stamp emit() adds. */
export type EventBody =
  | { kind: 'run.start'; name: string; command: string; check: boolean; pid: number; startedAt: string; mode?: 'plan' | 'apply' }
  | { kind: 'run.end'; exitCode: number; wallMs: number; interrupted: boolean }
  | { kind: 'role.start'; role: string; hosts: string[] }
  | { kind: 'role.end'; role: string }
  | { kind: 'host.start'; host: string; role: string }
  | { kind: 'host.connect'; host: string; ok: boolean; ms: number; error?: string }
  /** a host's SSH handshake takes its turn (lib/transport.ts: bounded per pool): the pool's handshakes then in flight */
  | { kind: 'handshake.start'; host: string; inFlight: number }
  | { kind: 'handshake.end'; host: string; ok: boolean; ms: number; inFlight: number }
  | { kind: 'host.end'; host: string; role: string; status: 'ok' | 'failed' | 'unreachable' | 'skipped'; ms: number; error?: string }
  | { kind: 'step.start'; host: string; role: string; step: string; stepKind: string; location?: string; handler?: string }
  /** an operation planned from its probe: what it would change, and the sha256 of the probe output */
  | {
      kind: 'step.plan';
      /** the host whose role run it is; `on`: where it ran, when delegated */
      host: string;
      on?: string;
      role: string;
      step: string;
      stepKind: string;
      changed: boolean;
      changes: string[];
      probeSha256: string;
      /** run by a task through ctx.run(), not a step of the role's list */
      nested: boolean;
    }
  | { kind: 'step.end'; host: string; role: string; result: StepResult; location?: string }
  /** a round trip that read the state of `steps` steps at once */
  | { kind: 'probe'; host: string; steps: number }
  | { kind: 'apply'; host: string; step: string }
  | { kind: 'command.start'; host: string; id: number; command: string }
  | { kind: 'command.end'; host: string; id: number; code: number; ms: number }
  | { kind: 'diff'; host: string; step: string; diff: string }
  | { kind: 'handler'; host: string; role: string; handler: string }
  | { kind: 'lock'; action: LockAction; hosts?: string[]; message?: string }
  | { kind: 'interrupt'; signal: string; again: boolean }
  | { kind: 'log'; host: string; message: string }
  | { kind: 'say'; message: string }
  | { kind: 'warmup'; role: string; action: 'start' | 'log' | 'end' | 'failed'; message?: string; ms?: number }
  /** a playbook's own result (a drill's per-site figures...): the JSON report carries it under data[name] */
  | { kind: 'data'; name: string; data: unknown };

export type EventKind = EventBody['kind'];
export type RunEvent = EventBody & { seq: number; t: number };
export type EventOf<K extends EventKind> = Extract<RunEvent, { kind: K }>;
export type Listener = (e: RunEvent) => void;

/** Kinds whose bodies hold only strings, numbers, booleans and arrays of strings (not step.end's result, not data). */
const FLAT_KINDS: ReadonlySet<EventKind> = new Set<EventKind>([
  'run.start',
  'run.end',
  'role.start',
  'role.end',
  'host.start',
  'host.connect',
  'handshake.start',
  'handshake.end',
  'host.end',
  'step.start',
  'step.plan',
  'probe',
  'apply',
  'command.start',
  'command.end',
  'diff',
  'handler',
  'lock',
  'interrupt',
  'log',
  'say',
]);

/** The stream of one run. */
export class EventStream {
  private readonly listeners: Listener[] = [];
  private seq = 0;
  private commandIds = 0;
  private broken = new Set<Listener>();

  constructor(readonly t0: number = performance.now()) {}

  on(l: Listener): () => void {
    this.listeners.push(l);
    return () => {
      const i = this.listeners.indexOf(l);
      if (i >= 0) this.listeners.splice(i, 1);
    };
  }

  /** The one function every event goes through. */
  emit(body: EventBody): RunEvent {
    // the body as it is when masking changes nothing in it (the common case: no copy of its nested values), else
    // a masked copy; listeners read events, never change them; the stamp goes on a shallow copy
    // (no secret registered and a kind whose fields are strings, numbers, booleans and arrays of strings: nothing to
    // mask or convert, no walk; at 500 hosts a rerun emits ~38 000 events)
    const view = FLAT_KINDS.has(body.kind) && secretCount() === 0 ? body : maskedView(body);
    const e = (view === body ? { ...body } : view) as RunEvent;
    e.seq = ++this.seq;
    e.t = Math.round((performance.now() - this.t0) * 10) / 10;
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        // a listener that fails (a full disk for the log) must not stop the run; say it once
        if (!this.broken.has(l)) {
          this.broken.add(l);
          process.stderr.write(`warning: an event listener failed: ${mask((err as Error).message)}\n`);
        }
      }
    }
    return e;
  }

  say(message: string): void {
    this.emit({ kind: 'say', message });
  }

  log(host: string, message: string): void {
    this.emit({ kind: 'log', host, message });
  }

  /** For the transport: a remote command starts; call the returned function when it ends. */
  command(host: string, command: string): (code: number) => void {
    const id = ++this.commandIds;
    const t = performance.now();
    const nl = command.indexOf('\n'); // the first line (a probe batch is a script of hundreds of lines)
    const first = nl < 0 ? command : command.slice(0, nl);
    this.emit({ kind: 'command.start', host, id, command: first.length > 300 ? `${first.slice(0, 300)}…` : first });
    return (code) => this.emit({ kind: 'command.end', host, id, code, ms: Math.round((performance.now() - t) * 10) / 10 });
  }

  /** For the transport: a host's handshake starts, `inFlight` with it; call the returned function when it ends. */
  handshake(host: string, inFlight: number): (ok: boolean, inFlight: number) => void {
    const t = performance.now();
    this.emit({ kind: 'handshake.start', host, inFlight });
    return (ok, now) => this.emit({ kind: 'handshake.end', host, ok, ms: Math.round((performance.now() - t) * 10) / 10, inFlight: now });
  }
}

// ---------------------------------------------------------------------------------------------
// RunRecord: what the recap, the JSON report and the timeline read, collected from the stream.

export interface TimedResult extends StepResult {
  role: string;
  /** ms from the start of the run */
  startMs: number;
  endMs: number;
}

export interface RoleTiming {
  role: string;
  hosts: string[];
  startMs: number;
  endMs: number;
}

export class RunRecord {
  readonly results: TimedResult[] = [];
  readonly roles: RoleTiming[] = [];
  /** ms offsets of every remote command, per host */
  readonly commands: Record<string, number[]> = {};
  readonly hostMs = new Map<string, number>();
  /** hosts in the order they were first targeted */
  readonly touched: string[] = [];
  roundTrips = 0;
  /** the playbook's own results by name ('data' events; the last one of a name wins) */
  readonly data: Record<string, unknown> = {};
  private readonly pending = new Map<string, { t: number; location?: string }>();

  readonly listener: Listener = (e) => {
    switch (e.kind) {
      case 'role.start':
        this.roles.push({ role: e.role, hosts: e.hosts, startMs: e.t, endMs: e.t });
        for (const h of e.hosts) if (!this.touched.includes(h)) this.touched.push(h);
        break;
      case 'role.end': {
        const last = this.roles[this.roles.length - 1];
        if (last) last.endMs = e.t;
        break;
      }
      case 'step.start':
        this.pending.set(`${e.host}\u0000${e.step}`, { t: e.t, location: e.location });
        break;
      case 'step.end': {
        const key = `${e.host}\u0000${e.result.step}`;
        const p = this.pending.get(key);
        this.pending.delete(key);
        const startMs = p?.t ?? Math.max(0, e.t - e.result.ms);
        this.results.push({ ...e.result, role: e.role, startMs, endMs: e.t, location: e.location ?? p?.location });
        break;
      }
      case 'data':
        this.data[e.name] = e.data;
        break;
      case 'host.end':
        this.hostMs.set(e.host, (this.hostMs.get(e.host) ?? 0) + e.ms);
        break;
      case 'command.start':
        (this.commands[e.host] ??= []).push(e.t);
        this.roundTrips++;
        break;
      default:
        break;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// The run's directory and its NDJSON log.

export interface Retention {
  /** run directories kept at most (the new one included) */
  count?: number;
  /** run directories older than this are removed */
  days?: number;
}

export const DEFAULT_RETENTION: Retention = { count: 50 };

/** `.wpfarm/runs/20261206T004012.345Z-add-site`: sortable by time, unique per run. */
export function runDirName(startedAt: Date, playbook: string): string {
  const time = startedAt.toISOString().replace(/[-:]/g, '');
  return `${time}-${playbook.replace(/[^\w.-]+/g, '_')}`;
}

const RUN_DIR = /^\d{8}T\d{6}\.\d{3}Z-/;

/** Remove old run directories of `root` (those named like runDirName) beyond the retention; returns what went. */
export function pruneRuns(root: string, keep: Retention, now = Date.now()): string[] {
  let names: string[];
  try {
    names = readdirSync(root)
      .filter((n) => RUN_DIR.test(n))
      .sort();
  } catch {
    return [];
  }
  const gone = new Set<string>();
  // the run about to start takes one place
  if (keep.count !== undefined) for (const n of names.slice(0, Math.max(0, names.length - (keep.count - 1)))) gone.add(n);
  if (keep.days !== undefined) {
    for (const n of names) {
      try {
        if (now - statSync(join(root, n)).mtimeMs > keep.days * 86_400_000) gone.add(n);
      } catch {
        /* removed meanwhile */
      }
    }
  }
  for (const n of gone) rmSync(join(root, n), { recursive: true, force: true });
  return [...gone];
}

/** Create the run's directory (0700, its parents too) under `root`. */
export function makeRunDir(root: string, name: string): string {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  chmodSync(root, 0o700);
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  return dir;
}

/**
 * The NDJSON log of a run: one event per line (0600), written as it happens: the lines of one turn of the event loop
 * leave in one write at its end (or as soon as 256 KiB wait), not one write per event (a rerun on 200 hosts emits
 * ~15 000 events: as many write syscalls). Lines left when the process exits are written by the exit handler.
 */
export class RunLog {
  private fd: number | null;
  private lines: string[] = [];
  private bytes = 0;
  private scheduled = false;
  private readonly onExit = () => this.flush();

  constructor(readonly file: string) {
    this.fd = openSync(file, 'a', 0o600);
    chmodSync(file, 0o600);
    process.on('exit', this.onExit);
  }

  readonly listener: Listener = (e) => {
    if (this.fd === null) return;
    const line = JSON.stringify(e);
    this.lines.push(line);
    this.bytes += line.length;
    if (this.bytes >= 256 * 1024) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush()).unref();
    }
  };

  /** Write the lines waiting. Masked here: a secret registered after its event was built is masked too. */
  flush(): void {
    this.scheduled = false;
    if (this.fd === null || !this.lines.length) return;
    const text = `${mask(this.lines.join('\n'))}\n`;
    this.lines = [];
    this.bytes = 0;
    writeSync(this.fd, text);
  }

  close(): void {
    this.flush();
    process.off('exit', this.onExit);
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}
