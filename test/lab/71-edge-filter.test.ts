// Lab tier: the edge filter on the path packets really take (issue 12, items 1 and 8).
//
// Docker publishes a swarm service's `mode: host` ports by DNAT: their packets take the FORWARD path, never INPUT.
// This test publishes a stand-in listener of its own (the farm's nginx image from the lab registry, Traefik's image
// cannot be pulled here) as a global swarm service in mode host on 80, 443 and 8082 of every edge node, then, from
// two network namespaces of its own on the lab bridge (an "attacker" labAddress(201) and a "visitor" labAddress(202), not
// farm hosts and not the monitoring host):
//   - before a ban both reach 80 and 443 on every edge node
//   - 8082 (Traefik's metrics, published), 9323 (dockerd's metrics, input), 6060 (crowdsec's metrics), the local
//     API 8080 and the swarm ports 2377/7946 are dropped from the attacker; 8082 and 9323 are reachable from mon1,
//     2377 from another manager; the forward_dropped counter of inet wpfarm counts the 8082 drops
//   - `cscli decisions add --ip <attacker>` on the LAPI host: within 15 s the attacker's connects to 80 and 443 fail
//     on EVERY edge node (the bouncers fill the set, our forward chain drops it: ban_forward_dropped counts), the
//     visitor stays served; after `cscli decisions delete` the attacker is served again
//   - after `systemctl restart docker` on an edge node our chains are still there and still drop
//   - the local API speaks TLS only: agents and bouncers verify its CA; plain HTTP and an unverified client are refused;
//     keys are 0600
// Then common (phase 1's firewall) and crowdsec rerun with zero changes.
//
// Edge managers are active (Traefik runs there); the test still records each availability, makes them active
// and drained again afterwards (as they were). Runnable alone when the lab is up and phase 1 applied:
//   flock /run/wpfarm-lab.lock node --import tsx --test test/lab/71-edge-filter.test.ts (on the test lab)
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ADDR, BRIDGE, INVENTORY, SVC, containerName, labAddress, removeEdgeStandin } from '../harness/lab-sites.ts';
import type { StepResult } from '../../lib/types.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const EDGE = { mgr1: ADDR.mgr1!, mgr2: ADDR.mgr2!, mgr3: ADDR.mgr3! } as const;
const EDGE_NAMES = Object.keys(EDGE) as Array<keyof typeof EDGE>;
const LAPI = 'mgr1';
const NS = {
  atk: { ns: 'wpf-edge-atk', ip: labAddress(201), veth: 'wpfe-atk' },
  vis: { ns: 'wpf-edge-vis', ip: labAddress(202), veth: 'wpfe-vis' },
};
const SERVICE = 'wpfarm-test-edge-standin';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-edge71-'));

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const node = (name: string, cmd: string) => sh('docker', ['exec', containerName(name), 'bash', '-c', cmd]);
const nodeTry = (name: string, cmd: string) => {
  try {
    return node(name, cmd);
  } catch {
    return '';
  }
};

/** TCP connect within 2 s: true when it connects */
function connectFrom(where: { ns: string } | { node: string }, ip: string, port: number): Promise<boolean> {
  const probe = `timeout 2 bash -c 'exec 3<>/dev/tcp/${ip}/${port}' 2>/dev/null`;
  const argv =
    'ns' in where
      ? ['ip', 'netns', 'exec', where.ns, 'bash', '-c', probe]
      : ['docker', 'exec', containerName(where.node), 'bash', '-c', probe];
  return new Promise((resolve) => {
    const c = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
    c.on('close', (code) => resolve(code === 0));
  });
}
const atk = { ns: NS.atk.ns };
const vis = { ns: NS.vis.ns };

/** a named counter's packets (nft -j) */
function counter(name: string, family: string, table: string, obj: string): number {
  const j = JSON.parse(node(name, `nft -j list counter ${family} ${table} ${obj}`)) as {
    nftables: Array<{ counter?: { packets: number } }>;
  };
  return j.nftables.find((x) => x.counter)?.counter?.packets ?? -1;
}

interface Report {
  results: StepResult[];
}
async function role(name: string, ...args: string[]): Promise<{ code: number; out: string; results: StepResult[] }> {
  const json = path.join(tmp, `${name}-${Date.now()}.json`);
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'playbooks/run-role.ts', name, '--inventory', INVENTORY, '--json', json, ...args],
      {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      if (!fs.existsSync(json)) return reject(new Error(`${name}: no --json report (exit ${code})\n${out.slice(-3000)}`));
      resolve({ code: code ?? -1, out, results: (JSON.parse(fs.readFileSync(json, 'utf8')) as Report).results });
    });
  });
}
const changed = (rs: StepResult[]) => rs.filter((r) => r.status === 'changed').map((r) => `${r.host} ${r.step}: ${r.changes.join('; ')}`);
const failed = (rs: StepResult[]) =>
  rs.filter((r) => r.status === 'failed' || r.status === 'unreachable').map((r) => `${r.host} ${r.step}: ${r.error ?? r.status}`);

function netnsUp(): void {
  for (const n of Object.values(NS)) {
    try {
      sh('ip', ['netns', 'del', n.ns]);
    } catch {}
    try {
      sh('ip', ['link', 'del', n.veth]);
    } catch {}
    sh('ip', ['netns', 'add', n.ns]);
    sh('ip', ['link', 'add', n.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', n.ns]);
    sh('ip', ['link', 'set', n.veth, 'master', BRIDGE, 'up']);
    sh('ip', ['-n', n.ns, 'addr', 'add', `${n.ip}/24`, 'dev', 'eth0']);
    sh('ip', ['-n', n.ns, 'link', 'set', 'eth0', 'up']);
    sh('ip', ['-n', n.ns, 'link', 'set', 'lo', 'up']);
  }
}

function netnsDown(): void {
  for (const n of Object.values(NS)) {
    try {
      sh('ip', ['netns', 'del', n.ns]);
    } catch {}
    try {
      sh('ip', ['link', 'del', n.veth]);
    } catch {}
  }
}

let availabilityBefore: Record<string, string> = {};

async function standinUp(): Promise<void> {
  const tags = (await (await fetch(`http://${SVC.hostRegistry}/v2/wpfarm/nginx/tags/list`)).json()) as { tags: string[] };
  const image = `${SVC.address}:${SVC.registryPort}/wpfarm/nginx:${tags.tags[0]}`;
  for (const n of EDGE_NAMES) availabilityBefore[n] = node(LAPI, `docker node inspect ${n} --format '{{.Spec.Availability}}'`).trim();
  for (const n of EDGE_NAMES) node(LAPI, `docker node update --availability active ${n} >/dev/null`);
  nodeTry(LAPI, `docker service rm ${SERVICE} >/dev/null 2>&1`);
  // the lab's edge stand-in (stack 'edge', HAProxy: add-site deploys it) holds 80/443/8082 of the edge nodes in host
  // mode: this file's listener takes its place (the next add-site deploys it again)
  await removeEdgeStandin(EDGE_NAMES);
  const conf =
    'pid /tmp/nginx.pid; error_log stderr; events {} http { access_log off; server { listen 8080; listen 8443; listen 8083; return 200 edge-standin; } }';
  const start = `printf '%s\\n' '${conf}' > /tmp/n.conf && exec nginx -c /tmp/n.conf -g 'daemon off;'`;
  sh('docker', [
    'exec',
    containerName(LAPI),
    'docker',
    'service',
    'create',
    '--detach',
    '--name',
    SERVICE,
    '--mode',
    'global',
    '--constraint',
    'node.labels.edge==true',
    '--no-healthcheck',
    '--entrypoint',
    'sh',
    // one target port per published port (swarm keeps one publication per target port)
    '--publish',
    'mode=host,published=80,target=8080',
    '--publish',
    'mode=host,published=443,target=8443',
    '--publish',
    'mode=host,published=8082,target=8083',
    '--label',
    'wpfarm.test=71-edge-filter',
    image,
    '-c',
    start,
  ]);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const up = await Promise.all(EDGE_NAMES.flatMap((n) => [80, 443, 8082].map((p) => connectFrom({ node: 'mon1' }, EDGE[n], p))));
    if (up.every(Boolean)) break;
    assert.ok(
      Date.now() < deadline,
      `the stand-in listens on 8082 of every edge node (mon1 sees ${up}): ${nodeTry(LAPI, `docker service ps ${SERVICE} --no-trunc`)}`,
    );
    await sleep(2000);
  }
}

function standinDown(): void {
  nodeTry(LAPI, `docker service rm ${SERVICE} >/dev/null 2>&1`);
  for (const n of EDGE_NAMES) nodeTry(LAPI, `docker node update --availability ${availabilityBefore[n] || 'drain'} ${n} >/dev/null`);
}

before(async () => {
  netnsUp();
});

after(() => {
  nodeTry(LAPI, `cscli decisions delete --ip ${NS.atk.ip} >/dev/null 2>&1`);
  standinDown();
  netnsDown();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('edge filter on the lab', { concurrency: false }, () => {
  test('common (firewall) and crowdsec converge', async () => {
    for (const r of ['common', 'crowdsec']) {
      const t0 = Date.now();
      const res = await role(r);
      console.log(`# ${r} converge: ${Date.now() - t0} ms, ${changed(res.results).length} changed steps`);
      assert.deepEqual(failed(res.results), [], res.out.slice(-4000));
      assert.equal(res.code, 0, res.out.slice(-4000));
    }
    for (const n of EDGE_NAMES) {
      assert.equal(node(n, 'systemctl is-active crowdsec-firewall-bouncer').trim(), 'active', `${n}: bouncer runs (set-only)`);
      assert.match(
        node(n, 'nft list chain ip crowdsec wpfarm-forward'),
        /hook forward priority filter - 1.*\n.*@crowdsec-blacklists counter name "ban_forward_dropped" drop/s,
      );
      assert.match(node(n, 'nft list chain inet wpfarm forward'), /hook forward priority filter - 1/);
    }
    await standinUp();
  });

  test('before a ban: attacker and visitor reach 80 and 443 on every edge node', async () => {
    for (const n of EDGE_NAMES) {
      for (const port of [80, 443]) {
        assert.equal(await connectFrom(atk, EDGE[n], port), true, `attacker -> ${n}:${port}`);
        assert.equal(await connectFrom(vis, EDGE[n], port), true, `visitor -> ${n}:${port}`);
      }
    }
  });

  test('metrics and management ports: dropped from a non-monitoring address, reachable from mon1; swarm ports only between farm hosts', async () => {
    for (const n of EDGE_NAMES) {
      const before = counter(n, 'inet', 'wpfarm', 'forward_dropped');
      const inBefore = counter(n, 'inet', 'wpfarm', 'input_dropped');
      assert.equal(await connectFrom(atk, EDGE[n], 8082), false, `attacker -> ${n}:8082 (published metrics) dropped`);
      assert.equal(await connectFrom(vis, EDGE[n], 8082), false, `visitor -> ${n}:8082 dropped`);
      const after = counter(n, 'inet', 'wpfarm', 'forward_dropped');
      console.log(`# ${n}: forward_dropped ${before} -> ${after} (8082 from attacker and visitor)`);
      assert.ok(after - before >= 2, `${n}: the 8082 SYNs were dropped on the forward path (${before} -> ${after})`);
      assert.equal(await connectFrom({ node: 'mon1' }, EDGE[n], 8082), true, `mon1 -> ${n}:8082`);
      for (const port of [9323, 6060, 2377, 7946])
        assert.equal(await connectFrom(atk, EDGE[n], port), false, `attacker -> ${n}:${port} dropped`);
      assert.equal(await connectFrom({ node: 'mon1' }, EDGE[n], 9323), true, `mon1 -> ${n}:9323 (dockerd metrics)`);
      const inAfter = counter(n, 'inet', 'wpfarm', 'input_dropped');
      console.log(`# ${n}: input_dropped ${inBefore} -> ${inAfter}`);
      assert.ok(inAfter - inBefore >= 4, `${n}: input drops counted`);
    }
    assert.equal(await connectFrom(atk, EDGE[LAPI], 8080), false, 'attacker -> the local API dropped');
    assert.equal(await connectFrom({ node: 'mgr2' }, EDGE.mgr1, 2377), true, 'mgr2 -> mgr1:2377 (swarm control plane)');
    assert.equal(await connectFrom({ node: 'mgr2' }, EDGE.mgr1, 7946), true, 'mgr2 -> mgr1:7946 (gossip)');
    assert.equal(await connectFrom({ node: 'wrk1' }, EDGE.mgr1, 8080), false, 'a worker (not edge) -> the local API dropped');
  });

  test('cscli decisions add: dropped within 15 s on every edge node, visitor served; delete: served again', async () => {
    const fwd0 = Object.fromEntries(EDGE_NAMES.map((n) => [n, counter(n, 'ip', 'crowdsec', 'ban_forward_dropped')]));
    const t0 = Date.now();
    node(LAPI, `cscli decisions add --ip ${NS.atk.ip} --duration 15m --reason 'wpfarm lab test 71' >/dev/null`);
    const bannedAt: Record<string, number> = {};
    while (Object.keys(bannedAt).length < EDGE_NAMES.length) {
      assert.ok(Date.now() - t0 < 15_000, `not dropped within 15 s on ${EDGE_NAMES.filter((n) => !(n in bannedAt)).join(', ')}`);
      await Promise.all(
        EDGE_NAMES.filter((n) => !(n in bannedAt)).map(async (n) => {
          const [a80, a443] = await Promise.all([connectFrom(atk, EDGE[n], 80), connectFrom(atk, EDGE[n], 443)]);
          if (!a80 && !a443) bannedAt[n] = Date.now() - t0;
        }),
      );
      for (const n of EDGE_NAMES) assert.equal(await connectFrom(vis, EDGE[n], 443), true, `visitor -> ${n}:443 during the ban`);
    }
    console.log(`# ban -> dropped: ${EDGE_NAMES.map((n) => `${n} ${bannedAt[n]} ms`).join(', ')}`);
    for (const n of EDGE_NAMES) {
      const c = counter(n, 'ip', 'crowdsec', 'ban_forward_dropped');
      console.log(`# ${n}: ban_forward_dropped ${fwd0[n]} -> ${c}, ban_input_dropped ${counter(n, 'ip', 'crowdsec', 'ban_input_dropped')}`);
      assert.ok(c > fwd0[n]!, `${n}: the attacker's packets were dropped on the forward path by the ban set`);
      assert.match(node(n, 'nft list set ip crowdsec crowdsec-blacklists'), new RegExp(NS.atk.ip.replace(/\./g, '\\.')));
    }
    const t1 = Date.now();
    node(LAPI, `cscli decisions delete --ip ${NS.atk.ip} >/dev/null`);
    const servedAt: Record<string, number> = {};
    while (Object.keys(servedAt).length < EDGE_NAMES.length) {
      assert.ok(
        Date.now() - t1 < 30_000,
        `still dropped 30 s after the delete on ${EDGE_NAMES.filter((n) => !(n in servedAt)).join(', ')}`,
      );
      await Promise.all(
        EDGE_NAMES.filter((n) => !(n in servedAt)).map(async (n) => {
          const [a80, a443] = await Promise.all([connectFrom(atk, EDGE[n], 80), connectFrom(atk, EDGE[n], 443)]);
          if (a80 && a443) servedAt[n] = Date.now() - t1;
        }),
      );
      if (Object.keys(servedAt).length < EDGE_NAMES.length) await sleep(250);
    }
    console.log(`# unban -> served: ${EDGE_NAMES.map((n) => `${n} ${servedAt[n]} ms`).join(', ')}`);
  });

  test('a dockerd restart leaves our chains in place, and they still drop', async () => {
    const n = 'mgr3';
    node(n, 'systemctl restart docker');
    const deadline = Date.now() + 180_000;
    while (!(await connectFrom(vis, EDGE[n], 80))) {
      assert.ok(Date.now() < deadline, `${n}: the stand-in is back after the docker restart`);
      await sleep(2000);
    }
    assert.match(node(n, 'nft list chain inet wpfarm forward'), /hook forward priority filter - 1/);
    assert.match(node(n, 'nft list chain ip crowdsec wpfarm-forward'), /ban_forward_dropped/);
    assert.match(node(n, 'iptables -S FORWARD'), /DOCKER-USER/, 'dockerd rewrote its own chains');
    const before = counter(n, 'inet', 'wpfarm', 'forward_dropped');
    assert.equal(await connectFrom(atk, EDGE[n], 8082), false, 'attacker -> 8082 still dropped');
    assert.ok(counter(n, 'inet', 'wpfarm', 'forward_dropped') > before);
    const t0 = Date.now();
    node(LAPI, `cscli decisions add --ip ${NS.atk.ip} --duration 15m --reason 'wpfarm lab test 71' >/dev/null`);
    while (await connectFrom(atk, EDGE[n], 80)) {
      assert.ok(Date.now() - t0 < 15_000, `${n}: ban not enforced within 15 s after the docker restart`);
      await sleep(250);
    }
    console.log(`# after the dockerd restart on ${n}: ban -> dropped ${Date.now() - t0} ms`);
    assert.equal(await connectFrom(vis, EDGE[n], 80), true);
    node(LAPI, `cscli decisions delete --ip ${NS.atk.ip} >/dev/null`);
  });

  test("the local API speaks TLS only, verified against the role's CA; keys are 0600", () => {
    const url = `https://${EDGE.mgr1}:8080/v1/decisions`;
    for (const n of ['mgr2', 'mgr3']) {
      assert.match(node(n, 'cscli lapi status 2>&1'), /successfully interact with Local API/, `${n}: agent verifies and logs in`);
      // verified against the CA copy: TLS works (401: no key), unverified (system CAs) fails
      assert.equal(node(n, `curl -s -o /dev/null -w '%{http_code}' --cacert /etc/crowdsec/tls/ca.crt ${url}`).trim(), '403');
      assert.notEqual(nodeTry(n, `curl -s -o /dev/null -w '%{http_code}' ${url}; echo " rc=$?"`).trim(), '403 rc=0');
      assert.doesNotMatch(nodeTry(n, `curl -s http://${EDGE.mgr1}:8080/v1/decisions`), /^\[|null/, 'no plain HTTP API');
      assert.match(
        node(n, 'grep -E "^(url|ca_cert_path):" /etc/crowdsec/local_api_credentials.yaml'),
        new RegExp(`url: https://${ADDR.mgr1!.replaceAll('.', '\\.')}:8080/\nca_cert_path: /etc/crowdsec/tls/ca\\.crt`),
      );
    }
    assert.equal(node(LAPI, 'stat -c %a /etc/crowdsec/tls /etc/crowdsec/tls/ca.key /etc/crowdsec/tls/lapi.key').trim(), '700\n600\n600');
    for (const n of ['mgr2', 'mgr3'])
      assert.equal(nodeTry(n, 'ls /etc/crowdsec/tls/ca.key 2>/dev/null').trim(), '', `${n}: the CA key stays on the LAPI host`);
  });

  test('rerun: common and crowdsec change nothing', async () => {
    standinDown();
    for (const r of ['common', 'crowdsec']) {
      const res = await role(r);
      assert.deepEqual(failed(res.results), [], res.out.slice(-3000));
      assert.deepEqual(changed(res.results), [], r);
    }
  });
});
