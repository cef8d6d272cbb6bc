// Path probes in one probe batch (lib/ops/files.ts pathGather): every gathered path is stat'ed by one `stat` and
// hashed by one `sha256sum` for the whole batch, and each probe prints exactly what it prints when run alone. Run for
// real with bash, stat and sha256sum counted through wrappers on PATH.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { copy, file, pathGather, pathProbeScript } from '../../lib/ops/files.ts';
import { parseProbes, probeScript } from '../../lib/runner.ts';
import { bash, context, tempDir } from './ops-files.harness.ts';

const tmp = tempDir('wpf-gather-');
after(() => tmp.cleanup());
const fresh = tmp.fresh;

/** a PATH whose stat and sha256sum count their calls in `<dir>/calls` (one line per call: the tool's name) */
function counting(d: string): { env: Record<string, string>; calls: () => string[] } {
  const bin = join(d, 'bin');
  mkdirSync(bin);
  const calls = join(d, 'calls');
  writeFileSync(calls, '');
  for (const tool of ['stat', 'sha256sum']) {
    writeFileSync(join(bin, tool), `#!/bin/sh\necho ${tool} >> ${calls}\nexec /usr/bin/${tool} "$@"\n`, { mode: 0o755 });
  }
  return {
    env: { ...(process.env as Record<string, string>), PATH: `${bin}:${process.env.PATH}` },
    calls: () => readFileSync(calls, 'utf8').split('\n').filter(Boolean),
  };
}

describe('path probes gathered in one batch', () => {
  test('one stat and one sha256sum for the batch; each output as when run alone', async () => {
    const d = fresh();
    const tree = join(d, 'tree');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    writeFileSync(join(tree, 'a.conf'), 'a = 1\n');
    writeFileSync(join(tree, 'empty'), '');
    writeFileSync(join(tree, 'sub', 'b@x+y:z'), 'bee\n', { mode: 0o600 });
    writeFileSync(join(tree, 'with space'), 'not a word\n');
    symlinkSync('a.conf', join(tree, 'link'));
    symlinkSync('nowhere', join(tree, 'dangling'));
    chmodSync(join(tree, 'sub'), 0o750);
    // every kind of answer: a file (with and without its sha), an empty file, a directory, a link to a file, a
    // dangling link, a missing path, a missing parent, a name that is no word (asked alone), one path probed twice
    const probes: { path: string; sha: boolean; cap?: number }[] = [
      { path: join(tree, 'a.conf'), sha: true, cap: 1024 },
      { path: join(tree, 'empty'), sha: true },
      { path: join(tree, 'sub'), sha: false },
      { path: join(tree, 'sub', 'b@x+y:z'), sha: true },
      { path: join(tree, 'link'), sha: true },
      { path: join(tree, 'dangling'), sha: true },
      { path: join(tree, 'missing'), sha: true },
      { path: join(tree, 'no', 'parent'), sha: false },
      { path: join(tree, 'with space'), sha: true },
      { path: join(tree, 'a.conf'), sha: false },
    ];
    const alone: string[] = [];
    for (const p of probes) {
      const c = counting(fresh());
      const r = await bash(probeScript([{ id: 0, script: pathProbeScript(p.path, { sha: p.sha, contentCap: p.cap }) }]), { env: c.env });
      alone.push(parseProbes(r.stdout).get('0')!);
      // alone (no gathered list): its own stat, and its own sha256sum for a readable regular file
      assert.equal(c.calls().filter((t) => t === 'stat').length, 1, p.path);
    }
    const c = counting(fresh());
    const batch = probes.map((p, i) => ({
      id: i,
      script: pathProbeScript(p.path, { sha: p.sha, contentCap: p.cap }),
      gather: pathGather({ path: p.path, sha: p.sha }),
    }));
    const r = await bash(probeScript(batch), { env: c.env });
    const outs = parseProbes(r.stdout);
    for (const [i, p] of probes.entries()) assert.equal(outs.get(String(i)), alone[i], `${p.path}: the same answer in the batch`);
    // gathered: one stat and one sha256sum for all; the name with a space asks on its own (one of each)
    assert.deepEqual(c.calls().sort(), ['sha256sum', 'sha256sum', 'stat', 'stat']);
    assert.match(alone[0]!, /@@stat\nregular file\|644\|/);
    assert.match(alone[0]!, /@@sha\n[0-9a-f]{64}\n/);
    assert.match(alone[6]!, /@@stat\nabsent\n/);
    assert.match(alone[4]!, /@@link\nyes\n/);
  });

  test('a batch of one path, or a probe run alone with the lists of another batch in its environment, asks on its own', async () => {
    const d = fresh();
    const f = join(d, 'f');
    writeFileSync(f, 'x\n');
    const c = counting(d);
    // one path: no list (a list of one word saves nothing)
    const one = await bash(
      probeScript([{ id: 0, script: pathProbeScript(f, { sha: true }), gather: pathGather({ path: f, sha: true }) }]),
      {
        env: c.env,
      },
    );
    assert.match(parseProbes(one.stdout).get('0')!, /@@sha\n[0-9a-f]{64}$/);
    assert.deepEqual(c.calls().sort(), ['sha256sum', 'stat']);
    // outside a batch (no memo directory) a list in the environment is not used
    const r = await bash(pathProbeScript(f, { sha: true }), { env: { ...c.env, WPFARM_GATHER_paths: `${f} /x`, WPFARM_GATHER_shas: f } });
    assert.match(r.stdout, /@@stat\nregular file\|/);
    assert.deepEqual(c.calls().sort(), ['sha256sum', 'sha256sum', 'stat', 'stat']);
  });

  test('file, copy of a directory: their probes gather their paths', () => {
    const d = fresh();
    mkdirSync(join(d, 'src'));
    writeFileSync(join(d, 'src', 'one'), '1');
    writeFileSync(join(d, 'src', 'two'), '2');
    const ctx = context();
    assert.deepEqual(file({ path: '/etc/x.conf', content: 'x' }).probe(ctx)?.gather, { paths: ['/etc/x.conf'], shas: ['/etc/x.conf'] });
    assert.deepEqual(file({ path: '/etc/x.conf', state: 'absent' }).probe(ctx)?.gather, { paths: ['/etc/x.conf'] });
    assert.deepEqual(copy({ src: join(d, 'src'), path: '/srv/site' }).probe(ctx)?.gather, {
      paths: ['/srv/site/one', '/srv/site/two'],
      shas: ['/srv/site/one', '/srv/site/two'],
    });
    assert.equal(file({ path: '/etc/with space', content: 'x' }).probe(ctx)?.gather, undefined);
  });
});
