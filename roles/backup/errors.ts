// Errors of the backup subsystem. Messages never contain secrets (keys, passphrases, identities).

/** The object store refused the credentials (wrong key id or secret, or no permission). */
export class StoreCredentialsError extends Error {
  constructor(
    readonly endpoint: string,
    readonly bucket: string,
    readonly code: string,
    readonly status: number | undefined,
  ) {
    const why =
      code === 'InvalidAccessKeyId'
        ? 'the access key id is unknown to the store'
        : code === 'SignatureDoesNotMatch'
          ? 'the secret key does not match the access key id'
          : 'access denied for these credentials';
    super(
      `object store ${endpoint} bucket ${bucket}: credentials rejected (${code}${status ? `, HTTP ${status}` : ''}): ${why}. ` +
        `Check WPFARM_S3_ACCESS_KEY / WPFARM_S3_SECRET_KEY in .env. Nothing was changed in the bucket.`,
    );
    this.name = 'StoreCredentialsError';
  }
}

/** Any other failure talking to the object store (gateway down, bucket missing, upload aborted). */
export class StoreError extends Error {
  constructor(
    message: string,
    readonly code?: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

/** A backup or restore run failed; `stage` says where (dump, upload, verify, restore...). */
export class BackupError extends Error {
  constructor(
    readonly stage: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${stage}: ${message}`, options);
    this.name = 'BackupError';
  }
}

/** No backup matches the request (site/date). */
export class NoBackupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoBackupError';
  }
}
