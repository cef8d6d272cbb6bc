// Roll an update across the farm's sites:
//   npx tsx playbooks/update.ts [--images DIR] [--plugin SLUG@VER]... [--theme SLUG@VER]... [options]
// New site images (a changed build context: WordPress core, PHP, the images' files) and/or a plugin and theme set
// from the plugin store, and the activation the site records ask for (active_plugins, theme), site by site in
// waves: a canary wave first, then waves of --wave-size. Each wave is the wp-site role for its sites: Swarm rolls
// every service with the stack's update_config (parallelism 1, delay 10 s, start-first, failure_action rollback,
// monitor 30 s, health checks). After the wave: Swarm's verdict per site, the database upgrade (once per site, when
// the core changed), the plugins and themes (new dir + rename, previous kept), the activation through WordPress, a
// request through the site. A failed site is put back (Swarm's rollback, then its previous images pinned and
// redeployed; its previous activation, plugins and themes); a failed canary or more than --max-failures failed
// sites stop every later wave.
// --check lists what would change per site and the waves, changing nothing. The state file (--state) makes a rerun
// resume: sites finished for the same target are skipped. playbooks/rollback.ts reads it to go back.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { EXIT, InputError } from '../lib/errors.ts';
import { writePrivateFile } from '../lib/output.ts';
import { loadInventory } from '../lib/inventory.ts';
import { Run } from '../lib/play.ts';
import wpSite from '../roles/wp-site/role.ts';
import { SITES_DIR_OPTION, inventoryManagementCidrs, sitesOf } from '../roles/wp-site/playbook-util.ts';
import {
  budgetVerdict,
  parseCount,
  parseState,
  pendingSites,
  planWaves,
  recordSite,
  resumeOrNew,
  selectSites,
  STATE_OPTION,
  stateText,
  targetKey,
  type UpdateState,
} from '../roles/update/plan.ts';
import { checkInStore, packageSet, setSize } from '../roles/update/plugins.ts';
import type { UpdateOutcome } from '../roles/update/metrics.ts';
import {
  afterWave,
  onceRole,
  planUpdate,
  activationOf,
  packageTars,
  pluginsBefore,
  publishProgress,
  type SiteOutcome,
  type UpdatePlan,
} from '../roles/update/steps.ts';

const CMD: CommandSpec = {
  name: 'update.ts',
  summary: `Rolls new site images and/or a plugin and theme set across the sites in waves: a canary, then waves; Swarm's
update_config rolls each service (failure_action rollback, health checks); after each wave the database upgrade (core
changed), the plugins and themes (atomic switch, previous kept), the activation the site records ask for (active_plugins,
theme: through WordPress) and a request per site. A failed canary, or more than --max-failures
failed sites, stops every later wave; a failed site is put back on its previous images and plugins. --check lists
per site what would change. Rerun to resume (finished sites are skipped). Exit 2 names the failed site(s).`,
  options: [
    {
      name: 'images',
      type: 'string',
      arg: 'DIR',
      defaultHelp: "the inventory's site_images_dir, else files/images",
      help: 'build contexts of the site images',
    },
    { name: 'plugin', type: 'list', arg: 'SLUG@VER', repeatable: true, help: 'a plugin of the set to install from the plugin store' },
    { name: 'theme', type: 'list', arg: 'SLUG@VER', repeatable: true, help: 'a theme of the set to install from the plugin store' },
    {
      name: 'plugin-store',
      type: 'string',
      arg: 'DIR',
      defaultHelp: "the inventory's plugin_store, else .wpfarm/plugins",
      help: 'the plugin store: DIR/<slug>/<slug>-<version>.zip, themes DIR/themes/<slug>/<slug>-<version>.zip',
    },
    { name: 'only', type: 'list', arg: 'P1,P2', repeatable: true, help: 'only these sites: ids, domains or globs' },
    { name: 'except', type: 'list', arg: 'P1,P2', repeatable: true, help: 'not these sites: ids, domains or globs' },
    { name: 'canary', type: 'string', arg: 'N|P%', default: '1', help: 'sites of the canary wave' },
    { name: 'wave-size', type: 'string', arg: 'N|P%', default: '25%', help: 'sites per later wave (of the selection)' },
    {
      name: 'max-failures',
      type: 'integer',
      arg: 'K',
      default: 0,
      min: 0,
      max: 100_000,
      help: 'stop the waves when more than K sites failed',
    },
    STATE_OPTION,
    { ...SITES_DIR_OPTION, default: undefined, defaultHelp: 'vars.wp_sites_dir, else inventory/sites' },
  ],
};

const parsed = parseOrExit(process.argv.slice(2), CMD);
const f = parsed.opts as {
  images?: string;
  plugin?: string[];
  theme?: string[];
  'plugin-store'?: string;
  only?: string[];
  except?: string[];
  canary: string;
  'wave-size': string;
  'max-failures': number;
  state: string;
  'sites-dir'?: string;
};
const check = parsed.flags.check;
const failedSites = new Map<string, string[]>();
// ---- bad input first: nothing runs (no Run, no lock, no connection) before all of it is checked
let input: Awaited<ReturnType<typeof checkInput>>;
async function checkInput() {
  const iv = loadInventory(parsed.flags.inventory).vars;
  const canary = parseCount(f.canary, '--canary');
  const waveSize = parseCount(f['wave-size'], '--wave-size');
  const plugins = packageSet({ plugins: f.plugin, themes: f.theme });
  const store = path.resolve(f['plugin-store'] ?? (typeof iv.plugin_store === 'string' ? iv.plugin_store : '.wpfarm/plugins'));
  if (setSize(plugins)) {
    if (!existsSync(store)) throw new InputError(`the plugin store ${store} does not exist (--plugin-store)`);
    checkInStore(plugins, readdirSync(store, { recursive: true, encoding: 'utf8' }), store);
  }
  const imagesDir = f.images ? path.resolve(f.images) : undefined;
  if (imagesDir && !existsSync(path.join(imagesDir, 'wordpress-fpm', 'Dockerfile')))
    throw new InputError(`--images ${f.images}: no wordpress-fpm/Dockerfile there (a copy of files/images is expected)`);
  const sitesDir = f['sites-dir'] ?? (typeof iv.wp_sites_dir === 'string' ? iv.wp_sites_dir : 'inventory/sites');
  const selected = selectSites(sitesOf(sitesDir, inventoryManagementCidrs(parsed.flags)), f.only ?? [], f.except ?? []);
  if (!selected.length) throw new InputError(`no site to update (${sitesDir}${f.only || f.except ? ', --only/--except' : ''})`);
  const prev: UpdateState | undefined = existsSync(f.state) ? parseState(readFileSync(f.state, 'utf8'), f.state) : undefined;
  const tars = await packageTars(store, plugins);
  return { canary, waveSize, plugins, imagesDir, sitesDir, selected, prev, tars };
}
try {
  input = await checkInput();
} catch (e) {
  fail(e);
}
const { canary, waveSize, plugins, imagesDir, sitesDir, selected, prev, tars } = input;
const run = Run.fromParsed(parsed, { name: 'update' });
// progress as metrics on the managers (roles/update/metrics.ts): at the start, after each wave, at the end
const started = new Date();
let state: UpdateState | undefined;
let waveNow: number | null = null;
let stopped = false;
const progress = (outcome: UpdateOutcome) => (state ? publishProgress(run, { state, wave: waveNow, outcome, started }) : Promise.resolve());
try {
  for (const h of run.inventory.hosts.values()) {
    h.vars.wp_sites_dir = sitesDir;
    if (imagesDir) h.vars.site_images_dir = imagesDir;
  }
  const setWave = (ids: string[], unpin: string[]) => {
    for (const h of run.inventory.hosts.values()) {
      h.vars.wp_sites_only = ids.join(',');
      h.vars.wp_site_unpin = unpin.join(',');
    }
  };

  // ---- the plan: images, what every selected site runs, its plugins
  run.phase(`update plan: ${selected.length} site(s)`);
  let plan: UpdatePlan | undefined;
  await run.role(
    onceRole('update', 'update plan', async (ctx) => {
      plan = await planUpdate(ctx, selected, plugins);
      const lines = plan.sites.flatMap((x) => x.changes.map((c) => `${x.site.id}: ${c}`));
      for (const x of plan.sites) if (!x.changes.length) ctx.log(`${x.site.id}: up to date`);
      return { changes: check ? lines : [] };
    }),
  );
  if (!plan) throw new Error('the update plan could not be made (see above)');
  const p = plan;
  const { wordpressFpm, nginx, redis, varnish } = p.images;
  const activation = Object.fromEntries(selected.flatMap((x) => (activationOf(x) ? [[x.id, activationOf(x)!]] : [])));
  const tgt = { images: { wordpressFpm, nginx, redis, varnish }, plugins: plugins.plugins, themes: plugins.themes, activation };
  const resumed = prev?.target === targetKey(tgt);
  const earlier = new Set(resumed ? prev!.waves.flat() : []);
  const todo = p.sites.filter((x) => x.changes.length || earlier.has(x.site.id)).map((x) => x.site.id);
  state = resumeOrNew(prev, tgt, []);
  const pending = pendingSites(state, todo);
  const skipped = todo.length - pending.length;
  const waves = planWaves(pending, canary, waveSize);
  const base = state.waves.length;
  state = { ...state, waves: [...state.waves, ...waves] };
  run.say(
    `${pending.length} site(s) to update in ${waves.length} wave(s)${skipped ? `, ${skipped} finished earlier (${f.state})` : ''}, ` +
      `${selected.length - todo.length} up to date`,
  );
  for (const [i, w] of waves.entries()) run.say(`  wave ${base + i}${i === 0 ? ' (canary)' : ''}: ${w.join(' ')}`);
  if (!check && !waves.length) await progress('ok');
  if (check || !waves.length) await run.exit();
  writePrivateFile(f.state, stateText(state));
  await progress('running');

  // ---- the waves
  const failedTotal: string[] = [];
  for (const [i, ids] of waves.entries()) {
    if (run.signal.interrupted) break;
    const n = base + i;
    waveNow = n;
    run.phase(`wave ${n}${i === 0 ? ' (canary)' : ''}: ${ids.join(' ')}`);
    const wave = p.sites.filter((x) => ids.includes(x.site.id));
    const imageSites = wave.filter((x) => Object.keys(x.to).some((svc) => x.to[svc] !== x.from[svc])).map((x) => x.site.id);
    if (imageSites.length) {
      setWave(imageSites, imageSites);
      await run.role(wpSite);
      if (!run.healthy(p.manager)) {
        for (const id of imageSites) failedSites.set(id, ['the wp-site role failed for this wave (see above)']);
        break;
      }
    }
    let outcomes = new Map<string, SiteOutcome>();
    await run.role(
      onceRole('update', `wave ${n}: verify, database, plugins`, async (ctx) => {
        outcomes = await afterWave(ctx, p, wave, { imageSites: new Set(imageSites), plugins, tars, resumed: earlier });
        return {
          changes: [...outcomes].flatMap(([id, o]) => [...o.changes, ...o.reasons.map((x) => `FAILED: ${x}`)].map((c) => `${id}: ${c}`)),
        };
      }),
    );
    const failedNow = [...outcomes].filter(([, o]) => !o.ok).map(([id]) => id);
    const rolledImages = failedNow.filter((id) => imageSites.includes(id));
    if (rolledImages.length) {
      // Swarm rolled back what failed; the services it kept on the new image go back too (the pins apply)
      run.phase(`wave ${n}: ${rolledImages.join(' ')} back on the previous images`);
      setWave(rolledImages, []);
      await run.role(wpSite);
    }
    for (const x of wave) {
      const o = outcomes.get(x.site.id) ?? { ok: false, reasons: ['not verified (see above)'], changes: [], dbUpgraded: false };
      if (!o.ok) {
        failedSites.set(x.site.id, o.reasons);
        failedTotal.push(x.site.id);
      }
      const was = pluginsBefore(x, plugins);
      state = recordSite(state, x.site.id, {
        status: o.ok ? 'done' : 'failed',
        wave: n,
        from: { images: x.from, plugins: was.plugins, themes: was.themes, activation: x.activation?.before },
        to: { images: x.to, plugins: plugins.plugins, themes: plugins.themes, activation: x.activation?.want },
        error: o.ok ? undefined : o.reasons.join('; '),
        db_upgraded: o.dbUpgraded,
      });
    }
    const stop = budgetVerdict({ wave: i, failedThisWave: failedNow, failedTotal, maxFailures: f['max-failures'] });
    if (stop) state = { ...state, stopped: stop };
    writePrivateFile(f.state, stateText(state));
    stopped = !!stop;
    await progress(stop ? 'stopped' : 'running');
    if (stop) {
      run.say(`\nupdate stopped: ${stop}; ${waves.length - i - 1} later wave(s) not started (rerun to resume)`);
      break;
    }
  }
} catch (e) {
  await progress('failed').catch(() => undefined);
  await run.finish().catch(() => undefined);
  fail(e);
}
await progress(run.signal.interrupted ? 'interrupted' : stopped ? 'stopped' : failedSites.size ? 'failed' : 'ok');
const code = await run.finish();
if (failedSites.size) {
  for (const [id, why] of failedSites) process.stderr.write(`error: site ${id} failed: ${why.join('; ')}\n`);
  process.stderr.write(`error: update failed for site(s) ${[...failedSites.keys()].join(', ')}\n`);
  process.exit(code || EXIT.FAILED);
}
process.exit(code);
