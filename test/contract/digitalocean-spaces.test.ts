// The Spaces bucket step of provisioning against a real Ceph RADOS Gateway on 127.0.0.1 (the software
// Spaces is built on), through the injectable endpoint. Nothing is sent to any outside address.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startRgw, type Rgw } from '../harness/rgw.ts';
import { ensureBucket, spacesEndpoint } from '../../lib/cloud/spaces.ts';

let rgw: Rgw;

before(async () => {
  rgw = await startRgw({ memstoreBytes: 256 * 1024 ** 2 });
});

after(async () => {
  await rgw?.stop();
});

test('the default endpoint is the region Spaces endpoint', () => {
  assert.equal(spacesEndpoint('fra1'), 'https://fra1.digitaloceanspaces.com');
});

test('ensureBucket creates the bucket once, then finds it', async () => {
  const opts = { endpoint: rgw.endpoint, region: 'fra1', accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey };
  assert.equal(await ensureBucket('wpfarm-backups-prov', opts), 'created');
  assert.equal(await ensureBucket('wpfarm-backups-prov', opts), 'exists');
});

test('a wrong secret is an error (not a silent create), and the secret is not in the message', async () => {
  const secret = 'definitely-wrong-secret-0123456789';
  await assert.rejects(
    ensureBucket('wpfarm-backups-other', { endpoint: rgw.endpoint, region: 'fra1', accessKeyId: rgw.accessKeyId, secretAccessKey: secret }),
    (err: Error) => /Spaces HeadBucket wpfarm-backups-other: 403/.test(err.message) && !err.message.includes(secret),
  );
});
