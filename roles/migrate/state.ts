// The recorded state of one site's migration: .wpfarm/migrate/<domain>.json, written atomically (temp + rename,
// mode 0600, secrets masked) at the start and the end of every state, so that a run killed at any point is
// resumed from where the site stood. A finished cutover is never redone.
//
//   inspect → copy → rewrite → verify → cutover → done          (each one recorded, with its time and summary)
//
// A failure before cutover removes what the migration created on the target and starts the site over next time;
// a failure in cutover takes the source out of maintenance and retries the cutover next time.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../lib/errors.ts';
import { maskDeep } from '../../lib/secrets.ts';
import type { DnsState } from './dns.ts';
import type { Inspection } from './inspect.ts';

export const STATES = ['inspect', 'copy', 'rewrite', 'verify', 'cutover', 'done'] as const;
export type StateName = (typeof STATES)[number];

export interface HistoryEntry {
  state: StateName | 'cleanup' | 'rollback';
  startedAt: string;
  endedAt?: string;
  ms?: number;
  ok?: boolean;
  summary?: Record<string, unknown>;
  error?: string;
}

export interface SiteState {
  version: 1;
  domain: string;
  newDomain: string;
  source: string;
  /** the last state completed ('' for none) */
  completed: StateName | '';
  /** the state being run (left set by a run that was killed) */
  running?: StateName;
  status: 'new' | 'running' | 'failed' | 'done' | 'rolled-back';
  /** the target holds what this migration created (database, user, directory) */
  createdOnTarget: boolean;
  /** our maintenance flag is on the source */
  maintenance: boolean;
  inspection?: Inspection;
  /** the site's DNS records before the move and what the migration did to them (./dns.ts) */
  dns?: DnsState;
  error?: string;
  history: HistoryEntry[];
}

export function stateFile(dir: string, domain: string): string {
  return join(dir, `${domain}.json`);
}

export function newState(domain: string, newDomain: string, source: string): SiteState {
  return { version: 1, domain, newDomain, source, completed: '', status: 'new', createdOnTarget: false, maintenance: false, history: [] };
}

/** The recorded state, or null when the site was never started. A state file that cannot be read is bad input. */
export function loadState(dir: string, domain: string): SiteState | null {
  const f = stateFile(dir, domain);
  let text: string;
  try {
    text = readFileSync(f, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new InputError(`cannot read ${f}: ${(e as Error).message}`);
  }
  let s: SiteState;
  try {
    s = JSON.parse(text) as SiteState;
  } catch (e) {
    throw new InputError(`${f}: not JSON (${(e as Error).message}); move it away to start the site over`);
  }
  if (s.version !== 1 || s.domain !== domain || (s.completed !== '' && !STATES.includes(s.completed))) {
    throw new InputError(`${f}: not a migration state of ${domain}`);
  }
  return s;
}

export function saveState(dir: string, s: SiteState): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const f = stateFile(dir, s.domain);
  const tmp = `${f}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(maskDeep(s), null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, f);
}

/** The next state to run: after the last completed one (a killed run's state is simply run again). */
export function nextState(s: SiteState): StateName | null {
  if (s.status === 'done' || s.completed === 'done') return null;
  return STATES[STATES.indexOf(s.completed as StateName) + 1] ?? null;
}

/** What a run would do for this site, in words (--check). */
export function describePlan(s: SiteState | null, opts: { rollback?: boolean } = {}): string {
  if (opts.rollback) {
    if (!s) return 'nothing to roll back (never started)';
    const src = s.maintenance ? 'remove the maintenance flag from the source' : 'nothing to roll back on the source (no maintenance flag)';
    return s.dns ? `${src}; put the DNS records of ${s.dns.names.join(', ')} back as they were` : src;
  }
  const failed = s?.status === 'failed' && s.error ? ` (the last run failed: ${s.error.split('\n')[0]})` : '';
  if (!s || s.completed === '') return `run ${STATES.join(' → ')}${failed}`;
  if (s.status === 'rolled-back') return 'nothing: rolled back (move its state file away to migrate it again)';
  const next = nextState(s);
  if (!next) return 'nothing: done';
  const rest = STATES.slice(STATES.indexOf(next));
  const again = s.running === next ? ` (${next} was interrupted: run again)` : '';
  return `resume at ${next}${again}: ${rest.join(' → ')}${failed}`;
}
