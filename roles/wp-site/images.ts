// Site images (wordpress-fpm, nginx): build with content-hashed tags, push to the farm registry.
//
// tag = sha256 over (every file of the build context: path, exec bit, content) + the base image's
// id + the build args, cut to 16 hex. A rebuild with no change computes the same tag, finds the image
// (locally or in the registry) and does not build: no new tag, no new layer.
//
// Builds use the legacy builder (DOCKER_BUILDKIT=0: no buildx here) with --network host so apt can
// reach the mirror. Commands go through zx (arguments quoted by zx, never concatenated by hand).

import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, version as esbuildVersion } from 'esbuild';
import pLimit from 'p-limit';
import { $ } from 'zx';

export const IMAGES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../files/images');

export interface ImageSpec {
  /** repository name without registry, e.g. "wpfarm/wordpress-fpm" */
  name: string;
  /** build context directory (holds the Dockerfile) */
  contextDir: string;
  /** BASE_IMAGE build arg: "wpfarm/base:bookworm" in the lab, "debian:bookworm-slim" in production */
  baseImage: string;
  /** other build args (values that name images are resolved to image ids for the hash) */
  buildArgs?: Record<string, string>;
  /** a long build that others wait for: it starts at once, without waiting for one of the build slots */
  first?: boolean;
}

export interface EnsureOptions {
  /** "10.10.0.2:5000" or "127.0.0.1:5000"; empty: local only */
  registry?: string;
  /** docker CLI environment (DOCKER_HOST, ...) */
  env?: NodeJS.ProcessEnv;
  /** called with progress lines */
  log?: (line: string) => void;
  /** build args whose value is an image reference: their image id enters the hash, not the name */
  imageArgs?: string[];
  /**
   * Pushing to the registry: true (the default; a registry that does not answer is an error), false (it is only
   * read: an image it holds is pulled, not built), or 'when-reachable' (a warm-up: pushed if the registry answers,
   * else left to the role's step).
   */
  push?: boolean | 'when-reachable';
}

export interface EnsureResult {
  /** full reference: "<registry>/<name>:<tag>" (or "<name>:<tag>" without registry) */
  ref: string;
  tag: string;
  /** true when docker build ran */
  built: boolean;
  /** true when docker push ran */
  pushed: boolean;
  imageId: string;
}

/** Files of a context, sorted, as [relative path, absolute path]; .dockerignore'd names are not supported (none used). */
export function contextFiles(dir: string): [string, string][] {
  const out: [string, string][] = [];
  const walk = (rel: string): void => {
    const abs = path.join(dir, rel);
    for (const ent of readdirSync(abs, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (ent.isDirectory()) walk(r);
      else if (ent.isFile()) out.push([r, path.join(dir, r)]);
      else if (ent.isSymbolicLink()) throw new Error(`${path.join(dir, r)}: symlinks are not allowed in an image context`);
    }
  };
  walk('');
  return out;
}

/** Content hash of a build context plus its inputs (pure apart from reading the files). */
export function contextHash(dir: string, inputs: { baseImageId: string; buildArgs?: Record<string, string> }): string {
  const h = createHash('sha256');
  h.update('wpfarm-image-v1\0');
  for (const [rel, abs] of contextFiles(dir)) {
    const st = statSync(abs);
    h.update(`${rel}\0${st.mode & 0o111 ? 'x' : '-'}\0`);
    h.update(readFileSync(abs));
    h.update('\0');
  }
  h.update(`base\0${inputs.baseImageId}\0`);
  for (const [k, v] of Object.entries(inputs.buildArgs ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) h.update(`arg\0${k}\0${v}\0`);
  return h.digest('hex').slice(0, 16);
}

function dockerEnv(opts: EnsureOptions): NodeJS.ProcessEnv {
  return { ...process.env, ...opts.env, DOCKER_BUILDKIT: '0' };
}

/**
 * The controller's images, "repository:tag" → id, listed by one `docker image ls` per Docker environment and listed
 * again after this process builds, tags or pulls (imagesChanged). A bootstrap asks for ~25 image ids (the warm-ups,
 * then phase 3): one `docker image inspect` each cost the controller ~0.5 s of its main thread in spawns alone
 * (a fork of a ~140 MB process each), plus the docker CLI's own start each time.
 */
const listings = new Map<string, Promise<Map<string, string>>>();

function imageListing(opts: EnsureOptions): Promise<Map<string, string>> {
  const key = JSON.stringify(opts.env ?? {});
  let listing = listings.get(key);
  if (!listing) {
    listing = (async () => {
      const r = await $({
        env: dockerEnv(opts),
        quiet: true,
        nothrow: true,
      })`docker image ls --no-trunc --format ${'{{.Repository}}:{{.Tag}} {{.ID}}'}`;
      const ids = new Map<string, string>();
      if (r.exitCode !== 0) return ids; // every lookup asks docker image inspect
      for (const line of r.stdout.split('\n')) {
        const [ref, id] = line.trim().split(' ');
        if (ref && id && !ref.includes('<none>')) ids.set(ref, id);
      }
      return ids;
    })();
    listings.set(key, listing);
  }
  return listing;
}

/** This process built, tagged or pulled an image: the next lookup lists the images again. */
function imagesChanged(): void {
  listings.clear();
}

/** "name" is "name:latest" to Docker (a port in the registry's host is not a tag); a digest reference is not listed. */
function listedRef(ref: string): string | undefined {
  if (ref.includes('@')) return undefined;
  return /:[^/]*$/.test(ref) ? ref : `${ref}:latest`;
}

/**
 * Image id of a local image, or null: from the listing; one not listed under that name (another spelling of it, say
 * docker.io/library/…) is asked of `docker image inspect`, which decides.
 */
export async function localImageId(ref: string, opts: EnsureOptions = {}): Promise<string | null> {
  const name = listedRef(ref);
  const listed = name ? (await imageListing(opts)).get(name) : undefined;
  if (listed) return listed;
  const r = await $({ env: dockerEnv(opts), quiet: true, nothrow: true })`docker image inspect --format ${'{{.Id}}'} ${ref}`;
  return r.exitCode === 0 ? r.stdout.trim() : null;
}

/** A docker command that adds or moves image names (build, tag, pull): the listing is stale after it, even if it fails. */
async function changesImages<T>(run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } finally {
    imagesChanged();
  }
}

/** Does the registry hold name:tag? (Registry HTTP API v2; plain HTTP as the lab registry is insecure.) */
export async function registryHasTag(registry: string, name: string, tag: string): Promise<boolean> {
  const url = `http://${registry}/v2/${name}/manifests/${encodeURIComponent(tag)}`;
  const res = await fetch(url, {
    method: 'HEAD',
    headers: {
      Accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json',
    },
    signal: AbortSignal.timeout(10_000),
  });
  if (res.status === 200) return true;
  if (res.status === 404) return false;
  throw new Error(`registry ${registry}: HEAD ${name}:${tag} answered ${res.status}`);
}

/** The local builds of this process, by "name:tag" (the content tag): each image is built at most once. */
const localBuilds = new Map<string, Promise<{ imageId: string; built: boolean }>>();
/**
 * docker builds at once: two (apt's downloads of one overlap the other's unpacking; more only share the two cores
 * here, and a bootstrap runs them beside the hosts' work), in the order asked; a build marked `first` (the long
 * wordpress-fpm, which nginx waits for) does not wait for a slot.
 */
const buildSlots = pLimit(2);
/** The pushes of this process, by registry reference: true once this process pushed the image. */
const localPushes = new Map<string, Promise<boolean>>();

/**
 * The image `name:tag` on the controller: already there, pulled from the registry (opts.registry) when it holds the
 * tag, or built (the legacy builder, --network host for apt, labelled with its content hash).
 */
async function localImage(spec: ImageSpec, tag: string, opts: EnsureOptions): Promise<{ imageId: string; built: boolean }> {
  const log = opts.log ?? (() => {});
  const env = dockerEnv(opts);
  const plain = `${spec.name}:${tag}`;
  const ref = opts.registry ? `${opts.registry}/${plain}` : plain;
  for (const name of new Set([plain, ref])) {
    const have = await localImageId(name, opts);
    if (!have) continue;
    if (name !== plain) await changesImages(() => $({ env, quiet: true })`docker tag ${name} ${plain}`);
    log(`${name}: up to date`);
    return { imageId: have, built: false };
  }
  // a registry that does not answer yet (a first bootstrap deploys it in phase 2) only means "not there"
  const inRegistry =
    !!opts.registry &&
    (await registryHasTag(opts.registry, spec.name, tag).catch((e: unknown) => {
      log(`${ref}: the registry did not answer (${e instanceof Error ? e.message : String(e)}), building here`);
      return false;
    }));
  if (inRegistry) {
    log(`${ref}: in the registry, pulling`);
    await changesImages(async () => {
      await $({ env, quiet: true })`docker pull ${ref}`;
      await $({ env, quiet: true })`docker tag ${ref} ${plain}`;
    });
    const id = await localImageId(plain, opts);
    if (!id) throw new Error(`${ref}: pulled but not found`);
    return { imageId: id, built: false };
  }
  log(`${plain}: building`);
  const started = Date.now(); // from the request: the time includes a wait for a build slot
  const args: string[] = ['--build-arg', `BASE_IMAGE=${spec.baseImage}`];
  for (const [k, v] of Object.entries(spec.buildArgs ?? {})) args.push('--build-arg', `${k}=${v}`);
  const build = async () =>
    await changesImages(
      async () =>
        await $({
          env,
          quiet: true,
          nothrow: true,
        })`docker build --network host --pull=false ${args} --label ${`wpfarm.context-hash=${tag}`} -t ${plain} ${spec.contextDir}`,
    );
  const r = spec.first ? await build() : await buildSlots(build);
  if (r.exitCode !== 0) {
    const tail = (r.stdout + r.stderr).split('\n').slice(-30).join('\n');
    throw new Error(`docker build of ${spec.name} failed (exit ${r.exitCode}):\n${tail}`);
  }
  const id = await localImageId(plain, opts);
  if (!id) throw new Error(`${plain}: built but not found`);
  log(`${plain}: built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { imageId: id, built: true };
}

/**
 * The image of `spec` on the controller under its content tag "name:tag": there already, pulled from the registry,
 * or built. One per image and process: a warm-up (Role.warmup) and the role's step may ask for it at the same time;
 * `built` is told to the caller that built it, or once to the step after the warm-up that did (claim below).
 */
export async function localBuild(
  spec: ImageSpec,
  opts: EnsureOptions = {},
): Promise<{ tag: string; plain: string; imageId: string; built: boolean }> {
  const baseImageId = await localImageId(spec.baseImage, opts);
  if (!baseImageId) throw new Error(`base image ${spec.baseImage} is not present (lab: npx tsx scripts/lab.ts base-image)`);
  const hashArgs: Record<string, string> = {};
  for (const [k, v] of Object.entries(spec.buildArgs ?? {})) {
    if (opts.imageArgs?.includes(k)) {
      const id = await localImageId(v, opts);
      if (!id) throw new Error(`build arg ${k}: image ${v} is not present`);
      hashArgs[k] = id;
    } else hashArgs[k] = v;
  }
  const tag = contextHash(spec.contextDir, { baseImageId, buildArgs: hashArgs });
  const plain = `${spec.name}:${tag}`;
  let local = localBuilds.get(plain);
  const mine = !local;
  if (!local) {
    local = localImage(spec, tag, opts);
    localBuilds.set(plain, local);
    local.catch(() => localBuilds.delete(plain));
  }
  const r = await local;
  return { tag, plain, imageId: r.imageId, built: r.built && claim(warmedBuilds, plain, mine, opts) };
}

/** What warm-ups built and pushed, not yet reported by a step (by "name:tag" and by registry reference). */
const warmedBuilds = new Set<string>();
const warmedPushes = new Set<string>();
const isWarmup = (opts: EnsureOptions): boolean => opts.push === false || opts.push === 'when-reachable';

/**
 * Whether this caller reports a build or push this process made: the one that made it, unless it is a warm-up (its
 * log said it; the step after it reports it, once); any later caller does not.
 */
function claim(warmed: Set<string>, key: string, mine: boolean, opts: EnsureOptions): boolean {
  if (mine) {
    if (isWarmup(opts)) warmed.add(key);
    return true;
  }
  return !isWarmup(opts) && warmed.delete(key);
}

/**
 * Make sure the image of `spec` exists under its content tag (and in the registry when given, unless push is false).
 * Idempotent: no build when the tag exists locally or in the registry, no push when the registry has it.
 */
export async function ensureImage(spec: ImageSpec, opts: EnsureOptions = {}): Promise<EnsureResult> {
  const log = opts.log ?? (() => {});
  const env = dockerEnv(opts);
  const { tag, plain, imageId, built } = await localBuild(spec, opts);
  const ref = `${opts.registry ? `${opts.registry}/` : ''}${plain}`;
  if (ref !== plain && (await localImageId(ref, opts)) !== imageId)
    await changesImages(() => $({ env, quiet: true })`docker tag ${plain} ${ref}`);

  let pushed = false;
  const mode = opts.push ?? true;
  if (opts.registry && mode !== false) {
    // one push per image and process, like the builds: the role's step reports a push its warm-up made
    let push = localPushes.get(ref);
    const mine = !push;
    if (!push) {
      const registry = opts.registry;
      push = (async () => {
        let has: boolean;
        try {
          has = await registryHasTag(registry, spec.name, tag);
        } catch (e) {
          if (mode === true) throw e;
          log(`${ref}: the registry did not answer, not pushed (${e instanceof Error ? e.message : String(e)})`);
          return false;
        }
        if (has) return false;
        log(`${ref}: pushing`);
        const started = Date.now();
        await $({ env, quiet: true })`docker push ${ref}`;
        log(`${ref}: pushed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
        return true;
      })();
      localPushes.set(ref, push);
      // a failed attempt, or one that did not reach the registry, is tried again by the next caller
      push.then(
        (done) => done || localPushes.delete(ref),
        () => localPushes.delete(ref),
      );
    }
    pushed = (await push) && claim(warmedPushes, ref, mine, opts);
  }
  return { ref, tag, built, pushed, imageId };
}

export interface SiteImages {
  wordpressFpm: EnsureResult;
  nginx: EnsureResult;
  redis: EnsureResult;
  varnish: EnsureResult;
}

/** The site images (nginx takes WordPress core from the wordpress-fpm image, so it comes after it). The one way
 *  they are built: by the wp-site role (what the lab uses), `make images` and the CI workflow (.github/workflows/images.yml). */
export async function ensureSiteImages(baseImage: string, opts: EnsureOptions = {}, imagesDir = IMAGES_DIR): Promise<SiteImages> {
  // side by side (each is mostly apt downloading and unpacking); nginx takes WordPress core from the wordpress-fpm
  // image, so its build starts once that one is built (not pushed); wordpress-fpm, the longest, takes no build slot
  const fpm: ImageSpec = { name: 'wpfarm/wordpress-fpm', contextDir: path.join(imagesDir, 'wordpress-fpm'), baseImage, first: true };
  const [wordpressFpm, nginx, redis, varnish] = await Promise.all([
    ensureImage(fpm, opts),
    localBuild(fpm, opts).then((w) =>
      ensureImage(
        { name: 'wpfarm/nginx', contextDir: path.join(imagesDir, 'nginx'), baseImage, buildArgs: { WORDPRESS_IMAGE: w.plain } },
        { ...opts, imageArgs: [...(opts.imageArgs ?? []), 'WORDPRESS_IMAGE'] },
      ),
    ),
    ensureImage({ name: 'wpfarm/redis', contextDir: path.join(imagesDir, 'redis'), baseImage }, opts),
    ensureImage({ name: 'wpfarm/varnish', contextDir: path.join(imagesDir, 'varnish'), baseImage }, opts),
  ]);
  return { wordpressFpm, nginx, redis, varnish };
}

/** Where the exporter's build context is assembled (its Dockerfile + the bundle): generated, not committed. */
export const EXPORTER_CONTEXT = path.resolve(IMAGES_DIR, '../../.wpfarm/images/wp-exporter');

/**
 * The WordPress exporter's image (files/images/wp-exporter): its context is the Dockerfile plus
 * roles/wp-exporter/service.ts bundled by esbuild (mysql2 included; same sources, same bytes, same tag), then
 * ensureImage as for the site images.
 */
export async function ensureExporterImage(baseImage: string, opts: EnsureOptions = {}, imagesDir = IMAGES_DIR): Promise<EnsureResult> {
  await exporterContext(imagesDir);
  return ensureImage({ name: 'wpfarm/wp-exporter', contextDir: EXPORTER_CONTEXT, baseImage }, opts);
}

/** The exporter image's content tag, computed without building (its context is assembled first). */
export async function exporterImageTag(baseImage: string, imagesDir = IMAGES_DIR): Promise<string> {
  const base = await localImageId(baseImage);
  if (!base) throw new Error(`base image ${baseImage} is not present on the controller`);
  return contextHash(await exporterContext(imagesDir), { baseImageId: base });
}

/**
 * What the exporter's context was last assembled from (beside the context, not in it: the context's files are its
 * tag): esbuild's version, the image directory's files and every source file the bundle read (esbuild's metafile),
 * each with its sha256, and the sha256 of each file it wrote. While all of them are as recorded the context is reused:
 * a no-change run then reads and hashes ~1 MB instead of bundling (esbuild's ~0.25 s on mgr1's path of phase 3).
 * The stamp is `<context>.inputs.json`.
 */
const stampOf = (into: string): string => `${into}.inputs.json`;

interface ExporterStamp {
  esbuild: string;
  /** sha256 of each file read to assemble the context, by absolute path (the image directory's, the bundle's sources) */
  read: Record<string, string | null>;
  /** sha256 of each file of the assembled context, by path relative to it */
  wrote: Record<string, string>;
}

const sha256File = (file: string): string | null => {
  try {
    return createHash('sha256').update(readFileSync(file)).digest('hex');
  } catch {
    return null;
  }
};

/**
 * true when the context on disk is the one the stamp describes and nothing it was made from has changed (the image
 * directory's files `own` among them: one added or removed there is another set)
 */
function exporterContextCurrent(imagesDir: string, into: string, own: [string, string][]): boolean {
  let stamp: ExporterStamp;
  try {
    stamp = JSON.parse(readFileSync(stampOf(into), 'utf8')) as ExporterStamp;
  } catch {
    return false;
  }
  if (stamp.esbuild !== esbuildVersion) return false;
  const dir = `${path.join(imagesDir, 'wp-exporter')}/`;
  const recorded = Object.keys(stamp.read).filter((f) => f.startsWith(dir));
  if (recorded.length !== own.length || own.some(([, abs]) => !(abs in stamp.read))) return false;
  for (const [file, sha] of Object.entries(stamp.read)) if (sha256File(file) !== sha) return false;
  let files: [string, string][];
  try {
    files = contextFiles(into);
  } catch {
    return false;
  }
  if (files.length !== Object.keys(stamp.wrote).length) return false;
  return files.every(([rel, abs]) => stamp.wrote[rel] === sha256File(abs));
}

/** Once per process, image directory and context: a run's callers (the images role, the exporter's steps) share it. */
const exporterContexts = new Map<string, Promise<string>>();

/**
 * Assemble the exporter's build context (`into`, EXPORTER_CONTEXT by default; a test gives its own); its content
 * hash is the image's tag.
 */
export function exporterContext(imagesDir = IMAGES_DIR, into = EXPORTER_CONTEXT): Promise<string> {
  const key = `${imagesDir}\0${into}`;
  let p = exporterContexts.get(key);
  if (!p) {
    p = assembleExporterContext(imagesDir, into);
    exporterContexts.set(key, p);
    p.catch(() => exporterContexts.delete(key));
  }
  return p;
}

async function assembleExporterContext(imagesDir: string, into: string): Promise<string> {
  const own = contextFiles(path.join(imagesDir, 'wp-exporter'));
  if (exporterContextCurrent(imagesDir, into, own)) return into;
  rmSync(stampOf(into), { force: true });
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into, { recursive: true });
  for (const [rel, abs] of own) {
    mkdirSync(path.dirname(path.join(into, rel)), { recursive: true });
    copyFileSync(abs, path.join(into, rel));
  }
  const root = path.resolve(IMAGES_DIR, '../..');
  const r = await build({
    entryPoints: [path.resolve(root, 'roles/wp-exporter/service.ts')],
    outfile: path.join(into, 'wp-exporter.cjs'),
    absWorkingDir: root,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node18',
    legalComments: 'none',
    logLevel: 'error',
    metafile: true,
  });
  const read: Record<string, string | null> = {};
  for (const [, abs] of own) read[abs] = sha256File(abs)!;
  for (const rel of Object.keys(r.metafile.inputs)) {
    const abs = path.resolve(root, rel);
    read[abs] = sha256File(abs);
  }
  // package.json files decide which file an import resolves to: the lock file covers every package's version
  read[path.join(root, 'package-lock.json')] = sha256File(path.join(root, 'package-lock.json'));
  const wrote: Record<string, string> = {};
  for (const [rel, abs] of contextFiles(into)) wrote[rel] = sha256File(abs)!;
  writeFileSync(stampOf(into), `${JSON.stringify({ esbuild: esbuildVersion, read, wrote } satisfies ExporterStamp)}\n`);
  return into;
}

// CLI (`make images`): node --import tsx roles/wp-site/images.ts [--base IMAGE] [--registry HOST:PORT] [--json]
// Builds (when needed) and pushes (when needed) the site images; prints their pinned references (progress on stderr).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const base = opt('--base') ?? 'debian:bookworm-slim';
  const registry = opt('--registry');
  const json = args.includes('--json');
  try {
    const r = {
      ...(await ensureSiteImages(base, { registry, log: (l) => console.error(l) })),
      exporter: await ensureExporterImage(base, { registry, log: (l) => console.error(l) }),
    };
    if (json) console.log(JSON.stringify(r, null, 1));
    else for (const [k, v] of Object.entries(r)) console.log(`${k} ${v.ref} built=${v.built} pushed=${v.pushed}`);
  } catch (e) {
    console.error(`images: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}
