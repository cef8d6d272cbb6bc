// Images, all made here from the machine's own Debian mirror (no registry is reachable):
//   wpfarm/base:bookworm      debootstrap --variant=minbase, imported (shared with other helpers)
//   wpfarm/lab-node:bookworm  base + systemd, sshd (keys only): a bare "droplet"
//   wpfarm/lab-svc:bookworm   node + docker-registry + dnsmasq
//   wpfarm/lab-golden:bookworm  node + the farm's packages (roles/common/golden.ts): the lab's golden node image
//   wpfarm/lab-s3:bookworm    node + Ceph monitor, OSD and radosgw (the lab's S3 store)
//   wpfarm/lab-ctl:bookworm   node + age, git (the lab's controller: real systemd timers for its jobs)
//   wpfarm/lab-legacy:bookworm  node + Debian's wordpress, nginx, php-fpm, MariaDB (a legacy VPS, issue 14; only
//                               built by `lab.ts legacy-up`, for the lab test that migrates from it)
// Each built image carries a content hash label; a changed Dockerfile, package list or base rebuilds it.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { quote } from 'zx';
import { GOLDEN_DISABLED_UNITS, goldenPackages, goldenUnitsCheck } from '../../roles/common/golden.ts';
import { aptGetInstall, aptGetUpdate } from '../../lib/ops/apt.ts';
import { FILES_DIR, IMAGES } from './config.ts';
import { ensureDocker } from './docker.ts';
import { runLogged, say, secondsSince, tryOut, withLock } from './util.ts';

const HASH_LABEL = 'wpfarm.image.hash';

export interface AptMirrors {
  debian: string;
  security?: string;
}

interface SourceEntry {
  uri: string;
  suites: string[];
  components: string[];
}

function parseSources(): SourceEntry[] {
  const out: SourceEntry[] = [];
  const files: string[] = [];
  if (fs.existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
  const dir = '/etc/apt/sources.list.d';
  if (fs.existsSync(dir)) for (const f of fs.readdirSync(dir).sort()) files.push(path.join(dir, f));
  for (const file of files) {
    const text = fs.readFileSync(file, 'utf8');
    if (file.endsWith('.sources')) {
      for (const para of text.split(/\n\s*\n/)) {
        const field = (k: string): string[] => {
          const m = para.match(new RegExp(`^${k}:\\s*(.*)$`, 'mi'));
          return m?.[1]?.trim().split(/\s+/).filter(Boolean) ?? [];
        };
        if (/^Enabled:\s*no/im.test(para) || !field('Types').includes('deb')) continue;
        for (const uri of field('URIs')) out.push({ uri, suites: field('Suites'), components: field('Components') });
      }
    } else if (file.endsWith('.list')) {
      for (const line of text.split('\n')) {
        const m = line.trim().match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$/);
        if (m?.[1] && m[2] && m[3]) out.push({ uri: m[1], suites: [m[2]], components: m[3].trim().split(/\s+/) });
      }
    }
  }
  return out;
}

/** The Debian mirror of this machine (WPFARM_APT_MIRROR / WPFARM_APT_SECURITY_MIRROR override it). */
export function aptMirrors(): AptMirrors {
  const entries = parseSources();
  const strip = (u: string): string => u.replace(/\/+$/, '');
  const debian =
    process.env.WPFARM_APT_MIRROR ??
    entries.find((e) => e.suites.includes('bookworm') && e.components.includes('main'))?.uri ??
    entries.find((e) => e.suites.some((s) => /^(bookworm|stable)$/.test(s)))?.uri;
  if (!debian) throw new Error('no Debian bookworm mirror found in /etc/apt/sources.list*: set WPFARM_APT_MIRROR');
  const security = process.env.WPFARM_APT_SECURITY_MIRROR ?? entries.find((e) => e.suites.includes('bookworm-security'))?.uri;
  return { debian: strip(debian), security: security ? strip(security) : undefined };
}

/** deb822 sources for the images, the same mirrors as the host's. */
export function debianSources(m: AptMirrors): string {
  let s =
    `Types: deb\nURIs: ${m.debian}\nSuites: bookworm bookworm-updates\nComponents: main\n` +
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n';
  if (m.security) {
    s +=
      `\nTypes: deb\nURIs: ${m.security}\nSuites: bookworm-security\nComponents: main\n` +
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n';
  }
  return s;
}

export async function imageId(name: string): Promise<string | undefined> {
  return (await tryOut`docker image inspect -f ${'{{.Id}}'} ${name}`)?.trim() || undefined;
}

async function imageHash(name: string): Promise<string | undefined> {
  const out = await tryOut`docker image inspect -f ${`{{index .Config.Labels "${HASH_LABEL}"}}`} ${name}`;
  return out?.trim() || undefined;
}

function dirHash(dir: string, extra: string): string {
  const h = createHash('sha256');
  for (const f of fs.readdirSync(dir).sort()) {
    h.update(f)
      .update('\0')
      .update(fs.readFileSync(path.join(dir, f)))
      .update('\0');
  }
  return h.update(extra).digest('hex').slice(0, 16);
}

/** wpfarm/base:bookworm: debootstrap of the host's mirror (31–44 s here), idempotent. */
export async function buildBaseImage(opts: { force?: boolean } = {}): Promise<string> {
  await ensureDocker();
  return withLock('images', async () => {
    const have = await imageId(IMAGES.base);
    if (have && !opts.force) return have;
    const mirrors = aptMirrors();
    if (!fs.existsSync('/usr/sbin/debootstrap')) {
      say('installing debootstrap (apt-get)');
      await runLogged(['apt-get', '-o', 'DPkg::Lock::Timeout=600', '-y', '-q', 'install', '--no-install-recommends', 'debootstrap'], {
        name: 'apt-debootstrap',
        what: 'apt-get install debootstrap',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
      });
    }
    const started = Date.now();
    say(`building ${IMAGES.base}: debootstrap --variant=minbase bookworm from ${mirrors.debian} (about a minute)`);
    const dir = fs.mkdtempSync(path.join(os.tmpdir() === '/tmp' ? '/var/tmp' : os.tmpdir(), 'wpfarm-base-'));
    try {
      await runLogged(['debootstrap', '--variant=minbase', '--components=main', 'bookworm', dir, mirrors.debian], {
        name: 'debootstrap',
        what: 'debootstrap',
      });
      fs.rmSync(path.join(dir, 'etc/apt/sources.list'), { force: true });
      fs.writeFileSync(path.join(dir, 'etc/apt/sources.list.d/debian.sources'), debianSources(mirrors));
      for (const sub of ['var/cache/apt/archives', 'var/lib/apt/lists']) {
        const d = path.join(dir, sub);
        for (const f of fs.readdirSync(d))
          if (f !== 'partial' && f !== 'lock') fs.rmSync(path.join(d, f), { recursive: true, force: true });
      }
      const script =
        `set -o pipefail; tar -C ${quote(dir)} --numeric-owner -c . | docker import ` +
        `--change ${quote('CMD ["/bin/bash"]')} --change ${quote(`LABEL wpfarm.base.mirror=${mirrors.debian}`)} - ${quote(IMAGES.base)}`;
      await runLogged(['bash', '-c', script], { name: 'base-import', what: 'docker import of the base' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    const id = await imageId(IMAGES.base);
    if (!id) throw new Error(`${IMAGES.base} missing after import`);
    say(`${IMAGES.base} built in ${secondsSince(started)}`);
    return id;
  });
}

async function buildFromDir(image: string, dir: string, parentId: string): Promise<{ id: string; built: boolean }> {
  const hash = dirHash(dir, parentId);
  if ((await imageHash(image)) === hash) return { id: (await imageId(image))!, built: false };
  const started = Date.now();
  const previous = await imageId(image);
  say(`building ${image} (docker build, apt-get from the host's mirror)`);
  await runLogged(['docker', 'build', '--network', 'host', '--label', `${HASH_LABEL}=${hash}`, '-t', image, dir], {
    name: `build-${path.basename(dir)}`,
    what: `docker build ${image}`,
    env: { ...process.env, DOCKER_BUILDKIT: '0' },
  });
  say(`${image} built in ${secondsSince(started)}`);
  const id = await imageId(image);
  if (!id) throw new Error(`${image} missing after build`);
  // the replaced build, now untagged (kept while a container still uses it)
  if (previous && previous !== id) await tryOut`docker image rm ${previous}`;
  return { id, built: true };
}

/**
 * The golden node image's Dockerfile: the bare node plus the farm's packages, installed with the apt op's own
 * command lines (lib/ops/apt.ts); dpkg skips its fsyncs during the build only (force-unsafe-io, as Debian's own
 * container images do: a build that dies is thrown away). Daemons are not started (policy-rc.d), the units the packages
 * enable are left disabled (roles/common/golden.ts: GOLDEN_DISABLED_UNITS; the build fails if one more is enabled)
 * and the package lists are kept, so that the roles' `update_cache` finds them and a converged check changes nothing.
 */
export function goldenDockerfile(packages: readonly string[] = goldenPackages(), units: readonly string[] = GOLDEN_DISABLED_UNITS): string {
  if (!packages.length) throw new Error('a golden image needs at least one package');
  return `# wpfarm lab golden node: ${IMAGES.node} with the farm's packages baked in (roles/common/golden.ts).
# Generated by scripts/lab/images.ts (goldenDockerfile); rebuilt when the package list or the node image changes.
FROM ${IMAGES.node}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN export DEBIAN_FRONTEND=noninteractive \\
 && printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d \\
 && echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/wpfarm-image-build \\
 && ${aptGetUpdate()} \\
 && ${aptGetInstall([...packages])} \\
 && rm -f /usr/sbin/policy-rc.d /etc/dpkg/dpkg.cfg.d/wpfarm-image-build \\
 && systemctl disable ${units.join(' ')} \\
 && ${goldenUnitsCheck()} \\
 && apt-get clean && rm -rf /var/cache/apt/*.bin
LABEL wpfarm.golden.packages="${packages.join(' ')}"
`;
}

/** wpfarm/lab-golden:bookworm on the node image (built when missing or when its Dockerfile or parent changed). */
async function buildGolden(nodeId: string): Promise<{ id: string; built: boolean }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-golden-'));
  try {
    const ctx = path.join(dir, 'golden');
    fs.mkdirSync(ctx);
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), goldenDockerfile());
    return await buildFromDir(IMAGES.golden, ctx, nodeId);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface LabImages {
  base: string;
  node: string;
  svc: string;
  /** the golden node image, when the nodes start from it */
  golden?: string;
  s3: string;
  ctl: string;
  built: string[];
}

/** All the lab's images, building only what is missing or out of date; the golden node image unless golden is false. */
export async function ensureImages(
  opts: {
    golden?: boolean;
    /** called once the services' and the S3 store's images are ready, while the others may still build */
    servicesReady?: (ids: { svc: string; s3: string }) => Promise<unknown>;
  } = {},
): Promise<LabImages> {
  const built: string[] = [];
  const hadBase = await imageId(IMAGES.base);
  const base = await buildBaseImage();
  if (!hadBase) built.push(IMAGES.base);
  return withLock('images', async () => {
    const node = await buildFromDir(IMAGES.node, path.join(FILES_DIR, 'node'), base);
    if (node.built) built.push(IMAGES.node);
    // the images on the node image are built side by side: each is mostly apt downloading and unpacking, one
    // after another they took 117 s on a fresh machine (s3 42 s, golden 55 s)
    const svcBuild = buildFromDir(IMAGES.svc, path.join(FILES_DIR, 'svc'), node.id);
    const s3Build = buildFromDir(IMAGES.s3, path.join(FILES_DIR, 's3'), node.id);
    const [svc, s3, ctl, golden] = await Promise.all([
      svcBuild,
      s3Build,
      buildFromDir(IMAGES.ctl, path.join(FILES_DIR, 'ctl'), node.id),
      opts.golden === false ? undefined : buildGolden(node.id),
      opts.servicesReady && Promise.all([svcBuild, s3Build]).then(([a, b]) => opts.servicesReady!({ svc: a.id, s3: b.id })),
    ]);
    for (const [image, b] of [
      [IMAGES.svc, svc],
      [IMAGES.s3, s3],
      [IMAGES.ctl, ctl],
      [IMAGES.golden, golden],
    ] as const)
      if (b?.built) built.push(image);
    const others = { base, node: node.id, svc: svc.id, s3: s3.id, ctl: ctl.id };
    return golden ? { ...others, golden: golden.id, built } : { ...others, built };
  });
}

/** Only the golden node image (and what it is built on): playbooks/image.ts --lab. */
export async function ensureGoldenImage(): Promise<{ id: string; built: boolean }> {
  const imgs = await ensureImages();
  return { id: imgs.golden!, built: imgs.built.includes(IMAGES.golden) };
}

/** The legacy host's image (issue 14): the bare node image plus files/lab/legacy; built only by `lab.ts legacy-up`. */
export async function ensureLegacyImage(): Promise<{ id: string; built: boolean }> {
  const imgs = await ensureImages({ golden: false });
  return withLock('images', () => buildFromDir(IMAGES.legacy, path.join(FILES_DIR, 'legacy'), imgs.node));
}
