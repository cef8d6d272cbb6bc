// A scratch copy of a site on the farm's swarm, for the DR drill (roles/backup/drill.ts, playbooks/dr-drill.ts): the
// site's restored database and files served by the site's own stack (renderSiteStack) under a scratch id
// (`<id>-drdrill`), with credentials of its own (a DB user on the scratch database only, fresh WordPress keys, Swarm
// secrets of the scratch id), the restored directory bind-mounted, one replica of each service, no Varnish and no
// public router: it is reachable only inside its own overlay, and never takes the live site's traffic.
// The check is what a visitor sees: the home page (200, the site's title) and its newest post (200, its title),
// through the scratch stack's nginx (curl in its container: nginx → php-fpm over the overlay → the database).
// Everything scratch is removed afterwards, also when something failed: the stack and its network, its secrets,
// the scratch DB user (and database), the deploy record.
import { connOf, task } from '../../lib/ops/base.ts';
import { dockerSecret, STACK_DIR, stackDeploy } from '../../lib/ops/docker.ts';
import { rows, withMysql } from '../../lib/mysql.ts';
import { sh } from '../../lib/shell.ts';
import type { Role, StepContext } from '../../lib/types.ts';
import {
  dropDatabase,
  ensureDatabase,
  execInService,
  farmSettings,
  newStoredSecrets,
  removeSiteSwarmObjects,
  requireSiteImages,
  waitStackReady,
  wpSiteSettings,
  type WpSiteSettings,
} from './reconcile.ts';
import { siteSecretHashes, siteSecretPrefix } from './secrets.ts';
import type { SiteRecord } from './site.ts';
import { NGINX_PORT, renderSiteStack, SITE_SECRET_KEYS, siteDbName, stackName } from './stack.ts';
import { maskStored } from './steps.ts';

/** The scratch id's suffix; the scratch database of a site is siteDbName(scratchSiteId(id)) = <site's db>_drdrill. */
export const SCRATCH_SUFFIX = 'drdrill';
export const scratchSiteId = (id: string): string => `${id}-${SCRATCH_SUFFIX}`;
/** what the restore names the scratch database (roles/backup/verify.ts scratchSuffix) */
export const SCRATCH_DB_SUFFIX = `_${SCRATCH_SUFFIX}`;

export interface ScratchPage {
  path: string;
  code: number;
  /** the title looked for (the site's blogname, the post's title) */
  title: string;
  found: boolean;
}

export interface ScratchSiteCheck {
  stack: string;
  /** docker stack deploy → every replica running and healthy */
  readyMs: number;
  /** stack deploy → the check passed */
  answerMs: number;
  /** when the check passed (epoch ms) */
  answeredAt: number;
  ok: boolean;
  home?: ScratchPage;
  post?: ScratchPage;
  problems: string[];
  /** what could not be removed afterwards (empty: nothing scratch left) */
  leftovers: string[];
}

const escapeHtml = (s: string): string =>
  s.replace(/&/g, '&#038;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#039;');

/** The site's title and newest published post, read from the restored database (wp_ tables, as wpfarm-install makes). */
async function expectations(
  ctx: StepContext,
  s: WpSiteSettings,
  db: string,
): Promise<{ title: string; post?: { id: number; title: string } }> {
  if (!/^wp_[a-z0-9_]+$/.test(db)) throw new Error(`unsafe database name ${db}`);
  const conn = await connOf(ctx.hostContext(s.dbAdminHost));
  return withMysql(conn, { socketPath: '/run/mysqld/mysqld.sock', user: 'root' }, async (m) => {
    const t = await rows(m, `SELECT option_value AS v FROM \`${db}\`.wp_options WHERE option_name = 'blogname'`);
    const p = await rows(
      m,
      `SELECT ID AS id, post_title AS t FROM \`${db}\`.wp_posts WHERE post_type = 'post' AND post_status = 'publish' ` +
        'ORDER BY post_date DESC, ID DESC LIMIT 1',
    );
    return { title: String(t[0]?.v ?? ''), post: p[0] ? { id: Number(p[0].id), title: String(p[0].t) } : undefined };
  });
}

/** GET `path` through the scratch stack's nginx, inside its container, as the site's domain over HTTPS (Traefik's
 *  header); a redirect to the site's own domain is followed on the same nginx. */
async function get(ctx: StepContext, stack: string, domain: string, path: string): Promise<{ code: number; body: string; path: string }> {
  let p = path;
  for (let hop = 0; ; hop++) {
    const r = await execInService(ctx, `${stack}_nginx`, [
      'curl',
      '-sS',
      '--max-time',
      '20',
      '-w',
      '\n%{http_code} %{redirect_url}',
      '-H',
      `Host: ${domain}`,
      '-H',
      'X-Forwarded-Proto: https',
      `http://127.0.0.1:${NGINX_PORT}${p}`,
    ]);
    if (r.code !== 0) throw new Error(`curl in ${stack}_nginx on ${r.node} exited ${r.code}: ${r.stderr.trim().split('\n').pop()}`);
    const i = r.stdout.lastIndexOf('\n');
    const [code = '0', redirect = ''] = r.stdout.slice(i + 1).split(' ');
    const to = redirect ? new URL(redirect) : undefined;
    if (/^30[1278]$/.test(code) && to && to.hostname === domain && hop < 3) {
      p = `${to.pathname}${to.search}`;
      continue;
    }
    return { code: Number(code), body: r.stdout.slice(0, i), path: p };
  }
}

/**
 * Deploy the scratch stack of `site` on the restored database (`db`, named siteDbName(scratchSiteId(id))) and files
 * (`filesDir`: uploads/, plugins/, themes/), check it answers, remove it. Runs on a manager. Never throws for the
 * site's own failures: they are in `problems` (and `leftovers` for what could not be removed).
 */
export async function scratchSiteStack(
  ctx: StepContext,
  a: { site: SiteRecord; db: string; filesDir: string; answerTimeoutMs?: number },
): Promise<ScratchSiteCheck> {
  const id = scratchSiteId(a.site.id);
  const stack = stackName(id);
  const out: ScratchSiteCheck = { stack, readyMs: 0, answerMs: 0, answeredAt: 0, ok: false, problems: [], leftovers: [] };
  if (siteDbName(id) !== a.db) {
    out.problems.push(`the scratch database is ${a.db}, the scratch stack would use ${siteDbName(id)}`);
    return out;
  }
  const s = wpSiteSettings(ctx);
  const stored = newStoredSecrets();
  maskStored(ctx, stored);
  try {
    const images = await requireSiteImages(s);
    for (const key of SITE_SECRET_KEYS) {
      const r = await ctx.run(
        dockerSecret({
          name: siteSecretPrefix(id, key),
          content: stored[key],
          labels: { 'wpfarm.site': id, 'wpfarm.scratch': 'dr-drill' },
        }),
      );
      if (r.status === 'failed') throw new Error(`secret ${key}: ${r.error}`);
    }
    await ensureDatabase(ctx, s, id, stored.db_password);
    const farm = {
      ...farmSettings(s, images, { [id]: siteSecretHashes(stored) }, ctx.vars),
      siteDirs: { [id]: a.filesDir },
      publicRouter: false,
    };
    const rendered = renderSiteStack({ ...a.site, id, replicas: 1, cache: { ...a.site.cache, varnish: false } }, farm);
    const want = await expectations(ctx, s, a.db);
    const t0 = Date.now();
    const dep = await ctx.run(stackDeploy({ name: stack, compose: rendered.yaml, prune: true }));
    if (dep.status === 'failed') throw new Error(`stack deploy: ${dep.error}`);
    await waitStackReady(ctx, stack, Object.keys(rendered.services), s.waitTimeoutMs);
    out.readyMs = Date.now() - t0;
    // ready is not answering yet (php-fpm's first requests, the object cache): retried until the deadline
    const end = Date.now() + (a.answerTimeoutMs ?? 60_000);
    for (;;) {
      const home = await get(ctx, stack, a.site.domain, '/');
      out.home = { path: '/', code: home.code, title: want.title, found: !!want.title && includesText(home.body, want.title) };
      if (want.post) {
        const p = await get(ctx, stack, a.site.domain, `/?p=${want.post.id}`);
        out.post = { path: p.path, code: p.code, title: want.post.title, found: includesText(p.body, want.post.title) };
      }
      const pages = [out.home, ...(out.post ? [out.post] : [])];
      if (pages.every((x) => x.code === 200 && x.found)) {
        out.answeredAt = Date.now();
        out.answerMs = out.answeredAt - t0;
        out.ok = true;
        break;
      }
      if (Date.now() > end) {
        for (const x of pages)
          if (x.code !== 200 || !x.found) out.problems.push(`GET ${x.path}: ${x.code}${x.found ? '' : `, no ${JSON.stringify(x.title)}`}`);
        break;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
    if (!want.post) out.problems.push('the restored database has no published post to check');
    if (!want.title) out.problems.push('the restored database has no blogname');
    if (out.problems.length) out.ok = false;
  } catch (e) {
    out.problems.push((e as Error).message);
  } finally {
    await removeScratch(ctx, s, id, out.leftovers);
  }
  if (out.leftovers.length) out.ok = false;
  return out;
}

function includesText(body: string, text: string): boolean {
  return body.includes(text) || body.includes(escapeHtml(text));
}

/** The scratch stack, network, secrets, DB user and database, deploy record: each tried, what failed is named. */
async function removeScratch(ctx: StepContext, s: WpSiteSettings, id: string, leftovers: string[]): Promise<void> {
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (e) {
      leftovers.push(`${what}: ${(e as Error).message.split('\n')[0]}`);
    }
  };
  await attempt(`stack ${stackName(id)} and its secrets`, () => removeSiteSwarmObjects(ctx, id));
  await attempt(`database and user ${siteDbName(id)}`, () => dropDatabase(ctx, s, id));
  await attempt('deploy record', () => ctx.exec(sh`rm -f -- ${`${STACK_DIR}/${stackName(id)}.yml`}`));
}

/** The scratch stack check as a role of one step (on the first manager that answers), for a playbook's Run. */
export function scratchSiteRole(a: Parameters<typeof scratchSiteStack>[1], done: (r: ScratchSiteCheck) => void): Role {
  return {
    name: 'dr-drill-scratch-stack',
    hosts: 'managers',
    steps: () => [
      task(
        `scratch stack of ${a.site.id}`,
        async (ctx) => {
          const r = await scratchSiteStack(ctx, a);
          done(r);
          const changes = [`deployed, checked and removed ${r.stack}`];
          return { changed: true, changes, result: { ok: r.ok, answerMs: r.answerMs, problems: r.problems, leftovers: r.leftovers } };
        },
        { runOnce: true },
      ),
    ],
  };
}
