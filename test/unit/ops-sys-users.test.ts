// users: the probes run for real here against existing accounts (read-only); plans from captured
// probe texts. Creating and changing accounts for real runs on a lab node (test/lab/10-ops-system.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { user, group, authorizedKey, keyId, parseUserProbe } from '../../lib/ops/users.ts';
import { InputError } from '../../lib/errors.ts';
import type { ApplyScript, Plan } from '../../lib/types.ts';
import { localContext, localExec, runLocal } from './ops-sys.harness.ts';

const script = (p: Plan): string => (p.apply as ApplyScript).script;
const ctx = (check = false) => localContext(check);
const K1 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+eDKE09VmJ3h0xvXqtjx deploy@ci';
const K2 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOdP8fpl2x2MVr6kc2PpP5GVtZ5/oI1YFcqnjXGWWxsF ops@laptop';

test('existing account probed here: root as it is is ok; a different shell is a usermod', async () => {
  const shell = (await localExec('getent passwd root | cut -d: -f7')).stdout.trim();
  const ok = await runLocal(user({ name: 'root', uid: 0, shell, home: '/root' }), { check: true });
  assert.equal(ok.status, 'ok');
  assert.equal((ok.plan.result as { uid: number }).uid, 0);
  const other = shell === '/bin/sh' ? '/bin/bash' : '/bin/sh';
  const ch = await runLocal(user({ name: 'root', shell: other }), { check: true });
  assert.deepEqual(ch.plan.changes, [`shell ${shell} -> ${other}`]);
  assert.equal(script(ch.plan), `usermod --shell ${other} -- root`);
  const gone = await runLocal(user({ name: 'wpfarm-no-such-user', state: 'absent' }), { check: true });
  assert.equal(gone.status, 'ok');
});

test('missing user: useradd with bash, its own group, home; system users get no home', async () => {
  const out = '%%passwd\n%%primary\n%%groups\n';
  const p = await user({ name: 'deploy', uid: 1500, groups: ['docker', 'adm'] }).plan(ctx(), out);
  assert.deepEqual(p.changes, ['create user deploy (uid 1500, groups docker,adm, shell /bin/bash)']);
  assert.equal(script(p), "useradd --uid 1500 --user-group --groups $'docker,adm' --shell /bin/bash --create-home -- deploy");
  assert.deepEqual(p.invalidates, ['users']);
  const s = await user({ name: 'wpfarm', system: true, shell: '/usr/sbin/nologin', home: '/var/lib/wpfarm' }).plan(ctx(), out);
  assert.equal(script(s), 'useradd --system --user-group --shell /usr/sbin/nologin --home-dir /var/lib/wpfarm --no-create-home -- wpfarm');
});

test('groups: append adds only the missing ones; exclusive sets the list', async () => {
  const out = '%%passwd\ndeploy:x:1500:1500:Deploy:/home/deploy:/bin/bash\n%%primary\ndeploy\n%%groups\ndeploy adm sudo\n';
  assert.deepEqual(parseUserProbe(out).groups, ['adm', 'sudo']);
  assert.equal((await user({ name: 'deploy', groups: ['adm'] }).plan(ctx(), out)).changed, false);
  const add = await user({ name: 'deploy', groups: ['adm', 'docker'] }).plan(ctx(), out);
  assert.equal(script(add), 'usermod --append --groups docker -- deploy');
  const ex = await user({ name: 'deploy', groups: ['adm', 'docker'], append: false }).plan(ctx(), out);
  assert.deepEqual(ex.changes, ['add to groups docker', 'remove from groups sudo']);
  assert.equal(script(ex), "usermod --groups $'adm,docker' -- deploy");
  const del = await user({ name: 'deploy', state: 'absent', removeHome: true }).plan(ctx(), out);
  assert.equal(script(del), 'userdel -r -- deploy');
});

test('group: probe here, create and gid change', async () => {
  assert.equal((await runLocal(group({ name: 'root', gid: 0 }), { check: true })).status, 'ok');
  const c = await runLocal(group({ name: 'wpfarm-no-such-group', gid: 2345, system: true }), { check: true });
  assert.equal(script(c.plan), 'groupadd --system --gid 2345 -- wpfarm-no-such-group');
  const m = await group({ name: 'docker', gid: 998 }).plan(ctx(), 'docker:x:997:deploy');
  assert.equal(script(m), 'groupmod --gid 998 -- docker');
});

const keysProbe = (content: string | null, home = '/home/deploy') =>
  `home=${home}\n${content === null ? '' : `exists=yes\n%%content\n${Buffer.from(content).toString('base64')}\n`}`;

test('authorizedKey: add, keep, replace options/comment of the same key, absent, exclusive', async () => {
  assert.equal(keyId(`from="10.0.0.0/8",no-pty ${K1}`), keyId(K1));
  const add = await authorizedKey({ user: 'deploy', key: K1 }).plan(ctx(), keysProbe(null));
  assert.equal(add.changed, true);
  assert.equal((add.apply as ApplyScript).stdin, `${K1}\n`);
  assert.match(add.diff ?? '', new RegExp(`^\\+${K1.slice(0, 30).replace(/[+/]/g, '\\$&')}`, 'm'));
  assert.equal((await authorizedKey({ user: 'deploy', key: K1 }).plan(ctx(), keysProbe(`${K2}\n${K1}\n`))).changed, false);
  const opt = await authorizedKey({ user: 'deploy', key: `no-pty ${K1}` }).plan(ctx(), keysProbe(`${K2}\n${K1}\n`));
  assert.equal((opt.apply as ApplyScript).stdin, `${K2}\nno-pty ${K1}\n`);
  const rm = await authorizedKey({ user: 'deploy', key: K1, state: 'absent' }).plan(ctx(), keysProbe(`# managed\n${K1}\n${K2}\n`));
  assert.equal((rm.apply as ApplyScript).stdin, `# managed\n${K2}\n`);
  assert.equal((await authorizedKey({ user: 'deploy', key: K1, state: 'absent' }).plan(ctx(), keysProbe(null))).changed, false);
  const ex = await authorizedKey({ user: 'deploy', key: [K1], exclusive: true }).plan(ctx(), keysProbe(`${K2}\n${K1}\n`));
  assert.equal((ex.apply as ApplyScript).stdin, `${K1}\n`);
  assert.deepEqual(ex.changes, ['/home/deploy/.ssh/authorized_keys: 0 key line(s) added, 1 removed']);
});

test('authorizedKey: the apply script is valid bash; a missing user fails the real run only', async () => {
  const p = await authorizedKey({ user: 'deploy', key: K1 }).plan(ctx(true), 'home=');
  assert.equal(p.changed, true, 'check mode: the user may be created by an earlier step');
  assert.equal((await localExec('bash -n', { stdin: script(p), nothrow: true })).code, 0);
  assert.match(script(p), /install -d -m 0700 -o deploy -g "\$g" "\$h\/\.ssh"/);
  await assert.rejects(async () => authorizedKey({ user: 'deploy', key: K1 }).plan(ctx(false), 'home='), /does not exist/);
});

test('bad input is rejected', () => {
  assert.throws(() => user({ name: '-o' }), InputError);
  assert.throws(() => user({ name: 'a b' }), InputError);
  assert.throws(() => user({ name: 'x', shell: 'bash' }), InputError);
  assert.throws(() => user({ name: 'x', comment: 'a:b' }), InputError);
  assert.throws(() => authorizedKey({ user: 'x', key: 'not a key' }), InputError);
  assert.throws(() => group({ name: 'g', gid: -1 }), InputError);
});
