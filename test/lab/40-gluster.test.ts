// Lab tier: the gluster role on the lab (st1, st2 data bricks, mon1 arbiter, wrk1/wrk2 FUSE clients), through
// the CLI exactly as an operator runs it:
//   converge (from bare hosts or from where the lab is) → a started `replica 3 arbiter 1` volume, mounted on
//   both workers from /etc/fstab; rerun → zero changes; check mode → zero changes predicted;
//   a file written through wrk1's mount is read through wrk2's; siteDirSteps() makes a site's directories;
//   st2 stopped (clean shutdown) → writes through wrk1 still work (st1 + the arbiter keep quorum) →
//   st2 started → `gluster volume heal <vol> info` reaches 0 entries and st2's brick holds the files.
// Timings are printed as diagnostics ("timing: ...").
//
// The lab's bricks are on the root filesystem: the run passes -e gluster_brick_force=true (see docs/roles/gluster.md).
// Runnable alone when the lab is up: node --import tsx --test test/lab/40-gluster.test.ts
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { ADDR, INVENTORY, KNOWN } from '../harness/lab-sites.ts';
import { loadInventory, type Inventory } from '../../lib/inventory.ts';
import { Run } from '../../lib/play.ts';
import { sh } from '../../lib/shell.ts';
import { connect } from '../../lib/transport.ts';
import type { Connection, Role, StepResult } from '../../lib/types.ts';
import { parseHealInfo, parseVolumeInfo, parseVolumeStatus, siteDirSteps } from '../../roles/gluster/model.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const [ST1, ST2, MON1] = [ADDR.st1!, ADDR.st2!, ADDR.mon1!];
const VOLUME = 'wpfarm-sites';
const MOUNT = '/mnt/gluster/sites';
const BRICK = `/srv/gluster/bricks/${VOLUME}`;
const EXTRA = ['-e', 'gluster_brick_force=true'];
const TESTDIR = `wpfarm-test-${process.pid}`;

let inv: Inventory;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-gluster-'));
const timings: Record<string, number> = {};

interface Report {
  exitCode: number;
  wallMs: number;
  results: StepResult[];
}

/** The CLI as an operator runs it; returns the --json report. */
async function role(tag: string, ...args: string[]): Promise<Report & { stdout: string }> {
  const json = path.join(tmp, `${tag}.json`);
  const t0 = Date.now();
  const r = await run(
    process.execPath,
    ['--import', 'tsx', 'playbooks/run-role.ts', 'gluster', '--inventory', INVENTORY, ...EXTRA, '--json', json, ...args],
    {
      cwd: ROOT,
      timeout: 30 * 60_000,
      maxBuffer: 64 * 1024 * 1024,
    },
  ).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: `${e.stdout ?? ''}\n${e.stderr ?? ''}`, stderr: '' }));
  timings[tag] = Date.now() - t0;
  const rep = JSON.parse(fs.readFileSync(json, 'utf8')) as Report;
  return { ...rep, stdout: r.stdout };
}

const changed = (rep: Report) =>
  rep.results.filter((r) => r.status === 'changed').map((r) => `${r.host} ${r.step}: ${r.changes.join('; ')}`);
const failures = (rep: Report) =>
  rep.results.filter((r) => r.status === 'failed' || r.status === 'unreachable').map((r) => `${r.host} ${r.step}: ${r.error ?? r.status}`);

/** A fresh engine connection (the lab's fault tools may have stopped a node since the last one). */
async function on<T>(name: string, fn: (c: Connection) => Promise<T>): Promise<T> {
  const h = inv.hosts.get(name);
  assert.ok(h, `${name} in ${INVENTORY}`);
  const c = await connect(h, {
    knownHosts: path.resolve(ROOT, inv.settings.knownHosts ?? KNOWN),
    connectTimeoutMs: 10_000,
  });
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

const shell = (name: string, cmd: string, timeoutMs = 120_000) => on(name, async (c) => await c.exec(cmd, { nothrow: true, timeoutMs }));
const out = async (name: string, cmd: string) => (await shell(name, cmd)).stdout.trim();

async function lab(...args: string[]): Promise<void> {
  await run(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', ...args], { cwd: ROOT, timeout: 180_000 });
}

async function until<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const t0 = Date.now();
  let last: T | undefined;
  let err: unknown;
  for (;;) {
    try {
      last = await fn();
      err = undefined;
      if (ok(last)) return last;
    } catch (e) {
      err = e;
    }
    if (Date.now() - t0 > timeoutMs)
      assert.fail(`${what}: not reached within ${timeoutMs / 1000} s (last: ${err ? String(err) : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, 2000));
  }
}

before(async () => {
  await lab('up');
  inv = loadInventory(INVENTORY);
});

after(async () => {
  // leave the lab as the role made it: every node running, the test files gone
  await lab('start', 'st2').catch(() => undefined);
  await shell('wrk1', sh`rm -rf ${`${MOUNT}/${TESTDIR}`}`).catch(() => undefined);
  for (const [k, v] of Object.entries(timings)) console.log(`timing: ${k} ${(v / 1000).toFixed(1)} s`);
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('converge: replica 3 arbiter 1 volume started, mounted on both workers from fstab', async () => {
  const rep = await role('converge');
  assert.deepEqual(failures(rep), [], rep.stdout.slice(-4000));
  assert.equal(rep.exitCode, 0);
  const info = parseVolumeInfo(await out('st1', sh`gluster --mode=script volume info ${VOLUME}`));
  assert.ok(info, 'volume info');
  assert.equal(info.status, 'Started');
  assert.equal(info.type, 'Replicate');
  assert.deepEqual(
    info.bricks.map((b) => `${b.name}${b.arbiter ? ' arbiter' : ''}`),
    [`${ST1}:${BRICK}`, `${ST2}:${BRICK}`, `${MON1}:${BRICK} arbiter`],
  );
  assert.match(await out('st1', sh`gluster --mode=script volume info ${VOLUME}`), /Number of Bricks: 1 x \(2 \+ 1\) = 3/);
  assert.equal(info.options['network.ping-timeout'], '10');
  assert.equal(info.options['cluster.quorum-type'], 'auto');
  // every peer in the pool, connected
  const pool = await out('st1', 'gluster --mode=script pool list');
  for (const a of [ST2, MON1]) assert.match(pool, new RegExp(`${a.replace(/\./g, '\\.')}\\s+Connected`));
  // brick ports inside the range the firewall of roles/common opens
  const status = await out('st1', sh`gluster --mode=script volume status ${VOLUME}`);
  const bricks = parseVolumeStatus(status);
  assert.deepEqual(
    bricks.map((b) => [b.brick, b.online]),
    [
      [`${ST1}:${BRICK}`, true],
      [`${ST2}:${BRICK}`, true],
      [`${MON1}:${BRICK}`, true],
    ],
    status,
  );
  for (const b of bricks) assert.ok(b.port >= 49152 && b.port <= 49251, `brick ${b.brick} port ${b.port} in 49152-49251`);
  for (const w of ['wrk1', 'wrk2']) {
    assert.equal(await out(w, sh`findmnt -n -o FSTYPE,SOURCE --mountpoint ${MOUNT}`), `fuse.glusterfs ${ST1}:/${VOLUME}`, `${w} mount`);
    const fstab = await out(w, sh`grep -F ${` ${MOUNT} `} /etc/fstab`);
    assert.equal(fstab, `${ST1}:/${VOLUME} ${MOUNT} glusterfs defaults,_netdev,backup-volfile-servers=${ST2}:${MON1} 0 0`);
    // the fstab line is what systemd mounts at boot: its generated unit exists and is active
    assert.equal(await out(w, 'systemctl is-active mnt-gluster-sites.mount'), 'active', `${w}: mnt-gluster-sites.mount`);
    assert.match(await out(w, 'cat /etc/systemd/system/docker.service.d/50-wpfarm-gluster.conf'), /^After=mnt-gluster-sites\.mount$/m);
    // with docker installed (roles/common), systemd has loaded the drop-in
    if ((await out(w, 'systemctl show docker.service -p LoadState')) === 'LoadState=loaded') {
      assert.match(
        await out(w, 'systemctl show docker.service -p After'),
        /mnt-gluster-sites\.mount/,
        `${w}: dockerd ordered after the mount`,
      );
    }
  }
});

test("the managers mount the volume too (Portainer's data, gluster_extra_client_groups), their dockerd not ordered after it", async () => {
  for (const m of ['mgr1', 'mgr2', 'mgr3']) {
    assert.equal(await out(m, sh`findmnt -n -o FSTYPE,SOURCE --mountpoint ${MOUNT}`), `fuse.glusterfs ${ST1}:/${VOLUME}`, `${m} mount`);
    assert.equal(await out(m, 'test -e /etc/systemd/system/docker.service.d/50-wpfarm-gluster.conf && echo yes || echo no'), 'no', m);
  }
});

test('second run: zero changes; check mode on the converged farm predicts zero changes', async () => {
  const again = await role('rerun');
  assert.deepEqual(failures(again), []);
  assert.deepEqual(changed(again), []);
  assert.equal(again.exitCode, 0);
  const check = await role('check', '--check');
  assert.deepEqual(failures(check), []);
  assert.deepEqual(changed(check), []);
  assert.equal(check.exitCode, 0);
  assert.ok(
    check.results.some((r) => r.step.startsWith('gluster pool') && r.status === 'ok'),
    'the pool task ran in check mode',
  );
});

test('a file written through the mount on wrk1 is read through the mount on wrk2', async () => {
  const content = randomBytes(32).toString('hex');
  const f = `${MOUNT}/${TESTDIR}/hello.txt`;
  const w = await shell('wrk1', sh`mkdir -p ${`${MOUNT}/${TESTDIR}`} && printf %s ${content} > ${f} && sync`);
  assert.equal(w.code, 0, w.stderr);
  assert.equal(await out('wrk2', sh`cat ${f}`), content);
  // replicated on both data bricks; the arbiter holds the name and metadata only (0 bytes of data)
  for (const st of ['st1', 'st2']) assert.equal(await out(st, sh`cat ${`${BRICK}/${TESTDIR}/hello.txt`}`), content, `${st} brick`);
  assert.equal(await out('mon1', sh`stat -c %s ${`${BRICK}/${TESTDIR}/hello.txt`}`), '0', 'arbiter brick: metadata only');
});

test('siteDirSteps: a site directory made on one worker is seen on the other, owned by www-data (33)', async () => {
  const site = `t${process.pid}`;
  const ops = siteDirSteps(site, inv.hosts.get('wrk1')!.vars);
  const testRole: Role = { name: 'gluster-site-dirs-test', hosts: 'wrk1', steps: () => ops };
  const runOnce = async () => {
    const r = Run.fromArgv(['--inventory', INVENTORY], { name: 'gluster-site-dirs-test' });
    const res = await r.role(testRole);
    await r.finish();
    return res.results;
  };
  try {
    const first = await runOnce();
    assert.deepEqual(
      first.filter((x) => x.status === 'failed').map((x) => x.error),
      [],
    );
    assert.equal(first.filter((x) => x.status === 'changed').length, 4);
    assert.equal(
      await out(
        'wrk2',
        sh`stat -c '%u:%g %a %n' ${`${MOUNT}/${site}`} ${`${MOUNT}/${site}/uploads`} ${`${MOUNT}/${site}/plugins`} ${`${MOUNT}/${site}/themes`}`,
      ),
      [
        `33:33 755 ${MOUNT}/${site}`,
        `33:33 755 ${MOUNT}/${site}/uploads`,
        `33:33 755 ${MOUNT}/${site}/plugins`,
        `33:33 755 ${MOUNT}/${site}/themes`,
      ].join('\n'),
    );
    const second = await runOnce();
    assert.deepEqual(
      second.filter((x) => x.status !== 'ok').map((x) => `${x.step}: ${x.status}`),
      [],
    );
  } finally {
    await shell('wrk1', sh`rm -rf ${`${MOUNT}/${site}`}`);
  }
});

test('st2 down: the volume stays writable through st1 and the arbiter; heals after st2 returns', async () => {
  const dir = `${MOUNT}/${TESTDIR}/fault`;
  await lab('stop', 'st2');
  let t0 = Date.now();
  // the first write may wait for network.ping-timeout (10 s) before the client gives up on st2
  const w = await shell(
    'wrk1',
    sh`mkdir -p ${dir} && for i in $(seq 1 20); do printf 'file %s\n' "$i" > ${dir}/f$i.txt || exit 1; done && sync`,
    180_000,
  );
  timings['write with st2 down'] = Date.now() - t0;
  assert.equal(w.code, 0, `write through wrk1 with st2 down: ${w.stderr}`);
  assert.equal(await out('wrk2', sh`cat ${`${dir}/f20.txt`}`), 'file 20', 'read on wrk2 with st2 down');
  const pending = parseHealInfo(await out('st1', sh`timeout 120 gluster --mode=script volume heal ${VOLUME} info`));
  assert.ok(
    (pending.bricks.find((b) => b.brick.startsWith(`${ST1}:`))?.entries ?? 0) > 0,
    `st1 records entries to heal: ${JSON.stringify(pending)}`,
  );

  t0 = Date.now();
  await lab('start', 'st2');
  await until(
    'st2 brick online',
    async () => parseVolumeStatus(await out('st1', sh`gluster --mode=script volume status ${VOLUME}`)),
    (bs) => bs.some((b) => b.brick === `${ST2}:${BRICK}` && b.online),
    240_000,
  );
  timings['st2 brick back online'] = Date.now() - t0;
  const healed = await until(
    'heal info 0 entries',
    async () => parseHealInfo(await out('st1', sh`timeout 120 gluster --mode=script volume heal ${VOLUME} info`)),
    (h) => h.total === 0 && h.bricks.length === 3,
    300_000,
  );
  timings['heal to 0 entries after st2 start'] = Date.now() - t0;
  assert.equal(healed.total, 0);
  assert.equal(await out('st2', sh`cat ${`${BRICK}/${TESTDIR}/fault/f20.txt`}`), 'file 20', 'st2 brick healed');
  assert.equal(await out('st2', sh`ls ${`${BRICK}/${TESTDIR}/fault`} | wc -l`), '20');
});
