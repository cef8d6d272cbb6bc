// Resilience middlewares of the site routers: a circuit breaker and retries, shared through the file
// provider (`circuit-breaker@file`, `retry@file`). Traefik gives every router its own instance of a
// shared circuit breaker (state is never shared between routers), so one definition protects each site
// separately. Pure: inventory variables in, typed middleware objects out; no I/O.
import type { Vars } from '../../lib/types.ts';

/** Traefik's `circuitBreaker` middleware (fields of circuitBreakerMiddleware in traefik-v3-file-provider.json). */
export interface CircuitBreakerMiddleware {
  expression: string;
  checkPeriod: string;
  fallbackDuration: string;
  recoveryDuration: string;
  responseCode: number;
}

/** Traefik's `retry` middleware (retryMiddleware in traefik-v3-file-provider.json). */
export interface RetryMiddleware {
  attempts: number;
  initialInterval: string;
}

export interface ResilienceSettings {
  circuitBreaker: CircuitBreakerMiddleware;
  retry: RetryMiddleware;
}

/**
 * Defaults. The breaker opens on transport failures or gateway errors (nginx's 502/504 when PHP-FPM is
 * down or saturated), measured after the retries (the breaker wraps the retry middleware), or when the
 * median latency passes 10 s; it does not open on a 500 of WordPress itself (a broken page is not an
 * unhealthy backend). While open the site answers 503 for fallbackDuration, then recovers gradually.
 * Retries: Traefik retries only when the backend gave no response (connection refused or reset
 * before any byte), which is what a task being replaced during a rolling update produces.
 */
export const RESILIENCE_DEFAULTS: ResilienceSettings = {
  circuitBreaker: {
    expression: 'NetworkErrorRatio() > 0.50 || ResponseCodeRatio(502, 505, 0, 600) > 0.50 || LatencyAtQuantileMS(50.0) > 10000',
    checkPeriod: '1s',
    fallbackDuration: '10s',
    recoveryDuration: '10s',
    responseCode: 503,
  },
  retry: { attempts: 3, initialInterval: '100ms' },
};

export class ResilienceVarsError extends Error {
  override name = 'ResilienceVarsError';
}

/** Go's time.ParseDuration syntax (what Traefik accepts for its durations). */
const GO_DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

function durationMs(s: string): number {
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60000, h: 3600000 };
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(m[1]) * unit[m[2]!]!;
  return total;
}

// ---- circuit breaker expressions (Traefik/oxy cbreaker predicate language) -------------------------
//   expr  := and ( '||' and )*
//   and   := cmp ( '&&' cmp )*
//   cmp   := '(' expr ')' | metric op number
//   metric:= NetworkErrorRatio() | ResponseCodeRatio(int, int, int, int) | LatencyAtQuantileMS(number)
//   op    := > | >= | < | <= | == | !=

const METRICS: Record<string, { args: number; integer: boolean }> = {
  NetworkErrorRatio: { args: 0, integer: false },
  ResponseCodeRatio: { args: 4, integer: true },
  LatencyAtQuantileMS: { args: 1, integer: false },
};

type Tok = { kind: 'num' | 'ident' | 'op'; value: string; pos: number } | { kind: 'end'; value: ''; pos: number };

function tokens(expr: string): Tok[] {
  const out: Tok[] = [];
  const re = /\s*(?:(\d+(?:\.\d+)?)|([A-Za-z][A-Za-z0-9]*)|(>=|<=|==|!=|&&|\|\||[><(),]))/y;
  let i = 0;
  while (i < expr.length) {
    if (/^\s*$/.test(expr.slice(i))) break;
    re.lastIndex = i;
    const m = re.exec(expr);
    if (!m) throw new ResilienceVarsError(`circuit breaker expression: unexpected input at position ${i} in ${JSON.stringify(expr)}`);
    const pos = m.index + m[0].length - (m[1] ?? m[2] ?? m[3])!.length;
    out.push({ kind: m[1] ? 'num' : m[2] ? 'ident' : 'op', value: (m[1] ?? m[2] ?? m[3])!, pos });
    i = re.lastIndex;
  }
  out.push({ kind: 'end', value: '', pos: expr.length });
  return out;
}

/** Check a circuit breaker expression; throws ResilienceVarsError naming the position of the problem. */
export function checkBreakerExpression(expr: string): void {
  const t = tokens(expr);
  let k = 0;
  const fail = (what: string): never => {
    throw new ResilienceVarsError(`circuit breaker expression: ${what} at position ${t[k]!.pos} in ${JSON.stringify(expr)}`);
  };
  const op = (v: string): boolean => t[k]!.kind === 'op' && t[k]!.value === v;
  const expect = (v: string): void => {
    if (!op(v)) fail(`expected ${JSON.stringify(v)}`);
    k++;
  };
  const number = (integer: boolean): number => {
    if (t[k]!.kind !== 'num') fail('expected a number');
    const v = t[k]!.value;
    if (integer && !/^\d+$/.test(v)) fail(`expected an integer, got ${v}`);
    k++;
    return Number(v);
  };
  const metric = (): void => {
    const name = t[k]!;
    if (name.kind !== 'ident') fail('expected NetworkErrorRatio(), ResponseCodeRatio(…), LatencyAtQuantileMS(…) or "("');
    const spec = METRICS[name.value];
    if (!spec) fail(`unknown function ${name.value} (known: ${Object.keys(METRICS).join(', ')})`);
    k++;
    expect('(');
    const args: number[] = [];
    for (let a = 0; a < spec!.args; a++) {
      if (a > 0) expect(',');
      args.push(number(spec!.integer));
    }
    expect(')');
    if (name.value === 'ResponseCodeRatio') {
      const [from, to, dFrom, dTo] = args as [number, number, number, number];
      if (from >= to || dFrom >= dTo || to > 600 || dTo > 600)
        fail(`ResponseCodeRatio(${args.join(', ')}) has an empty or invalid code range`);
    }
    if (name.value === 'LatencyAtQuantileMS' && (args[0]! <= 0 || args[0]! > 100)) fail('LatencyAtQuantileMS takes a quantile in (0, 100]');
    if (!['>', '>=', '<', '<=', '==', '!='].some(op)) fail('expected a comparison (>, >=, <, <=, ==, !=)');
    k++;
    number(false);
  };
  const cmp = (): void => {
    if (op('(')) {
      k++;
      or();
      expect(')');
    } else metric();
  };
  const and = (): void => {
    cmp();
    while (op('&&')) {
      k++;
      cmp();
    }
  };
  const or = (): void => {
    and();
    while (op('||')) {
      k++;
      and();
    }
  };
  or();
  if (t[k]!.kind !== 'end') fail('trailing input');
}

function field<T>(obj: Record<string, unknown>, key: string, dflt: T, ok: (v: unknown) => boolean, what: string, v: string): T {
  const x = obj[key] ?? dflt;
  if (!ok(x)) throw new ResilienceVarsError(`${v}.${key} must be ${what} (got ${JSON.stringify(x)})`);
  return x as T;
}

function object(vars: Vars, key: string): Record<string, unknown> {
  const v = vars[key] ?? {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ResilienceVarsError(`${key} must be a mapping`);
  return v as Record<string, unknown>;
}

const isDuration = (x: unknown): boolean => typeof x === 'string' && GO_DURATION.test(x);

/**
 * `traefik_circuit_breaker: {expression, check_period, fallback_duration, recovery_duration, response_code}` and
 * `traefik_retry: {attempts, initial_interval}`; every key optional (RESILIENCE_DEFAULTS). Unknown keys are errors.
 */
export function resilienceSettings(vars: Vars): ResilienceSettings {
  const cb = object(vars, 'traefik_circuit_breaker');
  const rt = object(vars, 'traefik_retry');
  const known = (o: Record<string, unknown>, name: string, keys: string[]): void => {
    for (const k of Object.keys(o))
      if (!keys.includes(k)) throw new ResilienceVarsError(`${name}: unknown key ${k} (known: ${keys.join(', ')})`);
  };
  known(cb, 'traefik_circuit_breaker', ['expression', 'check_period', 'fallback_duration', 'recovery_duration', 'response_code']);
  known(rt, 'traefik_retry', ['attempts', 'initial_interval']);
  const d = RESILIENCE_DEFAULTS;
  const V = 'traefik_circuit_breaker';
  const circuitBreaker: CircuitBreakerMiddleware = {
    expression: field(cb, 'expression', d.circuitBreaker.expression, (x) => typeof x === 'string' && x !== '', 'a non-empty string', V),
    checkPeriod: field(cb, 'check_period', d.circuitBreaker.checkPeriod, isDuration, 'a duration like 1s', V),
    fallbackDuration: field(cb, 'fallback_duration', d.circuitBreaker.fallbackDuration, isDuration, 'a duration like 10s', V),
    recoveryDuration: field(cb, 'recovery_duration', d.circuitBreaker.recoveryDuration, isDuration, 'a duration like 10s', V),
    responseCode: field(
      cb,
      'response_code',
      d.circuitBreaker.responseCode,
      (x) => Number.isInteger(x) && (x as number) >= 500 && (x as number) <= 599,
      'a 5xx status code',
      V,
    ),
  };
  checkBreakerExpression(circuitBreaker.expression);
  const retry: RetryMiddleware = {
    attempts: field(
      rt,
      'attempts',
      d.retry.attempts,
      (x) => Number.isInteger(x) && (x as number) >= 1 && (x as number) <= 10,
      'an integer 1..10',
      'traefik_retry',
    ),
    initialInterval: field(rt, 'initial_interval', d.retry.initialInterval, isDuration, 'a duration like 100ms', 'traefik_retry'),
  };
  // the exponential backoff must end well inside the client's patience (Cloudflare waits 100 s for an origin)
  const worst = durationMs(retry.initialInterval) * (2 ** retry.attempts - 1);
  if (worst > 10_000)
    throw new ResilienceVarsError(
      `traefik_retry: ${retry.attempts} attempts from ${retry.initialInterval} back off up to ${worst} ms in total; keep it under 10 s`,
    );
  return { circuitBreaker, retry };
}

/** Middleware names in the file provider. */
export const RESILIENCE_MW = { circuitBreaker: 'circuit-breaker', retry: 'retry' } as const;

/** The file-provider middleware objects. */
export function resilienceMiddlewares(r: ResilienceSettings): {
  [RESILIENCE_MW.circuitBreaker]: { circuitBreaker: CircuitBreakerMiddleware };
  [RESILIENCE_MW.retry]: { retry: RetryMiddleware };
} {
  return {
    [RESILIENCE_MW.circuitBreaker]: { circuitBreaker: { ...r.circuitBreaker } },
    [RESILIENCE_MW.retry]: { retry: { ...r.retry } },
  };
}

/** Router references, outermost first: the breaker sees each request once, after its retries. */
export const RESILIENCE_CHAIN = [`${RESILIENCE_MW.circuitBreaker}@file`, `${RESILIENCE_MW.retry}@file`] as const;
