// Farm-wide updates: the steps that talk to the farm (the pure part is plan.ts and plugins.ts). The playbooks
// (update.ts, rollback.ts) compose them with the wp-site role, wave by wave:
//
//   update plan      images built (or, --check, their tags computed), ONE probe of the managers (every service's
//                    image, the image pins) and ONE of the files host (each site's plugin links): per site, what
//                    changes
//   wp-site          the role itself, for the wave's sites (wp_sites_only, wp_site_unpin): Swarm rolls each
//                    service with the stack's update_config (parallelism 1, delay, failure_action rollback,
//                    monitor, health checks); the role waits until the stacks converge
//   wave verify      ONE `docker service inspect` of the wave's services: a site whose service was rolled back
//                    (or runs another image) failed
//   after the wave   per good site: the database upgrade (once, when the core image changed), the plugins and
//                    themes (new dir + rename, previous kept), the activation the record asks for (through
//                    WordPress: files/wp-activation.php in a php-fpm task) and a request through the site's nginx;
//                    a site failing here gets its previous activation and packages back. A failed site is pinned
//                    to its previous images.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { $ } from 'zx';
import { InputError } from '../../lib/errors.ts';
import { task } from '../../lib/ops/base.ts';
import { sh } from '../../lib/shell.ts';
import type { Run } from '../../lib/play.ts';
import type { Role, StepContext } from '../../lib/types.ts';
import { TEXTFILE_DIR, textfileWriteCmd } from '../monitoring/textfile.ts';
import { siteImages, writePin, execInService, wpSiteSettings, PIN_STORE, type ImageRefs, type SitePin } from '../wp-site/reconcile.ts';
import { stackName } from '../wp-site/stack.ts';
import type { SiteRecord } from '../wp-site/site.ts';
import { UPDATE_METRICS_FILE, updateMetrics, type UpdateProgress } from './metrics.ts';
import { coreChanged, imageChanges, INSPECT_FORMAT, stackImages, verdict, type ServiceImages } from './plan.ts';
import {
  checkZipEntries,
  emptySet,
  entriesOf,
  kindName,
  KINDS,
  parsePluginProbe,
  pluginChanges,
  pluginProbeScript,
  PREVIOUS,
  removePluginScript,
  setSize,
  storeZip,
  switchPluginScript,
  type Kind,
  type PackageSet,
  type PerKind,
  type PluginRef,
  type SitePlugin,
} from './plugins.ts';

/** One site as the plan found it. */
export interface SitePlan {
  site: SiteRecord;
  stack: string;
  /** image per service now (empty: the stack is not deployed) */
  from: ServiceImages;
  /** image per service after the update */
  to: ServiceImages;
  /** the site's plugins and themes of the set, now */
  packages: PerKind<SitePlugin>;
  /** the record's activation (active_plugins, theme): what it wants, what the site had, what changes */
  activation?: { want: Activation; before?: Activation; changes: string[] };
  pinned?: SitePin;
  /** "php-fpm: A -> B", "plugin x: 1 -> 2": empty when the site runs the target already */
  changes: string[];
}

export interface UpdatePlan {
  manager: string;
  filesHost: string;
  glusterMount: string;
  images: ImageRefs;
  sites: SitePlan[];
}

/** The image per service a site's stack renders with the farm's images. */
export function targetImages(site: SiteRecord, images: ImageRefs): ServiceImages {
  return {
    nginx: images.nginx,
    'php-fpm': images.wordpressFpm,
    redis: images.redis,
    ...(site.cache.varnish ? { varnish: images.varnish } : {}),
  };
}

/** A role of one runOnce step on the managers (the playbooks' own steps). */
export function onceRole(name: string, title: string, run: (ctx: StepContext) => Promise<{ changes?: string[]; skipped?: string }>): Role {
  return {
    name,
    hosts: 'managers',
    steps: () => [
      task(
        title,
        async (ctx) => {
          const r = await run(ctx);
          if (r.skipped) return { skipped: r.skipped };
          return { changed: (r.changes ?? []).length > 0, changes: r.changes ?? [] };
        },
        { runOnce: true },
      ),
    ],
  };
}

/** Probe the first manager that answers: every service's image and the image pins. */
export async function probeImages(
  ctx: StepContext,
): Promise<{ m: StepContext; images: Map<string, ServiceImages>; pins: Map<string, SitePin> }> {
  let first: unknown;
  for (const h of ctx.hosts('managers')) {
    const m = h.name === ctx.host.name ? ctx : ctx.hostContext(h.name);
    try {
      const out = (
        await m.exec(
          [
            "docker service ls --format '{{json .}}'",
            'echo %%pins',
            sh`for f in ${PIN_STORE}/*.json; do [ -f "$f" ] && { printf '%s ' "$(basename "$f" .json)"; tr -d '\n' < "$f"; echo; }; done 2>/dev/null; true`,
          ].join('\n'),
          { timeoutMs: 60_000 },
        )
      ).stdout;
      const [ls = '', pinText = ''] = out.split('\n%%pins\n');
      const pins = new Map<string, SitePin>();
      for (const line of pinText.split('\n')) {
        const sp = line.indexOf(' ');
        if (sp > 0) pins.set(line.slice(0, sp), JSON.parse(line.slice(sp + 1)) as SitePin);
      }
      return { m, images: stackImages(ls), pins };
    } catch (e) {
      first ??= e;
      ctx.log(`${h.name} does not answer (${(e as Error).message.split('\n')[0]}); trying the next manager`);
    }
  }
  throw first ?? new Error('update: the inventory has no managers');
}

/** The plan: images (built unless check), current images, pins, packages and activation of every selected site. */
export async function planUpdate(ctx: StepContext, sites: SiteRecord[], set: PackageSet): Promise<UpdatePlan> {
  const s = wpSiteSettings(ctx);
  const images = await siteImages(s, ctx.check, (line) => ctx.log(line));
  if (ctx.check && images.changes.length) for (const c of images.changes) ctx.log(c);
  const probe = await probeImages(ctx);
  const siteDirs = Object.fromEntries(sites.map((x) => [x.id, `${s.glusterMount}/${x.id}`]));
  const pkgState = setSize(set)
    ? parsePluginProbe((await ctx.hostContext(s.filesHost).exec(pluginProbeScript(siteDirs, set), { timeoutMs: 60_000 })).stdout)
    : new Map<string, PerKind<SitePlugin>>();
  const installing = { plugins: Object.keys(set.plugins), themes: Object.keys(set.themes) };
  const plans = sites.map((site): SitePlan => {
    const stack = stackName(site.id);
    const from = probe.images.get(stack) ?? {};
    const to = targetImages(site, images);
    const have = pkgState.get(site.id) ?? emptySet<SitePlugin>();
    const changes = [...imageChanges(from, to), ...pluginChanges(have, set)];
    return { site, stack, from, to, packages: have, pinned: probe.pins.get(site.id), changes };
  });
  // the activation the records ask for, as WordPress would do it now (check mode of the script): in parallel
  await Promise.all(
    plans.map(async (x) => {
      const want = activationOf(x.site);
      if (!want) return;
      if (!Object.keys(x.from).length) {
        // not deployed yet: everything the record asks for is to be done
        const changes = [...(want.plugins ?? []).map((p) => `activate plugin ${p}`), ...(want.theme ? [`theme: -> ${want.theme}`] : [])];
        x.activation = { want, changes };
      } else {
        try {
          const r = await siteActivation(probe.m, x, want, { check: true, installing });
          x.activation = { want, before: r.before, changes: r.changes };
        } catch (e) {
          x.activation = { want, changes: [`activation: ${(e as Error).message.split('\n')[0]} (the update fails for this site)`] };
        }
      }
      x.changes.push(...x.activation.changes);
    }),
  );
  return { manager: probe.m.host.name, filesHost: s.filesHost, glusterMount: s.glusterMount, images, sites: plans };
}

// ---------------------------------------------------------------------------------------------------
// activation through WordPress (files/wp-activation.php)

/** What a site record says is active: plugins (exactly these; absent: not managed) and the theme (absent: not managed). */
export interface Activation {
  plugins?: string[];
  theme?: string;
}

/** The record's activation; undefined when it manages neither plugins nor the theme. */
export function activationOf(site: Pick<SiteRecord, 'active_plugins' | 'theme'>): Activation | undefined {
  if (!site.active_plugins && !site.theme) return undefined;
  return {
    ...(site.active_plugins ? { plugins: [...site.active_plugins].sort() } : {}),
    ...(site.theme ? { theme: site.theme } : {}),
  };
}

const ACTIVATION_PHP = new URL('./files/wp-activation.php', import.meta.url);

/**
 * Set (or, check, predict) a site's active plugins and theme through WordPress, in one of its php-fpm tasks.
 * Returns what was active before (of what `want` manages) and the changes ("activate plugin x", "theme: a -> b").
 */
export async function siteActivation(
  m: StepContext,
  x: Pick<SitePlan, 'stack'>,
  want: Activation,
  o: { check: boolean; installing?: Record<Kind, string[]> },
): Promise<{ before: Activation; changes: string[] }> {
  const arg = JSON.stringify({ plugins: want.plugins ?? null, theme: want.theme ?? null, check: o.check, installing: o.installing ?? {} });
  const res = await execInService(m, `${x.stack}_php-fpm`, ['php', '--', arg], { stdin: readFileSync(ACTIVATION_PHP, 'utf8') });
  const line = res.stdout.trim().split('\n').pop() ?? '';
  let out: { plugins?: string[]; theme?: string; changes?: string[]; error?: string } = {};
  try {
    out = JSON.parse(line) as typeof out;
  } catch {
    // handled below
  }
  if (res.code !== 0 || out.error || !out.changes)
    throw new Error(`activation on ${res.node}: ${out.error ?? (res.stderr.trim() || line || `exit ${res.code}`)}`);
  const before: Activation = {
    ...(want.plugins ? { plugins: out.plugins ?? [] } : {}),
    ...(want.theme && out.theme ? { theme: out.theme } : {}),
  };
  return { before, changes: out.changes };
}

/** After the wave's wp-site run: which sites Swarm kept on the new images (one `docker service inspect`). */
export async function verifyWave(m: StepContext, wave: SitePlan[]): Promise<Map<string, string[]>> {
  const services = wave.flatMap((x) => Object.keys(x.to).map((svc) => `${x.stack}_${svc}`));
  const r = await m.exec(sh`docker service inspect --format ${INSPECT_FORMAT} ${services}`, { nothrow: true });
  const failed = new Map<string, string[]>();
  for (const x of wave) {
    const v = verdict(x.stack, r.stdout, x.to, x.from);
    if (!v.ok) failed.set(x.site.id, v.reasons);
  }
  return failed;
}

/** The database upgrade of one site after a core update (once: in one php-fpm task). */
export async function upgradeDb(m: StepContext, x: SitePlan): Promise<{ changed: boolean; line: string }> {
  const res = await execInService(m, `${x.stack}_php-fpm`, ['wpfarm-upgrade-db']);
  const line = res.stdout.trim().split('\n').pop() ?? '';
  let out: { changed?: boolean; error?: string; from?: number; to?: number } = {};
  try {
    out = JSON.parse(line) as typeof out;
  } catch {
    // handled below
  }
  if (res.code !== 0 || out.error) throw new Error(`database upgrade failed on ${res.node}: ${out.error ?? (res.stderr.trim() || line)}`);
  return { changed: !!out.changed, line: out.changed ? `database upgraded (db_version ${out.from} -> ${out.to})` : '' };
}

/** One request through the site's nginx (in one of its tasks): the site answers 200. */
export async function siteAnswers(m: StepContext, x: SitePlan): Promise<string | null> {
  const res = await execInService(m, `${x.stack}_nginx`, [
    'curl',
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '--max-time',
    '20',
    '-H',
    `Host: ${x.site.domain}`,
    '-H',
    'X-Forwarded-Proto: https',
    `http://127.0.0.1:8080/?wpfarm-update-check=${Date.now()}`,
  ]);
  const code = res.stdout.trim();
  return code === '200' ? null : `GET / through nginx answered ${code || `nothing (${res.stderr.trim()})`}`;
}

/** The key of a package's tar in packageTars(). */
export const tarKey = (kind: Kind, p: PluginRef) => `${kind}/${p.slug}@${p.version}`;

/** The content of a store zip as a tar of its slug directory (checked: one top directory, the slug). */
export async function pluginTar(store: string, p: PluginRef, kind: Kind = 'plugins'): Promise<Buffer> {
  const zip = storeZip(store, p, kind);
  const list = await $({ quiet: true, nothrow: true })`unzip -Z1 ${zip}`;
  if (list.exitCode !== 0) throw new InputError(`${zip}: not a readable zip (${list.stderr.trim()})`);
  checkZipEntries(list.stdout.split('\n'), p, zip, kind);
  const tmp = mkdtempSync(path.join(tmpdir(), 'wpfarm-plugin-'));
  try {
    await $({ quiet: true })`unzip -q ${zip} -d ${tmp}`;
    const tar = await $({ quiet: true })`tar -C ${tmp} -cf - ${p.slug}`;
    return tar.buffer();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Every package of the set read from the store (tarKey → tar), checked before anything runs. */
export async function packageTars(store: string, set: PackageSet): Promise<Map<string, Buffer>> {
  const tars = new Map<string, Buffer>();
  for (const [kind, slug, version] of entriesOf(set))
    tars.set(tarKey(kind, { slug, version }), await pluginTar(store, { slug, version }, kind));
  return tars;
}

/** Put the package set on one site (each package: its own new dir + rename). Returns the change lines. */
export async function applyPlugins(files: StepContext, siteDir: string, set: PackageSet, tars: Map<string, Buffer>): Promise<string[]> {
  const changes: string[] = [];
  for (const [kind, slug, version] of entriesOf(set)) {
    const tar = tars.get(tarKey(kind, { slug, version }));
    if (!tar) throw new Error(`${kindName(kind)} ${slug}@${version}: not read from the store`);
    const r = await files.exec(switchPluginScript({ siteDir, kind, slug, version, tar: true }), { stdin: tar, timeoutMs: 120_000 });
    const out = r.stdout.trim().split('\n').pop() ?? '';
    if (out.startsWith('switched')) changes.push(`${kindName(kind)} ${slug}: ${out.slice('switched '.length)} -> ${version}`);
  }
  return changes;
}

/** Put a site's packages back to `from` (per kind, slug → version, null: the package was not there). */
export async function restorePlugins(files: StepContext, siteDir: string, from: PerKind<string | null>): Promise<string[]> {
  const changes: string[] = [];
  for (const [kind, slug, version] of entriesOf(from)) {
    // 'unmanaged': a directory wpfarm did not install, moved aside by the switch: its `previous`
    const script =
      version === null
        ? removePluginScript({ siteDir, kind, slug })
        : switchPluginScript({ siteDir, kind, slug, version: version === 'unmanaged' ? PREVIOUS : version, tar: false });
    const r = await files.exec(script, { timeoutMs: 60_000 });
    const out = r.stdout.trim().split('\n').pop() ?? '';
    if (out !== 'unchanged') changes.push(`${kindName(kind)} ${slug}: ${out.replace(/^switched /, '')} -> ${version ?? '(none)'}`);
  }
  return changes;
}

/** Pin a site to images on every manager (none missed, or an error). */
export async function pinSite(m: StepContext, id: string, images: ServiceImages, reason: string): Promise<void> {
  const missed = await writePin(m, id, { images, at: new Date().toISOString(), reason });
  if (missed.length) m.log(`${id}: the image pin was not written on ${missed.join(', ')}`);
}

export { coreChanged };

/** What became of one site of a wave. */
export interface SiteOutcome {
  ok: boolean;
  reasons: string[];
  changes: string[];
  dbUpgraded: boolean;
}

/** The packages of the set a site had before (per kind, slug → version, null: absent). */
export function pluginsBefore(x: Pick<SitePlan, 'packages'>, set: PackageSet): PerKind<string | null> {
  const out = emptySet<string | null>();
  for (const k of KINDS) out[k] = Object.fromEntries(Object.keys(set[k]).map((slug) => [slug, x.packages[k][slug]?.current ?? null]));
  return out;
}

/**
 * After the wave's wp-site run: Swarm's verdict per site (imageSites: the sites whose images changed), then per
 * good site the database upgrade (core changed), the plugin set and a request; a site failing after its plugin
 * switch gets its plugins back; a site whose images Swarm did not keep is pinned to the images it had.
 */
export async function afterWave(
  ctx: StepContext,
  plan: UpdatePlan,
  wave: SitePlan[],
  a: {
    imageSites: Set<string>;
    plugins: PackageSet;
    tars: Map<string, Buffer>;
    /** sites of an interrupted run of the same target: their database upgrade may not have run */
    resumed?: Set<string>;
  },
): Promise<Map<string, SiteOutcome>> {
  const m = plan.manager === ctx.host.name ? ctx : ctx.hostContext(plan.manager);
  const files = ctx.hostContext(plan.filesHost);
  const failed = a.imageSites.size
    ? await verifyWave(
        m,
        wave.filter((x) => a.imageSites.has(x.site.id)),
      )
    : new Map<string, string[]>();
  const out = new Map<string, SiteOutcome>();
  for (const x of wave) {
    const id = x.site.id;
    const o: SiteOutcome = { ok: true, reasons: [], changes: [], dbUpgraded: false };
    out.set(id, o);
    const bad = failed.get(id);
    if (bad) {
      o.ok = false;
      o.reasons.push(...bad);
      if (Object.keys(x.from).length) {
        await pinSite(m, id, x.from, `update.ts: ${bad[0]}`);
        o.changes.push(`images pinned to the previous ones (${PIN_STORE}/${id}.json)`);
      }
      continue;
    }
    if (a.imageSites.has(id)) o.changes.push(...imageChanges(x.from, x.to));
    const siteDir = `${plan.glusterMount}/${id}`;
    let switched = false;
    let activated = false;
    try {
      if ((a.imageSites.has(id) && coreChanged(x.from, x.to)) || a.resumed?.has(id)) {
        const db = await upgradeDb(m, x);
        o.dbUpgraded = true;
        if (db.line) o.changes.push(db.line);
      }
      if (setSize(a.plugins)) {
        switched = true;
        o.changes.push(...(await applyPlugins(files, siteDir, a.plugins, a.tars)));
      }
      if (x.activation) {
        activated = true;
        const r = await siteActivation(m, x, x.activation.want, { check: false });
        x.activation.before = r.before;
        o.changes.push(...r.changes);
      }
      const answer = await siteAnswers(m, x);
      if (answer) throw new Error(answer);
      if (x.pinned && a.imageSites.has(id)) await writePin(m, id, undefined);
    } catch (e) {
      o.ok = false;
      o.reasons.push((e as Error).message.split('\n')[0]!);
      if (activated && x.activation?.before) {
        const back = await siteActivation(m, x, x.activation.before, { check: false }).then(
          (r) => r.changes,
          (err: Error) => [`activation NOT restored: ${err.message.split('\n')[0]}`],
        );
        o.changes.push(...back.map((c) => `restored: ${c}`));
      }
      if (switched) {
        const back = await restorePlugins(files, siteDir, pluginsBefore(x, a.plugins)).catch((err: Error) => [
          `plugins NOT restored: ${err.message}`,
        ]);
        o.changes.push(...back.map((c) => `restored ${c}`));
      }
    }
  }
  return out;
}

/**
 * Update progress to node-exporter's textfile collector on every manager that answers (metrics.ts): a manager that
 * does not answer is said, never an error (the metrics must not fail an update). Nothing in check mode.
 */
export async function publishProgress(run: Run, p: UpdateProgress, dir = TEXTFILE_DIR): Promise<void> {
  if (run.config.flags.check) return;
  const text = updateMetrics(p);
  const file = `${dir}/${UPDATE_METRICS_FILE}`;
  await Promise.all(
    run.hostsFor('managers').map(async (h) => {
      if (run.hostState.get(h.name)?.unreachable) return;
      try {
        const c = await run.pool.get(h);
        await c.exec(textfileWriteCmd(file), { stdin: text, become: true, timeoutMs: 20_000 });
      } catch (e) {
        run.say(`${h.name}: update metrics not written: ${(e as Error).message.split('\n')[0]}`);
      }
    }),
  );
}
