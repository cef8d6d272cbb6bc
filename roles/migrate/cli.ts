// What playbooks/migrate-site.ts and playbooks/migrate-sites.ts share: the options, the farm target of a site
// (from the inventory, as the wp-site role places a site: its database and user on the Galera writer's admin
// host, its directory on the Gluster mount), and the loop over sites (bounded concurrency, one line per state).
import pLimit from 'p-limit';
import type { OptionSpec } from '../../lib/cli.ts';
import { EXIT, InputError } from '../../lib/errors.ts';
import type { Run } from '../../lib/play.ts';
import { mask, registerSecret } from '../../lib/secrets.ts';
import { dnsFromEnv } from '../../lib/cloud/cloudflare.ts';
import { SITES_DIR_OPTION, siteDnsSettings, siteIdFor } from '../wp-site/playbook-util.ts';
import type { MigrateDns } from './dns.ts';
import { removeSiteSwarmObjects, siteSwarmObjects, wpSiteSettings } from '../wp-site/reconcile.ts';
import wpSite from '../wp-site/role.ts';
import { siteDbName, stackName } from '../wp-site/stack.ts';
import { sh } from '../../lib/shell.ts';
import { settings as glusterSettings } from '../gluster/model.ts';
import type { Connection, ExecOptions } from '../../lib/types.ts';
import { STACK_DIR } from '../../lib/ops/docker.ts';
import { type FarmSite, farmSite } from './farm.ts';
import { FARM_WORDPRESS, migrateSite, rollbackSite } from './migrate.ts';
import { SiteRefused, type SourceUrl, sourceHost } from './source.ts';
import type { Target } from './target.ts';

export const MIGRATE_OPTIONS: readonly OptionSpec[] = [
  { name: 'state-dir', type: 'string', arg: 'DIR', default: '.wpfarm/migrate', help: 'where each site’s migration state is recorded' },
  {
    name: 'key',
    type: 'string',
    arg: 'FILE',
    help: 'SSH private key for the legacy hosts (default: the plan’s, else the agent-less default)',
  },
  { name: 'farm-wordpress', type: 'string', arg: 'VERSION', help: `WordPress of the farm’s image (default ${FARM_WORDPRESS})` },
  { name: 'until', type: 'string', arg: 'STATE', choices: ['inspect', 'copy', 'rewrite', 'verify'], help: 'stop after this state' },
  { name: 'rollback', type: 'boolean', help: 'take the source out of maintenance (after a cutover)' },
  {
    name: 'verify-login',
    type: 'string',
    arg: 'USER',
    help: 'verify logs in as USER on the old and the new site; the password from $WPFARM_MIGRATE_LOGIN_PASSWORD',
  },
  { ...SITES_DIR_OPTION, default: undefined, defaultHelp: 'vars.wp_sites_dir, else inventory/sites' },
];

export interface SiteJob {
  domain: string;
  newDomain: string;
  source: SourceUrl;
  key?: string;
  farmWordpress?: string;
}

/** The farm target of a site: database/user as the wp-site role names them, the site's Gluster directory. */
export async function farmTarget(run: Run, newDomain: string): Promise<Target> {
  const s = wpSiteSettings({ vars: run.inventory.vars, hosts: (p) => run.hostsFor(p) });
  const id = siteIdFor(newDomain);
  const host = (name: string) => {
    const h = run.inventory.hosts.get(name);
    if (!h) throw new InputError(`no host ${name} in the inventory`);
    return h;
  };
  const [dbConn, filesConn] = await Promise.all([run.pool.get(host(s.dbAdminHost)), run.pool.get(host(s.filesHost))]);
  const name = siteDbName(id);
  return {
    describe: `database ${name} on ${s.dbAdminHost}, files on ${s.filesHost}`,
    // the password is the site's secret store entry's, set by migrateSite() when the farm site is made (copy)
    db: { conn: dbConn, socketPath: '/run/mysqld/mysqld.sock', name, user: name, userHost: s.dbUserHost, password: '' },
    // every file owned by the site's owner (www-data of the images), as the gluster role makes the site's directories
    files: {
      conn: filesConn,
      contentDir: `${s.glusterMount.replace(/\/+$/, '')}/${id}`,
      owner: glusterSettings(run.inventory.vars).siteOwner,
    },
  };
}

/** Run a command in a container of a swarm service, on a node that runs one (found from the first manager). */
async function serviceExec(run: Run, managers: Connection[], service: string, args: string[], stdin?: string): Promise<string> {
  const ps = await managers[0]!.exec(
    sh`docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' ${service}`,
  );
  const node = ps.stdout
    .split('\n')
    .filter((l) => / Running /.test(` ${l} `))
    .map((l) => l.split(' ')[0]!)[0];
  const h = node ? run.inventory.hosts.get(node) : undefined;
  if (!h) throw new Error(`no running task of ${service}${node ? ` (node ${node} is not in the inventory)` : ''}`);
  const c = await run.pool.get(h);
  const cmd = [
    sh`cid=$(docker ps -q --filter ${`label=com.docker.swarm.service.name=${service}`} | head -n1)`,
    sh`[ -n "$cid" ] || { echo ${`no container of ${service} on ${node}`} >&2; exit 97; }`,
    sh`docker exec -i "$cid" ${args}`,
  ].join('; ');
  return (await c.exec(cmd, { stdin: stdin ?? '' })).stdout;
}

/** The wp-site role runs for one site at a time (it reads the site from the hosts' vars); copies run concurrently. */
const roleQueue = pLimit(1);

/** The farm site a migration makes: record + secret store entry (./farm.ts); its stack by the wp-site role. */
export async function farmSiteFor(run: Run, newDomain: string, sitesDir: string, say: (m: string) => void): Promise<FarmSite> {
  const id = siteIdFor(newDomain);
  const mgmt = run.inventory.vars.management_cidrs;
  const managers = await Promise.all(run.hostsFor('managers').map((h) => run.pool.get(h)));
  const deploy = () =>
    roleQueue(async () => {
      for (const h of run.inventory.hosts.values()) Object.assign(h.vars, { wp_sites_dir: sitesDir, wp_sites_only: id, wp_site_full: id });
      run.phase(`site ${id} (${newDomain}): the wp-site role`);
      const r = await run.role(wpSite);
      const bad = r.hosts.filter((h) => h.status === 'failed' || h.status === 'unreachable');
      if (bad.length || r.aborted || run.signal.interrupted) {
        if (run.signal.interrupted) throw new Error(`the wp-site role for ${id}: interrupted`);
        throw new Error(`the wp-site role for ${id}: ${r.aborted ?? bad.map((h) => `${h.host} ${h.status}: ${h.error ?? ''}`).join('; ')}`);
      }
      const ran = r.results.filter((x) => x.status !== 'skipped');
      return ran.length
        ? { role: 'wp-site', changed: r.results.filter((x) => x.status === 'changed').map((x) => x.step) }
        : { role: 'wp-site', skipped: 'every step of the role skipped (--tags/--skip-tags): the stack is not deployed' };
    });
  const stack = stackName(id);
  const cidrs = Array.isArray(mgmt) ? mgmt.map(String) : [];
  return farmSite({
    id,
    domain: newDomain,
    // the site's nginx as the edge reaches it: by its service name over the overlay (a trusted proxy address for
    // its real_ip), with Host, X-Forwarded-Proto https and, when the site has an admin allowlist (the management
    // ranges), X-Forwarded-For an address of it, as for an operator's request: wp-login.php answers only those
    request: {
      url: `http://${stack}_nginx:8080`,
      curlArgs: [
        ...['-H', `Host: ${newDomain}`, '-H', 'X-Forwarded-Proto: https'],
        ...(cidrs[0] ? ['-H', `X-Forwarded-For: ${cidrs[0].split('/')[0]}`] : []),
      ],
      run: (script, stdin) => serviceExec(run, managers, `${stack}_nginx`, ['bash', '-c', script], stdin),
    },
    flushCache: async () => {
      await serviceExec(run, managers, `${stack}_redis`, ['redis-cli', 'FLUSHALL']);
    },
    sitesDir,
    managementCidrs: Array.isArray(mgmt) ? cidrs : undefined,
    managers,
    deploy,
    undeploy: async () => {
      const c = managers[0]!;
      const ctx = { exec: (cmd: string, opts?: ExecOptions) => c.exec(cmd, opts), log: say };
      const have = await siteSwarmObjects(ctx, id);
      const done: string[] = [];
      if (have.services || have.network || have.secrets) {
        await removeSiteSwarmObjects(ctx, id, have);
        done.push(`stack ${stack} (${have.services} services), its network and ${have.secrets} secret version(s) removed`);
      }
      for (const m of managers) {
        const r = await m.exec(sh`f=${`${STACK_DIR}/${stack}.yml`}; [ -e "$f" ] && rm -f -- "$f" && echo removed; true`);
        if (r.stdout.includes('removed')) done.push(`deploy state ${STACK_DIR}/${stack}.yml on ${m.host.name} removed`);
      }
      return done;
    },
    log: say,
  });
}

export interface JobsOptions {
  stateDir: string;
  concurrency: number;
  check: boolean;
  rollback: boolean;
  until?: 'inspect' | 'copy' | 'rewrite' | 'verify';
  key?: string;
  farmWordpress?: string;
  sitesDir?: string;
  login?: { user: string; password: string };
}

/** The JobsOptions of the options both migrate playbooks share (MIGRATE_OPTIONS), as parsed by lib/cli.ts. */
export function jobsOptions(opts: Record<string, unknown>, check: boolean, concurrency = 1): JobsOptions {
  return {
    stateDir: String(opts['state-dir']),
    concurrency,
    check,
    rollback: opts.rollback === true,
    until: opts.until as JobsOptions['until'],
    key: typeof opts.key === 'string' ? opts.key : undefined,
    farmWordpress: typeof opts['farm-wordpress'] === 'string' ? opts['farm-wordpress'] : undefined,
    sitesDir: typeof opts['sites-dir'] === 'string' ? opts['sites-dir'] : undefined,
    login: loginOf(opts['verify-login']),
  };
}

/** --verify-login USER with $WPFARM_MIGRATE_LOGIN_PASSWORD (registered as a secret: masked in every output) */
function loginOf(user: unknown): JobsOptions['login'] {
  if (typeof user !== 'string' || !user) return undefined;
  const password = process.env.WPFARM_MIGRATE_LOGIN_PASSWORD;
  if (!password) throw new InputError('--verify-login: set the password in $WPFARM_MIGRATE_LOGIN_PASSWORD');
  registerSecret(password);
  return { user, password };
}

/** Migrate (or roll back, or --check) each site; one line per state and per site. Returns the exit code. */
export async function runJobs(run: Run, jobs: SiteJob[], o: JobsOptions): Promise<number> {
  const say = (m: string) => run.say(mask(m));
  const limit = pLimit(Math.max(1, o.concurrency));
  const v = run.inventory.vars.wp_sites_dir;
  const sitesDir = o.sitesDir ?? (typeof v === 'string' && v ? v : 'inventory/sites');
  // DNS as add-site does it: through Cloudflare when the inventory has the section (token: CLOUDFLARE_API_TOKEN)
  const dnsAt = siteDnsSettings(run.inventory.file, run.inventory.vars);
  let dns: MigrateDns | undefined;
  if ('skipped' in dnsAt) say(`DNS: ${dnsAt.skipped}: each site's name is switched by hand at its cutover`);
  else dns = { dns: dnsFromEnv(), zone: dnsAt.zone, edge: dnsAt.target };
  if (!o.check) await run.takeLock();
  const outcome = new Map<string, { code: number; text: string }>();
  await Promise.all(
    jobs.map((j) =>
      limit(async () => {
        if (run.signal.interrupted) return;
        try {
          const sourceConn = await run.pool.get(sourceHost(j.domain, j.source, j.key ?? o.key));
          const base = { domain: j.domain, source: j.source, sourceConn, stateDir: o.stateDir, check: o.check, dns };
          const r = o.rollback
            ? await rollbackSite(base)
            : await migrateSite({
                ...base,
                newDomain: j.newDomain,
                target: await farmTarget(run, j.newDomain),
                farm: await farmSiteFor(run, j.newDomain, sitesDir, say),
                farmWpVersion: j.farmWordpress ?? o.farmWordpress,
                until: o.until,
                login: o.login,
                log: say,
              });
          const text = r.plan ?? `${r.state.status}${r.state.completed ? ` (last state: ${r.state.completed})` : ''}`;
          outcome.set(j.domain, { code: EXIT.OK, text });
          say(`${j.domain}: ${text}`);
        } catch (e) {
          const code = e instanceof SiteRefused || e instanceof InputError ? EXIT.BAD_INPUT : EXIT.FAILED;
          const msg = (e as Error).message.replace(new RegExp(`^site ${j.domain.replace(/\./g, '\\.')}: `), '');
          outcome.set(j.domain, { code, text: `${code === EXIT.BAD_INPUT ? 'refused' : 'failed'}: ${msg}` });
          say(`${j.domain}: ${code === EXIT.BAD_INPUT ? 'refused' : 'failed'}: ${msg}`);
        }
      }),
    ),
  );
  say('\n== migrations ==');
  for (const j of jobs) say(`${j.domain.padEnd(32)} ${outcome.get(j.domain)?.text ?? 'not started (interrupted)'}`);
  const codes = [...outcome.values()].map((x) => x.code);
  const code = run.signal.interrupted
    ? EXIT.INTERRUPTED
    : codes.includes(EXIT.FAILED)
      ? EXIT.FAILED
      : codes.includes(EXIT.BAD_INPUT)
        ? EXIT.BAD_INPUT
        : EXIT.OK;
  const finish = await run.finish();
  return code || finish;
}
