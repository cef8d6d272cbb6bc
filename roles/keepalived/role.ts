// keepalived: edge failover (Debian's package) on the edge group. VRRPv3 over unicast between the edge
// nodes; a vrrp_script checks the local edge listener (keepalived_check_url); the virtual IP
// (keepalived_vip) sits on the private network; in production the notify script also moves the
// DigitalOcean reserved IP (keepalived_reserved_ip) to the new master through the API.
// Text configs: templates/keepalived/. Variables: docs/roles/keepalived.md.
import { InputError } from '../../lib/errors.ts';
import { envFileShown, lookupEnv } from '../../lib/env.ts';
import { apt } from '../../lib/ops/apt.ts';
import { command } from '../../lib/ops/command.ts';
import { task } from '../../lib/ops/base.ts';
import { directory, file } from '../../lib/ops/files.ts';
import { systemd } from '../../lib/ops/systemd.ts';
import { template } from '../../lib/ops/template.ts';
import type { Role, Step } from '../../lib/types.ts';
import { CHECK_SCRIPT, CONF, METRICS_FILE, NOTIFY_SCRIPT, TOKEN_FILE, keepalivedConfVars, keepalivedSettings, tpl } from './config.ts';

/** What this role installs (the golden node image bakes them in: roles/common/golden.ts) */
export const KEEPALIVED_PACKAGES = ['keepalived', 'curl'];

const role: Role = {
  name: 'keepalived',
  hosts: 'edge',
  tags: ['keepalived'],
  description: 'edge failover: VRRPv3 (unicast) virtual IP on the edge nodes, health of the local edge listener, DigitalOcean reserved IP',
  handlers: {
    'reload keepalived': () => [systemd({ name: 'keepalived', state: 'reloaded' })],
  },
  steps(ctx) {
    // an inventory without a virtual or reserved IP has no failover to set up: said, not failed (bootstrap runs it)
    if (!ctx.vars.keepalived_vip && !ctx.vars.keepalived_reserved_ip) {
      return [task('keepalived', async () => ({ skipped: 'neither keepalived_vip nor keepalived_reserved_ip is set' }), { runOnce: true })];
    }
    const s = keepalivedSettings(ctx.vars);
    const vars = keepalivedConfVars(s, ctx.host, ctx.hosts(s.group));
    const steps: Step[] = [
      apt({ packages: KEEPALIVED_PACKAGES }),
      directory({ path: '/usr/local/lib/wpfarm', mode: '0755' }),
      template({ path: CHECK_SCRIPT, src: tpl('check.sh.ejs'), vars, mode: '0755' }),
      template({ path: NOTIFY_SCRIPT, src: tpl('notify.sh.ejs'), vars, mode: '0755' }),
      // the state metric appears at the next VRRP transition; a node set up before it existed gets it now
      command({ cmd: [NOTIFY_SCRIPT, '--metrics'], creates: METRICS_FILE }, { name: 'keepalived state metrics (first time)' }),
    ];
    if (s.reservedIp) {
      const token = lookupEnv(s.tokenEnv);
      if (!token)
        throw new InputError(`${s.tokenEnv} is not set in ${envFileShown()} (keepalived moves the reserved IP ${s.reservedIp} with it)`);
      ctx.secret(token);
      steps.push(file({ path: TOKEN_FILE, content: token, mode: '0600', secret: true }));
    } else {
      steps.push(file({ path: TOKEN_FILE, state: 'absent' }));
    }
    steps.push(
      template(
        { path: CONF, src: tpl('keepalived.conf.ejs'), vars, mode: '0640', validate: 'keepalived -t -f %s' },
        { notify: 'reload keepalived' },
      ),
      systemd({ name: 'keepalived', enabled: true, state: 'started' }),
    );
    return steps;
  },
};

export default role;
