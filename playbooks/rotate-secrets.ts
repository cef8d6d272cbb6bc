// Rotate site secrets:  npx tsx playbooks/rotate-secrets.ts [--domain D | --all | --due] [--sites-dir DIR]
// New DB password and WordPress keys/salts as NEW Swarm secret versions (content-hashed names), rolled out
// by the wp-site role with update_config start-first, one task at a time: no request fails. MariaDB has no
// dual passwords, so each version has its own DB user (wp_<id> and wp_<id>_b alternate): old tasks keep
// working with the old user until the new tasks replaced them; then the old user is dropped.
// Without a selection it only reports the architecture's 90-day policy per site.
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { task } from '../lib/ops/base.ts';
import { Run } from '../lib/play.ts';
import type { Role } from '../lib/types.ts';
import wpSite from '../roles/wp-site/role.ts';
import {
  dropDbUser,
  managerProbeScript,
  newStoredSecrets,
  parseManagerProbe,
  readSites,
  wpSiteSettings,
  writeStoredSecrets,
  type StoredSecrets,
} from '../roles/wp-site/reconcile.ts';
import { nextDbUser, rotationStatus } from '../roles/wp-site/rotation.ts';
import { siteDbName } from '../roles/wp-site/stack.ts';
import { SITES_DIR_OPTION, findSite, inventoryManagementCidrs, sitesOf } from '../roles/wp-site/playbook-util.ts';

const CMD: CommandSpec = {
  name: 'rotate-secrets.ts',
  summary: `Rotates site secrets (new DB password and WordPress keys/salts as new Swarm secret versions, rolled out with no
failed request). Without a selection it only reports the 90-day rotation policy per site.`,
  options: [
    { name: 'domain', type: 'string', arg: 'DOMAIN', help: 'rotate this site' },
    { name: 'all', type: 'boolean', help: 'rotate every site' },
    { name: 'due', type: 'boolean', help: 'rotate the sites whose secrets are older than 90 days' },
    SITES_DIR_OPTION,
  ],
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const f = parsed.opts as { domain?: string; all: boolean; due: boolean; 'sites-dir': string };
const sitesDir = f['sites-dir'];
let only: string[] = [];
try {
  if ([f.domain !== undefined, f.all, f.due].filter(Boolean).length > 1) throw new InputError('give one of --domain, --all, --due');
  if (f.domain !== undefined) only = [findSite(sitesOf(sitesDir, inventoryManagementCidrs(parsed.flags)), f.domain).id];
  parsed.flags.extraVars.push(`wp_sites_dir=${sitesDir}`);
} catch (e) {
  fail(e);
}
const run = Run.fromParsed(parsed, { name: 'rotate-secrets' });
const check = run.config.flags.check;
const rotated: { id: string; previousUser?: string }[] = [];
const report: string[] = [];

const prepare: Role = {
  name: 'rotate-secrets',
  hosts: 'managers',
  steps: () => [
    task(
      'new secret versions',
      async (ctx) => {
        const s = wpSiteSettings(ctx);
        const sites = readSites({ ...s, only: [] });
        const probe = parseManagerProbe((await ctx.exec(managerProbeScript())).stdout);
        const changes: string[] = [];
        for (const site of sites) {
          const cur = probe.secrets.get(site.id);
          if (cur) for (const v of [cur.db_password, cur.admin_password]) if (v.length >= 6) ctx.secret(v);
          const st = rotationStatus(cur?.rotated);
          const pick = only.length ? only.includes(site.id) : f.all ? true : f.due ? st.due : false;
          report.push(`${site.domain.padEnd(30)} secrets ${st.text}${pick ? (check ? ' -> would rotate' : ' -> rotating') : ''}`);
          if (!pick || !cur) continue;
          const base = siteDbName(site.id);
          const fresh = newStoredSecrets();
          const next: StoredSecrets = {
            ...fresh,
            admin_password: cur.admin_password,
            created: cur.created,
            db_user: nextDbUser(base, cur.db_user ?? base),
            previous_db_user: cur.db_user ?? base,
          };
          ctx.secret(next.db_password);
          changes.push(`${site.id}: new DB password (user ${next.db_user}) and WordPress keys/salts`);
          if (!check) await writeStoredSecrets(ctx, site.id, next);
          rotated.push({ id: site.id, previousUser: next.previous_db_user });
        }
        return { changed: changes.length > 0, changes };
      },
      { runOnce: true },
    ),
  ],
};

const cleanup: Role = {
  name: 'rotate-secrets cleanup',
  hosts: 'managers',
  steps: () => [
    task(
      'drop the previous DB users',
      async (ctx) => {
        const s = wpSiteSettings(ctx);
        const changes: string[] = [];
        for (const r of rotated)
          if (r.previousUser) changes.push(...(await dropDbUser(ctx, s, r.previousUser)).map((c) => `${r.id}: ${c}`));
        return { changed: changes.length > 0, changes };
      },
      { runOnce: true },
    ),
  ],
};

try {
  run.phase('rotation policy (90 days)');
  await run.role(prepare);
  process.stdout.write(report.join('\n') + '\n');
  if (rotated.length && !check) {
    for (const h of run.inventory.hosts.values()) h.vars.wp_sites_only = rotated.map((r) => r.id).join(',');
    run.phase(`roll out ${rotated.map((r) => r.id).join(', ')}`);
    const r = await run.role(wpSite);
    if (r.hosts.every((h) => run.healthy(h.host))) {
      run.phase('drop the previous DB users');
      await run.role(cleanup);
    }
  }
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
