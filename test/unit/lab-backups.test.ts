// The lab's backups wiring (pure parts): the S3 store's settings per lab profile, and which backup jobs an
// inventory schedules (the second region's only with a replica).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PROFILES, ctlOf, s3Of } from '../../scripts/lab/config.ts';
import { LAB_CREDENTIALS, labS3Settings } from '../../scripts/lab/nodes.ts';
import { BACKUP_TIMERS, scheduledTimers } from '../../roles/backup/schedule.ts';

test("each lab profile has its own S3 store and controller on its own subnet; lab.env's S3 settings point there", () => {
  assert.deepEqual(labS3Settings(PROFILES.user), {
    WPFARM_S3_ENDPOINT: 'http://10.77.0.60:7480',
    WPFARM_S3_REGION: 'us-east-1',
    WPFARM_S3_BUCKET: 'wpfarm-lab-backups',
  });
  assert.equal(labS3Settings(PROFILES.test).WPFARM_S3_ENDPOINT, `http://${s3Of(PROFILES.test).address}:7480`);
  assert.equal(s3Of(PROFILES.test).address, '10.78.0.60');
  assert.deepEqual([ctlOf(PROFILES.user).address, ctlOf(PROFILES.test).address], ['10.77.0.10', '10.78.0.10']);
  // the keys and restic's password are generated credentials (random), never settings
  for (const n of ['WPFARM_S3_ACCESS_KEY', 'WPFARM_S3_SECRET_KEY', 'WPFARM_RESTIC_PASSWORD'] as const)
    assert.ok(LAB_CREDENTIALS.includes(n));
  assert.ok(!Object.keys(labS3Settings()).some((k) => (LAB_CREDENTIALS as readonly string[]).includes(k)));
});

test("the second region's jobs are scheduled only when the inventory names a replica", () => {
  const names = (vars: Record<string, unknown>) => scheduledTimers(vars).map((t) => t.name);
  assert.deepEqual(names({}), ['sites-db', 'cluster-full', 'cluster-incr', 'files', 'config', 'restore-test']);
  assert.deepEqual(names({ backup_replica_endpoint: '' }), names({}));
  assert.deepEqual(
    names({ backup_replica_endpoint: 'https://ams3.digitaloceanspaces.com' }),
    BACKUP_TIMERS.map((t) => t.name),
  );
});
