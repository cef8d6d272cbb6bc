// S3 buckets (DigitalOcean Spaces speaks S3; so do Ceph RGW and the backup store): the one "make sure the
// bucket exists" used by provisioning and by the backup store, and the Spaces endpoint.
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';

export interface SpacesOptions {
  /** default https://<region>.digitaloceanspaces.com; tests and other gateways pass their own */
  endpoint?: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle?: boolean;
}

export function spacesEndpoint(region: string): string {
  return `https://${region}.digitaloceanspaces.com`;
}

/** The HTTP status of an S3 SDK error (undefined when the request got no answer). */
export function s3Status(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** HeadBucket answered something other than 200 or 404 (403: the credentials are refused or the bucket is
 *  someone else's). `cause` is the SDK's error. */
export class HeadBucketError extends Error {
  constructor(
    readonly bucket: string,
    readonly status: number | undefined,
    cause: unknown,
  ) {
    super(`HeadBucket ${bucket}: ${status ?? ''} ${(cause as Error).name}: ${(cause as Error).message}`, { cause });
    this.name = 'HeadBucketError';
  }
}

/**
 * HeadBucket, then CreateBucket when it is missing (404). Returns "exists" or "created". Any other answer
 * to HeadBucket throws a HeadBucketError (never a silent create); a failed CreateBucket throws the SDK's error.
 */
export async function ensureBucketWith(s3: S3Client, bucket: string): Promise<'exists' | 'created'> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
    return 'exists';
  } catch (err) {
    const status = s3Status(err);
    if (status !== 404) throw new HeadBucketError(bucket, status, err);
  }
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return 'created';
}

/** The Spaces bucket of provisioning: ensureBucketWith on a client made for it. */
export async function ensureBucket(bucket: string, opts: SpacesOptions): Promise<'exists' | 'created'> {
  const s3 = new S3Client({
    endpoint: opts.endpoint ?? spacesEndpoint(opts.region),
    // Spaces ignores the region for signing purposes but the SDK needs one; us-east-1 is what DO documents
    region: 'us-east-1',
    // Spaces takes both styles; any other endpoint (a gateway on an address) needs path style
    forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
    credentials: { accessKeyId: opts.accessKeyId, secretAccessKey: opts.secretAccessKey },
    maxAttempts: 5,
  });
  try {
    return await ensureBucketWith(s3, bucket);
  } catch (err) {
    if (err instanceof HeadBucketError) throw new Error(`Spaces ${err.message}`);
    throw err;
  } finally {
    s3.destroy();
  }
}
