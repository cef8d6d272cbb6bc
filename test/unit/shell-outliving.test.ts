// lib/shell.ts outlivingOutput: a command not safe to stop half-way (apt/dpkg, docker) runs to its end though its
// output is no longer read (the SSH channel closed: a quit, a killed controller, a dropped connection), with the same
// stdout, stderr, stdin and exit status as alone while it is read. Real bash here; lib/transport.ts wraps every such
// command so (the engine proof: test/engine/interrupt.test.ts, the docker command left to finish by a quit).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { outlivingOutput, sh } from '../../lib/shell.ts';
import { wrapCommand } from '../../lib/transport.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-outliving-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('read as usual: the same stdout, stderr, stdin and exit status as the command alone', () => {
  for (const cmd of [
    'echo out; echo err >&2; cat; exit 7',
    'printf "a\\0b"; exit 0 # a comment at the end',
    'set -e; false; echo never',
    "cat <<'EOF'\nheredoc $x\nEOF",
  ]) {
    const alone = spawnSync('bash', ['-c', cmd], { input: 'in\n' });
    const relayed = spawnSync('bash', ['-c', outlivingOutput(cmd)], { input: 'in\n' });
    assert.deepEqual(
      [relayed.stdout.toString('latin1'), relayed.stderr.toString('latin1'), relayed.status],
      [alone.stdout.toString('latin1'), alone.stderr.toString('latin1'), alone.status],
      cmd,
    );
  }
  // killed by a signal: its shell's 128 + n
  const killed = spawnSync('bash', ['-c', outlivingOutput('kill -9 $BASHPID')]);
  assert.equal(killed.status, 137);
});

test('nobody reads its output any more: the command still runs to its end (alone, SIGPIPE killed it at its next write)', async () => {
  const run = async (wrapped: boolean): Promise<{ code: number | null; signal: NodeJS.Signals | null; done: boolean }> => {
    const marker = path.join(dir, `done-${wrapped}`);
    // output on both streams after the reader is gone, more than a pipe holds
    const cmd = `sleep 0.3; echo a; echo b >&2; for i in $(seq 5000); do echo line $i; done; echo c >&2; touch ${marker}`;
    const child = spawn('bash', ['-c', wrapped ? outlivingOutput(cmd) : cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    setTimeout(() => {
      child.stdout.destroy();
      child.stderr.destroy();
    }, 100);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('exit', (c, s) => r([c, s])));
    return { code, signal, done: existsSync(marker) };
  };
  assert.deepEqual(await run(false), { code: null, signal: 'SIGPIPE', done: false }, 'alone: killed half-way');
  assert.deepEqual(await run(true), { code: 0, signal: null, done: true }, 'relayed: ran to its end');
});

test('the transport relays exactly the commands left to finish on Ctrl-C (apt/dpkg, docker), as written otherwise', () => {
  const root = { user: 'root' };
  const sent = (cmd: string) => wrapCommand(root, cmd, {}).command;
  for (const cmd of ['docker stack deploy -c x.yml demo', 'apt-get install -y nginx', 'DEBIAN_FRONTEND=noninteractive dpkg -i x.deb']) {
    assert.equal(sent(cmd), outlivingOutput(cmd), cmd);
    assert.equal(wrapCommand(root, cmd, {}).shown, cmd, 'events and errors show the command as written');
  }
  for (const cmd of ['systemctl restart nginx', 'cat /etc/docker/daemon.json']) assert.equal(sent(cmd), cmd, cmd);
  // through sudo (the relays outside it) and as a long command read from stdin (its comment says what it runs)
  const deploy = 'docker stack deploy -c x.yml demo';
  const user = { user: 'deploy' };
  assert.equal(wrapCommand(user, deploy, { become: true }).command, outlivingOutput(sh`sudo -n -- bash -c ${deploy}`));
  const long = `docker info # ${'x'.repeat(110 * 1024)}`;
  const w = wrapCommand(root, long, {});
  assert.equal(w.command, outlivingOutput(`eval "$(head -c ${Buffer.byteLength(long)})" # runs docker`));
  assert.equal(w.stdinPrefix, long);
});
