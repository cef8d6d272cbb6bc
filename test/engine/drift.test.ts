// playbooks/drift.ts on real sshd hosts: roles in check mode, metrics through node-exporter's textfile
// collector (a .prom file per host, checked by promtool), nothing changed on the hosts, no deploy lock.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PROMTOOL, ensureMonitoringTools } from '../../roles/monitoring/tools.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

let lab: SshdLab;
before(async () => {
  await ensureMonitoringTools();
  lab = await startSshdHosts(2, { prefix: 'd' });
});
after(async () => {
  await lab?.stop();
});

const tsx = (args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', ...args], { encoding: 'utf8', env: { ...process.env, CI: 'true' } });
const on = (host: string, p: string) => join(lab.hosts.find((h) => h.name === host)!.root, p);
const drift = () =>
  tsx([
    'playbooks/drift.ts',
    '--roles',
    'test/fixtures/roles/demo.ts',
    '--textfile-dir',
    '/srv/textfile',
    '--inventory',
    lab.inventoryFile,
  ]);

test('drift: no drift after a run, a hand-edited managed file shows as wpfarm_drift_changes > 0 on that host only', () => {
  const conv = tsx(['playbooks/run-role.ts', 'test/fixtures/roles/demo.ts', '--inventory', lab.inventoryFile]);
  assert.equal(conv.status, 0, conv.stdout + conv.stderr);
  const clean = drift();
  assert.equal(clean.status, 0, clean.stdout + clean.stderr);
  for (const h of ['d01', 'd02']) {
    const prom = readFileSync(on(h, 'srv/textfile/wpfarm_drift.prom'), 'utf8');
    assert.match(prom, new RegExp(`^wpfarm_drift_changes\\{role="demo",host="${h}"\\} 0$`, 'm'));
    assert.match(prom, new RegExp(`^wpfarm_drift_check_success\\{host="${h}"\\} 1$`, 'm'));
    const ts = Number(/^wpfarm_last_run_timestamp\{host="[^"]+"\} (\d+)$/m.exec(prom)?.[1]);
    assert.ok(Math.abs(ts - Date.now() / 1000) < 120, `timestamp ${ts}`);
    assert.deepEqual(readdirSync(on(h, 'srv/textfile')), ['wpfarm_drift.prom'], 'no temporary file left');
  }
  // someone edits a managed file by hand on d02
  writeFileSync(on('d02', 'srv/demo/conf/app.conf'), 'name=d02\nport=9999\n');
  const r = drift();
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const p2 = readFileSync(on('d02', 'srv/textfile/wpfarm_drift.prom'), 'utf8');
  const n = Number(/^wpfarm_drift_changes\{role="demo",host="d02"\} (\d+)$/m.exec(p2)?.[1]);
  assert.ok(n > 0, p2);
  assert.match(readFileSync(on('d01', 'srv/textfile/wpfarm_drift.prom'), 'utf8'), /^wpfarm_drift_changes\{role="demo",host="d01"\} 0$/m);
  assert.equal(readFileSync(on('d02', 'srv/demo/conf/app.conf'), 'utf8'), 'name=d02\nport=9999\n', 'check mode changed nothing');
  assert.ok(!existsSync(on('d01', 'var/lib/wpfarm/deploy.lock')), 'no lock left');
  const audit = readFileSync(on('d01', 'var/lib/wpfarm/audit.log'), 'utf8').trim().split('\n');
  assert.equal(audit.length, 1, 'one audit line: the converging run; the drift checks took no lock and wrote none');
  const pt = spawnSync(PROMTOOL, ['check', 'metrics'], { input: p2, encoding: 'utf8' });
  assert.equal(pt.status, 0, pt.stdout + pt.stderr);
});

test('drift --install-timer writes the hourly timer and its service (idempotent); --period, --roles, --limit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wpfarm-drift-units-'));
  const first = tsx(['playbooks/drift.ts', '--install-timer', '--unit-dir', dir, '--inventory', lab.inventoryFile]);
  assert.equal(first.status, 0, first.stderr);
  assert.equal((JSON.parse(first.stdout) as { changed: boolean }).changed, true);
  assert.deepEqual(readdirSync(dir).sort(), ['wpfarm-drift.service', 'wpfarm-drift.timer']);
  assert.match(readFileSync(join(dir, 'wpfarm-drift.timer'), 'utf8'), /^OnCalendar=hourly$/m);
  assert.match(
    readFileSync(join(dir, 'wpfarm-drift.service'), 'utf8'),
    /^ExecStart=\S+node\S* --import tsx playbooks\/drift\.ts --inventory \//m,
  );
  const again = tsx(['playbooks/drift.ts', '--install-timer', '--unit-dir', dir, '--inventory', lab.inventoryFile]);
  assert.equal((JSON.parse(again.stdout) as { changed: boolean }).changed, false);
  // --period (the lab test's short schedule): monotonic start-to-start timer; --roles and --limit reach the check
  const short = tsx([
    'playbooks/drift.ts',
    '--install-timer',
    '--period',
    '20',
    '--roles',
    'common,test/fixtures/roles/demo.ts',
    '--limit',
    'd02',
    '--unit-dir',
    dir,
    '--inventory',
    lab.inventoryFile,
  ]);
  assert.equal((JSON.parse(short.stdout) as { changed: boolean }).changed, true, short.stderr);
  const timer = readFileSync(join(dir, 'wpfarm-drift.timer'), 'utf8');
  assert.match(timer, /^OnActiveSec=20s\nOnUnitActiveSec=20s\nAccuracySec=1s\nRandomizedDelaySec=2$/m);
  assert.doesNotMatch(timer, /OnCalendar/);
  assert.match(
    readFileSync(join(dir, 'wpfarm-drift.service'), 'utf8'),
    /^ExecStart=\S+ --import tsx playbooks\/drift\.ts --inventory \S+ --roles common,\/\S+\/test\/fixtures\/roles\/demo\.ts --limit d02$/m,
  );
  const bad = tsx(['playbooks/drift.ts', '--install-timer', '--period', '5', '--unit-dir', dir, '--inventory', lab.inventoryFile]);
  assert.equal(bad.status, 4, bad.stderr);
  assert.match(bad.stderr, /--period/);
});
