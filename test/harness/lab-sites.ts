// Helpers for the site tests on the lab farm (test/lab/6x-*.test.ts): playbooks run as a person runs them,
// ssh to lab nodes with the lab's key and known_hosts, and commands inside a service's container.
import './lab-profile.ts'; // first: selects the test lab's profile before scripts/lab/config.ts loads
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { quote } from 'zx';
import { STANDIN_STACK } from '../../roles/traefik/standin-steps.ts';
import { PHASES } from '../../playbooks/phases.ts';
import {
  BRIDGE,
  GATEWAY,
  INVENTORY_FILE,
  LEGACY,
  NODES,
  PATHS,
  PROFILE,
  ROOT,
  SUBNET,
  SVC,
  containerName,
  labAddress,
} from '../../scripts/lab/config.ts';

if (PROFILE.name !== 'test') {
  throw new Error(`scripts/lab/config.ts was loaded before test/harness/lab-profile.ts: profile ${PROFILE.name}, not the test lab`);
}

/** The test lab's facts, from its profile: tests take names and addresses from here, never literals. */
export { BRIDGE, GATEWAY, PROFILE, ROOT, SUBNET, SVC, containerName, labAddress };
export const INVENTORY = INVENTORY_FILE;
export const KEY = PATHS.clientKey;
export const KNOWN = PATHS.knownHosts;
export const ADDR: Record<string, string> = Object.fromEntries(NODES.map((n) => [n.name, n.address]));
/** the legacy hosts sites are migrated from (scripts/lab.ts legacy-up; not in the farm's inventory) */
export const LEGACY_HOSTS = LEGACY;
export const run = promisify(execFile);

export interface Report {
  exitCode: number;
  roundTrips: number;
  wallMs?: number;
  results: { host: string; step: string; status: string; changes: string[]; error?: string }[];
}

/** node --import tsx SCRIPT --inventory INVENTORY (the test lab's) --json TMP ARGS; never throws on a non-zero exit. */
export async function cli(
  work: string,
  script: string,
  args: string[],
  timeoutMs = 15 * 60_000,
): Promise<{ code: number; out: string; report?: Report }> {
  const json = path.join(work, `r-${Math.random().toString(36).slice(2)}.json`);
  const report = () => (existsSync(json) ? (JSON.parse(readFileSync(json, 'utf8')) as Report) : undefined);
  try {
    const r = await run(process.execPath, ['--import', 'tsx', script, '--inventory', INVENTORY, '--json', json, ...args], {
      cwd: ROOT,
      timeout: timeoutMs,
      maxBuffer: 64 << 20,
    });
    return { code: 0, out: r.stdout + r.stderr, report: report() };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, out: `${err.stdout ?? ''}${err.stderr ?? ''}`, report: report() };
  }
}

export async function ssh(host: string, cmd: string, o: { nothrow?: boolean; stdin?: string; timeoutMs?: number } = {}): Promise<string> {
  const args = [
    '-i',
    KEY,
    '-o',
    `UserKnownHostsFile=${KNOWN}`,
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'LogLevel=ERROR',
    '-o',
    'BatchMode=yes',
    `root@${ADDR[host] ?? host}`,
    cmd,
  ];
  try {
    const p = run('ssh', args, { timeout: o.timeoutMs ?? 120_000, maxBuffer: 16 << 20 });
    if (o.stdin !== undefined) p.child.stdin?.end(o.stdin);
    return (await p).stdout.trim();
  } catch (e) {
    if (o.nothrow) return `ERROR ${(e as { stderr?: string }).stderr ?? ''}`;
    throw new Error(`${host}: ${cmd}: ${(e as { stderr?: string; message: string }).stderr || (e as Error).message}`);
  }
}

/**
 * Remove the lab's edge stand-in (stack `edge`, HAProxy in host mode on 80/443/8082 of the managers: add-site deploys
 * it) and wait until its containers are gone, for a test that publishes its own listener on those ports (71, 80).
 * The next add-site deploys it again.
 */
export async function removeEdgeStandin(managers: readonly string[] = ['mgr1', 'mgr2', 'mgr3']): Promise<void> {
  await ssh(managers[0]!, `docker stack rm ${STANDIN_STACK} >/dev/null 2>&1; true`, { nothrow: true });
  const filter = `label=com.docker.stack.namespace=${STANDIN_STACK}`;
  for (const deadline = Date.now() + 120_000; ; await new Promise((r) => setTimeout(r, 2000))) {
    const left = [];
    for (const m of managers) if ((await ssh(m, `docker ps -q --filter ${filter}`, { nothrow: true })) !== '') left.push(m);
    if (!left.length) return;
    if (Date.now() > deadline) throw new Error(`the edge stand-in's containers are still on ${left.join(', ')} after 120 s`);
  }
}

/** Nodes running a service's tasks. */
export async function nodesOf(service: string): Promise<string[]> {
  const out = await ssh(
    'mgr1',
    `docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' ${quote(service)}`,
  );
  return [
    ...new Set(
      out
        .split('\n')
        .filter((l) => l.includes('Running'))
        .map((l) => l.split(' ')[0]!),
    ),
  ];
}

/** Run a command inside the container of `service` on `node`. */
export async function inService(
  node: string,
  service: string,
  cmd: string[],
  o: { nothrow?: boolean; stdin?: string } = {},
): Promise<string> {
  const c = `cid=$(docker ps -q --filter ${quote(`label=com.docker.swarm.service.name=${service}`)} | head -n1); docker exec -i "$cid" ${cmd.map((x) => quote(x)).join(' ')}`;
  return ssh(node, c, o);
}

export function changesOf(r: Report | undefined): string[] {
  return (r?.results ?? []).flatMap((x) => x.changes.map((c) => `${x.host}: ${c}`));
}

/** The lab must be up (scripts/lab.ts status): these nodes running and reachable. */
export async function assertLabUp(nodes: string[]): Promise<void> {
  const st = await run(process.execPath, ['--import', 'tsx', 'scripts/lab.ts', 'status'], { cwd: ROOT });
  for (const n of nodes) {
    const cols =
      st.stdout
        .split('\n')
        .find((l) => l.startsWith(`${n} `))
        ?.trim()
        .split(/\s+/) ?? [];
    if (!(cols[2] === 'running' && cols[3] === 'yes'))
      throw new Error(`the lab is not up (node --import tsx scripts/lab.ts up): ${n}: ${cols.join(' ')}`);
  }
}

/** Bootstrap phase 1, galera, db-endpoint, gluster, the images role: idempotent, cheap when done; what every site test needs. */
export async function convergeSitePrerequisites(work: string): Promise<void> {
  const roles = [
    ...PHASES.find((p) => p.n === 1)!.roles,
    'galera',
    // the sites' database endpoint on each worker (the node their tasks run on)
    'db-endpoint',
    'gluster',
    // phase 3's images role: the site images built once and pushed (add-site never builds)
    'images',
  ];
  // one run, as bootstrap runs a phase: the roles' probes read together, one connection per host (nine lab files
  // call this; five runs of their own each cost 5 process starts, connection sets and read-aheads)
  const r = await cli(work, 'playbooks/run-role.ts', roles, 30 * 60_000);
  if (r.code !== 0) throw new Error(`prerequisites (run-role ${roles.join(' ')}) failed:\n${r.out.slice(-3000)}`);
}

/**
 * A bounded request loop against a site (as lab 62 measures availability): a container on traefik-public on
 * `node` sends a GET every 200 ms to the site's nginx service by its Swarm DNS name with the site's Host header
 * and a unique query string (no cache hit), no retry; it stops by itself after `maxSeconds` or on `stopLoop`.
 * `image` needs bash and curl (the site's nginx image has both).
 */
export async function startLoop(a: { name: string; node: string; domain: string; stack: string; image: string; maxSeconds?: number }) {
  const script = String.raw`
i=0; end=$(( $(date +%s) + ${a.maxSeconds ?? 1200} ))
while [ ! -e /tmp/stop ] && [ "$(date +%s)" -lt "$end" ]; do
  i=$((i+1))
  r=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --connect-timeout 5 --max-time 15 -H "Host: $SITE" -H 'X-Forwarded-Proto: https' "http://$SVC/?loop=$i")
  echo "$(date +%s.%N) $i $r"
  sleep 0.2
done`;
  await ssh(
    a.node,
    `docker rm -f ${quote(a.name)} >/dev/null 2>&1; docker run -d --name ${quote(a.name)} --network traefik-public ` +
      `-e SITE=${quote(a.domain)} -e SVC=${quote(`${a.stack}_nginx:8080`)} --entrypoint bash ${quote(a.image)} -c ${quote(script)}`,
  );
}

export interface LoopSample {
  at: number;
  n: number;
  code: string;
  ms: number;
}

/** The loop's requests so far (epoch seconds, sequence, HTTP code, ms). */
export async function loopSamples(node: string, name: string): Promise<LoopSample[]> {
  const out = await ssh(node, `docker logs ${quote(name)} 2>&1`);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c.length === 4)
    .map(([at, n, code, secs]) => ({ at: Number(at), n: Number(n), code: code!, ms: Math.round(Number(secs) * 1000) }));
}

export async function stopLoop(node: string, name: string): Promise<void> {
  await ssh(node, `docker rm -f ${quote(name)}`, { nothrow: true });
}
