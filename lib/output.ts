// Output: live progress (a compact view on a TTY; plain lines when not a TTY or when CI=true), the final
// recap per host, the slowest steps, and the JSON report. Everything printed goes through mask(); what is
// serialised (the JSON report) is masked value by value BEFORE it is serialised (maskDeep), then once more.
// Files of run data on the controller are written by writePrivateFile: 0600, in a directory made 0700.
import { chmodSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import { mask, maskDeep } from './secrets.ts';
import type { StepResult, StepStatus } from './types.ts';

export interface Reporter {
  roleStart(role: string, hosts: string[]): void;
  roleEnd(role: string): void;
  hostStart(host: string, role: string): void;
  stepStart(host: string, step: string): void;
  stepEnd(r: StepResult): void;
  log(host: string, message: string): void;
  /** free text (phase banners, notes) */
  say(message: string): void;
  finish(): void;
}

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
}

/** Plain-lines reporter, with an optional live status block on TTYs. */
export class ConsoleReporter implements Reporter {
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
    const rows = [...this.doing.entries()].slice(0, 20).map(([h, s]) => this.c(C.dim, `  … ${h}: ${mask(s)}`));
    if (this.doing.size > 20) rows.push(this.c(C.dim, `  … and ${this.doing.size - 20} more hosts`));
    if (rows.length) this.out.write(`${rows.join('\n')}\n`);
    this.liveLines = rows.length;
  }

  roleStart(role: string, hosts: string[]): void {
    this.write(
      this.c(
        C.bold,
        `ROLE ${role} → ${hosts.length} host${hosts.length === 1 ? '' : 's'}${hosts.length <= 12 ? ` (${hosts.join(', ')})` : ''}`,
      ),
    );
  }
  roleEnd(): void {
    for (const k of this.doing.keys()) this.doing.delete(k);
    this.redraw();
  }
  hostStart(host: string): void {
    this.doing.set(host, 'connecting');
  }
  stepStart(host: string, step: string): void {
    this.doing.set(host, step);
    if (!this.live && this.o.verbose > 1) this.write(this.c(C.dim, `  ${host}: ${step} …`));
  }
  stepEnd(r: StepResult): void {
    const quiet = r.status === 'ok' && this.o.verbose === 0 && !this.live;
    if (!quiet || r.status !== 'ok') {
      if (r.status !== 'ok' || this.o.verbose > 0) {
        const detail = r.error ? `: ${r.error}` : r.reason ? ` (${r.reason})` : r.changes.length ? `: ${r.changes.join('; ')}` : '';
        this.write(
          `  ${this.c(STATUS_COLOR[r.status], r.status.padEnd(9))} ${r.host}  ${r.step}${detail}  ${this.c(C.dim, `${Math.round(r.ms)} ms`)}`,
        );
      }
    }
    if (this.o.diff && r.diff) this.write(r.diff.replace(/^/gm, '      '));
  }
  log(host: string, message: string): void {
    this.write(`  ${this.c(C.dim, `${host}:`)} ${message}`);
  }
  say(message: string): void {
    this.write(message);
  }
  finish(): void {
    if (this.timer) clearInterval(this.timer);
    this.doing.clear();
    this.clearLive();
  }
}

/** A reporter that prints nothing (library use, tests). */
export class SilentReporter implements Reporter {
  readonly lines: string[] = [];
  roleStart(): void {}
  roleEnd(): void {}
  hostStart(): void {}
  stepStart(): void {}
  stepEnd(r: StepResult): void {
    this.lines.push(`${r.status} ${r.host} ${r.step}`);
  }
  log(host: string, message: string): void {
    this.lines.push(`${host}: ${message}`);
  }
  say(message: string): void {
    this.lines.push(message);
  }
  finish(): void {}
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

export function formatRecap(rows: RecapRow[], results: StepResult[], wallMs: number, color = false): string {
  const w = Math.max(4, ...rows.map((r) => r.host.length));
  const paint = (c: string, s: string, on: boolean) => (color && on ? `${c}${s}${C.reset}` : s);
  const lines = ['', 'RECAP'];
  for (const r of rows) {
    lines.push(
      `  ${r.host.padEnd(w)}  ${paint(C.green, `ok=${r.ok}`, r.ok > 0).padEnd(6)}  ${paint(C.yellow, `changed=${r.changed}`, r.changed > 0)}  ` +
        `${paint(C.red, `failed=${r.failed}`, r.failed > 0)}  skipped=${r.skipped}  ${paint(C.red, `unreachable=${r.unreachable}`, r.unreachable > 0)}  ` +
        `${(r.ms / 1000).toFixed(2)} s`,
    );
  }
  const slow = [...results]
    .filter((r) => r.ms > 0)
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 5);
  if (slow.length) {
    lines.push('', 'SLOWEST STEPS');
    for (const s of slow) lines.push(`  ${(s.ms / 1000).toFixed(3).padStart(8)} s  ${s.host}  ${s.step}`);
  }
  lines.push('', `wall time ${(wallMs / 1000).toFixed(2)} s`);
  return mask(lines.join('\n'));
}

/**
 * Write a file of run data on the controller (report, timeline, retry file, logs) atomically: mode 0600, in a
 * directory created 0700. A `.wpfarm` directory on the way (the tool's own state) is made 0700 even when it
 * exists; a directory the user chose and that exists already is left as it is (the file itself is 0600).
 */
export function writePrivateFile(file: string, text: string): void {
  const abs = resolve(file);
  const dir = dirname(abs);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const parts = dir.split(sep);
  const at = parts.lastIndexOf('.wpfarm');
  if (at > 0) for (let i = at + 1; i <= parts.length; i++) chmodSync(parts.slice(0, i).join(sep), 0o700);
  const tmp = `${abs}.tmp-${process.pid}`;
  try {
    writeFileSync(tmp, text, { mode: 0o600 });
    chmodSync(tmp, 0o600); // an existing temp file of a crashed run keeps its mode otherwise
    renameSync(tmp, abs);
  } finally {
    if (existsSync(tmp)) rmSync(tmp, { force: true });
  }
}

/** Write the JSON report (0600, atomically); every string is masked before serialising, the text once more after. */
export function writeJsonReport(file: string, report: unknown): void {
  writePrivateFile(file, `${mask(JSON.stringify(maskDeep(report), null, 2))}\n`);
}
