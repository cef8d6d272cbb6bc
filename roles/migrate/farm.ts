// The farm side of a migrated site, made the way add-site makes a site (roles/wp-site): its site record
// (playbook-util's validateNewSite/writeRecord, plus a `migrated_from` section), its secret store entry on the
// managers (reconcile.ts's store: the new database user's password is the entry's db_password, so a rerun
// reuses it and the wp-site role later finds the user it expects), and its stack, deployed by the wp-site role
// (the `deploy` given by roles/migrate/cli.ts). A migration that fails before its cutover removes the record and
// the entry again (with the database, user and directory: ./target.ts).
import { existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { InputError } from '../../lib/errors.ts';
import { InputErrors } from '../../lib/schema.ts';
import { registerSecret } from '../../lib/secrets.ts';
import { sh } from '../../lib/shell.ts';
import type { Connection } from '../../lib/types.ts';
import { validateNewSite, writeRecord } from '../wp-site/playbook-util.ts';
import { SECRET_STORE, type StoredSecrets, getStoredSecrets, newStoredSecrets, putStoredSecrets } from '../wp-site/reconcile.ts';
import { type MigratedFrom, parseSiteRecord } from '../wp-site/site.ts';

export interface FarmSiteOptions {
  /** the site id (siteIdFor(newDomain)) and its domain in the farm */
  id: string;
  domain: string;
  sitesDir: string;
  managementCidrs?: string[];
  /** the swarm managers (the secret store is on each; the first one that answers is read) */
  managers: Connection[];
  /** deploy the site's stack (the wp-site role for this site); returns a summary */
  deploy: () => Promise<Record<string, unknown>>;
  /** take away what deploy made in the swarm (stack, network, secrets, deploy state); says what it removed */
  undeploy?: () => Promise<string[]>;
  /** the farm's request path to the site (its nginx as the edge reaches it), for verify's HTTP checks */
  request?: FarmRequest;
  /** empty the site's object cache (after its database was replaced) */
  flushCache?: () => Promise<void>;
  log?: (m: string) => void;
}

/** How verify reaches a farm site over HTTP: a shell where curl reaches `url` with `curlArgs` (Host, X-Forwarded-Proto). */
export interface FarmRequest {
  url: string;
  curlArgs: string[];
  run: (script: string, stdin?: string) => Promise<string>;
}

export interface FarmSite {
  id: string;
  request?: FarmRequest;
  flushCache?: () => Promise<void>;
  recordFile: string;
  /** what of this site is already in the farm: a record of the same id or domain, a secret store entry */
  leftovers(): Promise<string[]>;
  /** the record (with `migrated_from`) and the secret store entry, each kept when already there; the stored secrets */
  create(from: MigratedFrom): Promise<StoredSecrets>;
  deploy(): Promise<Record<string, unknown>>;
  /** the record's `migrated_from` after the cutover (time and verification) */
  recordCutover(from: MigratedFrom): void;
  /** remove the stack (undeploy), the record and the secret store entries (a migration that never reached cutover) */
  remove(): Promise<string[]>;
}

/** `migrated_from:` as YAML (strings JSON-quoted: valid YAML whatever they hold) */
export function migratedFromYaml(m: MigratedFrom): string {
  const q = (s: string) => JSON.stringify(s);
  const lines = ['migrated_from:', `  source: ${q(m.source)}`, `  domain: ${m.domain}`, `  started: ${q(m.started)}`];
  if (m.cutover) lines.push(`  cutover: ${q(m.cutover)}`);
  if (m.verification) {
    lines.push('  verification:');
    for (const [k, v] of Object.entries(m.verification)) if (v !== undefined) lines.push(`    ${k}: ${String(v)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** A record's text with its `migrated_from` section replaced (or added at the end). */
export function withMigratedFrom(text: string, m: MigratedFrom): string {
  const out: string[] = [];
  let inBlock = false;
  for (const line of text.replace(/\n+$/, '').split('\n')) {
    if (/^migrated_from:/.test(line)) {
      inBlock = true;
      continue;
    }
    if (inBlock && /^\s+\S/.test(line)) continue;
    inBlock = false;
    out.push(line);
  }
  return `${out.join('\n')}\n${migratedFromYaml(m)}`;
}

export function farmSite(o: FarmSiteOptions): FarmSite {
  const recordFile = path.join(o.sitesDir, `${o.id}.yml`);
  const log = o.log ?? (() => undefined);
  if (!o.managers.length) throw new InputError('the inventory has no swarm managers (group managers): the site secret store is there');
  const newRecord = (): string => validateNewSite(o.sitesDir, { id: o.id, domain: o.domain, aliases: [] }, o.managementCidrs);
  const first = async <T>(fn: (c: Connection) => Promise<T>): Promise<T> => {
    let err: unknown;
    for (const c of o.managers) {
      try {
        return await fn(c);
      } catch (e) {
        err ??= e;
      }
    }
    throw err;
  };
  return {
    id: o.id,
    recordFile,
    async leftovers() {
      const out: string[] = [];
      try {
        newRecord();
      } catch (e) {
        if (!(e instanceof InputError || e instanceof InputErrors)) throw e;
        out.push(`site record: ${e.message.split('\n')[0]}`);
      }
      if (await first((c) => getStoredSecrets(c, o.id))) out.push(`secret store entry ${SECRET_STORE}/${o.id}.json`);
      return out;
    },
    async create(from) {
      if (!existsSync(recordFile)) {
        writeRecord(recordFile, newRecord() + migratedFromYaml(from));
        log(`${o.domain}: site record ${recordFile} written`);
      }
      let s = await first((c) => getStoredSecrets(c, o.id));
      if (!s) {
        s = newStoredSecrets();
        for (const [i, c] of o.managers.entries()) {
          try {
            await putStoredSecrets(c, o.id, s);
          } catch (e) {
            if (i === 0) throw e;
            log(`${o.domain}: secret store on ${c.host.name} not updated (${(e as Error).message.split('\n')[0]})`);
          }
        }
      }
      for (const v of [s.db_password, s.admin_password]) if (v) registerSecret(v);
      return s;
    },
    deploy: () => o.deploy(),
    request: o.request,
    flushCache: o.flushCache,
    recordCutover(from) {
      const text = withMigratedFrom(readFileSync(recordFile, 'utf8'), from);
      parseSiteRecord(recordFile, text, { management_cidrs: o.managementCidrs });
      writeRecord(recordFile, text);
    },
    async remove() {
      // the stack first (deployed at verify): a migration that never reached cutover leaves nothing in the farm
      const done: string[] = o.undeploy ? await o.undeploy() : [];
      for (const c of o.managers) {
        await c.exec(sh`rm -f -- ${`${SECRET_STORE}/${o.id}.json`}`);
        done.push(`secret store entry on ${c.host.name} removed`);
      }
      if (existsSync(recordFile)) {
        rmSync(recordFile);
        done.push(`site record ${recordFile} removed`);
      }
      return done;
    },
  };
}
