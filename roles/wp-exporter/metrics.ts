// The WordPress exporter's metric-producing code: pure parsers of what the service reads (redis INFO, the
// cron option, plugin and theme headers, the HTML of a page, the plugin store's listing) and the renderer of
// the Prometheus text exposition format (version 0.0.4). No I/O here: service.ts gathers, this module speaks.
import { compareVersions } from '../update/versions.ts';

/** One HTTP probe of a page as the exporter saw it. */
export interface PageProbe {
  seconds: number;
  status: number;
}

export interface Component {
  /** plugin slug (directory) or theme directory */
  slug: string;
  version: string;
  active: boolean;
}

/** What the service observed for one site; a part it could not read is absent and named in `errors`. */
export interface SiteObservation {
  site: string;
  home?: PageProbe;
  login?: PageProbe;
  coreVersion?: string;
  plugins?: Component[];
  themes?: Component[];
  dbBytes?: number;
  uploadsBytes?: number;
  cronLagSeconds?: number;
  /** object cache counters (redis INFO stats); absent for a site without object cache */
  cache?: { hits: number; misses: number };
  /** part → short reason, for every part that failed (one wordpress_probe_success series each) */
  errors: Record<string, string>;
}

/** The newest version the farm offers and since when (unix seconds): the image's core, the store's plugins. */
export interface Offer {
  version: string;
  since: number;
}
export interface Catalog {
  core?: Offer;
  plugins: Record<string, Offer>;
}

/** A probed page answered as itself: 200 (the login form, the home page). Anything else is a failed probe. */
export const pageAnswered = (status: number): boolean => status === 200;

export const PARTS = ['home', 'login', 'core', 'plugins', 'themes', 'database', 'uploads', 'cron', 'cache'] as const;
export type Part = (typeof PARTS)[number];

// ---------------------------------------------------------------------------------------------------
// parsers

/** `INFO stats` of redis → keyspace hits and misses (null when the fields are missing). */
export function parseRedisInfo(text: string): { hits: number; misses: number } | null {
  const field = (k: string): number | null => {
    const m = new RegExp(`^${k}:(\\d+)\\s*$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const hits = field('keyspace_hits');
  const misses = field('keyspace_misses');
  return hits === null || misses === null ? null : { hits, misses };
}

/**
 * WordPress' `cron` option (PHP-serialized: timestamp → hook → key → event, plus "version") → the events'
 * timestamps. The top-level keys are the only integers above 10^9 in it (arguments and intervals are small or
 * strings), so they are read without a full unserializer.
 */
export function cronTimestamps(serialized: string): number[] {
  const out: number[] = [];
  for (const m of serialized.matchAll(/i:(\d{10,});a:/g)) out.push(Number(m[1]));
  return out;
}

/** How late WP-Cron is: seconds since the oldest event that should have run (0 when nothing is overdue). */
export function cronLag(serialized: string, now: number): number {
  const ts = cronTimestamps(serialized);
  if (!ts.length) return 0;
  return Math.max(0, now - Math.min(...ts));
}

/** PHP-serialized array of strings (e.g. active_plugins) → its string values. */
export function serializedStrings(serialized: string): string[] {
  const out: string[] = [];
  const re = /s:(\d+):"/g;
  let m: RegExpExecArray | null;
  for (;;) {
    m = re.exec(serialized);
    if (!m) break;
    const len = Number(m[1]);
    const start = m.index + m[0].length;
    // lengths are in bytes: cut by bytes
    const value = Buffer.from(serialized.slice(start), 'utf8').subarray(0, len).toString('utf8');
    out.push(value);
    re.lastIndex = start + value.length + 2;
  }
  return out;
}

/** A plugin's or theme's header field ("Version: 1.2.3" in the main file's first comment, or style.css). */
export function headerField(text: string, field: string): string | undefined {
  const m = new RegExp(`^[ \\t/*#@]*${field}:[ \\t]*(.+)$`, 'mi').exec(text.slice(0, 8192));
  const v = m?.[1]?.replace(/\s*\*\/.*$/, '').trim();
  return v || undefined;
}

/** Core version a page reveals: the generator meta tag, else the `ver=` of core's own stylesheets (wp-login). */
export function coreVersionFromHtml(html: string): string | undefined {
  const gen = /<meta[^>]+name=["']generator["'][^>]+content=["']WordPress ([0-9][0-9A-Za-z.-]*)["']/i.exec(html);
  if (gen) return gen[1];
  const css = /\/wp-admin\/load-styles\.php\?[^"']*?ver=([0-9][0-9A-Za-z.-]*)/.exec(html);
  if (css) return css[1];
  const inc = /\/wp-includes\/[^"']+\?ver=([0-9][0-9A-Za-z.-]*)/.exec(html);
  return inc?.[1];
}

/** Version of a plugin wpfarm installed: plugins/<slug> links to .wpfarm-versions/<slug>/<version>. */
export function managedVersion(linkTarget: string, slug: string): string | undefined {
  const m = /(?:^|\/)\.wpfarm-versions\/([^/]+)\/([^/]+)\/?$/.exec(linkTarget);
  return m && m[1] === slug ? m[2] : undefined;
}

// ---------------------------------------------------------------------------------------------------
// exposition

/** A label value in the text format: backslash, double quote and newline escaped. */
export function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(Number.isInteger(v) ? v : Number(v.toFixed(6)));
}

type Labels = Record<string, string>;
interface Family {
  name: string;
  type: 'gauge' | 'counter';
  help: string;
  samples: Array<[Labels, number]>;
}

const FAMILIES: ReadonlyArray<Omit<Family, 'samples'>> = [
  { name: 'wordpress_probe_success', type: 'gauge', help: 'Whether the exporter could read this part of the site (1) or not (0).' },
  {
    name: 'wordpress_http_response_seconds',
    type: 'gauge',
    help: "Time to the whole response of the page, from inside the farm (the page's time where wordpress_http_status is 200).",
  },
  { name: 'wordpress_http_status', type: 'gauge', help: 'HTTP status of the page (0: no answer).' },
  { name: 'wordpress_core_info', type: 'gauge', help: 'WordPress core version the site runs.' },
  { name: 'wordpress_plugin_info', type: 'gauge', help: 'Installed plugin and its version (active="1" when activated).' },
  { name: 'wordpress_theme_info', type: 'gauge', help: 'Installed theme and its version (active="1" for the active theme).' },
  { name: 'wordpress_updates_available', type: 'gauge', help: 'Number of components with a newer version in the farm (core: the image).' },
  {
    name: 'wordpress_update_pending_seconds',
    type: 'gauge',
    help: 'Seconds since the farm offers a newer version of the component than the site runs.',
  },
  { name: 'wordpress_database_size_bytes', type: 'gauge', help: "Data and index size of the site's database." },
  { name: 'wordpress_uploads_size_bytes', type: 'gauge', help: "Size of the site's uploads directory." },
  { name: 'wordpress_cron_lag_seconds', type: 'gauge', help: 'Seconds since the oldest overdue WP-Cron event should have run.' },
  { name: 'wordpress_object_cache_hits_total', type: 'counter', help: 'Object cache (redis) keyspace hits.' },
  { name: 'wordpress_object_cache_misses_total', type: 'counter', help: 'Object cache (redis) keyspace misses.' },
  { name: 'wordpress_object_cache_hit_ratio', type: 'gauge', help: 'Object cache hits / (hits + misses) since redis started.' },
  { name: 'wordpress_exporter_scrape_duration_seconds', type: 'gauge', help: 'Time the exporter took to gather every site.' },
  { name: 'wordpress_exporter_sites', type: 'gauge', help: 'Sites the exporter is configured for.' },
];

/** The metrics of every site as Prometheus text (deterministic: sites and series sorted). */
export function renderMetrics(sites: readonly SiteObservation[], catalog: Catalog, now: number, scrapeSeconds?: number): string {
  const fam = new Map<string, Family>(FAMILIES.map((f) => [f.name, { ...f, samples: [] }]));
  const add = (name: string, labels: Labels, v: number): void => {
    const f = fam.get(name);
    if (!f) throw new Error(`unknown metric ${name}`);
    f.samples.push([labels, v]);
  };
  for (const s of [...sites].sort((a, b) => (a.site < b.site ? -1 : a.site > b.site ? 1 : 0))) {
    const site = s.site;
    for (const part of PARTS) {
      if (part === 'cache' && !s.cache && !s.errors.cache) continue;
      add('wordpress_probe_success', { site, part }, s.errors[part] ? 0 : 1);
    }
    for (const [page, p] of [
      ['home', s.home],
      ['login', s.login],
    ] as const) {
      if (!p) continue;
      add('wordpress_http_response_seconds', { site, page }, p.seconds);
      add('wordpress_http_status', { site, page }, p.status);
    }
    const pending: Array<[string, string, number]> = [];
    if (s.coreVersion) {
      add('wordpress_core_info', { site, version: s.coreVersion }, 1);
      const offer = catalog.core;
      if (offer && compareVersions(offer.version, s.coreVersion) > 0) pending.push(['core', 'wordpress', offer.since]);
      add('wordpress_updates_available', { site, kind: 'core' }, pending.length);
    }
    if (s.plugins) {
      let n = 0;
      for (const p of [...s.plugins].sort((a, b) => (a.slug < b.slug ? -1 : 1))) {
        add('wordpress_plugin_info', { site, plugin: p.slug, version: p.version, active: p.active ? '1' : '0' }, 1);
        const offer = catalog.plugins[p.slug];
        if (offer && compareVersions(offer.version, p.version) > 0) {
          n++;
          pending.push(['plugin', p.slug, offer.since]);
        }
      }
      add('wordpress_updates_available', { site, kind: 'plugin' }, n);
    }
    for (const t of [...(s.themes ?? [])].sort((a, b) => (a.slug < b.slug ? -1 : 1))) {
      add('wordpress_theme_info', { site, theme: t.slug, version: t.version, active: t.active ? '1' : '0' }, 1);
    }
    for (const [kind, name, since] of pending) {
      add('wordpress_update_pending_seconds', { site, kind, name }, Math.max(0, now - since));
    }
    if (s.dbBytes !== undefined) add('wordpress_database_size_bytes', { site }, s.dbBytes);
    if (s.uploadsBytes !== undefined) add('wordpress_uploads_size_bytes', { site }, s.uploadsBytes);
    if (s.cronLagSeconds !== undefined) add('wordpress_cron_lag_seconds', { site }, s.cronLagSeconds);
    if (s.cache) {
      add('wordpress_object_cache_hits_total', { site }, s.cache.hits);
      add('wordpress_object_cache_misses_total', { site }, s.cache.misses);
      const total = s.cache.hits + s.cache.misses;
      if (total > 0) add('wordpress_object_cache_hit_ratio', { site }, s.cache.hits / total);
    }
  }
  if (scrapeSeconds !== undefined) add('wordpress_exporter_scrape_duration_seconds', {}, scrapeSeconds);
  add('wordpress_exporter_sites', {}, sites.length);

  const lines: string[] = [];
  for (const f of fam.values()) {
    if (!f.samples.length) continue;
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const [labels, v] of f.samples) {
      const l = Object.entries(labels)
        .map(([k, x]) => `${k}="${escapeLabel(x)}"`)
        .join(',');
      lines.push(`${f.name}${l ? `{${l}}` : ''} ${num(v)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
