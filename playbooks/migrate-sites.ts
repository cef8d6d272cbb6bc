// Migrate a batch of sites from a plan:  npx tsx playbooks/migrate-sites.ts --plan migrations.yml [--concurrency N]
// The plan (roles/migrate/plan.ts) lists sources and target domains; each site goes through its own recorded
// states (a rerun resumes each where it stood, a finished cutover is never redone); --check says what each would do.
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run } from '../lib/play.ts';
import { MIGRATE_OPTIONS, jobsOptions, runJobs } from '../roles/migrate/cli.ts';
import { loadPlan } from '../roles/migrate/plan.ts';

const CMD: CommandSpec = {
  name: 'migrate-sites.ts',
  summary: `Migrates the sites of a plan file (migrations.yml: sources and target domains), N at a time, each through
inspect → copy → rewrite → verify → cutover → done; a rerun resumes every site where it stood.`,
  options: [
    { name: 'plan', type: 'string', arg: 'FILE', help: 'the plan (required)' },
    { name: 'concurrency', type: 'integer', arg: 'N', default: 2, min: 1, max: 100, help: 'sites migrated at once' },
    ...MIGRATE_OPTIONS,
  ],
};
try {
  const p = parseOrExit(process.argv.slice(2), CMD);
  const o = p.opts as Record<string, string | number | boolean | undefined>;
  if (typeof o.plan !== 'string') throw new InputError('--plan is required (see --help)');
  const jobs = loadPlan(o.plan);
  const run = Run.fromParsed(p, { name: 'migrate-sites' });
  const code = await runJobs(run, jobs, jobsOptions(o, p.flags.check, Number(o.concurrency)));
  process.exit(code);
} catch (e) {
  fail(e);
}
