// What the wp-site steps (roles/wp-site/steps.ts) and the site playbooks share: the role's settings, the site
// records, the images, the manager probe (services, deploy digests and the site secret store in one round
// trip), the secret store, the database helpers and the Swarm helpers.
//
// The secret store: /var/lib/wpfarm/site-secrets/<id>.json on the managers (root 0600), one JSON line:
// { db_password, wp_keys, admin_password, created, rotated }. Swarm secrets cannot be read back, so the
// values must live somewhere the controller can read to compute the content-hashed names; they are
// registered with ctx.secret() (masked in every output) as soon as they are read.
import path from 'node:path';
import type { Connection, HostSpec, StepContext } from '../../lib/types.ts';
import { InputError, InterruptedError } from '../../lib/errors.ts';
import { connOf } from '../../lib/ops/base.ts';
import { STACK_DIR } from '../../lib/ops/docker.ts';
import { sh } from '../../lib/shell.ts';
import { withMysql, rows } from '../../lib/mysql.ts';
import { cidrToMysqlHost } from '../galera/role.ts';
import { loadSites, SiteRecordErrors, type SiteRecord } from './site.ts';
import {
  farmProbeScript,
  parseFarmProbe,
  siteDbName,
  siteNetworkName,
  stackName,
  NODE_DB_HOST,
  ROLLOUT,
  HEALTH,
  type DbEndpoint,
  type FarmStackSettings,
} from './stack.ts';
import { generateSiteSecrets, type SiteSecretValues } from './secrets.ts';
import { ensureSiteImages, localImageId, contextHash, registryHasTag, IMAGES_DIR } from './images.ts';

export const SECRET_STORE = '/var/lib/wpfarm/site-secrets';
/**
 * Image pins: /var/lib/wpfarm/site-pins/<id>.json on the managers, {"images":{"php-fpm":ref,...},"at","reason"}.
 * A pinned site is rendered with those images instead of the farm's (playbooks/rollback.ts, or update.ts after
 * a failed site): a later reconcile does not roll it forward again until an update (wp_site_unpin) succeeds.
 */
export const PIN_STORE = '/var/lib/wpfarm/site-pins';

export interface SitePin {
  /** image per service of the stack: php-fpm, nginx, redis, varnish */
  images: Record<string, string>;
  at: string;
  reason: string;
}

export interface StoredSecrets extends SiteSecretValues {
  admin_password: string;
  created: string;
  rotated: string;
  /** DB user of this version (default siteDbName(id)); rotation alternates */
  db_user?: string;
  /** the user of the previous version, dropped once the new tasks run */
  previous_db_user?: string;
}

/** What one install did (read by add-site to print the admin password once). */
export interface InstallNote {
  site: string;
  domain: string;
  adminUser: string;
  adminPassword: string;
}
/** Filled during a run (same process as the playbook): sites whose WordPress was installed. */
export const installs: InstallNote[] = [];

export interface WpSiteSettings {
  sitesDir: string;
  /** only these site ids (empty: every site) */
  only: string[];
  /** sites whose image pin this run ignores (update.ts rolls them to the farm's images) */
  unpin?: string[];
  /** site ids checked completely (db, dirs, install) even when their stack is unchanged: add-site's targets */
  full?: string[];
  /** install parameters of the `full` sites, by id */
  install?: Record<string, InstallParams>;
  /** sites worked on at once within a step (add-sites --concurrency); default 1 */
  concurrency?: number;
  baseImage: string;
  /** build contexts of the site images (wordpress-fpm/, nginx/, redis/): files/images unless the inventory
   * points elsewhere (an operator's customised images; a changed context gives new tags: a rolling update) */
  imagesDir: string;
  registry: string;
  registryPush: string;
  glusterMount: string;
  endpointMode: 'dnsrr' | 'vip';
  overlayEncrypted: boolean;
  /** the sites' database endpoint: NODE_DB_HOST (the endpoint of the node a task runs on) unless wp_db_host says */
  dbHost: string;
  dbPort: number;
  /** dbHost is the node's own endpoint (roles/db-endpoint): the containers get its host entry */
  dbOnNode: boolean;
  /** inventory host that runs SQL (through its socket) */
  dbAdminHost: string;
  dbUserHost: string;
  /** a Gluster client (where site directories are created) */
  filesHost: string;
  waitTimeoutMs: number;
  managementCidrs?: string[];
  /** Swarm's rolling update timings (wp_update_delay / wp_update_monitor) */
  rollout: { delay: string; monitor: string };
  /** the site services' health checks (wp_health_interval / wp_health_timeout) */
  health: { interval: string; timeout: string };
}

export interface InstallParams {
  title: string;
  adminUser: string;
  adminEmail: string;
}

const str = (v: unknown, d: string): string => (typeof v === 'string' && v !== '' ? v : d);

/**
 * Install parameters of the `full` sites: `wp_site_install` (an object by site id, set by add-sites) or, for one
 * site (add-site), wp_site_title / wp_site_admin_user / wp_site_admin_email.
 */
function installSettings(v: Record<string, unknown>, full: string[]): Record<string, InstallParams> {
  const out: Record<string, InstallParams> = {};
  const map = v.wp_site_install && typeof v.wp_site_install === 'object' ? (v.wp_site_install as Record<string, unknown>) : {};
  for (const id of full) {
    const m = map[id] && typeof map[id] === 'object' ? (map[id] as Record<string, unknown>) : undefined;
    out[id] = m
      ? { title: str(m.title, ''), adminUser: str(m.admin_user, 'wpadmin'), adminEmail: str(m.admin_email, '') }
      : { title: str(v.wp_site_title, ''), adminUser: str(v.wp_site_admin_user, 'wpadmin'), adminEmail: str(v.wp_site_admin_email, '') };
  }
  return out;
}
const list = (v: unknown): string[] =>
  Array.isArray(v)
    ? v.map(String)
    : typeof v === 'string' && v
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : [];

/** What the images need: base image, build contexts, registry (the nodes') and registry_push (the controller's). */
export type ImageSettings = Pick<WpSiteSettings, 'baseImage' | 'imagesDir' | 'registry' | 'registryPush'>;

export function imageSettings(v: Record<string, unknown>): ImageSettings {
  return {
    baseImage: str(v.site_base_image, v.lab === true ? 'wpfarm/base:bookworm' : 'debian:bookworm-slim'),
    imagesDir: path.resolve(str(v.site_images_dir, IMAGES_DIR)),
    registry: str(v.registry, ''),
    registryPush: str(v.registry_push, str(v.registry, '')),
  };
}

export function wpSiteSettings(ctx: Pick<StepContext, 'vars' | 'hosts'>): WpSiteSettings {
  const v = ctx.vars;
  const first = (pattern: string): HostSpec | undefined => {
    try {
      return ctx.hosts(pattern)[0];
    } catch {
      return undefined;
    }
  };
  const db = first(str(v.galera_group, 'db'));
  const files = first(str(v.gluster_client_group, 'workers'));
  if (!db) throw new InputError('wp-site: the inventory has no db host (group db): sites need the database');
  if (!files) throw new InputError('wp-site: the inventory has no Gluster client (group workers)');
  const full = list(v.wp_site_full);
  return {
    ...imageSettings(v),
    sitesDir: str(v.wp_sites_dir, 'inventory/sites'),
    only: list(v.wp_sites_only),
    unpin: list(v.wp_site_unpin),
    full,
    install: installSettings(v, full),
    concurrency: typeof v.wp_site_concurrency === 'number' && v.wp_site_concurrency >= 1 ? Math.floor(v.wp_site_concurrency) : 1,
    glusterMount: str(v.gluster_mount, '/mnt/gluster/sites'),
    endpointMode: v.swarm_endpoint_mode === 'dnsrr' ? 'dnsrr' : 'vip',
    overlayEncrypted: v.overlay_encrypted !== false,
    // the single-writer endpoint of the node each task runs on (roles/db-endpoint): losing one db host, or its
    // region, leaves every site its database; wp_db_host names another endpoint (no host entry then)
    dbHost: str(v.wp_db_host, NODE_DB_HOST),
    dbPort: typeof v.galera_writer_port === 'number' ? v.galera_writer_port : 3307,
    dbOnNode: str(v.wp_db_host, '') === '',
    dbAdminHost: db.name,
    dbUserHost: str(v.wp_db_user_host, cidrToMysqlHost(str(v.private_cidr, '')) ?? '%'),
    filesHost: files.name,
    waitTimeoutMs: (typeof v.wp_site_wait === 'number' ? v.wp_site_wait : 240) * 1000,
    managementCidrs: Array.isArray(v.management_cidrs) ? v.management_cidrs.map(String) : undefined,
    rollout: rolloutSettings(v),
    health: healthSettings(v),
  };
}

/** Site records, as the role sees them; record errors are bad input. */
export function readSites(s: Pick<WpSiteSettings, 'sitesDir' | 'managementCidrs' | 'only'>): SiteRecord[] {
  let sites: SiteRecord[];
  try {
    sites = loadSites(s.sitesDir, { management_cidrs: s.managementCidrs });
  } catch (e) {
    if (e instanceof SiteRecordErrors) throw new InputError(e.message);
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  if (s.only.length) {
    const unknown = s.only.filter((id) => !sites.some((x) => x.id === id));
    if (unknown.length) throw new InputError(`wp-site: no site record for ${unknown.join(', ')} in ${s.sitesDir}`);
    sites = sites.filter((x) => s.only.includes(x.id));
  }
  return sites;
}

// ---------------------------------------------------------------------------------------------------
// images (controller side)

export interface ImageRefs {
  wordpressFpm: string;
  nginx: string;
  redis: string;
  varnish: string;
  changes: string[];
}

/**
 * The site images of this version without building anything: their content tags (computed on the controller) and
 * `changes` = the images not in the registry (not on the controller when there is no registry).
 */
export async function plannedSiteImages(s: ImageSettings): Promise<ImageRefs> {
  const nodeRef = (name: string, tag: string): string => `${s.registry ? `${s.registry}/` : ''}${name}:${tag}`;
  const pushRef = (name: string, tag: string): string => `${s.registryPush ? `${s.registryPush}/` : ''}${name}:${tag}`;
  const base = await localImageId(s.baseImage);
  if (!base) throw new Error(`base image ${s.baseImage} is not present on the controller`);
  const tagOf = (dir: string, args?: Record<string, string>): string => contextHash(dir, { baseImageId: base, buildArgs: args });
  const wpTag = tagOf(path.join(s.imagesDir, 'wordpress-fpm'));
  const redisTag = tagOf(path.join(s.imagesDir, 'redis'));
  const varnishTag = tagOf(path.join(s.imagesDir, 'varnish'));
  // nginx takes WordPress core from the wordpress-fpm image: its tag hashes that image's id
  const wpLocal = await localImageId(pushRef('wpfarm/wordpress-fpm', wpTag));
  const nginxTag = wpLocal ? tagOf(path.join(s.imagesDir, 'nginx'), { WORDPRESS_IMAGE: wpLocal }) : 'unknown';
  const all = [
    ['wpfarm/wordpress-fpm', wpTag],
    ['wpfarm/nginx', nginxTag],
    ['wpfarm/redis', redisTag],
    ['wpfarm/varnish', varnishTag],
  ] as const;
  const present = await Promise.all(
    all.map(async ([name, tag]) => {
      if (tag === 'unknown') return false;
      if (!s.registryPush) return (await localImageId(pushRef(name, tag))) !== null;
      return registryHasTag(s.registryPush, name, tag).catch(() => false);
    }),
  );
  return {
    wordpressFpm: nodeRef('wpfarm/wordpress-fpm', wpTag),
    nginx: nodeRef('wpfarm/nginx', nginxTag),
    redis: nodeRef('wpfarm/redis', redisTag),
    varnish: nodeRef('wpfarm/varnish', varnishTag),
    changes: all.filter((_, i) => !present[i]).map(([name, tag]) => `image ${name}:${tag} would be built and pushed`),
  };
}

/** What to tell a user whose farm lacks the images of this version: they are built once, by phase 3. */
export function missingImagesMessage(s: ImageSettings, missing: string[]): string {
  const where = s.registryPush ? `the farm's registry (${s.registryPush})` : 'the controller';
  return (
    `the site images of this version are not in ${where}: ${missing.map((m) => m.replace(/^image (\S+).*/, '$1')).join(', ')}. ` +
    'They are built once, by phase 3 of bootstrap: run `npx tsx playbooks/bootstrap.ts --phase 3` ' +
    '(or only the images: `npx tsx playbooks/run-role.ts images`; `make images` without an inventory); add-site never builds'
  );
}

/** The site images of this version, which must be in the registry already (add-site, the wp-site role): never builds. */
export async function requireSiteImages(s: ImageSettings): Promise<ImageRefs> {
  const refs = await plannedSiteImages(s);
  if (refs.changes.length) throw new Error(missingImagesMessage(s, refs.changes));
  return refs;
}

/** Build/push when needed (the images role, update.ts); in check mode the tags are computed and missing images reported. */
export async function siteImages(s: ImageSettings, check: boolean, log: (m: string) => void): Promise<ImageRefs> {
  if (check) return plannedSiteImages(s);
  const nodeRef = (name: string, tag: string): string => `${s.registry ? `${s.registry}/` : ''}${name}:${tag}`;
  const changes: string[] = [];
  const {
    wordpressFpm: wp,
    nginx,
    redis,
    varnish,
  } = await ensureSiteImages(s.baseImage, { registry: s.registryPush || undefined, log }, s.imagesDir);
  for (const r of [wp, nginx, redis, varnish]) {
    if (r.built) changes.push(`image ${r.ref} built`);
    if (r.pushed) changes.push(`image ${r.ref} pushed`);
  }
  return {
    wordpressFpm: nodeRef('wpfarm/wordpress-fpm', wp.tag),
    nginx: nodeRef('wpfarm/nginx', nginx.tag),
    redis: nodeRef('wpfarm/redis', redis.tag),
    varnish: nodeRef('wpfarm/varnish', varnish.tag),
    changes,
  };
}

// ---------------------------------------------------------------------------------------------------
// the manager probe: services, deploy digests and the secret store in one round trip

const storeLines = (dir: string): string =>
  sh`for f in ${dir}/*.json; do [ -f "$f" ] && { printf '%s ' "$(basename "$f" .json)"; tr -d '\n' < "$f"; echo; }; done` +
  ' 2>/dev/null; true';

export function managerProbeScript(): string {
  return [farmProbeScript(STACK_DIR), 'echo %%pins', storeLines(PIN_STORE), 'echo %%secrets', storeLines(SECRET_STORE)].join('\n');
}

export function parseManagerProbe(out: string): {
  serviceLs: string;
  state: ReturnType<typeof parseFarmProbe>['state'];
  secrets: Map<string, StoredSecrets>;
  pins: Map<string, SitePin>;
} {
  const i = out.indexOf('\n%%secrets\n');
  const before = i >= 0 ? out.slice(0, i) : out;
  const tail = i >= 0 ? out.slice(i + '\n%%secrets\n'.length) : '';
  const j = before.indexOf('\n%%pins\n');
  const head = j >= 0 ? before.slice(0, j) : before;
  const pins = new Map<string, SitePin>();
  for (const line of (j >= 0 ? before.slice(j + '\n%%pins\n'.length) : '').split('\n')) {
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    let pin: SitePin;
    try {
      pin = JSON.parse(line.slice(sp + 1)) as SitePin;
    } catch {
      throw new Error(`site pin ${PIN_STORE}/${line.slice(0, sp)}.json is not valid JSON`);
    }
    if (!pin || typeof pin.images !== 'object') throw new Error(`site pin ${PIN_STORE}/${line.slice(0, sp)}.json has no images`);
    pins.set(line.slice(0, sp), pin);
  }
  const { serviceLs, state } = parseFarmProbe(head);
  const secrets = new Map<string, StoredSecrets>();
  for (const line of tail.split('\n')) {
    const sp = line.indexOf(' ');
    if (sp <= 0) continue;
    try {
      secrets.set(line.slice(0, sp), JSON.parse(line.slice(sp + 1)) as StoredSecrets);
    } catch {
      // a damaged store file: treated as missing would silently rotate; refuse instead
      throw new Error(`site secret store ${SECRET_STORE}/${line.slice(0, sp)}.json is not valid JSON`);
    }
  }
  return { serviceLs, state, secrets, pins };
}

/** The farm's images for one site, with its pin (service → image) applied. */
export function pinnedImages(images: FarmStackSettings['images'], pin: SitePin | undefined): FarmStackSettings['images'] {
  if (!pin) return images;
  const p = pin.images;
  return {
    wordpressFpm: p['php-fpm'] ?? images.wordpressFpm,
    nginx: p.nginx ?? images.nginx,
    redis: p.redis ?? images.redis,
    varnish: p.varnish ?? images.varnish,
  };
}

/** Write (pin given) or remove (undefined) a site's pin on every manager; returns the managers not updated. */
export async function writePin(ctx: StepContext, id: string, pin: SitePin | undefined): Promise<string[]> {
  const missed: string[] = [];
  for (const h of ctx.hosts('managers')) {
    const m = h.name === ctx.host.name ? ctx : ctx.hostContext(h.name);
    try {
      if (pin) {
        await m.exec(sh`install -d -m 0700 ${PIN_STORE}`);
        await (await connOf(m)).put(`${PIN_STORE}/${id}.json`, `${JSON.stringify(pin)}\n`, { mode: 0o600 });
      } else await m.exec(sh`rm -f -- ${`${PIN_STORE}/${id}.json`}`);
    } catch (e) {
      missed.push(`${h.name} (${(e as Error).message.split('\n')[0]})`);
    }
  }
  return missed;
}

export function newStoredSecrets(now = new Date()): StoredSecrets {
  const g = generateSiteSecrets();
  return { ...g, admin_password: generateSiteSecrets().db_password, created: now.toISOString(), rotated: now.toISOString() };
}

/** Write a site's secret store entry on one manager (root 0600): what writeStoredSecrets does on each. */
export async function putStoredSecrets(conn: Connection, id: string, s: StoredSecrets): Promise<void> {
  await conn.exec(sh`install -d -m 0700 ${SECRET_STORE}`);
  await conn.put(`${SECRET_STORE}/${id}.json`, `${JSON.stringify(s)}\n`, { mode: 0o600 });
}

/** A site's secret store entry as one manager holds it (null: none); a damaged entry is an error, never a new one. */
export async function getStoredSecrets(conn: Connection, id: string): Promise<StoredSecrets | null> {
  const f = `${SECRET_STORE}/${id}.json`;
  const r = await conn.exec(sh`cat -- ${f} 2>/dev/null || echo @@none`);
  if (r.stdout.trim() === '@@none') return null;
  try {
    return JSON.parse(r.stdout) as StoredSecrets;
  } catch {
    throw new Error(`site secret store ${f} on ${conn.host.name} is not valid JSON`);
  }
}

/** Write a site's secrets on every manager (whichever manager reconciles next reads them). */
export async function writeStoredSecrets(ctx: StepContext, id: string, s: StoredSecrets): Promise<void> {
  const managers = ctx.hosts('managers').map((h) => h.name);
  for (const name of managers.includes(ctx.host.name) ? managers : [ctx.host.name, ...managers]) {
    const m = name === ctx.host.name ? ctx : ctx.hostContext(name);
    if (m !== ctx) await connOf(m);
    try {
      await putStoredSecrets(m.conn, id, s);
    } catch (e) {
      if (name === ctx.host.name) throw e;
      ctx.log(
        `secret store on ${name} not updated (${(e as Error).message.split('\n')[0]}); the next reconcile from ${name} would miss it`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// database

/** Database and user of a site; user's rights on that database only. Reports what it changed (or would). */
export async function ensureDatabase(
  ctx: StepContext,
  s: WpSiteSettings,
  id: string,
  password: string,
  dbUser?: string,
): Promise<string[]> {
  const dbConn = await connOf(ctx.hostContext(s.dbAdminHost));
  const name = siteDbName(id);
  const user = dbUser ?? name;
  const changes: string[] = [];
  await withMysql(dbConn, { socketPath: '/run/mysqld/mysqld.sock', user: 'root' }, async (db) => {
    const haveDb = (await rows(db, 'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [name])).length > 0;
    if (!haveDb) changes.push(`create database ${name}`);
    const have = await rows(db, 'SELECT authentication_string AS a FROM mysql.user WHERE User = ? AND Host = ?', [user, s.dbUserHost]);
    let pwOk = false;
    if (have.length) {
      const [want] = await rows(db, 'SELECT PASSWORD(?) AS p', [password]);
      pwOk = String(have[0]!.a) === String(want!.p);
    }
    if (!have.length) changes.push(`create user ${user}@${s.dbUserHost}`);
    else if (!pwOk) changes.push(`set password of ${user}@${s.dbUserHost}`);
    let grantOk = false;
    if (have.length) {
      const grants = await rows(
        db,
        'SELECT PRIVILEGE_TYPE AS p FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND TABLE_SCHEMA = ?',
        [`'${user}'@'${s.dbUserHost}'`, name],
      );
      grantOk = grants.length >= 10;
    }
    if (!grantOk) changes.push(`grant all on ${name}.* to ${user}@${s.dbUserHost}`);
    if (ctx.check || !changes.length) return;
    // identifiers come from siteDbName (wp_[a-z0-9_]+) and the host pattern is checked below: no injection
    if (!/^wp_[a-z0-9_]+$/.test(name) || !/^wp_[a-z0-9_]+$/.test(user) || !/^[0-9A-Za-z.%/_:-]+$/.test(s.dbUserHost))
      throw new Error(`unsafe database identifier ${name}@${s.dbUserHost}`);
    if (!haveDb) await db.query(`CREATE DATABASE IF NOT EXISTS \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
    if (!have.length) await db.query(`CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?`, [user, s.dbUserHost, password]);
    else if (!pwOk) await db.query(`ALTER USER ?@? IDENTIFIED BY ?`, [user, s.dbUserHost, password]);
    if (!grantOk) await db.query(`GRANT ALL PRIVILEGES ON \`${name}\`.* TO ?@?`, [user, s.dbUserHost]);
  });
  return changes;
}

/** Drop one DB user (the previous version's, after a rotation). */
export async function dropDbUser(ctx: StepContext, s: WpSiteSettings, user: string): Promise<string[]> {
  if (!/^wp_[a-z0-9_]+$/.test(user)) throw new Error(`unsafe database user ${user}`);
  const dbConn = await connOf(ctx.hostContext(s.dbAdminHost));
  return withMysql(dbConn, { socketPath: '/run/mysqld/mysqld.sock', user: 'root' }, async (db) => {
    const hosts = await rows(db, 'SELECT Host AS h FROM mysql.user WHERE User = ?', [user]);
    if (!hosts.length) return [];
    if (!ctx.check) for (const h of hosts) await db.query('DROP USER IF EXISTS ?@?', [user, String(h.h)]);
    return hosts.map((h) => `drop user ${user}@${String(h.h)}`);
  });
}

/** Drop a site's database and user (remove-site). */
export async function dropDatabase(ctx: StepContext, s: WpSiteSettings, id: string): Promise<string[]> {
  const dbConn = await connOf(ctx.hostContext(s.dbAdminHost));
  const name = siteDbName(id);
  if (!/^wp_[a-z0-9_]+$/.test(name)) throw new Error(`unsafe database name ${name}`);
  const changes: string[] = [];
  await withMysql(dbConn, { socketPath: '/run/mysqld/mysqld.sock', user: 'root' }, async (db) => {
    if ((await rows(db, 'SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [name])).length)
      changes.push(`drop database ${name}`);
    const users = await rows(db, 'SELECT User AS u, Host AS h FROM mysql.user WHERE User = ? OR User = ?', [name, `${name}_b`]);
    for (const u of users) changes.push(`drop user ${String(u.u)}@${String(u.h)}`);
    if (ctx.check) return;
    await db.query(`DROP DATABASE IF EXISTS \`${name}\``);
    for (const u of users) await db.query('DROP USER IF EXISTS ?@?', [String(u.u), String(u.h)]);
  });
  return changes;
}

// ---------------------------------------------------------------------------------------------------
// swarm helpers

/** running/desired per service of one stack (one round trip). */
export async function stackReplicas(ctx: StepContext, stack: string): Promise<Record<string, { running: number; desired: number }>> {
  const r = await ctx.exec(replicasCommand(stack), { nothrow: true });
  return parseReplicas(stack, r.stdout);
}

const replicasCommand = (stack: string): string => sh`docker stack services --format '{{.Name}} {{.Replicas}}' -- ${stack}`;

function parseReplicas(stack: string, text: string): Record<string, { running: number; desired: number }> {
  const out: Record<string, { running: number; desired: number }> = {};
  for (const line of text.split('\n')) {
    const m = /^(\S+?)_(\S+) ([0-9]+)\/([0-9]+)/.exec(line.trim());
    if (m && m[1] === stack) out[m[2]!] = { running: Number(m[3]), desired: Number(m[4]) };
  }
  return out;
}

/** Wait until every service of the stack runs exactly its replicas (Swarm counts a task with a health check
 *  as running only once it is healthy; after a scale-down, tasks still draining count until they stop) and
 *  no update is in progress: the stack has converged. */
export async function waitStackReady(ctx: StepContext, stack: string, services: string[], timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    // waiting is safe to stop: the stack goes on converging on its own, a rerun waits again
    if (ctx.interrupted()) throw new InterruptedError(ctx.host.name, `interrupted while waiting for ${stack}`);
    // replicas and update states in one round trip
    const format = '{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}';
    const out = await ctx.exec(
      `${replicasCommand(stack)}; echo %%updates; ` +
        sh`docker service inspect --format ${format} ${services.map((s) => `${stack}_${s}`)} 2>/dev/null; true`,
      { nothrow: true },
    );
    const [repText = '', updText = ''] = out.stdout.split('%%updates\n');
    const reps = parseReplicas(stack, repText);
    const updating = updText.split('\n').filter((l) => / (updating|rollback_started|paused|rollback_paused)$/.test(l.trim()));
    last =
      services.map((s) => `${s} ${reps[s]?.running ?? 0}/${reps[s]?.desired ?? '?'}`).join(', ') +
      (updating.length ? `; updating: ${updating.join(', ')}` : '');
    if (services.every((s) => reps[s] && reps[s]!.desired > 0 && reps[s]!.running === reps[s]!.desired) && !updating.length) return;
    if (Date.now() > end) throw new Error(`stack ${stack} not ready after ${Math.round(timeoutMs / 1000)} s: ${last}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** What a site holds in the swarm (one round trip): its stack's services, its secret versions, its network. */
export async function siteSwarmObjects(
  ctx: Pick<StepContext, 'exec'>,
  id: string,
): Promise<{ services: number; secrets: number; network: number }> {
  const have = await ctx.exec(
    sh`echo "services=$(docker stack services -q -- ${stackName(id)} 2>/dev/null | wc -l)"; ` +
      sh`echo "secrets=$(docker secret ls -q --filter ${`name=site_${id}_`} | wc -l)"; ` +
      sh`echo "network=$(docker network ls -q --filter ${`name=${siteNetworkName(id)}`} | wc -l)"`,
    { nothrow: true },
  );
  const n = (k: string): number => Number(new RegExp(`${k}=(\\d+)`).exec(have.stdout)?.[1] ?? 0);
  return { services: n('services'), secrets: n('secrets'), network: n('network') };
}

/**
 * Remove a site's stack (then wait until its services and its network are gone: a network of a stack being removed
 * cannot be reused) and its Swarm secrets. `have`: what siteSwarmObjects found (probed when not given).
 */
export async function removeSiteSwarmObjects(
  ctx: Pick<StepContext, 'exec' | 'log'>,
  id: string,
  have?: { services: number; secrets: number; network: number },
  timeoutMs = 120_000,
): Promise<void> {
  const h = have ?? (await siteSwarmObjects(ctx, id));
  const stack = stackName(id);
  if (h.services || h.network) {
    const net = siteNetworkName(id);
    // a service of another stack attached to the site's network (the WordPress exporter joins every site's) keeps the
    // network alive: detach it first (its own stack, rendered from the site records, no longer lists this site)
    const detached = await ctx.exec(detachNetworkScript(net, stack), { nothrow: true });
    for (const svc of detached.stdout.split('\n').filter(Boolean)) ctx.log(`${svc}: detached from ${net}`);
    // stack rm fails on a network still in use (a detached service's old task may hold it a moment): removed below
    await ctx.exec(sh`docker stack rm ${stack}`, { nothrow: true });
    ctx.log(`${stack}: waiting until its tasks and network are gone`);
    const end = Date.now() + timeoutMs;
    for (;;) {
      const r = await ctx.exec(
        sh`s=$(docker service ls -q --filter ${`label=com.docker.stack.namespace=${stack}`}); ` +
          sh`n=$(docker network ls -q --filter ${`name=${net}`}); ` +
          sh`[ -z "$s" ] && [ -n "$n" ] && docker network rm ${net} >/dev/null 2>&1 && n=; echo "$s$n"`,
        { nothrow: true },
      );
      if (!r.stdout.trim()) break;
      if (Date.now() > end) throw new Error(`${stack}: still present after ${Math.round(timeoutMs / 1000)} s`);
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  if (h.secrets) await ctx.exec(sh`docker secret ls -q --filter ${`name=site_${id}_`} | xargs -r docker secret rm`);
}

/** Detach every service outside `stack` from `network` (one round trip); prints the services' names. */
export function detachNetworkScript(network: string, stack: string): string {
  const format =
    '{{.Spec.Name}} {{index .Spec.Labels "com.docker.stack.namespace"}} {{range .Spec.TaskTemplate.Networks}}{{.Target}} {{end}}';
  return [
    sh`nid=$(docker network inspect -f '{{.Id}}' ${network} 2>/dev/null) || exit 0`,
    sh`docker service ls -q | xargs -r docker service inspect -f ${format} | while read -r name ns nets; do`,
    sh`  [ "$ns" = ${stack} ] && continue`,
    sh`  case " $nets " in *" $nid "*) docker service update --detach --quiet --network-rm ${network} "$name" >/dev/null && echo "$name";; esac`,
    'done; true',
  ].join('\n');
}

/** Node names running a service's tasks (state Running). */
export async function serviceNodes(ctx: StepContext, service: string): Promise<string[]> {
  const r = await ctx.exec(sh`docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' ${service}`, {
    nothrow: true,
  });
  return [
    ...new Set(
      r.stdout
        .split('\n')
        .filter((l) => / Running /.test(` ${l} `))
        .map((l) => l.split(' ')[0]!),
    ),
  ];
}

/** Run a command in a container of `service` on one of the nodes running it. */
export async function execInService(
  ctx: StepContext,
  service: string,
  args: string[],
  o: { stdin?: string; env?: Record<string, string>; node?: string } = {},
): Promise<{ stdout: string; stderr: string; code: number; node: string }> {
  const nodes = o.node ? [o.node] : await serviceNodes(ctx, service);
  if (!nodes.length) throw new Error(`no running task of ${service}`);
  const node = nodes[0]!;
  const envArgs = Object.entries(o.env ?? {}).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
  const cmd = [
    sh`cid=$(docker ps -q --filter ${`label=com.docker.swarm.service.name=${service}`} | head -n1)`,
    sh`[ -n "$cid" ] || { echo ${`no container of ${service} here`} >&2; exit 97; }`,
    sh`docker exec -i ${envArgs} "$cid" ${args}`,
  ].join('; ');
  const r = await ctx.hostContext(node).exec(cmd, { nothrow: true, stdin: o.stdin ?? '' });
  return { ...r, node };
}

// ---------------------------------------------------------------------------------------------------
// the render settings

/** The database endpoint of the farm's containers (the sites, the WordPress exporter). */
export function dbEndpoint(s: Pick<WpSiteSettings, 'dbHost' | 'dbPort' | 'dbOnNode'>): DbEndpoint {
  return { host: s.dbHost, port: s.dbPort, ...(s.dbOnNode ? { onNode: true } : {}) };
}

export function farmSettings(
  s: WpSiteSettings,
  images: ImageRefs,
  hashes: FarmStackSettings['secretHashes'],
  vars: Record<string, unknown>,
): FarmStackSettings {
  return {
    registry: s.registry,
    images: { wordpressFpm: images.wordpressFpm, nginx: images.nginx, redis: images.redis, varnish: images.varnish },
    glusterSitesPath: s.glusterMount,
    endpointMode: s.endpointMode,
    db: dbEndpoint(s),
    secretHashes: hashes,
    overlayEncrypted: s.overlayEncrypted,
    cloudflareProxied: vars.cloudflare !== undefined,
    crowdsec: vars.crowdsec_enabled !== false,
    // the swarm roles label each node with its inventory groups: site tasks run only on Gluster clients
    placement: list(vars.wp_site_placement).length
      ? list(vars.wp_site_placement)
      : [`node.labels.${str(vars.gluster_client_group, 'workers')} == true`],
    // several regions (the inventory's `regions`; the swarm role labels each node region=<its var region>): each
    // service's replicas spread over them, so that a region cut off leaves every site a replica elsewhere
    ...(list(vars.regions).length > 1 ? { spreadOver: ['node.labels.region'] } : {}),
    rollout: s.rollout,
    health: s.health,
  };
}

/** A Swarm duration ("10s", "500ms", "1m") from vars[name], or the default; anything else is bad input naming it. */
function swarmDuration(vars: Record<string, unknown>, name: string, dflt: string): string {
  const v = vars[name];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'string' || !/^\d+(ms|s|m)$/.test(v))
    throw new InputError(`vars.${name}: a Swarm duration such as "10s", "500ms" or "1m", got ${JSON.stringify(v)}`);
  return v;
}

const millis = (d: string): number => Number(/^\d+/.exec(d)![0]) * (d.endsWith('ms') ? 1 : d.endsWith('m') ? 60_000 : 1000);

/** wp_update_delay / wp_update_monitor: Swarm durations ("10s", "500ms", "1m"); anything else is bad input. */
export function rolloutSettings(vars: Record<string, unknown>): { delay: string; monitor: string } {
  return {
    delay: swarmDuration(vars, 'wp_update_delay', ROLLOUT.delay),
    monitor: swarmDuration(vars, 'wp_update_monitor', ROLLOUT.monitor),
  };
}

/**
 * wp_health_interval / wp_health_timeout: the site services' health checks (stack.ts HEALTH: 5s / 3s by default);
 * Swarm durations above zero, the timeout not longer than the interval; anything else is bad input.
 */
export function healthSettings(vars: Record<string, unknown>): { interval: string; timeout: string } {
  const interval = swarmDuration(vars, 'wp_health_interval', HEALTH.interval);
  const timeout = swarmDuration(vars, 'wp_health_timeout', HEALTH.timeout);
  // 0 would be Docker's default (30 s), not "no wait"
  if (millis(interval) === 0) throw new InputError(`vars.wp_health_interval: above zero, got ${JSON.stringify(interval)}`);
  if (millis(timeout) === 0 || millis(timeout) > millis(interval))
    throw new InputError(`vars.wp_health_timeout: above zero and at most wp_health_interval (${interval}), got ${JSON.stringify(timeout)}`);
  return { interval, timeout };
}
