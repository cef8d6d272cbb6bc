// Shared HTTP plumbing of the providers: retries (retry.ts) + a clear, masked error for the final answer.
import { CloudApiError, errorDetail, maskSecrets, retryingFetch, type FetchLike, type RetryOptions } from './retry.ts';

export interface ProviderHttpOptions extends RetryOptions {
  /** base URL of the API (Prism in tests; the real API by default) */
  baseUrl?: string;
}

/** A fetch that retries, then turns a final 4xx/5xx into a CloudApiError (no request headers in it). */
export function providerFetch(provider: string, opts: RetryOptions = {}): FetchLike {
  const inner = retryingFetch(opts);
  return async (input, init) => {
    const res = await inner(input, init);
    if (res.status < 400) return res;
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init?.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
    const text = await res.text().catch(() => '');
    const violations = res.headers.get('sl-violations') ?? undefined;
    throw new CloudApiError(
      provider,
      method,
      url.pathname + url.search,
      res.status,
      maskSecrets(errorDetail(text), opts.secrets),
      violations ? maskSecrets(violations, opts.secrets) : undefined,
    );
  };
}

export function isNotFound(err: unknown): boolean {
  return err instanceof CloudApiError && err.status === 404;
}

/** Walk pages until the source says there is no next one, never more than maxPages (a static mock or a
 *  broken server must not make this loop forever). */
export async function collectPages<T>(
  fetchPage: (page: number) => Promise<{ items: T[]; hasNext: boolean }>,
  opts: { maxPages?: number; what?: string } = {},
): Promise<T[]> {
  const maxPages = opts.maxPages ?? 50;
  const all: T[] = [];
  for (let page = 1; page <= maxPages; page++) {
    const { items, hasNext } = await fetchPage(page);
    all.push(...items);
    if (!hasNext || items.length === 0) return all;
  }
  throw new Error(`${opts.what ?? 'list'}: more than ${maxPages} pages; refusing to continue (raise maxPages if this is real)`);
}
