// The audit log: one JSON line per mutating run, appended on the lock hosts (lib/lock.ts) to
// /var/lib/wpfarm/audit.log (0600) in the same round trip that releases the deploy lock, so lines never
// interleave (only the lock's holder writes). A stale lock taken over adds an `abandoned` line for the dead
// run; `playbooks/lock.ts release` adds a `lock-release` line. Read with playbooks/audit.ts: the lines of
// every lock host merged (a manager that was down during a run lacks its line), deduplicated by id.
// A run's line is built from the run's event stream (lib/events.ts), like its log, report and timeline:
// AuditTrail listens to it (run.start, step.end) and gives the line when the lock is released.
import { execFileSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { InputError } from './errors.ts';
import type { Listener } from './events.ts';
import { LOCK_DIR, type LockHolder, type LockInfo } from './lock.ts';
import { mask, maskDeep } from './secrets.ts';
import { sh } from './shell.ts';
import type { ConnectionPool } from './transport.ts';
import type { HostSpec, StepResult } from './types.ts';

export const AUDIT_FILE = `${LOCK_DIR}/audit.log`;
/** changed step titles kept per host in one line */
const MAX_CHANGES = 40;

export interface AuditHostSummary {
  ok: number;
  changed: number;
  failed: number;
  skipped: number;
  unreachable: number;
  /** titles of the changed (and failed) steps, at most 40 */
  changes: string[];
}

export interface AuditEntry {
  v: 1;
  kind: 'run' | 'abandoned' | 'lock-release';
  /** the lock token of the run */
  id: string;
  /** user@controller */
  who: string;
  /** the controller's hostname */
  from: string;
  pid: number;
  command: string;
  playbook?: string;
  inventory?: string;
  /** git commit of the inventory's repository (+ "-dirty" when it has uncommitted changes) */
  commit?: string;
  check?: boolean;
  start: string;
  end: string;
  /** ok, failed, unreachable, interrupted, bad-input, abandoned, released */
  outcome: string;
  exitCode?: number;
  hosts: Record<string, AuditHostSummary>;
  note?: string;
}

/** The commit of the git repository holding `file` (undefined when none or git is missing). */
export function gitCommit(file: string): string | undefined {
  const dir = dirname(resolve(file));
  try {
    const head = execFileSync('git', ['-C', dir, 'rev-parse', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['-C', dir, 'status', '--porcelain', '--', '.'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    return dirty ? `${head}-dirty` : head;
  } catch {
    return undefined;
  }
}

export function summarizeHosts(results: StepResult[]): Record<string, AuditHostSummary> {
  const out: Record<string, AuditHostSummary> = {};
  for (const r of results) {
    const s = (out[r.host] ??= { ok: 0, changed: 0, failed: 0, skipped: 0, unreachable: 0, changes: [] });
    s[r.status]++;
    if ((r.status === 'changed' || r.status === 'failed') && s.changes.length < MAX_CHANGES)
      s.changes.push(`${r.status === 'failed' ? 'FAILED ' : ''}${r.step}`);
  }
  return out;
}

export function outcomeOf(exitCode: number): string {
  return (
    ({ 0: 'ok', 2: 'failed', 3: 'unreachable', 4: 'bad-input', 5: 'locked', 130: 'interrupted' } as Record<number, string>)[exitCode] ??
    `exit ${exitCode}`
  );
}

/** A run's audit line, from its event stream: listen with `listener`, take the line with entry() at release. */
export class AuditTrail {
  private readonly results: StepResult[] = [];
  private playbook?: string;
  private startedAt?: string;

  readonly listener: Listener = (e) => {
    if (e.kind === 'run.start') {
      this.playbook = e.name;
      this.startedAt = e.startedAt;
    } else if (e.kind === 'step.end') this.results.push(e.result);
  };

  /** The run's line; `exitCode`: the run's (known before run.end: the lock is given back first). */
  entry(lock: LockInfo, exitCode: number, inventory: string): AuditEntry {
    return {
      v: 1,
      kind: 'run',
      id: lock.token,
      who: lock.owner,
      from: lock.controller,
      pid: lock.pid,
      command: lock.command,
      playbook: this.playbook,
      inventory,
      commit: gitCommit(inventory),
      start: this.startedAt ?? lock.since,
      end: new Date().toISOString(),
      outcome: outcomeOf(exitCode),
      exitCode,
      hosts: summarizeHosts(this.results),
    };
  }
}

/** The line a stale holder never wrote, added by the run that took its lock over. */
export function abandonedEntry(h: LockHolder, by: LockInfo): AuditEntry {
  return {
    v: 1,
    kind: 'abandoned',
    id: h.token,
    who: h.owner,
    from: h.controller,
    pid: h.pid,
    command: h.command,
    start: h.since,
    end: new Date().toISOString(),
    outcome: 'abandoned',
    hosts: {},
    note: `lock on ${h.host} taken over by ${by.owner} (pid ${by.pid}): ${h.stale ?? 'stale'}`,
  };
}

/** Shell that appends the entries to the audit log (0600). */
export function appendScript(entries: AuditEntry[]): string {
  if (!entries.length) return '';
  const text = entries.map((e) => mask(JSON.stringify(maskDeep(e)))).join('\n'); // masked before and after serialising
  return `mkdir -p ${LOCK_DIR} && chmod 0700 ${LOCK_DIR} && (umask 077; printf '%s\\n' ${sh`${text}`} >> ${AUDIT_FILE})`;
}

/** Every line of the audit logs of `hosts`, merged by id (kind+id), oldest first; unreadable lines are reported. */
export async function readAudit(hosts: HostSpec[], pool: ConnectionPool): Promise<{ entries: AuditEntry[]; problems: string[] }> {
  const problems: string[] = [];
  const byKey = new Map<string, AuditEntry>();
  await Promise.all(
    hosts.map(async (h) => {
      try {
        const c = await pool.get(h);
        const r = await c.exec(`cat ${AUDIT_FILE} 2>/dev/null || true`, { become: true });
        r.stdout.split('\n').forEach((line, i) => {
          if (!line.trim()) return;
          try {
            const e = JSON.parse(line) as AuditEntry;
            byKey.set(`${e.kind}:${e.id}`, e);
          } catch {
            problems.push(`${h.name}:${AUDIT_FILE}:${i + 1}: not a JSON line`);
          }
        });
      } catch (e) {
        problems.push(`${h.name}: ${(e as Error).message.split('\n')[0]}`);
      }
    }),
  );
  const entries = [...byKey.values()].sort((a, b) => a.start.localeCompare(b.start) || a.end.localeCompare(b.end));
  return { entries, problems };
}

export interface AuditFilter {
  site?: string;
  host?: string;
  since?: string;
  until?: string;
}

/** A time given on the command line: ISO date/time, or a duration back from now (30m, 12h, 7d). */
export function parseWhen(s: string, field: string, now = Date.now()): number {
  const rel = /^(\d+)([smhd])$/.exec(s);
  if (rel) return now - Number(rel[1]) * { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[rel[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new InputError(`${field}: '${s}' is neither an ISO date/time nor a duration like 30m, 12h, 7d`);
  return t;
}

/**
 * --site X: runs whose command line names X (an argument, `--site X`, `site=X`, `wp_site...=X`);
 * --host H: runs that touched H; --since/--until: runs that overlap the interval.
 */
export function filterAudit(entries: AuditEntry[], f: AuditFilter, now = Date.now()): AuditEntry[] {
  const since = f.since ? parseWhen(f.since, '--since', now) : -Infinity;
  const until = f.until ? parseWhen(f.until, '--until', now) : Infinity;
  return entries.filter((e) => {
    if (Date.parse(e.end) < since || Date.parse(e.start) > until) return false;
    if (f.host && !(f.host in e.hosts)) return false;
    if (f.site) {
      const tokens = e.command.split(/\s+/).flatMap((t) => [t, t.replace(/^[^=]*=/, '')]);
      if (!tokens.includes(f.site)) return false;
    }
    return true;
  });
}
