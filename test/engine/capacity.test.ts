// playbooks/capacity.ts measuring real sshd hosts over the engine's transport: on each host the probe runs the
// real nproc, /proc/meminfo and docker CLI; the CLI's docker context (~/.docker on the host's private overlay)
// points at a Docker Engine API this test serves on the hosts' bridge, answering per host with known containers.
// The plan then counts measured sites per node, the measured per-site mean, and a node whose docker fails as
// measured in size but assumed in sites.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Plan } from '../../roles/capacity/model.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

const MiB = 1024 ** 2;
let lab: SshdLab;
let server: http.Server;

/** containers per host address: name, percent of one core, memory used */
const BY_HOST: Record<string, Array<[string, number, number]>> = {};

function stats(name: string, pct: number, usage: number): unknown {
  const sys = 4e9;
  return {
    read: new Date().toISOString(),
    name: `/${name}`,
    id: createHash('sha256').update(name).digest('hex'),
    pids_stats: { current: 2 },
    cpu_stats: { cpu_usage: { total_usage: 1e9 + (pct / 100 / 2) * sys }, system_cpu_usage: 2e12 + sys, online_cpus: 2 },
    precpu_stats: { cpu_usage: { total_usage: 1e9 }, system_cpu_usage: 2e12, online_cpus: 2 },
    memory_stats: { usage, limit: 8192 * MiB, stats: { inactive_file: 0 } },
  };
}

before(async () => {
  lab = await startSshdHosts(4);
  const [h1, h2] = lab.hosts;
  BY_HOST[h1!.address] = [
    ['wp-blog_nginx.1.aaa', 5, 40 * MiB],
    ['wp-blog_php-fpm.1.bbb', 30, 260 * MiB],
    ['monitoring_node-exporter.1.ccc', 1, 10 * MiB],
  ];
  BY_HOST[h2!.address] = [
    ['wp-blog_php-fpm.2.ddd', 20, 200 * MiB],
    ['wp-shop_php-fpm.1.eee', 60, 600 * MiB],
  ];
  const bridge = lab.hosts[0]!.address.replace(/\.\d+$/, '.1');
  server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://docker');
    const from = (req.socket.remoteAddress ?? '').replace(/^::ffff:/, '');
    const list = BY_HOST[from] ?? [];
    res.setHeader('Api-Version', '1.41');
    res.setHeader('OSType', 'linux');
    if (url.pathname === '/_ping') return res.end('OK');
    res.setHeader('Content-Type', 'application/json');
    if (url.pathname.endsWith('/containers/json'))
      return res.end(
        JSON.stringify(list.map(([n]) => ({ Id: createHash('sha256').update(n).digest('hex'), Names: [`/${n}`], State: 'running' }))),
      );
    const m = /\/containers\/([0-9a-f]+)\/stats$/.exec(url.pathname);
    const c = m && list.find(([n]) => createHash('sha256').update(n).digest('hex').startsWith(m[1]!));
    if (c) return res.end(JSON.stringify(stats(...c)));
    if (url.pathname.endsWith('/events')) return res.end();
    res.statusCode = 404;
    res.end('{"message":"not here"}');
  });
  await new Promise<void>((resolve) => server.listen(0, bridge, resolve));
  const port = (server.address() as AddressInfo).port;
  // each host's docker CLI: a context (docker's own config files) pointing at this server; the third host's
  // at a port nobody listens on (docker stats fails there)
  lab.hosts.slice(0, 3).forEach((h, i) => {
    const host = i < 2 ? `tcp://${bridge}:${port}` : `tcp://${bridge}:1`;
    const meta = join(h.root, 'root/.docker/contexts/meta', createHash('sha256').update('wpfarm-test').digest('hex'));
    mkdirSync(meta, { recursive: true });
    writeFileSync(join(meta, 'meta.json'), JSON.stringify({ Name: 'wpfarm-test', Metadata: {}, Endpoints: { docker: { Host: host } } }));
    writeFileSync(join(h.root, 'root/.docker/config.json'), JSON.stringify({ currentContext: 'wpfarm-test' }));
  });
  const sites = join(lab.dir, 'sites');
  mkdirSync(sites, { recursive: true });
  for (const id of ['blog', 'shop', 'news', 'docs'])
    writeFileSync(join(sites, `${id}.yml`), `id: ${id}\ndomain: ${id}.example.com\nadmin_allowlist: [10.0.0.0/8]\n`);
  // the fourth node does not answer
  await lab.killSshd(lab.hosts[3]!.name);
});

after(async () => {
  server?.closeAllConnections();
  server?.close();
  await lab?.stop();
});

function capacity(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'playbooks/capacity.ts',
        '-i',
        lab.inventoryFile,
        '--nodes',
        'all',
        '--sites-dir',
        join(lab.dir, 'sites'),
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

test('measured over SSH: sizes, sites per node, the per-site mean; a failing docker and an unreachable node are assumed', async () => {
  const r = await capacity('--format', 'json', '--target-sites', '50', '--size', 's-4vcpu-8gb');
  // exit 3 (a node unreachable), the report printed all the same, and only the report on stdout
  assert.equal(r.code, 3, `${r.err}\n${r.out}`);
  assert.match(r.err, /^h04: unreachable: /m);
  const p = JSON.parse(r.out) as Plan;
  const [h1, h2, h3, h4] = p.nodes;
  // the machine's own CPUs and memory, as nproc and /proc/meminfo say inside each host
  for (const n of [h1!, h2!, h3!]) {
    assert.equal(n.capacity?.source, 'measured');
    assert.equal(n.capacity?.cpuMilli, cpus().length * 1000);
  }
  // blog: 40 + 260 + 200 = 500 MiB over two nodes, 550 m; shop: 600 MiB, 600 m → mean 550 MiB, 575 m
  assert.deepEqual(p.perSite.memMiB, { value: 550, source: 'measured', how: 'mean of 2 site(s), docker stats' });
  assert.deepEqual(p.perSite.cpuMilli, { value: 575, source: 'measured', how: 'mean of 2 site(s), docker stats' });
  assert.deepEqual([h1!.sites, h1!.sitesSource, h1!.used.memMiB, h1!.used.cpuMilli], [1, 'measured', 300, 350]);
  assert.deepEqual(h1!.other, { memMiB: 10, cpuMilli: 10 });
  assert.deepEqual([h2!.sites, h2!.used.memMiB, h2!.used.cpuMilli], [2, 800, 800]);
  // news and docs ran nowhere measured: an even share on the two nodes without container figures
  assert.deepEqual([h3!.sites, h3!.sitesSource, h3!.used.memMiB], [1, 'assumed', 550]);
  assert.match(h3!.notes.join('\n'), /no container figures: docker stats failed \(exit 1\)/);
  // the unreachable node: no size in the inventory and not measured, so its capacity is unknown
  assert.deepEqual([h4!.sites, h4!.capacity, h4!.fits, h4!.headroom], [1, undefined, null, null]);
  assert.match(h4!.notes.join('\n'), /not measured: no answer/);
  // 8192 * .75 = 6144 MiB / 550 = 11.2, 3000 m / 575 = 5.2: 5 sites per s-4vcpu-8gb; 50 sites → 10 nodes
  assert.deepEqual([p.target?.sitesPerNode, p.target?.limitedBy, p.target?.nodes, p.target?.costMonthly], [5, 'cpu', 10, 480]);

  const t = await capacity('--limit', 'h01,h02,h03');
  assert.equal(t.code, 0, t.err);
  assert.match(
    t.out,
    /^measured: per-site usage \(2 site\(s\)\); node CPUs and memory \(nproc, \/proc\/meminfo\); sites and containers per node/m,
  );
  assert.match(t.out, /^h01 +mem \[[#+.~]+\] +\d+% of /m);
  assert.match(t.out, /RECAP/);
});
