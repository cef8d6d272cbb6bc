// apt: the probe runs for real against this machine's dpkg database and apt cache (read-only);
// apply scripts are checked by bash -n and by content. Real installs run on a lab node
// (test/lab/10-ops-system.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UPDATE_STAMP, apt, parseAptPolicy } from '../../lib/ops/apt.ts';
import { InputError } from '../../lib/errors.ts';
import type { ApplyScript, Plan } from '../../lib/types.ts';
import { localContext, localExec, runLocal } from './ops-sys.harness.ts';

const sh = async (c: string): Promise<string> => (await localExec(c, { nothrow: true })).stdout.trim();
const installed = (p: string) => sh(`dpkg-query -W -f='\${db:Status-Abbrev}|\${Version}' ${p} 2>/dev/null | grep '^ii' | cut -d'|' -f2`);
const script = (p: Plan): string => (p.apply as ApplyScript).script;

async function syntaxOk(s: string): Promise<void> {
  const r = await localExec('bash -n', { stdin: s, nothrow: true });
  assert.equal(r.code, 0, r.stderr);
}

test('present: an installed package is ok, a missing one is planned with the exact apt-get line', async () => {
  assert.notEqual(await installed('bash'), '');
  const ok = await runLocal(apt({ packages: ['bash'] }), { check: true });
  assert.equal(ok.status, 'ok');
  assert.equal(ok.roundTrips, 1);
  // a package this machine does not have (verified first, independently)
  const missing = (await installed('hello')) === '' ? 'hello' : 'cowsay';
  assert.equal(await installed(missing), '');
  const r = await runLocal(apt({ packages: ['bash', missing], state: 'present', update_cache: true }), { check: true });
  assert.equal(r.status, 'changed');
  assert.deepEqual(r.plan.changes, [`install ${missing}`]);
  assert.deepEqual(r.plan.invalidates, ['packages', 'services']);
  const s = script(r.plan);
  assert.match(s, /^export DEBIAN_FRONTEND=noninteractive/m);
  // update_cache: refresh before installing, waiting (up to 120 x 5 s) while another apt holds the lists lock; the
  // stamp of a successful refresh
  assert.ok(
    s.includes(
      `  if out=$(apt-get -o DPkg::Lock::Timeout=600 -o Acquire::http::Timeout=30 -o Acquire::Retries=3 -y -q update 2>&1); then ok=1; mkdir -p /var/lib/apt/periodic; touch /var/lib/apt/periodic/update-success-stamp; break; fi\n  case "$out" in *'Could not get lock'*) sleep 5;; *) break;; esac\n`,
    ),
    s,
  );
  // conffiles changed on the host are kept (no dpkg prompt)
  assert.ok(
    s.includes(
      `apt-get -o DPkg::Lock::Timeout=600 -o Acquire::http::Timeout=30 -o Acquire::Retries=3 -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install --no-install-recommends -- ${missing}`,
    ),
    s,
  );
  assert.doesNotMatch(s, /policy-rc\.d/);
  await syntaxOk(s);
});

test('absent: only what is installed is removed; config-files leftovers only with purge', async () => {
  const r = await runLocal(apt({ packages: ['hello-not-a-package-xyz', 'bash'], state: 'absent' }), { check: true });
  assert.deepEqual(r.plan.changes, [`remove bash ${await installed('bash')}`]);
  assert.match(
    script(r.plan),
    /apt-get -o DPkg::Lock::Timeout=600 -o Acquire::http::Timeout=30 -o Acquire::Retries=3 -y -q remove -- bash$/m,
  );
  // captured dpkg-query line of a removed-but-not-purged package
  const ctx = localContext(true);
  const out = '%%dpkg\nnginx deinstall ok config-files 1.22.1-9';
  assert.equal((await apt({ packages: ['nginx'], state: 'absent' }).plan(ctx, out)).changed, false);
  const purge = await apt({ packages: ['nginx'], state: 'absent', purge: true }).plan(ctx, out);
  assert.deepEqual(purge.changes, ['purge nginx 1.22.1-9']);
  assert.match(script(purge), /-y -q purge -- nginx$/m);
});

test('latest: candidate vs installed from apt-cache policy, as this machine reports them', async () => {
  const pkgs = ['bash', 'coreutils'];
  const r = await runLocal(apt({ packages: pkgs, state: 'latest' }), { check: true });
  // independently: one apt-cache call, read with awk
  const cands = Object.fromEntries(
    (await sh(`LC_ALL=C apt-cache policy ${pkgs.join(' ')} | awk '/^[^ ].*:$/{p=substr($0,1,length($0)-1)} /Candidate:/{print p, $2}'`))
      .split('\n')
      .map((l) => l.split(' ')),
  ) as Record<string, string>;
  const want: string[] = [];
  for (const p of pkgs) {
    const i = await installed(p);
    const c = cands[p] ?? '';
    if (c && c !== i) want.push(`upgrade ${p} ${i} -> ${c}`);
  }
  assert.deepEqual(r.plan.changes, want);
  assert.equal(r.status, want.length ? 'changed' : 'ok');
});

test('apt-cache policy parsing (captured text)', () => {
  const p = parseAptPolicy(
    'bash:\n  Installed: 5.2.15-2+b8\n  Candidate: 5.2.15-2+b13\n  Version table:\n     5.2.15-2+b13 500\n        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n *** 5.2.15-2+b8 100\nhello:\n  Installed: (none)\n  Candidate: 2.10-3\n',
  );
  assert.deepEqual(p, { bash: { installed: '5.2.15-2+b8', candidate: '5.2.15-2+b13' }, hello: { installed: '', candidate: '2.10-3' } });
});

test('update_cache seconds: stale lists are refreshed before an install or for latest, never on their own', async () => {
  // captured probe output: lists 7200 s old, bash installed, hello not
  const out = (extra = '') =>
    `%%dpkg\nbash install ok installed 5.2.15-2+b8\n${extra}%%cache\nnow=1790000000\nlists=${1790000000 - 7200}\n`;
  const ctx = localContext(true);
  const converged = await apt({ packages: ['bash'], update_cache: 3600 }).plan(ctx, out());
  assert.equal(converged.changed, false, 'a converged host reports no change however old its lists are');
  const install = await apt({ packages: ['bash', 'hello'], update_cache: 3600 }).plan(ctx, out());
  assert.deepEqual(install.changes, ['apt-get update (lists 7200 s old > 3600 s)', 'install hello']);
  assert.ok(script(install).indexOf(' update 2>&1') < script(install).indexOf(' install '), 'refresh before install');
  const fresh = await apt({ packages: ['bash', 'hello'], update_cache: 86400 }).plan(ctx, out());
  assert.deepEqual(fresh.changes, ['install hello'], 'fresh lists are not refreshed');
  assert.doesNotMatch(script(fresh), / update /);
  const latest = await apt({ packages: ['bash'], state: 'latest', update_cache: 3600 }).plan(
    ctx,
    out('%%policy\nbash:\n  Installed: 5.2.15-2+b8\n  Candidate: 5.2.15-2+b8\n'),
  );
  assert.deepEqual(latest.changes, ['apt-get update (lists 7200 s old > 3600 s)'], 'latest needs current candidates');
  const none = await apt({ packages: ['bash'], update_cache: 3600 }).plan(
    ctx,
    '%%dpkg\nbash install ok installed 5.2.15-2+b8\n%%cache\nnow=1790000000\nlists=\n',
  );
  assert.deepEqual(none.changes, ['apt-get update (no package lists)']);
  // an update that found nothing new on the mirror rewrites no list: its stamp counts as fresh lists
  const stamped = await apt({ packages: ['bash', 'hello'], update_cache: 3600 }).plan(ctx, `${out()}stamp=${1790000000 - 60}\n`);
  assert.deepEqual(stamped.changes, ['install hello'], 'lists refreshed 60 s ago (stamp) are fresh');
  const oldStamp = await apt({ packages: ['bash', 'hello'], update_cache: 3600 }).plan(ctx, `${out()}stamp=${1790000000 - 9000}\n`);
  assert.deepEqual(oldStamp.changes, ['apt-get update (lists 7200 s old > 3600 s)', 'install hello'], 'the newer of the two counts');
  assert.match(script(install), new RegExp(`then ok=1; mkdir -p /var/lib/apt/periodic; touch ${UPDATE_STAMP}; break`));
  assert.match(
    apt({ packages: ['bash'], update_cache: 3600 }).probe!(ctx)!.script,
    /echo stamp=\$\(stat -c %Y \/var\/lib\/apt\/periodic\/update-success-stamp\)/,
  );
  // and the probe against this machine's real lists parses
  const real = await runLocal(apt({ packages: ['bash'], update_cache: 1 }), { check: true });
  assert.equal(real.status, 'ok');
});

test('autostart false: policy-rc.d is installed for the run and the previous one restored', async () => {
  const p = await apt({ packages: ['nginx'], autostart: false }).plan(localContext(true), '%%dpkg\n');
  const s = script(p);
  assert.match(s, /exit 101/);
  assert.match(s, /trap .*policy-rc\.d|trap 'rm -f "\$prc"/);
  assert.ok(s.indexOf('policy-rc.d') < s.indexOf(' install '), 'policy in place before install');
  await syntaxOk(s);
});

test('bad input is rejected before any round trip', () => {
  assert.throws(() => apt({ packages: [] }), InputError);
  assert.throws(() => apt({ packages: ['-o=APT::x'] }), InputError);
  assert.throws(() => apt({ packages: ['nginx; rm -rf /'] }), InputError);
  assert.throws(() => apt({ packages: ['nginx'], update_cache: -1 }), InputError);
});
