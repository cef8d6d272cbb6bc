// Return sites to what they ran before an update:  npx tsx playbooks/rollback.ts --site S[,S2] | --wave N [--state FILE]
// Reads the update state file (playbooks/update.ts): per site the images (per service), plugin and theme versions
// and the activation it had before. The site is pinned to those images on the managers (a later reconcile keeps
// them until an update succeeds for it), its stack redeployed through the wp-site role (Swarm's update_config rolls
// it, health checks included), its active plugins and theme set back through WordPress, its plugins and themes
// switched back (the previous versions are kept on the site), and one request checks it.
// A rerun changes nothing. Exit 2 names the site(s) that could not be rolled back.
import { existsSync, readFileSync } from 'node:fs';
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { EXIT, InputError } from '../lib/errors.ts';
import { writePrivateFile } from '../lib/output.ts';
import { loadInventory } from '../lib/inventory.ts';
import { Run } from '../lib/play.ts';
import wpSite from '../roles/wp-site/role.ts';
import { wpSiteSettings } from '../roles/wp-site/reconcile.ts';
import { SITES_DIR_OPTION, findSite, inventoryManagementCidrs, sitesOf } from '../roles/wp-site/playbook-util.ts';
import { stackName } from '../roles/wp-site/stack.ts';
import { imageChanges, parseState, recordSite, stateText, STATE_OPTION, waveSites } from '../roles/update/plan.ts';
import {
  onceRole,
  pinSite,
  publishProgress,
  restorePlugins,
  siteActivation,
  siteAnswers,
  verifyWave,
  type SitePlan,
} from '../roles/update/steps.ts';
import { emptySet, entriesOf, kindName } from '../roles/update/plugins.ts';

const CMD: CommandSpec = {
  name: 'rollback.ts',
  summary: `Returns sites to the images, plugins, themes and activation they had before the update recorded in the state
file: pins the previous images, redeploys the site (Swarm's update_config), sets the active plugins and theme back
(through WordPress), switches the plugins and themes back (previous versions are kept on the site) and checks a
request. Exit 2 names the site(s) that could not be rolled back.`,
  options: [
    { name: 'site', type: 'list', arg: 'S1,S2', repeatable: true, help: 'the site(s), by id or domain' },
    { name: 'wave', type: 'integer', arg: 'N', min: 0, max: 100_000, help: 'every site of wave N of the update (0: the canary)' },
    STATE_OPTION,
    { ...SITES_DIR_OPTION, default: undefined, defaultHelp: 'vars.wp_sites_dir, else inventory/sites' },
  ],
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const f = parsed.opts as { site?: string[]; wave?: number; state: string; 'sites-dir'?: string };
const failed = new Map<string, string[]>();
// bad input first: nothing runs before the state file and the sites are checked
function checkInput() {
  if (!f.site === (f.wave === undefined)) throw new InputError('give --site S or --wave N (one of them)');
  if (!existsSync(f.state)) throw new InputError(`no update state file ${f.state} (--state): nothing recorded to return to`);
  const state = parseState(readFileSync(f.state, 'utf8'), f.state);
  const iv = loadInventory(parsed.flags.inventory).vars;
  const sitesDir = f['sites-dir'] ?? (typeof iv.wp_sites_dir === 'string' ? iv.wp_sites_dir : 'inventory/sites');
  const records = sitesOf(sitesDir, inventoryManagementCidrs(parsed.flags));
  const ids = f.site ? f.site.map((k) => findSite(records, k).id) : waveSites(state, f.wave!);
  if (!ids.length) throw new InputError(`wave ${f.wave} has no site in ${f.state}`);
  const unknown = ids.filter((id) => !state.sites[id]);
  if (unknown.length) throw new InputError(`no update of ${unknown.join(', ')} is recorded in ${f.state}`);
  const plans: SitePlan[] = ids.map((id) => {
    const e = state.sites[id]!;
    // from/to as the rollback sees them: from what the update put, to what the site had
    return { site: findSite(records, id), stack: stackName(id), from: e.to.images, to: e.from.images, packages: emptySet(), changes: [] };
  });
  return { state, sitesDir, ids, plans };
}
let input: ReturnType<typeof checkInput>;
try {
  input = checkInput();
} catch (e) {
  fail(e);
}
const { sitesDir, ids, plans } = input;
let state = input.state;
const run = Run.fromParsed(parsed, { name: 'rollback' });
const started = new Date();
try {
  for (const h of run.inventory.hosts.values()) {
    h.vars.wp_sites_dir = sitesDir;
    h.vars.wp_sites_only = ids.join(',');
    h.vars.wp_site_unpin = '';
  }
  run.phase(`rollback: ${ids.join(' ')}`);
  // pin the images each site had before (only those whose images the update changed)
  const imageSites = plans.filter((x) => Object.keys(x.to).length && imageChanges(x.from, x.to).length);
  await run.role(
    onceRole('rollback', 'pin the previous images', async (ctx) => {
      const changes: string[] = [];
      for (const x of imageSites) {
        changes.push(`${x.site.id}: pin ${imageChanges(x.from, x.to).join(', ')}`);
        if (!ctx.check) await pinSite(ctx, x.site.id, x.to, 'rollback.ts');
      }
      return { changes };
    }),
  );
  if (imageSites.length) await run.role(wpSite);
  await run.role(
    onceRole('rollback', 'verify, activation, plugins and themes, request', async (ctx) => {
      const s = wpSiteSettings(ctx);
      const files = ctx.hostContext(s.filesHost);
      const changes: string[] = [];
      const bad = ctx.check || !imageSites.length ? new Map<string, string[]>() : await verifyWave(ctx, imageSites);
      for (const x of plans) {
        const id = x.site.id;
        const reasons = [...(bad.get(id) ?? [])];
        const was = state.sites[id]!.from;
        const from = { plugins: was.plugins ?? {}, themes: was.themes ?? {} };
        try {
          // the activation first: a plugin or theme the update added is deactivated before its files go
          if (was.activation) {
            const r = await siteActivation(ctx, x, was.activation, { check: ctx.check });
            changes.push(...r.changes.map((c) => `${id}: ${c}`));
          }
          if (!ctx.check) {
            changes.push(...(await restorePlugins(files, `${s.glusterMount}/${id}`, from)).map((c) => `${id}: ${c}`));
            const answer = await siteAnswers(ctx, x);
            if (answer) reasons.push(answer);
          } else {
            for (const [kind, slug, v] of entriesOf(from)) changes.push(`${id}: ${kindName(kind)} ${slug} back to ${v ?? '(none)'}`);
          }
        } catch (e) {
          reasons.push((e as Error).message.split('\n')[0]!);
        }
        if (reasons.length) failed.set(id, reasons);
      }
      return { changes };
    }),
  );
  if (!run.config.flags.check) {
    for (const id of ids) {
      const e = state.sites[id]!;
      const bad = failed.get(id) ?? (run.healthy(run.hostsFor('managers')[0]?.name ?? '') ? undefined : ['the run failed (see above)']);
      if (bad) failed.set(id, bad);
      else state = recordSite(state, id, { ...e, status: 'rolled-back', error: undefined });
    }
    writePrivateFile(f.state, stateText(state));
    // the update's metrics (roles/update/metrics.ts): rolled_back counts, this run's outcome
    const wave = state.waves.length ? state.waves.length - 1 : null;
    await publishProgress(run, { state, wave, outcome: failed.size ? 'failed' : 'rolled-back', started });
  }
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
const code = await run.finish();
if (failed.size) {
  for (const [id, why] of failed) process.stderr.write(`error: site ${id} not rolled back: ${why.join('; ')}\n`);
  process.exit(code || EXIT.FAILED);
}
process.exit(code);
