// A fetch wrapper shared by the cloud providers: retries 429 and 5xx answers (and network errors)
// with exponential backoff + full jitter, honours Retry-After (and DigitalOcean's ratelimit-reset),
// bounds the attempts, and never lets a credential reach a message. The loop itself is lib/retry.ts.
import { retry } from '../retry.ts';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/** One HTTP exchange as seen by the wrapper (for logs and tests). Never holds headers of the request. */
export interface Exchange {
  method: string;
  /** path + query, no scheme/host (hosts are not secret, but this keeps logs short) */
  path: string;
  status: number;
  attempt: number;
  /** Prism's validation report, when the answer came through Prism */
  violations?: string;
  ms: number;
}

export interface RetryOptions {
  /** total attempts including the first (default 5) */
  maxAttempts?: number;
  /** first backoff in ms (default 500) */
  baseDelayMs?: number;
  /** cap of one wait (default 30 s) */
  maxDelayMs?: number;
  /** retry 5xx answers to POST too (default false: a POST may have been applied; 429/503 are always retried) */
  retryPost5xx?: boolean;
  /** the underlying fetch (default globalThis.fetch) */
  fetch?: FetchLike;
  /** called after every answer (each attempt) */
  onExchange?: (e: Exchange) => void;
  /** strings to mask in any message this module produces (tokens) */
  secrets?: string[];
  /** sleep function (tests may shorten it) */
  sleep?: (ms: number) => Promise<void>;
  /** random in [0,1) for jitter */
  random?: () => number;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);

export function isRetryableStatus(status: number, method: string, retryPost5xx = false): boolean {
  if (status === 429 || status === 503) return true;
  if (status >= 500 && status <= 599) return retryPost5xx || IDEMPOTENT.has(method.toUpperCase());
  return false;
}

/** Delay in ms requested by the server, or undefined. Retry-After (seconds or HTTP date) first,
 *  then DigitalOcean's ratelimit-reset (unix seconds) when the remaining quota is 0. */
export function serverDelayMs(headers: Headers, now = Date.now()): number | undefined {
  const ra = headers.get('retry-after');
  if (ra) {
    const secs = Number(ra);
    if (Number.isFinite(secs) && secs >= 0) return secs * 1000;
    const when = Date.parse(ra);
    if (!Number.isNaN(when)) return Math.max(0, when - now);
  }
  const remaining = headers.get('ratelimit-remaining');
  const reset = headers.get('ratelimit-reset');
  if (reset && remaining !== null && Number(remaining) <= 0) {
    const at = Number(reset) * 1000;
    if (Number.isFinite(at) && at > now) return at - now;
  }
  return undefined;
}

/** Exponential backoff with full jitter: random in [0, min(max, base * 2^(attempt-1))]. */
export function backoffMs(attempt: number, base: number, max: number, random: () => number = Math.random): number {
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  return Math.round(random() * ceiling);
}

export function maskSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('***');
  // any bearer/authorization value that slipped into a text
  out = out.replace(/(authorization["']?\s*[:=]\s*["']?)(bearer\s+)?[^\s"',}]+/gi, '$1$2***');
  out = out.replace(/(bearer\s+)[A-Za-z0-9._~+/=-]{8,}/gi, '$1***');
  return out;
}

/** A final answer that is not 2xx/3xx, or the retries ran out. Carries no request headers. */
export class CloudApiError extends Error {
  constructor(
    readonly provider: string,
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly detail: string,
    readonly violations?: string,
  ) {
    super(
      `${provider}: ${method} ${path} -> ${status}${detail ? `: ${detail}` : ''}${violations ? ` [spec violations: ${violations}]` : ''}`,
    );
    this.name = 'CloudApiError';
  }
}

function requestParts(input: string | URL | Request, init?: RequestInit): { url: URL; method: string } {
  if (input instanceof Request) return { url: new URL(input.url), method: (init?.method ?? input.method ?? 'GET').toUpperCase() };
  return { url: new URL(String(input)), method: (init?.method ?? 'GET').toUpperCase() };
}

/** Wrap a fetch with retries. The answer of the last attempt is returned as is (the caller's SDK turns
 *  an error answer into its own error type); network errors after the last attempt are rethrown masked. */
export function retryingFetch(opts: RetryOptions = {}): FetchLike {
  const maxAttempts = Math.max(1, opts.maxAttempts ?? 5);
  const base = opts.baseDelayMs ?? 500;
  const max = opts.maxDelayMs ?? 30_000;
  const inner: FetchLike = opts.fetch ?? ((i, n) => fetch(i, n));
  const random = opts.random ?? Math.random;
  return async (input, init) => {
    const { url, method } = requestParts(input, init);
    const path = url.pathname + url.search;
    // a Request body can be read once: buffer it so that retries can resend it
    let req: Request | undefined;
    let bodyBuf: ArrayBuffer | undefined;
    if (input instanceof Request) {
      req = input;
      if (req.body) bodyBuf = await req.arrayBuffer();
    }
    type Outcome = { res: Response; retryable: boolean } | { err: unknown; retryable: boolean };
    let attempts = 0;
    const last = await retry<Outcome>(
      async (attempt) => {
        attempts = attempt;
        const started = Date.now();
        try {
          const res = req
            ? await inner(req.url, {
                method: req.method,
                headers: req.headers,
                body: bodyBuf,
                signal: req.signal,
                redirect: req.redirect,
                ...init,
              })
            : await inner(input, init);
          const violations = res.headers.get('sl-violations') ?? undefined;
          opts.onExchange?.({ method, path, status: res.status, attempt, violations, ms: Date.now() - started });
          return { res, retryable: isRetryableStatus(res.status, method, opts.retryPost5xx) };
        } catch (err) {
          const aborted = (err as { name?: string })?.name === 'AbortError';
          return { err, retryable: !aborted && (IDEMPOTENT.has(method) || !!opts.retryPost5xx) };
        }
      },
      {
        attempts: maxAttempts,
        done: (o) => !o.retryable,
        // the server's wish first (Retry-After, ratelimit-reset), bounded; else backoff with jitter
        delayMs: (attempt, o) => {
          const backoff = backoffMs(attempt, base, max, random);
          return 'res' in o ? Math.min(max, serverDelayMs(o.res.headers) ?? backoff) : backoff;
        },
        onRetry: async (_n, o) => {
          if ('res' in o) await o.res.arrayBuffer().catch(() => undefined); // free the connection
        },
        sleep: opts.sleep,
      },
    );
    if ('res' in last) return last.res;
    const err = last.err;
    const msg = maskSecrets(err instanceof Error ? err.message : String(err), opts.secrets);
    const cause = (err as { cause?: { code?: string } })?.cause?.code;
    const where = `${method} ${url.origin}${url.pathname}`;
    throw new Error(maskSecrets(`${where}: ${msg}${cause ? ` (${cause})` : ''} after ${attempts} attempt(s)`, opts.secrets));
  };
}

/** Read a short human detail from an error answer body: DigitalOcean {id,message}, Cloudflare {errors:[...]}. */
export function errorDetail(bodyText: string): string {
  try {
    const j = JSON.parse(bodyText) as {
      message?: string;
      id?: string;
      errors?: { code?: number; message?: string }[];
      title?: string;
      validation?: { location?: string[]; message?: string }[];
    };
    // Prism's own answer when a request violates the spec
    if (Array.isArray(j.validation) && j.validation.length)
      return `${j.title ?? 'invalid'}: ${j.validation.map((v) => `${(v.location ?? []).join('.')} ${v.message ?? ''}`.trim()).join('; ')}`;
    if (Array.isArray(j.errors) && j.errors.length) return j.errors.map((e) => `${e.code ?? ''} ${e.message ?? ''}`.trim()).join('; ');
    if (j.message) return j.id ? `${j.id}: ${j.message}` : j.message;
  } catch {
    /* not JSON */
  }
  return bodyText.slice(0, 300);
}
