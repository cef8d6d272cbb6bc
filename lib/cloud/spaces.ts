// The Spaces bucket for backups, through the S3 API (DigitalOcean Spaces speaks S3).
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

/** HeadBucket, then CreateBucket when it is missing. Returns "exists" or "created". */
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
    try {
      await s3.send(new HeadBucketCommand({ Bucket: bucket }));
      return 'exists';
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status !== 404) throw new Error(`Spaces HeadBucket ${bucket}: ${status ?? ''} ${(err as Error).name}: ${(err as Error).message}`);
    }
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    return 'created';
  } finally {
    s3.destroy();
  }
}
