// A probe batch's shared reads (lib/shell.ts memo, gathered; lib/runner.ts probeScript): real bash on this machine,
// stand-in commands that count their calls. Each probe answers the same in a batch as alone; in a batch a command the
// probes run alike runs once, and the units they gather are asked about in one systemctl show and one is-enabled.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { dockerNetwork, imagePresentProbe } from '../../lib/ops/docker.ts';
import { parseUnitState, unitGather, unitProbeScript } from '../../lib/ops/systemd.ts';
import { parseProbes, probeScript } from '../../lib/runner.ts';
import { batchPrelude, gathered, memo } from '../../lib/shell.ts';
import { localExec } from './ops-sys.harness.ts';

function standIns(scripts: Record<string, string>): { bin: string; calls: (name: string) => string[]; done: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-batch-'));
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  for (const [name, body] of Object.entries(scripts))
    fs.writeFileSync(path.join(bin, name), `#!/bin/bash\necho "$*" >> ${dir}/${name}.calls\n${body}\n`, { mode: 0o755 });
  const calls = (name: string) => {
    const f = path.join(dir, `${name}.calls`);
    return fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split('\n').filter(Boolean) : [];
  };
  return { bin, calls, done: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

test('memo: once per batch (stdout and exit status kept), as written outside one; the memo directory is removed', async () => {
  const s = standIns({ probe: 'echo "answer $1"; echo noise >&2; exit 3' });
  try {
    const cmd = 'probe x';
    const one = `${memo(cmd)}; echo "rc=$?"`;
    const alone = await localExec(`PATH=${s.bin}:$PATH\n${one}\n${one}`, { nothrow: true });
    assert.equal(alone.stdout, 'answer x\nrc=3\nanswer x\nrc=3\n');
    assert.equal(s.calls('probe').length, 2, 'outside a batch: the command each time');
    const batch = probeScript([
      { id: 0, script: one },
      { id: 1, script: `( ${one} ) 2>/dev/null` },
      { id: 2, script: `${memo('probe y')}` },
      { id: 3, script: 'echo "$WPFARM_MEMO"' },
    ]);
    const r = await localExec(`PATH=${s.bin}:$PATH\n${batch}`, { nothrow: true });
    const outs = parseProbes(r.stdout);
    // its stdout is kept, not its stderr's place among it
    assert.equal(outs.get('0'), 'noise\nanswer x\nrc=3');
    assert.equal(outs.get('1'), 'answer x\nrc=3', 'the second probe reads the first answer and its exit status');
    assert.equal(outs.get('2'), 'noise\nanswer y', 'another command: its own run');
    assert.deepEqual(s.calls('probe'), ['x', 'x', 'x', 'y'], 'in the batch, x ran once');
    const dir = outs.get('3') ?? '';
    assert.match(dir, /wpfarm-probe\./);
    assert.equal(fs.existsSync(dir), false, 'the memo directory is gone with the script');
  } finally {
    s.done();
  }
});

test('gathered: the words of the batch, none outside it; batchPrelude refuses a word that needs quoting', async () => {
  const show = `echo "[${gathered('units')}]"`;
  assert.equal((await localExec(show)).stdout, '[]\n');
  assert.equal(
    (await localExec(`${batchPrelude(new Map([['units', ['a.service', 'b.socket', 'a.service']]]))}\n${show}`)).stdout,
    '[a.service b.socket]\n',
  );
  assert.throws(() => batchPrelude(new Map([['units', ['a b']]])), /invalid word/);
  assert.throws(() => gathered('Units'), /invalid name/);
  // the runner leaves such a word out of the list instead (its probe asks on its own)
  assert.doesNotThrow(() => probeScript([{ id: 0, script: show, gather: { units: ['a b', 'c.service'] } }]));
});

// systemctl as systemd 252 answers: show prints one block per unit (Names lists its aliases; not-found units too),
// is-enabled one line per unit and stops at the first unit it cannot find (exit 1)
const SYSTEMCTL = `
state() { case "$1" in ssh.service|sshd.service) echo enabled ;; docker.socket) echo disabled ;; journal.service) echo static ;; *) return 1 ;; esac; }
if [ "$1" = is-enabled ]; then shift; shift; for u in "$@"; do s=$(state "$u") || { echo "Failed to get unit file state for $u: No such file or directory" >&2; exit 1; }; echo "$s"; done; exit 0; fi
if [ "$1" = show ]; then
  first=1; for u in "$@"; do case "$u" in *.service|*.socket) ;; *) continue ;; esac
    [ $first = 1 ] || echo; first=0
    case "$u" in
      ssh.service|sshd.service) printf '%s\\n' 'Names=ssh.service sshd.service' LoadState=loaded ActiveState=active SubState=running UnitFileState=enabled NeedDaemonReload=no DropInPaths= ;;
      docker.socket) printf '%s\\n' Names=docker.socket LoadState=loaded ActiveState=inactive SubState=dead UnitFileState=disabled NeedDaemonReload=yes DropInPaths= ;;
      journal.service) printf '%s\\n' Names=journal.service LoadState=loaded ActiveState=active SubState=running UnitFileState=static NeedDaemonReload=no DropInPaths= ;;
      *) printf '%s\\n' "Names=$u" LoadState=not-found ActiveState=inactive SubState=dead UnitFileState= NeedDaemonReload=no DropInPaths= ;;
    esac
  done
fi`;

test('systemd probes in a batch: one systemctl show and one is-enabled for the gathered units, the same answers as alone', async () => {
  const s = standIns({ systemctl: SYSTEMCTL });
  try {
    // gone.service is not found: is-enabled stops there, the units after it are asked on their own
    const units = ['ssh.service', 'sshd.service', 'docker.socket', 'gone.service', 'journal.service'];
    const probes = units.map((u) => ({ script: unitProbeScript(u), gather: unitGather(u) }));
    const alone = await Promise.all(probes.map(async (p) => parseUnitState((await localExec(`PATH=${s.bin}:$PATH\n${p.script}`)).stdout)));
    const aloneCalls = s.calls('systemctl').length;
    assert.equal(aloneCalls, 5 * 2, 'alone: show and is-enabled for each unit');
    assert.deepEqual(
      alone.map((u) => [u.load, u.active, u.enabled, u.needDaemonReload]),
      [
        ['loaded', 'active', 'enabled', false],
        ['loaded', 'active', 'enabled', false],
        ['loaded', 'inactive', 'disabled', true],
        ['not-found', 'inactive', '', false],
        ['loaded', 'active', 'static', false],
      ],
    );
    const r = await localExec(`PATH=${s.bin}:$PATH\n${probeScript(probes.map((p, id) => ({ id, ...p })))}`);
    const outs = parseProbes(r.stdout);
    assert.deepEqual(
      units.map((_, i) => parseUnitState(outs.get(String(i)) ?? '')),
      alone,
    );
    const batchCalls = s.calls('systemctl').slice(aloneCalls);
    assert.deepEqual(batchCalls.filter((c) => c.startsWith('show')).length, 1, batchCalls.join('\n'));
    assert.deepEqual(
      batchCalls.filter((c) => c.startsWith('is-enabled')),
      [
        'is-enabled -- ssh.service sshd.service docker.socket gone.service journal.service',
        'is-enabled -- gone.service',
        'is-enabled -- journal.service',
      ],
      'one is-enabled for all; the units from the one it could not find on, on their own',
    );
    // a template unit is not gathered (systemctl show refuses it, and with it the whole list)
    assert.equal(unitGather('getty@.service'), undefined);
    assert.deepEqual(unitGather('getty@tty1.service'), { units: ['getty@tty1.service'] });
  } finally {
    s.done();
  }
});

// docker as 20.10 answers: network inspect prints a line per network found (the format given) and an error for each
// one missing; manifest inspect of an unreachable registry fails before asking for the image
const DOCKER = `
if [ "$1 $2" = "network inspect" ]; then
  fmt=$4; shift 5; rc=0
  for n in "$@"; do case "$n" in
    gone) echo "Error: No such network: $n" >&2; rc=1 ;;
    *) j="{\\"Name\\":\\"$n\\",\\"Driver\\":\\"overlay\\",\\"Attachable\\":true}"; if [ "$fmt" = '{{json .}}' ]; then echo "$j"; else echo "$n $j"; fi ;;
  esac; done; exit $rc
fi
case "$1 $2" in
  "image inspect") exit 1 ;;
  "image ls") printf '%s\\n' 'portainer/portainer-ce:2.23.0' 'wpfarm/other:1' ;;
  "info --format") echo '{"LocalNodeState":"inactive"}'; echo pulls=0 ;;
  "manifest inspect") echo 'failed to configure transport: error pinging v2 registry: Get "https://registry-1.docker.io/v2/": dial tcp: no such host' >&2; exit 1 ;;
esac`;

test('docker probes in a batch: one network inspect for the gathered networks, one image list, one manifest question per unreachable registry', async () => {
  const s = standIns({ docker: DOCKER });
  try {
    const probes = [
      ...['traefik-public', 'gone', 'monitoring'].map((name) => dockerNetwork({ name, attachable: true }).probe({} as never)!),
      ...['grafana/grafana:11.3.1', 'portainer/portainer-ce:2.23.0'].map(imagePresentProbe),
    ];
    const alone = await Promise.all(probes.map(async (p) => (await localExec(`PATH=${s.bin}:$PATH\n( ${p.script}\n) 2>&1`)).stdout.trim()));
    const aloneCalls = s.calls('docker').length;
    const outs = parseProbes((await localExec(`PATH=${s.bin}:$PATH\n${probeScript(probes.map((p, id) => ({ id, ...p })))}`)).stdout);
    assert.deepEqual(
      probes.map((_, i) => outs.get(String(i))),
      alone,
    );
    assert.match(alone[0]!, /^%%net\n\{"Name":"traefik-public",/);
    assert.match(alone[3]!, /^cannot: failed to configure transport: error pinging v2 registry/);
    assert.equal(alone[4], 'present', 'in the image list');
    const calls = s.calls('docker').slice(aloneCalls);
    assert.deepEqual(
      calls.filter((c) => c.startsWith('network inspect')),
      ['network inspect --format {{.Name}} {{json .}} -- traefik-public gone monitoring', 'network inspect --format {{json .}} -- gone'],
      'one for all; the missing one asked on its own',
    );
    assert.equal(calls.filter((c) => c.startsWith('manifest inspect')).length, 1, calls.join('\n'));
    assert.deepEqual(
      calls.filter((c) => c.startsWith('image ')),
      ['image ls --format {{.Repository}}:{{.Tag}}'],
      'the images listed once for every image probe, none inspected',
    );
    assert.equal(
      calls.filter((c) => c.startsWith('info')).length,
      1,
      'docker info once: the swarm state and what the daemon pulls through, one command',
    );
  } finally {
    s.done();
  }
});

test('a batch stopped after its output is gone (TERM, channel closed, then its shell runs) still removes its memo directory', async () => {
  // Ctrl-C: TERM to the batch's process group, then the channel is closed and sshd closes the batch's stdout and
  // stderr. A shell that runs only after that (a busy host) writes bash's "Terminated" for the probe killed under it
  // into the closed pipe: uncaught, SIGPIPE killed it in its TERM trap, before the EXIT trap's rm (the memo directory
  // stayed in /dev/shm, 5 of 5 before the fix). Here the shell is stopped, its group TERMed, its output closed, and
  // it is continued.
  const { spawn } = await import('node:child_process');
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wpfarm-batch-stop-'));
  try {
    for (let i = 0; i < 3; i++) {
      const marker = path.join(tmp, `memo-${i}`);
      const script = `${batchPrelude()}\necho "$WPFARM_MEMO" > ${marker}\nsleep 5\necho done\n`;
      const child = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('exit', (c, s) => r([c, s])));
      for (let j = 0; j < 200 && !fs.existsSync(marker); j++) await sleep(10);
      const memoDir = fs.readFileSync(marker, 'utf8').trim();
      assert.ok(memoDir && fs.existsSync(memoDir), `the batch made its memo directory: ${memoDir}`);
      await sleep(50); // in its probe (sleep)
      process.kill(child.pid!, 'SIGSTOP');
      process.kill(-child.pid!, 'SIGTERM');
      child.stdout.destroy();
      child.stderr.destroy();
      await sleep(50);
      process.kill(child.pid!, 'SIGCONT');
      const [code, signal] = await exited;
      assert.deepEqual([code, signal], [143, null], 'ended by its TERM trap, not killed by SIGPIPE');
      for (let j = 0; j < 50 && fs.existsSync(memoDir); j++) await sleep(10);
      assert.equal(fs.existsSync(memoDir), false, `the memo directory ${memoDir} is removed`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
