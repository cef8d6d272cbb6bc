// Phase 1 on the lab: common + swarm-manager + swarm-worker converge from bare hosts, a rerun and check mode
// change nothing, the firewall drops a closed port, a killed worker recovers its swarm state on restart.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ADDR, INVENTORY as INV, containerName } from '../harness/lab-sites.ts';

const TMP = '.wpfarm/test';

interface Report {
  exitCode: number;
  wallMs: number;
  roundTrips: number;
  results: { host: string; step: string; status: string; changes: string[]; error?: string }[];
}

function cli(script: string, args: string[], timeoutMs = 1_500_000): Promise<{ code: number; out: string; json: Report }> {
  const json = join(TMP, `cluster-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, '--inventory', INV, '--json', json, ...args], {
      env: { ...process.env, CI: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGINT'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!existsSync(json)) return reject(new Error(`no report (exit ${code}):\n${out.slice(-4000)}`));
      resolve({ code: code ?? -1, out, json: JSON.parse(readFileSync(json, 'utf8')) as Report });
    });
  });
}

const changedSteps = (r: Report) =>
  r.results.filter((x) => x.status === 'changed').map((x) => `${x.host}: ${x.step}: ${x.changes.join('; ')}`);
const nodeExec = (node: string, cmd: string) =>
  execFileSync('docker', ['exec', containerName(node), 'bash', '-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const lab = (...args: string[]) => execFileSync(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', ...args], { encoding: 'utf8' });

describe('phase 1 on the lab: foundation', () => {
  test('bootstrap phase 1 converges from bare hosts', async () => {
    execFileSync('mkdir', ['-p', TMP]);
    const r = await cli('playbooks/bootstrap.ts', ['--phase', '1']);
    assert.equal(r.code, 0, r.out.slice(-5000));
    console.log(`# phase 1 converge: ${(r.json.wallMs / 1000).toFixed(1)} s, ${changedSteps(r.json).length} changes`);
    const nodes = nodeExec('mgr1', "docker node ls --format '{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}'");
    const lines = nodes
      .trim()
      .split('\n')
      .map((l) => l.split(' '));
    const managers = lines.filter((l) => l[3] === 'Leader' || l[3] === 'Reachable');
    assert.equal(managers.length, 3, nodes);
    // the lab's managers are its edge nodes: active, so that the edge router can run there (others are drained)
    for (const m of managers) assert.deepEqual([m[1], m[2]], ['Ready', 'Active'], nodes);
    const workers = lines.filter((l) => !l[3]);
    assert.ok(workers.length >= 2, nodes);
    for (const w of workers) assert.deepEqual([w[1], w[2]], ['Ready', 'Active'], nodes);
    const nets = nodeExec('mgr1', "docker network ls --filter driver=overlay --format '{{.Name}}'");
    for (const n of ['traefik-public', 'shared-services', 'database', 'monitoring', 'management'])
      assert.match(nets, new RegExp(`^${n}$`, 'm'));
    const internal = nodeExec('mgr1', "docker network inspect database --format '{{.Internal}}'").trim();
    assert.equal(internal, 'true');
    const labels = nodeExec('mgr1', "docker node inspect mgr1 --format '{{json .Spec.Labels}}'");
    assert.match(labels, /"edge":"true"/);
  });

  test('a second run changes nothing, and check mode predicts no change', async () => {
    const again = await cli('playbooks/bootstrap.ts', ['--phase', '1']);
    assert.equal(again.code, 0, again.out.slice(-3000));
    assert.deepEqual(changedSteps(again.json), []);
    console.log(`# phase 1 rerun: ${(again.json.wallMs / 1000).toFixed(2)} s, ${again.json.roundTrips} round trips`);
    const check = await cli('playbooks/bootstrap.ts', ['--phase', '1', '--check']);
    assert.equal(check.code, 0);
    assert.deepEqual(changedSteps(check.json), []);
  });

  test('the firewall on a worker drops a port that should be closed, and keeps ssh from management', () => {
    // dockerd's metrics listen on 0.0.0.0:9323 on wrk1; the rules open 9323 to the monitoring hosts only
    const tcp = (from: string, addr: string, port: number) =>
      nodeExec(from, `timeout 3 bash -c "exec 3<>/dev/tcp/${addr}/${port}" 2>/dev/null && echo open || echo closed`).trim();
    assert.equal(tcp('wrk1', '127.0.0.1', 9323), 'open', 'the listener itself works (loopback is allowed)');
    assert.equal(tcp('mgr1', ADDR.wrk1!, 9323), 'closed', 'a non-monitoring host is dropped');
    assert.equal(tcp('mon1', ADDR.wrk1!, 9323), 'open', 'the monitoring host gets through');
    const rules = nodeExec('wrk1', 'nft list table inet wpfarm');
    assert.match(rules, /policy drop/);
    assert.match(rules, /tcp dport 22 ip saddr @mgmt accept/);
    assert.doesNotMatch(rules, /dport \{ 80, 443 \}/, 'a worker is not an edge node');
  });

  test('a worker killed and restarted recovers its swarm state', async () => {
    lab('kill', 'wrk2');
    lab('start', 'wrk2');
    const deadline = Date.now() + 120_000;
    let state = '';
    for (;;) {
      try {
        state = nodeExec('mgr1', "docker node inspect wrk2 --format '{{.Status.State}} {{.Spec.Availability}}'").trim();
      } catch {
        state = '';
      }
      if (state === 'ready active' || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 2000));
    }
    assert.equal(state, 'ready active');
    const r = await cli('playbooks/run-role.ts', ['swarm-worker', '--limit', 'wrk2']);
    assert.equal(r.code, 0, r.out.slice(-3000));
    assert.deepEqual(changedSteps(r.json), []);
  });
});
