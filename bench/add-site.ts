// Bench (issue 6 target): add-site on the lab until the site serves, target < 60 s.
//   node --import tsx bench/add-site.ts [--keep]
// Needs the converged lab (phase 1, galera, gluster: the user's lab, or the test lab with WPFARM_LAB=test) and the
// site images already built (the first run builds them; that build is reported separately, it is not part of the
// target). Prints one JSON line:
// { add_site_s, serving_s, rerun_s, round_trips } and removes the site afterwards unless --keep.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { quote } from 'zx';
import { INVENTORY_FILE, NODES, PATHS } from '../scripts/lab/config.ts';

const run = promisify(execFile);
const INV = INVENTORY_FILE;
const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-bench-sites-'));
const stamp = Date.now().toString(36).slice(-5);
const domain = `bench${stamp}.lab.test`;
const id = `bench${stamp}-lab-test`;
const node = (script: string, args: string[]) =>
  run(process.execPath, ['--import', 'tsx', script, '--inventory', INV, ...args], { maxBuffer: 64 << 20, timeout: 15 * 60_000 });
const ssh = (addr: string, cmd: string) =>
  run('ssh', ['-i', PATHS.clientKey, '-o', `UserKnownHostsFile=${PATHS.knownHosts}`, '-o', 'LogLevel=ERROR', `root@${addr}`, cmd], {
    maxBuffer: 16 << 20,
  });
const ADDR: Record<string, string> = Object.fromEntries(NODES.map((n) => [n.name, n.address]));

try {
  // warm-up: the images (built once, content-hashed) are not part of the target
  await node('playbooks/run-role.ts', ['wp-site', '-e', `wp_sites_dir=${dir}`]);
  const json = path.join(dir, 'add.json');
  const t0 = performance.now();
  await node('playbooks/add-site.ts', ['--domain', domain, '--sites-dir', dir, '--json', json]);
  const addS = (performance.now() - t0) / 1000;
  const { stdout } = await ssh(
    ADDR.mgr1!,
    `docker service ps --filter desired-state=running --format '{{.Node}}' ${quote(`wp-${id}_nginx`)}`,
  );
  const n = stdout.trim().split('\n')[0]!;
  const get = await ssh(
    ADDR[n] ?? n,
    `docker exec $(docker ps -q --filter ${quote(`label=com.docker.swarm.service.name=wp-${id}_nginx`)} | head -n1) curl -s -o /dev/null -w '%{http_code}' -H ${quote(`Host: ${domain}`)} -H 'X-Forwarded-Proto: https' http://127.0.0.1:8080/`,
  );
  const servingS = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  await node('playbooks/add-site.ts', ['--domain', domain, '--sites-dir', dir]);
  const rerunS = (performance.now() - t1) / 1000;
  const rt = (JSON.parse(readFileSync(json, 'utf8')) as { roundTrips: number }).roundTrips;
  console.log(
    JSON.stringify({
      add_site_s: +addS.toFixed(1),
      serving_s: +servingS.toFixed(1),
      http: get.stdout.trim(),
      rerun_s: +rerunS.toFixed(1),
      round_trips: rt,
      target_s: 60,
    }),
  );
} finally {
  if (!process.argv.includes('--keep'))
    await node('playbooks/remove-site.ts', ['--domain', domain, '--yes', '--no-backup', '--sites-dir', dir]).catch((e: Error) =>
      console.error(`cleanup: ${e.message}`),
    );
  rmSync(dir, { recursive: true, force: true });
}
