// keepalived role, checked against real software and the provider's contract:
//  - keepalived.conf rendered for each edge node (nopreempt and preempt, VIP only and reserved IP) passes
//    `keepalived -t` (Debian's keepalived on the controller)
//  - the notify script moves the DigitalOcean reserved IP: on MASTER it POSTs the assign action, checked by
//    Prism on the official spec (../shared/specs/digitalocean-public.v2.bundled.yaml: body, path, bearer
//    token); on BACKUP it calls nothing; a refused call (no token → 401) makes it fail
//  - every state is also written for node-exporter's textfile collector (wpfarm_keepalived_state{state} 1/0),
//    checked with promtool's exposition-format linter
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { renderTemplate } from '../../lib/ops/template.ts';
import type { HostSpec } from '../../lib/types.ts';
import { keepalivedConfVars, keepalivedSettings, tpl } from '../../roles/keepalived/config.ts';
import { startPrism, specPath, type PrismServer } from '../harness/prism.ts';

const EDGE = ['mgr1', 'mgr2', 'mgr3'].map((name, i) => ({ name, address: `10.110.0.${11 + i}` }) as HostSpec);
const RESERVED = '45.55.96.47';
// a real interface of this machine (keepalived refuses lo for VRRP)
const IFACE = execFileSync('sh', ['-c', "ip -o link | awk -F': ' '$2 !~ /^lo$/ {print $2; exit}'"], { encoding: 'utf8' })
  .trim()
  .split('@')[0]!;
let prism: PrismServer;
let dir = '';
const CHECK = () => path.join(dir, 'check.sh');

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-ka-contract-'));
  writeFileSync(CHECK(), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  prism = await startPrism({ spec: specPath('digitalocean-public.v2.bundled.yaml'), mode: 'mock' });
});
after(async () => {
  await prism?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const hasKeepalived = spawnSync('sh', ['-c', 'command -v keepalived']).status === 0;

test('keepalived.conf for every edge node passes keepalived -t', {
  skip: !hasKeepalived && 'keepalived is not installed (apt-get install keepalived)',
}, () => {
  for (const extra of [{ keepalived_vip: '10.110.0.250/20' }, { keepalived_reserved_ip: RESERVED, keepalived_preempt: true }]) {
    const s = keepalivedSettings({ private_interface: IFACE, ...extra });
    for (const h of EDGE) {
      // the health check script must exist for keepalived -t (enable_script_security checks its owner/mode)
      const conf = renderTemplate(tpl('keepalived.conf.ejs'), { ...keepalivedConfVars(s, h, EDGE), check: CHECK() });
      const f = path.join(dir, `${h.name}.conf`);
      writeFileSync(f, conf);
      if (h === EDGE[0]) {
        // one node per mode through keepalived -t (the others differ only in addresses and priority)
        const r = spawnSync('keepalived', ['-t', '-f', f, '-l'], { encoding: 'utf8' });
        assert.equal(r.status, 0, `${h.name}: keepalived -t: ${r.stdout}${r.stderr}\n${conf}`);
        assert.doesNotMatch(r.stdout + r.stderr, /Unknown keyword|Disabling track script|Unknown interface/, r.stdout + r.stderr);
      }
      assert.match(conf, new RegExp(`unicast_src_ip ${h.address.replace(/\./g, '\\.')}`));
      assert.equal((conf.match(/^\s+10\.110\.0\.1[123]$/gm) ?? []).length, 2, 'the two peers');
      assert.equal(/^\s*nopreempt$/m.test(conf), !('keepalived_preempt' in extra));
    }
  }
});

test('bad variables are refused with the variable named', () => {
  assert.throws(() => keepalivedSettings({}), /keepalived_vip .* or keepalived_reserved_ip/);
  assert.throws(() => keepalivedSettings({ keepalived_vip: '10.0.0.300' }), /keepalived_vip/);
  assert.throws(
    () => keepalivedSettings({ keepalived_vip: '10.0.0.3', keepalived_check_url: 'http://x/$(reboot)' }),
    /keepalived_check_url/,
  );
  assert.throws(() => keepalivedConfVars(keepalivedSettings({ keepalived_vip: '10.0.0.3' }), EDGE[0]!, [EDGE[0]!]), /at least two hosts/);
});

function notify(state: string, env: Record<string, string>): { code: number; out: string; stateFile: string; metrics: string } {
  const s = keepalivedSettings({ keepalived_reserved_ip: RESERVED, private_interface: 'eth1' });
  const stateFile = path.join(dir, `state-${state}`);
  const metricsFile = path.join(dir, `textfile-${state}`, 'wpfarm_keepalived.prom');
  const script = renderTemplate(tpl('notify.sh.ejs'), { ...keepalivedConfVars(s, EDGE[1]!, EDGE), stateFile, metricsFile });
  const f = path.join(dir, 'notify.sh');
  writeFileSync(f, script, { mode: 0o755 });
  const r = spawnSync('bash', [f, 'INSTANCE', 'WPFARM_EDGE', state, '140'], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '', ...env },
  });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}`, stateFile, metrics: metricsFile };
}

/** The state the metrics file marks 1 (the others must be 0), after promtool's linter accepted the file. */
function metricState(file: string): string {
  const text = readFileSync(file, 'utf8');
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(lint.status, 0, lint.stdout + lint.stderr);
  const rows = [...text.matchAll(/^wpfarm_keepalived_state\{vrrp_instance="WPFARM_EDGE",state="([a-z]+)"\} ([01])$/gm)];
  assert.deepEqual(rows.map((m) => m[1]).sort(), ['backup', 'fault', 'master', 'stop']);
  assert.match(text, /^wpfarm_keepalived_state_change_timestamp_seconds\{vrrp_instance="WPFARM_EDGE"\} [0-9]{10}$/m);
  const on = rows.filter((m) => m[2] === '1').map((m) => m[1]!);
  assert.equal(on.length, 1, text);
  return on[0]!;
}

test('notify MASTER: the reserved IP assign call is valid against the DigitalOcean spec', async () => {
  const token = path.join(dir, 'token');
  writeFileSync(token, 'dop_v1_contracttest_keepalived_5f0c9a', { mode: 0o600 });
  const from = prism.output().length;
  const r = notify('MASTER', { DO_API_URL: prism.url, DO_TOKEN_FILE: token, DROPLET_ID: '3164444' });
  assert.equal(r.code, 0, r.out + prism.output().slice(-2000));
  assert.match(r.out, new RegExp(`assigned ${RESERVED} to 3164444`));
  assert.match(readFileSync(r.stateFile, 'utf8'), /^MASTER [0-9]+\n$/);
  assert.equal(metricState(r.metrics), 'master');
  await new Promise((r) => setTimeout(r, 1000)); // Prism's log arrives after the answer
  const log = prism.output().slice(from);
  assert.match(log, new RegExp(`post /v2/reserved_ips/${RESERVED.replace(/\./g, '\\.')}/actions`, 'i'), log);
  assert.doesNotMatch(log, /violation|invalid/i, 'no contract violation');
  // note: this mock does not refuse a string droplet_id on this path (the body is a oneOf of the two
  // actions); what it does enforce on it, the bearer token, is checked in the next test (401)
});

test('notify BACKUP calls nothing; MASTER without a token fails (401), so keepalived logs it', () => {
  const before = prism.output().length;
  const b = notify('BACKUP', { DO_API_URL: prism.url, DO_TOKEN_FILE: '/nonexistent', DROPLET_ID: '3164444' });
  assert.equal(b.code, 0, b.out);
  assert.match(readFileSync(b.stateFile, 'utf8'), /^BACKUP /);
  assert.equal(metricState(b.metrics), 'backup');
  assert.equal(metricState(notify('FAULT', {}).metrics), 'fault');
  assert.doesNotMatch(prism.output().slice(before), /reserved_ips/, 'no API call on BACKUP');
  const empty = path.join(dir, 'empty-token');
  writeFileSync(empty, '');
  const m = notify('MASTER', { DO_API_URL: prism.url, DO_TOKEN_FILE: empty, DROPLET_ID: '3164444' });
  assert.notEqual(m.code, 0, m.out);
  assert.match(m.out, /HTTP 401/);
  const noId = notify('MASTER', { DO_API_URL: prism.url, DO_TOKEN_FILE: empty, DROPLET_ID: 'x1' });
  assert.notEqual(noId.code, 0);
  assert.match(noId.out, /no droplet id/);
});

test('notify --metrics: the metrics from the recorded state and its time (a node set up before they existed)', () => {
  const s = keepalivedSettings({ keepalived_vip: '10.110.0.250/24', private_interface: 'eth1' });
  const stateFile = path.join(dir, 'state-recorded');
  const metricsFile = path.join(dir, 'textfile-recorded', 'wpfarm_keepalived.prom');
  writeFileSync(stateFile, 'MASTER 1796500000\n');
  const f = path.join(dir, 'notify-metrics.sh');
  writeFileSync(f, renderTemplate(tpl('notify.sh.ejs'), { ...keepalivedConfVars(s, EDGE[0]!, EDGE), stateFile, metricsFile }), {
    mode: 0o755,
  });
  const r = spawnSync('bash', ['--norc', f, '--metrics'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.equal(metricState(metricsFile), 'master');
  assert.match(
    readFileSync(metricsFile, 'utf8'),
    /^wpfarm_keepalived_state_change_timestamp_seconds\{vrrp_instance="WPFARM_EDGE"\} 1796500000$/m,
  );
  assert.equal(readFileSync(stateFile, 'utf8'), 'MASTER 1796500000\n', 'the recorded state is left as it was');
  // no state recorded yet: every state 0
  rmSync(stateFile);
  const r2 = spawnSync('bash', ['--norc', f, '--metrics'], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
  assert.equal(r2.status, 0, r2.stderr);
  assert.doesNotMatch(readFileSync(metricsFile, 'utf8'), /^wpfarm_keepalived_state\{.*\} 1$/m);
});
