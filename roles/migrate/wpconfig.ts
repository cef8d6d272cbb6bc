// Reading a legacy site's wp-config.php and wp-includes/version.php WITHOUT running them (running wp-config.php
// loads all of WordPress): a small PHP tokenizer (strings, comments, identifiers, punctuation) and the two
// statement shapes that matter, `define('NAME', value);` and `$var = value;`. A value that is not a literal
// (getenv(), a concatenation, a constant) is reported as such: the operator must make it literal or say it.

export type PhpLiteral = string | number | boolean | null;

interface Token {
  kind: 'str' | 'ident' | 'var' | 'num' | 'punct';
  text: string;
  /** the literal's value (strings unescaped) */
  value?: PhpLiteral;
  line: number;
}

export class WpConfigError extends Error {}

const DQ_ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', v: '\v', e: '\x1b', f: '\f', '\\': '\\', $: '$', '"': '"' };

/** PHP source → tokens (outside `<?php ... ?>` text is skipped; heredoc is not supported: a clear error). */
export function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let line = 1;
  let inPhp = false;
  const n = src.length;
  while (i < n) {
    if (!inPhp) {
      const open = src.indexOf('<?php', i);
      if (open < 0) break;
      for (let k = i; k < open; k++) if (src[k] === '\n') line++;
      i = open + 5;
      inPhp = true;
      continue;
    }
    const c = src[i]!;
    if (c === '\n') {
      line++;
      i++;
    } else if (c === ' ' || c === '\t' || c === '\r') i++;
    else if (src.startsWith('?>', i)) {
      inPhp = false;
      i += 2;
    } else if (c === '#' || src.startsWith('//', i)) {
      while (i < n && src[i] !== '\n' && !src.startsWith('?>', i)) i++;
    } else if (src.startsWith('/*', i)) {
      const end = src.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      for (let k = i; k < stop; k++) if (src[k] === '\n') line++;
      i = stop;
    } else if (c === "'" || c === '"') {
      const start = line;
      let v = '';
      let raw = c;
      i++;
      for (;;) {
        if (i >= n) throw new WpConfigError(`line ${start}: unterminated string`);
        const d = src[i]!;
        raw += d;
        if (d === '\n') line++;
        if (d === c) {
          i++;
          break;
        }
        if (d === '\\' && i + 1 < n) {
          const e = src[i + 1]!;
          if (c === "'") v += e === "'" || e === '\\' ? e : `\\${e}`;
          else v += DQ_ESCAPES[e] ?? `\\${e}`;
          raw += e;
          i += 2;
          continue;
        }
        if (c === '"' && d === '$' && /[A-Za-z_{]/.test(src[i + 1] ?? '')) {
          throw new WpConfigError(`line ${start}: a double-quoted string with a variable in it (${raw}...) is not a literal`);
        }
        v += d;
        i++;
      }
      out.push({ kind: 'str', text: raw, value: v, line: start });
    } else if (src.startsWith('<<<', i)) {
      throw new WpConfigError(`line ${line}: heredoc strings are not supported`);
    } else if (c === '$' && /[A-Za-z_]/.test(src[i + 1] ?? '')) {
      const m = /^\$[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i, i + 200))!;
      out.push({ kind: 'var', text: m[0], line });
      i += m[0].length;
    } else if (/[A-Za-z_\\]/.test(c)) {
      const m = /^[A-Za-z_\\][A-Za-z0-9_\\]*/.exec(src.slice(i, i + 200))!;
      const low = m[0].toLowerCase();
      const value = low === 'true' ? true : low === 'false' ? false : low === 'null' ? null : undefined;
      out.push({ kind: 'ident', text: m[0], line, ...(value !== undefined ? { value } : {}) });
      i += m[0].length;
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9][0-9_]*(?:\.[0-9]+)?/.exec(src.slice(i, i + 100))!;
      out.push({ kind: 'num', text: m[0], value: Number(m[0].replaceAll('_', '')), line });
      i += m[0].length;
    } else {
      out.push({ kind: 'punct', text: c, line });
      i++;
    }
  }
  return out;
}

export interface Assignment {
  value: PhpLiteral;
  /** false when the right-hand side is not a single literal (the expression's text is in `expr`) */
  literal: boolean;
  expr: string;
  line: number;
}

/** Every `define('NAME', v)` and top-level `$name = v;` in the source (the last one wins, as in PHP order). */
export function statements(src: string): { defines: Map<string, Assignment>; vars: Map<string, Assignment> } {
  const t = tokenize(src);
  const defines = new Map<string, Assignment>();
  const vars = new Map<string, Assignment>();
  /** tokens from k up to the `stop` punct at depth 0 */
  const expr = (k: number, stops: string[]): { toks: Token[]; end: number } => {
    let depth = 0;
    const toks: Token[] = [];
    for (; k < t.length; k++) {
      const x = t[k]!;
      if (x.kind === 'punct' && depth === 0 && stops.includes(x.text)) break;
      if (x.kind === 'punct' && '([{'.includes(x.text)) depth++;
      if (x.kind === 'punct' && ')]}'.includes(x.text)) depth--;
      toks.push(x);
    }
    return { toks, end: k };
  };
  const assignment = (toks: Token[], line: number): Assignment => {
    // a unary minus on a number is still a literal
    if (toks.length === 2 && toks[0]!.text === '-' && toks[1]!.kind === 'num') {
      return { value: -(toks[1]!.value as number), literal: true, expr: `-${toks[1]!.text}`, line };
    }
    const only = toks.length === 1 ? toks[0]! : undefined;
    const literal = !!only && only.value !== undefined;
    return { value: literal ? only!.value! : null, literal, expr: toks.map((x) => x.text).join(' '), line };
  };
  for (let k = 0; k < t.length; k++) {
    const x = t[k]!;
    if (x.kind === 'ident' && x.text.toLowerCase() === 'define' && t[k + 1]?.text === '(' && t[k + 2]?.kind === 'str') {
      if (t[k + 3]?.text !== ',') continue;
      const { toks, end } = expr(k + 4, [',', ')']);
      defines.set(String(t[k + 2]!.value), assignment(toks, x.line));
      k = end;
    } else if (x.kind === 'var' && t[k + 1]?.text === '=' && t[k + 2]?.text !== '=') {
      const { toks, end } = expr(k + 2, [';']);
      vars.set(x.text.slice(1), assignment(toks, x.line));
      k = end;
    }
  }
  return { defines, vars };
}

export interface DbHost {
  /** as written in wp-config.php */
  raw: string;
  host: string;
  port?: number;
  socket?: string;
}

/** DB_HOST as WordPress reads it (wpdb::parse_db_host): host, host:port, host:/socket, host:port:/socket, [v6]:port. */
export function parseDbHost(raw: string): DbHost {
  let rest = raw.trim();
  let socket: string | undefined;
  const sp = rest.indexOf(':/');
  if (sp >= 0) {
    socket = rest.slice(sp + 1);
    rest = rest.slice(0, sp);
  }
  const m = (rest.match(/:/g) ?? []).length > 1 ? /^\[?([0-9a-fA-F:]+)(?:\]:(\d+))?$/.exec(rest) : /^([^:/]*)(?::(\d+))?$/.exec(rest);
  if (!m) throw new WpConfigError(`DB_HOST '${raw}': cannot read it as host, host:port or host:/socket`);
  const out: DbHost = { raw, host: m[1] || 'localhost' };
  if (m[2]) {
    const port = Number(m[2]);
    if (port < 1 || port > 65535) throw new WpConfigError(`DB_HOST '${raw}': port ${port} out of range`);
    out.port = port;
  }
  if (socket) out.socket = socket;
  return out;
}

export interface WpConfig {
  dbName: string;
  dbUser: string;
  /** the source's DB password: register it as a secret before anything may print it */
  dbPassword: string;
  dbHost: DbHost;
  dbCharset: string;
  tablePrefix: string;
  multisite: boolean;
  /** WP_CONTENT_DIR when defined */
  contentDir?: string;
  /** WP_HOME / WP_SITEURL when defined (they override the options) */
  home?: string;
  siteurl?: string;
}

/** Debian's defaults, applied by its /usr/share/wordpress/wp-config.php dispatcher after loading the site's file. */
export const DEBIAN_DEFAULTS = { DB_NAME: 'wordpress', DB_USER: 'wordpress', DB_HOST: 'localhost', table_prefix: 'wp_' } as const;

/** Debian's dispatcher wp-config.php (it loads /etc/wordpress/config-<host>.php) rather than a real config? */
export function isDebianDispatcher(src: string): boolean {
  return src.includes('/etc/wordpress/config-') && !/define\s*\(\s*['"]DB_PASSWORD['"]/.test(src);
}

/**
 * The settings of a wp-config.php. `file` names it in errors. With `debianDefaults`, what the file leaves out
 * takes the value Debian's dispatcher would give it.
 */
export function parseWpConfig(src: string, file: string, opts: { debianDefaults?: boolean } = {}): WpConfig {
  let st: ReturnType<typeof statements>;
  try {
    st = statements(src);
  } catch (e) {
    throw new WpConfigError(`${file}: ${(e as Error).message}`);
  }
  const str = (name: string, fallback?: string): string => {
    const a = st.defines.get(name);
    if (!a) {
      if (fallback !== undefined) return fallback;
      throw new WpConfigError(`${file}: ${name} is not defined`);
    }
    if (!a.literal || typeof a.value !== 'string') {
      // the expression may hold the password: never quote it for DB_PASSWORD
      const what = name === 'DB_PASSWORD' ? 'an expression' : `'${a.expr.slice(0, 60)}'`;
      throw new WpConfigError(`${file}:${a.line}: ${name} is ${what}, not a literal string (write the value in the file)`);
    }
    return a.value;
  };
  const flag = (name: string): boolean => {
    const a = st.defines.get(name);
    return !!a && (a.literal ? !!a.value && a.value !== '0' && a.value !== 'false' : true);
  };
  const optional = (name: string): string | undefined => (st.defines.has(name) ? str(name) : undefined);
  const d = opts.debianDefaults;
  const prefix = st.vars.get('table_prefix');
  let tablePrefix: string;
  if (!prefix) {
    if (!d) throw new WpConfigError(`${file}: $table_prefix is not set`);
    tablePrefix = DEBIAN_DEFAULTS.table_prefix;
  } else if (!prefix.literal || typeof prefix.value !== 'string') {
    throw new WpConfigError(`${file}:${prefix.line}: $table_prefix is '${prefix.expr.slice(0, 60)}', not a literal string`);
  } else tablePrefix = prefix.value;
  if (!/^[A-Za-z0-9_]+$/.test(tablePrefix))
    throw new WpConfigError(`${file}: $table_prefix '${tablePrefix}' has characters WordPress refuses`);
  const dbHostRaw = str('DB_HOST', d ? DEBIAN_DEFAULTS.DB_HOST : undefined);
  let dbHost: DbHost;
  try {
    dbHost = parseDbHost(dbHostRaw);
  } catch (e) {
    throw new WpConfigError(`${file}: ${(e as Error).message}`);
  }
  return {
    dbName: str('DB_NAME', d ? DEBIAN_DEFAULTS.DB_NAME : undefined),
    dbUser: str('DB_USER', d ? DEBIAN_DEFAULTS.DB_USER : undefined),
    dbPassword: str('DB_PASSWORD'),
    dbHost,
    dbCharset: optional('DB_CHARSET') || 'utf8mb4',
    tablePrefix,
    // WP_ALLOW_MULTISITE only shows the network setup screen (Debian sets it by default); MULTISITE makes one
    multisite: flag('MULTISITE'),
    contentDir: optional('WP_CONTENT_DIR'),
    home: optional('WP_HOME'),
    siteurl: optional('WP_SITEURL'),
  };
}

/** `$wp_version` of wp-includes/version.php */
export function parseWpVersion(src: string, file: string): string {
  const a = statements(src).vars.get('wp_version');
  if (!a?.literal || typeof a.value !== 'string' || !/^\d+\.\d+(?:\.\d+)?/.test(a.value)) {
    throw new WpConfigError(`${file}: no $wp_version = '<version>'; in it`);
  }
  return a.value;
}

/** compare two WordPress versions ("6.1.9", "6.4", "6.5-RC1"): negative when a < b */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => (/^[\d.]+/.exec(v)?.[0] ?? '0').split('.').map(Number);
  const x = parts(a);
  const y = parts(b);
  for (let k = 0; k < Math.max(x.length, y.length); k++) {
    const d = (x[k] ?? 0) - (y[k] ?? 0);
    if (d) return d;
  }
  return 0;
}
