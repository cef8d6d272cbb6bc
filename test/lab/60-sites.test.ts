// Sites on the lab farm (issue 6): add-site end to end on a converged lab, then the proofs.
//  - bad input (invalid domain, shell metacharacters, duplicate domain, no database in the inventory):
//    exit 4, no record written, nothing created on the farm
//  - check mode on a new domain predicts every change and changes nothing
//  - add-site: a GET through the site's nginx with its Host header returns 200 and the site title; a post
//    created through WordPress is visible from another Galera node; a file uploaded through one php-fpm
//    replica is read through the other one and served by nginx
//  - the rerun reports zero changes; a no-change reconcile of all sites costs the same round trips with
//    one site as with two (constant per manager)
//  - isolation: a site's container reaches neither another site's network nor its php-fpm
// Prerequisites are converged first (bootstrap phase 1, galera, gluster: idempotent, cheap when done).
// Site records go to a temporary directory (--sites-dir), never to inventory/sites.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { quote } from 'zx';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import {
  INVENTORY,
  KEY,
  KNOWN,
  ROOT,
  assertLabUp,
  changesOf,
  cli as labCli,
  convergeSitePrerequisites,
  inService,
  nodesOf,
  run,
  ssh,
} from '../harness/lab-sites.ts';

const stamp = Date.now().toString(36).slice(-5);
const A = { domain: `a${stamp}.lab.test`, id: `a${stamp}-lab-test`, title: `Lab site A ${stamp}` };
const B = { domain: `b${stamp}.lab.test`, id: `b${stamp}-lab-test`, title: `Lab site B ${stamp}` };
let sitesDir = '';
let work = '';
const cli = (script: string, args: string[], timeoutMs?: number) => labCli(work, script, args, timeoutMs);

before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-sites-test-'));
  sitesDir = path.join(work, 'sites');
  await assertLabUp(['mgr1', 'wrk1', 'wrk2', 'db1', 'db2', 'db3']);
  await convergeSitePrerequisites(work);
});

after(async () => {
  // remove what this test created (sites A and B), then the temporary directory
  for (const s of [A, B]) {
    if (existsSync(path.join(sitesDir, `${s.id}.yml`)))
      await cli('playbooks/remove-site.ts', ['--domain', s.domain, '--yes', '--no-backup', '--sites-dir', sitesDir]);
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

test('bad input: invalid domain, shell metacharacters, no database → exit 4, nothing written', { timeout: 120_000 }, async () => {
  for (const domain of ['not a domain', 'a$(touch /tmp/pwned).com', 'x.com;reboot', 'UPPER.example.com', 'nodot']) {
    const r = await cli('playbooks/add-site.ts', ['--domain', domain, '--sites-dir', sitesDir]);
    assert.equal(r.code, 4, `${domain}: exit 4, got ${r.code}\n${r.out}`);
    assert.match(r.out, /error: .*(domain|label|labels)/i, `${domain}: a clear message: ${r.out}`);
  }
  assert.ok(!existsSync(sitesDir) || readdirSync(sitesDir).length === 0, 'no record written');
  // an inventory without database hosts
  const inv = parseYaml(readFileSync(INVENTORY, 'utf8')) as {
    groups: Record<string, unknown>;
    settings: Record<string, unknown>;
    hosts: Record<string, { key?: string }>;
  };
  delete inv.groups.db;
  inv.settings.known_hosts = KNOWN;
  for (const h of Object.values(inv.hosts)) h.key = KEY;
  const noDb = path.join(work, 'no-db.yml');
  writeFileSync(noDb, stringifyYaml(inv));
  const r = await run(
    process.execPath,
    ['--import', 'tsx', 'playbooks/add-site.ts', '--inventory', noDb, '--domain', `nodb${stamp}.lab.test`, '--sites-dir', sitesDir],
    { cwd: ROOT },
  ).then(
    () => ({ code: 0, out: '' }),
    (e: { code: number; stderr: string }) => ({ code: e.code, out: e.stderr }),
  );
  assert.equal(r.code, 4, r.out);
  assert.match(r.out, /no database hosts/);
  assert.ok(!existsSync(sitesDir) || readdirSync(sitesDir).length === 0, 'no record written');
  const svc = await ssh('mgr1', 'docker service ls --format {{.Name}}');
  assert.doesNotMatch(svc, new RegExp(`wp-(a|b|nodb)${stamp}`), 'no stack created');
});

test('check mode on a new domain predicts every change and changes nothing', { timeout: 15 * 60_000 }, async () => {
  const r = await cli('playbooks/add-site.ts', ['--domain', A.domain, '--title', A.title, '--sites-dir', sitesDir, '--check']);
  assert.equal(r.code, 0, r.out.slice(-3000));
  const ch = changesOf(r.report).join('\n');
  for (const want of [
    /generate secrets/,
    /create secret site_.*_db_password_/,
    /create secret site_.*_wp_keys_/,
    /create database wp_a/,
    /create user wp_a/,
    /grant all on wp_a/,
    /\/uploads/,
    /stack|deploy/i,
    /install WordPress/,
  ]) {
    assert.match(ch, want, `check mode predicts ${want}:\n${ch}`);
  }
  assert.ok(!existsSync(path.join(sitesDir, `${A.id}.yml`)), 'no record written in check mode');
  assert.doesNotMatch(
    await ssh('mgr1', 'docker service ls --format {{.Name}}; docker secret ls --format {{.Name}}'),
    new RegExp(A.id),
    'nothing created on the farm',
  );
  assert.equal(await ssh('db1', `mariadb -N -e ${quote(`SHOW DATABASES LIKE 'wp_a${stamp}%'`)}`), '');
});

test('add-site: serving site (200 + title), post visible from another Galera node, upload shared by the replicas', {
  timeout: 20 * 60_000,
}, async (t) => {
  const t0 = Date.now();
  const r = await cli('playbooks/add-site.ts', ['--domain', A.domain, '--title', A.title, '--sites-dir', sitesDir]);
  t.diagnostic(`add-site took ${((Date.now() - t0) / 1000).toFixed(1)} s, ${r.report?.roundTrips} round trips`);
  assert.equal(r.code, 0, r.out.slice(-4000));
  assert.match(r.out, /WordPress admin for .*password \S{16,}/, 'the admin password is printed once');
  const stack = `wp-${A.id}`;
  const nginxNodes = await nodesOf(`${stack}_nginx`);
  const fpmNodes = await nodesOf(`${stack}_php-fpm`);
  assert.ok(nginxNodes.length >= 1 && fpmNodes.length >= 1, 'tasks running');
  // GET through the site's nginx with the site's Host header
  const page = await inService(nginxNodes[0]!, `${stack}_nginx`, [
    'curl',
    '-sS',
    '-o',
    '/dev/stdout',
    '-w',
    '\n%{http_code}',
    '-H',
    `Host: ${A.domain}`,
    '-H',
    'X-Forwarded-Proto: https',
    'http://127.0.0.1:8080/',
  ]);
  const code = page.split('\n').pop();
  assert.equal(code, '200', `GET / answered ${code}`);
  assert.ok(page.includes(A.title), 'the page shows the site title');
  // the Redis object cache (on by default): the site's redis holds WordPress's keys under the site's prefix
  const redisNode = (await nodesOf(`${stack}_redis`))[0]!;
  const keys = (await inService(redisNode, `${stack}_redis`, ['redis-cli', '--scan'])).split('\n').filter(Boolean);
  assert.ok(keys.includes(`${A.id}:options:alloptions`), `redis holds ${A.id}:options:alloptions: ${keys.slice(0, 10).join(' ')}`);
  assert.deepEqual(
    keys.filter((k) => !k.startsWith(`${A.id}:`)),
    [],
    'every key carries the site prefix',
  );
  // a post created through WordPress, read on another Galera node
  const postTitle = `Post ${stamp} through WordPress`;
  const php = `require '/var/www/html/wp-load.php'; $id = wp_insert_post(['post_title' => $argv[1], 'post_status' => 'publish', 'post_content' => 'x']); echo is_wp_error($id) ? 'ERR' : $id;`;
  const postId = await inService(fpmNodes[0]!, `${stack}_php-fpm`, ['php', '-r', php, postTitle]);
  assert.match(postId, /^[0-9]+$/, `post created: ${postId}`);
  const db = `wp_${A.id.replace(/-/g, '_')}`;
  const seen = await ssh('db3', `mariadb -N -e ${quote(`SELECT post_title FROM \`${db}\`.wp_posts WHERE ID = ${Number(postId)}`)}`);
  assert.equal(seen, postTitle, 'the post is on db3');
  // the user has rights on its database only
  const grants = await ssh(
    'db2',
    `mariadb -N -e ${quote(`SELECT DISTINCT TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE LIKE '''${db}''@%'`)}`,
  );
  assert.equal(grants, db);
  assert.equal(
    await ssh(
      'db2',
      `mariadb -N -e ${quote(`SELECT COUNT(*) FROM mysql.global_priv WHERE User = '${db}' AND JSON_EXTRACT(Priv, '$.access') <> 0`)}`,
    ),
    '0',
    'no global privileges',
  );
  // upload through one php-fpm replica, read through the other, served by nginx
  assert.equal(fpmNodes.length, 2, `two php-fpm replicas on two workers: ${fpmNodes.join(',')}`);
  const body = `uploaded-${stamp}`;
  await inService(fpmNodes[0]!, `${stack}_php-fpm`, [
    'php',
    '-r',
    `file_put_contents('/var/www/html/wp-content/uploads/t-${stamp}.txt', $argv[1]);`,
    body,
  ]);
  assert.equal(
    await inService(fpmNodes[1]!, `${stack}_php-fpm`, ['cat', `/var/www/html/wp-content/uploads/t-${stamp}.txt`]),
    body,
    'the other replica sees the file',
  );
  const served = await inService(nginxNodes[nginxNodes.length - 1]!, `${stack}_nginx`, [
    'curl',
    '-sS',
    '-H',
    `Host: ${A.domain}`,
    `http://127.0.0.1:8080/wp-content/uploads/t-${stamp}.txt`,
  ]);
  assert.equal(served, body, 'nginx serves the upload');
});

test('the rerun of add-site reports zero changes', { timeout: 10 * 60_000 }, async () => {
  const r = await cli('playbooks/add-site.ts', ['--domain', A.domain, '--title', A.title, '--sites-dir', sitesDir]);
  assert.equal(r.code, 0, r.out.slice(-3000));
  assert.deepEqual(changesOf(r.report), [], 'no change on the rerun');
  assert.doesNotMatch(r.out, /WordPress admin for/, 'the password is not printed again');
  // a duplicate domain under another id: exit 4, nothing written
  const dup = await cli('playbooks/add-site.ts', ['--domain', A.domain, '--id', `dup${stamp}`, '--sites-dir', sitesDir]);
  assert.equal(dup.code, 4, dup.out);
  assert.match(dup.out, /already used by/);
  assert.ok(!existsSync(path.join(sitesDir, `dup${stamp}.yml`)), 'no record for the duplicate');
});

test('a second site: no-change reconcile costs constant round trips; sites cannot reach each other', { timeout: 20 * 60_000 }, async () => {
  const one = await cli('playbooks/run-role.ts', ['wp-site', '-e', `wp_sites_dir=${sitesDir}`]);
  assert.equal(one.code, 0, one.out.slice(-3000));
  assert.deepEqual(changesOf(one.report), []);
  const add = await cli('playbooks/add-site.ts', ['--domain', B.domain, '--title', B.title, '--sites-dir', sitesDir]);
  assert.equal(add.code, 0, add.out.slice(-4000));
  const two = await cli('playbooks/run-role.ts', ['wp-site', '-e', `wp_sites_dir=${sitesDir}`]);
  assert.equal(two.code, 0, two.out.slice(-3000));
  assert.deepEqual(changesOf(two.report), []);
  assert.equal(
    two.report!.roundTrips,
    one.report!.roundTrips,
    `round trips with 2 sites (${two.report!.roundTrips}) = with 1 site (${one.report!.roundTrips})`,
  );
  // isolation: from B's php-fpm, A's php-fpm (by its alias on A's network and by its shared-services
  // address) and A's redis are unreachable
  const bNode = (await nodesOf(`wp-${B.id}_php-fpm`))[0]!;
  const aNode = (await nodesOf(`wp-${A.id}_php-fpm`))[0]!;
  const probe = `$s=@fsockopen($argv[1], (int)$argv[2], $en, $es, 3); echo $s ? 'open' : 'closed';`;
  const aShared = await ssh(
    aNode,
    `docker inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}' $(docker ps -q --filter label=com.docker.swarm.service.name=wp-${A.id}_php-fpm | head -n1)`,
  );
  const sharedIp = /shared-services=([0-9.]+)/.exec(aShared)?.[1];
  assert.ok(sharedIp, `A's php-fpm has a shared-services address: ${aShared}`);
  // A's redis and nginx: no address on any network B's containers are attached to (checked structurally:
  // probing an address of A's network from B would route it out of the lab through the default route)
  const nets = async (svc: string): Promise<string[]> =>
    (await ssh('mgr1', `docker service inspect --format '{{range .Spec.TaskTemplate.Networks}}{{.Target}} {{end}}' ${quote(svc)}`))
      .split(/\s+/)
      .filter(Boolean);
  const netName = async (idOrName: string): Promise<string> =>
    ssh('mgr1', `docker network inspect --format '{{.Name}}' ${quote(idOrName)}`);
  const bNets = new Set(await Promise.all((await nets(`wp-${B.id}_php-fpm`)).map(netName)));
  assert.deepEqual(
    [...bNets].sort(),
    ['shared-services', `wp-site-${B.id}`].sort(),
    'B php-fpm: its site network and shared-services only',
  );
  for (const svc of ['redis', 'php-fpm', 'nginx']) {
    const aNets = await Promise.all((await nets(`wp-${A.id}_${svc}`)).map(netName));
    assert.ok(aNets.includes(`wp-site-${A.id}`), `A ${svc} on A's network`);
    const shared = aNets.filter((n) => bNets.has(n));
    if (svc === 'php-fpm')
      assert.deepEqual(shared, ['shared-services'], 'only shared-services is common (php-fpm does not listen there: probed above)');
    else assert.deepEqual(shared, [], `A ${svc} shares no network with B's php-fpm`);
  }
  for (const [h, p] of [
    [`${A.id}-php-fpm`, '9000'],
    [sharedIp, '9000'],
  ] as const) {
    assert.equal(await inService(bNode, `wp-${B.id}_php-fpm`, ['php', '-r', probe, h, p]), 'closed', `B reaches ${h}:${p}`);
  }
  // B's own php-fpm alias works from B (the probe itself is sound)
  assert.equal(await inService(bNode, `wp-${B.id}_php-fpm`, ['php', '-r', probe, `${B.id}-php-fpm`, '9000']), 'open');
});
