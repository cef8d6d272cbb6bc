// portainer: the management UI with RBAC. Its Swarm stack (server on a manager, agent on every node) on the
// farm's `management` overlay, then its configuration through Portainer's HTTP API from the control machine
// (configure.ts): administrator, the Swarm environment, one team per site group, access policies, a resource
// control per site stack. Where the images cannot be pulled (the project's lab machines), the deploy and the
// configuration are reported as skipped with that reason, as roles/traefik does. Variables: docs/roles/portainer.md.
import { existsSync } from 'node:fs';
import { InputError } from '../../lib/errors.ts';
import { lookupEnv, envFileShown } from '../../lib/env.ts';
import { PortainerClient } from '../../lib/cloud/portainer.ts';
import { nestedOutputs, nestedProbe, task } from '../../lib/ops/base.ts';
import { sh } from '../../lib/shell.ts';
import { directory } from '../../lib/ops/files.ts';
import { imageAvailable, imagePresentProbe, stackDeploy } from '../../lib/ops/docker.ts';
import type { Role, Step, StepContext } from '../../lib/types.ts';
import { loadSites } from '../wp-site/site.ts';
import { portainerSettings, portainerStack, PortainerVarsError, PORTAINER_STACK, type PortainerSettings } from './config.ts';
import { configurePortainer } from './configure.ts';

function settings(ctx: StepContext): PortainerSettings {
  const dir = String(ctx.vars.wp_sites_dir ?? 'inventory/sites');
  const known = existsSync(dir) ? loadSites(dir).map((s) => s.id) : undefined;
  try {
    return portainerSettings(ctx.vars, known);
  } catch (e) {
    if (e instanceof PortainerVarsError) throw new InputError(e.message);
    throw e;
  }
}

/** '' when the mount script's output shows the Gluster volume mounted and answering at the mount point, else what is there. */
export function dataMountProblem(s: Pick<PortainerSettings, 'glusterMount'>, out: string): string {
  const [fs = '', target = ''] = (out.split('\n')[0] ?? '').trim().split(/\s+/);
  return fs !== 'fuse.glusterfs' || target !== s.glusterMount || !/answers/.test(out) ? `${fs || 'nothing'} at ${target || '?'}` : '';
}

const role: Role = {
  name: 'portainer',
  hosts: 'managers',
  tags: ['portainer'],
  description: 'Portainer (management UI with RBAC) on the management network: stack, admin, Swarm environment, teams per site group',
  steps(ctx) {
    const s = settings(ctx);
    const password = lookupEnv(s.adminPasswordEnv);
    if (!password) throw new InputError(`${s.adminPasswordEnv} is not set in ${envFileShown()} (Portainer's administrator password)`);
    if (password.length < 12) throw new InputError(`${s.adminPasswordEnv} in ${envFileShown()}: Portainer requires at least 12 characters`);
    ctx.secret(password);
    const bundle = portainerStack(s);
    const mountScript =
      sh`findmnt -n -o FSTYPE,TARGET -T ${s.glusterMount} 2>/dev/null || true; ` +
      sh`timeout 15 stat -c %i ${s.glusterMount} >/dev/null 2>&1 && echo answers`;
    const steps: Step[] = [
      // Portainer's BoltDB: on the Gluster volume, which EVERY manager must mount (the single replica may move to any
      // of them): checked on each, before anything is created (a directory made on a manager's own disk would hide it)
      // every manager reads its own mount with its probes and tells the others at a barrier (a manager not in this run,
      // or when fewer --forks than managers allow no barrier, is read from here)
      task(
        `${s.dataDir} on the Gluster volume of every manager`,
        async (c, probed) => {
          const mine = dataMountProblem(s, probed ?? (await c.exec(mountScript, { nothrow: true, readOnly: true })).stdout);
          let met: Record<string, string> = {};
          try {
            met = (await c.barrier<string>('portainer data mounts', { value: mine, timeoutMs: 10 * 60_000 })).arrived;
          } catch (e) {
            if (!/must run at once/.test((e as Error).message)) throw e;
          }
          const missing: string[] = [];
          for (const h of c.hosts('managers')) {
            const seen =
              h.name === c.host.name
                ? mine
                : (met[h.name] ??
                  dataMountProblem(s, (await c.hostContext(h.name).exec(mountScript, { nothrow: true, readOnly: true })).stdout));
            if (seen) missing.push(`${h.name} (${seen})`);
          }
          if (missing.length)
            throw new Error(
              `${s.glusterMount} is not a mounted Gluster volume on ${missing.join(', ')}: Portainer's data (${s.dataDir}) must be on ` +
                'storage every manager mounts (its single replica may run on any): run the gluster role (gluster_extra_client_groups ' +
                'includes managers); nothing deployed',
            );
          return { changed: false };
        },
        { tags: ['portainer'], probe: () => ({ script: mountScript }) },
      ),
      directory({ path: s.dataDir, mode: '0700' }, { runOnce: true, tags: ['portainer'] }),
      task(
        `portainer images ${s.image}, ${s.agentImage}`,
        async (c, probed) => {
          const seen = nestedOutputs(probed, 2);
          for (const [i, image] of [s.image, s.agentImage].entries()) {
            const a = await imageAvailable(c, image, seen[i]);
            if (!a.ok) return { skipped: a.reason, result: a, standIn: { component: 'portainer', why: a.reason } };
          }
          return { result: { ok: true, reason: '' }, changes: [] };
        },
        {
          runOnce: true,
          register: 'portainer_images',
          tags: ['portainer'],
          probe: (c) => nestedProbe(c, [imagePresentProbe(s.image), imagePresentProbe(s.agentImage)]),
        },
      ),
      task(
        'portainer stack',
        async (c) => {
          const reg = c.registered.portainer_images;
          if (reg?.status === 'skipped') return { skipped: reg.reason ?? 'the Portainer images are not available' };
          const r = await c.run(stackDeploy({ name: PORTAINER_STACK, compose: bundle.stackYaml }));
          if (r.status === 'failed') throw new Error(r.error ?? 'stack deploy failed');
          return { changed: r.status === 'changed', changes: r.changes, diff: r.diff, result: r.result };
        },
        { runOnce: true, register: 'portainer_stack', tags: ['portainer'] },
      ),
      task(
        `portainer configuration through ${s.apiUrl}`,
        async (c) => {
          const reg = c.registered.portainer_stack;
          // nothing answers the API: say so, with the stack's reason (the image that cannot be pulled)
          if (reg?.status === 'skipped') return { skipped: `Portainer is not running: ${reg.reason ?? 'its stack was not deployed'}` };
          // from the control machine, over HTTPS through Traefik (management addresses only); the password and the
          // session token travel in request bodies and headers only, masked in every output
          const api = new PortainerClient({ baseUrl: s.apiUrl, secrets: [password] });
          const report = await configurePortainer(api, s, password, { check: c.check });
          for (const n of report.notes) c.log(n);
          return {
            changed: report.changes.length > 0,
            changes: report.changes,
            result: { endpointId: report.endpointId, teams: report.teams },
          };
        },
        { runOnce: true, tags: ['portainer', 'portainer-config'] },
      ),
    ];
    return steps;
  },
};

export default role;
