// Migrate one existing WordPress site into the farm:
//   npx tsx playbooks/migrate-site.ts --from ssh://user@host[:port]/path/to/wordpress --domain example.com [--new-domain ...]
// States inspect → copy → rewrite → verify → cutover → done, recorded in --state-dir: a rerun continues where the site
// stood; --check says what it would do (inspect only reads); --rollback takes the source out of maintenance.
import { fail, parseOrExit, type CommandSpec } from '../lib/cli.ts';
import { InputError } from '../lib/errors.ts';
import { Run } from '../lib/play.ts';
import { checkDomain } from '../roles/wp-site/site.ts';
import { MIGRATE_OPTIONS, jobsOptions, runJobs } from '../roles/migrate/cli.ts';
import { parseSourceUrl } from '../roles/migrate/source.ts';

const CMD: CommandSpec = {
  name: 'migrate-site.ts',
  summary: `Migrates one WordPress site from a legacy host into the farm: inspect → copy → rewrite → verify → cutover → done,
each state recorded; a rerun resumes. The source is only read, but for a maintenance flag at cutover (--rollback removes it).`,
  options: [
    { name: 'from', type: 'string', arg: 'URL', help: 'ssh://user@host[:port]/path/to/wordpress (required)' },
    { name: 'domain', type: 'string', arg: 'DOMAIN', help: 'the site’s domain today (required)' },
    { name: 'new-domain', type: 'string', arg: 'DOMAIN', help: 'its name in the farm (default: the same)' },
    ...MIGRATE_OPTIONS,
  ],
};
try {
  const p = parseOrExit(process.argv.slice(2), CMD);
  const o = p.opts as Record<string, string | boolean | undefined>;
  if (typeof o.from !== 'string') throw new InputError('--from is required: ssh://user@host[:port]/path/to/wordpress');
  if (typeof o.domain !== 'string') throw new InputError('--domain is required');
  const source = parseSourceUrl(o.from);
  if (typeof source === 'string') throw new InputError(`--from: ${source}`);
  for (const [k, v] of [
    ['domain', o.domain],
    ['new-domain', o['new-domain']],
  ] as const) {
    const why = typeof v === 'string' ? checkDomain(v) : null;
    if (why) throw new InputError(`--${k}: ${why}`);
  }
  const run = Run.fromParsed(p, { name: 'migrate-site' });
  const domain = o.domain;
  const newDomain = typeof o['new-domain'] === 'string' ? o['new-domain'] : domain;
  const code = await runJobs(run, [{ domain, newDomain, source }], jobsOptions(o, p.flags.check));
  process.exit(code);
} catch (e) {
  fail(e);
}
