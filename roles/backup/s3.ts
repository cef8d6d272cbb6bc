// S3 object store client for backups (DigitalOcean Spaces, Ceph RGW): streamed upload (@aws-sdk/lib-storage),
// list, head, get, delete. Only ciphertext ever goes through it (encryption happens on the host).
import {
  S3Client,
  PutObjectCommand,
  AbortMultipartUploadCommand,
  ListObjectsV2Command,
  ListMultipartUploadsCommand,
  HeadObjectCommand,
  GetObjectCommand,
  DeleteObjectsCommand,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { ensureBucketWith, HeadBucketError, s3Status } from '../../lib/cloud/spaces.ts';
import { StoreCredentialsError, StoreError } from './errors.ts';

export interface StoreConfig {
  /** https://fra1.digitaloceanspaces.com, or http://127.0.0.1:PORT for a local gateway */
  endpoint: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** bytes per multipart part (min 5 MiB except the last); default 8 MiB */
  partSize?: number;
  /** SDK attempts per request (default 3) */
  maxAttempts?: number;
  /** parts in flight at once (default 4: at most queueSize × partSize bytes buffered) */
  queueSize?: number;
}

/** Read store settings from the environment (.env): names only, values never printed. */
export function storeConfigFromEnv(env: NodeJS.ProcessEnv = process.env): StoreConfig {
  const need = (name: string): string => {
    const v = env[name];
    if (!v) throw new StoreError(`missing ${name} in the environment (.env)`);
    return v;
  };
  return {
    endpoint: need('WPFARM_S3_ENDPOINT'),
    region: env.WPFARM_S3_REGION || 'us-east-1',
    bucket: need('WPFARM_S3_BUCKET'),
    accessKeyId: need('WPFARM_S3_ACCESS_KEY'),
    secretAccessKey: need('WPFARM_S3_SECRET_KEY'),
  };
}

export interface StoredObject {
  key: string;
  size: number;
  lastModified?: Date;
  /** as the store lists it, without quotes (an MD5 for single-part uploads; stores differ for multipart) */
  etag?: string;
}

/** An ETag without its quotes ("abc" → abc), or undefined. */
export const bareEtag = (e: string | undefined): string | undefined => (e ? e.replace(/^"+|"+$/g, '') || undefined : undefined);

export interface UploadResult {
  key: string;
  size: number;
  /** sha256 of the bytes uploaded (hex) */
  sha256: string;
  parts: number;
  etag?: string;
  ms: number;
}

const CREDENTIAL_CODES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied']);
const MIN_PART = 5 * 1024 * 1024;

export class ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly endpoint: string;
  readonly partSize: number;

  constructor(readonly config: StoreConfig) {
    this.bucket = config.bucket;
    this.endpoint = config.endpoint;
    this.partSize = Math.max(MIN_PART, config.partSize ?? 8 * 1024 * 1024);
    this.client = new S3Client({
      endpoint: config.endpoint,
      region: config.region,
      forcePathStyle: true,
      maxAttempts: config.maxAttempts ?? 3,
      // SDK ≥ 3.729 adds CRC32 checksums to every upload by default; several S3-compatible stores reject
      // them (aws-sdk-js-v3#6810). Integrity is ours end to end anyway: sha256 in the manifest, checked
      // on every restore, and age/restic authenticate their content.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey },
    });
  }

  /** Translate SDK errors into clear ones (credentials, gateway down); never includes secrets. */
  wrap(op: string, key: string | undefined, e: unknown): Error {
    if (e instanceof StoreError || e instanceof StoreCredentialsError) return e;
    const err = e as { name?: string; Code?: string; code?: string; message?: string };
    const code = err.Code ?? err.name ?? err.code ?? 'Error';
    const status = s3Status(e);
    if (CREDENTIAL_CODES.has(code)) return new StoreCredentialsError(this.endpoint, this.bucket, code, status);
    const where = `${this.endpoint}/${this.bucket}${key ? `/${key}` : ''}`;
    const msg = err.message && err.message !== 'UnknownError' ? err.message : code;
    return new StoreError(
      `object store ${op} ${where} failed: ${code}${status ? ` (HTTP ${status})` : ''}${msg !== code ? `: ${msg}` : ''}`,
      code,
      status,
    );
  }

  private async send<T>(op: string, key: string | undefined, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw this.wrap(op, key, e);
    }
  }

  /** Create the bucket unless it exists (and is ours). */
  async ensureBucket(): Promise<void> {
    try {
      await ensureBucketWith(this.client, this.bucket);
    } catch (e) {
      if (!(e instanceof HeadBucketError)) throw this.wrap('create bucket', undefined, e);
      if (e.status === 403) throw new StoreCredentialsError(this.endpoint, this.bucket, 'AccessDenied', 403);
      throw this.wrap('head bucket', undefined, e.cause);
    }
  }

  /** Small object in one request. */
  async putBytes(key: string, body: Buffer | string, contentType = 'application/octet-stream'): Promise<void> {
    await this.send('put', key, () =>
      this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentType: contentType })),
    );
  }

  /**
   * Stream an object of unknown length with lib-storage's Upload: one PUT when it fits in one part, a
   * multipart upload otherwise (parts of exactly partSize bytes, queueSize in flight). The object becomes
   * visible only when complete; on a failure Upload aborts the multipart upload (best effort: a gateway that
   * is down cannot be told; abortStaleUploads cleans up later) and this throws. `onPart` is called as each
   * part is stored. The sha256 and size are of the bytes read from `source`; HEAD then checks the stored size
   * and gives the ETag (Ceph RGW answers CompleteMultipartUpload with an empty one).
   */
  async putStream(
    key: string,
    source: AsyncIterable<Buffer | string> | Readable,
    opts: { onPart?: (n: number, bytes: number) => void } = {},
  ): Promise<UploadResult> {
    const t0 = Date.now();
    const hash = createHash('sha256');
    let size = 0;
    const counted = async function* (): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
        hash.update(b);
        size += b.length;
        yield b;
      }
    };
    const body = Readable.from(counted());
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: body, ContentType: 'application/octet-stream' },
      partSize: this.partSize,
      queueSize: this.config.queueSize ?? 4,
      leavePartsOnError: false,
    });
    let stored = 0;
    upload.on('httpUploadProgress', (p) => {
      const bytes = (p.loaded ?? 0) - stored;
      stored = p.loaded ?? stored;
      if (p.part !== undefined) opts.onPart?.(p.part, bytes);
    });
    try {
      await upload.done();
    } catch (e) {
      body.destroy();
      throw this.wrap('upload', key, e);
    }
    const head = await this.head(key);
    if (!head || head.size !== size) throw new StoreError(`object ${key} after upload has size ${head?.size ?? 'none'}, expected ${size}`);
    const parts = Math.max(1, Math.ceil(size / this.partSize));
    return { key, size, sha256: hash.digest('hex'), parts, etag: head.etag, ms: Date.now() - t0 };
  }

  async head(key: string): Promise<{ size: number; etag?: string; lastModified?: Date } | null> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { size: r.ContentLength ?? 0, etag: bareEtag(r.ETag), lastModified: r.LastModified };
    } catch (e) {
      if (s3Status(e) === 404) return null;
      throw this.wrap('head', key, e);
    }
  }

  /** All objects under a prefix (paginated; bounded to maxObjects to never loop forever). */
  async list(prefix: string, maxObjects = 1_000_000): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    do {
      const r = await this.send('list', prefix, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token })),
      );
      for (const o of r.Contents ?? [])
        if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified, etag: bareEtag(o.ETag) });
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token && out.length < maxObjects);
    return out;
  }

  async getStream(key: string): Promise<Readable> {
    const r = await this.send('get', key, () => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })));
    if (!r.Body) throw new StoreError(`object ${key} has no body`);
    return r.Body as Readable;
  }

  async getBytes(key: string): Promise<Buffer> {
    const s = await this.getStream(key);
    const chunks: Buffer[] = [];
    for await (const c of s) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
    return Buffer.concat(chunks);
  }

  /** Delete keys (batches of 1000); throws if the store reports any key it could not delete. */
  async deleteKeys(keys: string[]): Promise<number> {
    let deleted = 0;
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const r = await this.send('delete', batch[0], () =>
        this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
        ),
      );
      const errs = r.Errors ?? [];
      if (errs.length) {
        const first = errs[0];
        if (first?.Code && CREDENTIAL_CODES.has(first.Code)) throw new StoreCredentialsError(this.endpoint, this.bucket, first.Code, 403);
        throw new StoreError(
          `object store refused to delete ${errs.length} key(s), first ${first?.Key}: ${first?.Code} ${first?.Message ?? ''}`,
        );
      }
      deleted += batch.length;
    }
    return deleted;
  }

  /**
   * Abort multipart uploads under `prefix` started more than `olderThanMs` ago: what a run leaves when
   * the gateway died before it could be told to abort (their parts use space but are never visible).
   */
  async abortStaleUploads(prefix: string, olderThanMs: number, now: Date = new Date()): Promise<string[]> {
    const aborted: string[] = [];
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const r = await this.send('list multipart uploads', prefix, () =>
        this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker: keyMarker, UploadIdMarker: idMarker }),
        ),
      );
      for (const u of r.Uploads ?? []) {
        if (!u.Key || !u.UploadId) continue;
        if (u.Initiated && now.getTime() - u.Initiated.getTime() < olderThanMs) continue;
        const key = u.Key;
        const id = u.UploadId;
        await this.send('abort multipart upload', key, () =>
          this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: id })),
        );
        aborted.push(key);
      }
      if (!r.IsTruncated) break;
      keyMarker = r.NextKeyMarker;
      idMarker = r.NextUploadIdMarker;
    }
    return aborted;
  }

  destroy(): void {
    this.client.destroy();
  }
}
