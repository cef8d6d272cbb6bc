// Portainer's data mount and images read with the role's probes (roles/portainer, lib/ops/docker.ts; issue 17).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { imageAvailable, imagePresentProbe } from '../../lib/ops/docker.ts';
import { dataMountProblem } from '../../roles/portainer/role.ts';
import { localContext, localExec } from './ops-sys.harness.ts';

// docker as the lab's 20.10 answers: `image ls` (the node's images), `image inspect` (exit 1 when absent), `info`
// (mirrors and proxies), `manifest inspect` (the registry's answer, or its error on stderr); each case's answers from
// the environment
const DOCKER = `#!/bin/bash
case "$1 $2" in
  "image ls") echo 'debian:bookworm-slim'; [ "$PRESENT" = yes ] && echo 'portainer/portainer-ce:2.23.0'; exit 0 ;;
  "image inspect") [ "$PRESENT" = yes ] && echo sha256:1 && exit 0; echo "Error: No such image: $5" >&2; exit 1 ;;
  "info --format") echo '{"LocalNodeState":"inactive"}'; echo "pulls=$PULLS_THROUGH" ;;
  "manifest inspect") [ -n "$SLOW" ] && sleep 5; [ "$MANIFEST" = yes ] && echo '{}' && exit 0
    printf '%s\\n' 'failed to configure transport: error pinging v2 registry: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.77.0.2:53: no such host' >&2; exit 1 ;;
esac`;

test('imagePresentProbe: present; else what the registry says (pullable / cannot: why), absent when a mirror or proxy is between', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-image-probe-'));
  try {
    fs.writeFileSync(path.join(dir, 'docker'), DOCKER, { mode: 0o755 });
    // a stand-in `timeout` that gives up at once when asked to (SLOW: the registry does not answer in time)
    fs.writeFileSync(path.join(dir, 'timeout'), '#!/bin/bash\n[ -n "$SLOW" ] && exit 124\nshift; exec "$@"\n', { mode: 0o755 });
    const probe = async (env: string) =>
      (await localExec(`export PATH=${dir}:$PATH ${env}\n${imagePresentProbe('portainer/portainer-ce:2.23.0').script}`)).stdout.trim();
    assert.equal(await probe('PRESENT=yes'), 'present');
    assert.equal(await probe('PULLS_THROUGH=0 MANIFEST=yes'), 'pullable');
    assert.equal(
      await probe('PULLS_THROUGH=0'),
      'cannot: failed to configure transport: error pinging v2 registry: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.77.0.2:53: no such host',
    );
    assert.equal(await probe('PULLS_THROUGH=1'), 'absent', 'a mirror: only a pull can tell');
    assert.equal(await probe('PULLS_THROUGH=0http://proxy:3128'), 'absent', 'a proxy: only a pull can tell');
    assert.equal(await probe('PULLS_THROUGH=0 SLOW=1'), 'absent', 'no answer in time: only a pull can tell');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('imageAvailable from the probe: no command when present, when the registry cannot give it, or in check mode when it can', async () => {
  const execs: string[] = [];
  const ctx = (check: boolean) =>
    Object.assign(localContext(check), {
      exec: async (cmd: string) => {
        execs.push(cmd);
        return { code: 1, stdout: '', stderr: 'Error response from daemon: pull access denied' };
      },
    });
  const img = 'portainer/portainer-ce:2.23.0';
  assert.deepEqual(await imageAvailable(ctx(false), img, 'present'), { ok: true, reason: '' });
  for (const check of [false, true])
    assert.deepEqual(await imageAvailable(ctx(check), img, 'cannot: lookup registry-1.docker.io: no such host\n'), {
      ok: false,
      reason: `image ${img} cannot be pulled here: lookup registry-1.docker.io: no such host`,
    });
  assert.deepEqual(await imageAvailable(ctx(true), img, 'pullable'), { ok: true, reason: 'check mode: the image would be pulled' });
  assert.equal(execs.length, 0, `none of these sent a command: ${execs.join('; ')}`);
  // a real run pulls what the registry has, or what the probe could not tell about
  for (const seen of ['pullable', 'absent', undefined]) {
    const r = await imageAvailable(ctx(false), img, seen);
    assert.deepEqual(r, { ok: false, reason: `image ${img} cannot be pulled here: Error response from daemon: pull access denied` });
  }
  assert.equal(execs.length, 3);
  assert.ok(execs.every((c) => c.includes(`timeout 60 docker pull -q ${img}`)));
});

test('dataMountProblem: the Gluster volume mounted and answering at the mount point, else what is there', () => {
  const s = { glusterMount: '/mnt/wpfarm-sites' };
  assert.equal(dataMountProblem(s, 'fuse.glusterfs /mnt/wpfarm-sites\nanswers\n'), '');
  assert.equal(dataMountProblem(s, 'ext4 /\nanswers\n'), 'ext4 at /');
  assert.equal(dataMountProblem(s, 'fuse.glusterfs /mnt/wpfarm-sites\n'), 'fuse.glusterfs at /mnt/wpfarm-sites', 'a stale mount');
  assert.equal(dataMountProblem(s, ''), 'nothing at ?');
});
