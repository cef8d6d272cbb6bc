// List the farm's sites:  npx tsx playbooks/list-sites.ts [--sites-dir DIR] [--format table|json]
// One round trip to the first manager (docker service ls + the secret store's dates), then a table:
// domain, replicas running/desired (nginx and php-fpm), health, last backup (from the backup catalog when
// the S3 settings are in .env, else "-"), secret age against the 90-day rotation policy.
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { task } from '../lib/ops/base.ts';
import { Run } from '../lib/play.ts';
import { exitCodeFor } from '../lib/runner.ts';
import type { Role } from '../lib/types.ts';
import { managerProbeScript, parseManagerProbe, readSites, wpSiteSettings } from '../roles/wp-site/reconcile.ts';
import { parseServiceLs, stackName } from '../roles/wp-site/stack.ts';
import { SITES_DIR_OPTION } from '../roles/wp-site/playbook-util.ts';
import { rotationStatus } from '../roles/wp-site/rotation.ts';

const CMD: CommandSpec = {
  name: 'list-sites.ts',
  summary: `Lists the farm's sites: domain, replicas running/desired (nginx, php-fpm, redis), health, last backup, secret age
against the 90-day rotation policy. One round trip to the first manager.`,
  options: [
    { ...SITES_DIR_OPTION, default: undefined, defaultHelp: 'vars.wp_sites_dir, else inventory/sites' },
    { name: 'format', type: 'string', arg: 'F', choices: ['table', 'json'], default: 'table', help: 'output format' },
  ],
};
const parsed = parseOrExit(process.argv.slice(2), CMD);
const f = parsed.opts as { 'sites-dir'?: string; format: 'table' | 'json' };
const json = f.format === 'json';
let run: Run;
try {
  // --format json: the rows alone on stdout (no progress, no recap: `| jq` works), as capacity.ts; what went
  // wrong on stderr. The run log keeps every event.
  run = new Run({ ...parsed, name: 'list-sites', lock: false, reporter: json ? () => {} : undefined }).installSignals();
} catch (e) {
  fail(e);
}

export interface SiteRow {
  id: string;
  domain: string;
  nginx: string;
  phpFpm: string;
  redis: string;
  health: 'healthy' | 'degraded' | 'down' | 'not deployed';
  lastBackup: string;
  secretsAgeDays: number | null;
  rotation: string;
}

const rowsOut: SiteRow[] = [];
const listRole: Role = {
  name: 'list-sites',
  hosts: 'managers',
  steps: () => [
    task(
      'sites status',
      async (ctx) => {
        const s = wpSiteSettings(ctx);
        if (typeof f['sites-dir'] === 'string') s.sitesDir = f['sites-dir'];
        const sites = readSites(s);
        const probe = parseManagerProbe((await ctx.exec(managerProbeScript())).stdout);
        for (const v of probe.secrets.values())
          for (const k of ['db_password', 'admin_password'] as const) if (v[k]?.length >= 6) ctx.secret(v[k]);
        const live = parseServiceLs(probe.serviceLs);
        for (const site of sites) {
          const svc = live.get(stackName(site.id)) ?? {};
          const rep = (n: string): string => (svc[n] ? `${svc[n]!.running}/${svc[n]!.desired}` : '-');
          const all = ['nginx', 'php-fpm', 'redis'].map((n) => svc[n]);
          const health = all.every((x) => !x)
            ? 'not deployed'
            : all.every((x) => x && x.desired > 0 && x.running >= x.desired)
              ? 'healthy'
              : all.some((x) => x && x.running > 0)
                ? 'degraded'
                : 'down';
          const rot = rotationStatus(probe.secrets.get(site.id)?.rotated);
          rowsOut.push({
            id: site.id,
            domain: site.domain,
            nginx: rep('nginx'),
            phpFpm: rep('php-fpm'),
            redis: rep('redis'),
            health,
            lastBackup: '-',
            secretsAgeDays: rot.ageDays,
            rotation: rot.text,
          });
        }
        return { changed: false, result: rowsOut };
      },
      { runOnce: true },
    ),
  ],
};

try {
  await run.role(listRole);
  // last backup: the catalog in the bucket, when .env has the S3 settings
  try {
    const { backupSettingsFromEnv } = await import('../roles/backup/keys.ts');
    const { lastSiteBackups } = await import('../roles/wp-site/backups.ts');
    const last = await lastSiteBackups(
      backupSettingsFromEnv(),
      rowsOut.map((r) => r.id),
    );
    for (const r of rowsOut) r.lastBackup = last.get(r.id) ?? 'never';
  } catch (e) {
    const why = `last backup: not read (${(e as Error).message.split('\n')[0]})`;
    if (json) process.stderr.write(`${why}\n`);
    run.say(why);
  }
  if (json) {
    for (const r of run.results.filter((x) => x.status === 'failed' || x.status === 'unreachable'))
      process.stderr.write(`${r.host}: ${r.status}: ${r.error ?? ''}\n`);
    process.stdout.write(JSON.stringify(rowsOut, null, 1) + '\n');
  } else {
    const head = ['DOMAIN', 'NGINX', 'PHP-FPM', 'REDIS', 'HEALTH', 'LAST BACKUP', 'SECRETS'];
    const body = rowsOut.map((r) => [r.domain, r.nginx, r.phpFpm, r.redis, r.health, r.lastBackup, r.rotation]);
    const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
    const line = (cells: string[]): string =>
      cells
        .map((c, i) => c.padEnd(w[i]!))
        .join('  ')
        .trimEnd();
    process.stdout.write(`\n${[line(head), ...body.map(line)].join('\n')}\n${rowsOut.length} site(s)\n`);
  }
} catch (e) {
  if (json) await run.pool.closeAll().catch(() => undefined);
  else await run.finish().catch(() => undefined);
  fail(e);
}
if (json) {
  await run.pool.closeAll();
  process.exit(exitCodeFor(run.hostState.values(), run.signal.interrupted));
}
await run.exit();
