// systemd: plans from `systemctl show` texts captured on a lab node (this machine has no systemd as
// PID 1); unitFile runs for real here into a temporary directory (no daemon-reload without systemd).
// The real thing, with systemd, runs in test/lab/10-ops-system.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { conditionCheck, systemd, unitFile, unitName, parseUnitState, unitProbeScript } from '../../lib/ops/systemd.ts';
import { InputError } from '../../lib/errors.ts';
import type { ApplyScript, Plan } from '../../lib/types.ts';
import { localContext, localExec, runLocal } from './ops-sys.harness.ts';

// captured on the lab node st2 (Debian 12, systemd 252), with the probe's own script
const SSH_RUNNING =
  'systemd=yes\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nNeedDaemonReload=no\nIsEnabled=enabled';
const JOURNALD_STATIC =
  'systemd=yes\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=static\nNeedDaemonReload=no\nIsEnabled=static';
const NOT_FOUND = 'systemd=yes\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nNeedDaemonReload=no\nIsEnabled=';
const MASKED =
  'systemd=yes\nLoadState=masked\nActiveState=inactive\nSubState=dead\nUnitFileState=masked\nNeedDaemonReload=no\nIsEnabled=masked';
const STOPPED_DISABLED =
  'systemd=yes\nLoadState=loaded\nActiveState=inactive\nSubState=dead\nUnitFileState=disabled\nNeedDaemonReload=yes\nIsEnabled=disabled';
const NO_SYSTEMD = 'systemd=no';

const run = (check = false) => localContext(check);
const script = (p: Plan): string => (p.apply as ApplyScript).script;

test('unit names and state parsing', () => {
  assert.equal(unitName('ssh'), 'ssh.service');
  assert.equal(unitName('docker.socket'), 'docker.socket');
  assert.equal(unitName('getty@tty1'), 'getty@tty1.service');
  assert.deepEqual(parseUnitState(STOPPED_DISABLED), {
    systemd: true,
    load: 'loaded',
    active: 'inactive',
    sub: 'dead',
    unitFileState: 'disabled',
    enabled: 'disabled',
    needDaemonReload: true,
    newDropIns: [],
  });
});

// systemd 252 (Debian 12) answers NeedDaemonReload=no for a drop-in written into a <unit>.d directory that did not
// exist at the last daemon-reload (the fresh lab's crowdsec-firewall-bouncer.service.d: its handler restarted the
// bouncer without our ExecStartPre, "could not find ipv4 table 'crowdsec'"). The probe lists the drop-ins on disk.
const BOUNCER_NEW_DROPIN =
  'systemd=yes\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nNeedDaemonReload=no\nIsEnabled=enabled\n' +
  'NewDropIns=/etc/systemd/system/crowdsec-firewall-bouncer.service.d/wpfarm.conf';

test('a drop-in the loaded unit does not have: daemon-reload first although systemd says NeedDaemonReload=no', async () => {
  const r = await systemd({ name: 'crowdsec-firewall-bouncer', state: 'restarted', daemonReload: true }).plan(run(), BOUNCER_NEW_DROPIN);
  assert.equal(
    script(r),
    `set -e\nsystemctl daemon-reload\nsystemctl restart -- crowdsec-firewall-bouncer.service\n${conditionCheck('crowdsec-firewall-bouncer.service')}`,
    'the restart runs the unit with its new drop-in',
  );
  assert.deepEqual(r.changes, [
    'daemon-reload (drop-in not loaded: /etc/systemd/system/crowdsec-firewall-bouncer.service.d/wpfarm.conf)',
    'restart',
  ]);
  const s = await systemd({ name: 'crowdsec-firewall-bouncer', enabled: true, state: 'started', daemonReload: true }).plan(
    run(),
    BOUNCER_NEW_DROPIN,
  );
  assert.equal(s.changed, true, 'a started unit whose drop-in is not loaded is not "already in that state"');
  assert.equal(script(s), 'set -e\nsystemctl daemon-reload');
  // without daemonReload the op does not reload (as before)
  assert.equal(
    (await systemd({ name: 'crowdsec-firewall-bouncer', enabled: true, state: 'started' }).plan(run(), BOUNCER_NEW_DROPIN)).changed,
    false,
  );
});

test('the probe finds the drop-ins on disk that systemctl does not list (real bash, a stand-in systemctl)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-dropins-'));
  try {
    const [etc, lib] = [path.join(dir, 'etc'), path.join(dir, 'lib')];
    const d = path.join(etc, 'x.service.d');
    fs.mkdirSync(d, { recursive: true });
    fs.mkdirSync(path.join(lib, 'x.service.d'), { recursive: true });
    fs.writeFileSync(path.join(d, 'known.conf'), '[Service]\n');
    fs.writeFileSync(path.join(d, 'new.conf'), '[Service]\n');
    fs.writeFileSync(path.join(d, 'empty.conf'), ''); // masks: systemd leaves it out
    fs.symlinkSync('/dev/null', path.join(lib, 'x.service.d', 'null.conf')); // masks too
    fs.writeFileSync(path.join(d, 'notes.txt'), 'not a drop-in');
    // systemctl as systemd 252 answers after new.conf was written into a known directory list: only known.conf loaded
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, 'systemctl'),
      `#!/bin/bash\ncase "$*" in *show*DropInPaths*) printf '%s\\n' Names=x.service NeedDaemonReload=no DropInPaths=${path.join(d, 'known.conf')} ;; esac\n`,
      { mode: 0o755 },
    );
    const out = await localExec(`PATH=${bin}:$PATH\n${unitProbeScript('x.service', [etc, lib])}`, { nothrow: true });
    assert.deepEqual(parseUnitState(out.stdout).newDropIns, [path.join(d, 'new.conf')], out.stdout);
    // once loaded (daemon-reload), nothing is new
    fs.writeFileSync(
      path.join(bin, 'systemctl'),
      `#!/bin/bash\ncase "$*" in *show*DropInPaths*) echo Names=x.service; echo DropInPaths=${path.join(d, 'known.conf')} ${path.join(d, 'new.conf')} ;; esac\n`,
    );
    assert.deepEqual(
      parseUnitState((await localExec(`PATH=${bin}:$PATH\n${unitProbeScript('x.service', [etc, lib])}`)).stdout).newDropIns,
      [],
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('desired state reached: no change', async () => {
  const p = await systemd({ name: 'ssh', enabled: true, state: 'started' }).plan(run(), SSH_RUNNING);
  assert.equal(p.changed, false);
  // static units cannot be enabled further: enabled: true holds
  assert.equal((await systemd({ name: 'systemd-journald', enabled: true, state: 'started' }).plan(run(), JOURNALD_STATIC)).changed, false);
  assert.equal((await systemd({ name: 'getty@tty1', masked: true }).plan(run(), MASKED)).changed, false);
});

test('enable + start a stopped unit, with daemon-reload first when asked and needed', async () => {
  const p = await systemd({ name: 'docker', enabled: true, state: 'started', daemonReload: true }).plan(run(), STOPPED_DISABLED);
  assert.deepEqual(p.changes, ['daemon-reload (unit files changed on disk)', 'enable (was disabled)', 'start (was inactive)']);
  assert.equal(
    script(p),
    `set -e\nsystemctl daemon-reload\nsystemctl enable -- docker.service\nsystemctl start -- docker.service\n${conditionCheck('docker.service')}`,
  );
  assert.deepEqual(p.invalidates, ['services']);
});

test('stop + disable, restarted and reloaded always change', async () => {
  const p = await systemd({ name: 'ssh', enabled: false, state: 'stopped' }).plan(run(), SSH_RUNNING);
  assert.equal(script(p), 'set -e\nsystemctl disable -- ssh.service\nsystemctl stop -- ssh.service');
  const r = await systemd({ name: 'ssh', state: 'restarted' }).plan(run(), SSH_RUNNING);
  assert.deepEqual(r.changes, ['restart']);
  const rl = await systemd({ name: 'ssh', state: 'reloaded' }).plan(run(), SSH_RUNNING);
  assert.match(script(rl), /systemctl reload-or-restart -- ssh.service/);
  const rs = await systemd({ name: 'docker', state: 'reloaded' }).plan(run(), STOPPED_DISABLED);
  assert.deepEqual(rs.changes, ['start (was inactive)'], 'reloading a stopped unit starts it');
});

test('mask stops first, unmask before enable', async () => {
  const m = await systemd({ name: 'ssh', masked: true }).plan(run(), SSH_RUNNING);
  assert.equal(script(m), 'set -e\nsystemctl stop -- ssh.service\nsystemctl mask -- ssh.service');
  const u = await systemd({ name: 'getty@tty1', masked: false, enabled: true, state: 'started' }).plan(run(), MASKED);
  assert.equal(
    script(u),
    `set -e\nsystemctl unmask -- getty@tty1.service\nsystemctl enable -- getty@tty1.service\nsystemctl start -- getty@tty1.service\n${conditionCheck('getty@tty1.service')}`,
  );
});

test('a masked unit cannot be started: the step fails with the reason instead of reporting ok', async () => {
  await assert.rejects(
    async () => systemd({ name: 'getty@tty1', state: 'started' }).plan(run(), MASKED),
    /getty@tty1.service is masked on local: it cannot be started \(set masked: false\)/,
  );
  const c = await systemd({ name: 'getty@tty1', state: 'started' }).plan(run(true), MASKED);
  assert.match(c.changes[0]!, /is masked: started would fail unless an earlier step unmasks it/);
});

test('missing unit: check mode predicts (an earlier step may install it), a real run fails', async () => {
  const c = await systemd({ name: 'nginx', state: 'started' }).plan(run(true), NOT_FOUND);
  assert.equal(c.changed, true);
  assert.match(c.changes[0]!, /not found/);
  await assert.rejects(
    async () => systemd({ name: 'nginx', state: 'started' }).plan(run(false), NOT_FOUND),
    /nginx.service: unit not found/,
  );
  await assert.rejects(
    async () => systemd({ name: 'nginx', state: 'started' }).plan(run(false), NO_SYSTEMD),
    /systemd is not the init system/,
  );
});

test('the probe runs here and reports no systemd', async () => {
  const r = await runLocal(systemd({ name: 'ssh', state: 'started' }), { check: true }).catch((e: Error) => e);
  if (fs.existsSync('/run/systemd/system')) assert.ok(!(r instanceof Error));
  else assert.match(String(r), /systemd is not the init system/);
});

test('unitFile: create, second run ok, change shows a diff; no daemon-reload without systemd', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-unit-'));
  try {
    const v1 = '[Unit]\nDescription=test\n\n[Service]\nExecStart=/bin/sleep infinity\n';
    const op = unitFile({ name: 'wpfarm-test', content: v1, dir });
    const c = await runLocal(op, { check: true });
    assert.equal(c.status, 'changed');
    assert.equal(fs.existsSync(path.join(dir, 'wpfarm-test.service')), false);
    const first = await runLocal(op);
    const hasSystemd = fs.existsSync('/run/systemd/system');
    assert.deepEqual(first.plan.changes, [`create ${dir}/wpfarm-test.service`, ...(hasSystemd ? ['daemon-reload'] : [])]);
    assert.equal(fs.readFileSync(path.join(dir, 'wpfarm-test.service'), 'utf8'), v1);
    assert.equal((fs.statSync(path.join(dir, 'wpfarm-test.service')).mode & 0o777).toString(8), '644');
    assert.equal(first.after?.changed, false);
    assert.equal((await runLocal(op)).status, 'ok');
    const v2 = v1.replace('infinity', '3600');
    const second = await runLocal(unitFile({ name: 'wpfarm-test', content: v2, dir }));
    assert.equal(second.status, 'changed');
    assert.ok(second.plan.diff?.includes('-ExecStart=/bin/sleep infinity\n+ExecStart=/bin/sleep 3600'), second.plan.diff);
    assert.equal(fs.readFileSync(path.join(dir, 'wpfarm-test.service'), 'utf8'), v2);
    assert.deepEqual(fs.readdirSync(dir), ['wpfarm-test.service'], 'no temp file left behind');
    if (!hasSystemd) assert.doesNotMatch(script(second.plan), /daemon-reload/);
    else assert.match(script(second.plan), /systemctl daemon-reload$/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('unitFile apply script is valid bash and quotes the path', async () => {
  const p = await unitFile({ name: 'x', content: 'a\n', dir: "/tmp/it's here" }).plan(run(true), 'systemd=yes\nexists=no');
  assert.match(script(p), /\$'\/tmp\/it\\'s here\/x\.service'/);
  assert.match(script(p), /systemctl daemon-reload$/);
  assert.equal((await localExec('bash -n', { stdin: script(p), nothrow: true })).code, 0);
});

test('bad unit names are rejected', () => {
  assert.throws(() => systemd({ name: 'ssh; reboot' }), InputError);
  assert.throws(() => unitFile({ name: '../etc/passwd', content: '' }), InputError);
});
