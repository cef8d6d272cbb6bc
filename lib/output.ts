// Output: live progress (a compact view on a TTY; plain lines when not a TTY or when CI=true), the final
// recap per host, the slowest steps, and the JSON report. The console is a listener of the run's event stream
// (lib/events.ts). Everything printed goes through mask(); what is
// serialised (the JSON report) is masked value by value BEFORE it is serialised (maskDeep), then once more.
// Files of run data on the controller are written by writePrivateFile: 0600, in a directory made 0700.
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import type { Listener, RunEvent } from './events.ts';
import { mask, maskDeep } from './secrets.ts';
import type { StandIn, StepResult, StepStatus } from './types.ts';

const C = {
  reset: '\x1b[0m',
  green: '\x1b[32m',
  yellow: '\x1b[33m',
  red: '\x1b[31m',
  cyan: '\x1b[36m',
  dim: '\x1b[2m',
  bold: '\x1b[1m',
};

const STATUS_COLOR: Record<StepStatus, string> = {
  ok: C.green,
  changed: C.yellow,
  failed: C.red,
  skipped: C.cyan,
  unreachable: C.red,
};

export interface ConsoleReporterOptions {
  verbose: number;
  /** compact live view (TTY and not CI) */
  live?: boolean;
  diff?: boolean;
  out?: NodeJS.WritableStream;
  color?: boolean;
  /** terminal width (default: the stream's columns, else 80) */
  columns?: number;
}

/**
 * A row of the live view cut to `width` columns (one terminal line: a row that wraps takes two lines and the
 * redraw, which moves the cursor up one line per row, would leave the extra line behind). Control characters
 * (a newline, an escape in a step title) become spaces; a cut row ends with an ellipsis.
 */
export function fitRow(text: string, width: number): string {
  const chars = [...text.replace(/[\x00-\x1f\x7f]/g, ' ')];
  if (chars.length <= width) return chars.join('');
  return width <= 1 ? chars.slice(0, Math.max(0, width)).join('') : `${chars.slice(0, width - 1).join('')}…`;
}

/** Plain lines, with a live status block on TTYs: a listener of the run's event stream. */
export class ConsoleReporter {
  private readonly out: NodeJS.WritableStream;
  private readonly live: boolean;
  private readonly color: boolean;
  private readonly doing = new Map<string, string>();
  private liveLines = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly o: ConsoleReporterOptions) {
    this.out = o.out ?? process.stdout;
    const tty = !!(this.out as NodeJS.WriteStream).isTTY;
    this.live = o.live ?? (tty && process.env.CI !== 'true' && process.env.CI !== '1');
    this.color = o.color ?? (tty && !process.env.NO_COLOR);
    if (this.live) this.timer = setInterval(() => this.redraw(), 250).unref();
  }

  readonly listener: Listener = (e: RunEvent) => {
    switch (e.kind) {
      case 'role.start': {
        const n = e.hosts.length;
        const names = n <= 12 ? ` (${e.hosts.join(', ')})` : '';
        this.write(this.c(C.bold, `ROLE ${e.role} → ${n} host${n === 1 ? '' : 's'}${names}`));
        break;
      }
      case 'role.end':
        this.doing.clear();
        this.redraw();
        break;
      case 'host.start':
        this.doing.set(e.host, 'connecting');
        break;
      case 'step.start':
        this.doing.set(e.host, e.step);
        if (!this.live && this.o.verbose > 1) this.write(this.c(C.dim, `  ${e.host}: ${e.step} …`));
        break;
      case 'step.end':
        this.stepEnd(e.result);
        break;
      case 'command.start':
        if (this.o.verbose > 2) this.write(`  ${this.c(C.dim, `${e.host}:`)} $ ${e.command}`);
        break;
      case 'log':
        this.write(`  ${this.c(C.dim, `${e.host}:`)} ${e.message}`);
        break;
      case 'say':
        this.write(e.message);
        break;
      case 'warmup': {
        // controller-side work started ahead of its role (Role.warmup), printed as it goes
        const what = `warm-up of ${e.role}`;
        if (e.action === 'start') this.write(this.c(C.dim, `${what}: started beside the hosts' work (${e.message ?? ''})`));
        else if (e.action === 'log') this.write(`  ${this.c(C.dim, `${what}:`)} ${e.message ?? ''}`);
        else if (e.action === 'end') this.write(this.c(C.dim, `${what}: done in ${((e.ms ?? 0) / 1000).toFixed(1)} s`));
        else this.write(`${what} failed (the role does this work in its turn): ${e.message ?? ''}`);
        break;
      }
      case 'run.end':
        this.finish();
        break;
      default:
        break;
    }
  };

  private width(): number {
    return Math.max(10, this.o.columns ?? (this.out as NodeJS.WriteStream).columns ?? 80);
  }

  private c(color: string, s: string): string {
    return this.color ? `${color}${s}${C.reset}` : s;
  }

  private write(line: string): void {
    this.clearLive();
    this.out.write(`${mask(line)}\n`);
    this.redraw();
  }

  private clearLive(): void {
    if (!this.live || !this.liveLines) return;
    this.out.write(`\x1b[${this.liveLines}A\x1b[0J`);
    this.liveLines = 0;
  }

  private redraw(): void {
    if (!this.live) return;
    this.clearLive();
    // the last column stays empty: some terminals wrap when a line fills it
    const w = this.width() - 1;
    const rows = [...this.doing.entries()].slice(0, 20).map(([h, s]) => this.c(C.dim, fitRow(mask(`  … ${h}: ${s}`), w)));
    if (this.doing.size > 20) rows.push(this.c(C.dim, fitRow(`  … and ${this.doing.size - 20} more hosts`, w)));
    if (rows.length) this.out.write(`${rows.join('\n')}\n`);
    this.liveLines = rows.length;
  }

  private stepEnd(r: StepResult): void {
    if (r.status !== 'ok' || this.o.verbose > 0) {
      const at = r.error && r.location ? ` (${r.location})` : '';
      const detail = r.error ? `${at}: ${r.error}` : r.reason ? ` (${r.reason})` : r.changes.length ? `: ${r.changes.join('; ')}` : '';
      const status = this.c(STATUS_COLOR[r.status], r.status.padEnd(9));
      this.write(`  ${status} ${r.host}  ${r.step}${detail}  ${this.c(C.dim, `${Math.round(r.ms)} ms`)}`);
    }
    if (this.o.diff && r.diff) this.write(r.diff.replace(/^/gm, '      '));
  }

  finish(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.doing.clear();
    this.clearLive();
  }
}

export interface RecapRow {
  host: string;
  ok: number;
  changed: number;
  failed: number;
  skipped: number;
  unreachable: number;
  ms: number;
}

export function recapRows(results: StepResult[], hostMs: Map<string, number>, hostsInOrder: string[]): RecapRow[] {
  const rows = new Map<string, RecapRow>();
  for (const h of hostsInOrder) rows.set(h, { host: h, ok: 0, changed: 0, failed: 0, skipped: 0, unreachable: 0, ms: hostMs.get(h) ?? 0 });
  for (const r of results) {
    const row = rows.get(r.host) ?? { host: r.host, ok: 0, changed: 0, failed: 0, skipped: 0, unreachable: 0, ms: hostMs.get(r.host) ?? 0 };
    row[r.status]++;
    rows.set(r.host, row);
  }
  return [...rows.values()];
}

/** The components a run replaced by stand-ins or skipped, once each (the first step's reason), in run order. */
export function standInsOf(results: StepResult[]): StandIn[] {
  const seen = new Map<string, StandIn>();
  for (const r of results) if (r.standIn && !seen.has(r.standIn.component)) seen.set(r.standIn.component, r.standIn);
  return [...seen.values()];
}

export function formatRecap(rows: RecapRow[], results: StepResult[], wallMs: number, color = false): string {
  const w = Math.max(4, ...rows.map((r) => r.host.length));
  const paint = (c: string, s: string, on: boolean) => (color && on ? `${c}${s}${C.reset}` : s);
  const lines = ['', 'RECAP'];
  for (const r of rows) {
    const ok = paint(C.green, `ok=${r.ok}`, r.ok > 0).padEnd(6);
    const changed = paint(C.yellow, `changed=${r.changed}`, r.changed > 0);
    const failed = paint(C.red, `failed=${r.failed}`, r.failed > 0);
    const unreachable = paint(C.red, `unreachable=${r.unreachable}`, r.unreachable > 0);
    lines.push(`  ${r.host.padEnd(w)}  ${ok}  ${changed}  ${failed}  skipped=${r.skipped}  ${unreachable}  ${(r.ms / 1000).toFixed(2)} s`);
  }
  const failed = results.filter((r) => r.status === 'failed' || r.status === 'unreachable');
  if (failed.length) {
    lines.push('', 'FAILURES');
    for (const f of failed) {
      const error = (f.error ?? f.status).split('\n');
      lines.push(`  ${f.host}  ${f.step}${f.location ? `  (${f.location})` : ''}`, ...error.slice(0, 8).map((l) => `    ${l}`));
    }
  }
  const slow = [...results]
    .filter((r) => r.ms > 0)
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 5);
  if (slow.length) {
    lines.push('', 'SLOWEST STEPS');
    for (const s of slow) lines.push(`  ${(s.ms / 1000).toFixed(3).padStart(8)} s  ${s.host}  ${s.step}`);
  }
  const standIns = standInsOf(results);
  if (standIns.length) {
    lines.push('', 'NOT AS IN PRODUCTION (stand-ins and skipped components)');
    for (const x of standIns) lines.push(`  ${x.component}: ${x.by ? `replaced by ${x.by}` : 'skipped'}: ${x.why}`);
  }
  const notProd = standIns.map((x) => `${x.component} ${x.by ? `→ ${x.by}` : 'skipped'}`).join(', ');
  lines.push('', `wall time ${(wallMs / 1000).toFixed(2)} s${notProd ? `; not as in production: ${notProd}` : ''}`);
  return mask(lines.join('\n'));
}

/**
 * Write a file of run data on the controller (report, timeline, retry file, logs) atomically: mode 0600, in a
 * directory created 0700. A `.wpfarm` directory on the way (the tool's own state) is made 0700 even when it
 * exists; a directory the user chose and that exists already is left as it is (the file itself is 0600).
 */
export function writePrivateFile(file: string, text: string): void {
  const abs = resolve(file);
  privateDir(abs);
  const tmp = `${abs}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600); // an existing temp file of a crashed run keeps its mode otherwise
    renameSync(tmp, abs);
  } finally {
    if (existsSync(tmp)) rmSync(tmp, { force: true });
  }
}

function privateDir(abs: string): void {
  const dir = dirname(abs);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const parts = dir.split(sep);
  const at = parts.lastIndexOf('.wpfarm');
  if (at > 0) for (let i = at + 1; i <= parts.length; i++) chmodSync(parts.slice(0, i).join(sep), 0o700);
}

/** Text pieces gathered before one write (and one mask() over them). */
const WRITE_BATCH = 64 * 1024;

/**
 * writePrivateFile for text made in pieces (the report and the timeline of a large run: 5–7 MB each at 500 hosts,
 * ~40 MB at the run's peak of memory when built whole): the same files, written as the pieces come, ~64 KiB
 * at a time, each batch masked (a piece is never cut: a secret inside a JSON string or an HTML-escaped text is in
 * one batch), to every file of `files` at once (the pieces are made once).
 */
export function writePrivateFiles(files: string[], pieces: Iterable<string>): void {
  const targets = files.map((f) => {
    const abs = resolve(f);
    privateDir(abs);
    return { abs, tmp: `${abs}.tmp-${process.pid}`, fd: -1 };
  });
  try {
    for (const t of targets) {
      t.fd = openSync(t.tmp, 'w', 0o600);
      chmodSync(t.tmp, 0o600); // an existing temp file of a crashed run keeps its mode otherwise
    }
    let batch: string[] = [];
    let size = 0;
    const flush = () => {
      const text = mask(batch.join(''));
      batch = [];
      size = 0;
      for (const t of targets) writeSync(t.fd, text);
    };
    for (const p of pieces) {
      batch.push(p);
      size += p.length;
      if (size >= WRITE_BATCH) flush();
    }
    if (size) flush();
    for (const t of targets) {
      closeSync(t.fd);
      t.fd = -1;
      renameSync(t.tmp, t.abs);
    }
  } finally {
    for (const t of targets) {
      if (t.fd >= 0) closeSync(t.fd);
      if (existsSync(t.tmp)) rmSync(t.tmp, { force: true });
    }
  }
}

/** Write the JSON report (0600, atomically); every string is masked before serialising, the text once more after. */
export function writeJsonReport(file: string, report: unknown): void {
  writePrivateFiles([file], jsonReportPieces(maskDeep(report)));
}

/** The JSON report's text from a report already copied through maskDeep() (masked again as text). */
export function jsonReportText(masked: unknown): string {
  return mask([...jsonReportPieces(masked)].join(''));
}

/**
 * The text of `JSON.stringify(value, null, 2)` and a newline, in pieces: the top object and the arrays and objects
 * in it are walked (a piece per element: the report's 11 500 results at 500 hosts), deeper values are stringified
 * whole. Never cuts a string value. Not masked (writePrivateFiles masks what it writes).
 */
export function* jsonReportPieces(value: unknown): Generator<string> {
  const v = toJsonValue(value, '');
  yield* jsonPieces(skipped(v) ? null : v, 0);
  yield '\n';
}

const WALK_DEPTH = 2;
const INDENT = '  ';

/** `v`: after toJSON, not undefined */
function* jsonPieces(v: unknown, depth: number): Generator<string> {
  const plain = v !== null && typeof v === 'object' && (Array.isArray(v) || isPlainObject(v));
  if (!plain || depth >= WALK_DEPTH) {
    const text = JSON.stringify(v, null, 2) ?? 'null';
    yield depth ? text.replaceAll('\n', `\n${INDENT.repeat(depth)}`) : text;
    return;
  }
  const pad = INDENT.repeat(depth + 1);
  if (Array.isArray(v)) {
    if (!v.length) return yield '[]';
    yield '[';
    for (let i = 0; i < v.length; i++) {
      yield `${i ? ',' : ''}\n${pad}`;
      const el = toJsonValue(v[i], String(i));
      if (skipped(el)) yield 'null';
      else yield* jsonPieces(el, depth + 1);
    }
    return yield `\n${INDENT.repeat(depth)}]`;
  }
  let n = 0;
  for (const k of Object.keys(v)) {
    const el = toJsonValue((v as Record<string, unknown>)[k], k);
    if (skipped(el)) continue;
    yield `${n++ ? ',' : '{'}\n${pad}${JSON.stringify(k)}: `;
    yield* jsonPieces(el, depth + 1);
  }
  yield n ? `\n${INDENT.repeat(depth)}}` : '{}';
}

/** JSON.stringify's toJSON step (a Date becomes its ISO text). */
function toJsonValue(v: unknown, key: string): unknown {
  const f = v !== null && typeof v === 'object' ? (v as { toJSON?: unknown }).toJSON : undefined;
  return typeof f === 'function' ? (f as (k: string) => unknown).call(v, key) : v;
}

/** What JSON.stringify leaves out of an object (and writes as null in an array). */
function skipped(v: unknown): boolean {
  return v === undefined || typeof v === 'function' || typeof v === 'symbol';
}

function isPlainObject(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}
