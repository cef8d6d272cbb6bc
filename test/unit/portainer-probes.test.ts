// Portainer's data mount and images read with the role's probes (roles/portainer, lib/ops/docker.ts; issue 17).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { imagePresentProbe } from '../../lib/ops/docker.ts';
import { dataMountProblem } from '../../roles/portainer/role.ts';

test('imagePresentProbe: read-only, "present" or "absent"', () => {
  assert.deepEqual(imagePresentProbe('portainer/portainer-ce:2.21.4'), {
    script: "docker image inspect --format '{{.Id}}' portainer/portainer-ce:2.21.4 >/dev/null 2>&1 && echo present || echo absent",
  });
});

test('dataMountProblem: the Gluster volume mounted and answering at the mount point, else what is there', () => {
  const s = { glusterMount: '/mnt/wpfarm-sites' };
  assert.equal(dataMountProblem(s, 'fuse.glusterfs /mnt/wpfarm-sites\nanswers\n'), '');
  assert.equal(dataMountProblem(s, 'ext4 /\nanswers\n'), 'ext4 at /');
  assert.equal(dataMountProblem(s, 'fuse.glusterfs /mnt/wpfarm-sites\n'), 'fuse.glusterfs at /mnt/wpfarm-sites', 'a stale mount');
  assert.equal(dataMountProblem(s, ''), 'nothing at ?');
});
