// The swarm steps' fast-path probe (roles/swarm-manager/swarm.ts parseSwarmProbe): a manager's and a worker's output.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Task } from '../../lib/types.ts';
import { parseSwarmProbe } from '../../roles/swarm-manager/swarm.ts';

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
  assert.match(execs[1]!, /docker node update --label-add workers=true n9/);

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
