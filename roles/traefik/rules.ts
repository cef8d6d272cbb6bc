// Our own parser for Traefik v3 router rules (Traefik's binary is not available here to parse them).
// Grammar (Traefik v3 "default rule syntax"):
//   expr    := and ( '||' and )*
//   and     := unary ( '&&' unary )*
//   unary   := '!' unary | '(' expr ')' | matcher
//   matcher := Name '(' string ( ',' string )* ')'
//   string  := `...` | "..."
// v3 matchers take exactly the arguments listed in MATCHERS (v2's Host(`a`, `b`) is rejected).

export type RuleNode =
  | { type: 'matcher'; name: MatcherName; args: string[] }
  | { type: 'not'; expr: RuleNode }
  | { type: 'and'; left: RuleNode; right: RuleNode }
  | { type: 'or'; left: RuleNode; right: RuleNode };

export type MatcherName =
  | 'Host'
  | 'HostRegexp'
  | 'Path'
  | 'PathPrefix'
  | 'PathRegexp'
  | 'Method'
  | 'Header'
  | 'HeaderRegexp'
  | 'Query'
  | 'QueryRegexp'
  | 'ClientIP';

/** Matcher name → accepted argument counts (Traefik v3 HTTP matchers). */
const MATCHERS: Record<MatcherName, number[]> = {
  Host: [1],
  HostRegexp: [1],
  Path: [1],
  PathPrefix: [1],
  PathRegexp: [1],
  Method: [1],
  Header: [2],
  HeaderRegexp: [2],
  Query: [1, 2],
  QueryRegexp: [1, 2],
  ClientIP: [1],
};

export class RuleSyntaxError extends Error {
  constructor(
    message: string,
    readonly rule: string,
    readonly position: number,
  ) {
    super(`${message} at position ${position} in rule ${JSON.stringify(rule)}`);
    this.name = 'RuleSyntaxError';
  }
}

type Token =
  | { kind: 'ident'; value: string; pos: number }
  | { kind: 'string'; value: string; pos: number }
  | { kind: 'op'; value: '&&' | '||' | '!' | '(' | ')' | ','; pos: number }
  | { kind: 'end'; pos: number };

function tokenize(rule: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < rule.length) {
    const c = rule[i]!;
    if (c === ' ' || c === '\t' || c === '\n') {
      i++;
    } else if (rule.startsWith('&&', i) || rule.startsWith('||', i)) {
      tokens.push({ kind: 'op', value: rule.slice(i, i + 2) as '&&' | '||', pos: i });
      i += 2;
    } else if (c === '!' || c === '(' || c === ')' || c === ',') {
      tokens.push({ kind: 'op', value: c, pos: i });
      i++;
    } else if (c === '`' || c === '"') {
      const end = rule.indexOf(c, i + 1);
      if (end < 0) throw new RuleSyntaxError(`unterminated ${c}-quoted string`, rule, i);
      tokens.push({ kind: 'string', value: rule.slice(i + 1, end), pos: i });
      i = end + 1;
    } else if (/[A-Za-z]/.test(c)) {
      const m = /^[A-Za-z][A-Za-z0-9]*/.exec(rule.slice(i))!;
      tokens.push({ kind: 'ident', value: m[0], pos: i });
      i += m[0].length;
    } else {
      throw new RuleSyntaxError(`unexpected character ${JSON.stringify(c)}`, rule, i);
    }
  }
  tokens.push({ kind: 'end', pos: rule.length });
  return tokens;
}

/** Parse a rule into its syntax tree; throws RuleSyntaxError with the position of the first problem. */
export function parseRule(rule: string): RuleNode {
  const tokens = tokenize(rule);
  let k = 0;
  const peek = (): Token => tokens[k]!;
  const isOp = (t: Token, v: string): boolean => t.kind === 'op' && t.value === v;
  const expectOp = (v: string): void => {
    const t = peek();
    if (!isOp(t, v)) throw new RuleSyntaxError(`expected ${JSON.stringify(v)}`, rule, t.pos);
    k++;
  };

  const parseOr = (): RuleNode => {
    let left = parseAnd();
    while (isOp(peek(), '||')) {
      k++;
      left = { type: 'or', left, right: parseAnd() };
    }
    return left;
  };
  const parseAnd = (): RuleNode => {
    let left = parseUnary();
    while (isOp(peek(), '&&')) {
      k++;
      left = { type: 'and', left, right: parseUnary() };
    }
    return left;
  };
  const parseUnary = (): RuleNode => {
    const t = peek();
    if (isOp(t, '!')) {
      k++;
      return { type: 'not', expr: parseUnary() };
    }
    if (isOp(t, '(')) {
      k++;
      const e = parseOr();
      expectOp(')');
      return e;
    }
    if (t.kind === 'ident') return parseMatcher();
    throw new RuleSyntaxError('expected a matcher, "!" or "("', rule, t.pos);
  };
  const parseMatcher = (): RuleNode => {
    const t = peek() as Extract<Token, { kind: 'ident' }>;
    k++;
    if (!(t.value in MATCHERS)) {
      throw new RuleSyntaxError(`unknown matcher ${t.value} (Traefik v3 matchers: ${Object.keys(MATCHERS).join(', ')})`, rule, t.pos);
    }
    const name = t.value as MatcherName;
    expectOp('(');
    const args: string[] = [];
    for (;;) {
      const a = peek();
      if (a.kind !== 'string') throw new RuleSyntaxError(`${name}: expected a quoted argument`, rule, a.pos);
      args.push(a.value);
      k++;
      if (isOp(peek(), ',')) {
        k++;
        continue;
      }
      break;
    }
    expectOp(')');
    if (!MATCHERS[name].includes(args.length)) {
      throw new RuleSyntaxError(`${name} takes ${MATCHERS[name].join(' or ')} argument(s) in Traefik v3, got ${args.length}`, rule, t.pos);
    }
    checkArgs(name, args, rule, t.pos);
    return { type: 'matcher', name, args };
  };

  const tree = parseOr();
  const end = peek();
  if (end.kind !== 'end') throw new RuleSyntaxError('unexpected trailing input', rule, end.pos);
  return tree;
}

const HOSTNAME = /^(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE']);

function checkArgs(name: MatcherName, args: string[], rule: string, pos: number): void {
  const fail = (msg: string): never => {
    throw new RuleSyntaxError(`${name}: ${msg}`, rule, pos);
  };
  const a = args[0]!;
  switch (name) {
    case 'Host':
      if (!HOSTNAME.test(a)) fail(`${JSON.stringify(a)} is not a lower-case host name`);
      break;
    case 'Path':
    case 'PathPrefix':
      if (!a.startsWith('/')) fail(`${JSON.stringify(a)} must start with "/"`);
      if (/\s/.test(a)) fail('path contains white space');
      break;
    case 'Method':
      if (!METHODS.has(a)) fail(`${JSON.stringify(a)} is not an HTTP method`);
      break;
    case 'ClientIP':
      if (!isIpOrCidr(a)) fail(`${JSON.stringify(a)} is not an IP address or CIDR`);
      break;
    case 'HostRegexp':
    case 'PathRegexp':
    case 'HeaderRegexp':
    case 'QueryRegexp': {
      // JavaScript's RegExp is close to Go's RE2 for the patterns we write; RE2 lacks lookaround/backrefs.
      const re = args[args.length - 1]!;
      if (/\(\?[=!<]|\\[1-9]/.test(re)) fail('lookaround and back-references are not supported by Go RE2');
      if (/\{[A-Za-z_][A-Za-z0-9_]*:/.test(re))
        fail('{name:regexp} placeholders are Traefik v2 syntax; v3 takes a plain regular expression');
      try {
        new RegExp(re);
      } catch (e) {
        fail(`invalid regular expression: ${(e as Error).message}`);
      }
      break;
    }
    case 'Header':
    case 'Query':
      if (a === '') fail('empty key');
      break;
  }
}

/** IPv4/IPv6 address or CIDR, strict enough for configuration checks. */
export function isIpOrCidr(s: string): boolean {
  const [addr, bits, ...rest] = s.split('/');
  if (rest.length || addr === undefined) return false;
  const v4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(addr);
  const v6 =
    !v4 && addr.includes(':') && /^[0-9a-fA-F:.]+$/.test(addr) && (addr.match(/::/g) ?? []).length <= 1 && addr.split(':').length <= 8;
  if (!v4 && !v6) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (v4 ? 32 : 128);
}

/** Every matcher of a tree, in order. */
export function matchers(node: RuleNode): Array<{ name: MatcherName; args: string[] }> {
  switch (node.type) {
    case 'matcher':
      return [{ name: node.name, args: node.args }];
    case 'not':
      return matchers(node.expr);
    case 'and':
    case 'or':
      return [...matchers(node.left), ...matchers(node.right)];
  }
}

/** Hosts a rule can match positively (Host matchers not under a negation). */
export function ruleHosts(node: RuleNode): string[] {
  switch (node.type) {
    case 'matcher':
      return node.name === 'Host' ? [node.args[0]!] : [];
    case 'not':
      return [];
    case 'and':
    case 'or':
      return [...ruleHosts(node.left), ...ruleHosts(node.right)];
  }
}

/** A request as far as rules care; used to evaluate rules in tests and checks. */
export interface RuleRequest {
  host: string;
  path: string;
  method?: string;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  clientIp?: string;
}

/** Evaluate a parsed rule against a request (Host is case-insensitive, port stripped). */
export function evaluateRule(node: RuleNode, req: RuleRequest): boolean {
  switch (node.type) {
    case 'not':
      return !evaluateRule(node.expr, req);
    case 'and':
      return evaluateRule(node.left, req) && evaluateRule(node.right, req);
    case 'or':
      return evaluateRule(node.left, req) || evaluateRule(node.right, req);
    case 'matcher': {
      const [a, b] = node.args as [string, string | undefined];
      const host = req.host.toLowerCase().replace(/:\d+$/, '');
      const headers = Object.fromEntries(Object.entries(req.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
      switch (node.name) {
        case 'Host':
          return host === a.toLowerCase();
        case 'HostRegexp':
          return new RegExp(a).test(host);
        case 'Path':
          return req.path === a;
        case 'PathPrefix':
          return req.path.startsWith(a);
        case 'PathRegexp':
          return new RegExp(a).test(req.path);
        case 'Method':
          return (req.method ?? 'GET') === a;
        case 'Header':
          return headers[a.toLowerCase()] === b;
        case 'HeaderRegexp':
          return new RegExp(b ?? '').test(headers[a.toLowerCase()] ?? '');
        case 'Query':
          return b === undefined ? a in (req.query ?? {}) : req.query?.[a] === b;
        case 'QueryRegexp':
          return new RegExp(b ?? '').test(req.query?.[a] ?? '');
        case 'ClientIP':
          return req.clientIp !== undefined && ipInCidr(req.clientIp, a);
      }
    }
  }
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

/** IPv4 only (enough for the checks that use it); IPv6 compares exact addresses. */
export function ipInCidr(ip: string, cidr: string): boolean {
  const [net, bitsS] = cidr.split('/');
  if (!ip.includes('.') || !net!.includes('.')) return ip === net;
  const bits = bitsS === undefined ? 32 : Number(bitsS);
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
  return (ipv4ToInt(ip) & mask) >>> 0 === (ipv4ToInt(net!) & mask) >>> 0;
}
