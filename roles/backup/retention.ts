// Retention policy engine: a pure function from (backups, policy, now) to what to keep and delete.
//
// The architecture's policies: databases 30 days; files 7 daily, 4 weekly, 3 monthly.
// The bucket rules are restic's own (`restic forget --keep-daily/--keep-weekly/--keep-monthly`), so that
// the same policy gives the same answer whether restic prunes (files) or we do (database dumps):
// go through the backups newest first; for each kind of bucket (day, ISO week, month...) with count left,
// a backup whose bucket differs from the last kept one of that kind is kept and uses one count.
// Times are bucketed in UTC.
//
// Safety rules on top: the newest backup is always kept (a stalled backup job must never lead to
// zero backups), backups dated in the future are kept, and a kept incremental keeps its whole base chain.

export interface RetentionPolicy {
  /** keep everything at most this many days older than `now` */
  withinDays?: number;
  /** keep the N newest */
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
}

export const DB_POLICY: Readonly<RetentionPolicy> = Object.freeze({ withinDays: 30 });
export const FILES_POLICY: Readonly<RetentionPolicy> = Object.freeze({ daily: 7, weekly: 4, monthly: 3 });

export interface BackupRef {
  key: string;
  time: Date;
  /** key of the backup this one needs to be restored (mariabackup incremental → its base) */
  base?: string;
}

export interface PruneResult<T extends BackupRef> {
  /** newest first */
  keep: T[];
  /** newest first */
  delete: T[];
  /** why each kept key is kept */
  reasons: Map<string, string[]>;
}

const DAY_MS = 86_400_000;

/** ISO-8601 week-numbering year and week of a UTC date (what Go's time.ISOWeek gives restic). */
export function isoWeek(d: Date): { year: number; week: number } {
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const dow = t.getUTCDay() || 7; // Monday=1 .. Sunday=7
  t.setUTCDate(t.getUTCDate() + 4 - dow); // Thursday of this week decides the year
  const year = t.getUTCFullYear();
  const week = Math.ceil(((t.getTime() - Date.UTC(year, 0, 1)) / DAY_MS + 1) / 7);
  return { year, week };
}

type Bucketer = (d: Date, nr: number) => number;
const BUCKETS: Array<{ name: keyof RetentionPolicy; reason: string; f: Bucketer }> = [
  { name: 'last', reason: 'last snapshot', f: (_d, nr) => nr },
  {
    name: 'hourly',
    reason: 'hourly snapshot',
    f: (d) => ((d.getUTCFullYear() * 100 + d.getUTCMonth() + 1) * 100 + d.getUTCDate()) * 100 + d.getUTCHours(),
  },
  { name: 'daily', reason: 'daily snapshot', f: (d) => (d.getUTCFullYear() * 100 + d.getUTCMonth() + 1) * 100 + d.getUTCDate() },
  {
    name: 'weekly',
    reason: 'weekly snapshot',
    f: (d) => {
      const w = isoWeek(d);
      return w.year * 100 + w.week;
    },
  },
  { name: 'monthly', reason: 'monthly snapshot', f: (d) => d.getUTCFullYear() * 100 + d.getUTCMonth() + 1 },
  { name: 'yearly', reason: 'yearly snapshot', f: (d) => d.getUTCFullYear() },
];

export function validatePolicy(p: RetentionPolicy): void {
  for (const [k, v] of Object.entries(p)) {
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      throw new RangeError(`retention ${k} must be a non-negative integer, got ${String(v)}`);
  }
  if (!Object.values(p).some((v) => typeof v === 'number' && v > 0)) {
    throw new RangeError('retention policy keeps nothing: refusing (it would delete every backup)');
  }
}

export function prune<T extends BackupRef>(backups: readonly T[], policy: RetentionPolicy, now: Date): PruneResult<T> {
  validatePolicy(policy);
  const list = [...backups].sort((a, b) => b.time.getTime() - a.time.getTime() || (a.key < b.key ? 1 : -1));
  const reasons = new Map<string, string[]>();
  const why = (k: string, r: string) => {
    const a = reasons.get(k);
    if (a) a.push(r);
    else reasons.set(k, [r]);
  };
  const counts = BUCKETS.map((b) => ({ ...b, left: policy[b.name] ?? 0, last: Number.NaN }));
  list.forEach((cur, nr) => {
    const t = cur.time.getTime();
    if (t > now.getTime()) why(cur.key, 'dated in the future');
    if (policy.withinDays !== undefined && policy.withinDays > 0 && now.getTime() - t <= policy.withinDays * DAY_MS) {
      why(cur.key, `within ${policy.withinDays} days`);
    }
    for (const b of counts) {
      if (b.left <= 0) continue;
      const v = b.f(cur.time, nr);
      if (v !== b.last) {
        b.last = v;
        b.left--;
        why(cur.key, b.reason);
      }
    }
  });
  const newest = list[0];
  if (newest && !reasons.has(newest.key)) why(newest.key, 'newest backup (always kept)');
  // keep the base chain of every kept backup
  const byKey = new Map(list.map((b) => [b.key, b]));
  const stack = list.filter((b) => reasons.has(b.key));
  while (stack.length) {
    const b = stack.pop() as T;
    if (b.base && byKey.has(b.base) && !reasons.has(b.base)) {
      why(b.base, `base of ${b.key}`);
      stack.push(byKey.get(b.base) as T);
    } else if (b.base && reasons.has(b.base)) {
      const r = reasons.get(b.base) as string[];
      if (!r.includes(`base of ${b.key}`)) r.push(`base of ${b.key}`);
    }
  }
  return { keep: list.filter((b) => reasons.has(b.key)), delete: list.filter((b) => !reasons.has(b.key)), reasons };
}

/** The same policy as restic arguments: `restic forget <these> --prune`. */
export function resticForgetArgs(p: RetentionPolicy): string[] {
  validatePolicy(p);
  const out: string[] = [];
  const add = (flag: string, v: number | undefined) => {
    if (v !== undefined && v > 0) out.push(flag, String(v));
  };
  add('--keep-last', p.last);
  add('--keep-hourly', p.hourly);
  add('--keep-daily', p.daily);
  add('--keep-weekly', p.weekly);
  add('--keep-monthly', p.monthly);
  add('--keep-yearly', p.yearly);
  // restic's --keep-within is relative to the newest snapshot, ours to now: never silently mix them
  if (p.withinDays) out.push('--keep-within', `${p.withinDays}d`);
  return out;
}
