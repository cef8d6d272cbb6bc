// Availability of a site on the lab farm (issue 6): a bounded request loop runs while the site is scaled,
// its images are updated, its secrets are rotated and one php-fpm task is killed; no request may fail.
//  - the loop client is a container on traefik-public (where Traefik sits in production) that sends a GET
//    every 200 ms to the site's nginx service (Traefik's next hop for a site without cache.varnish), by its
//    Swarm DNS name (dnsrr: one answer per running task,
//    resolved again for every request) with the site's Host header, and a unique query string so that
//    every request goes through nginx, php-fpm and the database (no cache hit). No retry: any answer
//    other than 200, and any connection failure, is a failed request.
//  - the image update is real: a copy of files/images with one extra LABEL in the wordpress-fpm Dockerfile
//    (site_images_dir), so wordpress-fpm and nginx get new content-hashed tags, are built and pushed (the images role),
//    and rolled (the wp-site role).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { quote } from 'zx';
import { assertLabUp, changesOf, cli as labCli, convergeSitePrerequisites, inService, nodesOf, ssh } from '../harness/lab-sites.ts';
import { IMAGES_DIR } from '../../roles/wp-site/images.ts';

const stamp = Date.now().toString(36).slice(-5);
const C = { domain: `c${stamp}.lab.test`, id: `c${stamp}-lab-test`, title: `Availability ${stamp}` };
const STACK = `wp-${C.id}`;
const LOOP = `wpfarm-avail-${stamp}`;
const LOOP_NODE = 'wrk1';
let work = '';
let sitesDir = '';
const cli = (script: string, args: string[], timeoutMs?: number) => labCli(work, script, args, timeoutMs);

interface Sample {
  at: number;
  n: number;
  code: string;
  ms: number;
}

const LOOP_SCRIPT = String.raw`
i=0; end=$(( $(date +%s) + 1800 ))
while [ ! -e /tmp/stop ] && [ "$(date +%s)" -lt "$end" ]; do
  i=$((i+1))
  r=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --connect-timeout 5 --max-time 15 -H "Host: $SITE" -H 'X-Forwarded-Proto: https' "http://$SVC/?avail=$i")
  echo "$(date +%s.%N) $i $r"
  sleep 0.2
done`;

async function samples(): Promise<Sample[]> {
  const out = await ssh(LOOP_NODE, `docker logs ${quote(LOOP)} 2>&1`);
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c.length === 4)
    .map(([at, n, code, secs]) => ({ at: Number(at), n: Number(n), code: code!, ms: Math.round(Number(secs) * 1000) }));
}

/** Requests sent while `fn` ran: all of them, and the failed ones. */
async function during(
  what: string,
  fn: () => Promise<void>,
): Promise<{ what: string; total: number; failed: Sample[]; maxMs: number; seconds: number }> {
  const t0 = Date.now() / 1000;
  await fn();
  await new Promise((r) => setTimeout(r, 3000)); // requests in flight when fn returned
  const t1 = Date.now() / 1000;
  const s = (await samples()).filter((x) => x.at >= t0 && x.at <= t1);
  return { what, total: s.length, failed: s.filter((x) => x.code !== '200'), maxMs: Math.max(0, ...s.map((x) => x.ms)), seconds: t1 - t0 };
}

function expectNoFailure(r: Awaited<ReturnType<typeof during>>, minRequests: number): void {
  assert.ok(r.total >= minRequests, `${r.what}: the loop sent ${r.total} requests (at least ${minRequests} expected)`);
  assert.deepEqual(r.failed, [], `${r.what}: ${r.failed.length} of ${r.total} requests failed`);
}

const serviceImage = async (svc: string) =>
  ssh('mgr1', `docker service inspect --format '{{.Spec.TaskTemplate.ContainerSpec.Image}}' ${quote(svc)}`);
const running = async (svc: string) => ssh('mgr1', `docker service ls --filter name=${quote(svc)} --format '{{.Name}} {{.Replicas}}'`);

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-avail-test-'));
  sitesDir = path.join(work, 'sites');
  await assertLabUp(['mgr1', 'wrk1', 'wrk2', 'db1', 'db2', 'db3']);
  await convergeSitePrerequisites(work);
  const r = await cli('playbooks/add-site.ts', ['--domain', C.domain, '--title', C.title, '--sites-dir', sitesDir]);
  assert.equal(r.code, 0, r.out.slice(-4000));
  const image = await serviceImage(`${STACK}_nginx`);
  await ssh(
    LOOP_NODE,
    `docker rm -f ${quote(LOOP)} >/dev/null 2>&1; docker run -d --name ${quote(LOOP)} --network traefik-public ` +
      `-e SITE=${quote(C.domain)} -e SVC=${quote(`${STACK}_nginx:8080`)} --entrypoint bash ${quote(image)} -c ${quote(LOOP_SCRIPT)}`,
  );
  // the loop works before anything happens: requests answered 200
  const base = await during('baseline', () => new Promise((r) => setTimeout(r, 8000)));
  expectNoFailure(base, 10);
});

after(async () => {
  await ssh(LOOP_NODE, `docker rm -f ${quote(LOOP)}`, { nothrow: true });
  await cli('playbooks/remove-site.ts', ['--domain', C.domain, '--yes', '--no-backup', '--sites-dir', sitesDir]);
  if (work) rmSync(work, { recursive: true, force: true });
});

test('scale-site up to 3 and back to 2: no failed request', { timeout: 15 * 60_000 }, async (t) => {
  const r = await during('scale 2 → 3 → 2', async () => {
    for (const n of ['3', '2']) {
      const s = await cli('playbooks/scale-site.ts', ['--domain', C.domain, '--replicas', n, '--sites-dir', sitesDir]);
      assert.equal(s.code, 0, s.out.slice(-3000));
      assert.match(await running(`${STACK}_php-fpm`), new RegExp(` ${n}/${n}$`));
    }
  });
  t.diagnostic(`${r.what}: ${r.total} requests in ${r.seconds.toFixed(0)} s, ${r.failed.length} failed, slowest ${r.maxMs} ms`);
  expectNoFailure(r, 20);
});

test('an image update rolls both services with no failed request', { timeout: 25 * 60_000 }, async (t) => {
  const images = path.join(work, 'images');
  cpSync(IMAGES_DIR, images, { recursive: true });
  appendFileSync(path.join(images, 'wordpress-fpm', 'Dockerfile'), `\nLABEL org.wpfarm.test.availability="${stamp}"\n`);
  const before = { fpm: await serviceImage(`${STACK}_php-fpm`), nginx: await serviceImage(`${STACK}_nginx`) };
  const r = await during('image update', async () => {
    // the images role (phase 3) builds and pushes the new tags; the wp-site role rolls the site onto them
    const b = await cli('playbooks/run-role.ts', ['images', '-e', `site_images_dir=${images}`], 20 * 60_000);
    assert.equal(b.code, 0, b.out.slice(-3000));
    assert.match(changesOf(b.report).join('\n'), /built/, 'new images built');
    const u = await cli(
      'playbooks/run-role.ts',
      ['wp-site', '-e', `wp_sites_dir=${sitesDir}`, '-e', `site_images_dir=${images}`, '-e', `wp_sites_only=${C.id}`],
      20 * 60_000,
    );
    assert.equal(u.code, 0, u.out.slice(-3000));
    assert.doesNotMatch(changesOf(u.report).join('\n'), /built/, 'the wp-site role never builds');
  });
  const now = { fpm: await serviceImage(`${STACK}_php-fpm`), nginx: await serviceImage(`${STACK}_nginx`) };
  assert.notEqual(now.fpm, before.fpm, 'php-fpm runs the new wordpress-fpm tag');
  assert.notEqual(now.nginx, before.nginx, 'nginx runs the new nginx tag');
  assert.match(await running(`${STACK}_php-fpm`), / 2\/2$/);
  t.diagnostic(`${r.what}: ${r.total} requests in ${r.seconds.toFixed(0)} s, ${r.failed.length} failed, slowest ${r.maxMs} ms`);
  expectNoFailure(r, 20);
});

test('rotate-secrets: new DB password and salts rolled out with no failed request', { timeout: 15 * 60_000 }, async (t) => {
  const secretsOf = async () =>
    ssh(
      'mgr1',
      `docker service inspect --format '{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}' ${quote(`${STACK}_php-fpm`)}`,
    );
  const before = await secretsOf();
  const r = await during('rotate-secrets', async () => {
    const u = await cli('playbooks/rotate-secrets.ts', ['--domain', C.domain, '--sites-dir', sitesDir], 12 * 60_000);
    assert.equal(u.code, 0, u.out.slice(-3000));
  });
  const after = await secretsOf();
  assert.notEqual(after, before, `php-fpm uses new secret versions (${before} → ${after})`);
  t.diagnostic(`${r.what}: ${r.total} requests in ${r.seconds.toFixed(0)} s, ${r.failed.length} failed, slowest ${r.maxMs} ms`);
  expectNoFailure(r, 20);
});

test('one php-fpm task killed (2 replicas): no failed request', { timeout: 10 * 60_000 }, async (t) => {
  // two running tasks (Swarm may have put both on one worker after the updates: one is killed either way)
  assert.match(await running(`${STACK}_php-fpm`), / 2\/2$/);
  const nodes = await nodesOf(`${STACK}_php-fpm`);
  const r = await during('kill -9 of one php-fpm task', async () => {
    await inService(nodes[0]!, `${STACK}_php-fpm`, ['true']); // the container exists
    await ssh(
      nodes[0]!,
      `docker kill --signal KILL $(docker ps -q --filter ${quote(`label=com.docker.swarm.service.name=${STACK}_php-fpm`)} | head -n1)`,
    );
    // Swarm replaces the task; wait until 2/2 again (healthy: the service counts only running tasks)
    const end = Date.now() + 180_000;
    await new Promise((r) => setTimeout(r, 3000));
    while (!/ 2\/2$/.test(await running(`${STACK}_php-fpm`))) {
      assert.ok(Date.now() < end, 'the killed task was replaced within 3 minutes');
      await new Promise((r) => setTimeout(r, 2000));
    }
    await new Promise((r) => setTimeout(r, 5000));
  });
  t.diagnostic(`${r.what}: ${r.total} requests in ${r.seconds.toFixed(0)} s, ${r.failed.length} failed, slowest ${r.maxMs} ms`);
  expectNoFailure(r, 20);
});
