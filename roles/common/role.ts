// common: every host of the farm. Base packages, apt proxy, time sync and timezone, sysctl tuning, an admin
// user with SSH keys, SSH hardening, unattended security upgrades, the nftables firewall, and (on swarm
// nodes) the Docker engine with daemon.json.
//
// Variables (inventory): apt_proxy, timezone (UTC), admin_user (wpadmin), admin_ssh_keys (list; default the
// controller's key for this host, <key>.pub), management_cidrs (required), firewall_enabled (true),
// firewall_extra_rules, sysctl_global (false in the lab: host-wide sysctls would change the machine running the
// lab), registry, registry_insecure, registry_mirror, docker_log_max_size (10m), docker_log_max_file (3),
// docker_metrics_port (9323), dns_servers (given to dockerd). Text configs: templates/common/.
import { existsSync, readFileSync } from 'node:fs';
import { InputError } from '../../lib/errors.ts';
import { apt } from '../../lib/ops/apt.ts';
import { defineOp } from '../../lib/ops/base.ts';
import { command } from '../../lib/ops/command.ts';
import { directory, file } from '../../lib/ops/files.ts';
import { sysctl } from '../../lib/ops/sysctl.ts';
import { systemd } from '../../lib/ops/systemd.ts';
import { template, templatePath } from '../../lib/ops/template.ts';
import { authorizedKey, user } from '../../lib/ops/users.ts';
import type { Role, Step, StepContext } from '../../lib/types.ts';
import { z } from 'zod';
import { describeValue } from '../../lib/schema.ts';
import { str, list } from '../../lib/vars.ts';
import { cidrContains, FIREWALL_VARS, type FirewallRule, renderFirewall } from './firewall.ts';
import { BASE_PACKAGES, DOCKER_PACKAGES } from './packages.ts';

export { BASE_PACKAGES };

/** Tuning for a web farm. Network ones are per network namespace; the others are host-wide. */
export const SYSCTL_NET: Record<string, string> = {
  'net.core.somaxconn': '65535',
  'net.ipv4.tcp_max_syn_backlog': '8192',
  'net.ipv4.ip_local_port_range': '1024 65000',
  'net.ipv4.tcp_fin_timeout': '15',
  'net.ipv4.tcp_tw_reuse': '1',
  'net.ipv4.tcp_keepalive_time': '300',
};
export const SYSCTL_GLOBAL: Record<string, string> = {
  'vm.swappiness': '10',
  'fs.file-max': '2097152',
  'fs.inotify.max_user_watches': '524288',
  'net.core.netdev_max_backlog': '16384',
  'vm.max_map_count': '262144',
};

/** templates/common/<name>: the text configs of this role */
const tpl = (name: string) => templatePath('common', name);
const APT_PROXY = '/etc/apt/apt.conf.d/01wpfarm-proxy';

/**
 * apt_proxy goes into apt's configuration between quotes: a plain http(s) URL (scheme, host, optional port and
 * path), nothing that could end the quoted string or add a directive.
 */
export function aptProxyProblem(v: string): string | null {
  const why = `must be a plain http:// or https:// URL like http://10.0.0.5:3142, got ${describeValue(v)}`;
  if (!/^https?:\/\/[A-Za-z0-9.\-[\]:@%_~/]+$/.test(v)) return why;
  try {
    const u = new URL(v);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname && !u.search && !u.hash ? null : why;
  } catch {
    return why;
  }
}

/** The inventory variables of this role checked before any connection (Role.vars). */
export const COMMON_VARS = {
  ...FIREWALL_VARS,
  apt_proxy: z.string().superRefine((v, ctx) => {
    const why = aptProxyProblem(v);
    if (why) ctx.addIssue({ code: 'custom', message: why, input: v });
  }),
};

export function dockerDaemonJson(vars: Record<string, unknown>): string {
  const cfg: Record<string, unknown> = {
    'log-driver': 'json-file',
    'log-opts': { 'max-size': str(vars.docker_log_max_size, '10m'), 'max-file': String(vars.docker_log_max_file ?? '3') },
    'metrics-addr': `0.0.0.0:${Number(vars.docker_metrics_port ?? 9323)}`,
    experimental: true,
  };
  if (vars.registry && vars.registry_insecure) cfg['insecure-registries'] = [String(vars.registry)];
  if (vars.registry_mirror) cfg['registry-mirrors'] = list(vars.registry_mirror);
  // containers resolve through dockerd's embedded DNS, which forwards to these (never to a public fallback)
  if (vars.dns_servers) cfg.dns = list(vars.dns_servers);
  return `${JSON.stringify(cfg, null, 2)}\n`;
}

/** Refuse to install a firewall that would lock the operator out: the controller must be in management_cidrs. */
function operatorAccessCheck(cidrs: string[]): Step {
  return defineOp({
    kind: 'check',
    title: 'firewall: the operator keeps SSH access',
    probe: () => ({ script: 'echo "$SSH_CONNECTION"' }),
    plan: (ctx: StepContext, out: string) => {
      const client = out.trim().split(/\s+/)[0] ?? '';
      if (!client) return { changed: false, changes: [], result: { client } };
      if (!cidrs.some((c) => cidrContains(c, client))) {
        throw new InputError(
          `${ctx.host.name}: this controller reaches the host from ${client}, which is outside management_cidrs (${cidrs.join(', ')}): ` +
            'the firewall would lock you out. Add your address to management_cidrs in the inventory.',
        );
      }
      return { changed: false, changes: [], result: { client } };
    },
  });
}

function adminKeys(ctx: StepContext): string[] {
  const keys = list(ctx.vars.admin_ssh_keys);
  if (keys.length) return keys;
  const pub = ctx.host.key ? `${ctx.host.key}.pub` : '';
  if (pub && existsSync(pub)) return [readFileSync(pub, 'utf8').trim()];
  throw new InputError(`${ctx.host.name}: admin_ssh_keys is not set and ${pub || 'the host has no key'}.pub does not exist`);
}

const role: Role = {
  name: 'common',
  hosts: 'all',
  tags: ['common'],
  description: 'base packages, time, sysctl, admin user, SSH hardening, upgrades, firewall, Docker engine',
  vars: COMMON_VARS,
  handlers: {
    'reload ssh': () => [command({ cmd: ['sh', '-c', 'sshd -t && systemctl reload ssh'] })],
    'reload firewall': () => [command({ cmd: ['nft', '-f', '/etc/nftables.conf'] })],
    'restart docker': () => [systemd({ name: 'docker', state: 'restarted' })],
  },
  steps(ctx) {
    const v = ctx.vars;
    const admin = str(v.admin_user, 'wpadmin');
    const tz = str(v.timezone, 'UTC');
    if (!/^[A-Za-z0-9_+\-/]+$/.test(tz)) throw new InputError(`timezone: invalid value '${tz}'`);
    const cidrs = list(v.management_cidrs);
    const firewall = v.firewall_enabled !== false;
    if (firewall && !cidrs.length) throw new InputError('management_cidrs is required (the firewall allows SSH only from there)');
    const swarmHosts = ctx.hosts('swarm');
    const onSwarm = swarmHosts.some((h) => h.name === ctx.host.name);
    const [users, upgrades] = [{ tags: ['users'] }, { tags: ['upgrades'] }];
    const globalSysctl = v.sysctl_global !== undefined ? v.sysctl_global === true : v.lab !== true;
    const steps: Step[] = [
      // packages
      v.apt_proxy
        ? template({ path: APT_PROXY, src: tpl('apt-proxy.conf.ejs'), vars: { apt_proxy: String(v.apt_proxy) }, mode: '0644' })
        : file({ path: APT_PROXY, state: 'absent' }),
      apt({ packages: BASE_PACKAGES, state: 'present', update_cache: 3600 }, { tags: ['packages'], retries: 2, delayMs: 5000 }),
      // time
      command(
        {
          cmd: ['ln', '-sfn', `/usr/share/zoneinfo/${tz}`, '/etc/localtime'],
          unless: ['sh', '-c', `[ "$(readlink /etc/localtime)" = /usr/share/zoneinfo/${tz} ]`],
        },
        { name: `timezone ${tz}`, tags: ['time'] },
      ),
      file({ path: '/etc/timezone', content: `${tz}\n`, mode: '0644' }, { tags: ['time'] }),
      // ConditionVirtualization=!container: in the lab systemd skips it by itself; enabled everywhere.
      systemd({ name: 'systemd-timesyncd', enabled: true }, { tags: ['time'] }),
      // sysctl
      ...Object.entries({ ...SYSCTL_NET, ...(globalSysctl ? SYSCTL_GLOBAL : {}) }).map(([name, value]) =>
        sysctl({ name, value }, { tags: ['sysctl'] }),
      ),
      // admin user
      user({ name: admin, shell: '/bin/bash', groups: ['sudo'], comment: 'wpfarm admin' }, { tags: ['users'] }),
      authorizedKey({ user: admin, key: adminKeys(ctx) }, { tags: ['users'] }),
      template({ path: `/etc/sudoers.d/90-wpfarm-${admin}`, src: tpl('sudoers.ejs'), vars: { admin_user: admin }, mode: '0440' }, users),
      // ssh
      template(
        { path: '/etc/ssh/sshd_config.d/50-wpfarm-hardening.conf', src: tpl('sshd-hardening.conf.ejs'), mode: '0644' },
        { notify: 'reload ssh', tags: ['ssh'] },
      ),
      // upgrades
      template({ path: '/etc/apt/apt.conf.d/20auto-upgrades', src: tpl('20auto-upgrades.ejs'), mode: '0644' }, upgrades),
      template(
        { path: '/etc/apt/apt.conf.d/52wpfarm-unattended-upgrades', src: tpl('52wpfarm-unattended-upgrades.ejs'), mode: '0644' },
        upgrades,
      ),
    ];
    if (firewall) {
      const nft = renderFirewall({
        host: ctx.host,
        all: ctx.hosts('all'),
        managers: ctx.hosts('managers'),
        swarm: swarmHosts,
        monitoring: ctx.hosts('monitoring'),
        managementCidrs: cidrs,
        extraRules: (v.firewall_extra_rules as FirewallRule[] | undefined) ?? [],
        dbEndpointPort: typeof v.galera_writer_port === 'number' ? v.galera_writer_port : undefined,
      });
      steps.push(
        operatorAccessCheck(cidrs),
        file({ path: '/etc/nftables.conf', content: nft, mode: '0755' }, { notify: 'reload firewall', tags: ['firewall'] }),
        systemd({ name: 'nftables', enabled: true, state: 'started' }, { tags: ['firewall'] }),
      );
    }
    if (onSwarm) {
      steps.push(
        directory({ path: '/etc/docker', mode: '0755' }, { tags: ['docker'] }),
        file(
          { path: '/etc/docker/daemon.json', content: dockerDaemonJson(v), mode: '0644' },
          { notify: 'restart docker', tags: ['docker'] },
        ),
        apt({ packages: DOCKER_PACKAGES, state: 'present' }, { tags: ['docker', 'packages'], retries: 2, delayMs: 5000 }),
        systemd({ name: 'docker', enabled: true, state: 'started' }, { tags: ['docker'] }),
      );
    }
    return steps;
  },
};

export default role;
