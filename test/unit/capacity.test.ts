// Capacity planning (roles/capacity): the price table (checked; a bad one is exit 4 naming file:line), node sizes,
// headroom and rounding, the seed's figures when nothing is measured, mixed measured/assumed, the target's nodes
// and cost, the text and JSON output of playbooks/capacity.ts --no-measure. docker stats' real output shape is
// checked against the real docker CLI in test/contract/capacity-docker-stats.test.ts.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { InputError } from '../../lib/errors.ts';
import { InputErrors } from '../../lib/schema.ts';
import { parseDockerSize, parseDockerStats, parseNodeProbe, siteOfContainer } from '../../roles/capacity/docker-stats.ts';
import { DEFAULT_PLAN_SIZE, fleetSize, type NodeInput, plan, SEED, sitesThatFit, usable } from '../../roles/capacity/model.ts';
import { DEFAULT_PRICES_FILE, loadPriceTable, parsePriceTable, sizeFromSlug } from '../../roles/capacity/prices.ts';
import { bar, renderText } from '../../roles/capacity/render.ts';
import { stackName } from '../../roles/wp-site/stack.ts';
import { specsDir } from '../harness/prism.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const prices = loadPriceTable(path.join(ROOT, DEFAULT_PRICES_FILE));
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `site${i + 1}`);

test('the shipped price table loads, and every slug is one the DigitalOcean OpenAPI spec names', (t) => {
  assert.equal(prices.currency, 'USD');
  assert.ok(prices.sizes.size >= 10, `${prices.sizes.size} sizes`);
  assert.deepEqual(prices.sizes.get('s-8vcpu-16gb'), { slug: 's-8vcpu-16gb', vcpus: 8, memoryMiB: 16384, priceMonthly: 96 });
  const spec = path.join(specsDir(), 'digitalocean-public.v2.bundled.yaml');
  if (!existsSync(spec)) {
    t.skip(`${spec} is not on this machine`);
    return;
  }
  const text = readFileSync(spec, 'utf8');
  const named = new Set([...text.matchAll(/\bs-\d+vcpu-\d+gb\b/g)].map((m) => m[0]));
  assert.ok(named.size >= 10, `the spec names ${named.size} s- sizes`);
  for (const slug of prices.sizes.keys()) assert.ok(named.has(slug), `${slug} is not a size the DigitalOcean spec names`);
  // the spec's own size example (GET /v2/sizes) has the same vcpus and memory as our table
  const ex = /- slug: (s-1vcpu-1gb)\n\s+memory: (\d+)\n\s+vcpus: (\d+)/.exec(text);
  assert.ok(ex, 'the spec has the s-1vcpu-1gb example');
  assert.equal(prices.sizes.get('s-1vcpu-1gb')?.memoryMiB, Number(ex[2]));
  assert.equal(prices.sizes.get('s-1vcpu-1gb')?.vcpus, Number(ex[3]));
});

test('a bad price table is bad input naming file:line:col and field, every problem at once', () => {
  const text = [
    'source: test',
    "as_of: '2024-06'",
    'currency: USD',
    'sizes:',
    '  - { slug: s-2vcpu-4gb, vcpus: 2, memory: 4096, price_monthly: 24 }',
    '  - { slug: s-4vcpu-8gb, vcpus: 2, memory: 8192, price_monthly: 48 }',
    '  - { slug: s-2vcpu-4gb, vcpus: 2, memory: 4096, price_monthly: 20 }',
    '  - { slug: s-8vcpu-16gb, vcpus: 8, memory: 16384, price_monthly: -1 }',
    '  - { slug: s-1vcpu-1gb, vcpus: 1, memory: 1024, price: 6 }',
  ].join('\n');
  try {
    parsePriceTable(text, 'prices.yml');
    assert.fail('accepted');
  } catch (e) {
    assert.ok(e instanceof InputErrors && e.exitCode === 4, String(e));
    const m = e.messages.join('\n');
    // schema problems come first (the cross-field checks run on a table that passed the schema)
    assert.match(m, /^prices\.yml:8:\d+ sizes\[3\]\.price_monthly: must be a number from 0 to 1000000, got the number -1$/m);
    assert.match(m, /^prices\.yml:9:\d+ sizes\[4\]\.price: unknown key 'price'/m);
  }
  const cross = text.split('\n').slice(0, 7).join('\n');
  try {
    parsePriceTable(cross, 'prices.yml');
    assert.fail('accepted');
  } catch (e) {
    assert.ok(e instanceof InputErrors, String(e));
    assert.deepEqual(
      e.messages.map((x) => x.replace(/:\d+ /, ' ')),
      [
        'prices.yml:6 sizes[1].vcpus: s-4vcpu-8gb has 4 vCPUs by its name, the table says 2',
        'prices.yml:7 sizes[2].slug: s-2vcpu-4gb is listed twice',
      ],
    );
  }
  assert.throws(
    () => parsePriceTable('source: x\nas_of: 2024\ncurrency: usd\nsizes: []\n', 'p.yml'),
    (e: unknown) => {
      assert.ok(e instanceof InputErrors);
      assert.equal(e.problems.length, 3, e.message);
      return true;
    },
  );
  assert.throws(() => loadPriceTable('/nonexistent/prices.yml'), /file not found: \/nonexistent\/prices\.yml/);
});

test('slug sizes, and what fits: floor, never negative, the binding resource', () => {
  assert.deepEqual(sizeFromSlug('s-8vcpu-16gb'), { vcpus: 8, memoryMiB: 16384 });
  assert.deepEqual(sizeFromSlug('gd-2vcpu-8gb-intel'), { vcpus: 2, memoryMiB: 8192 });
  assert.equal(sizeFromSlug('c-2'), undefined);
  // exact division is not lost to floating point: 12288 / 512 = 24
  assert.deepEqual(sitesThatFit(usable({ memMiB: 16384, cpuMilli: 8000 }, 25), { memMiB: 512, cpuMilli: 1 }), {
    sites: 24,
    limitedBy: 'memory',
  });
  assert.deepEqual(sitesThatFit({ memMiB: 1000, cpuMilli: 999 }, { memMiB: 10, cpuMilli: 100 }), { sites: 9, limitedBy: 'cpu' });
  assert.deepEqual(sitesThatFit({ memMiB: -50, cpuMilli: 100 }, { memMiB: 10, cpuMilli: 1 }), { sites: 0, limitedBy: 'memory' });
  // the seed's own figure: a 16 GB node holds 20-25 sites with the defaults
  const n = sitesThatFit(usable({ memMiB: 16384, cpuMilli: 8000 }, 25), { memMiB: SEED.memMiB, cpuMilli: SEED.cpuMilli }).sites;
  assert.ok(n >= SEED.sitesPer16GbNode[0] && n <= SEED.sitesPer16GbNode[1], `${n} sites on s-8vcpu-16gb`);
});

test('nothing measured: the seed figures, sites spread evenly, headroom and cost from the sizes', () => {
  const nodes: NodeInput[] = [
    { name: 'wrk1', size: 's-8vcpu-16gb' },
    { name: 'wrk2', size: 's-4vcpu-8gb' },
    { name: 'odd', size: 'x-unknown' },
  ];
  const p = plan({ nodes, siteIds: ids(9), prices, reservePct: 25, targetSites: 100 });
  assert.deepEqual(p.perSite.memMiB, { value: 500, source: 'assumed', how: 'seed figure (nothing measured)' });
  assert.equal(p.perSite.cpuMilli.value, 300);
  assert.equal(p.perSite.cpuPeakMilli, 650);
  const [a, b, c] = p.nodes;
  assert.equal(a!.sites, 3);
  assert.equal(a!.sitesSource, 'assumed');
  assert.deepEqual(a!.capacity, { memMiB: 16384, cpuMilli: 8000, source: 'size' });
  assert.equal(a!.fits, 20); // 6000 m / 300
  // 12288 - 1500 MiB, 6000 - 900 m left: 17 more sites (cpu binds: 5100 / 300 = 17)
  assert.deepEqual(a!.headroom, { memMiB: 10788, cpuMilli: 5100, sites: 17, limitedBy: 'cpu' });
  assert.equal(b!.fits, 10); // 3000 m / 300 = 10, 6144 MiB / 500 = 12
  assert.equal(c!.fits, null);
  assert.equal(c!.headroom, null);
  assert.match(c!.notes.join('\n'), /size x-unknown is not in .*digitalocean-sizes\.yml/);
  assert.deepEqual(p.totals, { fits: 30, headroomSites: 17 + 7, costMonthly: 96 + 48, unpricedNodes: ['odd'] });
  // the target: planned with the fleet's largest most common size; ceil; one spare; beyond the current 30
  assert.equal(fleetSize(nodes, prices), 's-8vcpu-16gb');
  assert.deepEqual(p.target, {
    sites: 100,
    size: 's-8vcpu-16gb',
    sizeSource: 'fleet',
    sitesPerNode: 20,
    limitedBy: 'cpu',
    nodes: 5,
    nodesWithSpare: 6,
    costMonthly: 480,
    costMonthlyWithSpare: 576,
    additionalNodes: 4, // (100 - 30) / 20 = 3.5 → 4
    additionalCostMonthly: 384,
  });
  // 101 sites need a sixth node
  assert.equal(plan({ nodes, siteIds: [], prices, reservePct: 25, targetSites: 101 }).target?.nodes, 6);
});

test('measured and assumed mixed: measured per-site mean, measured nodes count their own sites, the rest share the others', () => {
  const nodes: NodeInput[] = [
    {
      name: 'mgr1',
      size: 's-2vcpu-4gb',
      probe: {
        cpus: 2,
        memTotalMiB: 3915.5,
        sites: { blog: { memMiB: 300, cpuMilli: 120 }, shop: { memMiB: 500, cpuMilli: 400 } },
        other: { memMiB: 200, cpuMilli: 100 },
      },
    },
    // a replica of blog on a second node: the site's usage is the sum over nodes
    {
      name: 'wrk1',
      probe: { cpus: 4, memTotalMiB: 7900, sites: { blog: { memMiB: 300, cpuMilli: 80 } }, other: { memMiB: 0, cpuMilli: 0 } },
    },
    { name: 'wrk2', size: 's-4vcpu-8gb', unmeasured: 'no answer' },
    {
      name: 'wrk3',
      size: 's-4vcpu-8gb',
      probe: { cpus: 4, memTotalMiB: 7900, sites: {}, other: { memMiB: 0, cpuMilli: 0 }, statsError: 'x' },
    },
  ];
  const p = plan({ nodes, siteIds: ['blog', 'shop', 'news', 'docs'], prices, reservePct: 25, given: { cpuMilli: 250 } });
  // blog 600 MiB (two nodes), shop 500: mean 550; CPU given on the command line wins over the measured mean
  assert.deepEqual(p.perSite.memMiB, { value: 550, source: 'measured', how: 'mean of 2 site(s), docker stats' });
  assert.deepEqual(p.perSite.cpuMilli, { value: 250, source: 'given', how: 'given on the command line' });
  assert.equal(p.measuredSites, 2);
  const [mgr1, wrk1, wrk2, wrk3] = p.nodes;
  assert.deepEqual([mgr1!.sites, mgr1!.sitesSource, mgr1!.capacity?.source], [2, 'measured', 'measured']);
  assert.deepEqual(mgr1!.used, { memMiB: 800, cpuMilli: 520, source: 'measured' });
  // 3915.5 * .75 - 200 = 2736.6 MiB and 1500 - 100 = 1400 m for sites: fits min(4.97, 5.6) = 4
  assert.equal(mgr1!.fits, 4);
  // left 1936.6 MiB (rounded 1937), 880 m: 3 more
  // (memory 1936.6 / 550 = 3.521 sites, CPU 880 / 250 = 3.520: CPU binds, by a hair)
  assert.deepEqual(mgr1!.headroom, { memMiB: 1937, cpuMilli: 880, sites: 3, limitedBy: 'cpu' });
  assert.equal(wrk1!.sites, 1);
  // news and docs were seen nowhere: an even share on the two nodes without container figures
  assert.deepEqual([wrk2!.sites, wrk2!.sitesSource, wrk2!.used.memMiB], [1, 'assumed', 550]);
  assert.deepEqual([wrk3!.sites, wrk3!.sitesSource, wrk3!.capacity?.source], [1, 'assumed', 'measured']);
  assert.deepEqual(wrk2!.notes, ['not measured: no answer']);
  assert.deepEqual(wrk3!.notes, ['no container figures: x']);
  assert.deepEqual(p.totals.unpricedNodes, ['wrk1']);
  const text = renderText(p);
  assert.match(text, /per site 550 MiB \(measured: mean of 2 site\(s\), docker stats\), 250 mCPU \(given: given on the command line\)/);
  assert.match(text, /^measured: per-site usage \(2 site\(s\)\); node CPUs and memory \(nproc, \/proc\/meminfo\); sites and containers/m);
  assert.match(
    text,
    /^assumed: {2}sites spread evenly over the nodes not measured; node size from its slug in the price table; 25% reserve/m,
  );
  assert.doesNotMatch(text, /assumed: {2}\d+ MiB per site/);
});

test('the target: --size, a size not in the table, a site that fits no node, the default size', () => {
  const base = { nodes: [] as NodeInput[], siteIds: [], prices, reservePct: 25 };
  assert.equal(plan({ ...base, targetSites: 50 }).target?.size, DEFAULT_PLAN_SIZE);
  assert.equal(plan({ ...base, targetSites: 50 }).target?.sizeSource, 'default');
  const big = plan({ ...base, targetSites: 500, planSize: 's-32vcpu-192gb' }).target!;
  // 147456 MiB / 500 = 294, 24000 m / 300 = 80: CPU binds
  assert.deepEqual([big.sitesPerNode, big.limitedBy, big.nodes, big.costMonthly], [80, 'cpu', 7, 6720]);
  assert.throws(
    () => plan({ ...base, targetSites: 5, planSize: 's-9vcpu-1gb' }),
    (e: unknown) => e instanceof InputError && /--size s-9vcpu-1gb is not in the price table .* \(sizes: s-1vcpu-1gb, /.test(e.message),
  );
  assert.throws(
    () => plan({ ...base, targetSites: 5, planSize: 's-1vcpu-1gb', given: { memMiB: 900 } }),
    /not one site \(900 MiB, 300 mCPU\) fits a s-1vcpu-1gb node after its 25% reserve/,
  );
  assert.throws(() => plan({ ...base, reservePct: 95 }), /--reserve must be from 0 to 90/);
});

test('bars: proportional, a small part still shows, unknown capacity is ?', () => {
  assert.equal(bar(100, [[50, '#']], 10), '[#####.....]');
  assert.equal(
    bar(
      1000,
      [
        [1, '#'],
        [0, '+'],
      ],
      10,
    ),
    '[#.........]',
  );
  assert.equal(
    bar(
      100,
      [
        [80, '#'],
        [40, '+'],
      ],
      10,
    ),
    '[########++]',
  );
  assert.equal(bar(0, [[1, '#']], 4), '[????]');
});

test('docker stats lines: sizes in binary and decimal units, "--" rows left out, site of a swarm task', () => {
  assert.equal(parseDockerSize('31.46MiB'), 31.46 * 1024 ** 2);
  assert.equal(parseDockerSize('1.5GiB'), 1.5 * 1024 ** 3);
  assert.equal(parseDockerSize('0B'), 0);
  assert.equal(parseDockerSize('12kB'), 12000);
  assert.ok(Number.isNaN(parseDockerSize('--')));
  const rows = parseDockerStats(
    [
      '{"BlockIO":"0B / 0B","CPUPerc":"50.00%","Container":"aa","ID":"aa","MemPerc":"1.00%","MemUsage":"80MiB / 7.654GiB",' +
        '"Name":"wp-blog_nginx.1.x","NetIO":"0B / 0B","PIDs":"3"}',
      '{"BlockIO":"--","CPUPerc":"--","Container":"bb","ID":"bb","MemPerc":"--","MemUsage":"-- / --",' +
        '"Name":"gone","NetIO":"--","PIDs":"--"}',
      '',
    ].join('\n'),
  );
  assert.deepEqual(rows, [{ name: 'wp-blog_nginx.1.x', cpuMilli: 500, memMiB: 80 }]);
  // captured on this machine (docker 28.2.2, `docker stats --no-stream --format '{{json .}}'`, the lab's node containers
  // on a cgroup v1 host): docker could not read their cgroups; that is "no figures", not an idle site
  const captured =
    '{"BlockIO":"0B / 0B","CPUPerc":"0.00%","Container":"c5b02ccd51e6","ID":"c5b02ccd51e6","MemPerc":"0.00%",' +
    '"MemUsage":"0B / 0B","Name":"wpfarm-lab-mon1","NetIO":"0B / 0B","PIDs":"0"}';
  assert.deepEqual(parseDockerStats(captured), []);
  const none = parseNodeProbe(`%%nproc\n2\n%%meminfo\nMemTotal: 2048 kB\n%%stats\n${captured}\n${captured}\n`);
  assert.equal(none.statsError, 'docker stats gave no figures for its 2 container(s) ("--" or "0B / 0B")');
  assert.throws(() => parseDockerStats('{"Name":"x"}'), /without Name, CPUPerc and MemUsage/);
  assert.equal(siteOfContainer('wp-blog_php-fpm.2.k', stackName, ['blog', 'blog-2']), 'blog');
  assert.equal(siteOfContainer('wp-blog-2_nginx.1.k', stackName, ['blog', 'blog-2']), 'blog-2');
  assert.equal(siteOfContainer('monitoring_prometheus.1.k', stackName, ['blog']), undefined);
  assert.equal(siteOfContainer('registry', stackName, ['blog']), undefined);
  const p = parseNodeProbe('%%nproc\n2\n%%meminfo\nMemTotal:       4009488 kB\nMemAvailable:   3000000 kB\n%%stats\n%%no-docker\n');
  assert.deepEqual(p, {
    cpus: 2,
    memTotalMiB: 4009488 / 1024,
    memAvailableMiB: 3000000 / 1024,
    containers: [],
    statsError: 'docker is not installed',
  });
  const f = parseNodeProbe('%%nproc\n2\n%%meminfo\nMemTotal: 1024 kB\n%%stats\nCannot connect to the Docker daemon\n%%docker-failed 1\n');
  assert.equal(f.statsError, 'docker stats failed (exit 1): Cannot connect to the Docker daemon');
  assert.throws(() => parseNodeProbe('%%nproc\n\n%%meminfo\n'), /no CPU count or MemTotal/);
});

test('playbooks/capacity.ts --no-measure: the table, the target, --format json, a bad price table exits 4 naming file:line', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-capacity-'));
  try {
    mkdirSync(path.join(dir, 'sites'));
    for (const id of ['blog', 'shop', 'news'])
      writeFileSync(path.join(dir, 'sites', `${id}.yml`), `id: ${id}\ndomain: ${id}.example.com\n`);
    // sizes: a host var, a group var, and a cloud: group in a second inventory file (-i repeated)
    writeFileSync(
      path.join(dir, 'inv.yml'),
      [
        'vars: { management_cidrs: [10.0.0.0/8] }',
        'hosts:',
        '  mgr1: { address: 10.1.0.1 }',
        '  wrk1: { address: 10.1.0.2 }',
        '  wrk2: { address: 10.1.0.3, vars: { droplet_size: s-4vcpu-8gb } }',
        'groups:',
        '  managers: { hosts: [mgr1] }',
        '  workers: { hosts: [wrk1, wrk2], vars: { droplet_size: s-8vcpu-16gb } }',
      ].join('\n'),
    );
    writeFileSync(
      path.join(dir, 'cloud.yml'),
      [
        'cloud:',
        '  region: fra1',
        '  vpc: { name: v }',
        '  ssh_keys: [123]',
        '  image: debian-12-x64',
        '  groups: { managers: { count: 1, size: s-2vcpu-4gb }, workers: { count: 2, size: s-2vcpu-2gb } }',
        '  management_cidrs: [10.0.0.0/8]',
      ].join('\n'),
    );
    const at = (f: string): string => path.join(dir, f);
    const cli = (...args: string[]) =>
      spawnSync(
        process.execPath,
        ['--import', 'tsx', 'playbooks/capacity.ts', '-i', at('cloud.yml'), '-i', at('inv.yml'), '--sites-dir', at('sites'), ...args],
        { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } },
      );
    const t = cli('--no-measure', '--target-sites', '500');
    assert.equal(t.status, 0, t.stderr);
    assert.match(t.stdout, /^mgr1 +s-2vcpu-4gb +2 +4\.0G +size +1 +assumed +5 /m);
    assert.match(t.stdout, /^wrk1 +s-8vcpu-16gb +8 +16\.0G +size +1 +assumed +20 /m);
    assert.match(t.stdout, /^wrk2 +s-4vcpu-8gb +4 +8\.0G +size +1 +assumed +10 /m);
    assert.match(t.stdout, /^total +3 +35 +32 +168$/m);
    assert.match(t.stdout, /^wrk1 +mem \[#+\.+~+\] +3% of 16\.0G$/m);
    assert.match(
      t.stdout,
      /target 500 site\(s\): 25 x s-8vcpu-16gb \(20 sites each, bound by cpu; size fleet\) = 2400 USD\/month; with one spare/,
    );
    assert.match(t.stdout, /^measured: nothing$/m);
    assert.match(t.stdout, /^assumed: {2}500 MiB per site; 300 mCPU per site \(peak 650\); sites spread evenly/m);
    assert.doesNotMatch(t.stdout, /RECAP/);

    const j = cli('--no-measure', '--format', 'json', '--target-sites', '40', '--size', 's-4vcpu-8gb', '--reserve', '0');
    assert.equal(j.status, 0, j.stderr);
    const p = JSON.parse(j.stdout) as ReturnType<typeof plan>;
    assert.deepEqual(
      p.nodes.map((n) => [n.name, n.size, n.fits]),
      [
        ['mgr1', 's-2vcpu-4gb', 6],
        ['wrk1', 's-8vcpu-16gb', 26],
        ['wrk2', 's-4vcpu-8gb', 13],
      ],
    );
    assert.equal(p.perSite.memMiB.source, 'assumed');
    assert.deepEqual([p.target?.nodes, p.target?.costMonthly, p.target?.sizeSource], [4, 192, 'given']);

    writeFileSync(
      path.join(dir, 'bad.yml'),
      "source: x\nas_of: '2024-06'\ncurrency: USD\nsizes:\n  - { slug: s-2vcpu-4gb, vcpus: 3, memory: 4096, price_monthly: 24 }\n",
    );
    const bad = cli('--no-measure', '--prices', at('bad.yml'));
    assert.equal(bad.status, 4, bad.stderr);
    assert.ok(
      bad.stderr.startsWith(`error: ${at('bad.yml')}:5:`) &&
        / sizes\[0\]\.vcpus: s-2vcpu-4gb has 2 vCPUs by its name, the table says 3\n$/.test(bad.stderr),
      bad.stderr,
    );
    assert.equal(bad.stdout, '');
    const unknown = cli('--no-measure', '--target-sites', '5', '--size', 'nope');
    assert.equal(unknown.status, 4);
    assert.match(unknown.stderr, /--size nope is not in the price table/);
    const range = cli('--no-measure', '--reserve', '95');
    assert.equal(range.status, 4);
    assert.match(range.stderr, /--reserve must be an integer from 0 to 90, got '95'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
