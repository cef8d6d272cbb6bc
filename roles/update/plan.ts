// Farm-wide updates (playbooks/update.ts, playbooks/rollback.ts): the pure part. Which sites (--only/--except),
// in which waves (a canary, then waves of N or N %), when to stop (the error budget), what each site runs
// before and after (the images per service, read from `docker service ls`), whether Swarm kept the new spec or
// rolled it back (`docker service inspect`), and the resumable state file. No I/O here but the state file's
// parse of a text the caller read.
import { createHash } from 'node:crypto';
import type { OptionSpec } from '../../lib/cli.ts';
import { InputError } from '../../lib/errors.ts';
import { globToRegExp } from '../../lib/patterns.ts';
import { nullAsAbsent, validate, z } from '../../lib/schema.ts';
import { parseYamlText } from '../../lib/yamlsrc.ts';

// ---------------------------------------------------------------------------------------------------
// site selection

export interface SiteKey {
  id: string;
  domain: string;
  aliases: string[];
}

/** Terms of --only/--except: comma separated; each a site id or domain, or a glob (* ? [a-z]) on them. */
function matcher(term: string): (s: SiteKey) => boolean {
  const re = globToRegExp(term);
  return (s) => [s.id, s.domain, ...s.aliases].some((k) => re.test(k));
}

/**
 * The sites an update touches, in record order: those matching any --only term (all when none), minus those
 * matching any --except term. A term that matches no site is bad input (a typo must not silently widen or
 * narrow a farm-wide change).
 */
export function selectSites<S extends SiteKey>(sites: readonly S[], only: readonly string[], except: readonly string[]): S[] {
  const check = (flag: string, terms: readonly string[]) => {
    for (const t of terms) {
      if (!sites.some(matcher(t))) throw new InputError(`${flag} ${JSON.stringify(t)} matches no site (by id, domain or alias)`);
    }
  };
  check('--only', only);
  check('--except', except);
  const inOnly = only.length ? (s: S) => only.some((t) => matcher(t)(s)) : () => true;
  return sites.filter((s) => inOnly(s) && !except.some((t) => matcher(t)(s)));
}

// ---------------------------------------------------------------------------------------------------
// waves

/** A count of sites: "3" or "10%". */
export type Count = { n: number } | { pct: number };

export function parseCount(text: string, flag: string): Count {
  const m = /^([0-9]{1,6})(%?)$/.exec(text.trim());
  if (!m) throw new InputError(`${flag} must be a number of sites or a percentage (3, 10%), got ${JSON.stringify(text)}`);
  const v = Number(m[1]);
  if (m[2]) {
    if (v < 1 || v > 100) throw new InputError(`${flag} must be a percentage from 1% to 100%, got ${JSON.stringify(text)}`);
    return { pct: v };
  }
  if (v < 1) throw new InputError(`${flag} must be at least 1, got ${JSON.stringify(text)}`);
  return { n: v };
}

/** How many of `total` sites a count means: a percentage rounds up, never below 1 nor above total. */
export function countOf(c: Count, total: number): number {
  const n = 'n' in c ? c.n : Math.ceil((total * c.pct) / 100);
  return Math.max(1, Math.min(total, n));
}

/** The waves: wave 0 is the canary (`canary` sites), then waves of `waveSize` (of the whole selection). */
export function planWaves(ids: readonly string[], canary: Count, waveSize: Count): string[][] {
  if (!ids.length) return [];
  const c = countOf(canary, ids.length);
  const w = countOf(waveSize, ids.length);
  const waves = [ids.slice(0, c)];
  for (let i = c; i < ids.length; i += w) waves.push(ids.slice(i, i + w));
  return waves;
}

/**
 * The error budget: stop every later wave when a canary site failed, or when more than `maxFailures` sites of
 * this update failed in all. Returns the reason to stop, or null to go on.
 */
export function budgetVerdict(a: { wave: number; failedThisWave: string[]; failedTotal: string[]; maxFailures: number }): string | null {
  if (a.wave === 0 && a.failedThisWave.length) return `the canary failed (${a.failedThisWave.join(', ')})`;
  if (a.failedTotal.length > a.maxFailures)
    return `${a.failedTotal.length} site(s) failed (${a.failedTotal.join(', ')}), more than the error budget of ${a.maxFailures}`;
  return null;
}

// ---------------------------------------------------------------------------------------------------
// what a site runs: images per service

/** image per service of a site's stack ("php-fpm" → "reg/wpfarm/wordpress-fpm:tag"), digest suffix removed */
export type ServiceImages = Record<string, string>;

/** Images per service of every wp-* stack, from `docker service ls --format '{{json .}}'`. */
export function stackImages(serviceLs: string): Map<string, ServiceImages> {
  const out = new Map<string, ServiceImages>();
  for (const line of serviceLs.split('\n')) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    const e = JSON.parse(t) as { Name?: string; Image?: string };
    const m = /^(wp-[a-z0-9-]+)_([a-z0-9-]+)$/.exec(e.Name ?? '');
    if (!m || !e.Image) continue;
    const images = out.get(m[1]!) ?? {};
    images[m[2]!] = e.Image.replace(/@sha256:[0-9a-f]+$/, '');
    out.set(m[1]!, images);
  }
  return out;
}

/** The lines "service: A -> B" for the services whose image differs (sorted by service). */
export function imageChanges(from: ServiceImages, to: ServiceImages): string[] {
  return Object.keys({ ...from, ...to })
    .sort()
    .filter((svc) => from[svc] !== to[svc])
    .map((svc) => `${svc}: ${from[svc] ?? '(none)'} -> ${to[svc] ?? '(none)'}`);
}

/** The WordPress core changes with the wordpress-fpm image: after such a change the database upgrade runs once. */
export function coreChanged(from: ServiceImages, to: ServiceImages): boolean {
  return !!to['php-fpm'] && from['php-fpm'] !== to['php-fpm'];
}

// ---------------------------------------------------------------------------------------------------
// did Swarm keep the new spec?

/** `docker service inspect --format` for verdict(): name|image|update state|update message, one line each. */
export const INSPECT_FORMAT =
  '{{.Spec.Name}}|{{.Spec.TaskTemplate.ContainerSpec.Image}}|{{if .UpdateStatus}}{{.UpdateStatus.State}}|{{.UpdateStatus.Message}}{{else}}|{{end}}';

/**
 * One site after its wave: ok when every service runs the image of the new render and no update of a service whose
 * image changed (`from` → `want`) was rolled back or paused; else failed, with the reason (Swarm's own message when
 * it rolled back).
 */
export function verdict(stack: string, inspect: string, want: ServiceImages, from: ServiceImages = {}): { ok: boolean; reasons: string[] } {
  const reasons: string[] = [];
  const seen = new Set<string>();
  for (const line of inspect.split('\n')) {
    const [name, image, state, message] = line.trim().split('|');
    if (!name?.startsWith(`${stack}_`)) continue;
    const svc = name.slice(stack.length + 1);
    seen.add(svc);
    const img = (image ?? '').replace(/@sha256:[0-9a-f]+$/, '');
    // a service this update did not change keeps the update status of an older update (a rollback of last week)
    const changed = from[svc] === undefined || from[svc] !== want[svc];
    if (changed && state && /^(rollback_|paused)/.test(state)) reasons.push(`${svc}: update ${state}${message ? ` (${message})` : ''}`);
    else if (want[svc] && img !== want[svc]) reasons.push(`${svc}: runs ${img}, not ${want[svc]}`);
  }
  for (const svc of Object.keys(want)) if (!seen.has(svc)) reasons.push(`${svc}: service missing`);
  return { ok: reasons.length === 0, reasons };
}

// ---------------------------------------------------------------------------------------------------
// the state file (resumable runs, and what rollback returns to)

/** --state, declared once for update.ts and rollback.ts. */
export const STATE_OPTION: OptionSpec = {
  name: 'state',
  type: 'string',
  arg: 'FILE',
  default: '.wpfarm/state/update.json',
  help: 'the update state file (a rerun resumes from it; rollback.ts returns to what it recorded)',
};

const Images = z.record(z.string(), z.string());
const Plugins = z.record(z.string(), z.string().nullable());
/** a site's activation (site record active_plugins, theme): what it had before, what the update set */
const Activation = z.strictObject({ plugins: nullAsAbsent(z.array(z.string()).optional()), theme: nullAsAbsent(z.string().optional()) });
/** what a site ran: images per service, the versions of the set's plugins and themes (null: absent), its activation */
const SiteSide = z.strictObject({
  images: Images,
  plugins: nullAsAbsent(Plugins.optional()),
  themes: nullAsAbsent(Plugins.optional()),
  activation: nullAsAbsent(Activation.optional()),
});
const SiteEntry = z.strictObject({
  status: z.enum(['done', 'failed', 'rolled-back']),
  wave: z.number().int().min(0),
  from: SiteSide,
  to: SiteSide,
  at: z.string(),
  error: nullAsAbsent(z.string().optional()),
  db_upgraded: nullAsAbsent(z.boolean().optional()),
});
const StateSchema = z.strictObject({
  version: z.literal(1),
  /** sha256 of the target (images + plugin set): a rerun for the same target resumes */
  target: z.string().regex(/^[0-9a-f]{64}$/),
  started: z.string(),
  updated: z.string(),
  waves: z.array(z.array(z.string())),
  stopped: nullAsAbsent(z.string().optional()),
  sites: z.record(z.string(), SiteEntry),
});
export type UpdateState = z.output<typeof StateSchema>;
export type SiteUpdate = z.output<typeof SiteEntry>;

/**
 * What an update rolls out: image per service (as rendered for a site), the plugin and theme sets (slug → version)
 * and the activation the site records ask for (site id → active plugins and theme).
 */
export interface Target {
  images: { wordpressFpm: string; nginx: string; redis: string; varnish: string };
  plugins: Record<string, string>;
  themes?: Record<string, string>;
  activation?: Record<string, { plugins?: string[]; theme?: string }>;
}

const sorted = <T>(r: Record<string, T>) => Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1)));

/** The target's key; themes and activation count only when there are some (the keys of earlier updates stay). */
export function targetKey(t: Target): string {
  const extra = {
    ...(t.themes && Object.keys(t.themes).length ? { themes: sorted(t.themes) } : {}),
    ...(t.activation && Object.keys(t.activation).length ? { activation: sorted(t.activation) } : {}),
  };
  return createHash('sha256')
    .update(JSON.stringify({ images: t.images, plugins: sorted(t.plugins), ...extra }))
    .digest('hex');
}

export function newState(target: Target, waves: string[][], now = new Date()): UpdateState {
  return { version: 1, target: targetKey(target), started: now.toISOString(), updated: now.toISOString(), waves, sites: {} };
}

/** Parse a state file (JSON); bad content is bad input naming the file, line and field. */
export function parseState(text: string, file: string): UpdateState {
  return validate(StateSchema, parseYamlText(text, file).toPlain(), parseYamlText(text, file));
}

export function stateText(s: UpdateState): string {
  return `${JSON.stringify(s, null, 1)}\n`;
}

/**
 * The state this run works with: the previous one when it is for the same target (resume: its finished sites
 * are skipped; this run's waves are numbered after the previous run's), else a fresh one.
 */
export function resumeOrNew(prev: UpdateState | undefined, target: Target, waves: string[][], now = new Date()): UpdateState {
  if (prev && prev.target === targetKey(target)) return { ...prev, waves: [...prev.waves, ...waves], stopped: undefined };
  return newState(target, waves, now);
}

/** The sites of `ids` still to do under `state`: not done (failed and rolled-back ones are tried again). */
export function pendingSites(state: UpdateState, ids: readonly string[]): string[] {
  return ids.filter((id) => state.sites[id]?.status !== 'done');
}

export function recordSite(state: UpdateState, id: string, entry: Omit<SiteUpdate, 'at'>, now = new Date()): UpdateState {
  return { ...state, updated: now.toISOString(), sites: { ...state.sites, [id]: { ...entry, at: now.toISOString() } } };
}

/** The sites a rollback of wave N (0: the canary) covers: those of that wave this state recorded. */
export function waveSites(state: UpdateState, wave: number): string[] {
  return Object.entries(state.sites)
    .filter(([, e]) => e.wave === wave)
    .map(([id]) => id);
}
