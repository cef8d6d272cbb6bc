// The lab suite, last part: lab-down removes every container, network, volume, bridge and firewall rule
// the (test) lab created, restores the FORWARD policy, and the host matches the snapshot taken before lab-up.
// Then the whole cycle again beside a user's lab: objects under the USER lab's names (its container, network,
// bridge, volume, inventory, state directory and a site record: the real ones when a user's lab is up on this
// machine, decoys of the test's own otherwise) stay untouched through the test lab's up, faults and down.
import { PROFILE, containerName } from '../harness/lab-sites.ts';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { BRIDGE, IMAGES, LABEL, LABEL_FILTER, PROFILES, ROOT, SUBNET } from '../../scripts/lab/config.ts';
import { restoreInotifyInstances } from '../../scripts/lab/docker.ts';
import { isOtherLabThing } from '../../scripts/lab/snapshot.ts';
import { PATHS, labDown, labUp, takeSnapshot, type HostSnapshot } from '../../scripts/lab.ts';

const run = promisify(execFile);

async function out(cmd: string, ...args: string[]): Promise<string> {
  return (await run(cmd, args)).stdout.trim();
}
async function tryOut(cmd: string, ...args: string[]): Promise<string | undefined> {
  try {
    return await out(cmd, ...args);
  } catch {
    return undefined;
  }
}

/** Direct checks, independent of the snapshot code: nothing named or labelled as the test lab is left. */
async function assertNoLabLeft(before: HostSnapshot): Promise<void> {
  assert.equal(await out('docker', 'ps', '-aq', '--filter', LABEL_FILTER), '', 'lab containers left');
  assert.equal(await out('docker', 'volume', 'ls', '-q', '--filter', LABEL_FILTER), '', 'lab volumes left');
  assert.equal(await out('docker', 'network', 'ls', '-q', '--filter', LABEL_FILTER), '', 'lab networks left');
  await assert.rejects(run('ip', ['link', 'show', BRIDGE]), 'the lab bridge is gone');
  const prefix = SUBNET.replace(/0\/24$/, '');
  const rules = await out('iptables-save');
  assert.ok(!rules.includes(BRIDGE) && !rules.includes(prefix), 'no iptables rule names the lab bridge or subnet');
  const policy = (await out('iptables', '-S', 'FORWARD')).split('\n')[0];
  assert.equal(policy, `-P FORWARD ${before.forwardPolicy}`, 'FORWARD policy as before lab-up');
}

test('the lab tier runs on the test lab, whose names share nothing with the user lab', () => {
  assert.equal(PROFILE.name, 'test');
  const user = PROFILES.user;
  for (const k of ['label', 'stateDir', 'inventory', 'network', 'bridge', 'net', 'containerPrefix', 'hostRegistryPort', 'lock'] as const) {
    assert.notEqual(PROFILE[k], user[k], `profile field ${k}`);
  }
  assert.ok(!PROFILE.containerPrefix.startsWith(user.containerPrefix) && !PROFILE.network.startsWith(`${user.network}-`));
});

test('lab-down leaves the host as it was before lab-up', { timeout: 5 * 60_000 }, async (t) => {
  assert.ok(fs.existsSync(PATHS.before), `${PATHS.before} (written by lab-up in 00-lab.test.ts)`);
  const before = JSON.parse(fs.readFileSync(PATHS.before, 'utf8')) as HostSnapshot;
  const r = await labDown();
  t.diagnostic(
    `lab-down ${r.seconds.toFixed(1)} s: removed ${r.removed.containers} containers, ${r.removed.volumes} volumes, ${r.removed.networks} networks`,
  );
  assert.ok(r.removed.containers >= 14, 'the 11 nodes, the services node, the S3 store and the controller were removed');
  assert.equal(r.leftovers, '', `host differs from before lab-up:\n${r.leftovers}`);
  assert.ok(!fs.existsSync(PATHS.before), 'the snapshot is consumed (moved to before.last.json)');
  await assertNoLabLeft(before);
});

// ------------------------------------------------------------------------------ the user's lab, beside it

const USER = PROFILES.user;
const USER_LABEL = `${LABEL}=${USER.label}`;
const stamp = `${process.pid}-${Date.now().toString(36)}`;

/** One object the user's lab owns: the real one (a user's lab is up here) or a decoy this test made. */
interface Owned {
  what: string;
  decoy: boolean;
  /** what "untouched" compares: ids, start times, link state, file hashes and mtimes */
  fingerprint: () => Promise<string>;
  remove: () => Promise<void>;
  print?: string;
}
const owned: Owned[] = [];

function fileFingerprint(p: string): string {
  if (!fs.existsSync(p)) return 'absent';
  const one = (f: string): string => {
    const st = fs.statSync(f);
    return st.isDirectory()
      ? `dir ${st.mode.toString(8)}`
      : `${createHash('sha256').update(fs.readFileSync(f)).digest('hex').slice(0, 16)} ${st.mtimeMs} ${st.mode.toString(8)}`;
  };
  if (!fs.statSync(p).isDirectory()) return one(p);
  // every entry below once (readdir is recursive already: a subdirectory is not walked again; the user lab's
  // state directory holds ~500 MB of apt cache, which the walk hashed once per level)
  return fs
    .readdirSync(p, { recursive: true, encoding: 'utf8' })
    .sort()
    .map((f) => `${f} ${one(path.join(p, f))}`)
    .join('\n');
}

async function dockerFingerprint(kind: 'container' | 'network' | 'volume', name: string): Promise<string> {
  const fmt = {
    container: `{{.Id}} {{.State.Running}} {{.State.StartedAt}} {{index .Config.Labels "${LABEL}"}}`,
    network: `{{.Id}} {{range .IPAM.Config}}{{.Subnet}}{{end}} {{index .Labels "${LABEL}"}} {{len .Containers}}`,
    volume: `{{.Name}} {{.CreatedAt}} {{index .Labels "${LABEL}"}}`,
  }[kind];
  const info = await tryOut('docker', kind, 'inspect', '--format', fmt, name);
  if (info === undefined) return 'absent';
  if (kind !== 'container' || !info.split(' ')[1]?.startsWith('true')) return info;
  // a running node: its network link as it sees it (a partition of the wrong veth would show here)
  return `${info} eth0:${await tryOut('docker', 'exec', name, 'cat', '/sys/class/net/eth0/operstate')}`;
}

/** The user lab's objects: recorded where they exist (a user's lab is up), made as decoys where not. */
async function userLabObjects(): Promise<void> {
  const net = USER.network;
  const node = `${USER.containerPrefix}mgr1`;
  const vol = `${USER.containerPrefix}mgr1-docker`;
  const netExists = (await tryOut('docker', 'network', 'inspect', net)) !== undefined;
  if (!netExists) {
    await out(
      'docker',
      'network',
      'create',
      '--driver',
      'bridge',
      '--subnet',
      `${USER.net}.0/24`,
      '--gateway',
      `${USER.net}.1`,
      '--label',
      USER_LABEL,
      '-o',
      `com.docker.network.bridge.name=${USER.bridge}`,
      net,
    );
  }
  owned.push({
    what: `network ${net}`,
    decoy: !netExists,
    fingerprint: () => dockerFingerprint('network', net),
    remove: async () => void (await out('docker', 'network', 'rm', net)),
  });
  const volExists = (await tryOut('docker', 'volume', 'inspect', vol)) !== undefined;
  if (!volExists) await out('docker', 'volume', 'create', '--label', USER_LABEL, vol);
  const nodeExists = (await tryOut('docker', 'container', 'inspect', node)) !== undefined;
  if (!nodeExists) {
    // a stand-in for the user's mgr1: on the user network (when it is a decoy too), with the user's volume
    await out(
      'docker',
      'run',
      '-d',
      '--name',
      node,
      '--hostname',
      'mgr1',
      '--label',
      USER_LABEL,
      '--label',
      `${LABEL}.machine=mgr1`,
      '--network',
      netExists ? 'none' : net,
      ...(netExists ? [] : ['--ip', `${USER.net}.11`]),
      '--mount',
      `type=volume,src=${vol},dst=/var/lib/docker`,
      '--entrypoint',
      'sh',
      IMAGES.base,
      '-c',
      `echo ${stamp} > /var/lib/docker/decoy-marker; exec sleep infinity`,
    );
  }
  owned.push({
    what: `container ${node}`,
    decoy: !nodeExists,
    fingerprint: async () => {
      const marker = nodeExists ? '' : ` ${await tryOut('docker', 'exec', node, 'cat', '/var/lib/docker/decoy-marker')}`;
      return `${await dockerFingerprint('container', node)}${marker}`;
    },
    remove: async () => void (await out('docker', 'rm', '-f', node)),
  });
  // after the container: it removes the volume it uses only once it is gone
  owned.push({
    what: `volume ${vol}`,
    decoy: !volExists,
    fingerprint: () => dockerFingerprint('volume', vol),
    remove: async () => void (await out('docker', 'volume', 'rm', vol)),
  });
  owned.push({
    what: `bridge ${USER.bridge} and its iptables rules`,
    decoy: !netExists,
    fingerprint: async () => {
      const link = await tryOut('ip', '-o', 'link', 'show', USER.bridge);
      const rules = (await out('iptables-save'))
        .split('\n')
        .filter((l) => l.includes(USER.bridge) || l.includes(`${USER.net}.`))
        .map((l) => l.replace(/^\[\d+:\d+\] /, ''))
        .sort();
      return `${link ?? 'absent'}\n${rules.join('\n')}`;
    },
    remove: async () => undefined, // goes with its network
  });
  // files: the user's inventory, the user lab's state directory, a site record in the user's inventory/sites
  const files: Array<{ what: string; file: string; make: () => void }> = [
    {
      what: `inventory ${USER.inventory}`,
      file: path.join(ROOT, USER.inventory),
      make: () => fs.writeFileSync(path.join(ROOT, USER.inventory), `# decoy of test/lab/99-lab-down.test.ts ${stamp}\n`),
    },
    {
      what: `state directory ${USER.stateDir}`,
      file: path.join(ROOT, USER.stateDir),
      make: () => {
        fs.mkdirSync(path.join(ROOT, USER.stateDir), { recursive: true, mode: 0o700 });
        // the lab's env file, not a key: harmless even if a crash left it (lab-up adds the missing credentials)
        fs.writeFileSync(path.join(ROOT, USER.stateDir, 'lab.env'), `# decoy of test/lab/99-lab-down.test.ts ${stamp}\n`, { mode: 0o600 });
      },
    },
    {
      what: `site record inventory/sites/decoy-${stamp}.yml`,
      file: path.join(ROOT, 'inventory', 'sites', `decoy-${stamp}.yml`),
      make: () =>
        fs.writeFileSync(
          path.join(ROOT, 'inventory', 'sites', `decoy-${stamp}.yml`),
          `# decoy of test/lab/99-lab-down.test.ts (removed at its end)\nid: decoy-${stamp}\ndomain: decoy-${stamp}.example.test\n`,
        ),
    },
  ];
  for (const f of files) {
    const exists = fs.existsSync(f.file);
    if (!exists) f.make();
    owned.push({
      what: f.what,
      decoy: !exists,
      fingerprint: async () => fileFingerprint(f.file),
      remove: async () => fs.rmSync(f.file, { recursive: true, force: true }),
    });
  }
  for (const o of owned) o.print = await o.fingerprint();
}

async function untouched(when: string): Promise<void> {
  for (const o of owned) assert.equal(await o.fingerprint(), o.print, `${o.what} (${o.decoy ? 'decoy' : "the user's"}) changed ${when}`);
}

after(async () => {
  // only the decoys this test made, in the order made (the container before its volume and network)
  const removeOrder = [...owned].sort((a, b) => Number(a.what.startsWith('network')) - Number(b.what.startsWith('network')));
  for (const o of removeOrder) if (o.decoy) await o.remove().catch((e: unknown) => console.error(`decoy ${o.what}: ${String(e)}`));
  // the decoys counted as another lab at lab-down, which therefore kept the inotify limit: the last lab gone, restore it
  if (!(await out('docker', 'ps', '-aq', '--filter', `label=${LABEL}`))) restoreInotifyInstances();
});

test("up, faults and down of the test lab beside the user's lab leave every user lab object untouched", {
  timeout: 10 * 60_000,
}, async (t) => {
  process.chdir(ROOT);
  await userLabObjects();
  t.diagnostic(`user lab objects: ${owned.map((o) => `${o.what} (${o.decoy ? 'decoy' : 'real'})`).join('; ')}`);
  assert.ok(owned.length >= 7);
  const up = await labUp();
  t.diagnostic(
    `test lab-up beside them ${up.seconds.toFixed(1)} s (images built: ${up.imagesBuilt.join(', ') || 'none'}), ` +
      `created ${up.created.length}`,
  );
  assert.equal(up.created.length, 14, 'a fresh lab after lab-down');
  await untouched('by the test lab-up');
  // the fault tool, as a person runs it, on the test lab's mgr1 (the user lab has an mgr1 too)
  const labCli = (...args: string[]) =>
    run(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', ...args], { cwd: ROOT, timeout: 180_000 });
  await labCli('kill', 'mgr1');
  assert.equal(
    await out('docker', 'inspect', '--format', '{{.State.Running}}', containerName('mgr1')),
    'false',
    'the test lab mgr1 is killed',
  );
  await untouched('by the fault tool (kill mgr1)');
  await labCli('start', 'mgr1');
  await labCli('partition', 'mgr1');
  // its eth0 goes down with the host end of its veth (measured: operstate "down")
  assert.equal(await out('docker', 'exec', containerName('mgr1'), 'cat', '/sys/class/net/eth0/operstate'), 'down');
  await untouched('by the fault tool (partition mgr1)');
  await labCli('heal', 'mgr1');
  const before = JSON.parse(fs.readFileSync(PATHS.before, 'utf8')) as HostSnapshot;
  const down = await labDown();
  t.diagnostic(
    `test lab-down ${down.seconds.toFixed(1)} s: removed ${down.removed.containers} containers, ${down.removed.volumes} volumes`,
  );
  assert.equal(down.removed.containers, 14, 'exactly the test lab: 11 nodes, its services node, S3 store and controller');
  assert.equal(down.removed.networks, 1);
  assert.equal(down.leftovers, '', `host differs from before lab-up:\n${down.leftovers}`);
  await assertNoLabLeft(before);
  await untouched('by the test lab-down');
  // and the snapshot code itself agrees with a fresh snapshot (the user lab's own objects are its business)
  const now = await takeSnapshot();
  const mine = (xs: string[]): string[] => xs.filter((x) => !isOtherLabThing(x));
  assert.deepEqual(mine(now.containers), mine(before.containers));
  assert.deepEqual(mine(now.volumes), mine(before.volumes));
  assert.deepEqual(mine(now.networks), mine(before.networks));
});
