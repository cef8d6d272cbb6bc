// The swarm steps' fast-path probe (roles/swarm-manager/swarm.ts parseSwarmProbe): a manager's and a worker's output.
import assert from 'node:assert/strict';
import { test } from 'node:test';
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
