// Remove a site:  npx tsx playbooks/remove-site.ts --domain example.com --yes [options]   (--help: every option)
// Takes a database and files backup first (playbooks/backup.ts) unless --no-backup; without --yes it only
// says what would be removed (exit 4). Then: the stack (and its network), the site's Swarm secrets, its
// database and DB users, its Gluster directory (unless --keep-files), its secret store entry, the deploy
// state, DNS records (when the inventory has cloudflare) and finally the site record.
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { task } from '../lib/ops/base.ts';
import { STACK_DIR } from '../lib/ops/docker.ts';
import { Run } from '../lib/play.ts';
import { sh } from '../lib/shell.ts';
import type { Role } from '../lib/types.ts';
import traefik from '../roles/traefik/role.ts';
import { standinOf } from '../roles/traefik/standin-steps.ts';
import {
  dropDatabase,
  PIN_STORE,
  removeSiteSwarmObjects,
  SECRET_STORE,
  siteSwarmObjects,
  wpSiteSettings,
} from '../roles/wp-site/reconcile.ts';
import { siteNetworkName, stackName } from '../roles/wp-site/stack.ts';
import { siteDomains, type SiteRecord } from '../roles/wp-site/site.ts';
import { SITES_DIR_OPTION, findSite, inventoryManagementCidrs, sitesOf } from '../roles/wp-site/playbook-util.ts';

const CMD: CommandSpec = {
  name: 'remove-site.ts',
  summary: `Removes a site: a database and files backup first (unless --no-backup), then its stack and network, Swarm secrets,
database and DB users, Gluster directory (unless --keep-files), secret store entry, deploy state, DNS records
(when the inventory has cloudflare) and its record. Without --yes it only says what would be removed (exit 4).`,
  options: [
    { name: 'domain', type: 'string', arg: 'DOMAIN', help: 'the site, by domain (or --id)' },
    { name: 'id', type: 'string', arg: 'ID', help: 'the site, by id' },
    { name: 'yes', type: 'boolean', help: 'confirm the removal' },
    { name: 'no-backup', type: 'boolean', help: 'remove without a backup first' },
    { name: 'keep-files', type: 'boolean', help: "keep the site's Gluster directory" },
    SITES_DIR_OPTION,
  ],
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const f = parsed.opts as { domain?: string; id?: string; yes: boolean; 'no-backup': boolean; 'keep-files': boolean; 'sites-dir': string };
const sitesDirOf = (): string => f['sites-dir'];
let site: SiteRecord | undefined;
try {
  const key = f.domain ?? f.id;
  if (!key) throw new InputError('--domain or --id is required');
  site = findSite(sitesOf(sitesDirOf(), inventoryManagementCidrs(parsed.flags)), key);
  if (!f.yes && !parsed.flags.check)
    throw new InputError(
      `removing ${site.domain} (site ${site.id}) deletes its stack, secrets, database${f['keep-files'] ? '' : ', files'} and record${f['no-backup'] ? ' WITHOUT a backup' : ' (after a backup)'}: rerun with --yes`,
    );
} catch (e) {
  fail(e);
}
const run = Run.fromParsed(parsed, { name: 'remove-site' });
const s0 = site!;
const id = s0.id;
const check = run.config.flags.check;

const removeRole: Role = {
  name: 'remove-site',
  hosts: 'managers',
  steps: () => [
    task(
      `remove site ${id}`,
      async (ctx) => {
        const s = wpSiteSettings(ctx);
        const stack = stackName(id);
        const changes: string[] = [];
        const have = await siteSwarmObjects(ctx, id);
        if (have.services || have.network)
          changes.push(`remove stack ${stack} (${have.services} services) and network ${siteNetworkName(id)}`);
        if (have.secrets) changes.push(`remove ${have.secrets} secret version(s) site_${id}_*`);
        if (!check) await removeSiteSwarmObjects(ctx, id, have);
        changes.push(...(await dropDatabase(ctx, s, id)));
        const filesCtx = ctx.hostContext(s.filesHost);
        const dir = `${s.glusterMount}/${id}`;
        if (!f['keep-files']) {
          const e = await filesCtx.exec(sh`test -d ${dir} && echo yes || echo no`);
          if (e.stdout.trim() === 'yes') {
            changes.push(`remove ${dir} on ${s.filesHost}`);
            if (!check) await filesCtx.exec(sh`rm -rf -- ${dir}`);
          }
        }
        const st = await ctx.exec(
          sh`for f in ${`${SECRET_STORE}/${id}.json`} ${`${PIN_STORE}/${id}.json`} ${`${STACK_DIR}/${stack}.yml`}; do [ -e "$f" ] && echo "$f"; done; true`,
        );
        for (const file of st.stdout.split('\n').filter(Boolean)) changes.push(`remove ${file}`);
        if (!check) {
          // every manager may hold the store/state (the first reachable one writes them): clean all of them
          for (const m of ctx.hosts('managers'))
            await ctx
              .hostContext(m.name)
              .exec(sh`rm -f -- ${`${SECRET_STORE}/${id}.json`} ${`${PIN_STORE}/${id}.json`} ${`${STACK_DIR}/${stack}.yml`}`, {
                nothrow: true,
              });
        }
        return { changed: changes.length > 0, changes };
      },
      { runOnce: true },
    ),
  ],
};

try {
  if (!f['no-backup']) {
    run.phase(`backup of ${id} before removal`);
    if (check) run.say(`would back up ${id} (playbooks/backup.ts --what sites-db and --what files)`);
    else {
      for (const what of ['sites-db', 'files']) {
        try {
          await promisify(execFile)(
            process.execPath,
            ['--import', 'tsx', 'playbooks/backup.ts', '--what', what, '--site', id, '--inventory', run.inventory.file],
            { maxBuffer: 16 << 20 },
          );
          run.say(`backup ${what} of ${id}: done`);
        } catch (e) {
          const err = e as { stderr?: string; message: string };
          throw new Error(
            `backup ${what} of ${id} failed, nothing removed (use --no-backup to remove without one):\n${(err.stderr ?? err.message).trim().split('\n').slice(-5).join('\n')}`,
          );
        }
      }
    }
  }
  run.phase(`remove ${id} (${s0.domain})`);
  const r = await run.role(removeRole);
  const ok = r.hosts.every((h) => run.healthy(h.host));
  // an edge stand-in (the lab's) is configured from the sites' labels: without this site's now
  if (ok && standinOf(run.inventory.vars)) {
    run.phase('edge stand-in');
    await run.role(traefik);
  }
  if (ok) {
    const { loadCloudInventory } = await import('../lib/cloud/config.ts');
    let cf: { zone: string } | undefined;
    try {
      cf = loadCloudInventory(run.inventory.file).cloudflare;
    } catch {
      cf = undefined;
    }
    if (!cf) run.say('DNS: the inventory has no cloudflare section: skipped');
    else {
      const { removeSiteRecords } = await import('../lib/cloud/cloudflare.ts');
      const res = await removeSiteRecords({ zoneName: cf.zone, names: siteDomains(s0), check });
      run.say(`DNS: deleted ${res.deleted.length}, absent ${res.absent.length}`);
    }
    const file = path.join(sitesDirOf(), `${id}.yml`);
    if (existsSync(file)) {
      if (check) run.say(`would remove the record ${file}`);
      else {
        rmSync(file);
        run.say(`record ${file} removed`);
      }
    }
  }
} catch (e) {
  await run.finish().catch(() => undefined);
  fail(e);
}
await run.exit();
