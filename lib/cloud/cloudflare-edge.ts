// Cloudflare's edge settings with the official `cloudflare` SDK: the rules of a zone's phase entry point
// (Rulesets API: cache rules are phase http_request_cache_settings) and self-hosted Access applications.
// Generic: which rules and which applications is the caller's (roles/cloudflare-edge for the farm).
//
// Ownership: wpfarm manages the rules whose `ref` starts with the caller's prefix and the Access applications
// whose name starts with the caller's prefix; everything else in the zone is kept as it is. Idempotent: a
// rerun sends no write; a changed rule keeps its id (updated in place, never duplicated).
import Cloudflare, { APIError } from 'cloudflare';
import { InputError } from '../errors.ts';
import { CloudflareApi, cfError } from './cloudflare.ts';

export interface PhaseRule {
  /** stable identity of the rule across versions; must start with the caller's prefix */
  ref: string;
  description: string;
  expression: string;
  action: string;
  action_parameters?: Record<string, unknown>;
  enabled: boolean;
}

export interface Changes {
  created: string[];
  updated: string[];
  unchanged: string[];
  deleted: string[];
}

export interface AccessPolicySpec {
  name: string;
  decision: 'allow' | 'bypass' | 'deny' | 'non_identity';
  /** Access rules, as the API takes them: { email: { email } }, { email_domain: { domain } }, { group: { id } }, ... */
  include: Record<string, unknown>[];
  exclude?: Record<string, unknown>[];
  require?: Record<string, unknown>[];
}

export interface AccessAppSpec {
  /** unique in the zone; must start with the caller's prefix */
  name: string;
  /** public destinations: host or host/path (at least one) */
  destinations: string[];
  /** e.g. 24h */
  sessionDuration: string;
  /** in order of precedence (first = 1) */
  policies: AccessPolicySpec[];
  appLauncherVisible?: boolean;
}

type Obj = Record<string, unknown>;
export type Phase = Cloudflare.Rulesets.Phase;

/** JSON with sorted keys, undefined left out: the comparison of what we want with what the API returned. */
export function canonical(v: unknown): string {
  const norm = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(norm);
    if (x && typeof x === 'object')
      return Object.fromEntries(
        Object.keys(x as Obj)
          .filter((k) => (x as Obj)[k] !== undefined)
          .sort()
          .map((k) => [k, norm((x as Obj)[k])]),
      );
    return x;
  };
  return JSON.stringify(norm(v));
}

const emptyChanges = (): Changes => ({ created: [], updated: [], unchanged: [], deleted: [] });
const sorted = (c: Changes): Changes => {
  for (const k of Object.keys(c) as (keyof Changes)[]) c[k].sort();
  return c;
};

/** The parts of a rule that wpfarm sets (and compares): identity and behaviour, not version or timestamps. */
function ruleShape(r: Obj): Obj {
  return {
    ref: r['ref'],
    description: r['description'] ?? '',
    expression: r['expression'],
    action: r['action'],
    action_parameters: r['action_parameters'],
    enabled: r['enabled'] ?? true,
  };
}

/** A rule as PUT takes it back: what the API returned, less the fields it computes. */
function writableRule(r: Obj): Obj {
  const { last_updated: _l, version: _v, categories: _c, ...rest } = r;
  return rest;
}

export class CloudflareEdge extends CloudflareApi {
  /** The zone's rulesets, without their rules (cursor pages, bounded by maxPages). */
  async rulesets(zoneId: string): Promise<Obj[]> {
    const out: Obj[] = [];
    let cursor: string | undefined;
    for (let page = 1; ; page++) {
      if (page > this.maxPages) throw new Error(`cloudflare: more than ${this.maxPages} pages of rulesets; refusing to continue`);
      const res = await this.call(
        `GET /zones/${zoneId}/rulesets`,
        async () => await this.client.rulesets.list({ zone_id: zoneId, per_page: 50, ...(cursor ? { cursor } : {}) }),
      );
      out.push(...(res.result as unknown as Obj[]));
      const next = (res as unknown as { result_info?: { cursor?: string } }).result_info?.cursor;
      if (!next || next === cursor || res.result.length === 0) return out;
      cursor = next;
    }
  }

  /**
   * The rules of the zone's entry point ruleset of `phase`; null when the zone has none yet. Whether it exists is
   * read from the list of rulesets: the spec's 404 answer of the entry point cannot be met (result: null typed as
   * a string), so a zone without one is not asked for it.
   */
  async phaseRules(zoneId: string, phase: Phase): Promise<Obj[] | null> {
    const all = await this.rulesets(zoneId);
    if (!all.some((r) => r['kind'] === 'zone' && r['phase'] === phase)) return null;
    const what = `GET /zones/${zoneId}/rulesets/phases/${phase}/entrypoint`;
    try {
      const rs = (await this.client.rulesets.phases.get(phase, { zone_id: zoneId })) as unknown as { rules?: Obj[] };
      return rs.rules ?? [];
    } catch (err) {
      // removed between the two requests
      if (err instanceof APIError && err.status === 404) return null;
      throw cfError(err, what, this.secrets);
    }
  }

  /**
   * Make the rules of `phase` whose ref starts with `refPrefix` exactly `rules` (in this order, after the rules
   * wpfarm does not own, so that ours are evaluated last). One PUT of the entry point when anything differs.
   */
  async ensurePhaseRules(args: {
    zoneName: string;
    phase: Phase;
    refPrefix: string;
    rules: PhaseRule[];
    check?: boolean;
  }): Promise<Changes> {
    const refs = new Set<string>();
    args.rules.forEach((r, i) => {
      if (!r.ref.startsWith(args.refPrefix)) throw new InputError(`rules[${i}].ref: ${r.ref} does not start with ${args.refPrefix}`);
      if (refs.has(r.ref)) throw new InputError(`rules[${i}].ref: ${r.ref} is used twice`);
      if (!r.expression.trim()) throw new InputError(`rules[${i}].expression: empty`);
      refs.add(r.ref);
    });
    const zoneId = await this.zoneId(args.zoneName);
    const have = (await this.phaseRules(zoneId, args.phase)) ?? [];
    const isOurs = (r: Obj) => typeof r['ref'] === 'string' && (r['ref'] as string).startsWith(args.refPrefix);
    const foreign = have.filter((r) => !isOurs(r));
    const ours = new Map(have.filter(isOurs).map((r) => [r['ref'] as string, r]));
    const c = emptyChanges();
    const body: Obj[] = foreign.map(writableRule);
    for (const want of args.rules) {
      const cur = ours.get(want.ref);
      if (!cur) c.created.push(want.ref);
      else if (canonical(ruleShape(cur)) !== canonical(ruleShape(want as unknown as Obj))) c.updated.push(want.ref);
      else c.unchanged.push(want.ref);
      body.push({ ...(cur?.['id'] ? { id: cur['id'] } : {}), ...want });
    }
    for (const ref of ours.keys()) if (!refs.has(ref)) c.deleted.push(ref);
    // order matters (a later rule overrides an earlier one): rules that stay but would move are a change too
    const ids = (rs: Obj[]) => rs.map((r) => r['id']).filter((id) => id !== undefined);
    const staying = have.filter((r) => !isOurs(r) || refs.has(r['ref'] as string));
    if (canonical(ids(staying)) !== canonical(ids(body))) {
      c.updated.push(...c.unchanged.map((r) => `${r} (moved)`));
      c.unchanged = [];
    }
    if (!args.check && c.created.length + c.updated.length + c.deleted.length > 0) {
      await this.call(`PUT /zones/${zoneId}/rulesets/phases/${args.phase}/entrypoint`, () =>
        // the SDK types each rule per action; ours are built as plain objects and checked by the spec (contract tier)
        this.client.rulesets.phases.update(args.phase, {
          zone_id: zoneId,
          rules: body as unknown as Cloudflare.Rulesets.PhaseUpdateParams['rules'],
        }),
      );
    }
    return sorted(c);
  }

  /** The zone's Access applications (all pages, bounded). */
  async accessApps(zoneId: string): Promise<Obj[]> {
    return await this.listAll(
      `/zones/${zoneId}/access/apps`,
      async (page, per_page) =>
        (await this.client.zeroTrust.access.applications.list({ zone_id: zoneId, page, per_page })) as unknown as { result: Obj[] },
    );
  }

  /** Access group ids by name, in the zone's scope; a name that is not there is bad input. */
  async accessGroupIds(zoneName: string, names: string[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    if (names.length === 0) return out;
    const zoneId = await this.zoneId(zoneName);
    const groups = await this.listAll(
      `/zones/${zoneId}/access/groups`,
      async (page, per_page) =>
        (await this.client.zeroTrust.access.groups.list({ zone_id: zoneId, page, per_page })) as unknown as { result: Obj[] },
    );
    for (const n of names) {
      const g = groups.find((x) => x['name'] === n);
      if (!g)
        throw new InputError(
          `Access group ${JSON.stringify(n)} not found in zone ${zoneName} (groups: ${groups.map((x) => x['name']).join(', ') || 'none'})`,
        );
      out.set(n, String(g['id']));
    }
    return out;
  }

  /** Self-hosted Access applications: those named with `namePrefix` become exactly `apps` (created, updated, deleted). */
  async ensureAccessApps(args: { zoneName: string; namePrefix: string; apps: AccessAppSpec[]; check?: boolean }): Promise<Changes> {
    const names = new Set<string>();
    args.apps.forEach((a, i) => {
      if (!a.name.startsWith(args.namePrefix)) throw new InputError(`apps[${i}].name: ${a.name} does not start with ${args.namePrefix}`);
      if (names.has(a.name)) throw new InputError(`apps[${i}].name: ${a.name} is used twice`);
      if (a.destinations.length === 0) throw new InputError(`apps[${i}].destinations: at least one is required`);
      if (a.policies.length === 0) throw new InputError(`apps[${i}].policies: at least one is required`);
      a.policies.forEach((p, j) => {
        if (p.include.length === 0) throw new InputError(`apps[${i}].policies[${j}].include: at least one rule is required`);
      });
      names.add(a.name);
    });
    const zoneId = await this.zoneId(args.zoneName);
    const have = (await this.accessApps(zoneId)).filter(
      (a) => typeof a['name'] === 'string' && (a['name'] as string).startsWith(args.namePrefix),
    );
    const byName = new Map(have.map((a) => [a['name'] as string, a]));
    const c = emptyChanges();
    await Promise.all(
      args.apps.map((want) =>
        this.limit(async () => {
          const cur = byName.get(want.name);
          const body = appBody(want);
          if (!cur) {
            if (!args.check)
              await this.call(`POST /zones/${zoneId}/access/apps`, () =>
                // the body is built as a plain object (appBody) and checked against the spec in the contract tier
                this.client.zeroTrust.access.applications.create({
                  zone_id: zoneId,
                  ...body,
                } as unknown as Cloudflare.ZeroTrust.Access.ApplicationCreateParams),
              );
            c.created.push(want.name);
          } else if (canonical(appShape(cur)) !== canonical(appShape(body))) {
            const id = String(cur['id']);
            if (!args.check)
              await this.call(`PUT /zones/${zoneId}/access/apps/${id}`, () =>
                this.client.zeroTrust.access.applications.update(id, {
                  zone_id: zoneId,
                  ...body,
                } as unknown as Cloudflare.ZeroTrust.Access.ApplicationUpdateParams),
              );
            c.updated.push(want.name);
          } else c.unchanged.push(want.name);
        }),
      ),
    );
    for (const a of have) {
      const name = a['name'] as string;
      if (names.has(name)) continue;
      const id = String(a['id']);
      if (!args.check)
        await this.call(`DELETE /zones/${zoneId}/access/apps/${id}`, () =>
          this.client.zeroTrust.access.applications.delete(id, { zone_id: zoneId }),
        );
      c.deleted.push(name);
    }
    return sorted(c);
  }
}

/** The request body of a self-hosted application with its policies inline (precedence in list order). */
export function appBody(a: AccessAppSpec): Obj {
  return {
    type: 'self_hosted',
    name: a.name,
    domain: a.destinations[0],
    destinations: a.destinations.map((uri) => ({ type: 'public', uri })),
    session_duration: a.sessionDuration,
    app_launcher_visible: a.appLauncherVisible ?? false,
    policies: a.policies.map((p, i) => ({
      name: p.name,
      decision: p.decision,
      include: p.include,
      ...(p.exclude?.length ? { exclude: p.exclude } : {}),
      ...(p.require?.length ? { require: p.require } : {}),
      precedence: i + 1,
    })),
  };
}

/** What is compared between an application as the API returned it and the body we would send. */
function appShape(a: Obj): Obj {
  const dest = (a['destinations'] as Obj[] | undefined) ?? [];
  const pols = ((a['policies'] as Obj[] | undefined) ?? [])
    .slice()
    .sort((x, y) => Number(x['precedence'] ?? 0) - Number(y['precedence'] ?? 0));
  const rules = (v: unknown) => (Array.isArray(v) && v.length ? v : undefined);
  return {
    type: a['type'],
    name: a['name'],
    destinations: dest.map((d) => `${String(d['type'] ?? 'public')}:${String(d['uri'])}`),
    session_duration: a['session_duration'],
    app_launcher_visible: a['app_launcher_visible'] ?? false,
    policies: pols.map((p) => ({
      name: p['name'],
      decision: p['decision'],
      include: rules(p['include']),
      exclude: rules(p['exclude']),
      require: rules(p['require']),
    })),
  };
}
