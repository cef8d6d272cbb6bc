// galera: MariaDB + galera-4 (Debian packages) on the db group, mariabackup SST, one bootstrap, joins,
// recovery after a full shutdown or crash, admin/monitoring users (mysql2 through the SSH connection),
// HAProxy single-writer endpoint on every db host, health check. See docs/roles/galera.md.
//
// Per host (in parallel): packages, mariadb.socket masked, configuration. Then ONE task for the whole
// cluster (runOnce, after every db host of the run is prepared): it reads every node's state through
// ctx.hostContext(), decides (roles/galera/recovery.ts) and acts: bootstrap exactly one node, start the
// others one at a time, rolling restart of running nodes whose configuration changed.
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BarrierResult, HostSpec, Role, Step, StepContext, StepResult, TaskOutcome } from '../../lib/types.ts';
import { connOf, nestedOutputs, nestedProbe, task } from '../../lib/ops/base.ts';
import { apt } from '../../lib/ops/apt.ts';
import path from 'node:path';
import { copy, directory, file } from '../../lib/ops/files.ts';
import { systemd } from '../../lib/ops/systemd.ts';
import { renderTemplate, template, templatePath } from '../../lib/ops/template.ts';
import { sections, sh } from '../../lib/shell.ts';
import { lookupEnv } from '../../lib/env.ts';
import { withMysql, rows, type Db } from '../../lib/mysql.ts';
import { decide, parseGrastate, parseRecoveredPosition, withSafeToBootstrap, type NodeView } from './recovery.ts';
import { str } from '../../lib/vars.ts';
import { galeraRegions } from './regions.ts';
import { endpointSteps, endpointVars, reloadHandler, siteNodes } from './endpoint.ts';

/** templates/galera/<name> */
const TPL = (n: string) => templatePath('galera', n);

export const SOCKET = '/run/mysqld/mysqld.sock';
export const SECRETS_FILE = '/etc/mysql/wpfarm-secrets';
export const GALERA_CNF = '/etc/mysql/mariadb.conf.d/60-galera.cnf';
export const SST_CNF = '/etc/mysql/mariadb.conf.d/61-galera-sst.cnf';
export const DRAIN_DROPIN = '/etc/systemd/system/mariadb.service.d/50-wpfarm-drain.conf';
/** a node that joined by SST records its system tables as current before debian-start (no mysql_upgrade then) */
export const UPGRADE_INFO_DROPIN = '/etc/systemd/system/mariadb.service.d/55-wpfarm-upgrade-info.conf';
export const UPGRADE_INFO_SCRIPT = '/usr/local/lib/wpfarm/galera-upgrade-info';
const DATADIR = '/var/lib/mysql';
/** the probes' reads of the system tables wait 5 s at most for a lock (else the server keeps the query waiting) */
export const LOCK_WAIT = '--init-command=SET SESSION lock_wait_timeout=5';
export const GALERA_PACKAGES = ['mariadb-server', 'mariadb-client', 'mariadb-backup', 'galera-4', 'socat', 'haproxy'];

/** Secrets the role needs; generated on the first run, kept on the first db host (root 0600). */
const SECRET_KEYS = ['sst_password', 'admin_password', 'exporter_password'] as const;
type SecretKey = (typeof SECRET_KEYS)[number];
export type Secrets = Record<SecretKey, string>;

// ---------------------------------------------------------------------------------------------------
// Settings from the inventory

export interface Settings {
  group: string;
  clusterName: string;
  sstMethod: string;
  adminUser: string;
  adminHost: string;
  exporterUser: string;
  checkUser: string;
  writerPort: number;
  autostart: boolean;
  force?: string;
  prepTimeoutMs: number;
}

/** "10.77.0.0/24" → "10.77.0.0/255.255.255.0" (MariaDB's host netmask form); undefined when not IPv4 CIDR. */
export function cidrToMysqlHost(cidr: string): string | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(cidr.trim());
  if (!m) return undefined;
  const bits = Number(m[5]);
  if (bits < 0 || bits > 32) return undefined;
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  const ip = [1, 2, 3, 4].map((i) => Number(m[i]));
  if (ip.some((o) => o > 255)) return undefined;
  const ipn = ((ip[0]! << 24) | (ip[1]! << 16) | (ip[2]! << 8) | ip[3]!) >>> 0;
  const net = (ipn & mask) >>> 0;
  const dot = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
  return `${dot(net)}/${dot(mask)}`;
}

export function settings(vars: Record<string, unknown>): Settings {
  const cidr = typeof vars.private_cidr === 'string' ? vars.private_cidr : '';
  return {
    group: str(vars.galera_group, 'db'),
    clusterName: str(vars.galera_cluster_name, 'wpfarm'),
    sstMethod: str(vars.galera_sst_method, 'mariabackup'),
    adminUser: str(vars.galera_admin_user, 'wpfarm_admin'),
    adminHost: str(vars.galera_admin_host, cidrToMysqlHost(cidr) ?? 'localhost'),
    exporterUser: str(vars.galera_exporter_user, 'exporter'),
    checkUser: str(vars.galera_check_user, 'haproxy_check'),
    writerPort: typeof vars.galera_writer_port === 'number' ? vars.galera_writer_port : 3307,
    autostart: vars.galera_autostart === true,
    force: typeof vars.galera_force_bootstrap === 'string' ? vars.galera_force_bootstrap : undefined,
    prepTimeoutMs: (typeof vars.galera_prep_timeout === 'number' ? vars.galera_prep_timeout : 900) * 1000,
  };
}

/** The address Galera and MariaDB use on a host: its private address when the inventory gives one. */
export const nodeAddress = (h: HostSpec): string => str(h.vars.private_address, h.address);

// ---------------------------------------------------------------------------------------------------
// Node state

export interface NodeState extends NodeView {
  host: HostSpec;
  installed: boolean;
  active: string;
  grastateText: string;
  gvwEmpty: boolean;
  wsrep: Record<string, string>;
}

const q = (v: unknown): string => String(v ?? '');

/** A node's state in one read-only script (parseNode reads it): the cluster step's, the health step's probe. */
export const NODE_SCRIPT = [
  'echo @@installed; command -v mariadbd || true',
  'echo @@active; systemctl is-active mariadb 2>/dev/null || true',
  sh`echo @@grastate; cat ${`${DATADIR}/grastate.dat`} 2>/dev/null || true`,
  sh`echo @@gvw; if [ -e ${`${DATADIR}/gvwstate.dat`} ] && [ ! -s ${`${DATADIR}/gvwstate.dat`} ]; then echo empty; fi`,
  'echo @@wsrep',
  sh`if [ -S ${SOCKET} ]; then timeout 10 mariadb --connect-timeout=5 -NB -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_status','wsrep_cluster_size','wsrep_ready','wsrep_local_state','wsrep_local_state_comment','wsrep_cluster_state_uuid','wsrep_last_committed')" 2>/dev/null || true; fi`,
].join('\n');

async function readNode(ctx: StepContext, h: HostSpec): Promise<NodeState> {
  return parseNode((await ctx.exec(NODE_SCRIPT, { nothrow: true, readOnly: true })).stdout, h);
}

export function parseNode(out: string, h: HostSpec): NodeState {
  const sec = new Map<string, string>();
  let cur = '';
  for (const line of out.split('\n')) {
    const m = /^@@(\w+)$/.exec(line);
    if (m) {
      cur = m[1]!;
      sec.set(cur, '');
    } else if (cur) sec.set(cur, `${sec.get(cur)}${line}\n`);
  }
  const wsrep: Record<string, string> = {};
  for (const line of (sec.get('wsrep') ?? '').split('\n')) {
    const [k, v] = line.split('\t');
    if (k && v !== undefined) wsrep[k] = v;
  }
  const active = (sec.get('active') ?? '').trim();
  const running = active === 'active' || active === 'activating' || active === 'reloading';
  const grastateText = sec.get('grastate') ?? '';
  return {
    name: h.name,
    host: h,
    installed: (sec.get('installed') ?? '').trim() !== '',
    active,
    running,
    primary: running && wsrep.wsrep_cluster_status === 'Primary',
    grastate: parseGrastate(grastateText),
    grastateText,
    gvwEmpty: (sec.get('gvw') ?? '').trim() === 'empty',
    wsrep,
  };
}

/** Poll one node until it is Synced in a Primary component (or the time is up). */
async function waitSynced(ctx: StepContext, name: string, timeoutMs = 300_000): Promise<NodeState> {
  const h = ctx.hostContext(name).host;
  const t0 = Date.now();
  for (;;) {
    const n = await readNode(ctx.hostContext(name), h);
    if (n.primary && n.wsrep.wsrep_local_state === '4' && n.wsrep.wsrep_ready === 'ON') return n;
    if (Date.now() - t0 > timeoutMs)
      throw new Error(
        `${name}: not synced after ${Math.round(timeoutMs / 1000)} s (state ${n.active}, ${n.wsrep.wsrep_local_state_comment ?? 'no wsrep status'})`,
      );
    if (n.active === 'failed' || n.active === 'inactive')
      throw new Error(`${name}: mariadb is ${n.active} (see journalctl -u mariadb on ${name})`);
    await sleep(1000);
  }
}

// ---------------------------------------------------------------------------------------------------
// Users (mysql2 through the SSH connection, unix_socket auth as root)

export interface UserSpec {
  user: string;
  host: string;
  /** undefined: no password (the HAProxy check user) */
  password?: string;
  privileges: string[];
  grantOption?: boolean;
  on?: string;
}

export function userSpecs(s: Settings, secrets: Secrets, dbAddresses: string[]): UserSpec[] {
  return [
    { user: 'sst', host: 'localhost', password: secrets.sst_password, privileges: ['RELOAD', 'PROCESS', 'LOCK TABLES', 'BINLOG MONITOR'] },
    { user: s.adminUser, host: s.adminHost, password: secrets.admin_password, privileges: ['ALL PRIVILEGES'], grantOption: true },
    {
      user: s.exporterUser,
      host: 'localhost',
      password: secrets.exporter_password,
      privileges: ['PROCESS', 'REPLICATION CLIENT', 'SELECT'],
    },
    ...dbAddresses.map((a) => ({ user: s.checkUser, host: a, privileges: ['USAGE'] })),
  ];
}

/** Privileges granted ON *.* according to SHOW GRANTS lines (upper case, "ALL PRIVILEGES" kept whole). */
export function grantedPrivileges(grants: string[]): { privileges: Set<string>; grantOption: boolean } {
  const privileges = new Set<string>();
  let grantOption = false;
  for (const g of grants) {
    const m = /^GRANT (.+?) ON \*\.\* TO /i.exec(g);
    if (!m) continue;
    for (const p of m[1]!.split(',')) privileges.add(p.trim().toUpperCase());
    if (/ WITH .*GRANT OPTION/i.test(g)) grantOption = true;
  }
  // REPLICATION CLIENT is shown as BINLOG MONITOR since MariaDB 10.5 (an alias)
  if (privileges.has('BINLOG MONITOR')) privileges.add('REPLICATION CLIENT');
  return { privileges, grantOption };
}

/** MariaDB's PASSWORD() (mysql_native_password): '*' and the upper-case hex of SHA1(SHA1(password)). */
export function nativePasswordHash(password: string): string {
  const inner = createHash('sha1').update(password, 'utf8').digest();
  return `*${createHash('sha1').update(inner).digest('hex').toUpperCase()}`;
}

const sqlString = (v: string): string => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;

/**
 * The users step's read-only probe (on one node): its cluster status, then, on a primary node, every user's
 * SHA-256 of its authentication string (not the hash itself) and its grants (usersInPlace reads them).
 */
export function usersProbeScript(specs: Pick<UserSpec, 'user' | 'host'>[]): string {
  // a 5 s lock wait: a node whose system tables are locked answers nothing soon, and leaves no query waiting there
  const q = (sql: string) => sh`timeout 10 mariadb --connect-timeout=5 ${LOCK_WAIT} -NB -e ${sql} 2>/dev/null`;
  return [
    'echo @@status',
    `${q("SHOW GLOBAL STATUS LIKE 'wsrep_cluster_status'")} | cut -f2`,
    'echo @@users',
    q('SELECT User, Host, SHA2(authentication_string, 256) FROM mysql.user'),
    ...specs.map(
      (u, i) => `echo @@g${i}
${q(`SHOW GRANTS FOR ${sqlString(u.user)}@${sqlString(u.host)}`)}`,
    ),
    'true',
  ].join('\n');
}

/** true when usersProbeScript's output shows a primary node where every user has its password and privileges. */
export function usersInPlace(out: string, specs: UserSpec[]): boolean {
  const sec = sections(out);
  if ((sec.get('status') ?? '').trim() !== 'Primary') return false;
  const stored = new Map<string, string>();
  for (const line of (sec.get('users') ?? '').split('\n')) {
    const [user, host, sha] = line.split('\t');
    if (user !== undefined && host !== undefined && sha !== undefined) stored.set(`${user}\t${host}`, sha.trim());
  }
  return specs.every((u, i) => {
    const want = createHash('sha256')
      .update(u.password === undefined ? '' : nativePasswordHash(u.password))
      .digest('hex');
    if (stored.get(`${u.user}\t${u.host}`) !== want) return false;
    const have = grantedPrivileges((sec.get(`g${i}`) ?? '').split('\n').filter((l) => l.trim()));
    const missing = have.privileges.has('ALL PRIVILEGES') ? [] : u.privileges.filter((p) => p !== 'USAGE' && !have.privileges.has(p));
    return !missing.length && (!u.grantOption || have.grantOption);
  });
}

/** Make users exist with their password and privileges; returns change lines (no secrets). */
async function ensureUsers(db: Db, specs: UserSpec[], check: boolean): Promise<string[]> {
  const changes: string[] = [];
  for (const u of specs) {
    const who = `'${u.user}'@'${u.host}'`;
    const [row] = await rows(
      db,
      "SELECT COUNT(*) AS n, MAX(authentication_string = IF(? IS NULL, '', PASSWORD(?))) AS pw FROM mysql.user WHERE User = ? AND Host = ?",
      [u.password ?? null, u.password ?? '', u.user, u.host],
    );
    const exists = Number(row?.n ?? 0) > 0;
    if (!exists) {
      changes.push(`create user ${who}`);
      if (!check) {
        if (u.password !== undefined) await db.query('CREATE USER ?@? IDENTIFIED BY ?', [u.user, u.host, u.password]);
        else await db.query('CREATE USER ?@?', [u.user, u.host]);
      }
    } else if (Number(row?.pw ?? 0) !== 1) {
      changes.push(`set password of ${who}`);
      if (!check) {
        if (u.password !== undefined) await db.query('ALTER USER ?@? IDENTIFIED BY ?', [u.user, u.host, u.password]);
        else await db.query("ALTER USER ?@? IDENTIFIED VIA mysql_native_password USING ''", [u.user, u.host]);
      }
    }
    const want = u.privileges.filter((p) => p !== 'USAGE');
    let have = { privileges: new Set<string>(), grantOption: false };
    if (exists) {
      const g = await rows(db, 'SHOW GRANTS FOR ?@?', [u.user, u.host]);
      have = grantedPrivileges(g.map((r) => String(Object.values(r)[0])));
    }
    const missing = have.privileges.has('ALL PRIVILEGES') ? [] : want.filter((p) => !have.privileges.has(p));
    const needGrantOption = !!u.grantOption && !have.grantOption;
    if (missing.length || needGrantOption) {
      changes.push(`grant ${(missing.length ? missing : want).join(', ')}${u.grantOption ? ' WITH GRANT OPTION' : ''} to ${who}`);
      if (!check) {
        // privilege names come from this file (a fixed list), never from input: safe to place in the statement
        await db.query(`GRANT ${(missing.length ? missing : want).join(', ')} ON *.* TO ?@?${u.grantOption ? ' WITH GRANT OPTION' : ''}`, [
          u.user,
          u.host,
        ]);
      }
    }
  }
  return changes;
}

// ---------------------------------------------------------------------------------------------------
// Helpers

/** What each db host tells the cluster task at the barrier 'galera prepared'. */
interface Prepared {
  configChanged: boolean;
  /** its state as read with the role's probes (the cluster step's no-change answer) */
  node?: NodeState;
}

function fromResult(r: StepResult): TaskOutcome {
  if (r.status === 'failed') throw new Error(r.error ?? `${r.step} failed`);
  return { changed: r.status === 'changed', changes: r.changes, diff: r.diff, result: r.result };
}

const secretsOf = (ctx: StepContext): Secrets => {
  const s = ctx.registered.galera_secrets?.result as Secrets | undefined;
  if (!s) throw new Error('galera secrets are not known (the secrets step did not run)');
  return s;
};

export function parseSecretsFile(text: string): Partial<Secrets> {
  const out: Partial<Secrets> = {};
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)=(.*)$/.exec(line.trim());
    if (m && (SECRET_KEYS as readonly string[]).includes(m[1]!) && m[2]) out[m[1] as SecretKey] = m[2];
  }
  return out;
}

const dbHosts = (ctx: StepContext, s: Settings): HostSpec[] => {
  const hs = ctx.hosts(s.group);
  if (!hs.length) throw new Error(`galera: the inventory group '${s.group}' has no hosts`);
  return hs;
};

// ---------------------------------------------------------------------------------------------------
// The cluster task

async function clusterTask(ctx: StepContext, s: Settings): Promise<TaskOutcome> {
  const hosts = dbHosts(ctx, s);
  // 1. every db host of this run is prepared (packages, configuration): they met at the barrier before this step
  const met = ctx.registered.galera_prepared?.result as BarrierResult<Prepared> | undefined;
  if (!met) throw new Error("galera: the step 'galera node prepared' did not run before the cluster step");
  const lost = Object.entries(met.missing).map(([name, why]) => `${name} (${why})`);
  if (lost.length) throw new Error(`failed before the cluster step: ${lost.join('; ')}: nothing started or stopped`);
  // hosts not part of this run (--limit) are read, never touched
  const inRun = new Set(Object.keys(met.arrived));
  const configChanged = new Set(
    Object.entries(met.arrived)
      .filter(([, p]) => p.configChanged)
      .map(([n]) => n),
  );
  const read = () => Promise.all(hosts.map((h) => readNode(ctx.hostContext(h.name), h)));
  // no-change answer: every db node's state as each read it with its probes, a primary component with every node in it
  const probed = hosts.map((h) => met.arrived[h.name]?.node);
  if (!configChanged.size && probed.every((n) => n !== undefined)) {
    const d = decide(probed as NodeState[], { force: s.force });
    if (d.kind === 'running' && !d.start.length) {
      ctx.log(`cluster: ${d.kind}: ${d.reason}`);
      return { changed: false, result: { decision: d }, reason: "every node runs in the primary component (read with the role's probes)" };
    }
  }
  let nodes = await read();
  const changes: string[] = [];
  const missing = nodes.filter((n) => !n.installed && inRun.has(n.name));
  if (missing.length && ctx.check) {
    return {
      changed: true,
      changes: [
        `bootstrap the new cluster on ${hosts[0]!.name}, then start ${hosts
          .slice(1)
          .map((h) => h.name)
          .join(', ')} (packages not installed yet)`,
      ],
    };
  }
  const mustAct = (name: string) => {
    if (!inRun.has(name)) throw new Error(`${name} must be acted on but is not part of this run (--limit)`);
  };
  const start = async (name: string) => {
    mustAct(name);
    changes.push(`start ${name} (join)`);
    if (ctx.check) return;
    const hc = ctx.hostContext(name);
    await removeEmptyGvw(hc, nodes.find((n) => n.name === name)!);
    await hc.exec('systemctl start mariadb', { timeoutMs: 900_000 });
    await waitSynced(ctx, name);
  };

  for (let round = 0; round < 4; round++) {
    const d = decide(nodes, { force: s.force });
    ctx.log(`cluster: ${d.kind}: ${d.reason}`);
    if (d.kind === 'unknown') throw new Error(`galera: ${d.reason}`);
    if (d.kind === 'stop-first') {
      changes.push(`stop ${d.nodes.join(', ')} (running without a primary component)`);
      if (ctx.check) return { changed: true, changes: [...changes, 'then recover the cluster from the most advanced node'] };
      for (const n of d.nodes) {
        mustAct(n);
        await ctx.hostContext(n).exec('systemctl stop mariadb', { timeoutMs: 300_000 });
      }
      nodes = await read();
      continue;
    }
    if (d.kind === 'recover') {
      changes.push(`recover positions with --wsrep-recover on ${d.nodes.join(', ')}`);
      if (ctx.check) return { changed: true, changes: [...changes, 'then bootstrap the most advanced node'] };
      for (const name of d.nodes) mustAct(name);
      // one InnoDB recovery per node, all nodes at once (each is local to its host)
      await Promise.all(
        d.nodes.map(async (name) => {
          const n = nodes.find((x) => x.name === name)!;
          const r = await ctx
            .hostContext(name)
            .exec(
              'log=$(mktemp /tmp/wsrep-recover.XXXXXX); chown mysql "$log"; mariadbd --user=mysql --wsrep-recover --log-error="$log" >/dev/null 2>&1; cat "$log"; rm -f "$log"',
              { nothrow: true, timeoutMs: 600_000 },
            );
          n.recovered = parseRecoveredPosition(r.stdout);
          ctx.log(`${name}: recovered position ${n.recovered ? `${n.recovered.uuid}:${n.recovered.seqno}` : 'none'}`);
        }),
      );
      continue;
    }
    if (d.kind === 'bootstrap') {
      mustAct(d.node);
      changes.push(`bootstrap ${d.node}: ${d.reason}`);
      if (!ctx.check) {
        const hc = ctx.hostContext(d.node);
        const n = nodes.find((x) => x.name === d.node)!;
        if (d.setSafe && n.grastate)
          await (await connOf(hc)).put(`${DATADIR}/grastate.dat`, withSafeToBootstrap(n.grastateText), {
            mode: 0o660,
            owner: 'mysql',
            group: 'mysql',
          });
        await removeEmptyGvw(hc, n);
        await hc.exec('galera_new_cluster', { timeoutMs: 900_000 });
        await waitSynced(ctx, d.node);
        // the SST user must exist on the donor before anyone joins
        await withMysql(await connOf(hc), { socketPath: SOCKET, user: 'root' }, (db) =>
          ensureUsers(
            db,
            userSpecs(s, secretsOf(ctx), []).filter((u) => u.user === 'sst'),
            false,
          ),
        );
      }
      for (const name of d.start) if (inRun.has(name)) await start(name);
      return { changed: true, changes, result: { decision: d } };
    }
    // a primary component runs
    if (d.start.length && !ctx.check) {
      await withMysql(await connOf(ctx.hostContext(d.via)), { socketPath: SOCKET, user: 'root' }, (db) =>
        ensureUsers(
          db,
          userSpecs(s, secretsOf(ctx), []).filter((u) => u.user === 'sst'),
          false,
        ),
      );
    }
    for (const name of d.start) if (inRun.has(name)) await start(name);
    // rolling restart of running nodes whose configuration changed (one at a time, each back in sync first)
    for (const n of nodes) {
      if (!n.running || !configChanged.has(n.name)) continue;
      changes.push(`restart ${n.name} (configuration changed)`);
      if (ctx.check) continue;
      await ctx.hostContext(n.name).exec('systemctl restart mariadb', { timeoutMs: 900_000 });
      await waitSynced(ctx, n.name);
    }
    return { changed: changes.length > 0, changes, result: { decision: d } };
  }
  throw new Error('galera: no decision after 4 rounds');
}

async function removeEmptyGvw(hc: StepContext, n: NodeState): Promise<void> {
  // an empty gvwstate.dat (crash while writing it) makes the node refuse to start
  if (n.gvwEmpty) await hc.exec(sh`rm -f ${`${DATADIR}/gvwstate.dat`}`);
}

// ---------------------------------------------------------------------------------------------------
// The role

const role: Role = {
  name: 'galera',
  hosts: 'db',
  description: 'MariaDB Galera cluster (galera-4, mariabackup SST) with an HAProxy single-writer endpoint',
  handlers: reloadHandler,
  async steps(ctx: StepContext): Promise<Step[]> {
    const s = settings(ctx.vars);
    const hosts = dbHosts(ctx, s);
    if (!hosts.some((h) => h.name === ctx.host.name)) throw new Error(`galera: ${ctx.host.name} is not in the group '${s.group}'`);
    const me = ctx.host;
    const proxy = typeof ctx.vars.apt_proxy === 'string' ? ctx.vars.apt_proxy : '';
    const steps: Step[] = [];
    const readSecrets = sh`cat ${SECRETS_FILE} 2>/dev/null || true`;
    // the SST credentials' file (its probe does not depend on its content: read with the step's probe)
    const sstFile = (password: string) =>
      file({
        path: SST_CNF,
        content: password && renderTemplate(TPL('61-galera-sst.cnf.ejs'), { sst_password: password }),
        mode: '0640',
        owner: 'root',
        group: 'mysql',
        secret: true,
      });
    // the users step's probe, on the first db host: the users' names and hosts (passwords play no part in it)
    const usersProbe = usersProbeScript(
      userSpecs(s, { sst_password: '', admin_password: '', exporter_password: '' }, hosts.map(nodeAddress)),
    );

    if (proxy) {
      steps.push(
        task('apt proxy (when roles/common has not written it)', async (c) => {
          const r = await c.exec('test -e /etc/apt/apt.conf.d/01wpfarm-proxy && echo present || echo missing');
          if (r.stdout.trim() === 'present') return { changed: false };
          return fromResult(
            await c.run(file({ path: '/etc/apt/apt.conf.d/01wpfarm-proxy', content: `Acquire::http::Proxy "${proxy}";\n`, mode: '0644' })),
          );
        }),
      );
    }
    steps.push(
      // retried: another run (roles/common, unattended-upgrades) may hold the apt lists lock for a while
      apt({ packages: GALERA_PACKAGES, update_cache: 3600, autostart: false }, { retries: 3, delayMs: 15_000 }),
      // Debian's mariadb.socket holds :3306 and breaks Galera's start
      systemd({ name: 'mariadb.socket', masked: true }),
      // drain before a stop: the endpoints move off this node before it shuts down (templates/galera/mariadb-drain.conf)
      directory({ path: path.dirname(DRAIN_DROPIN), mode: '0755' }),
      copy({ src: TPL('mariadb-drain.conf'), path: DRAIN_DROPIN, mode: '0644' }),
      // no mysql_upgrade on a node that joined by SST from a donor of its version: run while it applies write-sets,
      // it deadlocked with them in the lab (templates/galera/mariadb-upgrade-info.conf)
      directory({ path: path.dirname(UPGRADE_INFO_SCRIPT), mode: '0755' }),
      copy({ src: TPL('galera-upgrade-info.sh'), path: UPGRADE_INFO_SCRIPT, mode: '0755' }),
      copy({ src: TPL('mariadb-upgrade-info.conf'), path: UPGRADE_INFO_DROPIN, mode: '0644' }),
      systemd(
        { name: 'mariadb', enabled: s.autostart, daemonReload: true },
        { name: `systemd mariadb.service ${s.autostart ? 'enabled' : 'disabled (the role starts it)'}` },
      ),
      task(
        'galera secrets (generated once, kept on the first db host)',
        async (c, probed) => {
          const first = c.hostContext(hosts[0]!.name);
          const stored = parseSecretsFile(probed ?? (await first.exec(readSecrets, { readOnly: true })).stdout);
          const out = {} as Secrets;
          const generated: string[] = [];
          for (const k of SECRET_KEYS) {
            const fromVars = c.vars[`galera_${k}`];
            // the monitoring role writes the exporter's .my.cnf from the same credential: one password, so the
            // two roles never set the user back and forth
            const fromEnv =
              k === 'exporter_password' ? lookupEnv(String(c.vars.mysqld_exporter_password_env ?? 'MYSQLD_EXPORTER_PASSWORD')) : undefined;
            if (typeof fromVars === 'string' && fromVars) out[k] = fromVars;
            else if (fromEnv) out[k] = fromEnv;
            else if (stored[k]) out[k] = stored[k]!;
            else {
              out[k] = randomBytes(24).toString('base64url');
              generated.push(k);
            }
            c.secret(out[k]);
          }
          const wanted = SECRET_KEYS.filter((k) => stored[k] !== out[k]);
          if (!wanted.length) return { changed: false, result: out };
          const content = SECRET_KEYS.map((k) => `${k}=${out[k]}`).join('\n') + '\n';
          if (!c.check) {
            await first.exec('install -d -m 0755 /etc/mysql');
            await (await connOf(first)).put(SECRETS_FILE, content, { mode: 0o600, owner: 'root', group: 'root' });
          }
          return {
            changed: true,
            changes: wanted.map((k) => `${SECRETS_FILE} on ${hosts[0]!.name}: ${generated.includes(k) ? 'generate' : 'store'} ${k}`),
            result: out,
          };
        },
        { runOnce: true, register: 'galera_secrets', probe: () => ({ script: readSecrets, host: hosts[0]!.name }) },
      ),
      template(
        {
          path: GALERA_CNF,
          src: TPL('60-galera.cnf.ejs'),
          mode: '0644',
          vars: {
            node_name: me.name,
            node_address: nodeAddress(me),
            cluster_name: s.clusterName,
            peers: hosts.map(nodeAddress),
            sst_method: s.sstMethod,
            buffer_pool: str(ctx.vars.galera_buffer_pool_size, '128M'),
            max_connections: typeof ctx.vars.galera_max_connections === 'number' ? ctx.vars.galera_max_connections : 300,
            gcache_size: str(ctx.vars.galera_gcache_size, '256M'),
            wan_options: galeraRegions(me, hosts, ctx.vars).options,
            slave_threads: typeof ctx.vars.galera_slave_threads === 'number' ? ctx.vars.galera_slave_threads : 2,
          },
        },
        { register: 'galera_cnf' },
      ),
      task(
        `file ${SST_CNF} (SST credentials)`,
        async (c, probed) => fromResult(await c.run(sstFile(secretsOf(c).sst_password), nestedOutputs(probed, 1)[0])),
        { register: 'galera_sst_cnf', probe: (c) => nestedProbe(c, [sstFile('')]) },
      ),
      // every db host of the run meets here before the cluster task (a host that failed does not block the others)
      task(
        'galera node prepared',
        async (c, probed) => {
          const configChanged = c.registered.galera_cnf?.status === 'changed' || c.registered.galera_sst_cnf?.status === 'changed';
          const node = probed !== undefined ? parseNode(probed, me) : undefined;
          const met = await c.barrier<Prepared>('galera prepared', { value: { configChanged, node }, timeoutMs: s.prepTimeoutMs });
          return { changed: false, result: met };
        },
        { register: 'galera_prepared', probe: () => ({ script: NODE_SCRIPT }) },
      ),
      task('galera cluster: bootstrap, join, recover', (c) => clusterTask(c, s), { runOnce: true }),
      task(
        'galera users (admin, exporter, sst, haproxy check)',
        async (c, probed) => {
          // the check runs on every db host and on every site node (roles/db-endpoint)
          const addrs = [...new Set([...hosts, ...siteNodes(c)].map(nodeAddress))];
          const specs = userSpecs(s, secretsOf(c), addrs);
          // no-change answer: read on the first db host with the role's probes
          if (probed !== undefined && usersInPlace(probed, specs))
            return { changed: false, reason: `every user in place (read on ${hosts[0]!.name})` };
          // any node in the primary component will do: users replicate
          for (const h of hosts) {
            const hc = c.hostContext(h.name);
            const n = await readNode(hc, h);
            if (!n.primary) continue;
            const changes = await withMysql(await connOf(hc), { socketPath: SOCKET, user: 'root' }, (db) =>
              ensureUsers(db, specs, c.check),
            );
            return { changed: changes.length > 0, changes };
          }
          // check mode before the cluster runs: the users cannot be read yet (a new cluster has none)
          if (c.check)
            return {
              changed: true,
              changes: [`ensure users ${specs.map((u) => `'${u.user}'@'${u.host}'`).join(', ')} once a node is primary`],
            };
          throw new Error('no db node is in a primary component');
        },
        { runOnce: true, probe: () => ({ script: usersProbe, host: hosts[0]!.name }) },
      ),
      // the single-writer endpoint on this db host's private address (the site nodes run the same: roles/db-endpoint)
      ...endpointSteps(
        endpointVars(
          s,
          ctx.vars,
          hosts.map((h) => ({ name: h.name, address: nodeAddress(h) })),
          { role: 'galera', who: 'Every db host', bind: nodeAddress(me) },
        ),
      ),
      task(
        'galera health (wsrep_cluster_size, wsrep_ready, wsrep_local_state)',
        async (c, probed) => {
          // read with the role's probes (again at each retry)
          const n = probed !== undefined ? parseNode(probed, me) : await readNode(c, me);
          if (!n.installed && c.check) return { skipped: 'check mode: MariaDB is not installed yet' };
          if (!n.running && c.check) return { skipped: 'check mode: MariaDB is not running yet' };
          if (!n.running) return { changed: false, result: { size: 0, ready: 'OFF', state: 'stopped' } };
          const st = n.wsrep;
          return {
            changed: false,
            result: {
              size: Number(st.wsrep_cluster_size ?? 0),
              ready: q(st.wsrep_ready),
              state: Number(st.wsrep_local_state ?? 0),
              comment: q(st.wsrep_local_state_comment),
              status: q(st.wsrep_cluster_status),
            },
          };
        },
        {
          retries: 30,
          delayMs: 2000,
          until: (r) => {
            if (r.status === 'skipped') return true;
            const h = r.result as { size: number; ready: string; state: number } | undefined;
            return !!h && h.size === hosts.length && h.ready === 'ON' && h.state === 4;
          },
          register: 'galera_health',
          probe: () => ({ script: NODE_SCRIPT }),
        },
      ),
    );
    return steps;
  },
};

export default role;
