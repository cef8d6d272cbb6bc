// The Galera single-writer endpoint (HAProxy, templates/galera/haproxy.cfg.ejs, with the Galera-aware external check
// templates/galera/galera-writer-check.sh): ONE set of steps, used on the db hosts (roles/galera, bound to each db
// host's private address) and on the nodes that run the sites' tasks (roles/db-endpoint, bound to the address the
// node's containers reach it at). Same servers in the same order, same check, same timings everywhere.
import path from 'node:path';
import type { HostSpec, Step, StepContext } from '../../lib/types.ts';
import { nestedOutputs, nestedProbe, task } from '../../lib/ops/base.ts';
import { copy, directory } from '../../lib/ops/files.ts';
import { systemd } from '../../lib/ops/systemd.ts';
import { template, templatePath } from '../../lib/ops/template.ts';
import type { Settings } from './role.ts';

export const HAPROXY_CFG = '/etc/haproxy/haproxy.cfg';
export const CHECK_SCRIPT = '/usr/local/lib/wpfarm/galera-writer-check';
/** the handler every role that runs the endpoint declares (reloadHandler) */
export const RELOAD_HAPROXY = 'reload haproxy';

/**
 * The inventory group whose nodes run the sites' tasks (the wp-site stacks' default placement is
 * `node.labels.<group> == true`): each of them runs its own endpoint (roles/db-endpoint).
 */
export const SITE_NODE_GROUP = 'workers';

/** The nodes that run the sites' tasks ([] when the inventory has no such group). */
export function siteNodes(ctx: Pick<StepContext, 'hosts'>): HostSpec[] {
  try {
    return ctx.hosts(SITE_NODE_GROUP);
  } catch {
    return [];
  }
}

/** The endpoint's handler, for the roles that run it. */
export const reloadHandler = { [RELOAD_HAPROXY]: () => [systemd({ name: 'haproxy', state: 'reloaded' })] };

export interface EndpointVars {
  /** the role that writes the file (its header says so) */
  role: string;
  /** who listens, for the header: "Every db host", "Every site node" */
  who: string;
  /** the address HAProxy binds */
  bind: string;
  port: number;
  checkUser: string;
  maxconn: number;
  /** the db hosts, the first is the writer */
  servers: { name: string; address: string }[];
}

/** The template's variables (pure: the unit tests render the same). */
export function endpointTemplateVars(v: EndpointVars): Record<string, unknown> {
  return {
    role: v.role,
    who: v.who,
    bind: v.bind,
    port: v.port,
    check_user: v.checkUser,
    check_command: CHECK_SCRIPT,
    maxconn: v.maxconn,
    servers: v.servers,
  };
}

/** The endpoint's settings from the galera settings and the inventory: same on every host that runs it. */
export function endpointVars(
  s: Pick<Settings, 'writerPort' | 'checkUser'>,
  vars: Record<string, unknown>,
  dbHosts: { name: string; address: string }[],
  where: { role: string; who: string; bind: string },
): EndpointVars {
  return {
    ...where,
    port: s.writerPort,
    checkUser: s.checkUser,
    maxconn: typeof vars.galera_writer_maxconn === 'number' ? vars.galera_writer_maxconn : 2000,
    servers: dbHosts,
  };
}

/** Variables for building the template step's probe only (the probe reads the file, whatever it should hold). */
const PROBE_ONLY: EndpointVars = { role: '', who: '', bind: '', port: 0, checkUser: '', maxconn: 0, servers: [] };

/**
 * The check script, haproxy.cfg and the running service. `cfg` is the configuration's variables, or a function that
 * builds them when the step runs (the site nodes read their bind address from the host first).
 */
export function endpointSteps(cfg: EndpointVars | ((ctx: StepContext) => Promise<EndpointVars>)): Step[] {
  const op = (v: EndpointVars) =>
    template(
      { path: HAPROXY_CFG, src: templatePath('galera', 'haproxy.cfg.ejs'), mode: '0644', vars: endpointTemplateVars(v) },
      { notify: RELOAD_HAPROXY },
    );
  return [
    directory({ path: path.dirname(CHECK_SCRIPT), mode: '0755' }),
    copy({ src: templatePath('galera', 'galera-writer-check.sh'), path: CHECK_SCRIPT, mode: '0755' }, { notify: RELOAD_HAPROXY }),
    typeof cfg === 'function'
      ? task(
          `template ${HAPROXY_CFG} (Galera single-writer endpoint)`,
          async (c, probed) => {
            const r = await c.run(op(await cfg(c)), nestedOutputs(probed, 1)[0]);
            if (r.status === 'failed') throw new Error(r.error ?? `${r.step} failed`);
            return { changed: r.status === 'changed', changes: r.changes, diff: r.diff };
          },
          // the file's probe does not depend on the variables: read with the role's probes
          { notify: RELOAD_HAPROXY, probe: (c) => nestedProbe(c, [op(PROBE_ONLY)]) },
        )
      : op(cfg),
    systemd({ name: 'haproxy', enabled: true, state: 'started', daemonReload: true }),
  ];
}
