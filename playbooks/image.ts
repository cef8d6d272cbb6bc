// Golden node images: the farm's packages (roles/common/golden.ts: phase 1's and the later phases') baked into the
// image new nodes start from, their services left disabled, so a new node is ready sooner and the phases on it only
// verify packages.
//
//   npx tsx playbooks/image.ts --lab                                      the lab's node image (wpfarm/lab-golden:bookworm)
//   npx tsx playbooks/image.ts -i inventory/production.example.yml [--check] [--keep N]     a DigitalOcean snapshot
//        (--help: every option)
//
// DigitalOcean: the snapshot's name is derived from its inputs (base image, packages, disabled units): an existing
// one is reused. Otherwise a builder droplet of the stock image is created (tag <owner>-image-builder, never the
// farm's owner tag), prepared over SSH with roles/common/golden.ts, shut down, snapshotted and deleted; older
// snapshots of the family are pruned (--keep). Then `cloud.image: <id>` in the inventory makes provision start
// new droplets from it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { type CommandSpec, parseForIo } from '../lib/cli.ts';
import { EXIT, InputError } from '../lib/errors.ts';
import { readEnvFile, requireCredential } from '../lib/env.ts';
import { EventStream } from '../lib/events.ts';
import { loadCloudInventory, type CloudSpec } from '../lib/cloud/config.ts';
import { bakeSnapshot, listPrivateImages, makeDoClient, snapshotName, type BakeSpec, type DropletInfo } from '../lib/cloud/digitalocean.ts';
import { CloudApiError, maskSecrets } from '../lib/cloud/retry.ts';
import { runRole } from '../lib/runner.ts';
import { ConnectionPool } from '../lib/transport.ts';
import type { HostSpec } from '../lib/types.ts';
import { goldenInputs, goldenPackages, goldenRole } from '../roles/common/golden.ts';

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Prepares the builder droplet (the engine over SSH by default; the contract test gives its own). */
export type Prepare = (droplet: DropletInfo, cloud: CloudSpec) => Promise<void>;

const CMD: CommandSpec = {
  name: 'image.ts',
  summary: `Bakes the farm's packages (${goldenPackages().join(', ')}) into a node image, their services left disabled
(each role enables its own), so that the phases on a new node only verify them.
  --lab: the lab's node image ${'wpfarm/lab-golden:bookworm'} (lab-up starts the nodes from it).
  -i FILE: a DigitalOcean snapshot from the inventory's cloud: section (region, image, ssh_keys, user, key).
Token: DIGITALOCEAN_TOKEN from the environment or .env (never printed).`,
  options: [
    { name: 'lab', type: 'boolean', help: "build the lab's golden node image (no cloud, no token)" },
    { name: 'keep', type: 'integer', min: 1, max: 20, default: 2, help: 'snapshots of the family kept, the new one included' },
    { name: 'size', type: 'string', arg: 'SLUG', default: 's-1vcpu-1gb', help: "the builder droplet's size" },
    { name: 'api-url', type: 'string', arg: 'URL', help: "the API's base URL (tests)" },
    { name: 'dotenv', type: 'string', arg: 'FILE', defaultHelp: '.env', help: 'credentials file' },
    { name: 'poll-ms', type: 'integer', min: 1, help: 'poll interval while droplets and actions run (ms)' },
  ],
  common: ['inventory', 'check', 'verbose'],
  epilog: 'Exit codes: 0 ok, 2 an API call or the preparation failed, 4 bad input, 130 interrupted.',
};

/** The snapshot family and name of a farm: `<owner tag>-node-<hash of the inputs>`. */
export function goldenSnapshotName(cloud: CloudSpec): { prefix: string; name: string } {
  const prefix = `${cloud.ownerTag}-node`;
  return { prefix, name: snapshotName(prefix, goldenInputs(cloud.image)) };
}

/** The engine on the builder: a fresh droplet's host key is accepted into a throwaway known_hosts (it lives minutes). */
export const prepareOverSsh: Prepare = async (droplet, cloud) => {
  if (!droplet.publicV4) throw new Error(`builder ${droplet.name}: no public address`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-image-'));
  const key = cloud.key?.replace(/^~(?=\/)/, os.homedir());
  const host: HostSpec = { name: droplet.name, address: droplet.publicV4, port: 22, user: cloud.user, key, groups: [], vars: {} };
  const pool = new ConnectionPool({ knownHosts: path.join(dir, 'known_hosts'), acceptNew: true });
  try {
    // a droplet answers SSH a little after it is "active": the first connection retries for up to 3 minutes
    for (let i = 0; ; i++) {
      try {
        await pool.get(host);
        break;
      } catch (err) {
        if (i >= 36) throw err;
        await pool.closeAll();
        await new Promise((r) => setTimeout(r, 5000));
      }
    }
    const r = await runRole(goldenRole, [host], {
      pool,
      events: new EventStream(),
      options: { check: false, diff: false, forks: 1, verbose: 0 },
      allHosts: new Map([[host.name, host]]),
      signal: { interrupted: false },
      hostState: new Map(),
    });
    const failed = r.results.filter((x) => x.status === 'failed');
    if (failed.length) throw new Error(`preparing ${droplet.name}: ${failed.map((f) => `${f.step}: ${f.error ?? 'failed'}`).join('; ')}`);
  } finally {
    await pool.closeAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
};

export async function runImage(argv: string[], io: Io, prepare: Prepare = prepareOverSsh): Promise<number> {
  const parsed = parseForIo(argv, CMD, io);
  if (typeof parsed === 'number') return parsed;
  const o = parsed.opts as { lab: boolean; keep: number; size: string; 'api-url'?: string; dotenv?: string; 'poll-ms'?: number };
  let token = '';
  try {
    if (o.lab) {
      // the lab's images live in scripts/lab (docker builds on this machine)
      const { ensureGoldenImage } = await import('../scripts/lab/images.ts');
      const { IMAGES } = await import('../scripts/lab/config.ts');
      if (parsed.flags.check) {
        io.out(`would build ${IMAGES.golden} when missing or out of date (${goldenPackages().join(' ')})`);
        return EXIT.OK;
      }
      const g = await ensureGoldenImage();
      io.out(`${IMAGES.golden} ${g.id.slice(0, 19)}: ${g.built ? 'built' : 'up to date'}; lab-up starts the nodes from it`);
      return EXIT.OK;
    }
    const inv = parsed.flags.inventory;
    if (inv.length !== 1) throw new InputError(`-i/--inventory: one inventory file with a cloud: section (or --lab), got ${inv.length}`);
    const { cloud } = loadCloudInventory(inv[0]!);
    token = requireCredential('DIGITALOCEAN_TOKEN', undefined, readEnvFile(o.dotenv));
    const verbose = parsed.flags.verbose > 0;
    const client = makeDoClient({
      token,
      baseUrl: o['api-url'],
      onExchange: verbose
        ? (e) =>
            io.err(
              `  ${e.method} ${e.path} -> ${e.status}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ''}${e.violations ? ` VIOLATIONS: ${e.violations}` : ''}`,
            )
        : undefined,
    });
    const { prefix, name } = goldenSnapshotName(cloud);
    const waits = { pollIntervalMs: o['poll-ms'] };
    if (parsed.flags.check) {
      const have = (await listPrivateImages(client)).find((i) => i.name === name);
      io.out(
        have
          ? `snapshot ${name} is up to date (image ${have.id})`
          : `would build snapshot ${name} from ${String(cloud.image)} in ${cloud.region} with ${goldenPackages().join(' ')}`,
      );
      return EXIT.OK;
    }
    const spec: BakeSpec = {
      name,
      prefix,
      region: cloud.region,
      image: cloud.image,
      size: o.size,
      sshKeys: cloud.sshKeys,
      builderName: `${cloud.ownerTag}-image-builder`,
      builderTag: `${cloud.ownerTag}-image-builder`,
    };
    const r = await bakeSnapshot(client, spec, (d) => prepare(d, cloud), {
      ...waits,
      keep: o.keep,
      log: (l) => io.out(`  ${l}`),
    });
    io.out(
      `golden image ${r.image.name}: id ${r.image.id} (${r.built ? 'built' : 'already there'}${r.pruned.length ? `; pruned ${r.pruned.join(', ')}` : ''}). ` +
        `New droplets start from it with "image: ${r.image.id}" in the cloud: section of ${inv[0]}.`,
    );
    return EXIT.OK;
  } catch (err) {
    const msg = maskSecrets(err instanceof Error ? err.message : String(err), [token]);
    io.err(`error: ${msg}`);
    if (err instanceof InputError) return EXIT.BAD_INPUT;
    if (err instanceof CloudApiError) return EXIT.FAILED;
    return EXIT.FAILED;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const io: Io = { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) };
  process.on('SIGINT', () => process.exit(EXIT.INTERRUPTED));
  runImage(process.argv.slice(2), io).then((code) => process.exit(code));
}
