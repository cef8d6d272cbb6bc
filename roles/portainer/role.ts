// portainer: the management UI with RBAC. Its Swarm stack (server on a manager, agent on every node) on the
// farm's `management` overlay, then its configuration through Portainer's HTTP API from the control machine
// (configure.ts): administrator, the Swarm environment, one team per site group, access policies, a resource
// control per site stack. Where the images cannot be pulled (the project's lab machines), the deploy and the
// configuration are reported as skipped with that reason, as roles/traefik does. Variables: docs/roles/portainer.md.
import { existsSync } from 'node:fs';
import { InputError } from '../../lib/errors.ts';
import { lookupEnv, envFileShown } from '../../lib/env.ts';
import { PortainerClient } from '../../lib/cloud/portainer.ts';
import { task } from '../../lib/ops/base.ts';
import { sh } from '../../lib/shell.ts';
import { directory } from '../../lib/ops/files.ts';
import { imageAvailable, stackDeploy } from '../../lib/ops/docker.ts';
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
    const steps: Step[] = [
      // Portainer's BoltDB: on the Gluster volume, which EVERY manager must mount (the single replica may move to any
      // of them): checked on each, before anything is created (a directory made on a manager's own disk would hide it)
      task(
        `${s.dataDir} on the Gluster volume of every manager`,
        async (c) => {
          const missing: string[] = [];
          for (const h of c.hosts('managers')) {
            const m = h.name === c.host.name ? c : c.hostContext(h.name);
            const r = await m.exec(
              sh`findmnt -n -o FSTYPE,TARGET -T ${s.glusterMount} 2>/dev/null || true; ` +
                sh`timeout 15 stat -c %i ${s.glusterMount} >/dev/null 2>&1 && echo answers`,
              { nothrow: true, readOnly: true },
            );
            const [fs = '', target = ''] = (r.stdout.split('\n')[0] ?? '').trim().split(/\s+/);
            if (fs !== 'fuse.glusterfs' || target !== s.glusterMount || !/answers/.test(r.stdout))
              missing.push(`${h.name} (${fs || 'nothing'} at ${target || '?'})`);
          }
          if (missing.length)
            throw new Error(
              `${s.glusterMount} is not a mounted Gluster volume on ${missing.join(', ')}: Portainer's data (${s.dataDir}) must be on ` +
                'storage every manager mounts (its single replica may run on any): run the gluster role (gluster_extra_client_groups ' +
                'includes managers); nothing deployed',
            );
          return { changed: false };
        },
        { runOnce: true, tags: ['portainer'] },
      ),
      directory({ path: s.dataDir, mode: '0700' }, { runOnce: true, tags: ['portainer'] }),
      task(
        `portainer images ${s.image}, ${s.agentImage}`,
        async (c) => {
          for (const image of [s.image, s.agentImage]) {
            const a = await imageAvailable(c, image);
            if (!a.ok) return { skipped: a.reason, result: a, standIn: { component: 'portainer', why: a.reason } };
          }
          return { result: { ok: true, reason: '' }, changes: [] };
        },
        { runOnce: true, register: 'portainer_images', tags: ['portainer'] },
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
