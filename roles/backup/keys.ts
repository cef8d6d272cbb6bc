// Backup secrets by name (.env), and the age recipient derived from the identity.
//   WPFARM_BACKUP_AGE_IDENTITY   AGE-SECRET-KEY-1...  (needed only to restore)
//   WPFARM_BACKUP_AGE_RECIPIENT  age1...              (optional: derived from the identity when absent; when both
//                                                     are set, the recipient must be the identity's)
//   WPFARM_RESTIC_PASSWORD       restic repository password
//   WPFARM_S3_ENDPOINT, WPFARM_S3_REGION, WPFARM_S3_BUCKET, WPFARM_S3_ACCESS_KEY, WPFARM_S3_SECRET_KEY
import { execFile } from 'node:child_process';
import { lookupEnv, readEnvFile, requireCredential, type EnvSource } from '../../lib/env.ts';
import { InputError } from '../../lib/errors.ts';
import { checkRecipient } from './commands.ts';
import type { StoreConfig } from './s3.ts';

/** `age-keygen -y`: the public recipient of an identity (identity on stdin, never on argv). */
export function ageRecipientOf(identity: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('age-keygen', ['-y'], { timeout: 10_000 }, (err, stdout) => {
      if (err) return reject(new Error('age-keygen -y failed: the identity is not a valid AGE-SECRET-KEY (value not shown)'));
      resolve(checkRecipient(stdout.trim()));
    });
    child.stdin?.end(`${identity}\n`);
  });
}

/** A new identity (for tests and first set-up): { identity, recipient }. */
export function ageKeygen(): Promise<{ identity: string; recipient: string }> {
  return new Promise((resolve, reject) => {
    execFile('age-keygen', [], { timeout: 10_000 }, (err, stdout) => {
      if (err) return reject(err);
      const identity = stdout.split('\n').find((l) => l.startsWith('AGE-SECRET-KEY-'));
      const recipient = /public key: (age1\S+)/.exec(stdout)?.[1];
      if (!identity || !recipient) return reject(new Error('age-keygen gave no key'));
      resolve({ identity, recipient });
    });
  });
}

export interface BackupSettings {
  store: StoreConfig;
  recipient: string;
  /** only when needed (restore): loaded lazily so a backup run never reads the private key */
  identity(): string;
  resticPassword(): string;
}

export async function backupSettingsFromEnv(src: EnvSource = readEnvFile()): Promise<BackupSettings> {
  const store: StoreConfig = {
    endpoint: lookupEnv('WPFARM_S3_ENDPOINT', src) ?? '',
    region: lookupEnv('WPFARM_S3_REGION', src) ?? 'us-east-1',
    bucket: lookupEnv('WPFARM_S3_BUCKET', src) ?? '',
    accessKeyId: requireCredential('WPFARM_S3_ACCESS_KEY', undefined, src),
    secretAccessKey: requireCredential('WPFARM_S3_SECRET_KEY', undefined, src),
  };
  if (!store.endpoint) throw new InputError('WPFARM_S3_ENDPOINT is not set (e.g. https://fra1.digitaloceanspaces.com)');
  if (!store.bucket) throw new InputError('WPFARM_S3_BUCKET is not set');
  let recipient = lookupEnv('WPFARM_BACKUP_AGE_RECIPIENT', src);
  if (!recipient) recipient = await ageRecipientOf(requireCredential('WPFARM_BACKUP_AGE_IDENTITY', undefined, src));
  else if (lookupEnv('WPFARM_BACKUP_AGE_IDENTITY', src) !== undefined) {
    // both set: backups encrypted to a recipient that is not the identity's could never be restored with it
    const derived = await ageRecipientOf(requireCredential('WPFARM_BACKUP_AGE_IDENTITY', undefined, src));
    if (derived !== recipient.trim())
      throw new InputError(
        `WPFARM_BACKUP_AGE_RECIPIENT (${recipient.trim()}) is not the public key of WPFARM_BACKUP_AGE_IDENTITY (${derived}): ` +
          "backups made now could not be restored with that identity. Set the recipient to the identity's " +
          '(`age-keygen -y` prints it), or leave it unset: it is derived from the identity.',
      );
  }
  return {
    store,
    recipient: checkRecipient(recipient),
    identity: () => requireCredential('WPFARM_BACKUP_AGE_IDENTITY', undefined, src),
    resticPassword: () => requireCredential('WPFARM_RESTIC_PASSWORD', undefined, src),
  };
}
