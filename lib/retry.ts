// The one retry loop of wpfarm: a step's `retries`/`until` (lib/runner.ts), the cloud clients' HTTP
// backoff (lib/cloud/retry.ts) and the roles' waits all go through retry(). Sleeping is node's own
// `setTimeout` from node:timers/promises (the one sleep: no hand-made promise around setTimeout).
import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryOptions<T> {
  /** total attempts, the first included (at least 1) */
  attempts: number;
  /** the wait before attempt n+1, after attempt n gave `last` (ms) */
  delayMs: number | ((attempt: number, last: T) => number);
  /** true when `last` is final (success, or an error not worth retrying); default: never, retry until the last attempt */
  done?: (last: T, attempt: number) => boolean;
  /** called before each wait (logs, freeing resources) */
  onRetry?: (attempt: number, last: T) => void | Promise<void>;
  /** the wait itself (tests shorten it); default node:timers/promises setTimeout */
  sleep?: (ms: number) => Promise<unknown>;
}

/**
 * Run `attempt` until `done` says its outcome is final or the attempts run out; returns the last outcome.
 * An exception thrown by `attempt` is not retried: it propagates at once (catch what is retryable inside
 * `attempt` and return it as an outcome).
 */
export async function retry<T>(attempt: (n: number) => Promise<T>, o: RetryOptions<T>): Promise<T> {
  const attempts = Math.max(1, Math.floor(o.attempts));
  const wait = o.sleep ?? sleep;
  for (let n = 1; ; n++) {
    const last = await attempt(n);
    if (n >= attempts || o.done?.(last, n)) return last;
    await o.onRetry?.(n, last);
    await wait(typeof o.delayMs === 'number' ? o.delayMs : o.delayMs(n, last));
  }
}
