// The engine end to end, through the CLI, on real OpenSSH sshd hosts (test/harness/sshd.ts).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildCli } from '../../scripts/build-cli.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json?: Report;
}
interface Report {
  exitCode: number;
  roundTrips: number;
  results: { host: string; step: string; status: string; changes: string[]; error?: string }[];
  hosts: { host: string; ok: number; changed: number; failed: number; unreachable: number }[];
}

let lab: SshdLab;
const SECRET = 'S3cr3t-Value-9f8e7d';

function cli(
  args: string[],
  o: {
    env?: Record<string, string>;
    json?: boolean;
    onSpawn?: (pid: number) => void;
    onStdout?: (text: string) => void;
    fast?: boolean;
  } = {},
): Promise<CliResult> {
  const jsonFile = join(lab.dir, `report-${Math.random().toString(36).slice(2)}.json`);
  // fast: the prebuilt CLI (scripts/build-cli.ts) through its launcher, saying which path it took on stderr
  const start = o.fast ? ['.wpfarm/cli/wpfarm.mjs'] : ['--import', 'tsx'];
  const full = [...start, 'playbooks/run-role.ts', ...args, ...(o.json === false ? [] : ['--json', jsonFile])];
  if (o.fast) o.env = { ...o.env, WPFARM_CLI_DEBUG: '1' };
  return new Promise((resolve) => {
    const child = spawn(process.execPath, full, { env: { ...process.env, CI: 'true', ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    o.onSpawn?.(child.pid!);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      o.onStdout?.(stdout);
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => {
      const json = existsSync(jsonFile) ? (JSON.parse(readFileSync(jsonFile, 'utf8')) as Report) : undefined;
      resolve({ code: code ?? -1, stdout, stderr, json });
    });
  });
}

/** host | step of every change (the wording of a change differs between "would run" and "ran") */
const changed = (r: Report) =>
  r.results
    .filter((x) => x.status === 'changed')
    .map((x) => `${x.host} | ${x.step}`)
    .sort();

const onHost = (name: string, path: string) => join(lab.hosts.find((h) => h.name === name)!.root, path);

before(async () => {
  lab = await startSshdHosts(3);
});
after(async () => {
  await lab?.stop();
});

describe('engine on real sshd hosts', () => {
  test('check predicts exactly, the run makes those changes, the rerun changes nothing', async () => {
    const inv = ['demo-fixture', '--inventory', lab.inventoryFile];
    const role = 'test/fixtures/roles/demo.ts';
    const check = await cli([role, '--inventory', lab.inventoryFile, '--check']);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    assert.ok(!existsSync(onHost('h01', '/srv/demo')), 'check mode created nothing');
    const predicted = changed(check.json!);
    assert.ok(predicted.length >= 3 * 5, `predicted changes: ${predicted.length}`);

    const first = await cli([role, '--inventory', lab.inventoryFile]);
    assert.equal(first.code, 0, first.stdout + first.stderr);
    const made = changed(first.json!);
    assert.deepEqual(made, predicted);
    assert.equal(readFileSync(onHost('h02', '/srv/demo/conf/app.conf'), 'utf8'), 'name=h02\nport=8080\n');
    assert.equal((statSync(onHost('h02', '/srv/demo/conf/app.conf')).mode & 0o777).toString(8), '640');
    // the handler was notified by two steps and ran once per host
    for (const h of lab.hosts) assert.equal(readFileSync(onHost(h.name, '/srv/demo/handler.log'), 'utf8'), 'restarted\n');

    const second = await cli([role, '--inventory', lab.inventoryFile]);
    assert.equal(second.code, 0);
    assert.deepEqual(changed(second.json!), []);
    // an idempotent rerun: one probe round trip per host (+ one facts gather for the task)
    assert.ok(second.json!.roundTrips <= 2 * lab.hosts.length, `round trips on rerun: ${second.json!.roundTrips}`);
    assert.match(second.stdout, /RECAP/);
    const recheck = await cli([role, '--inventory', lab.inventoryFile, '--check']);
    assert.deepEqual(changed(recheck.json!), []);
    void inv;
  });

  test('tags and limit select steps and hosts', async () => {
    const r = await cli([
      'test/fixtures/roles/demo.ts',
      '--inventory',
      lab.inventoryFile,
      '--limit',
      'web,!h02',
      '--skip-tags',
      'other',
      '--check',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const hosts = [...new Set(r.json!.results.map((x) => x.host))].sort();
    assert.deepEqual(hosts, ['h01', 'h03']);
    assert.ok(!r.json!.results.some((x) => x.step.includes('other.conf')));
  });

  test('bad input exits 4 with a clear message', async () => {
    const unknownRole = await cli(['no-such-role', '--inventory', lab.inventoryFile], { json: false });
    assert.equal(unknownRole.code, 4);
    assert.match(unknownRole.stderr, /unknown role 'no-such-role'/);
    const badLimit = await cli(['test/fixtures/roles/demo.ts', '--inventory', lab.inventoryFile, '--limit', 'nosuchhost'], { json: false });
    assert.equal(badLimit.code, 4);
    assert.match(badLimit.stderr, /nosuchhost/);
    const broken = join(lab.dir, 'broken.yml');
    writeFileSync(broken, 'hosts:\n  a: { address: 10.88.0.99 }\n  b:\n    adress: 10.88.0.98\n');
    const badInv = await cli(['test/fixtures/roles/demo.ts', '--inventory', broken], { json: false });
    assert.equal(badInv.code, 4);
    assert.match(badInv.stderr, /broken\.yml:4/);
    assert.match(badInv.stderr, /adress/);
    const envInv = join(lab.dir, 'env.yml');
    writeFileSync(envInv, `vars:\n  api_token: { env: WPFARM_TEST_MISSING_TOKEN }\nhosts:\n  h01: { address: 10.88.0.11 }\n`);
    const missingEnv = await cli(['test/fixtures/roles/demo.ts', '--inventory', envInv], { json: false });
    assert.equal(missingEnv.code, 4);
    assert.match(missingEnv.stderr, /WPFARM_TEST_MISSING_TOKEN/);
    const badFlag = await cli(['test/fixtures/roles/demo.ts', '--inventory', lab.inventoryFile, '--forkz', '3'], { json: false });
    assert.equal(badFlag.code, 4);
  });

  test('a secret never appears in stdout, stderr or the JSON report, even in errors', async () => {
    const r = await cli(['test/fixtures/roles/demo.ts', '--inventory', lab.inventoryFile, '-e', 'fail_on=h02', '--diff', '-v'], {
      env: { WPFARM_DEMO_SECRET: SECRET },
    });
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const jsonText = JSON.stringify(r.json);
    for (const text of [r.stdout, r.stderr, jsonText]) assert.ok(!text.includes(SECRET), 'secret leaked');
    assert.match(r.stdout + jsonText, /failing \*\*\*/);
    // the secret file was written all the same
    assert.equal(readFileSync(onHost('h01', '/srv/demo/conf/secret.env'), 'utf8'), `TOKEN=${SECRET}\n`);
  });

  test('flushHandlers runs notified handlers mid-role; delegateTo; retries until; an unknown handler fails', async () => {
    const r = await cli(['test/fixtures/roles/flow.ts', '--inventory', lab.inventoryFile]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const h01 = r.json!.results.filter((x) => x.host === 'h01').map((x) => x.step);
    const handlerAt = h01.findIndex((s) => s.startsWith('handler h1'));
    const catAt = h01.findIndex((s) => s.startsWith('command cat'));
    assert.ok(handlerAt >= 0 && handlerAt < catAt, `handler ran before the next step: ${h01.join(' | ')}`);
    for (const h of ['h01', 'h02', 'h03'])
      assert.equal(readFileSync(onHost('h01', `/srv/flow/from-${h}`), 'utf8'), `${h}\n`, 'delegated to h01');
    assert.ok(!existsSync(onHost('h02', '/srv/flow/from-h02')), 'not written on the host itself');
    for (const h of lab.hosts) assert.equal(readFileSync(onHost(h.name, '/srv/flow/n'), 'utf8'), '3\n', 'retried until the third run');
    const again = await cli(['test/fixtures/roles/flow.ts', '--inventory', lab.inventoryFile]);
    assert.equal(again.code, 0, again.stdout);
    assert.deepEqual(changed(again.json!), []);
    const bad = await cli(['test/fixtures/roles/flow.ts', '--inventory', lab.inventoryFile, '-e', 'bad_notify=1', '--limit', 'h02']);
    assert.equal(bad.code, 0, 'no change, so nothing is notified');
    execFileSync('rm', ['-f', onHost('h02', '/srv/flow/a')]);
    const bad2 = await cli(['test/fixtures/roles/flow.ts', '--inventory', lab.inventoryFile, '-e', 'bad_notify=1', '--limit', 'h02']);
    assert.equal(bad2.code, 2);
    assert.match(bad2.stdout, /no-such-handler/);
  });

  test('serial batches with maxFailPercentage stop the next batch', async () => {
    const r = await cli(['test/fixtures/roles/serial.ts', '--inventory', lab.inventoryFile, '-e', 'fail_on=h01']);
    assert.equal(r.code, 2);
    assert.ok(existsSync(onHost('h01', '/srv/serial-ran')));
    assert.ok(!existsSync(onHost('h02', '/srv/serial-ran')));
    assert.ok(!existsSync(onHost('h03', '/srv/serial-ran')));
  });

  test('a host killed mid-run is unreachable, the others finish, the retry file reruns it', async () => {
    const role = 'test/fixtures/roles/demo.ts';
    const run = cli([role, '--inventory', lab.inventoryFile, '-e', 'sleep_ms=2500']);
    await new Promise((r) => setTimeout(r, 1200));
    await lab.killSshd('h02');
    const r = await run;
    assert.equal(r.code, 3, r.stdout + r.stderr);
    const h02 = r.json!.hosts.find((h) => h.host === 'h02')!;
    assert.ok(h02.unreachable >= 1);
    for (const h of ['h01', 'h03']) assert.equal(r.json!.hosts.find((x) => x.host === h)!.failed, 0);
    const retry = r.stdout.match(/retry file: (\S+)/)?.[1];
    assert.ok(retry && existsSync(retry), r.stdout);
    assert.deepEqual(
      readFileSync(retry, 'utf8')
        .split('\n')
        .filter((l) => l && !l.startsWith('#')),
      ['h02'],
    );
    await lab.startSshd('h02');
    const again = await cli([role, '--inventory', lab.inventoryFile, '--limit', `@${retry}`]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.deepEqual([...new Set(again.json!.results.map((x) => x.host))], ['h02']);
    assert.equal(readFileSync(onHost('h02', '/srv/demo/conf/app.conf'), 'utf8'), 'name=h02\nport=8080\n');
  });

  test('SIGINT stops cleanly: recap printed, non-zero exit, no half-written file', async () => {
    let pid = 0;
    let started: () => void = () => undefined;
    const roleStarted = new Promise<void>((r) => (started = r));
    const run = cli(['test/fixtures/roles/bigwrite.ts', '--inventory', lab.inventoryFile], {
      onSpawn: (p) => (pid = p),
      onStdout: (t) => t.includes('ROLE bigwrite') && started(),
      json: false,
    });
    await roleStarted;
    await new Promise((r) => setTimeout(r, 800));
    process.kill(pid, 'SIGINT');
    const r = await run;
    assert.notEqual(r.code, 0);
    assert.match(r.stdout, /RECAP/);
    await new Promise((r2) => setTimeout(r2, 300));
    for (const h of lab.hosts) {
      for (const i of [1, 2, 3, 4]) {
        const p = onHost(h.name, `/srv/big${i}.bin`);
        if (existsSync(p)) assert.equal(statSync(p).size, 64 * 1024 * 1024, `${h.name} big${i} is whole`);
      }
    }
  });

  test('the fast CLI (prebuilt bundle) runs a role as tsx does: check predicts, run changes, reruns change nothing', async () => {
    const wl = ['bench/workload.ts', '--inventory', lab.inventoryFile];
    const fast = async (args: string[]) => {
      await buildCli({ quiet: true });
      const r = await cli(args, { fast: true });
      assert.match(r.stderr, /^wpfarm-cli: bundle [0-9a-f]{16}\/playbooks\/run-role\.mjs$/m, 'ran the bundle');
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return r;
    };
    const check = await fast([...wl, '--check']);
    assert.ok(!existsSync(onHost('h01', '/srv/bench')), 'check mode created nothing');
    const predicted = changed(check.json!);
    const first = await fast(wl);
    // all 23 steps change on every host; check mode skips the one whose `when` needs a file the run creates
    const ready = lab.hosts.map((h) => `${h.name} | file /srv/bench/data/ready`);
    assert.deepEqual(changed(first.json!), [...predicted, ...ready].sort());
    assert.equal(predicted.length, 3 * 22);
    assert.equal(readFileSync(onHost('h03', '/srv/bench/conf/a.conf'), 'utf8'), 'alpha=1\nbeta=2\n');
    const viaTsx = await cli(wl);
    assert.equal(viaTsx.code, 0, viaTsx.stdout + viaTsx.stderr);
    assert.deepEqual(changed(viaTsx.json!), []);
    const rerun = await fast(wl);
    assert.deepEqual(changed(rerun.json!), []);
    assert.equal(rerun.json!.roundTrips, viaTsx.json!.roundTrips, 'same round trips as through tsx');
    assert.equal(rerun.json!.results.length, viaTsx.json!.results.length);
  });

  test('a changed host key is refused with a clear error; the other hosts go on', async () => {
    await lab.rotateHostKey('h03');
    const r = await cli(['test/fixtures/roles/demo.ts', '--inventory', lab.inventoryFile]);
    assert.equal(r.code, 3);
    const h03 = lab.hosts.find((h) => h.name === 'h03')!.address; // the harness's slot decides the subnet
    assert.ok((r.stdout + r.stderr).includes(`HOST KEY CHANGED for ${h03}:`), r.stdout + r.stderr);
    assert.equal(r.json!.hosts.find((h) => h.host === 'h01')!.failed, 0);
  });
});
