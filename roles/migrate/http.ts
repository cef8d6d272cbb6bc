// verify over HTTP: the home page and N sampled posts fetched from the old site (on its own host, by its name
// resolved to 127.0.0.1) and from the new one (through the farm's request path: the site's nginx, as the edge
// sends it, with X-Forwarded-Proto https), compared after normalising URLs; and the admin login with the
// existing password on both (a 302 that sets WordPress's logged-in cookie). The requests are plain curl in one
// shell per side; bodies travel base64-encoded; the password only on curl's stdin, never in a command line.
import { quote, sections } from '../../lib/shell.ts';

export interface HttpReq {
  /** path and query on the site, e.g. "/" or "/?p=12" */
  path: string;
  /** POST this form (application/x-www-form-urlencoded); a value "@stdin" is read from the script's stdin */
  form?: Record<string, string>;
  cookie?: string;
}

export interface HttpRes {
  status: number;
  location: string;
  setCookies: string[];
  body: string;
}

/** How one side is fetched: its base URL (http://old.example) and the curl options that route it there. */
export interface HttpSide {
  base: string;
  /** run the script (sh) where the site is reached; stdin for a form's "@stdin" value */
  run: (script: string, stdin?: string) => Promise<string>;
  /** curl arguments that reach the site (e.g. --resolve, or a URL prefix replaced by connectTo) */
  curlArgs: string[];
  /** the URL curl is given instead of the base (e.g. http://127.0.0.1:8080 with a Host header in curlArgs) */
  connectTo?: string;
}

/** one shell script that fetches every request: @@sN status, @@hN headers, @@bN base64 body */
export function curlScript(side: HttpSide, reqs: readonly HttpReq[]): string {
  const lines = ['t=$(mktemp -d) || exit 1', 'trap \'rm -rf "$t"\' EXIT'];
  for (const [i, r] of reqs.entries()) {
    const url = `${(side.connectTo ?? side.base).replace(/\/+$/, '')}${r.path}`;
    const form = Object.entries(r.form ?? {}).map(([k, v]) => `--data-urlencode ${quote(v === '@stdin' ? `${k}@-` : `${k}=${v}`)}`);
    const cookie = r.cookie ? `-b ${quote(r.cookie)}` : '';
    lines.push(
      `c=$(curl -s -k --max-time 30 -o "$t/b" -D "$t/h" -w '%{http_code}' ${side.curlArgs.map(quote).join(' ')} ${cookie} ` +
        `${form.join(' ')} ${quote(url)} ${form.length ? '' : '</dev/null'}) || c=000`,
      `echo @@s${i}; echo "$c"; echo @@h${i}; tr -d '\\r' < "$t/h" 2>/dev/null; echo @@b${i}; base64 -w0 < "$t/b" 2>/dev/null; echo`,
      'rm -f "$t/b" "$t/h"',
    );
  }
  return lines.join('\n');
}

export function parseCurl(out: string, n: number): HttpRes[] {
  const s = sections(out);
  const res: HttpRes[] = [];
  for (let i = 0; i < n; i++) {
    const headers = (s.get(`h${i}`) ?? '').split('\n');
    const header = (name: string) =>
      headers.filter((h) => h.toLowerCase().startsWith(`${name}:`)).map((h) => h.slice(name.length + 1).trim());
    res.push({
      status: Number((s.get(`s${i}`) ?? '').trim()) || 0,
      location: header('location').pop() ?? '',
      setCookies: header('set-cookie'),
      body: Buffer.from((s.get(`b${i}`) ?? '').trim(), 'base64').toString('utf8'),
    });
  }
  return res;
}

export async function fetchAll(side: HttpSide, reqs: readonly HttpReq[], stdin?: string): Promise<HttpRes[]> {
  return parseCurl(await side.run(curlScript(side, reqs), stdin), reqs.length);
}

/** every spelling of a site's base URL in a page (http/https, JSON-escaped slashes, URL-encoded), longest first */
function baseVariants(base: string): string[] {
  const host = base.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  const out = new Set<string>();
  for (const scheme of ['https', 'http']) {
    const u = `${scheme}://${host}`;
    out.add(u);
    out.add(u.replace(/\//g, '\\/'));
    out.add(encodeURIComponent(u));
  }
  out.add(`//${host}`);
  return [...out].sort((a, b) => b.length - a.length);
}

/**
 * What a visitor sees of a page, URLs normalised: the title, the body's text, and the href/src of its links and
 * images (the site's base replaced by @SITE@), scripts, styles, comments and other attributes left out (asset
 * versions, nonces and generated class names differ between two servers of the same content).
 */
export function normalisePage(html: string, bases: readonly string[]): string {
  let h = html;
  for (const b of bases) for (const v of baseVariants(b)) h = h.split(v).join('@SITE@');
  // WordPress picks the avatar host by the page's scheme (get_avatar_url: https://secure.gravatar.com when is_ssl(),
  // else http://{0,1,2}.gravatar.com): a site moved from http to https changes it, not its content
  h = h.replace(/https?:\/\/(?:secure|[0-2])\.gravatar\.com\//g, '@GRAVATAR@/');
  const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(h)?.[1]?.trim() ?? '';
  let body = /<body[^>]*>([\s\S]*)<\/body>/i.exec(h)?.[1] ?? h;
  body = body.replace(/<!--[\s\S]*?-->/g, ' ').replace(/<(script|style|noscript|template)\b[\s\S]*?<\/\1>/gi, ' ');
  const refs = [...body.matchAll(/<(?:a|img)\b[^>]*?\s(?:href|src)=(["'])(.*?)\1/gi)].map((m) => m[2]);
  const text = body
    .replace(/<[^>]+>/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  return `title: ${title}\ntext: ${text}\nlinks: ${refs.join(' ')}`;
}

/** "" when equal, else where they first differ (a few words around it) */
export function firstDifference(a: string, b: string): string {
  if (a === b) return '';
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  const at = (s: string) => JSON.stringify(s.slice(Math.max(0, i - 40), i + 60));
  return `differ at character ${i}: old ${at(a)}, new ${at(b)}`;
}

export interface HttpCheckOptions {
  oldSide: HttpSide;
  newSide: HttpSide;
  /** paths to compare besides "/" (sampled posts: "/?p=ID") */
  paths: readonly string[];
  login?: { user: string; password: string };
}

export interface HttpCheckResult {
  pages: { path: string; status: number; bytes: number; same: boolean }[];
  login: 'ok' | 'skipped (no login given)' | 'failed';
  problems: string[];
}

/** the path of a redirect that stays on the site, or undefined */
function sameSitePath(location: string, base: string): string | undefined {
  for (const v of baseVariants(base).filter((x) => /^https?:\/\//.test(x))) {
    if (location.startsWith(`${v}/`) || location === v) return location.slice(v.length) || '/';
  }
  return location.startsWith('/') && !location.startsWith('//') ? location : undefined;
}

/** the pages, one redirect within the site followed (/?p=ID → its permalink) */
async function pages(side: HttpSide, paths: readonly string[]): Promise<{ path: string; res: HttpRes; via?: string }[]> {
  const first = await fetchAll(
    side,
    paths.map((path) => ({ path })),
  );
  const follow = first.map((r) => (r.status >= 300 && r.status < 400 ? sameSitePath(r.location, side.base) : undefined));
  const again = follow.filter((p): p is string => !!p);
  const second = again.length
    ? await fetchAll(
        side,
        again.map((path) => ({ path })),
      )
    : [];
  let j = 0;
  return first.map((res, i) => (follow[i] ? { path: paths[i]!, res: second[j++]!, via: follow[i] } : { path: paths[i]!, res }));
}

/** a POST to wp-login.php: WordPress answers 302 and sets wordpress_logged_in_* when the password is right */
async function loginWorks(side: HttpSide, user: string, password: string): Promise<boolean> {
  const [r] = await fetchAll(
    side,
    [
      {
        path: '/wp-login.php',
        cookie: 'wordpress_test_cookie=WP%20Cookie%20check',
        form: { log: user, pwd: '@stdin', 'wp-submit': 'Log In', testcookie: '1', redirect_to: `${side.base}/wp-admin/` },
      },
    ],
    password,
  );
  return !!r && r.status === 302 && r.setCookies.some((c) => c.startsWith('wordpress_logged_in_'));
}

export async function checkHttp(o: HttpCheckOptions): Promise<HttpCheckResult> {
  const bases = [o.oldSide.base, o.newSide.base];
  const paths = ['/', ...o.paths];
  const [a, b] = await Promise.all([pages(o.oldSide, paths), pages(o.newSide, paths)]);
  const problems: string[] = [];
  const out: HttpCheckResult['pages'] = [];
  for (const [i, p] of paths.entries()) {
    const x = a[i]!;
    const y = b[i]!;
    let same = true;
    if (x.res.status !== y.res.status) {
      problems.push(`GET ${p}${y.via ? ` (→ ${y.via})` : ''}: ${x.res.status} on the old site, ${y.res.status} on the new`);
      same = false;
    } else if (x.res.status !== 200) {
      problems.push(`GET ${p}: ${x.res.status} on both sites`);
      same = false;
    } else {
      const d = firstDifference(normalisePage(x.res.body, bases), normalisePage(y.res.body, bases));
      if (d) problems.push(`GET ${p}: the pages ${d}`);
      same = !d;
    }
    out.push({ path: y.via ?? p, status: y.res.status, bytes: Buffer.byteLength(y.res.body), same });
  }
  let login: HttpCheckResult['login'] = 'skipped (no login given)';
  if (o.login) {
    const [oldOk, newOk] = await Promise.all([
      loginWorks(o.oldSide, o.login.user, o.login.password),
      loginWorks(o.newSide, o.login.user, o.login.password),
    ]);
    login = newOk ? 'ok' : 'failed';
    if (!newOk) problems.push(`admin login of ${o.login.user} with its existing password fails on the new site`);
    if (!oldOk) problems.push(`the login given (${o.login.user}) does not work on the old site either: check it`);
  }
  return { pages: out, login, problems };
}
