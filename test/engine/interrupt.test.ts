// One Ctrl-C, the way a terminal sends it (SIGINT to the whole process group), under each launcher the README
// names: `npx tsx`, `node --import tsx` and the fast CLI (scripts/build-cli.ts). On real sshd hosts with, in
// flight: a long-running command (h01), a big atomic upload (h02), and on h03 either another stoppable command or
// a `docker ...` command (a stub), which is not safe to stop and is left to finish.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildCli } from '../../scripts/build-cli.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

let lab: SshdLab;
const ROLE = 'test/fixtures/roles/interrupt.ts';
// the harness's inventory sends run directories and retry files to its own directory (never the user's .wpfarm/)
const retryFile = () => join(lab.dir, 'retry', 'run-role-test_fixtures_roles_interrupt.ts.retry');
const MARKERS = ['started', 'long.pid', 'long-done', 'up.bin', 'after', 'docker-started', 'docker-done'];

const LAUNCHERS: Record<string, string[]> = {
  'npx tsx': ['npx', 'tsx', 'playbooks/run-role.ts'],
  'node --import tsx': [process.execPath, '--import', 'tsx', 'playbooks/run-role.ts'],
  'fast CLI': [process.execPath, '.wpfarm/cli/wpfarm.mjs', 'playbooks/run-role.ts'],
};

const onHost = (name: string, path: string) => join(lab.hosts.find((h) => h.name === name)!.root, path);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tempFiles = (name: string) => readdirSync(onHost(name, '/srv')).filter((f) => f.startsWith('.wpfarm.'));
/**
 * What to say when a temp file is left on h02 (CI-like runs 13-15 left one, once a run, cause not yet found): each
 * file's size and age, and the commands still running there (was its script still alive, or gone without its trap?).
 */
function leftoverDiagnosis(): string {
  const files = tempFiles('h02').map((f) => {
    try {
      const st = statSync(onHost('h02', `/srv/${f}`));
      return `${f} (${st.size} bytes, modified ${Math.round(Date.now() - st.mtimeMs)} ms ago)`;
    } catch {
      return `${f} (gone meanwhile)`;
    }
  });
  return `temp files on h02: ${files.join(', ')}; commands running on h02: ${JSON.stringify(hostCommands('h02'))}`;
}

interface Outcome {
  /** the exit status a shell reports ($?): npm ends itself with the signal it got, which a shell shows as 128+2 */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** ms from the first SIGINT to the launcher's exit */
  ms: number;
  /** Date.now() at the exit */
  exitedAt: number;
  report?: { exitCode: number; results: { host: string; step: string; status: string; error?: string }[] };
}

/**
 * Start a run, wait until every host is in its long step (h02's upload has its temp file on the host), then send
 * SIGINT to the process group at each offset (ms after the first), as a terminal's Ctrl-C does.
 */
async function interrupted(launcher: string, o: { signalsAt: number[]; dockerHost?: boolean; atInFlight?: () => void }): Promise<Outcome> {
  for (const h of lab.hosts) for (const m of MARKERS) rmSync(onHost(h.name, `/srv/${m}`), { force: true });
  rmSync(retryFile(), { force: true });
  const json = join(lab.dir, `interrupt-${Date.now()}.json`);
  const [cmd, ...args] = LAUNCHERS[launcher]!;
  const extra = ['-e', 'upload_mb=200', ...(o.dockerHost ? ['-e', 'docker_host=h03'] : [])];
  const child = spawn(cmd!, [...args, ROLE, '--inventory', lab.inventoryFile, '--json', json, ...extra], {
    detached: true, // its own process group: we signal the group, as the terminal does
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CI: 'true', WPFARM_CLI_DEBUG: '1' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('close', (c, s) => r([c, s])));
  const deadline = Date.now() + 60_000;
  const inFlight = () =>
    existsSync(onHost('h01', '/srv/long.pid')) &&
    tempFiles('h02').length > 0 &&
    (o.dockerHost ? existsSync(onHost('h03', '/srv/docker-started')) : existsSync(onHost('h03', '/srv/started')));
  while (!inFlight()) {
    assert.ok(Date.now() < deadline, `the run never reached its long steps:\n${stdout}\n${stderr}`);
    assert.equal(child.exitCode, null, `the run ended early:\n${stdout}\n${stderr}`);
    await sleep(20);
  }
  // the process listing sees the command in flight (so that its absence afterwards means something)
  assert.ok(
    hostCommands('h01').some((c) => /sleep 60/.test(c)),
    `h01's long-running command is listed: ${hostCommands('h01').join('; ')}`,
  );
  o.atInFlight?.();
  const t0 = performance.now();
  // a signal due after the run ended is not sent (the fast CLI can exit before a relayed second SIGINT at 0.1 s:
  // ESRCH then, thrown in a timer after the test ended, failed the file in the CI-like run of 15:10)
  const timers = o.signalsAt.map((at) =>
    setTimeout(() => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-child.pid!, 'SIGINT');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      }
    }, at),
  );
  const [code, signal] = await closed;
  for (const t of timers) clearTimeout(t);
  const ms = performance.now() - t0;
  const exitedAt = Date.now();
  const report = existsSync(json) ? JSON.parse(readFileSync(json, 'utf8')) : undefined;
  return { code: code ?? (signal ? 128 + constants.signals[signal] : null), signal, stdout, stderr, ms, exitedAt, report };
}

/** What must hold after any interrupt: nothing new started, no partial file at a final path, no temp file left. */
async function assertNothingHalfDone(r: Outcome): Promise<void> {
  // the host side of an abandoned upload removes its temp file when its stdin ends: give it a moment
  for (let i = 0; i < 20 && tempFiles('h02').length; i++) await sleep(50);
  if (tempFiles('h02').length) assert.fail(`no temp file left on the host: ${leftoverDiagnosis()}`);
  assert.ok(!existsSync(onHost('h02', '/srv/up.bin')), 'the abandoned upload never lands at its final path');
  for (const h of lab.hosts) assert.ok(!existsSync(onHost(h.name, '/srv/after')), `${h.name}: no new step started`);
  const pid = Number(readFileSync(onHost('h01', '/srv/long.pid'), 'utf8'));
  assert.ok(!existsSync(`/proc/${pid}`) || /^Z/m.test(statusOf(pid)), `h01: the long-running command (pid ${pid}) was stopped`);
  assert.ok(!existsSync(onHost('h01', '/srv/long-done')), 'the rest of the stopped command never ran');
  await assertNoRemoteCommandLeft();
  void r;
}

/**
 * The command lines of the processes running on a host (its sshd's mount namespace), but sshd itself and its
 * per-connection processes: what `ps` on the host shows of the commands wpfarm started.
 */
function hostCommands(name: string): string[] {
  const ns = (pid: number | string) => {
    try {
      return readlinkSync(`/proc/${pid}/ns/mnt`);
    } catch {
      return null;
    }
  };
  const mine = ns(lab.hosts.find((h) => h.name === name)!.pid);
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (ns(pid) !== mine) continue;
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
      if (!args || /^sshd[:-]|\/sshd\b/.test(args) || /^Z/m.test(statusOf(Number(pid)))) continue;
      out.push(`${pid} ${args}`);
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** Every command the run started on the hosts is gone within 1 s of the exit (but the docker stand-in, left to finish). */
async function assertNoRemoteCommandLeft(): Promise<void> {
  let left: string[] = [];
  for (let i = 0; i < 20; i++) {
    left = lab.hosts.flatMap((h) => {
      const cmds = hostCommands(h.name);
      // the docker stand-in's process group (its shell, sleep and output relays) is left to finish
      const kept = new Set(cmds.filter((c) => /docker stack deploy demo/.test(c)).map((c) => groupOf(Number(c.split(' ')[0]))));
      return cmds.filter((c) => !kept.has(groupOf(Number(c.split(' ')[0])))).map((c) => `${h.name}: ${c}`);
    });
    if (!left.length) return;
    await sleep(50);
  }
  assert.deepEqual(left, [], 'no command started by the run is still running on a host');
}

/** The processes but `but` that have `link` (`pipe:[inode]`) open. */
function holders(link: string, but: number): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== but)) {
    try {
      if (readdirSync(`/proc/${pid}/fd`).some((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`) === link)) out.push(Number(pid));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** the process group of a process (its stat's 5th field), or -1 once gone */
function groupOf(pid: number): number {
  try {
    return Number(
      readFileSync(`/proc/${pid}/stat`, 'utf8')
        .replace(/^.*\) /s, '')
        .split(' ')[2],
    );
  } catch {
    return -1;
  }
}

function statusOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8').replace(/^[\s\S]*?State:\s*/, '');
  } catch {
    return 'gone';
  }
}

before(async () => {
  lab = await startSshdHosts(3);
  // a docker client stand-in on h03: takes 8 s, says when it started and when it finished
  const stub = onHost('h03', '/usr/local/bin/docker');
  mkdirSync(join(stub, '..'), { recursive: true });
  // it writes to its stdout before it ends, as docker's client does between API calls: left to finish after a quit,
  // that write goes to a channel nobody reads any more (lib/shell.ts outlivingOutput keeps it from SIGPIPE)
  writeFileSync(stub, '#!/bin/sh\necho "$*" > /srv/docker-started\nsleep 8\necho "deployed $*"\necho "$*" > /srv/docker-done\n');
  chmodSync(stub, 0o755);
  await buildCli({ quiet: true });
});
after(async () => {
  await lab?.stop();
  rmSync(retryFile(), { force: true });
});

test('an upload whose shell runs only after its channel is closed (a busy host) still removes its temp file', async () => {
  // Ctrl-C: TERM to the upload's process group, then its channel is closed and sshd closes the command's stdout and
  // stderr. The script's shell, not scheduled meanwhile on a loaded host, woke up after that: its first write (bash's
  // "Terminated" for the cat killed under it) met the closed pipe and SIGPIPE killed it before its traps ran (CI-like
  // run 15, fast CLI, docker in flight: 1 in 15 runs under load). Here that shell is stopped (SIGSTOP) before the
  // Ctrl-C and continued once sshd has closed its end of the pipe; the docker command keeps the connection open.
  let shell = 0;
  let released = false;
  let resumed: Promise<void> = Promise.resolve();
  const waited = await interrupted('node --import tsx', {
    signalsAt: [0, 100],
    dockerHost: true,
    atInFlight: () => {
      shell = Number(/^\.wpfarm\.(\d+)\./.exec(tempFiles('h02')[0]!)![1]);
      const stderr = readlinkSync(`/proc/${shell}/fd/2`);
      process.kill(shell, 'SIGSTOP');
      resumed = (async () => {
        for (let i = 0; i < 200 && !released; i++) {
          await sleep(25);
          released = holders(stderr, shell).length === 0;
        }
        try {
          process.kill(shell, 'SIGCONT');
        } catch {
          /* gone (it should not be: its traps run only once it is continued) */
        }
      })();
    },
  });
  await resumed;
  assert.ok(released, "sshd closed the upload's output before its shell ran again");
  assert.equal(waited.code, 130, waited.stdout + waited.stderr);
  await assertNothingHalfDone(waited);
  for (let i = 0; i < 200 && !existsSync(onHost('h03', '/srv/docker-done')); i++) await sleep(50);
});

describe('one Ctrl-C stops a run cleanly under every launcher', () => {
  for (const launcher of Object.keys(LAUNCHERS)) {
    test(`${launcher}: recap, retry file, report, exit 130 within 2 s; the relayed second SIGINT (0.1 s) is not a quit`, async () => {
      const r = await interrupted(launcher, { signalsAt: [0, 100] });
      const all = r.stdout + r.stderr;
      console.log(`${launcher}: exit ${r.code}${r.signal ? ` (${r.signal})` : ''} ${Math.round(r.ms)} ms after the first SIGINT`);
      assert.equal(r.code, 130, all);
      assert.ok(r.ms < 2000, `exited ${Math.round(r.ms)} ms after the SIGINT\n${all}`);
      assert.match(r.stdout, /interrupted: stopping/);
      assert.doesNotMatch(all, /second Ctrl-C: quitting now/);
      assert.match(r.stdout, /RECAP/);
      assert.match(r.stdout, /retry file: /);
      const retry = readFileSync(retryFile(), 'utf8')
        .split('\n')
        .filter((l) => l && !l.startsWith('#'));
      assert.deepEqual(retry.sort(), ['h01', 'h02', 'h03']);
      assert.equal(r.report?.exitCode, 130);
      const upload = r.report!.results.find((x) => x.host === 'h02' && x.step === 'big upload');
      assert.equal(upload?.status, 'failed');
      assert.match(upload?.error ?? '', /stopped \(Ctrl-C\)/);
      if (launcher === 'fast CLI') assert.match(r.stderr, /^wpfarm-cli: /m, 'went through the fast CLI launcher');
      await assertNothingHalfDone(r);
    });

    test(`${launcher}: a docker command in flight is said and left to finish; a second Ctrl-C 1.2 s later quits at once`, async () => {
      const waited = await interrupted(launcher, { signalsAt: [0, 100], dockerHost: true });
      const all = waited.stdout + waited.stderr;
      console.log(`${launcher} (docker in flight): exit ${waited.code} ${Math.round(waited.ms)} ms after the first SIGINT`);
      assert.equal(waited.code, 130, all);
      assert.match(waited.stdout, /waiting for 1 command\(s\) that are not safe to stop half-way:\n\s+h03: docker: /);
      const done = statSync(onHost('h03', '/srv/docker-done')).mtimeMs;
      assert.ok(done <= waited.exitedAt && waited.exitedAt - done < 1500, `exit ${waited.exitedAt - done} ms after docker finished`);
      assert.equal(waited.report!.results.find((x) => x.host === 'h03' && x.step === 'docker operation')?.status, 'changed');
      assert.match(waited.stdout, /RECAP/);
      await assertNothingHalfDone(waited);

      const quit = await interrupted(launcher, { signalsAt: [0, 100, 1200], dockerHost: true });
      console.log(`${launcher} (second Ctrl-C at 1.2 s): exit ${quit.code} ${Math.round(quit.ms)} ms after the first SIGINT`);
      assert.equal(quit.code, 130, quit.stdout + quit.stderr);
      assert.match(quit.stdout, /second Ctrl-C: quitting now/);
      assert.doesNotMatch(quit.stdout, /RECAP/);
      // at once: it did not wait for the docker command in flight (8 s long; its end marker is not there yet). How
      // soon after the second Ctrl-C is a timing (1.3-2.5 s after the first at load 10, CI-like run of 2026-12-07):
      // it is printed above, and asserted only to be after the second Ctrl-C and well before the command's end
      assert.ok(!existsSync(onHost('h03', '/srv/docker-done')), 'quit before the docker command in flight ended');
      assert.ok(quit.ms >= 1200 && quit.ms < 6000, `${Math.round(quit.ms)} ms`);
      await assertNoRemoteCommandLeft();
      // quitting at once leaves nothing half-done either: the interrupted upload's temp file goes
      for (let i = 0; i < 20 && tempFiles('h02').length; i++) await sleep(50);
      if (tempFiles('h02').length) assert.fail(`no temp file left on the host after the quit: ${leftoverDiagnosis()}`);
      // left to finish: the docker command runs to its end after the quit, though its last output has nowhere to go
      // (before lib/shell.ts outlivingOutput, that write killed it by SIGPIPE: a docker client stopped half-way)
      for (let i = 0; i < 200 && !existsSync(onHost('h03', '/srv/docker-done')); i++) await sleep(50);
      assert.ok(existsSync(onHost('h03', '/srv/docker-done')), 'the docker command left in flight by the quit ran to its end');
    });
  }
});
