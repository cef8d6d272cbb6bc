// One site's migration, state by state (./state.ts): inspect → copy → rewrite → verify → cutover → done.
// The source is only read, but for the maintenance flag of the cutover (WordPress's own `.maintenance`, ours
// marked, never replacing someone else's) that rollback() removes. Both playbooks (migrate-site, migrate-sites)
// call migrateSite(); the engine test drives it with two sshd hosts.
import { quote } from '../../lib/shell.ts';
import type { Connection } from '../../lib/types.ts';
import {
  FARM_PREFIX,
  copyDatabase,
  remainingOldUrls,
  renamePrefix,
  rewriteDatabase,
  sourceCounts,
  sourceTables,
  targetCounts,
  urlPairs,
  withTargetDb,
} from './db.ts';
import { checksums, compareChecksums, rsyncContent } from './files.ts';
import { type Inspection, type SourceDb, inspectSource, sourceQuery } from './inspect.ts';
import { type HttpSide, checkHttp, fetchAll } from './http.ts';
import { SiteRefused, type SourceUrl, formatSourceUrl } from './source.ts';
import { type SiteState, type StateName, describePlan, loadState, newState, nextState, saveState } from './state.ts';
import { type Target, createTarget, removeTarget, targetLeftovers } from './target.ts';
import type { FarmSite } from './farm.ts';
import { type MigrateDns, inZone, lowerTtlAhead, oldTtlLeft, snapshotDns, switchBack, switchToFarm } from './dns.ts';
import { rows } from '../../lib/mysql.ts';
import type { MigratedFrom } from '../wp-site/site.ts';

/** The WordPress of the farm's image (Debian bookworm's `wordpress` package, files/images/wordpress-fpm). */
export const FARM_WORDPRESS = '6.1.9';

export interface MigrateOptions {
  domain: string;
  /** the farm's name for the site (default: the same domain) */
  newDomain?: string;
  source: SourceUrl;
  sourceConn: Connection;
  target: Target;
  /** the farm site it becomes (record, secret store entry, stack): roles/migrate/cli.ts makes it as add-site does */
  farm?: FarmSite;
  /** the Cloudflare path (the inventory has a cloudflare section): TTL lowered at copy, switch at cutover */
  dns?: MigrateDns;
  stateDir: string;
  farmWpVersion?: string;
  /** the site's URL in the farm (default https://<newDomain>) */
  newBase?: string;
  /** say what would be done (inspect runs: it only reads), change nothing */
  check?: boolean;
  /** stop after this state (the rest on a later run) */
  until?: StateName;
  log?: (msg: string) => void;
  /** verify logs in as this user with its existing password, on the old site and the new one (never printed) */
  login?: { user: string; password: string };
  /** how many published posts verify fetches from both sites besides the home page (default 5) */
  httpSamples?: number;
  /** called when a state starts (tests: kill a run mid-state) */
  onState?: (state: StateName) => void | Promise<void>;
}

export interface MigrateResult {
  domain: string;
  state: SiteState;
  /** --check: what would be done */
  plan?: string;
}

const MAINT_MARK = 'wpfarm migration';

function maintenanceText(o: MigrateOptions): string {
  // included by WordPress on every request: `time()` keeps it in maintenance until the file is removed
  return `<?php $upgrading = time(); // ${MAINT_MARK}: ${o.domain}; removed by playbooks/migrate-site.ts --rollback\n`;
}

export async function migrateSite(o: MigrateOptions): Promise<MigrateResult> {
  const log = o.log ?? (() => undefined);
  const newDomain = o.newDomain ?? o.domain;
  const newBase = o.newBase ?? `https://${newDomain}`;
  const farmWp = o.farmWpVersion ?? FARM_WORDPRESS;
  let st = loadState(o.stateDir, o.domain) ?? newState(o.domain, newDomain, formatSourceUrl(o.source));
  if (st.status === 'rolled-back') throw new SiteRefused(o.domain, 'rolled back before: move its state file away to migrate it again');
  if (o.check) {
    const { inspection } = await inspectSource(o.sourceConn, { domain: o.domain, source: o.source, farmWpVersion: farmWp });
    if (!st.createdOnTarget && nextState(st) === 'inspect') {
      const left = await leftovers(o);
      if (left.length) throw new SiteRefused(o.domain, `already in the farm: ${left.join(', ')}`);
    }
    const size = `${inspection.tables} tables, ${mb(inspection.dbBytes)} DB, ${mb(inspection.contentBytes)} wp-content`;
    return { domain: o.domain, state: st, plan: `${describePlan(st)} (WordPress ${inspection.wpVersion}, ${size})` };
  }
  if (!nextState(st)) return { domain: o.domain, state: st };

  // every run reads the source's config again: the DB password lives in memory only
  let db: SourceDb;
  let inspection: Inspection;
  const save = () => saveState(o.stateDir, st);
  const run = async (name: StateName, fn: () => Promise<Record<string, unknown>>): Promise<void> => {
    await o.onState?.(name);
    const entry = { state: name, startedAt: new Date().toISOString() } as SiteState['history'][number];
    st.history.push(entry);
    st.running = name;
    st.status = 'running';
    save();
    const t0 = performance.now();
    log(`${o.domain}: ${name}`);
    const summary = await fn();
    entry.endedAt = new Date().toISOString();
    entry.ms = Math.round(performance.now() - t0);
    entry.ok = true;
    entry.summary = summary;
    st.completed = name;
    st.running = undefined;
    save();
    log(`${o.domain}: ${name} ok (${entry.ms} ms)`);
  };

  let tables: string[] = [];
  const pairs = () => urlPairs([inspection.home, inspection.siteurl], newBase);
  const copyAll = async () => {
    tables = await sourceTables(o.sourceConn, db, inspection.tablePrefix);
    const d = await copyDatabase(o.sourceConn, db, tables, o.target.db);
    // the farm's image reads wp_ tables: the site's prefix is renamed consistently (tables, user_roles, user meta keys)
    const renamed = await renamePrefix(o.target.db, inspection.tablePrefix);
    const f = await rsyncContent(o.sourceConn, inspection.contentDir, o.target.files.conn, o.target.files.contentDir, {
      owner: o.target.files.owner,
    });
    return { tables: d.tables, dumpBytes: d.bytes, dbMs: d.ms, prefixRenamed: renamed, files: f.files, fileBytes: f.bytes, filesMs: f.ms };
  };
  const rewrite = async () => {
    const r = await rewriteDatabase(o.target.db, FARM_PREFIX, pairs());
    for (const p of r.problems.slice(0, 20)) log(`${o.domain}: rewrite: ${p}`);
    return { rows: r.rows, replaced: r.replaced, problems: r.problems, ms: r.ms };
  };
  // the old site from its own host (its name resolved to 127.0.0.1 there), the new one through the farm's request path
  const oldSide = (): HttpSide => {
    const u = new URL(inspection.home || inspection.siteurl);
    const port = u.port || (u.protocol === 'https:' ? '443' : '80');
    return {
      base: `${u.protocol}//${u.host}`,
      curlArgs: ['--resolve', `${u.hostname}:${port}:127.0.0.1`],
      run: async (script, stdin) => (await o.sourceConn.exec(script, { stdin: stdin ?? '' })).stdout,
    };
  };
  const newSide = (farm: FarmSite & { request: NonNullable<FarmSite['request']> }): HttpSide => ({
    base: newBase.replace(/\/+$/, ''),
    connectTo: farm.request.url,
    curlArgs: farm.request.curlArgs,
    run: farm.request.run,
  });
  /** the site's object cache emptied (the database was replaced under it), then GET / on the new site answers 200 */
  const newSiteAnswers = async (): Promise<string | null> => {
    if (!o.farm?.request) return null;
    await o.farm.flushCache?.();
    const [r] = await fetchAll(newSide(o.farm as Parameters<typeof newSide>[0]), [{ path: '/' }]);
    return r?.status === 200 ? null : `GET / on the new site answered ${r?.status || 'nothing'}`;
  };
  const httpCheck = async () => {
    const farm = o.farm;
    if (!farm?.request) return { skipped: 'no request path to the farm site' };
    await farm.flushCache?.();
    const n = Math.max(0, Math.floor(o.httpSamples ?? 5));
    const ids = await sourceQuery(
      o.sourceConn,
      db,
      `SELECT ID FROM \`${inspection.tablePrefix}posts\` WHERE post_type = 'post' AND post_status = 'publish' ORDER BY RAND() LIMIT ${n}`,
    );
    const r = await checkHttp({
      oldSide: oldSide(),
      newSide: newSide(farm as Parameters<typeof newSide>[0]),
      paths: ids.map(([id]) => `/?p=${Number(id)}`),
      login: o.login,
    });
    if (r.problems.length) throw new Error(`verify failed over HTTP: ${r.problems.join('; ')}`);
    return { pages: r.pages.length, samePages: r.pages.filter((p) => p.same).length, login: r.login, paths: r.pages.map((p) => p.path) };
  };
  const verify = async (strict: boolean) => {
    tables = tables.length ? tables : await sourceTables(o.sourceConn, db, inspection.tablePrefix);
    const [a, b] = await Promise.all([sourceCounts(o.sourceConn, db, tables), targetCounts(o.target.db, tables, inspection.tablePrefix)]);
    const countDiffs = tables.filter((t) => a.get(t) !== b.get(t)).map((t) => `${t}: ${a.get(t)} on the source, ${b.get(t)} copied`);
    const up = `${inspection.contentDir}/uploads`;
    const [cs, ct] = await Promise.all([
      checksums(o.sourceConn, up),
      checksums(o.target.files.conn, `${o.target.files.contentDir}/uploads`),
    ]);
    const fileDiffs = compareChecksums(cs, ct);
    const urls = await withTargetDb(
      o.target.db,
      (x) => rows(x, `SELECT option_name AS n, option_value AS v FROM \`${FARM_PREFIX}options\` WHERE option_name IN ('siteurl', 'home')`),
      o.target.db.name,
    );
    const urlDiffs = urls.filter((r) => !String(r.v).startsWith(newBase)).map((r) => `${String(r.n)} is ${String(r.v)}, not ${newBase}`);
    const left = await remainingOldUrls(o.target.db, FARM_PREFIX, pairs());
    const problems = [...(strict ? countDiffs : []), ...fileDiffs, ...urlDiffs];
    const summary = {
      tables: tables.length,
      rows: [...b.values()].reduce((x, y) => x + y, 0),
      uploads: ct.size,
      countsChangedDuringCopy: strict ? [] : countDiffs,
      oldUrlsLeft: Object.fromEntries(left),
    };
    if (problems.length) throw new Error(`verify failed: ${problems.join('; ')}`);
    return summary;
  };

  try {
    const got = await inspectSource(o.sourceConn, { domain: o.domain, source: o.source, farmWpVersion: farmWp });
    db = got.db;
    inspection = got.inspection;
    if (nextState(st) === 'inspect') {
      await run('inspect', async () => {
        if (!st.createdOnTarget) {
          const left = await leftovers(o);
          if (left.length) throw new SiteRefused(o.domain, `already in the farm: ${left.join(', ')}`);
        }
        st.inspection = inspection;
        return { ...inspection };
      });
    }
    for (let next = nextState(st); next; next = nextState(st)) {
      if (o.until && st.completed === o.until) break;
      switch (next) {
        case 'copy':
          await run('copy', async () => {
            st.createdOnTarget = true;
            save();
            if (o.dns && inZone(newDomain, o.dns.zone)) {
              // the snapshot is recorded before the TTL changes; a rerun keeps the first one
              st.dns ??= await snapshotDns(o.dns, [newDomain]);
              save();
              await lowerTtlAhead(o.dns, st.dns);
              save();
            } else if (o.dns) log(`${o.domain}: ${newDomain} is not in the zone ${o.dns.zone}: its DNS is switched by hand`);
            if (o.farm) {
              // the record and the secret store entry first: the new DB user gets the stored password (a rerun reuses it)
              const secrets = await o.farm.create(migratedFrom(o, st));
              o.target.db.password = secrets.db_password;
            }
            await createTarget(o.target);
            return copyAll();
          });
          break;
        case 'rewrite':
          await run('rewrite', rewrite);
          break;
        case 'verify':
          await run('verify', async () => {
            const counted = await verify(false);
            // the site's stack, by the wp-site role as for any farm site (its database and directory are there), so
            // that its pages are compared with the old site's while the old one still serves
            const deployed = o.farm ? await o.farm.deploy() : { skipped: 'no farm site given' };
            const http = 'skipped' in deployed ? { skipped: `the stack is not deployed (${String(deployed.skipped)})` } : await httpCheck();
            return { ...counted, deployed, http };
          });
          break;
        case 'cutover':
          await run('cutover', async () => {
            const t0 = performance.now();
            await setMaintenance(o, st);
            const copied = await copyAll();
            const rewritten = await rewrite();
            const verified = await verify(true);
            // the stack deployed at verify serves the final copy (its cache emptied); deployed again only if it does not
            let deployed: Record<string, unknown> = { skipped: 'no farm site given' };
            const answer = o.farm?.request ? await newSiteAnswers().catch((e: Error) => e.message) : 'no request path';
            if (answer && o.farm) {
              deployed = await o.farm.deploy();
              const again = o.farm.request && !('skipped' in deployed) ? await newSiteAnswers() : null;
              if (again) throw new Error(`the new site does not serve: ${again}`);
            } else if (!answer) deployed = { kept: 'deployed at verify; GET / answers 200' };
            // DNS last: the name goes to the farm once the farm serves the verified copy
            let dns: Record<string, unknown> = { skipped: 'no Cloudflare zone for this name: point it at the farm by hand' };
            if (o.dns && st.dns) {
              const left = oldTtlLeft(st.dns);
              if (left > 0)
                log(`${o.domain}: resolvers may hold the old address up to ${left} s more (TTL lowered at ${st.dns.loweredAt})`);
              const r = await switchToFarm(o.dns, st.dns);
              save();
              dns = { ...r, target: o.dns.edge, oldTtlLeftS: left };
            } else log(`${o.domain}: source in maintenance; point ${newDomain} at the farm (no Cloudflare zone for it)`);
            return { maintenanceMs: Math.round(performance.now() - t0), copied, rewritten, verified, deployed, dns };
          });
          break;
        case 'done':
          await run('done', async () => {
            const cut = [...st.history].reverse().find((h) => h.state === 'cutover' && h.ok);
            const v = (cut?.summary?.verified ?? {}) as { tables?: number; rows?: number; uploads?: number };
            const from = migratedFrom(o, st, {
              cutover: cut?.endedAt ?? new Date().toISOString(),
              verification: { tables: v.tables ?? 0, rows: v.rows ?? 0, uploads: v.uploads ?? 0 },
            });
            o.farm?.recordCutover(from);
            return { migratedFrom: from, record: o.farm?.recordFile };
          });
          st.status = 'done';
          save();
          break;
        default:
          throw new Error(`unexpected state ${next}`);
      }
    }
    if (st.status === 'running') {
      st.status = 'new';
      save();
    }
    return { domain: o.domain, state: st };
  } catch (e) {
    const failed = st.running;
    // the site, the state and the reason; a full disk said as such (rsync/MariaDB word it their own ways)
    const full = /No space left on device|Errcode: 28|ENOSPC|Disk full/i.test((e as Error).message);
    const why = `${full ? 'the target is out of disk space: ' : ''}${(e as Error).message}`;
    const msg = e instanceof SiteRefused ? (e as Error).message : `site ${o.domain}: ${failed ?? 'inspect'} failed: ${why}`;
    const last = st.history[st.history.length - 1];
    if (last && !last.endedAt) Object.assign(last, { endedAt: new Date().toISOString(), ok: false, error: msg });
    st.running = undefined;
    st.status = 'failed';
    st.error = msg;
    if (failed === 'cutover' || st.maintenance) {
      // the source serves again (and its name points at it); the verified copy stays on the target for the next run
      await clearMaintenance(o, st).catch((x: Error) => log(`${o.domain}: could not remove the maintenance flag: ${x.message}`));
      if (o.dns && st.dns?.switchedAt) {
        await switchBack(o.dns, st.dns).catch((x: Error) => log(`${o.domain}: could not switch the DNS back: ${x.message}`));
      }
    } else if (st.createdOnTarget) {
      const entry = { state: 'cleanup', startedAt: new Date().toISOString() } as SiteState['history'][number];
      try {
        const removed = [...(await removeTarget(o.target)), ...((await o.farm?.remove()) ?? [])];
        if (o.dns && st.dns) {
          const r = await switchBack(o.dns, st.dns);
          removed.push(`DNS of ${st.dns.names.join(', ')} as before (${r.updated.length} record(s) back to their TTL)`);
          st.dns = undefined;
        }
        entry.summary = { removed };
        st.createdOnTarget = false;
        st.completed = '';
        entry.ok = true;
      } catch (x) {
        entry.ok = false;
        entry.error = (x as Error).message;
      }
      entry.endedAt = new Date().toISOString();
      st.history.push(entry);
    } else if (failed !== undefined) st.completed = '';
    save();
    if (e instanceof SiteRefused) throw e;
    const left = st.history[st.history.length - 1];
    const cleanup = left?.state === 'cleanup' ? (left.ok ? '; what it created was removed' : `; cleanup failed: ${left.error}`) : '';
    throw new Error(`${msg}${cleanup}`, { cause: e });
  }
}

/** what of the site is already in the farm (its database, user, directory, record, secret store entry) */
async function leftovers(o: MigrateOptions): Promise<string[]> {
  return [...(await targetLeftovers(o.target)), ...((await o.farm?.leftovers()) ?? [])];
}

function migratedFrom(o: MigrateOptions, st: SiteState, more: Partial<MigratedFrom> = {}): MigratedFrom {
  const started = st.history.find((h) => h.state === 'copy')?.startedAt ?? new Date().toISOString();
  return { source: st.source, domain: o.domain, started, ...more };
}

async function setMaintenance(o: MigrateOptions, st: SiteState): Promise<void> {
  const f = `${o.source.path}/.maintenance`;
  const cur = await o.sourceConn.exec(`cat -- ${quote(f)} 2>/dev/null || true`);
  if (cur.stdout && !cur.stdout.includes(MAINT_MARK)) {
    throw new SiteRefused(o.domain, `${f} exists and is not ours (an update in progress?): cutover refused`);
  }
  st.maintenance = true;
  saveState(o.stateDir, st);
  await o.sourceConn.exec(`printf %s ${quote(maintenanceText(o))} > ${quote(f)}`);
}

async function clearMaintenance(o: MigrateOptions, st: SiteState): Promise<void> {
  const f = `${o.source.path}/.maintenance`;
  // only ours: grep -q the mark, then remove
  await o.sourceConn.exec(`if grep -qF ${quote(MAINT_MARK)} -- ${quote(f)} 2>/dev/null; then rm -f -- ${quote(f)}; fi`);
  st.maintenance = false;
  saveState(o.stateDir, st);
}

/** --rollback: the site's DNS records as they were before the migration, the source serving again (flag removed). */
export async function rollbackSite(
  o: Pick<MigrateOptions, 'domain' | 'source' | 'sourceConn' | 'stateDir' | 'check' | 'dns'>,
): Promise<MigrateResult> {
  const st = loadState(o.stateDir, o.domain);
  if (!st) throw new SiteRefused(o.domain, 'never migrated: nothing to roll back');
  if (o.check) return { domain: o.domain, state: st, plan: describePlan(st, { rollback: true }) };
  const entry = { state: 'rollback', startedAt: new Date().toISOString() } as SiteState['history'][number];
  if (st.dns && !o.dns) {
    throw new SiteRefused(o.domain, `its DNS went through the Cloudflare zone ${st.dns.zone}: the inventory has no cloudflare section`);
  }
  // the source serves first, then its name points at it again
  await clearMaintenance(o as MigrateOptions, st);
  if (st.dns && o.dns) {
    entry.summary = { dns: await switchBack(o.dns, st.dns) };
    saveState(o.stateDir, st);
  }
  entry.endedAt = new Date().toISOString();
  entry.ok = true;
  st.history.push(entry);
  st.status = 'rolled-back';
  saveState(o.stateDir, st);
  return { domain: o.domain, state: st };
}

function mb(n: number): string {
  return `${(n / 1048576).toFixed(1)} MB`;
}
