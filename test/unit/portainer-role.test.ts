// The portainer role through the real runner (lib/runner.ts) against scripted managers whose Docker cannot pull
// (as on the project's lab machines): the image step is skipped with docker's reason, the stack and the API
// configuration are skipped with it, nothing is deployed and no API call is made; the same in check mode. When the
// probe read the registry's answer (no mirror, no proxy: lib/ops/docker.ts imagePresentProbe), no docker command
// is sent besides the probes (no pull tried: no write); when it could not tell, a real run tries the pull.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventStream } from '../../lib/events.ts';
import { newHostState, runRole, type RunEnv } from '../../lib/runner.ts';
import { ConnectionPool } from '../../lib/transport.ts';
import type { Connection, ExecResult, HostSpec, RunOptions, StepResult } from '../../lib/types.ts';
import role from '../../roles/portainer/role.ts';
import { DEFAULT_PORTAINER_IMAGE, portainerSettings, portainerStack, PortainerVarsError } from '../../roles/portainer/config.ts';

const NO_REGISTRY =
  'Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host';
const PASSWORD_ENV = 'WPFARM_UNIT_TEST_PORTAINER_PASSWORD';

/** A manager whose Docker has no image and reaches no registry; its data directory exists (0700 root); the Gluster
 *  volume mounted at /mnt/gluster/sites when it is in `mounted`. */
type FakeConn = Connection & { abortChannels(): Promise<string[]> };

function fakeConn(host: HostSpec, commands: string[], mounted: Set<string>, imageProbe: string): FakeConn {
  return {
    host,
    roundTrips: 0,
    async exec(command: string): Promise<ExecResult> {
      commands.push(`${host.name}: ${command}`);
      const mount = mounted.has(host.name) ? 'fuse.glusterfs /mnt/gluster/sites\nanswers\n' : 'ext4           /\nanswers\n';
      const stat = '@@stat\ndirectory|700|0|root|0|root|4096\n@@link\n@@real\n/mnt/gluster/sites/.wpfarm-portainer\n@@parent\nyes\n';
      // the runner reads probes in batches, each output after its marker line (lib/runner.ts probeScript), a task's
      // own operations' inside its probe (lib/ops/base.ts nestedProbe): each part answered by what it reads
      const answer = (script: string): string => {
        // a batch's probes first, then a task's parts in its probe (whose first marker follows the batch's "( ")
        const kind = script.includes('@@@wpfarm-probe:') ? 'probe' : 'part';
        const parts = script.split(new RegExp(`^(?:\\( )?printf '\\\\n%s\\\\n' '?(@@@wpfarm-${kind}:\\d+)'?$`, 'm'));
        if (parts.length > 1) {
          let out = '';
          for (let i = 1; i < parts.length; i += 2) out += `\n${parts[i]}\n${answer(parts[i + 1]!)}`;
          return `${out}\n`;
        }
        if (script.includes('findmnt')) return mount;
        if (script.includes('@@stat')) return stat;
        if (script.includes('docker image ls') && script.includes('echo present')) return `${imageProbe}\n`;
        throw new Error(`unexpected probe on ${host.name}: ${script.slice(0, 200)}`);
      };
      if (command.startsWith('findmnt')) return { code: 0, stderr: '', stdout: mount };
      if (command.includes('@@stat') || command.includes('@@@wpfarm-')) return { code: 0, stderr: '', stdout: answer(command) };
      if (/docker (image inspect|pull|manifest inspect)/.test(command)) return { code: 1, stdout: '', stderr: `${NO_REGISTRY}\n` };
      throw new Error(`unexpected command on ${host.name}: ${command.slice(0, 200)}`);
    },
    put: async () => {
      throw new Error('no upload expected');
    },
    forward: async () => {
      throw new Error('no forward expected');
    },
    close: async () => {},
    abortChannels: async () => [],
  };
}

class FakePool extends ConnectionPool {
  constructor(
    private readonly commands: string[],
    private readonly mounted: Set<string>,
    private readonly imageProbe: string,
  ) {
    super();
  }
  override get(host: HostSpec): Promise<FakeConn> {
    return Promise.resolve(fakeConn(host, this.commands, this.mounted, this.imageProbe));
  }
}

/** imagePresentProbe's answer: the registry's (no mirror, no proxy), or "absent" (it could not tell) */
const REGISTRY_SAYS = `cannot: ${NO_REGISTRY}`;

async function runPortainer(o: Partial<RunOptions> = {}, mounted = new Set(['mgr1', 'mgr2']), imageProbe = REGISTRY_SAYS) {
  const mk = (name: string): HostSpec => ({
    name,
    address: `10.10.0.${name.length}`,
    port: 22,
    user: 'root',
    groups: ['managers'],
    vars: {
      portainer_host: 'portainer.example.net',
      // a port nothing listens on: a call to the API would fail the step
      portainer_api_url: 'http://127.0.0.1:9/api',
      portainer_admin_password_env: PASSWORD_ENV,
      wp_sites_dir: '/nonexistent',
    },
  });
  const hosts = [mk('mgr1'), mk('mgr2')];
  const commands: string[] = [];
  const env: RunEnv = {
    pool: new FakePool(commands, mounted, imageProbe),
    events: new EventStream(),
    options: { check: false, diff: false, forks: 4, verbose: 0, ...o },
    allHosts: new Map(hosts.map((h) => [h.name, h])),
    select: (p) => hosts.filter((h) => h.groups.includes(p) || h.name === p),
    signal: { interrupted: false },
    hostState: new Map(),
  };
  for (const h of hosts) env.hostState.set(h.name, newHostState());
  const r = await runRole(role, hosts, env);
  return { r, commands };
}

const byStep = (results: StepResult[], start: string): StepResult => {
  const x = results.find((s) => s.step.startsWith(start));
  assert.ok(x, `a step "${start}..." ran: ${results.map((s) => s.step).join(', ')}`);
  return x;
};

for (const [check, probeTold] of [
  [false, true],
  [true, true],
  [false, false],
  [true, false],
]) {
  const mode = `${check ? ' (check mode)' : ''}${probeTold ? ', the probe read the registry' : ', the probe could not tell'}`;
  test(`portainer where the images cannot be pulled${mode}: stack and configuration skipped with the reason`, async () => {
    process.env[PASSWORD_ENV] = 'a-long-enough-admin-password';
    try {
      const { r, commands } = await runPortainer({ check }, undefined, probeTold ? REGISTRY_SAYS : 'absent');
      assert.deepEqual(
        r.results.filter((x) => x.status === 'failed').map((x) => `${x.host} ${x.step}: ${x.error}`),
        [],
      );
      const cannot = new RegExp(`^image ${DEFAULT_PORTAINER_IMAGE} cannot be pulled here: .*no such host$`);
      const img = byStep(r.results, 'portainer images');
      assert.equal(img.status, 'skipped');
      assert.match(img.reason ?? '', cannot);
      const stack = byStep(r.results, 'portainer stack');
      assert.equal(stack.status, 'skipped');
      assert.match(stack.reason ?? '', cannot);
      const api = byStep(r.results, 'portainer configuration');
      assert.equal(api.status, 'skipped');
      assert.equal(api.reason, `Portainer is not running: ${img.reason}`);
      // asked once, on one manager (runOnce); the agent's image is not asked for once the server's is missing
      // the Gluster volume checked on every manager, the data directory on it (the default)
      assert.equal(byStep(r.results, '/mnt/gluster/sites/.wpfarm-portainer on the Gluster volume of every manager').status, 'ok');
      assert.deepEqual(
        // each entry is `host: command` (a command may hold ': ' itself, as a batch's `trap : PIPE`)
        commands.filter((c) => / findmnt /.test(` ${c.slice(c.indexOf(': ') + 2)}`)).map((c) => c.split(':')[0]),
        ['mgr1', 'mgr2'],
      );
      // the probe batches only read (docker image ls, docker info, docker manifest inspect: both images, on every
      // manager that reads the step's probe); told by them, the step sends nothing; otherwise it asks docker once, on one
      // manager (runOnce), and not for the agent once the server's is missing
      const batches = commands.filter((c) => c.includes('@@@wpfarm-probe'));
      assert.ok(!batches.some((c) => /docker pull/.test(c)), 'probes only read');
      const docker = commands.filter((c) => c.includes('docker') && !c.includes('@@@wpfarm-probe'));
      if (probeTold) {
        assert.deepEqual(docker, [], 'the registry said no: nothing tried, no write');
        return;
      }
      assert.ok(docker.length > 0, 'docker was asked');
      assert.deepEqual([...new Set(docker.map((c) => c.split(':')[0]))], ['mgr1'], docker.join('\n'));
      assert.ok(
        docker.every((c) => c.includes(DEFAULT_PORTAINER_IMAGE)),
        docker.join('\n'),
      );
      assert.ok(!commands.some((c) => /stack deploy|docker (secret|config) create/.test(c)), 'nothing deployed');
      if (check) assert.ok(!commands.some((c) => c.includes('docker pull')), 'check mode does not pull');
      else
        assert.ok(
          commands.some((c) => c.includes('docker pull')),
          'a real run tries to pull',
        );
    } finally {
      delete process.env[PASSWORD_ENV];
    }
  });
}

test('portainer: a manager without the Gluster volume: refused with the hosts named, nothing created or deployed', async () => {
  process.env[PASSWORD_ENV] = 'a-long-enough-admin-password';
  try {
    const { r, commands } = await runPortainer({}, new Set(['mgr1']));
    // the once-for-all check fails the role on every manager (the runner reports a runOnce step's failure on each)
    const bad = r.results.filter((x) => x.status === 'failed');
    assert.deepEqual(
      bad.map((x) => `${x.host} ${x.step}`),
      ['mgr1', 'mgr2'].map((h) => `${h} /mnt/gluster/sites/.wpfarm-portainer on the Gluster volume of every manager`),
    );
    for (const b of bad)
      assert.match(
        b.error ?? '',
        /\/mnt\/gluster\/sites is not a mounted Gluster volume on mgr2 \(ext4 at \/\).*gluster_extra_client_groups/,
      );
    assert.ok(!commands.some((c) => /mkdir|install -d|docker pull|stack deploy/.test(c)), commands.join('\n'));
  } finally {
    delete process.env[PASSWORD_ENV];
  }
});

test("portainer's data: on the Gluster volume by default, its bind mount and placement consistent; elsewhere refused", () => {
  const base = { portainer_host: 'portainer.example.net' };
  const s = portainerSettings(base);
  assert.equal(s.dataDir, '/mnt/gluster/sites/.wpfarm-portainer');
  assert.equal(portainerSettings({ ...base, gluster_mount: '/srv/gfs/' }).dataDir, '/srv/gfs/.wpfarm-portainer');
  assert.equal(
    portainerSettings({ ...base, portainer_data_dir: '/mnt/gluster/sites/.mgmt/portainer/' }).dataDir,
    '/mnt/gluster/sites/.mgmt/portainer',
  );
  const svc = (portainerStack(s).stack.services as Record<string, { volumes: unknown[]; deploy: { replicas: number; placement: unknown } }>)
    .portainer!;
  assert.deepEqual(svc.volumes, [{ type: 'bind', source: '/mnt/gluster/sites/.wpfarm-portainer', target: '/data' }]);
  // any manager (each mounts the volume: the role checks it), one replica
  assert.deepEqual(svc.deploy.placement, { constraints: ['node.role == manager'] });
  assert.equal(svc.deploy.replicas, 1);
  for (const dir of [
    '/mnt/gluster/portainer',
    '/var/lib/portainer',
    '/mnt/gluster/sites',
    '/mnt/gluster/sites/../portainer',
    '/mnt/gluster/sites/a b',
  ])
    assert.throws(
      () => portainerSettings({ ...base, portainer_data_dir: dir }),
      (e: unknown) => e instanceof PortainerVarsError && /must be a directory on the Gluster volume \(under gluster_mount/.test(e.message),
      dir,
    );
});
