// The lab's backups wiring (pure parts): the S3 store's settings per lab profile, and which backup jobs an
// inventory schedules (the second region's only with a replica).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PROFILES, ctlOf, s3Of } from '../../scripts/lab/config.ts';
import { parse } from 'yaml';
import { LAB_CREDENTIALS, inventoryText, labEnvAdditions, labS3Settings } from '../../scripts/lab/nodes.ts';
import { BACKUP_TIMERS, scheduledTimers } from '../../roles/backup/schedule.ts';
import { backupSettingsFromEnv } from '../../roles/backup/keys.ts';

// a valid age recipient (age's own documentation example): the unit tier starts no age-keygen
const AGE_RECIPIENT = 'age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p';

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

// what `make bootstrap` gets on the user's lab (lab-up writes its inventory and lab.env, then the backup jobs read
// them on ctl): the inventory names the env file, the env file holds the user lab's store, and the backup code
// reads exactly that store from it
test("the user lab's inventory and generated lab.env give the backups the user lab's store; a rerun adds nothing", async () => {
  const p = PROFILES.user;
  const inv = parse(inventoryText(p)) as { settings: { env_file: string }; vars: Record<string, unknown> };
  assert.equal(inv.settings.env_file, `${p.stateDir}/lab.env`);
  assert.deepEqual(
    scheduledTimers(inv.vars).map((t) => t.name),
    ['sites-db', 'cluster-full', 'cluster-incr', 'files', 'config', 'restore-test'],
    'the weekly restore test among the jobs, no replica job',
  );
  const age = {
    pair: () => ({ identity: 'AGE-SECRET-KEY-1TEST', recipient: AGE_RECIPIENT }),
    recipientOf: () => AGE_RECIPIENT,
  };
  const add = labEnvAdditions('', p, age);
  const values = new Map(add);
  assert.equal(values.size, add.length, 'each name once');
  for (const n of LAB_CREDENTIALS) assert.ok(values.get(n), `${n} generated`);
  // the S3 store's container accepts exactly this shape of keys (files/lab/s3/wpfarm-lab-s3; the contract test
  // lab-s3 runs it with generateCredential's keys)
  assert.match(values.get('WPFARM_S3_ACCESS_KEY')!, /^[A-Za-z0-9]{16,128}$/);
  assert.match(values.get('WPFARM_S3_SECRET_KEY')!, /^[A-Za-z0-9_+/=-]{20,128}$/);
  // read as a backup run reads it; the identity here is a placeholder (this tier starts no age-keygen), so it is
  // left out: with both set the recipient is checked against `age-keygen -y` (contract backup-playbooks)
  const backupView = new Map([...values].filter(([n]) => n !== 'WPFARM_BACKUP_AGE_IDENTITY'));
  const settings = await backupSettingsFromEnv({ file: '/lab.env', values: backupView, exists: true });
  assert.deepEqual(
    { ...settings.store, accessKeyId: '', secretAccessKey: '' },
    { endpoint: s3Of(p).endpoint, region: 'us-east-1', bucket: s3Of(p).bucket, accessKeyId: '', secretAccessKey: '' },
  );
  assert.equal(settings.store.endpoint, 'http://10.77.0.60:7480');
  assert.equal(settings.store.secretAccessKey, values.get('WPFARM_S3_SECRET_KEY'));
  assert.equal(settings.recipient, AGE_RECIPIENT);
  // written once and kept: the same file again gets nothing new; a file missing only the recipient gets it derived
  const text = add.map(([n, v]) => `${n}=${v}`).join('\n');
  assert.deepEqual(labEnvAdditions(text, p, age), []);
  assert.deepEqual(
    labEnvAdditions(
      text
        .split('\n')
        .filter((l) => !l.startsWith('WPFARM_BACKUP_AGE_RECIPIENT='))
        .join('\n'),
      p,
      age,
    ),
    [['WPFARM_BACKUP_AGE_RECIPIENT', AGE_RECIPIENT]],
  );
});
