// Golden node images, the pure parts: the farm's package list (one source per role), the lab image's Dockerfile, the node
// image choice, snapshot names and pruning, the cloud inventory's image field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_PACKAGES, DOCKER_PACKAGES, DOCKER_UNITS } from '../../roles/common/packages.ts';
import {
  GOLDEN_DISABLED_UNITS,
  LATER_PACKAGES,
  LATER_UNITS,
  goldenInputs,
  goldenPackages,
  goldenRole,
  goldenUnitsCheck,
} from '../../roles/common/golden.ts';
import { GALERA_PACKAGES } from '../../roles/galera/role.ts';
import { CLIENT_PACKAGES, SERVER_PACKAGES } from '../../roles/gluster/role.ts';
import { NODE_EXPORTER_PACKAGES } from '../../roles/monitoring/role.ts';
import { aptGetInstall, aptGetUpdate } from '../../lib/ops/apt.ts';
import { goldenDockerfile } from '../../scripts/lab/images.ts';
import { IMAGES, nodeImageKind } from '../../scripts/lab/config.ts';
import { snapshotName, snapshotsToPrune, type ImageInfo } from '../../lib/cloud/digitalocean.ts';
import { parseCloudSection } from '../../lib/cloud/config.ts';
import { goldenSnapshotName } from '../../playbooks/image.ts';
import { InputError } from '../../lib/errors.ts';
import type { HostSpec, StepContext } from '../../lib/types.ts';

test("the golden packages are the union of phase 1's lists and the later roles' own lists, each once", () => {
  const g = goldenPackages();
  const later = Object.values(LATER_PACKAGES).flat();
  for (const p of [...BASE_PACKAGES, ...DOCKER_PACKAGES, ...later]) assert.ok(g.includes(p), p);
  assert.equal(new Set(g).size, g.length);
  assert.equal(g.length, new Set([...BASE_PACKAGES, ...DOCKER_PACKAGES, ...later]).size);
  assert.ok(g.includes('docker.io') && g.includes('nftables'));
  // the roles' own lists, not copies: what galera, gluster and monitoring install is what the image holds
  for (const p of [...GALERA_PACKAGES, ...SERVER_PACKAGES, ...CLIENT_PACKAGES, ...NODE_EXPORTER_PACKAGES]) assert.ok(g.includes(p), p);
  // CrowdSec's postinst registers the machine with a local API: never baked
  assert.ok(!g.some((p) => p.startsWith('crowdsec')), 'no crowdsec package in the image');
  // the units left disabled: Docker's and the later packages' (mariadb on a worker made from the image stays off)
  assert.deepEqual(GOLDEN_DISABLED_UNITS, [...DOCKER_UNITS, ...LATER_UNITS]);
  for (const u of ['mariadb.service', 'haproxy.service', 'prometheus-node-exporter.service']) assert.ok(LATER_UNITS.includes(u), u);
});

test('the builder role installs exactly the golden packages (daemons not started) and disables their units', async () => {
  const host: HostSpec = { name: 'b', address: '192.0.2.1', port: 22, user: 'root', groups: [], vars: {} };
  const steps = await goldenRole.steps({ host, vars: {}, hosts: () => [host] } as unknown as StepContext);
  const titles = steps.map((s) => ('title' in s ? String((s as { title: unknown }).title) : ''));
  assert.equal(titles[0], `apt present ${goldenPackages().join(' ')}`);
  assert.equal(steps.length, 1 + GOLDEN_DISABLED_UNITS.length);
  assert.deepEqual(
    titles.slice(1).map((t) => t.split(' ')[1]),
    GOLDEN_DISABLED_UNITS,
  );
});

test("the lab's golden Dockerfile: the node image plus the apt op's own command lines, units disabled, lists kept", () => {
  const d = goldenDockerfile();
  assert.match(d, new RegExp(`^FROM ${IMAGES.node.replace(/[/.]/g, '\\$&')}$`, 'm'));
  assert.ok(d.includes(aptGetUpdate()), 'apt-get update with the op flags');
  assert.ok(d.includes(aptGetInstall(goldenPackages())), 'the install line of the apt op, same flags and packages');
  assert.ok(d.includes(`systemctl disable ${GOLDEN_DISABLED_UNITS.join(' ')}`));
  // then the check that fails the build, naming a unit a later package left enabled
  assert.ok(d.includes(goldenUnitsCheck()));
  assert.ok(d.indexOf(goldenUnitsCheck()) > d.indexOf('systemctl disable'));
  assert.match(goldenUnitsCheck(), /dpkg -L .*glusterfs-server.* \| grep -E/);
  assert.ok(d.includes('exit 101'), 'policy-rc.d keeps daemons from starting during the build');
  // dpkg's fsyncs skipped for the build only: the setting is gone from the image
  assert.ok(d.indexOf('echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/wpfarm-image-build') < d.indexOf(' install --no-install-recommends'));
  assert.ok(
    d.indexOf('rm -f /usr/sbin/policy-rc.d /etc/dpkg/dpkg.cfg.d/wpfarm-image-build') > d.indexOf(' install --no-install-recommends'),
  );
  // the package lists stay: the role's update_cache then finds them and a converged check changes nothing
  assert.doesNotMatch(d, /rm -rf \/var\/lib\/apt\/lists/);
  // a different package list is a different Dockerfile (so a different content hash: rebuilt)
  assert.notEqual(goldenDockerfile(['jq']), d);
  assert.throws(() => goldenDockerfile([]), /at least one package/);
});

test('the node image: golden by default, bare on request, anything else refused', () => {
  assert.equal(nodeImageKind(undefined), 'golden');
  assert.equal(nodeImageKind(''), 'golden');
  assert.equal(nodeImageKind('bare'), 'bare');
  assert.equal(nodeImageKind(' golden '), 'golden');
  assert.throws(() => nodeImageKind('gold'), /WPFARM_LAB_NODE_IMAGE="gold": must be "golden" \(the default\) or "bare"/);
});

test('snapshot names come from their inputs', () => {
  const a = snapshotName('wpfarm-node', ['base=debian-12-x64', 'packages=jq']);
  assert.match(a, /^wpfarm-node-[0-9a-f]{12}$/);
  assert.equal(snapshotName('wpfarm-node', ['base=debian-12-x64', 'packages=jq']), a);
  assert.notEqual(snapshotName('wpfarm-node', ['base=debian-13-x64', 'packages=jq']), a);
  // inputs are separated: ["ab", "c"] is not ["a", "bc"]
  assert.notEqual(snapshotName('p', ['ab', 'c']), snapshotName('p', ['a', 'bc']));
  const spec = parseCloudSection({
    region: 'fra1',
    vpc: { name: 'v' },
    ssh_keys: [1],
    image: 'debian-12-x64',
    tags: ['farm'],
    groups: { workers: { count: 1, size: 's-1vcpu-1gb' } },
    management_cidrs: ['203.0.113.0/24'],
  });
  const g = goldenSnapshotName(spec);
  assert.equal(g.prefix, 'farm-node');
  assert.equal(g.name, snapshotName('farm-node', goldenInputs('debian-12-x64')));
  assert.notDeepEqual(goldenInputs('debian-12-x64'), goldenInputs(12345));
});

test('pruning keeps the newest of the family (the current one always), never a foreign image', () => {
  const img = (id: number, name: string, day: number): ImageInfo => ({
    id,
    name,
    status: 'available',
    regions: ['fra1'],
    createdAt: `2026-11-${String(day).padStart(2, '0')}T00:00:00.000Z`,
  });
  const images = [
    img(1, 'wpfarm-node-aaaaaaaaaaaa', 1),
    img(2, 'wpfarm-node-bbbbbbbbbbbb', 2),
    img(3, 'wpfarm-node-cccccccccccc', 3),
    img(4, 'wpfarm-node-backup', 4), // not a family name (no 12-hex suffix)
    img(5, 'other-node-dddddddddddd', 5),
  ];
  assert.deepEqual(
    snapshotsToPrune(images, 'wpfarm-node', 'wpfarm-node-cccccccccccc', 2).map((i) => i.id),
    [1],
  );
  // the current one is kept even when it is not the newest
  assert.deepEqual(
    snapshotsToPrune(images, 'wpfarm-node', 'wpfarm-node-aaaaaaaaaaaa', 1)
      .map((i) => i.id)
      .sort(),
    [2, 3],
  );
  assert.deepEqual(
    snapshotsToPrune(images, 'wpfarm-node', 'wpfarm-node-cccccccccccc', 5).map((i) => i.id),
    [],
  );
});

test('cloud.image: a slug or a positive image id; anything else is bad input naming the field', () => {
  const base = {
    region: 'fra1',
    vpc: { name: 'v' },
    ssh_keys: [1],
    groups: { workers: { count: 1, size: 's-1vcpu-1gb', image: 777 } },
    management_cidrs: ['203.0.113.0/24'],
  };
  const s = parseCloudSection({ ...base, image: 123456 });
  assert.equal(s.image, 123456);
  assert.equal(s.groups[0]!.image, 777);
  assert.equal(parseCloudSection({ ...base, image: 'debian-12-x64' }).image, 'debian-12-x64');
  for (const bad of [-1, 1.5, 'Debian 12!', true]) {
    assert.throws(
      () => parseCloudSection({ ...base, image: bad }),
      (e: unknown) => e instanceof InputError && /image/.test(e.message),
      String(bad),
    );
  }
});
