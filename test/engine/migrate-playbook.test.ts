// playbooks/migrate-sites.ts and migrate-site.ts as an operator runs them, against two sshd hosts of
// test/harness/sshd.ts: a legacy host (test/harness/legacy-wp.ts) and a farm stand-in that is the inventory's
// db and workers group (the site's database as the wp-site role names it, its directory on the "Gluster mount").
// Checked: a bad plan exits 4 naming file:line; --check changes nothing; a batch killed with SIGKILL mid-copy
// and again mid-cutover resumes and finishes on the rerun, without redoing the finished cutover; a refused site
// in the batch (exit 4) does not stop the others; the DB password is in no output.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from '../../lib/transport.ts';
import { loadSites } from '../../roles/wp-site/site.ts';
import type { Connection } from '../../lib/types.ts';
import { LEGACY_PW, ROOT, seedLegacy, startMariadb, tree, wpConfig } from '../harness/legacy-wp.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

const REPO = resolve(import.meta.dirname, '../..');
let lab: SshdLab;
let legacy: Connection;
let farm: Connection;
let dir: string;

function runPlaybook(args: string[]): { child: ChildProcess; done: Promise<{ code: number | null; signal: string | null; out: string }> } {
  const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'playbooks', args[0]!), ...args.slice(1)], {
    cwd: REPO,
    env: { ...process.env, CI: 'true', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<{ code: number | null; signal: string | null; out: string }>((res) =>
    child.on('close', (code, signal) => res({ code, signal, out })),
  );
  return { child, done };
}

const stateOf = (domain: string) => JSON.parse(readFileSync(join(dir, 'state', `${domain}.json`), 'utf8'));

/** SIGKILL the run once the site's state file says `state` is running (and `afterMs` more) */
async function killDuring(
  args: string[],
  domain: string,
  state: string,
  afterMs: number,
  ready: () => Promise<boolean> = async () => true,
): Promise<void> {
  const { child, done } = runPlaybook(args);
  const deadline = Date.now() + 120_000;
  for (;;) {
    const f = join(dir, 'state', `${domain}.json`);
    if (existsSync(f) && stateOf(domain).running === state && (await ready())) break;
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${state} never started: ${(await done).out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  await new Promise((r) => setTimeout(r, afterMs));
  child.kill('SIGKILL');
  const r = await done;
  assert.equal(r.signal, 'SIGKILL', r.out);
}

describe('migrate-sites.ts / migrate-site.ts (engine: legacy host and farm stand-in)', { timeout: 900_000 }, () => {
  before(async () => {
    lab = await startSshdHosts(2, { prefix: 'mpb' });
    legacy = await connect(lab.hosts[0]!.spec, { knownHosts: lab.knownHosts });
    farm = await connect(lab.hosts[1]!.spec, { knownHosts: lab.knownHosts });
    await Promise.all([startMariadb(legacy, { port: 3307 }), startMariadb(farm, {})]);
    await seedLegacy(legacy, ROOT, 40);
    await tree(legacy, '/srv/www/multi', { config: wpConfig({ extra: "define( 'MULTISITE', true );" }) });
    dir = mkdtempSync(join(tmpdir(), 'wpfarm-migrate-pb-'));
    const farmHost = lab.hosts[1]!;
    writeFileSync(
      join(dir, 'inventory.yml'),
      [
        'settings:',
        `  known_hosts: ${lab.knownHosts}`,
        'vars:',
        '  gluster_mount: /srv/gluster/sites',
        `  wp_sites_dir: ${join(dir, 'sites')}`,
        '  management_cidrs: [192.0.2.0/24]',
        "  wp_db_user_host: '%'",
        'hosts:',
        `  ${farmHost.name}: { address: ${farmHost.address}, port: 22, user: root, key: ${lab.keyFile} }`,
        'groups:',
        `  db: { hosts: [${farmHost.name}] }`,
        `  workers: { hosts: [${farmHost.name}] }`,
        `  managers: { hosts: [${farmHost.name}] }`,
        '',
      ].join('\n'),
    );
    const a = lab.hosts[0]!.address;
    writeFileSync(
      join(dir, 'migrations.yml'),
      `defaults:\n  key: ${lab.keyFile}\nsites:\n  - from: ssh://root@${a}${ROOT}\n    domain: old.example\n    new_domain: nouveau.example.net\n` +
        `  - from: ssh://root@${a}/srv/www/multi\n    domain: multi.example\n`,
    );
    writeFileSync(join(dir, 'bad.yml'), `sites:\n  - from: ssh://root@${a}${ROOT}\n    domain: old.example\n    colour: blue\n`);
  });
  after(async () => {
    await legacy?.close().catch(() => undefined);
    await farm?.close().catch(() => undefined);
    await lab?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  // no Swarm here: the wp-site role (the stack deploy at cutover) is skipped by its tag; what it would find is checked
  const base = () => ['-i', join(dir, 'inventory.yml'), '--state-dir', join(dir, 'state'), '--skip-tags', 'wp-site'];
  const stored = async () =>
    JSON.parse((await farm.exec('cat /var/lib/wpfarm/site-secrets/nouveau-example-net.json')).stdout) as { db_password: string };

  test('a bad plan: exit 4 naming file:line', async () => {
    const r = await runPlaybook(['migrate-sites.ts', '--plan', join(dir, 'bad.yml'), ...base()]).done;
    assert.equal(r.code, 4, r.out);
    assert.match(r.out, /bad\.yml:4:5 sites\[0\]\.colour: unknown key 'colour'/);
  });

  test('--check: what each site would do, nothing changed', async () => {
    const r = await runPlaybook(['migrate-sites.ts', '--plan', join(dir, 'migrations.yml'), '--check', ...base()]).done;
    assert.equal(r.code, 4, r.out); // the multisite is refused
    assert.match(r.out, /old\.example: run inspect → copy → rewrite → verify → cutover → done \(WordPress 6\.1\.9, 6 tables/);
    assert.match(r.out, /multi\.example: refused: \/srv\/www\/multi\/wp-config\.php defines MULTISITE/);
    assert.equal(existsSync(join(dir, 'state', 'old.example.json')), false);
    assert.equal((await farm.exec('test -e /srv/gluster/sites && echo yes || echo no')).stdout.trim(), 'no');
  });

  test('SIGKILL mid-copy, then mid-cutover: each rerun resumes; done once; the refused site does not stop the batch', async () => {
    const args = ['migrate-sites.ts', '--plan', join(dir, 'migrations.yml'), '--concurrency', '2', ...base()];
    // killed once the farm site's secret store entry is written (early in copy): the rerun must reuse it
    const hasEntry = async () =>
      (await farm.exec('test -s /var/lib/wpfarm/site-secrets/nouveau-example-net.json && echo y || true')).stdout.trim() === 'y';
    await killDuring(args, 'old.example', 'copy', 100, hasEntry);
    const killed = stateOf('old.example');
    assert.equal(killed.completed, 'inspect');
    assert.equal(killed.running, 'copy');
    // the farm site exists from the copy on: its record and its secret store entry
    const pw0 = (await stored()).db_password;
    assert.match(readFileSync(join(dir, 'sites', 'nouveau-example-net.yml'), 'utf8'), /^domain: nouveau\.example\.net$/m);
    // the source still serves: no maintenance flag before the cutover
    assert.equal((await legacy.exec(`test -e ${ROOT}/.maintenance && echo yes || echo no`)).stdout.trim(), 'no');

    await killDuring(args, 'old.example', 'cutover', 200);
    const mid = stateOf('old.example');
    assert.equal(mid.running, 'cutover');
    assert.equal(mid.completed, 'verify');

    const r = await runPlaybook(args).done;
    assert.equal(r.code, 4, r.out); // multi.example refused; old.example done
    assert.match(r.out, /old\.example\s+done \(last state: done\)/);
    assert.match(r.out, /multi\.example\s+refused: /);
    const st = stateOf('old.example');
    assert.equal(st.status, 'done');
    const states = st.history.map((h: { state: string; ok?: boolean }) => `${h.state}:${h.ok ?? 'killed'}`);
    assert.deepEqual(states, [
      'inspect:true',
      'copy:killed',
      'copy:true',
      'rewrite:true',
      'verify:true',
      'cutover:killed',
      'cutover:true',
      'done:true',
    ]);
    const cut = st.history.find((h: { state: string; ok?: boolean }) => h.state === 'cutover' && h.ok).summary;
    assert.equal(cut.verified.uploads, 42);
    const files = (await farm.exec('find /srv/gluster/sites/nouveau-example-net/uploads -type f | wc -l')).stdout.trim();
    assert.equal(files, '42');
    const [db] = (
      await farm.exec('mariadb -N -e "SELECT option_value FROM wp_nouveau_example_net.wp_options WHERE option_name = \'home\'"')
    ).stdout
      .trim()
      .split('\n');
    assert.equal(db, 'https://nouveau.example.net');
    assert.match((await legacy.exec(`cat ${ROOT}/.maintenance`)).stdout, /wpfarm migration: old\.example/);

    // a normal farm site: its record (migrated_from), its stored DB password (kept across the reruns) is the user's
    const [rec] = loadSites(join(dir, 'sites'), { management_cidrs: ['192.0.2.0/24'] });
    assert.equal(rec!.id, 'nouveau-example-net');
    assert.equal(rec!.domain, 'nouveau.example.net');
    const mf = rec!.migrated_from!;
    assert.equal(mf.source, `ssh://root@${lab.hosts[0]!.address}${ROOT}`);
    assert.equal(mf.domain, 'old.example');
    assert.ok(Date.parse(mf.started) <= Date.parse(mf.cutover!));
    assert.deepEqual(mf.verification, { tables: 6, rows: cut.verified.rows, uploads: 42 });
    assert.ok(cut.verified.rows > 10);
    assert.equal((await stored()).db_password, pw0, 'the stored password is reused by every rerun');
    const auth = await farm.exec(
      `mariadb -N -e "SELECT authentication_string = PASSWORD('${pw0}') FROM mysql.user WHERE User = 'wp_nouveau_example_net'"`,
    );
    assert.equal(auth.stdout.trim(), '1', 'the site user has the stored password');
    assert.match(JSON.stringify(cut.deployed), /every step of the role skipped/);
    const ls = await runPlaybook(['list-sites.ts', '-i', join(dir, 'inventory.yml'), '--format', 'json']).done;
    assert.equal(ls.code, 0, ls.out);
    assert.match(ls.out, /"domain": ?"nouveau\.example\.net"/);

    // a rerun never redoes the cutover
    const again = await runPlaybook([
      'migrate-site.ts',
      '--from',
      `ssh://root@${lab.hosts[0]!.address}${ROOT}`,
      '--domain',
      'old.example',
      '--new-domain',
      'nouveau.example.net',
      '--key',
      lab.keyFile,
      ...base(),
    ]).done;
    assert.equal(again.code, 0, again.out);
    assert.equal(stateOf('old.example').history.length, st.history.length);
    // rollback: the source serves again
    const rb = await runPlaybook([
      'migrate-site.ts',
      '--from',
      `ssh://root@${lab.hosts[0]!.address}${ROOT}`,
      '--domain',
      'old.example',
      '--rollback',
      '--key',
      lab.keyFile,
      ...base(),
    ]).done;
    assert.equal(rb.code, 0, rb.out);
    assert.equal((await legacy.exec(`test -e ${ROOT}/.maintenance && echo yes || echo no`)).stdout.trim(), 'no');
    for (const o of [r.out, again.out, rb.out, readFileSync(join(dir, 'state', 'old.example.json'), 'utf8')])
      assert.ok(!o.includes(LEGACY_PW) && !o.includes(pw0));
  });
});
