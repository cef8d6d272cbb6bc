// The gluster role's no-change answers from its probes (roles/gluster/role.ts; issue 17): a server's state script
// (built as a string) and its parser, the pool step's "all in place" (every difference that makes it act is not),
// the client mount's probe. Samples as GlusterFS 10.3 prints them in the lab.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostSpec } from '../../lib/types.ts';
import { brickLayout, brickName, settings } from '../../roles/gluster/model.ts';
import { mountProbe, parseMount, parseServer, poolInPlace, serverProbe, serverScript } from '../../roles/gluster/role.ts';

const host = (name: string, address: string): HostSpec => ({ name, address, port: 22, user: 'root', groups: [], vars: {} });
const [st1, st2, mon1] = [host('st1', '10.0.0.41'), host('st2', '10.0.0.42'), host('mon1', '10.0.0.51')];
const s = settings({});
const bricks = brickLayout([st1, st2], [mon1], s.brickDir);

test('serverScript: state, peers and volume info; the bricks status only when asked (the first server)', () => {
  const plain = serverScript('wpfarm-sites');
  assert.equal(
    plain,
    [
      'echo @@installed; command -v gluster || true',
      'echo @@active; systemctl is-active glusterd 2>/dev/null || true',
      'echo @@peers; if systemctl -q is-active glusterd 2>/dev/null; then timeout 30 gluster --mode=script peer status 2>/dev/null || true; fi',
      'echo @@info; if systemctl -q is-active glusterd 2>/dev/null; then timeout 30 gluster --mode=script volume info wpfarm-sites 2>/dev/null || true; fi',
    ].join('\n'),
  );
  assert.equal(
    serverScript('wpfarm-sites', true),
    `${plain}\necho @@status; if systemctl -q is-active glusterd 2>/dev/null; then timeout 30 gluster --mode=script volume status wpfarm-sites 2>/dev/null || true; fi`,
  );
});

test('serverProbe: the first server everything and the bricks status, the second its peers, the others their state', () => {
  assert.equal(serverProbe('wpfarm-sites', 0), serverScript('wpfarm-sites', true));
  const [installed, active, peerStatus] = serverScript('wpfarm-sites').split('\n');
  assert.equal(serverProbe('wpfarm-sites', 1), [installed, active, peerStatus].join('\n'));
  assert.equal(serverProbe('wpfarm-sites', 2), [installed, active].join('\n'));
});

const peers = (...others: HostSpec[]) =>
  `Number of Peers: ${others.length}\n\n${others.map((h) => `Hostname: ${h.address}\nUuid: u-${h.name}\nState: Peer in Cluster (Connected)\n`).join('\n')}`;
const info = (status = 'Started', options = s.options) => `
Volume Name: wpfarm-sites
Type: Replicate
Status: ${status}
Number of Bricks: 1 x (2 + 1) = 3
Transport-type: tcp
Bricks:
${bricks.map((b, i) => `Brick${i + 1}: ${brickName(b)}${b.arbiter ? ' (arbiter)' : ''}`).join('\n')}
Options Reconfigured:
${Object.entries(options)
  .map(([k, v]) => `${k}: ${v}`)
  .join('\n')}
`;
const status = (port = s.ports.base, online = 'Y') =>
  [
    'Status of volume: wpfarm-sites',
    'Gluster process                             TCP Port  RDMA Port  Online  Pid',
    '------------------------------------------------------------------------------',
    ...bricks.map((b) => `Brick ${brickName(b)}   ${port}     0          ${online}       4863`),
  ].join('\n');
const server = (h: HostSpec, o: { peers: string; info?: string; status?: string; active?: string }) =>
  parseServer(
    [
      '@@installed',
      '/usr/sbin/gluster',
      '@@active',
      o.active ?? 'active',
      '@@peers',
      o.peers,
      '@@info',
      o.info ?? info(),
      ...(o.status !== undefined ? ['@@status', o.status] : []),
    ].join('\n'),
    h,
  );

test('poolInPlace: peers, volume, options, started, bricks online inside the port range', () => {
  const good = () => [
    server(st1, { peers: peers(st2, mon1), status: status() }),
    server(st2, { peers: peers(st1, mon1) }),
    server(mon1, { peers: peers(st1, st2) }),
  ];
  assert.equal(good()[0]!.status?.length, 3);
  assert.equal(good()[1]!.status, undefined);
  assert.equal(poolInPlace(s, bricks, good()), true);
  // what serverProbe reads of the second (its peers) and the third (its state) is enough
  const second = parseServer(`@@installed\n/usr/sbin/gluster\n@@active\nactive\n@@peers\n${peers(st1, mon1)}`, st2);
  const third = parseServer('@@installed\n/usr/sbin/gluster\n@@active\nactive', mon1);
  assert.equal(poolInPlace(s, bricks, [good()[0], second, third]), true);
  assert.equal(poolInPlace(s, bricks, [good()[0], second, parseServer('@@installed\n/usr/sbin/gluster\n@@active\nfailed', mon1)]), false);
  // each of these makes the step read the servers again and act
  const bad: [string, (ReturnType<typeof server> | undefined)[]][] = [
    ['a server not read', [good()[0], good()[1], undefined]],
    ['glusterd stopped', [good()[0], good()[1], server(mon1, { peers: peers(st1, st2), active: 'inactive' })]],
    ['a peer unknown to the first', [server(st1, { peers: peers(st2), status: status() }), good()[1], good()[2]]],
    ['the second does not know the first', [good()[0], server(st2, { peers: peers(mon1) }), good()[2]]],
    ['no volume', [server(st1, { peers: peers(st2, mon1), info: '', status: status() }), good()[1], good()[2]]],
    ['volume stopped', [server(st1, { peers: peers(st2, mon1), info: info('Stopped'), status: status() }), good()[1], good()[2]]],
    ['an option unset', [server(st1, { peers: peers(st2, mon1), info: info('Started', {}), status: status() }), good()[1], good()[2]]],
    ['bricks offline', [server(st1, { peers: peers(st2, mon1), status: status(s.ports.base, 'N') }), good()[1], good()[2]]],
    ['a brick outside the port range', [server(st1, { peers: peers(st2, mon1), status: status(s.ports.max + 1) }), good()[1], good()[2]]],
    ['no bricks status', [server(st1, { peers: peers(st2, mon1) }), good()[1], good()[2]]],
  ];
  for (const [why, st] of bad) assert.equal(poolInPlace(s, bricks, st), false, why);
});

test('the client mount: its probe, a working FUSE mount, a stale one, none', () => {
  assert.equal(
    mountProbe('/mnt/sites'),
    'findmnt -n -o FSTYPE,SOURCE --mountpoint /mnt/sites || true; echo @@stat; timeout 15 stat -c %i /mnt/sites >/dev/null 2>&1 && echo ok || echo stale',
  );
  assert.deepEqual(parseMount('fuse.glusterfs 10.0.0.41:/wpfarm-sites\n@@stat\nok'), {
    fstype: 'fuse.glusterfs',
    source: '10.0.0.41:/wpfarm-sites',
    ok: true,
  });
  assert.equal(parseMount('fuse.glusterfs 10.0.0.41:/wpfarm-sites\n@@stat\nstale').ok, false);
  assert.equal(parseMount('\n@@stat\nok').fstype, '');
});
