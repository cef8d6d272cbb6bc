// The DR drill:  node --import tsx playbooks/dr-drill.ts [--sample N | --site ID,...] [--markdown FILE] [--no-stack]
// A sample of sites restored from the second region's store ONLY (backup_replica_* in the inventory, the replica's
// keys in .env) into a scratch database and a scratch directory (on the Gluster volume), verified like the weekly
// restore test (checksums, row counts, file hashes against the live site), then served by a scratch stack of the
// site on the farm's swarm (roles/wp-site/scratch.ts: no public router; its home page and newest post checked
// through its nginx), and everything scratch removed; the RTO of each site measured, restore start → scratch site
// answering (roles/backup/drill.ts). --no-stack: restore and verify only (the scratch directory in /tmp).
// The report: dr-drill.md in the run's directory (and --markdown FILE), the JSON report's data.drDrill
// (report.json in the run's directory, --json FILE). Quarterly on the controller (backup.ts --install-timers).
// Exit 0 every sampled site restored and verified, 2 one failed (the others still ran), 4 bad input.
import { writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { EXIT, InputError } from '../lib/errors.ts';
import { groupMembers } from '../lib/inventory.ts';
import { Run } from '../lib/play.ts';
import { mask } from '../lib/secrets.ts';
import { BACKUP_OPTIONS, backupContext } from '../roles/backup/cli.ts';
import { drillMarkdown, drillSite, sampleSites, type DrillReport, type DrillSite } from '../roles/backup/drill.ts';
import { scratchSiteRole, type ScratchSiteCheck } from '../roles/wp-site/scratch.ts';

const CMD: CommandSpec = {
  name: 'dr-drill.ts',
  summary: `Restores a sample of sites from the second region's store only (the replica) into scratch, verifies them like the
restore test (checksums, row counts, file hashes), measures the RTO of each site and writes the report (markdown + JSON).`,
  options: [
    { name: 'sample', type: 'integer', arg: 'N', default: 3, min: 1, max: 10_000, help: 'sites drawn at random' },
    { name: 'site', type: 'list', arg: 'ID,...', help: 'these sites instead of a random sample' },
    { name: 'markdown', type: 'string', arg: 'FILE', help: 'also write the markdown report there' },
    {
      name: 'no-stack',
      type: 'boolean',
      help: 'restore and verify only: no scratch stack on the swarm (the RTO then ends at the data restored)',
    },
    ...BACKUP_OPTIONS,
  ],
};
try {
  const p = parseOrExit(process.argv.slice(2), CMD);
  const o = p.opts as { sample: number; site?: string[]; markdown?: string; 'no-stack': boolean; local: boolean; 'sites-dir'?: string };
  const withStack = !o['no-stack'];
  if (withStack && o.local) throw new InputError('--local has no swarm to deploy scratch stacks on: add --no-stack');
  // bad input before the run starts: the replica's settings, the sites
  const ctx = await backupContext(p.flags, { local: o.local, sitesDir: o['sites-dir'] });
  let code: number = EXIT.OK;
  try {
    const replica = ctx.replicaStore();
    const ids = o.site
      ? o.site.map((id) => ctx.site(id).id)
      : sampleSites(
          ctx.sites.map((s) => s.id),
          o.sample,
        );
    if (!ids.length) throw new InputError(`no site to drill: ${ctx.sitesDir} has no site record`);
    const ageIdentity = ctx.settings.identity();
    if (withStack && (!ctx.inventory.groups.has('managers') || !groupMembers(ctx.inventory, 'managers').length))
      throw new InputError(`${ctx.inventory.file} has no group managers to deploy the scratch stacks on (or: --no-stack)`);
    const run = Run.fromParsed(p, { name: 'dr-drill', lock: false });
    const startedAt = new Date();
    run.phase(`DR drill: ${ids.length} of ${ctx.sites.length} site(s) from the replica ${replica.endpoint}/${replica.bucket}`);
    const sites: DrillSite[] = [];
    for (const id of ids) {
      if (run.interrupted) break;
      const s = ctx.site(id);
      run.say(`${id}: restoring from the replica into scratch …`);
      try {
        const r = await drillSite({
          site: id,
          replica,
          ageIdentity,
          db: { shell: await ctx.dbShell(), target: ctx.dbTarget(s) },
          files: {
            shell: await ctx.filesShell(),
            access: await ctx.replicaFilesAccess(),
            target: ctx.filesTarget(s),
            // a scratch stack's tasks run on any Gluster client: its files on the volume (a dot name: never a site id)
            scratchDir: `${withStack ? `${ctx.sitesPath}/.` : '/tmp/'}wpfarm-drdrill-${id}-${randomBytes(6).toString('hex')}`,
          },
          now: startedAt,
          scratchStack: withStack
            ? async ({ db, filesDir }) => {
                run.say(`${id}: restored and verified; scratch stack on the swarm …`);
                let check: ScratchSiteCheck | undefined;
                await run.role(scratchSiteRole({ site: s, db, filesDir }, (r) => (check = r)));
                if (!check) throw new Error('the scratch stack step did not run (no manager answered)');
                return check;
              }
            : undefined,
        });
        sites.push(r);
        const rto = `RTO ${(r.rtoMs / 1000).toFixed(1)} s (${r.rtoUntil})`;
        const figures = `${rto}, ${r.db?.tables ?? 0} tables, ${r.db?.rows ?? 0} rows, ${r.files?.files ?? 0} files`;
        run.say(`${id}: ${r.ok ? 'ok' : `FAILED: ${r.problems.join('; ')}`} (${figures})`);
      } catch (e) {
        const msg = mask((e as Error).message);
        sites.push({ site: id, ok: false, problems: [msg], rtoMs: 0, wallMs: 0 });
        run.say(`${id}: FAILED: ${msg}`);
      }
    }
    const report: DrillReport = {
      version: 1,
      startedAt: startedAt.toISOString(),
      endedAt: new Date().toISOString(),
      replica: `${replica.endpoint}/${replica.bucket}`,
      sitesTotal: ctx.sites.length,
      sampled: ids,
      ok: sites.length === ids.length && sites.every((s) => s.ok),
      maxRtoMs: Math.max(0, ...sites.map((s) => s.rtoMs)),
      sites,
    };
    const md = drillMarkdown(report);
    for (const f of [join(run.runDir, 'dr-drill.md'), o.markdown].filter((x): x is string => !!x)) writeFileSync(f, md, { mode: 0o644 });
    run.data('drDrill', report);
    run.say(`DR drill ${report.ok ? 'passed' : 'FAILED'}: report ${join(run.runDir, 'dr-drill.md')}`);
    const runCode = await run.finish();
    code = runCode !== EXIT.OK ? runCode : report.ok ? EXIT.OK : EXIT.FAILED;
  } finally {
    await ctx.close();
  }
  process.exit(code);
} catch (e) {
  fail(e);
}
