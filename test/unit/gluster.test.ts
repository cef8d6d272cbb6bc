// Unit tier: the gluster role's pure helpers (roles/gluster/model.ts): settings, brick layout, commands,
// parsers of the gluster CLI's output (samples as GlusterFS 10.3 prints them in the lab), fstab, unit names.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { InputError } from '../../lib/errors.ts';
import type { HostSpec } from '../../lib/types.ts';
import {
  brickDifferences,
  brickLayout,
  createVolumeCommand,
  DEFAULT_OPTIONS,
  dockerDropIn,
  fstabLine,
  fstabRegexp,
  mountUnitName,
  optionChanges,
  parseHealInfo,
  parsePeerStatus,
  parseVolumeInfo,
  parseVolumeStatus,
  peerConnected,
  peerKnows,
  portRange,
  setOptionsCommand,
  settings,
  siteDirSteps,
} from '../../roles/gluster/model.ts';

const host = (name: string, address: string, vars: Record<string, unknown> = {}): HostSpec => ({
  name,
  address,
  port: 22,
  user: 'root',
  groups: [],
  vars,
});
const B = '/srv/gluster/bricks/wpfarm-sites';

test('settings: defaults, CLI strings for booleans, option overrides and removal, bad input', () => {
  const s = settings({});
  assert.equal(s.volume, 'wpfarm-sites');
  assert.equal(s.brickDir, B);
  assert.equal(s.mount, '/mnt/gluster/sites');
  assert.equal(s.force, false);
  assert.deepEqual(s.ports, { base: 49152, max: 49251 });
  assert.equal(s.options['network.ping-timeout'], '10');
  assert.equal(s.options['cluster.quorum-type'], 'auto');
  assert.equal(settings({ gluster_brick_force: 'true' }).force, true);
  assert.equal(settings({ gluster_brick_force: true }).force, true);
  assert.equal(settings({ gluster_docker_after_mount: 'false' }).dockerAfterMount, false);
  assert.equal(settings({ gluster_volume: 'v2' }).brickDir, '/srv/gluster/bricks/v2');
  assert.equal(settings({ gluster_mount: '/mnt/x/' }).mount, '/mnt/x');
  // the managers mount the volume too by default (Portainer's data); a list, a CLI string, or none
  assert.deepEqual(s.extraClientGroups, ['managers']);
  assert.deepEqual(settings({ gluster_extra_client_groups: 'managers, edge' }).extraClientGroups, ['managers', 'edge']);
  assert.deepEqual(settings({ gluster_extra_client_groups: [] }).extraClientGroups, []);
  assert.throws(() => settings({ gluster_extra_client_groups: ['a b'] }), InputError);
  const o = settings({
    gluster_cache_size: '64MB',
    gluster_volume_options: { 'performance.parallel-readdir': null, 'cluster.favorite-child-policy': 'mtime', 'network.ping-timeout': 5 },
  }).options;
  assert.equal(o['performance.cache-size'], '64MB');
  assert.equal(o['performance.parallel-readdir'], undefined);
  assert.equal(o['cluster.favorite-child-policy'], 'mtime');
  assert.equal(o['network.ping-timeout'], '5');
  assert.throws(() => settings({ gluster_volume: 'a b' }), InputError);
  assert.throws(() => settings({ gluster_volume: '-x' }), InputError);
  assert.throws(() => settings({ gluster_mount: 'relative/path' }), InputError);
  assert.throws(() => settings({ gluster_brick_dir: '/srv/../etc' }), InputError);
  assert.throws(() => settings({ gluster_volume_options: ['x'] }), InputError);
  assert.throws(() => settings({ gluster_volume_options: { 'Bad Key': 'x' } }), InputError);
  assert.throws(() => settings({ gluster_mount_options: ['ok', 'x;rm'] }), InputError);
  assert.throws(() => portRange({ gluster_brick_ports: '50000-49000' }), InputError);
  assert.deepEqual(portRange({ gluster_brick_ports: '50000-50099' }), { base: 50000, max: 50099 });
});

test('brick layout: data, data, arbiter per replica set; private addresses; wrong counts are bad input', () => {
  const st1 = host('st1', '10.77.0.41');
  const st2 = host('st2', '203.0.113.2', { private_address: '10.0.0.2' });
  const mon1 = host('mon1', '10.77.0.51');
  const bricks = brickLayout([st1, st2], [mon1], B);
  assert.deepEqual(
    bricks.map((b) => [b.host, b.address, b.arbiter]),
    [
      ['st1', '10.77.0.41', false],
      ['st2', '10.0.0.2', false],
      ['mon1', '10.77.0.51', true],
    ],
  );
  const six = brickLayout([st1, st2, host('st3', '10.0.0.3'), host('st4', '10.0.0.4')], [mon1, host('mon2', '10.0.0.6')], B);
  assert.deepEqual(
    six.map((b) => `${b.host}${b.arbiter ? '*' : ''}`),
    ['st1', 'st2', 'mon1*', 'st3', 'st4', 'mon2*'],
  );
  assert.throws(() => brickLayout([st1], [mon1], B), /two data hosts per arbiter/);
  assert.throws(() => brickLayout([st1, st2], [], B), InputError);
  assert.throws(() => brickLayout([st1, mon1], [mon1], B), /both a data and an arbiter/);
  assert.equal(
    createVolumeCommand({ volume: 'wpfarm-sites', force: true }, bricks),
    `gluster --mode=script volume create wpfarm-sites replica 3 arbiter 1 10.77.0.41:${B} 10.0.0.2:${B} 10.77.0.51:${B} force`,
  );
  assert.ok(!createVolumeCommand({ volume: 'v', force: false }, bricks).endsWith('force'));
  // values are quoted by zx (a space in a value stays one word)
  assert.equal(
    setOptionsCommand('v', [
      ['a.b', 'x y'],
      ['c.d', 'on'],
    ]),
    "gluster --mode=script volume set v a.b $'x y' && gluster --mode=script volume set v c.d on",
  );
});

const PEER_STATUS = `Number of Peers: 2

Hostname: 10.77.0.42
Uuid: e71cbd3f-bbee-41ba-a241-7b8d7e87c89a
State: Peer in Cluster (Connected)

Hostname: st3.example
Uuid: 90a4caf5-1202-4a3e-9b84-66b29c2e6fcd
State: Peer in Cluster (Disconnected)
Other names:
10.77.0.51
`;

test('peer status: hostnames, other names, connection state', () => {
  const peers = parsePeerStatus(PEER_STATUS);
  assert.equal(peers.length, 2);
  assert.equal(peers[0]!.uuid, 'e71cbd3f-bbee-41ba-a241-7b8d7e87c89a');
  assert.ok(peerConnected(peers[0]!));
  assert.ok(!peerConnected(peers[1]!));
  assert.equal(peerKnows(peers, '10.77.0.51')?.hostname, 'st3.example');
  assert.equal(peerKnows(peers, '10.77.0.99'), undefined);
  assert.deepEqual(parsePeerStatus('Number of Peers: 0\n'), []);
});

const VOLUME_INFO = `
Volume Name: wpfarm-sites
Type: Replicate
Volume ID: 5d3c5d0e-6a52-4c2e-8f55-0c4b7d5e7d11
Status: Started
Snapshot Count: 0
Number of Bricks: 1 x (2 + 1) = 3
Transport-type: tcp
Bricks:
Brick1: 10.77.0.41:${B}
Brick2: 10.77.0.42:${B}
Brick3: 10.77.0.51:${B} (arbiter)
Options Reconfigured:
performance.cache-size: 128MB
network.ping-timeout: 10
cluster.granular-entry-heal: on
nfs.disable: on
`;

test('volume info: bricks with the arbiter, options; option and brick differences', () => {
  const v = parseVolumeInfo(VOLUME_INFO);
  assert.ok(v);
  assert.equal(v.status, 'Started');
  assert.equal(v.type, 'Replicate');
  assert.deepEqual(v.bricks, [
    { name: `10.77.0.41:${B}`, arbiter: false },
    { name: `10.77.0.42:${B}`, arbiter: false },
    { name: `10.77.0.51:${B}`, arbiter: true },
  ]);
  assert.equal(v.options['performance.cache-size'], '128MB');
  assert.equal(parseVolumeInfo('Volume wpfarm-sites does not exist\n'), null);
  assert.equal(parseVolumeInfo(''), null);
  const want = { 'network.ping-timeout': '10', 'performance.cache-size': '128mb', 'cluster.quorum-type': 'auto' };
  assert.deepEqual(optionChanges(want, v.options), [['cluster.quorum-type', 'auto']]);
  assert.equal(optionChanges(DEFAULT_OPTIONS, {}).length, Object.keys(DEFAULT_OPTIONS).length);
  const bricks = brickLayout([host('st1', '10.77.0.41'), host('st2', '10.77.0.42')], [host('mon1', '10.77.0.51')], B);
  assert.deepEqual(brickDifferences(bricks, v), []);
  const moved = brickLayout([host('st1', '10.77.0.41'), host('st2', '10.77.0.43')], [host('mon1', '10.77.0.51')], B);
  assert.deepEqual(brickDifferences(moved, v), [`brick 2: wanted 10.77.0.43:${B}, volume has 10.77.0.42:${B}`]);
});

const VOLUME_STATUS = `Status of volume: wpfarm-sites
Gluster process                             TCP Port  RDMA Port  Online  Pid
------------------------------------------------------------------------------
Brick 10.77.0.41:/srv/gluster/bricks/wpfarm
-sites                                      49153     0          Y       4863 
Brick 10.77.0.42:/srv/gluster/bricks/wpfarm
-sites                                      N/A       N/A        N       N/A  
Brick 10.77.0.51:/b                         49182     0          Y       5982 
Self-heal Daemon on localhost               N/A       N/A        Y       4798 
 
Task Status of Volume wpfarm-sites
------------------------------------------------------------------------------
There are no active volume tasks
`;

test('volume status: wrapped brick names, ports, online flags', () => {
  assert.deepEqual(parseVolumeStatus(VOLUME_STATUS), [
    { brick: `10.77.0.41:${B}`, port: 49153, online: true, pid: '4863' },
    { brick: `10.77.0.42:${B}`, port: 0, online: false, pid: 'N/A' },
    { brick: '10.77.0.51:/b', port: 49182, online: true, pid: '5982' },
  ]);
});

test('heal info: entries per brick, total only when every brick answered', () => {
  const pending = `Brick 10.77.0.41:${B}
/wpfarm-test/fault/f1.txt
/wpfarm-test/fault
Status: Connected
Number of entries: 2

Brick 10.77.0.42:${B}
Status: Transport endpoint is not connected
Number of entries: -

Brick 10.77.0.51:${B}
Status: Connected
Number of entries: 2
`;
  const p = parseHealInfo(pending);
  assert.deepEqual(
    p.bricks.map((b) => b.entries),
    [2, null, 2],
  );
  assert.equal(p.bricks[1]!.status, 'Transport endpoint is not connected');
  assert.equal(p.total, null);
  const done = parseHealInfo(pending.replace(/Number of entries: \S+/g, 'Number of entries: 0'));
  assert.equal(done.total, 0);
  assert.equal(parseHealInfo('').total, null);
});

test('fstab line and its matcher; mount unit names as systemd-escape makes them', () => {
  const s = settings({});
  const line = fstabLine(s, ['10.77.0.41', '10.77.0.42', '10.77.0.51']);
  assert.equal(
    line,
    '10.77.0.41:/wpfarm-sites /mnt/gluster/sites glusterfs defaults,_netdev,backup-volfile-servers=10.77.0.42:10.77.0.51 0 0',
  );
  assert.equal(
    fstabLine({ ...s, mountOptions: ['noatime'] }, ['a']),
    'a:/wpfarm-sites /mnt/gluster/sites glusterfs defaults,_netdev,noatime 0 0',
  );
  assert.throws(() => fstabLine(s, []), InputError);
  const re = fstabRegexp('/mnt/gluster/sites');
  assert.ok(re.test(line));
  assert.ok(re.test('old:/vol /mnt/gluster/sites/ glusterfs defaults 0 0'));
  assert.ok(!re.test('# x:/vol /mnt/gluster/sites glusterfs defaults 0 0'));
  assert.ok(!re.test('x:/vol /mnt/gluster/sites2 glusterfs defaults 0 0'));
  assert.ok(!re.test('UUID=1 / ext4 defaults 0 1'));
  const cases = ['/mnt/gluster/sites', '/srv/my-data', '/mnt/.hidden/x', '/data/a b', '/'];
  const expected = ['mnt-gluster-sites.mount', 'srv-my\\x2ddata.mount', 'mnt-.hidden-x.mount', 'data-a\\x20b.mount', '-.mount'];
  assert.deepEqual(cases.map(mountUnitName), expected);
  // the same as systemd's own tool, where it is installed on the controller
  let real: string[] | null = null;
  try {
    real = cases.map((c) => execFileSync('systemd-escape', ['--path', '--suffix=mount', c], { encoding: 'utf8' }).trim());
  } catch {
    real = null;
  }
  if (real) assert.deepEqual(cases.map(mountUnitName), real);
  assert.match(dockerDropIn('/mnt/gluster/sites'), /^\[Unit\]\nWants=mnt-gluster-sites\.mount\nAfter=mnt-gluster-sites\.mount\n$/m);
});

test('siteDirSteps: the site directory and its three subdirectories, owned by www-data; bad ids refused', () => {
  const ops = siteDirSteps('site12', { gluster_mount: '/mnt/g' });
  assert.deepEqual(
    ops.map((o) => [o.kind, o.title]),
    [
      ['directory', 'directory /mnt/g/site12'],
      ['directory', 'directory /mnt/g/site12/uploads'],
      ['directory', 'directory /mnt/g/site12/plugins'],
      ['directory', 'directory /mnt/g/site12/themes'],
    ],
  );
  // the probe asks about the wanted owner (uid 33 by default)
  const probe = ops[0]!.probe({} as never);
  assert.ok(probe && probe.script.includes('/mnt/g/site12'));
  for (const bad of ['../etc', 'a/b', '', 'A B', '-x']) assert.throws(() => siteDirSteps(bad), InputError, bad);
});
