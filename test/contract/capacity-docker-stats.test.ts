// The capacity probe (roles/capacity/docker-stats.ts) against the real docker CLI: the probe script runs in bash
// with the installed `docker` talking (DOCKER_HOST) to a Docker Engine API served here on a unix socket, whose
// figures are known; what the CLI prints for our format string is parsed back to the same millicores and MiB.
// This pins the CLI's output shape (field names, units, the CPU percent of one core, memory without the page
// cache) for the format string the probe uses, without a daemon and without touching anyone's containers.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { nodeProbeScript, parseNodeProbe, siteOfContainer, STATS_FORMAT } from '../../roles/capacity/docker-stats.ts';
import { stackName } from '../../roles/wp-site/stack.ts';

const run = promisify(execFile);
const MiB = 1024 ** 2;

interface Fake {
  id: string;
  name: string;
  /** CPU time used between the two samples, out of `systemDelta` on `cpus` CPUs */
  cpuDelta: number;
  usage: number;
  /** page cache the CLI leaves out (cgroup v2 inactive_file) */
  inactiveFile: number;
}

const SYSTEM_DELTA = 4e9;
const CPUS = 2;
// percent of one core = cpuDelta / SYSTEM_DELTA * CPUS * 100
const CONTAINERS: Fake[] = [
  { id: 'a'.repeat(64), name: 'wp-blog_nginx.1.q1w2e3', cpuDelta: 2e8, usage: 100 * MiB, inactiveFile: 20 * MiB }, // 10%, 80 MiB
  { id: 'b'.repeat(64), name: 'wp-blog_php-fpm.1.r4t5y6', cpuDelta: 1.3e9, usage: 1.5 * 1024 * MiB, inactiveFile: 0 }, // 65%, 1.5 GiB
  { id: 'c'.repeat(64), name: 'monitoring_node-exporter.1.u7i8o9', cpuDelta: 4e7, usage: 12 * MiB, inactiveFile: 0 }, // 2%, 12 MiB
];

function statsOf(c: Fake): unknown {
  const now = new Date().toISOString();
  return {
    read: now,
    preread: now,
    id: c.id,
    name: `/${c.name}`,
    pids_stats: { current: 3 },
    blkio_stats: { io_service_bytes_recursive: [] },
    networks: { eth0: { rx_bytes: 1000, tx_bytes: 2000 } },
    cpu_stats: { cpu_usage: { total_usage: 5e9 + c.cpuDelta }, system_cpu_usage: 1e12 + SYSTEM_DELTA, online_cpus: CPUS },
    precpu_stats: { cpu_usage: { total_usage: 5e9 }, system_cpu_usage: 1e12, online_cpus: CPUS },
    memory_stats: { usage: c.usage, limit: 8 * 1024 * MiB, stats: { inactive_file: c.inactiveFile } },
  };
}

test('the probe script with the real docker CLI: our format string, units and CPU percent parse to known figures', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-dockerapi-'));
  const sock = path.join(dir, 'docker.sock');
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://docker');
    seen.push(`${req.method} ${url.pathname.replace(/^\/v[0-9.]+/, '')}`);
    res.setHeader('Api-Version', '1.41');
    res.setHeader('OSType', 'linux');
    if (url.pathname === '/_ping') return res.end('OK');
    res.setHeader('Content-Type', 'application/json');
    if (url.pathname.endsWith('/containers/json'))
      return res.end(JSON.stringify(CONTAINERS.map((c) => ({ Id: c.id, Names: [`/${c.name}`], State: 'running', Status: 'Up 1 hour' }))));
    const m = /\/containers\/([0-9a-f]+)\/stats$/.exec(url.pathname);
    const c = m && CONTAINERS.find((x) => x.id.startsWith(m[1]!));
    if (c) return res.end(JSON.stringify(statsOf(c)));
    if (url.pathname.endsWith('/events')) return res.end(); // the CLI subscribes to events: an empty stream
    res.statusCode = 404;
    res.end(JSON.stringify({ message: `not served here: ${url.pathname}` }));
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const env = { ...process.env, DOCKER_HOST: `unix://${sock}`, DOCKER_CONFIG: dir };
  const { stdout } = await run('bash', ['-c', nodeProbeScript()], { env, timeout: 30_000 });
  // every container's line is docker's {{json .}} of a stats entry
  const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
  assert.equal(lines.length, 3, stdout);
  const first = JSON.parse(lines.find((l) => l.includes('nginx'))!) as Record<string, string>;
  assert.deepEqual(Object.keys(first).sort(), ['BlockIO', 'CPUPerc', 'Container', 'ID', 'MemPerc', 'MemUsage', 'Name', 'NetIO', 'PIDs']);
  assert.equal(first.CPUPerc, '10.00%');
  assert.equal(first.MemUsage, '80MiB / 8GiB');
  assert.equal(STATS_FORMAT, '{{json .}}');

  const p = parseNodeProbe(stdout);
  // nproc and /proc/meminfo of this machine, as the probe sees them
  const cpus = Number((await run('nproc')).stdout.trim());
  assert.equal(p.cpus, cpus);
  assert.ok(p.memTotalMiB > 256, `MemTotal ${p.memTotalMiB} MiB`);
  assert.equal(p.statsError, undefined);
  assert.deepEqual(
    p.containers.map((c) => [c.name, c.cpuMilli, Math.round(c.memMiB * 10) / 10]),
    [
      ['wp-blog_nginx.1.q1w2e3', 100, 80],
      ['wp-blog_php-fpm.1.r4t5y6', 650, 1536],
      ['monitoring_node-exporter.1.u7i8o9', 20, 12],
    ],
  );
  assert.deepEqual(
    p.containers.map((c) => siteOfContainer(c.name, stackName, ['blog'])),
    ['blog', 'blog', undefined],
  );
  assert.ok(
    seen.some((s) => /^GET \/containers\/a{12,64}\/stats$/.test(s)),
    seen.join('\n'),
  );

  // no daemon at all: a finding the probe reports, not a crash
  const down = await run('bash', ['-c', nodeProbeScript()], { env: { ...env, DOCKER_HOST: `unix://${dir}/none.sock` }, timeout: 30_000 });
  const d = parseNodeProbe(down.stdout);
  assert.equal(d.containers.length, 0);
  assert.match(d.statsError ?? '', /^docker stats failed \(exit 1\): .*Cannot connect to the Docker daemon/);
});
