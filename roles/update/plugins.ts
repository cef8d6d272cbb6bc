// The plugin store and the package switch on a site's Gluster directory: pure functions and command builders.
// Plugins and themes are the same thing to wpfarm (a "kind" each, one code path): a versioned zip in the store,
// extracted on the site beside the previous versions, switched in with one rename.
//
// The store (on the controller, managed by wpfarm; no internet here), the layout wordpress.org uses for its
// downloads: plugins STORE/<slug>/<slug>-<version>.zip, themes STORE/themes/<slug>/<slug>-<version>.zip. A zip
// holds one top directory, the slug.
//
// On the site (SITE = <gluster mount>/<id>; KIND = plugins or themes, bind-mounted into the containers at
// wp-content/KIND):
//   SITE/KIND/.wpfarm-versions/<slug>/<version>/   one extracted version each (hidden: WordPress skips it)
//   SITE/KIND/.wpfarm-versions/<slug>/previous     the version the last switch replaced
//   SITE/KIND/<slug> -> .wpfarm-versions/<slug>/<version>   a relative symlink
// An install extracts into a new directory and renames it into place, then switches the symlink with one
// rename(2) (ln -s to a temporary name, mv -T over the link): a request sees the old or the new package, never a
// half-copied one. The previous version stays for rollback (and the two before it; older ones are pruned).
// A directory that wpfarm did not install (a real directory) is moved under .wpfarm-versions as
// "unmanaged-<time>" and becomes the previous version.
import path from 'node:path';
import { InputError } from '../../lib/errors.ts';
import { sh } from '../../lib/shell.ts';
import { WP_SLUG_RE } from '../wp-site/site.ts';
import { compareVersions } from './versions.ts';

export const SLUG_RE = WP_SLUG_RE;
export const VERSION_RE = /^[0-9A-Za-z][0-9A-Za-z._+-]{0,31}$/;
export const VERSIONS_DIR = '.wpfarm-versions';
/** switchPluginScript's version meaning "the one `previous` names" */
export const PREVIOUS = '@previous';
/** versions kept per package besides the current one (the previous included) */
export const KEEP_VERSIONS = 3;

/** The kinds of package: the wp-content directory each goes to (and the key of a set, of the state file). */
export const KINDS = ['plugins', 'themes'] as const;
export type Kind = (typeof KINDS)[number];
/** "plugin", "theme": change lines, messages, the flag (--plugin, --theme) */
export const kindName = (k: Kind): string => k.slice(0, -1);
/** per kind, slug → T */
export type PerKind<T> = Record<Kind, Record<string, T>>;
/** An update's package set: per kind, slug → version. */
export type PackageSet = PerKind<string>;
export const emptySet = <T = string>(): PerKind<T> => ({ plugins: {}, themes: {} });
/** The (kind, slug, value) entries of a set, plugins first. */
export function entriesOf<T>(set: PerKind<T>): [Kind, string, T][] {
  return KINDS.flatMap((k) => Object.entries(set[k]).map(([slug, v]): [Kind, string, T] => [k, slug, v]));
}
export const setSize = (set: PerKind<unknown>): number => KINDS.reduce((n, k) => n + Object.keys(set[k]).length, 0);

export interface PluginRef {
  slug: string;
  version: string;
}

/** "akismet@5.3.1" → { slug, version } (bad input names the flag). */
export function parsePluginSpec(text: string, flag = '--plugin'): PluginRef {
  const m = /^([^@\s]+)@([^@\s]+)$/.exec(text.trim());
  if (!m) throw new InputError(`${flag} ${JSON.stringify(text)}: expected SLUG@VERSION (e.g. akismet@5.3.1)`);
  const [, slug, version] = m as unknown as [string, string, string];
  if (!SLUG_RE.test(slug)) throw new InputError(`${flag} ${JSON.stringify(text)}: the slug may hold a-z, 0-9, '-' and '_'`);
  if (!VERSION_RE.test(version))
    throw new InputError(`${flag} ${JSON.stringify(text)}: the version may hold 0-9, A-Z, a-z, '.', '_', '+', '-'`);
  return { slug, version };
}

/** The packages of one kind of an update, slug → version; a slug given twice is bad input. */
export function pluginSet(specs: readonly string[], flag = '--plugin'): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of specs) {
    const p = parsePluginSpec(t, flag);
    if (out[p.slug] && out[p.slug] !== p.version) throw new InputError(`${flag}: ${p.slug} is given twice (${out[p.slug]}, ${p.version})`);
    out[p.slug] = p.version;
  }
  return out;
}

/** The package set of --plugin and --theme specs. */
export function packageSet(specs: Partial<Record<Kind, readonly string[]>>): PackageSet {
  const set = emptySet();
  for (const k of KINDS) set[k] = pluginSet(specs[k] ?? [], `--${kindName(k)}`);
  return set;
}

/** The store's directory of a kind: plugins at the top (wordpress.org's layout), themes under themes/. */
const storeDir = (store: string, kind: Kind) => (kind === 'plugins' ? store : path.join(store, 'themes'));

export function storeZip(store: string, p: PluginRef, kind: Kind = 'plugins'): string {
  return path.join(storeDir(store, kind), p.slug, `${p.slug}-${p.version}.zip`);
}

export { compareVersions };

/** The store's packages of a kind from its file list (paths relative to the store): slug → versions, oldest first. */
export function storeIndex(files: readonly string[], kind: Kind = 'plugins'): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const prefix = kind === 'plugins' ? '' : 'themes/';
  for (const f of files) {
    const rel = f.replace(/\\/g, '/');
    const m = rel.startsWith(prefix) ? /^([^/]+)\/([^/]+)\.zip$/.exec(rel.slice(prefix.length)) : null;
    if (!m) continue;
    const [, slug, base] = m as unknown as [string, string, string];
    if (!SLUG_RE.test(slug) || !base.startsWith(`${slug}-`)) continue;
    const version = base.slice(slug.length + 1);
    if (!VERSION_RE.test(version)) continue;
    out.set(slug, [...(out.get(slug) ?? []), version].sort(compareVersions));
  }
  return out;
}

/** Every package of the set must be in the store: the missing ones, as one bad-input message. */
export function checkInStore(set: PackageSet, files: readonly string[], store: string): void {
  const missing = KINDS.flatMap((k) => {
    const index = storeIndex(files, k);
    return Object.entries(set[k])
      .filter(([slug, v]) => !index.get(slug)?.includes(v))
      .map(([slug, v]) => {
        const have = index.get(slug);
        return (
          `${kindName(k)} ${slug}@${v} (${storeZip(store, { slug, version: v }, k)}` +
          `${have?.length ? `; the store has ${have.join(', ')}` : ''})`
        );
      });
  });
  if (missing.length) throw new InputError(`not in the plugin store: ${missing.join('; ')}`);
}

/** The entries of a zip (`unzip -Z1` output) must all be under one directory named as the slug. */
export function checkZipEntries(entries: readonly string[], p: PluginRef, file: string, kind: Kind = 'plugins'): void {
  const files = entries.map((e) => e.trim()).filter(Boolean);
  if (!files.length) throw new InputError(`${file}: the zip is empty`);
  const bad = files.find((e) => !e.startsWith(`${p.slug}/`) || e.split('/').includes('..') || e.startsWith('/'));
  if (bad)
    throw new InputError(`${file}: ${JSON.stringify(bad)} is not under ${p.slug}/ (a ${kindName(kind)} zip holds one directory, its slug)`);
}

// ---------------------------------------------------------------------------------------------------
// the site side: probe, install + switch, rollback

/** What a site has for each package of the set: current version (null: absent; "unmanaged": a real dir) and previous. */
export interface SitePlugin {
  current: string | null;
  previous: string | null;
  /** versions present under .wpfarm-versions */
  versions: string[];
}

function checkSiteDir(dir: string): void {
  if (!/^\/[A-Za-z0-9_./-]+$/.test(dir)) throw new Error(`bad site directory ${dir}`);
}

/** One round trip on the files host: for each site directory, kind and slug: the link, the previous file and the versions. */
export function pluginProbeScript(siteDirs: Record<string, string>, slugs: PerKind<unknown>): string {
  const lines = ['('];
  for (const [id, dir] of Object.entries(siteDirs)) {
    for (const [kind, slug] of entriesOf(slugs)) {
      if (!SLUG_RE.test(slug)) throw new Error(`bad ${kindName(kind)} slug ${slug}`);
      const p = `${dir}/${kind}`;
      lines.push(
        sh`l=${`${p}/${slug}`}; v=${`${p}/${VERSIONS_DIR}/${slug}`}; ` +
          sh`if [ -L "$l" ]; then c=$(basename "$(readlink "$l")"); elif [ -d "$l" ]; then c=unmanaged; else c=-; fi; ` +
          sh`pv=$(cat "$v/previous" 2>/dev/null || echo -); ` +
          sh`vs=$(cd "$v" 2>/dev/null && ls -1 | grep -v -x previous | grep -v -F .new. | tr '\n' ' '); ` +
          sh`echo ${id} ${kind} ${slug} "$c" "$pv" $vs`,
      );
    }
  }
  lines.push(') 2>/dev/null; true');
  return lines.join('\n');
}

/** site id → kind → slug → what it has. */
export function parsePluginProbe(out: string): Map<string, PerKind<SitePlugin>> {
  const res = new Map<string, PerKind<SitePlugin>>();
  for (const line of out.split('\n')) {
    const [id, kind, slug, cur, prev, ...versions] = line.trim().split(/\s+/);
    if (!id || !slug || cur === undefined || prev === undefined || !(KINDS as readonly string[]).includes(kind ?? '')) continue;
    const site = res.get(id) ?? emptySet<SitePlugin>();
    site[kind as Kind][slug] = {
      current: cur === '-' ? null : cur,
      previous: prev === '-' ? null : prev,
      versions: versions.sort(compareVersions),
    };
    res.set(id, site);
  }
  return res;
}

/** The lines "plugin slug: A -> B" (or "theme slug: ...") for the packages of the set a site does not run yet. */
export function pluginChanges(have: PerKind<SitePlugin> | undefined, want: PackageSet): string[] {
  return entriesOf(want)
    .filter(([k, slug, v]) => have?.[k][slug]?.current !== v)
    .map(([k, slug, v]) => `${kindName(k)} ${slug}: ${have?.[k][slug]?.current ?? '(none)'} -> ${v}`);
}

/**
 * Switch package `slug` of one site to `version` (one script on the files host). With `tar` true the version's
 * files come on stdin as a tar of the zip's content (the slug directory), extracted to <version>.new.<pid> and
 * renamed to <version> (an existing <version> is kept: same version, same files). The symlink switch is one rename;
 * the version it replaces is written to `previous` (an unmanaged directory is moved aside first). Versions beyond
 * the current one and KEEP_VERSIONS others are pruned, oldest first, never the current or the previous.
 * Prints "switched FROM" or "unchanged".
 */
export function switchPluginScript(a: { siteDir: string; kind?: Kind; slug: string; version: string; tar: boolean }): string {
  const kind = a.kind ?? 'plugins';
  const prev = a.version === PREVIOUS && !a.tar;
  if (!SLUG_RE.test(a.slug) || !(prev || VERSION_RE.test(a.version))) throw new Error(`bad ${kindName(kind)} ${a.slug}@${a.version}`);
  checkSiteDir(a.siteDir);
  const dir = `${a.siteDir}/${kind}`;
  const vdir = `${dir}/${VERSIONS_DIR}/${a.slug}`;
  return [
    'set -eu',
    sh`p=${dir}; v=${vdir}; l=${`${dir}/${a.slug}`}`,
    prev
      ? 'want=$(cat "$v/previous" 2>/dev/null) || { echo "no previous version of $(basename "$l")" >&2; exit 3; }'
      : sh`want=${a.version}`,
    sh`[ -d "$p" ] || { echo "no ${kind} directory $p" >&2; exit 3; }`,
    'owner=$(stat -c %u:%g "$p")',
    'mkdir -p "$v"',
    ...(a.tar
      ? [
          'if [ ! -d "$v/$want" ]; then',
          '  t="$v/$want.new.$$"; rm -rf "$t"; mkdir "$t"',
          // the tar holds <slug>/...: strip it so that the version directory is the package directory
          '  tar -x -f - -C "$t" --strip-components=1 --no-same-owner',
          '  chown -R "$owner" "$t"; chmod -R u+rwX,go+rX,go-w "$t"',
          '  mv -T "$t" "$v/$want"',
          'else cat >/dev/null; fi',
        ]
      : ['[ -d "$v/$want" ] || { echo "version $want of $(basename "$l") is not on the site (no $v/$want)" >&2; exit 3; }']),
    'if [ -L "$l" ]; then cur=$(basename "$(readlink "$l")"); elif [ -d "$l" ]; then',
    '  cur="unmanaged-$(date +%Y%m%d%H%M%S)"; mv -T "$l" "$v/$cur"',
    'else cur=-; fi',
    'if [ "$cur" = "$want" ]; then echo unchanged; exit 0; fi',
    sh`ln -s ${`${VERSIONS_DIR}/${a.slug}/`}"$want" "$l.wpfarm-new.$$"`,
    'chown -h "$owner" "$l.wpfarm-new.$$"',
    'mv -T "$l.wpfarm-new.$$" "$l"',
    'if [ "$cur" != - ]; then echo "$cur" > "$v/previous.new.$$"; mv -f "$v/previous.new.$$" "$v/previous"; fi',
    // prune: keep the current, the previous and the KEEP_VERSIONS - 1 newest others
    `keep=${KEEP_VERSIONS - 1}`,
    'prev=$(cat "$v/previous" 2>/dev/null || true)',
    'for d in $(cd "$v" && ls -1t | grep -v -x previous | grep -v -F .new.); do',
    '  [ "$d" = "$want" ] || [ "$d" = "$prev" ] && continue',
    '  if [ "$keep" -gt 0 ]; then keep=$((keep-1)); else rm -rf -- "$v/$d"; fi',
    'done',
    'echo "switched $cur"',
  ].join('\n');
}

/** Take package `slug` off a site (the rollback of one the update added): the link goes, its version stays as `previous`. */
export function removePluginScript(a: { siteDir: string; kind?: Kind; slug: string }): string {
  const kind = a.kind ?? 'plugins';
  if (!SLUG_RE.test(a.slug)) throw new Error(`bad ${kindName(kind)} slug ${a.slug}`);
  checkSiteDir(a.siteDir);
  return [
    'set -eu',
    sh`v=${`${a.siteDir}/${kind}/${VERSIONS_DIR}/${a.slug}`}; l=${`${a.siteDir}/${kind}/${a.slug}`}`,
    '[ -L "$l" ] || { echo unchanged; exit 0; }',
    'cur=$(basename "$(readlink "$l")"); rm -f -- "$l"',
    'echo "$cur" > "$v/previous.new.$$"; mv -f "$v/previous.new.$$" "$v/previous"',
    'echo "removed $cur"',
  ].join('\n');
}
