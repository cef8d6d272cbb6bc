// The monitoring role's no-change answers from its probes (roles/monitoring/role.ts; issue 17): the images' probe
// read (imagesSeen), the images script (read-only in check mode, pulling in the step) and its reading, the exporter user's probe (no password in it) and
// its comparison with MariaDB's PASSWORD(), built as strings.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { nativePasswordHash } from '../../roles/galera/role.ts';
import { imagePresentProbe } from '../../lib/ops/docker.ts';
import { nestedProbe } from '../../lib/ops/base.ts';
import { EXPORTER_USER_PROBE, exporterUserInPlace, imagesScript, imagesSeen, missingImages } from '../../roles/monitoring/role.ts';
import { IMAGES } from '../../roles/monitoring/stacks.ts';

test('imagesScript: one line per image; without pull it only inspects, with pull it pulls what is missing', () => {
  const images = Object.values(IMAGES);
  const probe = imagesScript(false).split('\n');
  assert.equal(probe.length, images.length);
  probe.forEach((line, i) => {
    assert.ok(line.startsWith(`docker image inspect --format '{{.Id}}' ${images[i]} >/dev/null 2>&1 || echo missing`), line);
    assert.ok(!line.includes('pull'), line);
  });
  const pull = imagesScript(true).split('\n');
  assert.match(pull[0]!, /\|\| timeout 60 docker pull -q \S+ >\/dev\/null 2>&1 \|\| echo missing /);
  assert.deepEqual(missingImages(`missing ${images[0]}\nmissing ${images[2]}\n`), [images[0], images[2]]);
  assert.deepEqual(missingImages(''), []);
});

test('imagesSeen: the images not present, and whether the registry can give none of them (no pull tried then)', () => {
  const images = Object.values(IMAGES) as string[];
  // the probe's output as the runner returns it: each image's imagePresentProbe answer after its part marker
  const marker = /printf '\\n%s\\n' '([^']+):0'/.exec(nestedProbe({} as never, [imagePresentProbe(images[0]!)])!.script)![1]!;
  const out = (answers: string[]) => answers.map((a, i) => `\n${marker}:${i}\n${a}\n`).join('');
  assert.deepEqual(imagesSeen(out(images.map(() => 'present')), images), { missing: [], unpullable: false });
  const cannot = 'cannot: lookup registry-1.docker.io on 10.77.0.2:53: no such host';
  assert.deepEqual(imagesSeen(out(['present', cannot, cannot, cannot]), images), { missing: images.slice(1), unpullable: true });
  assert.deepEqual(imagesSeen(out(['present', cannot, 'pullable', cannot]), images), { missing: images.slice(1), unpullable: false });
  assert.deepEqual(imagesSeen(out(['present', cannot, 'absent', cannot]), images), { missing: images.slice(1), unpullable: false });
  assert.deepEqual(
    imagesSeen(out(['present']), images),
    { missing: images.slice(1), unpullable: false },
    'an answer missing: a pull is tried',
  );
});

test("the exporter user's probe: the stored hash's SHA-256 compared on the controller", () => {
  assert.equal(
    EXPORTER_USER_PROBE,
    "timeout 10 mariadb --connect-timeout=5 $'--init-command=SET SESSION lock_wait_timeout=5' -NB -e $'SELECT SHA2(authentication_string, 256) FROM mysql.user WHERE user=\\'exporter\\' AND host=\\'localhost\\'' 2>/dev/null || true",
  );
  const stored = createHash('sha256').update(nativePasswordHash('s3cret')).digest('hex');
  assert.equal(exporterUserInPlace(`${stored}\n`, 's3cret'), true);
  assert.equal(exporterUserInPlace(`${stored}\n`, 'other'), false, 'another password');
  assert.equal(exporterUserInPlace('', 's3cret'), false, 'no such user');
});
