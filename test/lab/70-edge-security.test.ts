// Lab tier: the crowdsec and traefik roles on the lab's edge nodes (mgr1-3), through the CLI as an operator runs it.
//   crowdsec: converge → agents on every edge node registered to the local API on mgr1, the collections for
//   Traefik, nginx, WordPress and sshd enabled, the nftables firewall bouncers running; rerun → zero changes;
//   --check on the converged lab → zero changes. Proof: a WordPress login brute force replayed as Traefik JSON
//   access-log lines on an agent node (mgr2, not the LAPI host) puts the attacker (TEST-NET address) into the
//   nftables ban set within a minute, the normal visitor in the same lines is not banned, `cscli decisions
//   delete` unbans.
//   traefik: the image cannot be pulled on this machine → the stack deploy is reported skipped with that reason;
//   rerun and --check → zero changes.
//
// Runnable alone when the lab is up (phase 1 applied): node --import tsx --test test/lab/70-edge-security.test.ts
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadInventory, type Inventory } from '../../lib/inventory.ts';
import { connect } from '../../lib/transport.ts';
import type { Connection, StepResult } from '../../lib/types.ts';
import { proveBan } from '../../roles/crowdsec/bruteforce.ts';
import { BAN_SET_V4, COLLECTIONS } from '../../roles/crowdsec/config.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const INVENTORY = 'inventory/lab.yml';
const EDGE = ['mgr1', 'mgr2', 'mgr3'];
const LAPI = 'mgr1';
// lab-only credentials (the roles derive agent passwords and bouncer keys from the first)
const ENV = {
  CROWDSEC_REGISTRATION_SECRET: 'lab-crowdsec-registration-8d1e5b3a9c',
  CROWDSEC_TRAEFIK_BOUNCER_KEY: 'labTraefikBouncerKey0123456789abcdef',
  CLOUDFLARE_DNS_API_TOKEN: 'lab-cloudflare-dns-token-not-used-7f3e',
};
// the lab inventory has no ACME account: a lab value (never used, nothing is issued here)
const TRAEFIK_VARS = ['-e', 'acme_email=ops@example.com', '-e', 'traefik_dashboard_host=traefik.lab.example.com'];
// TEST-NET addresses: only text in a log file, never contacted
const ATTACKER = '203.0.113.77';
const VISITOR = '198.51.100.23';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-edge-'));
let inv: Inventory;
const conns = new Map<string, Connection>();

interface Report {
  results: StepResult[];
}

async function role(name: string, ...args: string[]): Promise<{ code: number; out: string; results: StepResult[] }> {
  const json = path.join(tmp, `${name}-${Date.now()}.json`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'playbooks/run-role.ts', name, '--inventory', INVENTORY, '--json', json, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...ENV },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), 25 * 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!fs.existsSync(json)) return reject(new Error(`${name}: no --json report (exit ${code})\n${out.slice(-3000)}`));
      resolve({ code: code ?? -1, out, results: (JSON.parse(fs.readFileSync(json, 'utf8')) as Report).results });
    });
  });
}

const changed = (rs: StepResult[]) => rs.filter((r) => r.status === 'changed').map((r) => `${r.host} ${r.step}: ${r.changes.join('; ')}`);
const failed = (rs: StepResult[]) => rs.filter((r) => r.status === 'failed' || r.status === 'unreachable').map((r) => `${r.host} ${r.step}: ${r.error ?? r.status}`);

async function on(name: string): Promise<Connection> {
  const have = conns.get(name);
  if (have) return have;
  const h = inv.hosts.get(name);
  assert.ok(h, `${name} in ${INVENTORY}`);
  const c = await connect(h, { knownHosts: path.resolve(ROOT, inv.settings.knownHosts ?? '.wpfarm/lab/known_hosts'), connectTimeoutMs: 15_000 });
  conns.set(name, c);
  return c;
}

before(() => {
  inv = loadInventory(path.join(ROOT, INVENTORY));
});

after(async () => {
  for (const c of conns.values()) await c.close().catch(() => undefined);
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('crowdsec on the lab', { concurrency: false }, () => {
  test('converges: agents, local API on mgr1, collections, firewall bouncers', async () => {
    const t0 = Date.now();
    const r = await role('crowdsec');
    console.log(`timing: crowdsec converge ${Date.now() - t0} ms, ${changed(r.results).length} changed steps`);
    assert.deepEqual(failed(r.results), [], r.out.slice(-4000));
    assert.equal(r.code, 0, r.out.slice(-4000));

    const lapi = await on(LAPI);
    const machines = JSON.parse((await lapi.exec('cscli machines list -o json')).stdout) as Array<{ machineId: string; isValidated: boolean }>;
    for (const n of EDGE.filter((x) => x !== LAPI)) {
      const m = machines.find((x) => x.machineId === n);
      assert.ok(m && m.isValidated, `agent ${n} registered and validated on ${LAPI}: ${JSON.stringify(machines.map((x) => x.machineId))}`);
    }
    const bouncers = (JSON.parse((await lapi.exec('cscli bouncers list -o json')).stdout) as Array<{ name: string }>).map((b) => b.name);
    for (const n of ['traefik', ...EDGE.map((x) => `firewall-${x}`)]) assert.ok(bouncers.includes(n), `bouncer ${n} registered: ${bouncers.join(', ')}`);

    for (const n of EDGE) {
      const c = await on(n);
      const cols = (JSON.parse((await c.exec('cscli collections list -o json')).stdout) as { collections: Array<{ name: string; status: string }> }).collections;
      for (const want of COLLECTIONS) assert.ok(cols.some((x) => x.name === want && /enabled/.test(x.status)), `${n}: collection ${want} enabled (${cols.map((x) => `${x.name}:${x.status}`).join(', ')})`);
      const active = (await c.exec('systemctl is-active crowdsec crowdsec-firewall-bouncer', { nothrow: true })).stdout.trim().split('\n');
      assert.deepEqual(active, ['active', 'active'], `${n}: crowdsec and its firewall bouncer run`);
      // the agent reads Traefik's access log and syslog (journald on Debian)
      const acq = (await c.exec('cat /etc/crowdsec/acquis.yaml')).stdout;
      assert.match(acq, /\/var\/log\/traefik\/access\.log/);
      assert.match(acq, /journalctl|syslog/);
      const set = await c.exec(`nft list set ${BAN_SET_V4.family} ${BAN_SET_V4.table} ${BAN_SET_V4.set}`, { nothrow: true });
      assert.equal(set.code, 0, `${n}: the bouncer's nftables set exists: ${set.stderr}`);
    }
  });

  test('rerun changes nothing', async () => {
    const r = await role('crowdsec');
    assert.deepEqual(failed(r.results), []);
    assert.deepEqual(changed(r.results), []);
  });

  test('--check on the converged lab predicts no change', async () => {
    const r = await role('crowdsec', '--check');
    assert.deepEqual(failed(r.results), []);
    assert.deepEqual(changed(r.results), []);
  });

  test('replayed WordPress login brute force: attacker banned in nftables within a minute, visitor not, decisions delete unbans', async () => {
    const agent = await on('mgr2');
    const lapi = await on(LAPI);
    // a leftover decision from an earlier run would make the proof meaningless
    await lapi.exec(`cscli decisions delete --ip ${ATTACKER}`, { nothrow: true });
    await agent.exec('install -d -m 0750 /var/log/traefik && touch /var/log/traefik/access.log');
    const res = await proveBan(
      (cmd, o) => agent.exec(cmd, { nothrow: o?.nothrow }),
      (cmd, o) => lapi.exec(cmd, { nothrow: o?.nothrow }),
      { attacker: ATTACKER, visitor: VISITOR, deadlineMs: 60_000 },
    );
    console.log(`timing: banned after ${res.bannedAfterMs} ms, unbanned after ${res.unbannedAfterMs} ms`);
    assert.ok(res.bannedAfterMs <= 60_000);
    assert.equal(res.visitorBanned, false, `the normal visitor ${VISITOR} must not be banned`);
    // the ban reached the other edge nodes' bouncers too? (they pull the same decisions): unbanned everywhere now
    for (const n of EDGE) {
      const s = await (await on(n)).exec(`nft list set ${BAN_SET_V4.family} ${BAN_SET_V4.table} ${BAN_SET_V4.set}`);
      assert.doesNotMatch(s.stdout, new RegExp(ATTACKER.replace(/\./g, '\\.')), `${n}: ${ATTACKER} unbanned`);
    }
  });
});

describe('traefik on the lab', { concurrency: false }, () => {
  test('converges; the stack deploy is skipped with the reason where the image cannot be pulled', async () => {
    const r = await role('traefik', ...TRAEFIK_VARS);
    assert.deepEqual(failed(r.results), [], r.out.slice(-4000));
    assert.equal(r.code, 0, r.out.slice(-4000));
    const img = r.results.find((x) => x.step.startsWith('traefik image'));
    assert.ok(img, 'the image step ran');
    const stack = r.results.find((x) => x.step === 'traefik stack');
    assert.ok(stack, 'the stack step ran');
    const mgr = await on('mgr1');
    const pulled = (await mgr.exec(`docker image ls -q traefik`, { nothrow: true })).stdout.trim() !== '';
    if (!pulled) {
      assert.equal(img.status, 'skipped');
      assert.match(img.reason ?? '', /cannot be pulled here/);
      assert.equal(stack.status, 'skipped');
      assert.match(stack.reason ?? '', /cannot be pulled here/);
      assert.match(r.out, /cannot be pulled here/, 'the recap says why');
    } else {
      assert.notEqual(stack.status, 'skipped');
    }
  });

  test('rerun and --check change nothing', async () => {
    for (const args of [[], ['--check']]) {
      const r = await role('traefik', ...TRAEFIK_VARS, ...args);
      assert.equal(r.code, 0, r.out.slice(-3000));
      assert.deepEqual(failed(r.results), [], args.join(' '));
      assert.deepEqual(changed(r.results), [], args.join(' '));
    }
  });
});
