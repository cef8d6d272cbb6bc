// Secrets on real sshd hosts (test/harness/sshd.ts), through the CLI: secrets with \ ' " $ ` newline and regular
// expression characters, given as inventory credentials, appear in step titles (shell-quoted), errors, diffs of
// old and new content (a multiline secret in a file that is rewritten, one in a file that is removed),
// stdout/stderr of commands, logs, changes; every output (stdout, stderr, JSON report, timeline, retry file,
// the run directory's NDJSON event log, report and timeline, the audit lines on the hosts) is searched for each secret in every encoding and for a marker inside each
// secret that survives any text encoding. Meanwhile a sampler reads /proc/*/cmdline inside each host's network
// namespace as fast as it can while a command({ env }) step and the swarm join (the real SWARM_JOIN script
// against a stand-in Docker API socket that answers after 2 s) run: no secret in any command line.
// Also: @revoked refused like real ssh refuses it; file modes (stat) on the host and the controller.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { quote } from 'zx/core';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

const ROOT = resolve(import.meta.dirname, '../..');
let lab: SshdLab;

// each secret holds a marker (Q + digit + letters) that no encoding but base64 changes
const SECRETS: Record<string, string> = {
  ml: 'ml-first-QA1zz9\nml-second-QB2yy8\nml-third-QC3xx7',
  bs: 'bs\\QD4ww6\\tail\\',
  q: "q'QE5vv5'quote",
  dq: 'dq"QF6uu4"x',
  dollar: '$HOME$(id)QG7tt3`x`',
  re: 're.*+?[QH8ss2](y)|^$',
  all: 'a\\b\'c"d$e\nQI9rr1.*x',
  token: 'SWMTKN-1-QJ0qq0abcdefghijklmnopqrstuvwxyz-0123456789',
};
const MARKERS = ['QA1zz9', 'QB2yy8', 'QC3xx7', 'QD4ww6', 'QE5vv5', 'QF6uu4', 'QG7tt3', 'QH8ss2', 'QI9rr1', 'QJ0qq0'];
const envName = (k: string) => `WPFARM_T_SEC_${k.toUpperCase()}`;

/** Independent encodings of a secret (not lib/secrets.ts's list): what must never be found. */
function forms(s: string): string[] {
  const b64 = (x: string) => Buffer.from(x).toString('base64');
  const html = (x: string) => x.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
  return [
    s,
    JSON.stringify(s),
    JSON.stringify(JSON.stringify(s)),
    quote(s),
    quote(quote(s)),
    JSON.stringify(quote(s)),
    encodeURIComponent(s),
    html(s),
    b64(s),
  ];
}

function leaks(where: string, text: string): string[] {
  const found: string[] = [];
  for (const m of MARKERS) if (text.includes(m)) found.push(`${where}: marker ${m}`);
  for (const [k, s] of Object.entries(SECRETS))
    for (const f of forms(s)) if (text.includes(f)) found.push(`${where}: secret ${k} as ${JSON.stringify(f)}`);
  return found;
}

function roleSource(): string {
  return `
import { task } from '${ROOT}/lib/ops/base.ts';
import { command } from '${ROOT}/lib/ops/command.ts';
import { file } from '${ROOT}/lib/ops/files.ts';
import { quote } from '${ROOT}/lib/shell.ts';
import { SWARM_JOIN, swarmJoinBody } from '${ROOT}/roles/swarm-manager/swarm.ts';
import type { Role } from '${ROOT}/lib/types.ts';
const role: Role = {
  name: 'secrets-fixture',
  hosts: 'all',
  steps(ctx) {
    const S = ctx.vars.sec as Record<string, string>;
    return [
      file({ path: '/srv/sec/old.conf', content: 'plain=1\\n' }),
      file({ path: '/srv/sec/gone.conf', state: 'absent' }),
      file({ path: '/srv/sec/secret.env', content: 'TOKEN=' + S.all + '\\n', secret: true }),
      command({
        cmd: ": canary-CMDLINE-7c1; sleep 2; printf '%s' \\"$WPF_A\\" > /srv/sec/env-a; printf '%s' \\"$WPF_B\\" > /srv/sec/env-b",
        env: { WPF_A: S.all, WPF_B: S.ml },
      }),
      task('join ' + quote(S.q) + ' ' + quote(S.ml), async (c) => {
        await c.exec(SWARM_JOIN, { stdin: swarmJoinBody(S.token, c.host.address, '10.88.250.1:2377') });
        c.log('log ' + S.dollar + ' ' + S.re + ' ' + quote(S.bs));
        return { changed: true, changes: ['joined with ' + S.dq + ' ' + JSON.stringify(S.all)] };
      }),
      // the two steps below put secrets in argv on purpose (the role author's own command line: stdout, stderr and
      // errors must still be masked); their processes carry the marker author-argv-3e9 and are left out of the
      // process-listing check, which is about the engine's own command lines
      command({ cmd: ['sh', '-c', ': author-argv-3e9; printf \\'%s\\\\n\\' \"$@\"', 'sh', S.re, S.bs, S.ml] }),
      command({ cmd: ['sh', '-c', ': author-argv-3e9; printf \\'%s\\\\n\\' \"$0\" >&2; printf \\'%s\\\\n\\' \"$1\" \"$2\"; exit 3', S.all, S.ml, S.q] }),
    ];
  },
};
export default role;
`;
}

/** Stand-in for the Docker Engine API on a host's /run/docker.sock: records POST /swarm/join bodies, answers after 2 s. */
function fakeDocker(path: string, bodies: string[]): Promise<Server> {
  rmSync(path, { force: true });
  const srv = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      bodies.push(`${req.method} ${req.url} ${body}`);
      setTimeout(() => res.writeHead(200).end(), 2000);
    });
  });
  return new Promise((ok) => srv.listen(path, () => ok(srv)));
}

const SAMPLER = `
const fs = require('node:fs');
const [out, stop] = process.argv.slice(2);
const seen = new Set();
let sweeps = 0;
while (!fs.existsSync(stop)) {
  for (const p of fs.readdirSync('/proc')) {
    if (p.charCodeAt(0) > 57) continue;
    try { const c = fs.readFileSync('/proc/' + p + '/cmdline', 'latin1'); if (c) seen.add(c.split('\\0').join(' ')); } catch {}
  }
  sweeps++;
}
fs.writeFileSync(out, JSON.stringify({ sweeps, cmdlines: [...seen] }));
`;

function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((ok) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'playbooks/run-role.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, CI: 'true', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => ok({ code: code ?? -1, stdout, stderr }));
  });
}

const mode = (p: string) => statSync(p).mode & 0o777;

before(async () => {
  lab = await startSshdHosts(2, { prefix: 's' });
});
after(async () => {
  await lab?.stop();
});

describe('secrets on real sshd hosts', () => {
  test('no secret in any output, any encoding, nor in any command line on the hosts; modes 0600/0700', async () => {
    const inv = join(lab.dir, 'secrets-inventory.yml');
    const base = readFileSync(lab.inventoryFile, 'utf8');
    const vars = Object.keys(SECRETS).map((k) => `    ${k}: { env: ${envName(k)} }`);
    writeFileSync(inv, `${base.replace(/^hosts:/m, ['vars:', '  sec:', ...vars, 'hosts:'].join('\n'))}`);
    // .mts: an ES module like the project's own files (a .ts outside the project would load as CommonJS, with
    // copies of lib/ that do not share the registered secrets)
    const role = join(lab.dir, 'secrets-role.mts');
    writeFileSync(role, roleSource());
    for (const h of lab.hosts) {
      mkdirSync(join(h.root, 'srv/sec'), { recursive: true });
      writeFileSync(join(h.root, 'srv/sec/old.conf'), `key=${SECRETS.ml}\nother=${SECRETS.re}\nplain=0\n`);
      writeFileSync(join(h.root, 'srv/sec/gone.conf'), `pw=${SECRETS.all}\n${SECRETS.ml}\n`);
    }
    const bodies: string[] = [];
    const servers = await Promise.all(lab.hosts.map((h) => fakeDocker(join(h.root, 'run/docker.sock'), bodies)));
    const out = join(lab.dir, 'out', 'sub');
    rmSync(join(lab.dir, 'out'), { recursive: true, force: true });
    const samplerJs = join(lab.dir, 'sampler.cjs');
    writeFileSync(samplerJs, SAMPLER);
    const samplers = lab.hosts.map((h) => {
      const res = join(lab.dir, `sample-${h.name}.json`);
      const stop = join(lab.dir, `stop-${h.name}`);
      rmSync(stop, { force: true });
      const p = spawn('ip', ['netns', 'exec', h.netns, process.execPath, samplerJs, res, stop], { stdio: 'ignore' });
      return { h, res, stop, done: new Promise((ok) => p.on('close', ok)) };
    });
    const env = Object.fromEntries(Object.entries(SECRETS).map(([k, v]) => [envName(k), v]));
    const json = join(out, 'report.json');
    const timeline = join(out, 'timeline.html');
    const t0 = Date.now();
    const r = await cli([role, '--inventory', inv, '--diff', '-vv', '--json', json, '--timeline', timeline], env);
    const runMs = Date.now() - t0;
    for (const s of samplers) writeFileSync(s.stop, '');
    await Promise.all(samplers.map((s) => s.done));
    await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));

    assert.equal(r.code, 2, `the last step fails on purpose (exit 2)\n${r.stdout}\n${r.stderr}`);
    // the run did what it should: env reached the command, the join body reached the API, the secret file is private
    for (const h of lab.hosts) {
      assert.equal(readFileSync(join(h.root, 'srv/sec/env-a'), 'utf8'), SECRETS.all, 'env value intact (quotes, $, newline)');
      assert.equal(readFileSync(join(h.root, 'srv/sec/env-b'), 'utf8'), SECRETS.ml);
      assert.equal(mode(join(h.root, 'srv/sec/secret.env')), 0o600, 'file({ secret: true }) without a mode is 0600');
      assert.equal(readFileSync(join(h.root, 'srv/sec/old.conf'), 'utf8'), 'plain=1\n');
      assert.equal(existsSync(join(h.root, 'srv/sec/gone.conf')), false);
    }
    assert.equal(bodies.length, 2, 'one join per host');
    for (const b of bodies) {
      assert.match(b, /^POST \/swarm\/join /);
      assert.equal((JSON.parse(b.slice(b.indexOf('{'))) as { JoinToken: string }).JoinToken, SECRETS.token);
    }

    // every output, searched for every secret in every encoding and for the markers
    const report = readFileSync(json, 'utf8');
    const html = readFileSync(timeline, 'utf8');
    // the harness's inventory sends retry files to its own retry_dir (never the user's .wpfarm/retry)
    const retryFile = join(lab.dir, 'retry', 'run-role-' + role.replace(/[^\w.-]+/g, '_') + '.retry');
    const retry = readFileSync(retryFile, 'utf8');
    const audit = lab.hosts.map((h) =>
      existsSync(join(h.root, 'var/lib/wpfarm/audit.log')) ? readFileSync(join(h.root, 'var/lib/wpfarm/audit.log'), 'utf8') : '',
    );
    assert.ok(
      audit.some((a) => a.includes('"kind":"run"')),
      'an audit line was written',
    );
    // the run's own directory (lib/events.ts): the log of every event (commands, diffs, logs, step results) and
    // the report and timeline written there
    const runDir = (JSON.parse(report) as { runDir: string }).runDir;
    const runLog = readFileSync(join(runDir, 'events.ndjson'), 'utf8');
    const outputs: Record<string, string> = {
      stdout: r.stdout,
      stderr: r.stderr,
      report,
      timeline: html,
      retry,
      audit: audit.join('\n'),
      runLog,
      runReport: readFileSync(join(runDir, 'report.json'), 'utf8'),
      runTimeline: readFileSync(join(runDir, 'timeline.html'), 'utf8'),
    };
    const found = Object.entries(outputs).flatMap(([k, v]) => leaks(k, v));
    if (process.env.WPFARM_TEST_DUMP) for (const [k, v] of Object.entries(outputs)) writeFileSync(join(process.env.WPFARM_TEST_DUMP, k), v);
    assert.deepEqual(found, [], 'secrets leaked');
    // and the masks are where the secrets were (the checks above are not vacuous)
    assert.match(r.stdout, /^\s+-key=\*\*\*$/m, 'the old multiline secret of a rewritten file: masked in the diff');
    assert.match(r.stdout, /^\s+-pw=\*\*\*$/m, 'the content of a removed file: masked in the diff');
    assert.match(r.stdout, /join \*\*\* \*\*\*/, 'shell-quoted secrets in a step title');
    assert.match(r.stdout, /log \*\*\* \*\*\* \*\*\*/);
    const rep = JSON.parse(report) as {
      results: { step: string; status: string; error?: string; changes: string[]; result?: { stdout?: string } }[];
    };
    assert.ok(rep.results.some((x) => x.step.includes('join *** ***')));
    assert.ok(
      rep.results.some((x) => x.result?.stdout === '***\n***\n***\n'),
      'command stdout masked in the report',
    );
    assert.ok(rep.results.some((x) => x.status === 'failed' && /\*\*\*/.test(x.error ?? '')));
    assert.ok(html.includes('***'), 'the timeline shows the masked title');
    assert.match(runLog, /"kind":"step\.start"[^\n]*"step":"join \*\*\* \*\*\*"/, 'the event log holds the masked title');
    assert.match(runLog, /"kind":"diff"[^\n]*-key=\*\*\*/, 'the event log holds the masked diff');
    assert.match(runLog, /"kind":"command\.start"/, 'the event log holds the commands');
    assert.match(retry, new RegExp(lab.hosts[0]!.name));

    // controller files: 0600 in a 0700 directory
    assert.equal(mode(json), 0o600);
    assert.equal(mode(timeline), 0o600);
    assert.equal(mode(out), 0o700);
    assert.equal(mode(retryFile), 0o600);
    assert.equal(mode(join(runDir, 'events.ndjson')), 0o600);
    assert.equal(mode(runDir), 0o700);
    assert.equal(mode(join(lab.dir, 'retry')), 0o700);

    // the process listings
    let sweeps = 0;
    for (const s of samplers) {
      const sample = JSON.parse(readFileSync(s.res, 'utf8')) as { sweeps: number; cmdlines: string[] };
      sweeps += sample.sweeps;
      const authorArgv = sample.cmdlines.filter((c) => c.includes('author-argv-3e9'));
      const all = sample.cmdlines.filter((c) => !authorArgv.includes(c)).join('\n');
      assert.ok(all.includes('canary-CMDLINE-7c1'), `${s.h.name}: the sampler saw the command({ env }) step's shell`);
      assert.ok(all.includes('http://localhost/swarm/join'), `${s.h.name}: the sampler saw the join's curl`);
      assert.deepEqual(leaks(`${s.h.name} cmdline`, all), []);
    }
    process.stdout.write(`# run ${runMs} ms; ${sweeps} sweeps of /proc/*/cmdline; outputs searched: ${Object.keys(outputs).join(', ')}\n`);
  });

  test('@revoked host key: refused with a clear message, as real ssh refuses it', async () => {
    const h = lab.hosts[0]!;
    const pub = readFileSync(join(lab.dir, h.name, 'ssh_host_ed25519_key.pub'), 'utf8')
      .split(' ')
      .slice(0, 2)
      .join(' ');
    const kh = join(lab.dir, 'known_hosts_revoked');
    writeFileSync(kh, `${readFileSync(lab.knownHosts, 'utf8')}@revoked ${h.address} ${pub}\n`);
    const ssh = spawnSync(
      'ssh',
      [
        '-o',
        `UserKnownHostsFile=${kh}`,
        '-o',
        'GlobalKnownHostsFile=/dev/null',
        '-o',
        'StrictHostKeyChecking=yes',
        '-o',
        'BatchMode=yes',
        '-i',
        lab.keyFile,
        `root@${h.address}`,
        'true',
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(ssh.status, 255, 'OpenSSH refuses');
    assert.match(ssh.stderr, /REVOKED HOST KEY DETECTED/);
    const inv = join(lab.dir, 'revoked-inventory.yml');
    writeFileSync(inv, readFileSync(lab.inventoryFile, 'utf8').replace(/known_hosts: .*/, `known_hosts: ${kh}`));
    const role = join(lab.dir, 'noop-role.mts');
    writeFileSync(
      role,
      `import { task } from '${ROOT}/lib/ops/base.ts';\nexport default { name: 'noop', hosts: 'all', steps: () => [task('noop', async () => ({ changed: false }))] };\n`,
    );
    const r = await cli([role, '--inventory', inv, '--no-lock'], {});
    assert.equal(r.code, 3, `unreachable (exit 3)\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, new RegExp(`REVOKED HOST KEY DETECTED for ${h.address.replace(/\./g, '\\.')}.*marks @revoked`));
    assert.match(r.stdout, new RegExp(`${lab.hosts[1]!.name} .*ok=1`), 'the other host still runs');
  });
});
