// The wp-site role's last step: the WordPress exporter (stack.ts renders it; service.ts is what runs). Once per
// run, after the site stacks: its image (built by the images role, checked here), its read-only MariaDB user, its password
// as a content-hashed Swarm secret, and its stack attached to every site's network. Idempotent: an unchanged
// farm gives an unchanged render (stackDeploy compares digests) and no SQL change.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { $ } from 'zx';
import { envFileShown, lookupEnv } from '../../lib/env.ts';
import { connOf, task } from '../../lib/ops/base.ts';
import { dockerSecret, hashedName, stackDeploy } from '../../lib/ops/docker.ts';
import { rows, withMysql } from '../../lib/mysql.ts';
import type { StepContext, Task, TaskOutcome } from '../../lib/types.ts';
import { exporterImageTag, IMAGES_DIR, registryHasTag } from '../wp-site/images.ts';
import { dbEndpoint, missingImagesMessage, readSites, type WpSiteSettings } from '../wp-site/reconcile.ts';
import type { Catalog, Offer } from './metrics.ts';
import {
  EXPORTER_DB_USER,
  EXPORTER_SECRET_PREFIX,
  EXPORTER_STACK,
  exporterGrantSql,
  exporterGroup,
  renderExporterStack,
  storeOffers,
} from './stack.ts';

/** Where imageCore keeps what it read, by image id (an image's content never changes). */
const CORE_CACHE = path.resolve(IMAGES_DIR, '../../.wpfarm/images/core');

/**
 * The core the farm's wordpress-fpm image bundles (its VERSION file) and since when the image exists. Read once
 * per image (a `docker run`, about 1 s), then from CORE_CACHE.
 */
async function imageCore(ref: string): Promise<Offer | undefined> {
  const q = $({ quiet: true, nothrow: true });
  const c = await q`docker image inspect --format ${'{{.Id}} {{.Created}}'} ${ref}`;
  const [id = '', created = ''] = c.stdout.trim().split(' ');
  if (c.exitCode !== 0 || !/^sha256:[0-9a-f]{64}$/.test(id)) return undefined;
  const cache = path.join(CORE_CACHE, `${id.slice('sha256:'.length)}.json`);
  if (existsSync(cache)) return JSON.parse(readFileSync(cache, 'utf8')) as Offer;
  const v = await q`docker run --rm --network none --entrypoint cat ${ref} /usr/src/wordpress/VERSION`;
  const version = v.stdout.trim();
  const since = Date.parse(created);
  if (v.exitCode !== 0 || !version || !Number.isFinite(since)) return undefined;
  const offer: Offer = { version, since: Math.floor(since / 1000) };
  mkdirSync(CORE_CACHE, { recursive: true });
  writeFileSync(cache, JSON.stringify(offer));
  return offer;
}

function pluginOffers(store: string): Record<string, Offer> {
  if (!existsSync(store)) return {};
  const files = readdirSync(store, { recursive: true, encoding: 'utf8' });
  return storeOffers(store, files, (f) => statSync(f).mtimeMs / 1000);
}

/** The exporter's MariaDB user (password and grant checked, changed only when they differ). */
async function exporterUser(ctx: StepContext, s: WpSiteSettings, password: string): Promise<string[]> {
  const dbConn = await connOf(ctx.hostContext(s.dbAdminHost));
  const changes: string[] = [];
  const grant = exporterGrantSql(s.dbUserHost);
  await withMysql(dbConn, { socketPath: '/run/mysqld/mysqld.sock', user: 'root' }, async (db) => {
    const have = await rows(db, 'SELECT authentication_string AS a FROM mysql.user WHERE User = ? AND Host = ?', [
      EXPORTER_DB_USER,
      s.dbUserHost,
    ]);
    const [want] = await rows(db, 'SELECT PASSWORD(?) AS p', [password]);
    if (!have.length) changes.push(`create user ${EXPORTER_DB_USER}@${s.dbUserHost}`);
    else if (String(have[0]!.a) !== String(want!.p)) changes.push(`set password of ${EXPORTER_DB_USER}@${s.dbUserHost}`);
    const grants = have.length
      ? await rows(db, 'SELECT PRIVILEGE_TYPE AS p FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ? AND TABLE_SCHEMA = ?', [
          `'${EXPORTER_DB_USER}'@'${s.dbUserHost}'`,
          'wp\\_%',
        ])
      : [];
    if (!grants.some((g) => g.p === 'SELECT')) changes.push(`grant select on wp_* databases to ${EXPORTER_DB_USER}@${s.dbUserHost}`);
    if (ctx.check || !changes.length) return;
    await db.query('CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ? WITH MAX_USER_CONNECTIONS 3', [EXPORTER_DB_USER, s.dbUserHost, password]);
    await db.query('ALTER USER ?@? IDENTIFIED BY ?', [EXPORTER_DB_USER, s.dbUserHost, password]);
    await db.query(grant);
  });
  return changes;
}

/**
 * The exporter step. `settings`/`manager`/`wordpressFpm`/`digests` come from the wp-site role's state (its state
 * step's probe also reads the exporter's deploy record); the password from the run's env file
 * (`wp_exporter_db_password_env`, default WP_EXPORTER_DB_PASSWORD), like the farm's other service credentials.
 * The render is computed on the controller (image tag, secret name, catalog): when its digest is the deployed
 * one, no host is contacted (a no-change run keeps its single round trip).
 */
export function exporterStep(
  state: (ctx: StepContext) => {
    settings: WpSiteSettings;
    manager: string;
    wordpressFpm: string;
    digests: Record<string, string>;
    /** whether a site's stack (and so its network) exists: the exporter attaches to those only */
    deployed: (id: string) => boolean;
  },
): Task {
  return task(
    'site exporter',
    async (ctx): Promise<TaskOutcome> => {
      const { settings: s, manager, wordpressFpm, digests, deployed } = state(ctx);
      const records = readSites({ ...s, only: [] });
      if (!records.length) return { skipped: `no site record in ${s.sitesDir}` };
      const sites = records.filter((x) => deployed(x.id));
      if (!sites.length) return { skipped: `no deployed site among the ${records.length} record(s) in ${s.sitesDir}` };
      const pwEnv = String(ctx.vars.wp_exporter_db_password_env ?? 'WP_EXPORTER_DB_PASSWORD');
      const password = lookupEnv(pwEnv);
      if (!password) return { skipped: `${pwEnv} is not set in ${envFileShown()} (the WordPress exporter's database password)` };
      ctx.secret(password);
      const group = exporterGroup(ctx.vars);
      const node = ctx.hosts(group)[0];
      if (!node) return { skipped: `no host in group ${group} (the exporter needs a Gluster client)` };
      const changes: string[] = [];
      // built by the images role (phase 3), never here: a real run needs it in the registry
      const tag = await exporterImageTag(s.baseImage, s.imagesDir);
      if (!ctx.check && s.registryPush && !(await registryHasTag(s.registryPush, 'wpfarm/wp-exporter', tag)))
        throw new Error(missingImagesMessage(s, [`image wpfarm/wp-exporter:${tag}`]));
      const image = `${s.registry ? `${s.registry}/` : ''}wpfarm/wp-exporter:${tag}`;
      const localWp = `${s.registryPush ? `${s.registryPush}/` : ''}wpfarm/wordpress-fpm:${wordpressFpm.split(':').pop()}`;
      const catalog: Catalog = {
        core: await imageCore(localWp),
        plugins: pluginOffers(path.resolve(typeof ctx.vars.plugin_store === 'string' ? ctx.vars.plugin_store : '.wpfarm/plugins')),
      };
      const rendered = renderExporterStack({
        image,
        sites,
        endpointMode: s.endpointMode,
        db: dbEndpoint(s),
        passwordSecret: hashedName(EXPORTER_SECRET_PREFIX, password),
        glusterSitesPath: s.glusterMount,
        node: node.name,
        catalog,
      });
      const result = { sites: sites.length, notDeployed: records.length - sites.length, node: node.name, image };
      if (digests[EXPORTER_STACK] === rendered.digest) return { changed: changes.length > 0, changes, result };
      changes.push(...(await exporterUser(ctx, s, password)));
      const m = manager === ctx.host.name ? ctx : ctx.hostContext(manager);
      const sec = await m.run(dockerSecret({ name: EXPORTER_SECRET_PREFIX, content: password }));
      if (sec.status === 'failed') throw new Error(sec.error);
      changes.push(...sec.changes);
      const r = await m.run(stackDeploy({ name: EXPORTER_STACK, compose: rendered.yaml, prune: true }));
      if (r.status === 'failed') throw new Error(r.error);
      changes.push(...r.changes);
      return { changed: changes.length > 0, changes, result };
    },
    { runOnce: true, tags: ['exporter'] },
  );
}
