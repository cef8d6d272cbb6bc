// The wp-site role as named steps: their names and tags, what each one plans from a given farm probe, and
// the role through the real runner (lib/runner.ts) against scripted managers: check mode, tags, runOnce,
// and the round trips of a no-change reconcile (one: the farm probe).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { EventStream } from '../../lib/events.ts';
import { newHostState, runRole, type RunEnv } from '../../lib/runner.ts';
import { ConnectionPool } from '../../lib/transport.ts';
import type { Connection, ExecResult, HostSpec, Role, RunOptions, StepResult } from '../../lib/types.ts';
import role from '../../roles/wp-site/role.ts';
import { parseSiteRecord, type SiteRecord } from '../../roles/wp-site/site.ts';
import { type FarmState, planFarm, STATE_KEY, wpSiteSteps, type WpSiteDeps } from '../../roles/wp-site/steps.ts';
import type { ImageRefs, StoredSecrets, WpSiteSettings } from '../../roles/wp-site/reconcile.ts';
import { WP_KEY_NAMES } from '../../roles/wp-site/secrets.ts';

const IMAGES: ImageRefs = {
  wordpressFpm: '10.10.0.2:5000/wpfarm/wordpress-fpm:0123456789abcdef',
  nginx: '10.10.0.2:5000/wpfarm/nginx:fedcba9876543210',
  redis: '10.10.0.2:5000/wpfarm/redis:1111222233334444',
  varnish: '10.10.0.2:5000/wpfarm/varnish:aaaabbbbccccdddd',
  changes: [],
};
const deps: WpSiteDeps = { images: async () => IMAGES };

const SETTINGS: WpSiteSettings = {
  sitesDir: 'unused',
  only: [],
  baseImage: 'wpfarm/base:bookworm',
  imagesDir: '/nonexistent',
  registry: '10.10.0.2:5000',
  registryPush: '10.10.0.2:5000',
  glusterMount: '/mnt/gluster/sites',
  endpointMode: 'dnsrr',
  overlayEncrypted: false,
  dbHost: '10.10.0.31',
  dbPort: 3307,
  dbOnNode: false,
  dbAdminHost: 'db1',
  dbUserHost: '10.10.0.%',
  filesHost: 'wrk1',
  waitTimeoutMs: 1000,
  rollout: { delay: '10s', monitor: '30s' },
  health: { interval: '5s', timeout: '3s' },
};

const secretsOf = (id: string): StoredSecrets => ({
  db_password: `db-password-of-${id}`,
  wp_keys: WP_KEY_NAMES.map((k) => `${k}=${`auth-key-of-${id}-`.repeat(4)}`).join('\n'),
  admin_password: `admin-password-of-${id}`,
  created: '2026-11-01T00:00:00.000Z',
  rotated: '2026-11-01T00:00:00.000Z',
});
const record = (id: string): SiteRecord =>
  parseSiteRecord(`sites/${id}.yml`, `id: ${id}\ndomain: ${id}.example.com\n`, { management_cidrs: ['203.0.113.0/24'] });
const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

/** The manager probe's output for a farm where `deployed` stacks run as rendered and `stored` sites have secrets. */
function probeOutput(st: FarmState | null, deployed: string[], stored: string[]): string {
  const svc: string[] = [];
  const digests: string[] = [];
  for (const x of st?.sites ?? []) {
    if (!deployed.includes(x.site.id)) continue;
    digests.push(`${x.rendered.digest}  ./${x.rendered.stack}.yml`);
    for (const [name, s] of Object.entries(x.rendered.services)) {
      const n = s.replicas;
      svc.push(
        JSON.stringify({
          ID: `${x.rendered.stack}${name}`,
          Image: s.image,
          Mode: 'replicated',
          Name: `${x.rendered.stack}_${name}`,
          Replicas: `${n}/${n}`,
        }),
      );
    }
  }
  const secrets = stored.map((id) => `${id} ${JSON.stringify(secretsOf(id))}`);
  return ['%%services', ...svc, '%%digests', ...digests, '%%secrets', ...secrets].join('\n');
}

const plan = (sites: SiteRecord[], out: string, settings: Partial<WpSiteSettings> = {}): FarmState =>
  planFarm({
    manager: 'mgr1',
    settings: { ...SETTINGS, ...settings },
    sites,
    images: IMAGES,
    probeOutput: out,
    vars: {},
    generate: () => secretsOf('new'),
  });

/** A farm of the given sites, all deployed as rendered with their secrets stored: a converged farm's probe. */
function converged(ids: string[]): { sites: SiteRecord[]; out: string } {
  const sites = ids.map(record);
  const first = planFarm({ manager: 'mgr1', settings: SETTINGS, sites, images: IMAGES, probeOutput: probeOutput(null, [], ids), vars: {} });
  return { sites, out: probeOutput(first, ids, ids) };
}

test('the role is a sequence of named steps, each with its own tag, run once per run', () => {
  const steps = wpSiteSteps(deps);
  assert.deepEqual(
    steps.map((s) => [s.title, s.options.tags]),
    [
      ['site images', ['images']],
      ['site state', ['always']],
      ['site secrets', ['secrets']],
      ['site databases', ['database']],
      ['site directories', ['directories']],
      ['site stacks', ['stack']],
      ['site stacks ready', ['wait']],
      ['WordPress install', ['install']],
      ['site exporter', ['exporter']],
      ['site results', ['always']],
    ],
  );
  assert.ok(
    steps.every((s) => s.kind === 'task' && s.options.runOnce),
    'a swarm is one system: every step runs once',
  );
  assert.equal(steps[1]!.options.register, STATE_KEY, 'the state step registers the plan the later steps read');
  assert.deepEqual(role.tags, ['wp-site']);
  assert.equal(role.hosts, 'managers');
});

test('planFarm: orphans come from every record, not from the subset a run reconciles (add-site)', () => {
  const { sites, out } = converged(['blog', 'shop', 'news']);
  // add-site news: the run reconciles news only; blog and shop have records: they are no orphans
  const some = (settings: Partial<WpSiteSettings>, recorded: string[]) =>
    planFarm({
      manager: 'mgr1',
      settings: { ...SETTINGS, ...settings },
      sites: [sites[2]!],
      recorded,
      images: IMAGES,
      probeOutput: out,
      vars: {},
    });
  const only = some({ only: ['news'], full: ['news'] }, ['blog', 'shop', 'news']);
  assert.deepEqual(only.orphans, []);
  assert.deepEqual(
    only.todo.map((x) => x.site.id),
    ['news'],
  );
  // a stack whose record was removed is one, whichever subset the run reconciles
  const gone = some({ only: ['news'] }, ['blog', 'news']);
  assert.deepEqual(gone.orphans, ['wp-shop']);
});

test("planFarm: a converged farm plans nothing; a change, a new site, add-site's site and an orphan are planned", () => {
  const { sites, out } = converged(['blog', 'shop']);
  const none = plan(sites, out);
  assert.deepEqual(none.todo, []);
  assert.equal(none.unchanged, 2);
  assert.deepEqual(
    none.sites.map((x) => x.newSecrets),
    [false, false],
  );
  assert.deepEqual(none.orphans, []);

  // add-site's site is checked completely even when its stack is unchanged
  const full = plan(sites, out, { full: ['shop'] });
  assert.deepEqual(
    full.todo.map((x) => [x.site.id, x.reasons]),
    [['shop', ['checked completely (add-site)']]],
  );

  // an edited record: its stack only
  const edited = [
    sites[0]!,
    parseSiteRecord('sites/shop.yml', 'id: shop\ndomain: shop.example.com\nreplicas: 3\n', { management_cidrs: ['203.0.113.0/24'] }),
  ];
  const upd = plan(edited, out);
  assert.deepEqual(
    upd.todo.map((x) => x.site.id),
    ['shop'],
  );
  assert.match(upd.todo[0]!.reasons[0]!, /^update: /);

  // a new record: secrets generated (the secrets step writes them), stack created
  const added = plan([...sites, record('news')], out);
  assert.deepEqual(
    added.todo.map((x) => [x.site.id, x.newSecrets, x.reasons[0]?.split(':')[0]]),
    [['news', true, 'create']],
  );
  assert.equal(added.todo[0]!.stored.db_password, 'db-password-of-new');
  assert.ok(added.todo[0]!.rendered.secrets.every((s) => s.name.startsWith('site_news_')));

  // a record removed: its stack is an orphan (remove-site's job), nothing planned
  const orphan = plan([sites[0]!], out);
  assert.deepEqual(orphan.todo, []);
  assert.deepEqual(orphan.orphans, ['wp-shop']);

  // the JSON report sees a summary: no secret value, no render
  const json = JSON.stringify(added);
  assert.doesNotMatch(json, /password-of|auth-key-of|services:/);
  assert.deepEqual(JSON.parse(json).todo, [{ site: 'news', reasons: [added.todo[0]!.reasons[0]] }]);
});

// ---------------------------------------------------------------------------------------------------
// the role through the real runner, against scripted managers

const SWARM = '{"LocalNodeState":"active","ControlAvailable":true,"NodeID":"n1","Managers":2,"Nodes":4}';

interface Farm {
  probe: string;
  /** docker secret names present */
  secrets: string[];
  /** stack files present: name -> content */
  stacks: Record<string, string>;
  commands: string[];
  /** accept any other command (the apply scripts) with exit 0; uploads go to `puts` */
  applies?: boolean;
  puts?: string[];
  /** called on each command and upload (a test presses Ctrl-C from here, or fails one) */
  onCommand?: (command: string) => void;
  /** an upload takes this long (ms): uploads in flight at once are counted in maxPuts */
  putMs?: number;
  maxPuts?: number;
}

let inFlight = 0;

function fakeConn(host: HostSpec, farm: Farm): Connection & { abortChannels(): Promise<string[]> } {
  let trips = 0;
  return {
    host,
    get roundTrips() {
      return trips;
    },
    async exec(command: string): Promise<ExecResult> {
      trips++;
      farm.commands.push(`${host.name}: ${command}`);
      farm.onCommand?.(command);
      const ok = (stdout: string): ExecResult => ({ stdout, stderr: '', code: 0 });
      if (command.includes('/var/lib/wpfarm/site-secrets/*.json')) return ok(farm.probe);
      if (command.includes('%%versions')) return ok(['%%versions', ...farm.secrets, '%%swarm', SWARM].join('\n'));
      const stack = /\/var\/lib\/wpfarm\/stacks\/([\w-]+)\.yml/.exec(command)?.[1];
      if (stack && command.includes('exists=')) {
        const c = farm.stacks[stack];
        const head = c ? `exists=yes\nsha256=${sha(c)}` : 'exists=no';
        const content = c ? Buffer.from(c).toString('base64') : '';
        return ok([head, '%%swarm', SWARM, '%%services', '%%secrets', ...farm.secrets, '%%content', content].join('\n'));
      }
      if (farm.applies) return ok('');
      throw new Error(`unexpected command on ${host.name}: ${command.slice(0, 200)}`);
    },
    put: async (p: string) => {
      if (!farm.puts) throw new Error('no upload expected');
      trips++;
      inFlight++;
      farm.maxPuts = Math.max(farm.maxPuts ?? 0, inFlight);
      try {
        if (farm.putMs) await new Promise((r) => setTimeout(r, farm.putMs));
        farm.onCommand?.(`put ${p}`);
        farm.puts.push(`${host.name}:${p}`);
      } finally {
        inFlight--;
      }
    },
    forward: async () => {
      throw new Error('no database connection expected');
    },
    close: async () => {},
    abortChannels: async () => [],
  };
}

class FakePool extends ConnectionPool {
  readonly fakes = new Map<string, Connection & { abortChannels(): Promise<string[]> }>();
  constructor(private readonly farm: Farm) {
    super();
  }
  override get(host: HostSpec): Promise<Connection & { abortChannels(): Promise<string[]> }> {
    const c = this.fakes.get(host.name) ?? fakeConn(host, this.farm);
    this.fakes.set(host.name, c);
    return Promise.resolve(c);
  }
  override async totalRoundTrips(): Promise<number> {
    return [...this.fakes.values()].reduce((n, c) => n + c.roundTrips, 0);
  }
}

async function runWpSite(
  sitesDir: string,
  farm: Farm,
  o: Partial<RunOptions> = {},
  d: WpSiteDeps = deps,
  signal = { interrupted: false },
  vars: Record<string, unknown> = {},
) {
  const mk = (name: string, groups: string[]): HostSpec => ({
    name,
    address: `10.10.0.${name.length}`,
    port: 22,
    user: 'root',
    groups,
    vars: {
      wp_sites_dir: sitesDir,
      management_cidrs: ['203.0.113.0/24'],
      // what SETTINGS says, so that converged() describes this farm
      registry: SETTINGS.registry,
      swarm_endpoint_mode: SETTINGS.endpointMode,
      overlay_encrypted: SETTINGS.overlayEncrypted,
      wp_db_host: SETTINGS.dbHost,
      wp_db_user_host: SETTINGS.dbUserHost,
      // the exporter step (roles/wp-exporter) builds its image on the controller: no password here, it skips
      wp_exporter_db_password_env: 'WPFARM_UNIT_TEST_NO_EXPORTER_PASSWORD',
      ...vars,
    },
  });
  const hosts = [mk('mgr1', ['managers']), mk('mgr2', ['managers']), mk('db1', ['db']), mk('wrk1', ['workers'])];
  const pool = new FakePool(farm);
  const testRole: Role = { ...role, steps: () => wpSiteSteps(d) };
  const env: RunEnv = {
    pool,
    events: new EventStream(),
    options: { check: false, diff: false, forks: 4, verbose: 0, ...o },
    allHosts: new Map(hosts.map((h) => [h.name, h])),
    select: (p) => hosts.filter((h) => h.groups.includes(p) || h.name === p),
    signal,
    hostState: new Map(),
  };
  for (const h of hosts) env.hostState.set(h.name, newHostState());
  const r = await runRole(
    testRole,
    hosts.filter((h) => h.groups.includes('managers')),
    env,
  );
  return { r, trips: await pool.totalRoundTrips(), on: (host: string) => r.results.filter((x) => x.host === host) };
}

const row = (x: StepResult): string =>
  `${x.status} ${x.step}${x.reason ? ` (${x.reason})` : ''}${x.changes.length ? `: ${x.changes.join('; ')}` : ''}`;

function sitesDirWith(ids: string[]): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'wp-site-steps-'));
  for (const id of ids) writeFileSync(path.join(dir, `${id}.yml`), `id: ${id}\ndomain: ${id}.example.com\n`);
  return dir;
}

test('no-change reconcile through the runner: one round trip, every step listed, nothing changed (check and real)', async () => {
  const ids = ['blog', 'shop'];
  const dir = sitesDirWith(ids);
  try {
    const { out } = converged(ids);
    for (const check of [true, false]) {
      const farm: Farm = { probe: out, secrets: [], stacks: {}, commands: [] };
      const { r, trips, on } = await runWpSite(dir, farm, { check });
      assert.deepEqual(
        on('mgr1').map(row),
        [
          'ok site images',
          'ok site state',
          'skipped site secrets (no site differs from its record)',
          'skipped site databases (no site differs from its record)',
          'skipped site directories (no site differs from its record)',
          'skipped site stacks (no site differs from its record)',
          'skipped site stacks ready (no site differs from its record)',
          'skipped WordPress install (no site differs from its record)',
          "skipped site exporter (WPFARM_UNIT_TEST_NO_EXPORTER_PASSWORD is not set in .env (the WordPress exporter's database password))",
          'ok site results',
        ],
        `check=${check}`,
      );
      // the second manager mirrors the outcome of each step (run once, on mgr1)
      assert.equal(on('mgr2').length, 10);
      assert.ok(on('mgr2').every((x) => /ran once on mgr1/.test(x.reason ?? '')));
      assert.equal(trips, 1, `one round trip (the farm probe): ${farm.commands.join('\n')}`);
      assert.deepEqual(
        r.hosts.map((h) => h.status),
        ['ok', 'ok'],
      );
      const st = on('mgr1')[1]!.result as FarmState;
      assert.deepEqual(st.toJSON().todo, []);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("check mode with --tags secrets,stack: a new site's secrets and stack are predicted, nothing is applied", async () => {
  const dir = sitesDirWith(['blog', 'news']);
  try {
    const { out } = converged(['blog']); // news: no secrets stored, not deployed
    const farm: Farm = { probe: out, secrets: [], stacks: {}, commands: [] };
    const { on, trips } = await runWpSite(dir, farm, { check: true, tags: ['secrets', 'stack'] });
    const rows = on('mgr1').map(row);
    assert.equal(rows.length, 4, rows.join('\n'));
    assert.equal(rows[0], 'ok site state');
    assert.match(rows[1]!, /^changed site secrets: news: generate secrets .*site-secrets\/news\.json; /);
    assert.match(rows[1]!, /; news: create secret site_news_db_password_[0-9a-f]{8}; news: create secret site_news_wp_keys_[0-9a-f]{8}$/);
    assert.match(rows[2]!, /^changed site stacks: news: deploy stack wp-news \(3 services: nginx, php-fpm, redis\)$/);
    assert.equal(rows[3], 'ok site results', 'no site failed');
    // probes only: the farm probe, two secret probes, one stack probe; no create, no deploy, no store write
    assert.equal(trips, 4, farm.commands.join('\n'));
    assert.ok(
      farm.commands.every((c) => !/docker (secret|stack) (create|deploy)|install -d/.test(c)),
      farm.commands.join('\n'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--skip-tags images with an image not in the registry: the stack step refuses to deploy', async () => {
  const dir = sitesDirWith(['news']);
  try {
    const farm: Farm = { probe: probeOutput(null, [], []), secrets: [], stacks: {}, commands: [] };
    const missing: WpSiteDeps = {
      images: async () => ({ ...IMAGES, changes: ['image wpfarm/nginx:x would be built and pushed'] }),
    };
    const { r } = await runWpSite(dir, farm, { check: false, skipTags: ['images'], tags: ['stack'] }, missing);
    const failed = r.results.find((x) => x.status === 'failed' && x.host === 'mgr1');
    assert.equal(failed?.step, 'site stacks', JSON.stringify(failed));
    assert.match(failed?.error ?? '', /images not built \(run the images step\): image wpfarm\/nginx:x/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('images not in the registry: the images step refuses and says to run phase 3; nothing is deployed', async () => {
  const dir = sitesDirWith(['news']);
  try {
    const missing: WpSiteDeps = { images: async () => ({ ...IMAGES, changes: ['image wpfarm/nginx:0123 would be built and pushed'] }) };
    const farm: Farm = { probe: probeOutput(null, [], []), secrets: [], stacks: {}, commands: [], applies: true, puts: [] };
    const { r, on } = await runWpSite(dir, farm, {}, missing);
    const first = on('mgr1')[0]!;
    assert.equal(first.step, 'site images');
    assert.equal(first.status, 'failed');
    assert.match(first.error ?? '', /not in the farm's registry \(10\.10\.0\.2:5000\): wpfarm\/nginx:0123\./);
    assert.match(first.error ?? '', /phase 3 of bootstrap: run `npx tsx playbooks\/bootstrap\.ts --phase 3`.*add-site never builds/);
    assert.deepEqual(farm.commands, [], 'no host was asked anything');
    assert.deepEqual(farm.puts, []);
    assert.deepEqual(
      r.hosts.map((h) => h.status),
      ['failed', 'failed'],
    );
    // check mode: the run goes on (it predicts), the step says what a real run would refuse
    const empty: Farm = { probe: probeOutput(null, [], []), secrets: [], stacks: {}, commands: [] };
    const check = await runWpSite(dir, empty, { check: true, tags: ['images', 'stack'] }, missing);
    assert.deepEqual(
      check.on('mgr1').map((x) => `${x.status} ${x.step}`),
      ['ok site images', 'ok site state', 'changed site stacks', 'ok site results'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('wp_site_concurrency: sites at most N at once within a step; a failed site is named at the end, the others go on', async () => {
  const dir = sitesDirWith(['blog', 'news', 'shop', 'wiki']);
  try {
    const farm: Farm = { probe: probeOutput(null, [], []), secrets: [], stacks: {}, commands: [], applies: true, puts: [], putMs: 30 };
    farm.onCommand = (c) => {
      if (c === 'put /var/lib/wpfarm/site-secrets/news.json') throw new Error('disk full');
    };
    const { r, on } = await runWpSite(dir, farm, { tags: ['secrets', 'stack'] }, deps, undefined, { wp_site_concurrency: 2 });
    assert.equal(farm.maxPuts, 2, 'two sites at once, never more');
    const rows = on('mgr1').map((x) => `${x.status} ${x.step}`);
    assert.deepEqual(rows, ['ok site state', 'changed site secrets', 'changed site stacks', 'failed site results']);
    const deployed = farm.commands.filter((c) => /docker stack deploy/.test(c)).map((c) => /wp-(\w+)/.exec(c)?.[1]);
    assert.deepEqual(deployed.sort(), ['blog', 'shop', 'wiki'], 'news failed; the three others were deployed');
    const results = on('mgr1').at(-1)!;
    assert.match(results.error ?? '', /^1 site\(s\) failed, the others went on:\nnews: secrets: disk full$/);
    assert.deepEqual((on('mgr1')[0]!.result as FarmState).toJSON().failed, { news: 'secrets: disk full' });
    assert.equal(r.hosts[0]!.status, 'failed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('check mode predicts exactly what the real run changes (secrets and stack of a new site)', async () => {
  const dir = sitesDirWith(['blog', 'news']);
  try {
    const { out } = converged(['blog']);
    // a new site's secrets are random in each run: their content-hashed names differ, nothing else
    const changesOf = (rs: StepResult[]) =>
      rs.filter((x) => x.host === 'mgr1').map((x) => [x.step, x.status, x.changes.map((c) => c.replace(/_[0-9a-f]{8}\b/g, '_<hash>'))]);
    const check = await runWpSite(dir, { probe: out, secrets: [], stacks: {}, commands: [] }, { check: true, tags: ['secrets', 'stack'] });
    const farm: Farm = { probe: out, secrets: [], stacks: {}, commands: [], applies: true, puts: [] };
    const real = await runWpSite(dir, farm, { check: false, tags: ['secrets', 'stack'] });
    assert.deepEqual(changesOf(real.r.results), changesOf(check.r.results));
    assert.equal(changesOf(real.r.results).length, 4, 'state, secrets, stacks, results');
    // applied: the store entry on both managers, two secrets, one deploy
    assert.deepEqual(farm.puts, ['mgr1:/var/lib/wpfarm/site-secrets/news.json', 'mgr2:/var/lib/wpfarm/site-secrets/news.json']);
    assert.equal(farm.commands.filter((c) => /docker secret create .*site_news_/.test(c)).length, 2);
    assert.equal(farm.commands.filter((c) => /docker stack deploy .*wp-news/.test(c)).length, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C during a step: the site in progress is finished, the next site is not started, no later step runs', async () => {
  const dir = sitesDirWith(['blog', 'news', 'shop']);
  try {
    const { out } = converged(['blog']);
    const signal = { interrupted: false };
    // Ctrl-C while news's secrets are being stored (its first upload)
    const farm: Farm = { probe: out, secrets: [], stacks: {}, commands: [], applies: true, puts: [] };
    farm.onCommand = (c) => {
      if (c.includes('site-secrets/news.json')) signal.interrupted = true;
    };
    const { r, on } = await runWpSite(dir, farm, {}, deps, signal);
    const secrets = on('mgr1').find((x) => x.step === 'site secrets')!;
    assert.equal(secrets.status, 'failed');
    assert.match(secrets.error ?? '', /interrupted: site shop not started/);
    assert.ok(
      farm.puts!.some((p) => p.endsWith('/news.json')),
      'news (in progress) was stored',
    );
    assert.ok(!farm.puts!.some((p) => p.endsWith('/shop.json')), 'shop was not started');
    assert.deepEqual(
      on('mgr1').map((x) => x.step),
      ['site images', 'site state', 'site secrets'],
      'no later step ran',
    );
    assert.ok(!farm.commands.some((c) => /docker stack deploy|CREATE DATABASE/.test(c)));
    assert.deepEqual(
      r.hosts.map((h) => h.error),
      ['interrupted', 'interrupted'],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('image pins (rollback.ts): a pinned site renders with its pinned images; wp_site_unpin (update.ts) ignores the pin', () => {
  const { sites, out } = converged(['blog1', 'blog2']);
  assert.equal(plan(sites, out).todo.length, 0, 'converged');
  const pinned = {
    'php-fpm': '10.10.0.2:5000/wpfarm/wordpress-fpm:0000000000000001',
    nginx: '10.10.0.2:5000/wpfarm/nginx:0000000000000002',
  };
  const pin = { images: pinned, at: '2026-12-06T03:00:00.000Z', reason: 'rollback.ts' };
  const withPin = out.replace('%%secrets', `%%pins\nblog1 ${JSON.stringify(pin)}\n%%secrets`);
  const st = plan(sites, withPin);
  assert.deepEqual(
    st.todo.map((x) => x.site.id),
    ['blog1'],
  );
  const b1 = st.sites.find((x) => x.site.id === 'blog1')!;
  assert.equal(b1.rendered.services['php-fpm']!.image, pinned['php-fpm']);
  assert.equal(b1.rendered.services.nginx!.image, pinned.nginx);
  assert.equal(b1.rendered.services.redis!.image, IMAGES.redis, 'a service the pin does not name keeps the farm image');
  assert.match(b1.reasons.join(' '), /images pinned \(rollback\.ts, 2026-12-06T03:00:00\.000Z\)/);
  assert.match(b1.rendered.yaml, /wordpress-fpm:0000000000000001/);
  // update.ts rolls the site to the farm's images: the pin is ignored for it
  assert.equal(plan(sites, withPin, { unpin: ['blog1'] }).todo.length, 0);
  assert.throws(
    () => plan(sites, out.replace('%%secrets', '%%pins\nblog1 {broken\n%%secrets')),
    /site pin .*blog1\.json is not valid JSON/,
  );
});
