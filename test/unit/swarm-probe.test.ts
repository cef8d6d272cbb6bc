// The swarm steps' fast-path probe (roles/swarm-manager/swarm.ts parseSwarmProbe): a manager's and a worker's output.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { SWARM_INFO } from '../../lib/facts.ts';
import { memo } from '../../lib/shell.ts';
import type { Task } from '../../lib/types.ts';
import { NODE_UPDATE, parseSwarmProbe } from '../../roles/swarm-manager/swarm.ts';

const INFO = (o: Record<string, unknown>) => JSON.stringify({ LocalNodeState: 'active', NodeID: 'n1', NodeAddr: '10.0.0.11', ...o });

test('a manager: its state and every node of its cluster', () => {
  const out = [
    INFO({ ControlAvailable: true, Cluster: { ID: 'c1' }, RemoteManagers: [{ NodeID: 'n1', Addr: '10.0.0.11:2377' }] }),
    '@@nodes',
    'n1 10.0.0.11 manager ready active 10.0.0.11:2377/reachable {"edge":"true","managers":"true"}',
    'n2 10.0.0.21 worker ready drain - {}',
    'n3 10.0.0.22 worker down active - null',
  ].join('\n');
  const { me, nodes } = parseSwarmProbe(out);
  assert.equal(me.state, 'active');
  assert.equal(me.isManager, true);
  assert.equal(me.clusterId, 'c1');
  assert.deepEqual(
    nodes.map((n) => [n.id, n.addr, n.role, n.state, n.availability, n.manager]),
    [
      ['n1', '10.0.0.11', 'manager', 'ready', 'active', '10.0.0.11:2377/reachable'],
      ['n2', '10.0.0.21', 'worker', 'ready', 'drain', '-'],
      ['n3', '10.0.0.22', 'worker', 'down', 'active', '-'],
    ],
  );
  assert.deepEqual(nodes[0]!.labels, { edge: 'true', managers: 'true' });
  assert.deepEqual(nodes[2]!.labels, {});
});

test('a worker lists no node; docker not answering is "unavailable"', () => {
  const w = parseSwarmProbe(`${INFO({ ControlAvailable: false, RemoteManagers: [{ Addr: '10.0.0.11:2377' }] })}\n@@nodes\n`);
  assert.equal(w.me.isManager, false);
  assert.deepEqual(w.me.remoteManagers, ['10.0.0.11:2377']);
  assert.deepEqual(w.nodes, []);
  assert.equal(parseSwarmProbe('@@nodes\n').me.state, 'unavailable');
});

test('node labels: a node that joined after the phase probe is read again and labelled in the same run', async () => {
  const { nodeLabels } = await import('../../roles/swarm-manager/swarm.ts');
  const built = nodeLabels();
  assert.equal(built.kind, 'task');
  const step = built as Task;
  const probeLine = (id: string, addr: string, role: string, labels: string) =>
    `${id} ${addr} ${role} ready active ${role === 'manager' ? `${addr}:2377/reachable` : '-'} ${labels}`;
  const stale = [
    INFO({ ControlAvailable: true, Cluster: { ID: 'c1' } }),
    '@@nodes',
    probeLine('n1', '10.0.0.11', 'manager', '{"managers":"true"}'),
  ].join('\n');
  const fresh = `${stale}\n${probeLine('n9', '10.0.0.29', 'worker', '{}')}`;
  const hosts = [
    { name: 'mgr1', address: '10.0.0.11', groups: ['swarm', 'managers'], vars: {} },
    { name: 'wrk9', address: '10.0.0.29', groups: ['swarm', 'workers'], vars: {} },
  ];
  const execs: string[] = [];
  // a scripted manager: only what nodeLabels reads of its context (the runner's StepContext is much larger)
  const ctx = {
    check: false,
    vars: {},
    hosts: (p: string) => (p === 'swarm' ? hosts : []),
    exec: async (cmd: string) => {
      execs.push(cmd);
      return { stdout: cmd.includes('docker node update') ? '' : fresh, stderr: '', code: 0 };
    },
  } as unknown as Parameters<typeof step.run>[0];
  const out = await step.run(ctx, stale);
  assert.deepEqual(out && 'changes' in out ? out.changes : undefined, ['10.0.0.29: +workers=true']);
  assert.equal(execs.length, 2, execs.join('\n'));
  assert.match(execs[1]!, /^node_update --label-add workers=true n9$/m);

  // a no-change rerun, every node in the probe: no extra read, no write
  execs.length = 0;
  const settled = fresh.replace('n9 10.0.0.29 worker ready active - {}', 'n9 10.0.0.29 worker ready active - {"workers":"true"}');
  const again = await step.run(ctx, settled);
  assert.deepEqual(again, { changed: false });
  assert.equal(execs.length, 0);
});

test("node labels: each host's region (host var region) is a node label, beside its groups and node_labels", async () => {
  const { desiredLabels } = await import('../../roles/swarm-manager/swarm.ts');
  const hosts = [
    { name: 'mgr1', address: '10.0.0.11', groups: ['swarm', 'managers'], vars: { region: 'fra1' } },
    { name: 'wrk2', address: '10.0.0.22', groups: ['swarm', 'workers'], vars: { region: 'ams3', node_labels: { disk: 'ssd' } } },
    { name: 'wrk3', address: '10.0.0.23', groups: ['swarm', 'workers'], vars: {} },
  ];
  const want = desiredLabels({ vars: {}, hosts: (p: string) => (p === 'swarm' ? hosts : []) } as unknown as Parameters<
    typeof desiredLabels
  >[0]);
  assert.deepEqual(Object.fromEntries(want), {
    '10.0.0.11': { managers: 'true', region: 'fra1' },
    '10.0.0.22': { workers: 'true', region: 'ams3', disk: 'ssd' },
    '10.0.0.23': { workers: 'true' },
  });
});

// A worker's availability and the worker role's node labels, read with the first manager's probes (Probe.host)
const HOSTS = [
  { name: 'mgr1', address: '10.0.0.11', groups: ['swarm', 'managers'], vars: {} },
  { name: 'mgr2', address: '10.0.0.12', groups: ['swarm', 'managers'], vars: {} },
  { name: 'wrk1', address: '10.0.0.21', groups: ['swarm', 'workers'], vars: {} },
];
const MANAGER_VIEW = (wrk1: string) =>
  [
    INFO({ ControlAvailable: true, Cluster: { ID: 'c1' } }),
    '@@nodes',
    'n1 10.0.0.11 manager ready active 10.0.0.11:2377/reachable {"managers":"true"}',
    'n2 10.0.0.12 manager ready active 10.0.0.12:2377/reachable {"managers":"true"}',
    'n0 10.0.0.21 worker down active - {}',
    `n3 10.0.0.21 worker ready ${wrk1}`,
  ].join('\n');

/** a scripted context of host `name`: what the swarm steps read of it; execs recorded as "host: command" */
function scripted(name: string, execs: string[], answer: (host: string, cmd: string) => string) {
  const make = (h: string): unknown => ({
    check: false,
    vars: {},
    host: HOSTS.find((x) => x.name === h)!,
    hosts: (p: string) => (p === 'swarm' ? HOSTS : p === 'managers' ? HOSTS.slice(0, 2) : []),
    hostContext: (n: string) => make(n),
    exec: async (cmd: string) => {
      execs.push(`${h}: ${cmd}`);
      return { stdout: answer(h, cmd), stderr: '', code: 0 };
    },
  });
  return make(name);
}

test("clusterProbe: on a manager its own node list; on a worker the first manager's (Probe.host)", async () => {
  const { clusterProbe } = await import('../../roles/swarm-manager/swarm.ts');
  const none: string[] = [];
  const onMgr = clusterProbe(scripted('mgr2', none, () => '') as Parameters<typeof clusterProbe>[0]);
  assert.equal(onMgr.host, undefined);
  // the swarm state (SWARM_INFO, once per probe batch: memo), then the node list
  assert.ok(onMgr.script.startsWith(`${memo(SWARM_INFO)}\necho @@nodes\ndocker node ls -q`), onMgr.script);
  // one docker info for the swarm state and what the daemon pulls through (the image probes')
  assert.match(
    SWARM_INFO,
    /^timeout 20 docker info --format '\{\{json \.Swarm\}\}\{\{"\\n"\}\}pulls=\{\{len \.RegistryConfig\.Mirrors\}\}/,
  );
  const onWorker = clusterProbe(scripted('wrk1', none, () => '') as Parameters<typeof clusterProbe>[0]);
  assert.equal(onWorker.host, 'mgr1');
  assert.equal(onWorker.script, onMgr.script, 'the same script as the manager role reads there: read once');
});

test("a worker's availability: no round trip when the first manager's list says it; a drained worker is changed", async () => {
  const { availability } = await import('../../roles/swarm-manager/swarm.ts');
  const step = availability('active') as Task;
  const execs: string[] = [];
  const ctx = scripted('wrk1', execs, (h, cmd) => {
    if (cmd.includes('docker info'))
      return INFO({ NodeID: 'n3', ControlAvailable: h !== 'wrk1', RemoteManagers: [{ Addr: '10.0.0.11:2377' }] });
    if (cmd.includes('{{.Spec.Availability}}')) return 'drain\n';
    return '';
  }) as Parameters<typeof step.run>[0];
  const same = await step.run(ctx, MANAGER_VIEW('active - {"workers":"true"}'));
  assert.equal(same && same.changed, false);
  assert.deepEqual(execs, []);
  const drained = await step.run(ctx, MANAGER_VIEW('drain - {"workers":"true"}'));
  assert.deepEqual(drained && drained.changes, ['availability drain -> active']);
  assert.ok(
    execs.some((e) => e === 'mgr1: docker node update --availability active n3'),
    execs.join('\n'),
  );
  // the manager's list without this worker: its own state is read (the full path)
  execs.length = 0;
  await step.run(ctx, MANAGER_VIEW('x').split('\n').slice(0, 4).join('\n'));
  assert.match(execs.join('\n'), /^wrk1: timeout 20 docker info/);
});

test("the worker role's node labels: from the first manager's list, updated through that manager", async () => {
  const { nodeLabels } = await import('../../roles/swarm-manager/swarm.ts');
  const step = nodeLabels() as Task;
  const execs: string[] = [];
  const ctx = scripted('wrk1', execs, () => '') as Parameters<typeof step.run>[0];
  assert.deepEqual(await step.run(ctx, MANAGER_VIEW('active - {"workers":"true"}')), { changed: false });
  assert.deepEqual(execs, []);
  const out = await step.run(ctx, MANAGER_VIEW('active - {}'));
  assert.deepEqual(out && out.changes, ['10.0.0.21: +workers=true']);
  assert.deepEqual(execs, [`mgr1: ${NODE_UPDATE}\nnode_update --label-add workers=true n3`]);
});

test('node_update retries while Swarm answers "update out of sequence", fails at once on any other error', () => {
  // a docker stand-in for the shell function only (it counts its calls in a file: the function calls it in a
  // subshell): out of sequence twice, then success; another error; out of sequence every time
  const run = (fake: string) =>
    spawnSync(
      'bash',
      [
        '--norc',
        '-c',
        `f=$(mktemp); echo 0 >"$f"; ${fake}\n${NODE_UPDATE}\nnode_update --label-add a=b n1; echo "rc=$? calls=$(cat "$f")"; rm -f "$f"`,
      ],
      {
        encoding: 'utf8',
      },
    );
  const flaky = run(
    'docker() { n=$(($(cat "$f")+1)); echo $n >"$f"; [ $n -ge 3 ] && return 0; echo "Error response from daemon: rpc error: code = Unknown desc = update out of sequence" >&2; return 1; }',
  );
  assert.equal(flaky.stdout.trim(), 'rc=0 calls=3');
  const broken = run(
    'docker() { n=$(($(cat "$f")+1)); echo $n >"$f"; echo "Error response from daemon: node n1 not found" >&2; return 1; }',
  );
  assert.equal(broken.stdout.trim(), 'rc=1 calls=1');
  assert.match(broken.stderr, /node n1 not found/);
  const stuck = run('docker() { n=$(($(cat "$f")+1)); echo $n >"$f"; echo "update out of sequence" >&2; return 1; }');
  assert.equal(stuck.stdout.trim(), 'rc=1 calls=5');
});
