// db-endpoint: the Galera single-writer endpoint on every node that runs the sites' tasks (the swarm workers), so
// that a site's database connection never depends on one db host: the same HAProxy configuration as on the db hosts
// (one template, one Galera-aware check: roles/galera/endpoint.ts), bound to the address of the node's Docker
// bridge (docker0). The sites' containers reach it as `wpfarm-db` (roles/wp-site/stack.ts: an extra host entry
// `wpfarm-db:host-gateway`, which each node's dockerd resolves to that address when it creates the container), so
// each task talks to the endpoint of the node it runs on. The firewall (roles/common) opens the port only to
// packets coming from the node's container bridges. docs/roles/galera.md ("On the site nodes").
//
// Needs the galera role first (phase 2): it creates the check user for these nodes' addresses too.
import type { Role, Step, StepContext } from '../../lib/types.ts';
import { apt } from '../../lib/ops/apt.ts';
import { task } from '../../lib/ops/base.ts';
import { copy, directory } from '../../lib/ops/files.ts';
import { templatePath } from '../../lib/ops/template.ts';
import { sh } from '../../lib/shell.ts';
import { endpointSteps, endpointVars, reloadHandler, SITE_NODE_GROUP } from '../galera/endpoint.ts';
import { nodeAddress, settings } from '../galera/role.ts';

/** HAProxy, and the MariaDB client the check runs. */
export const DB_ENDPOINT_PACKAGES = ['haproxy', 'mariadb-client-core'];
/** The Docker bridge whose address HAProxy binds: what `host-gateway` resolves to (dockerd's default). */
export const BRIDGE = 'docker0';
export const DROPIN = '/etc/systemd/system/haproxy.service.d/50-wpfarm-after-docker.conf';

/** "4: docker0    inet 172.17.0.1/16 brd ..." (ip -4 -o addr show dev docker0) → "172.17.0.1" */
export function parseBridgeAddress(out: string): string | undefined {
  return /\binet (\d{1,3}(?:\.\d{1,3}){3})\//.exec(out)?.[1];
}

const BRIDGE_PROBE = sh`ip -4 -o addr show dev ${BRIDGE} 2>/dev/null || true`;

/** The bridge's address, registered as db_endpoint_bind (read with the role's probes on a rerun). */
function bridgeAddress(): Step {
  return task(
    `address of ${BRIDGE} (where the endpoint listens)`,
    async (c, probed) => {
      const out = probed ?? (await c.exec(BRIDGE_PROBE, { readOnly: true })).stdout;
      const a = parseBridgeAddress(out);
      if (!a) throw new Error(`${c.host.name}: no IPv4 address on ${BRIDGE} (is dockerd running? phase 1 installs it on swarm nodes)`);
      return { changed: false, result: a };
    },
    { register: 'db_endpoint_bind', probe: () => ({ script: BRIDGE_PROBE }) },
  );
}

/** Asks the writer's node name through this node's endpoint, at the bridge's address read on the host. */
export function answerScript(port: number, user: string): string {
  const sql = 'SELECT @@wsrep_node_name';
  return [
    `b=$( (${BRIDGE_PROBE}) | sed -n 's/.* inet \\([0-9.]*\\)\\/.*/\\1/p')`,
    sh`timeout 10 mariadb --no-defaults --connect-timeout=5 -h "$b" -P ${String(port)} -u ${user} -NB -e ${sql}`,
  ].join('\n');
}

/** the bridge address registered by bridgeAddress() */
function bindOf(c: StepContext): string {
  const a = c.registered.db_endpoint_bind?.result;
  if (typeof a !== 'string') throw new Error(`${c.host.name}: the address of ${BRIDGE} was not read`);
  return a;
}

const role: Role = {
  name: 'db-endpoint',
  hosts: SITE_NODE_GROUP,
  tags: ['db-endpoint'],
  description: 'the Galera single-writer endpoint (HAProxy) on every site node, for the containers of that node',
  handlers: reloadHandler,
  steps(ctx) {
    const s = settings(ctx.vars);
    const dbHosts = ctx.hosts(s.group).map((h) => ({ name: h.name, address: nodeAddress(h) }));
    if (!dbHosts.length) throw new Error(`db-endpoint: the inventory group '${s.group}' has no hosts`);
    const answer = answerScript(s.writerPort, s.checkUser);
    return [
      apt({ packages: DB_ENDPOINT_PACKAGES, update_cache: 3600, autostart: false }, { retries: 3, delayMs: 15_000 }),
      directory({ path: DROPIN.slice(0, DROPIN.lastIndexOf('/')), mode: '0755' }),
      copy({ src: templatePath('galera', 'haproxy-after-docker.conf'), path: DROPIN, mode: '0644' }),
      bridgeAddress(),
      ...endpointSteps(async (c) => endpointVars(s, c.vars, dbHosts, { role: 'db-endpoint', who: 'Every site node', bind: bindOf(c) })),
      task(
        'db endpoint answers (the writer, through this node)',
        async (c, probed) => {
          const endpoint = `${bindOf(c)}:${s.writerPort}`;
          // a rerun's answer from the role's probes (read while nothing was written); else asked now, retried
          const writer = (probed ?? '').trim();
          if (probed !== undefined && /^[\w.-]+$/.test(writer)) return { changed: false, result: { endpoint, writer } };
          if (c.check) return { skipped: 'check mode' };
          const r = await c.exec(answer, { readOnly: true });
          return { changed: false, result: { endpoint, writer: r.stdout.trim() } };
        },
        { retries: 15, delayMs: 2000, register: 'db_endpoint', probe: () => ({ script: `( ${answer} ) 2>/dev/null || true` }) },
      ),
    ];
  },
};

export default role;
