// Roles of a phase probed together (lib/runner.ts prefetchProbes, Run.prefetch; issue 17): on M real sshd hosts,
// N roles run by one playbook (run-role.ts with several roles) rerun with no change in at most one round trip per
// host per role, the roles that only have operations in none of their own; check mode still predicts exactly;
// a probe read ahead is never used after an earlier role changed the host.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runRoles } from '../harness/run-role.ts';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

const M = 3;
const ROLES = ['a', 'b', 'c', 'd'].map((r) => `test/fixtures/roles/phase-${r}.ts`);
const N = ROLES.length;

interface Report {
  exitCode: number;
  roundTrips: number;
  log: string;
  results: { host: string; step: string; status: string; changes: string[]; error?: string }[];
}

let lab: SshdLab;

const cli = (args: string[]) => runRoles<Report>(lab, ROLES, args);

/** round trips per role and host from the run's events ('(before roles)': the read-ahead) */
function tripsByRole(r: Report): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>();
  let role = '(before roles)';
  for (const line of readFileSync(r.log, 'utf8').split('\n')) {
    if (!line) continue;
    const e = JSON.parse(line) as { kind: string; role?: string; host?: string };
    if (e.kind === 'role.start') role = e.role!;
    else if (e.kind === 'role.end') role = '(between roles)';
    else if (e.kind === 'command.start') {
      const m = out.get(role) ?? new Map<string, number>();
      m.set(e.host!, (m.get(e.host!) ?? 0) + 1);
      out.set(role, m);
    }
  }
  return out;
}

const changed = (r: Report) =>
  r.results
    .filter((x) => x.status === 'changed')
    .map((x) => `${x.host} | ${x.step}`)
    .sort();
const onHost = (name: string, path: string) => join(lab.hosts.find((h) => h.name === name)!.root, path);

before(async () => {
  lab = await startSshdHosts(M);
});
after(async () => {
  await lab?.stop();
});

describe('roles of a phase probed together', () => {
  test('first run: a probe read ahead is not used after an earlier role changed the host', async () => {
    const first = await cli([]);
    assert.equal(first.code, 0, first.out);
    // phase-b's command runs only while a.conf is missing: phase-a wrote it first, so it never ran
    for (const h of lab.hosts) {
      assert.equal(readFileSync(onHost(h.name, '/srv/phase/a.conf'), 'utf8'), `a=${h.name}\n`);
      assert.ok(!existsSync(onHost(h.name, '/srv/phase/b.log')), `${h.name}: phase-b's command ran on a stale probe`);
      assert.equal(readFileSync(onHost(h.name, '/srv/phase/b.state'), 'utf8'), 'b');
    }
    const once = lab.hosts.filter((h) => existsSync(onHost(h.name, '/srv/phase/once.conf'))).map((h) => h.name);
    assert.deepEqual(once, [lab.hosts[0]!.name]);
    assert.ok(changed(first.json).length >= M * 5, changed(first.json).join('\n'));
  });

  test(`no-change rerun of ${N} roles on ${M} hosts: at most one round trip per host per role`, async () => {
    const again = await cli([]);
    assert.equal(again.code, 0, again.out);
    assert.deepEqual(changed(again.json), []);
    const trips = tripsByRole(again.json);
    const perHost = new Map<string, number>();
    for (const m of trips.values()) for (const [h, n] of m) perHost.set(h, (perHost.get(h) ?? 0) + n);
    const shown = JSON.stringify(Object.fromEntries([...trips].map(([r, m]) => [r, Object.fromEntries(m)])));
    console.log(`# rerun: ${again.json.roundTrips} round trips for ${N} roles on ${M} hosts: ${shown}`);
    assert.ok(again.json.roundTrips <= M * N, shown);
    for (const h of lab.hosts) assert.ok((perHost.get(h.name) ?? 0) <= N, `${h.name}: ${shown}`);
    // roles of operations (and tasks with a probe) cost no round trip of their own: their probes were read ahead
    assert.equal(trips.get('phase-a'), undefined, shown);
    assert.equal(trips.get('phase-c'), undefined, shown);
    // nor do probes read on another host (Probe.host, delegated steps) and a task's own operations (nestedProbe)
    assert.equal(trips.get('phase-d'), undefined, shown);
    // phase-b's own: only its task's read-only command, one per host
    assert.deepEqual([...(trips.get('phase-b')?.values() ?? [])], Array(M).fill(1), shown);
  });

  test('check mode predicts exactly what the run then changes, read-ahead included', async () => {
    const [h1, h2, h3] = lab.hosts.map((h) => h.name) as [string, string, string];
    writeFileSync(onHost(h2, '/srv/phase/c.conf'), 'os=other\n');
    writeFileSync(onHost(h3, '/srv/phase/b.state'), 'x');
    writeFileSync(onHost(h1, '/srv/phase/a.conf'), 'a=old\n');
    // phase-d: h3's mark on the first host, h2's delegated file there, h3's own d2.conf
    writeFileSync(onHost(h1, `/srv/phase/d-${h3}.mark`), 'x');
    writeFileSync(onHost(h1, `/srv/phase/d-delegated-${h2}.conf`), 'x\n');
    writeFileSync(onHost(h3, '/srv/phase/d2.conf'), 'x\n');
    const check = await cli(['--check']);
    assert.equal(check.code, 0, check.out);
    const want = [
      `${h1} | file /srv/phase/a.conf`,
      `${h2} | file /srv/phase/c.conf`,
      `${h3} | b.state is b`,
      `${h3} | mark on the first host`,
      `${h1} | file /srv/phase/d-delegated-${h2}.conf`, // a delegated step reports the host it ran on
      `${h3} | d1.conf and d2.conf`,
    ].sort();
    assert.deepEqual(
      changed(check.json).filter((c) => !c.includes('handler')),
      want,
    );
    assert.equal(readFileSync(onHost(h3, '/srv/phase/b.state'), 'utf8'), 'x', 'check mode changed nothing');
    const run = await cli([]);
    assert.equal(run.code, 0, run.out);
    assert.deepEqual(
      changed(run.json).filter((c) => !c.includes('handler')),
      want,
    );
    assert.equal(readFileSync(onHost(h3, '/srv/phase/b.state'), 'utf8'), 'b');
    assert.equal(readFileSync(onHost(h1, `/srv/phase/d-${h3}.mark`), 'utf8'), 'd');
    assert.equal(readFileSync(onHost(h1, `/srv/phase/d-delegated-${h2}.conf`), 'utf8'), 'd\n');
    assert.equal(readFileSync(onHost(h3, '/srv/phase/d2.conf'), 'utf8'), 'd2\n');
    // the handler ran on the first run everywhere, and now once more on the host whose c.conf changed
    for (const h of [h1, h2, h3]) {
      const want = h === h2 ? 'changed\nchanged\n' : 'changed\n';
      assert.equal(readFileSync(onHost(h, '/srv/phase/c.log'), 'utf8'), want, h);
    }
    assert.ok(!existsSync(onHost(h1, '/srv/phase/b.log')), "phase-b's command did not run on a probe read before phase-a's change");
    const rerun = await cli([]);
    assert.deepEqual(changed(rerun.json), []);
  });
});
