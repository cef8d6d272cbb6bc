// The WordPress exporter service (runs in the wpfarm/wp-exporter image, bundled by esbuild with mysql2): on
// every GET /metrics it gathers each site (HTTP probes through the site's overlay network, one read-only SQL
// connection, the site's directory on the Gluster mount, its redis) and answers with renderMetrics(). Thin on
// purpose: every parser and the text format live in metrics.ts (unit-tested).
//
// Configuration: WPEXPORTER_CONFIG (base64 JSON, ExporterConfig; rendered by stack.ts), the DB password in the
// file it names (a Swarm secret).
import { readFileSync } from 'node:fs';
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import mysql from 'mysql2/promise';
import {
  type Catalog,
  type Component,
  type PageProbe,
  type SiteObservation,
  coreVersionFromHtml,
  cronLag,
  headerField,
  managedVersion,
  pageAnswered,
  parseRedisInfo,
  renderMetrics,
  serializedStrings,
} from './metrics.ts';

export interface ExporterSite {
  id: string;
  domain: string;
  /** host:port of the site's front service in its overlay (varnish or nginx): the home page's probe */
  http: string;
  /** host:port of the site's nginx: wp-login.php's probe, unproxied (nginx lets the farm's own GET of the login
   *  form through the admin allowlist only when no proxy forwarded it; Varnish would add X-Forwarded-For) */
  login: string;
  /** host:port of the site's redis when its object cache is on */
  redis?: string;
  /** database name */
  db: string;
}

export interface ExporterConfig {
  port: number;
  db: { host: string; port: number; user: string; passwordFile: string };
  /** the Gluster sites directory as mounted in the container (one directory per site id) */
  sitesRoot: string;
  catalog: Catalog;
  sites: ExporterSite[];
  /** per-probe timeout (ms) */
  timeoutMs?: number;
}

const errText = (e: unknown): string => ((e as Error).message ?? String(e)).split('\n')[0]!.slice(0, 200);

function probePage(site: ExporterSite, target: string, pathQuery: string, timeoutMs: number): Promise<PageProbe & { body: string }> {
  const [host, port] = target.split(':') as [string, string];
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const done = (status: number, body: string) => resolve({ status, body, seconds: Number(process.hrtime.bigint() - t0) / 1e9 });
    const req = http.request(
      {
        host,
        port: Number(port),
        path: pathQuery,
        headers: { Host: site.domain, 'X-Forwarded-Proto': 'https', 'User-Agent': 'wpfarm-wp-exporter' },
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done(res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')));
        res.on('error', () => done(0, ''));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => done(0, ''));
    req.end();
  });
}

function redisInfo(addr: string, timeoutMs: number): Promise<string> {
  const [host, port] = addr.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port: Number(port) });
    let buf = '';
    s.setTimeout(timeoutMs, () => s.destroy(new Error('redis: timeout')));
    s.on('connect', () => s.write('INFO stats\r\n'));
    s.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      const m = /^\$(\d+)\r\n/.exec(buf);
      if (m && Buffer.byteLength(buf) >= m[0].length + Number(m[1])) {
        s.end();
        resolve(buf.slice(m[0].length));
      } else if (buf.startsWith('-')) s.destroy(new Error(`redis: ${buf.trim()}`));
    });
    s.on('error', reject);
  });
}

async function dirSize(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += await dirSize(p);
    else if (e.isFile()) total += (await stat(p)).size;
  }
  return total;
}

/** Plugins of a site directory: managed ones (symlinks into .wpfarm-versions) and hand-installed ones. */
async function plugins(dir: string, active: Set<string>): Promise<Component[]> {
  const out: Component[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    let version: string | undefined;
    if ((await lstat(p)).isSymbolicLink()) version = managedVersion(await readlink(p), e.name);
    if (!version) {
      const st = await stat(p).catch(() => null);
      if (st?.isDirectory()) {
        for (const f of (await readdir(p)).filter((x) => x.endsWith('.php')).sort()) {
          const text = await readFile(path.join(p, f), 'utf8');
          if (headerField(text, 'Plugin Name')) {
            version = headerField(text, 'Version');
            break;
          }
        }
      }
    }
    out.push({ slug: e.name.replace(/\.php$/, ''), version: version ?? 'unknown', active: active.has(e.name.replace(/\.php$/, '')) });
  }
  return out;
}

async function themes(dir: string, activeTheme: string | undefined): Promise<Component[]> {
  const out: Component[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.name.startsWith('.')) continue;
    const css = await readFile(path.join(dir, e.name, 'style.css'), 'utf8').catch(() => null);
    if (css === null) continue;
    out.push({ slug: e.name, version: headerField(css, 'Version') ?? 'unknown', active: e.name === activeTheme });
  }
  return out;
}

/** Gather one site; every part on its own (a failing part is reported, the others still are). */
async function gatherSite(cfg: ExporterConfig, s: ExporterSite, db: mysql.Connection | null, now: number): Promise<SiteObservation> {
  const t = cfg.timeoutMs ?? 8000;
  const o: SiteObservation = { site: s.id, errors: {} };
  const part = async (name: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      o.errors[name] = errText(e);
    }
  };
  // uncached: the query string bypasses the page cache (the time PHP needs to render the page)
  const [home, login] = await Promise.all([probePage(s, s.http, `/?wpfarm-exporter=${now}`, t), probePage(s, s.login, '/wp-login.php', t)]);
  o.home = { seconds: home.seconds, status: home.status };
  o.login = { seconds: login.seconds, status: login.status };
  // a time is the page's only when the page answered (a 403 of the allowlist, a redirect, an error page are not)
  for (const [part, p] of [
    ['home', home],
    ['login', login],
  ] as const)
    if (!pageAnswered(p.status)) o.errors[part] = `status ${p.status}`;
  o.coreVersion = coreVersionFromHtml(login.body) ?? coreVersionFromHtml(home.body);
  if (!o.coreVersion) o.errors.core = 'no version in the pages';

  let options: Record<string, string> = {};
  await part('database', async () => {
    if (!db) throw new Error('no database connection');
    if (!/^wp_[a-z0-9_]+$/.test(s.db)) throw new Error(`bad database name ${s.db}`);
    const [r] = await db.query<mysql.RowDataPacket[]>(
      `SELECT option_name, option_value FROM \`${s.db}\`.wp_options WHERE option_name IN ('cron','active_plugins','stylesheet')`,
    );
    options = Object.fromEntries(r.map((x) => [String(x.option_name), String(x.option_value)]));
    const [sz] = await db.query<mysql.RowDataPacket[]>(
      'SELECT COALESCE(SUM(data_length + index_length), 0) AS b FROM information_schema.TABLES WHERE table_schema = ?',
      [s.db],
    );
    o.dbBytes = Number(sz[0]?.b ?? 0);
  });
  await part('cron', async () => {
    if (options.cron === undefined) throw new Error(o.errors.database ? 'database not read' : 'no cron option');
    o.cronLagSeconds = cronLag(options.cron, now);
  });
  const siteDir = path.join(cfg.sitesRoot, s.id);
  await part('plugins', async () => {
    const active = new Set(serializedStrings(options.active_plugins ?? '').map((p) => p.split('/')[0]!.replace(/\.php$/, '')));
    o.plugins = await plugins(path.join(siteDir, 'plugins'), active);
  });
  await part('themes', async () => {
    o.themes = await themes(path.join(siteDir, 'themes'), options.stylesheet);
  });
  await part('uploads', async () => {
    o.uploadsBytes = await dirSize(path.join(siteDir, 'uploads'));
  });
  if (s.redis) {
    await part('cache', async () => {
      const info = parseRedisInfo(await redisInfo(s.redis!, t));
      if (!info) throw new Error('no keyspace counters in INFO');
      o.cache = info;
    });
  }
  return o;
}

export async function gather(cfg: ExporterConfig): Promise<string> {
  const t0 = Date.now();
  const now = Math.floor(t0 / 1000);
  let db: mysql.Connection | null = null;
  try {
    db = await mysql.createConnection({
      host: cfg.db.host,
      port: cfg.db.port,
      user: cfg.db.user,
      password: readFileSync(cfg.db.passwordFile, 'utf8').trim(),
      connectTimeout: cfg.timeoutMs ?? 8000,
    });
  } catch (e) {
    console.error(`database: ${errText(e)}`);
  }
  try {
    const obs = await Promise.all(cfg.sites.map((s) => gatherSite(cfg, s, db, now)));
    for (const o of obs) for (const [k, v] of Object.entries(o.errors)) console.error(`${o.site} ${k}: ${v}`);
    return renderMetrics(obs, cfg.catalog, now, (Date.now() - t0) / 1000);
  } finally {
    await db?.end().catch(() => db?.destroy());
  }
}

export function readConfig(env: NodeJS.ProcessEnv): ExporterConfig {
  const raw = env.WPEXPORTER_CONFIG;
  if (!raw) throw new Error('WPEXPORTER_CONFIG is not set');
  const cfg = JSON.parse(Buffer.from(raw, 'base64').toString('utf8')) as ExporterConfig;
  if (!Array.isArray(cfg.sites) || !cfg.db?.host || !cfg.sitesRoot)
    throw new Error('WPEXPORTER_CONFIG: sites, db and sitesRoot are required');
  return cfg;
}

export function serve(cfg: ExporterConfig): http.Server {
  let running: Promise<string> | null = null;
  const server = http.createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(req.url === '/' ? 200 : 404, { 'Content-Type': 'text/plain' }).end('wpfarm WordPress exporter: /metrics\n');
      return;
    }
    // concurrent scrapes share one gathering
    running ??= gather(cfg).finally(() => {
      running = null;
    });
    running.then(
      (text) => res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
      (e) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${errText(e)}\n`),
    );
  });
  server.listen(cfg.port, '0.0.0.0');
  return server;
}

// the image's entry point (esbuild bundles this file; WPEXPORTER_MAIN is set there)
if (process.env.WPEXPORTER_MAIN === '1') {
  const cfg = readConfig(process.env);
  serve(cfg);
  console.error(`wp-exporter: ${cfg.sites.length} site(s), listening on :${cfg.port}`);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(0));
}
