// docker: read-only probes run for real against this machine's engine when one answers (the default
// `bridge` network; the swarm is inactive here); plans from captured texts. Networks, secrets and
// stack deploys for real run on a lab node with its own swarm (test/lab/10-ops-system.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  dockerNetwork,
  dockerSecret,
  dockerConfig,
  hashedName,
  secretPrune,
  stackDeploy,
  stackObjects,
  swarmFacts,
  STACK_DIR,
} from '../../lib/ops/docker.ts';
import { InputError } from '../../lib/errors.ts';
import type { ApplyScript, Plan } from '../../lib/types.ts';
import { localContext, localExec, runLocal } from './ops-sys.harness.ts';

const script = (p: Plan): string => (p.apply as ApplyScript).script;
const ctx = (check = false) => localContext(check);
const MANAGER =
  '%%swarm\n{"NodeID":"n1","NodeAddr":"10.77.0.42","LocalNodeState":"active","ControlAvailable":true,"Error":"","RemoteManagers":[{"NodeID":"n1","Addr":"10.77.0.42:2377"}],"Nodes":1,"Managers":1,"Cluster":{"ID":"c1"}}';
const INACTIVE =
  '%%swarm\n{"NodeID":"","NodeAddr":"","LocalNodeState":"inactive","ControlAvailable":false,"Error":"","RemoteManagers":null}';
const dockerHere = async (): Promise<boolean> =>
  (await localExec("timeout 10 docker version --format '{{.Server.Version}}'", { nothrow: true })).stdout.trim() !== '';

test('hashed names: prefix + first 8 hex of sha256', () => {
  const h = createHash('sha256').update('s3cret-value').digest('hex').slice(0, 8);
  assert.equal(hashedName('site12_db_password', 's3cret-value'), `site12_db_password_${h}`);
  assert.notEqual(hashedName('p', 'a'), hashedName('p', 'b'));
});

test('swarmFacts and a network probe against this machine engine (read-only)', async (t) => {
  if (!(await dockerHere())) return t.skip('no Docker engine answers on this machine');
  const sf = await runLocal(swarmFacts(), { check: true });
  const state = (await localExec("docker info --format '{{.Swarm.LocalNodeState}}'")).stdout.trim();
  assert.equal((sf.plan.result as { state: string }).state, state);
  assert.equal(sf.status, 'ok');
  // the default bridge network exists with these settings on every engine
  const r = await runLocal(dockerNetwork({ name: 'bridge', driver: 'bridge' }), { check: true });
  assert.equal(r.status, 'ok');
  await assert.rejects(
    async () => runLocal(dockerNetwork({ name: 'bridge', driver: 'bridge', internal: true })),
    /exists with other settings \(internal false -> true\)/,
  );
  if (state !== 'active') {
    // a secret on a non-manager: check mode predicts with a note, the real run refuses before any change
    const c = await runLocal(dockerSecret({ name: 'wpfarm_unit', content: 'x'.repeat(10) }), { check: true });
    assert.match(c.plan.changes[0]!, /^create secret wpfarm_unit_[0-9a-f]{8}; swarm state is inactive/);
    await assert.rejects(() => runLocal(dockerSecret({ name: 'wpfarm_unit', content: 'x'.repeat(10) })), /run it on a swarm manager/);
  }
});

test('network: create line, encrypted vs the kernel ESP, immutable differences', async () => {
  const none = `%%net\n${MANAGER}\n%%kernel\nesp=no`;
  const p = await dockerNetwork({ name: 'wp_backend', attachable: true, labels: { 'wpfarm.site': 'a b' } }).plan(ctx(), none);
  assert.equal(script(p), "docker network create --driver overlay --attachable --label $'wpfarm.site=a b' -- wp_backend");
  assert.equal((await localExec('bash -n', { stdin: script(p), nothrow: true })).code, 0);
  await assert.rejects(
    async () => dockerNetwork({ name: 'wp', encrypted: true }).plan(ctx(), none),
    /no ESP \(IPsec\): it would silently pass no traffic/,
  );
  const auto = await dockerNetwork({ name: 'wp', encrypted: 'auto' }).plan(ctx(), none);
  assert.doesNotMatch(script(auto), /encrypted/);
  const autoEsp = await dockerNetwork({ name: 'wp', encrypted: 'auto' }).plan(ctx(), none.replace('esp=no', 'esp=yes'));
  assert.match(script(autoEsp), /--opt encrypted/);
  const existing = `%%net\n{"Name":"wp","Driver":"overlay","Attachable":true,"Internal":false,"Options":{"com.docker.network.driver.overlay.vxlanid_list":"4097","encrypted":""},"Labels":{}}\n${MANAGER}\n%%kernel\nesp=yes`;
  assert.equal((await dockerNetwork({ name: 'wp', attachable: true, encrypted: true }).plan(ctx(), existing)).changed, false);
  const re = await dockerNetwork({ name: 'wp', attachable: true, encrypted: false, recreate: true }).plan(ctx(), existing);
  assert.deepEqual(re.changes, ['recreate network wp: encrypted true -> false']);
  assert.match(script(re), /^set -e\ndocker network rm -- wp\ndocker network create --driver overlay --attachable/);
  // not a manager: check mode notes it, a real run refuses
  const c = await dockerNetwork({ name: 'wp' }).plan(ctx(true), `%%net\n${INACTIVE}\n%%kernel\nesp=no`);
  assert.match(c.changes[0]!, /swarm state is inactive \(an earlier step must make it a swarm manager\)/);
  await assert.rejects(
    async () => dockerNetwork({ name: 'wp' }).plan(ctx(), `%%net\n${INACTIVE}\n%%kernel\nesp=no`),
    /run it on a swarm manager/,
  );
});

test('secret: content only on stdin, never in script, changes or result; masked; existing version is ok', async () => {
  const value = 'correct horse battery staple';
  const name = hashedName('site1_db_password', value);
  const c = ctx();
  const p = await dockerSecret({ name: 'site1_db_password', content: value, labels: { site: 'site1' } }).plan(
    c,
    `%%versions\nsite1_db_password_0badc0de\nsite1_db_password_x\nsite10_db_password_12345678\n${MANAGER}`,
  );
  assert.equal(p.changed, true);
  assert.equal((p.apply as ApplyScript).stdin, value);
  assert.equal(script(p), `docker secret create --label site=site1 --label wpfarm.prefix=site1_db_password -- ${name} -`);
  const visible = JSON.stringify({ changes: p.changes, result: p.result, script: script(p), diff: p.diff });
  assert.ok(!visible.includes(value), 'the value appears nowhere but stdin');
  assert.deepEqual(p.result, { name, prefix: 'site1_db_password', otherVersions: ['site1_db_password_0badc0de'] });
  assert.ok(c.secrets.includes(value), 'registered for masking');
  const same = await dockerSecret({ name: 'site1_db_password', content: value }).plan(ctx(), `%%versions\n${name}\n${MANAGER}`);
  assert.equal(same.changed, false);
  assert.equal((same.result as { name: string }).name, name);
  const cfg = await dockerConfig({ name: 'traefik_yml', content: 'a: 1\n' }).plan(ctx(), `%%versions\n${MANAGER}`);
  assert.match(script(cfg), /^docker config create --label wpfarm.prefix=traefik_yml -- traefik_yml_[0-9a-f]{8} -$/);
});

test('secretPrune: only old versions of the given prefixes that no service uses', async () => {
  const out =
    '%%all\nsite1_db_11111111\nsite1_db_22222222\nsite1_db_33333333\nsite1_dbx_44444444\nsite2_db_55555555\nsite1_db_plain\n%%inuse\nsite1_db_22222222\n';
  const p = await secretPrune({ kind: 'secret', prefixes: ['site1_db'], keep: ['site1_db_33333333'] }).plan(ctx(), out);
  assert.deepEqual(p.changes, ['remove unused secret site1_db_11111111']);
  assert.equal(script(p), 'docker secret rm -- site1_db_11111111');
  assert.equal((await secretPrune({ kind: 'secret', prefixes: ['site3'] }).plan(ctx(), out)).changed, false);
});

const STACK_V1 = `version: "3.8"
services:
  web:
    image: 10.77.0.2:5000/wpfarm/test:1
    secrets: [db_password]
    deploy:
      endpoint_mode: dnsrr
secrets:
  db_password:
    external: true
    name: site1_db_password_aaaaaaaa
`;

test('stack: objects, first deploy, unchanged render, changed render with diff and old versions pruned', async () => {
  assert.deepEqual(stackObjects(STACK_V1), { services: ['web'], secrets: ['site1_db_password_aaaaaaaa'], configs: [] });
  const sha = createHash('sha256').update(STACK_V1).digest('hex');
  const fresh = await stackDeploy({ name: 'site1', compose: STACK_V1 }).plan(
    ctx(),
    `exists=no\n${MANAGER}\n%%services\n%%secrets\nsite1_db_password_aaaaaaaa\n%%content\n`,
  );
  assert.equal(fresh.changed, true);
  assert.deepEqual(fresh.changes, ['deploy stack site1 (1 services: web)']);
  assert.equal((fresh.apply as ApplyScript).stdin, STACK_V1);
  const s = script(fresh);
  assert.match(s, /docker stack deploy --with-registry-auth -c "\$tmp" -- site1\nmv -f "\$tmp" \/var\/lib\/wpfarm\/stacks\/site1\.yml/);
  assert.ok(s.indexOf('stack deploy') < s.indexOf('mv -f'), 'the render is recorded only after a successful deploy');
  assert.equal((await localExec('bash -n', { stdin: s, nothrow: true })).code, 0);
  const running = `exists=yes\nsha256=${sha}\n${MANAGER}\n%%services\nsite1_web 1/1 10.77.0.2:5000/wpfarm/test:1\n%%secrets\nsite1_db_password_aaaaaaaa\n%%content\n${Buffer.from(STACK_V1).toString('base64')}\n`;
  assert.equal((await stackDeploy({ name: 'site1', compose: STACK_V1 }).plan(ctx(), running)).changed, false);
  const gone = await stackDeploy({ name: 'site1', compose: STACK_V1 }).plan(
    ctx(),
    running.replace('site1_web 1/1 10.77.0.2:5000/wpfarm/test:1', 'Nothing found in stack: site1'),
  );
  assert.match(gone.changes[0]!, /unchanged but the stack has no services/);
  const v2 = STACK_V1.replace('aaaaaaaa', 'bbbbbbbb').replace('test:1', 'test:2');
  const upd = await stackDeploy({ name: 'site1', compose: v2, prune: true }).plan(
    ctx(),
    running.replace('%%content', 'site1_db_password_bbbbbbbb\nsite2_db_password_cccccccc\n%%content'),
  );
  assert.deepEqual(upd.changes, [
    'update stack site1 (1 services: web)',
    'then remove old secret versions no service uses: site1_db_password_aaaaaaaa',
  ]);
  assert.match(upd.diff ?? '', /^- {4}image: 10\.77\.0\.2:5000\/wpfarm\/test:1\n\+ {4}image: 10\.77\.0\.2:5000\/wpfarm\/test:2$/m);
  assert.match(script(upd), /--with-registry-auth --prune -c/);
  assert.match(script(upd), /docker secret rm -- site1_db_password_aaaaaaaa >\/dev\/null 2>&1 \|\| true/);
  assert.doesNotMatch(script(upd), /cccccccc/);
  assert.equal(STACK_DIR, '/var/lib/wpfarm/stacks');
});

test('bad input is rejected at definition', () => {
  assert.throws(() => stackDeploy({ name: 'a b', compose: STACK_V1 }), InputError);
  assert.throws(() => stackDeploy({ name: 's', compose: 'services: [' }), InputError);
  assert.throws(() => stackDeploy({ name: 's', compose: 'version: "3"\n' }), /no services/);
  assert.throws(() => dockerNetwork({ name: '-x' }), InputError);
  assert.throws(() => dockerSecret({ name: 'a;b', content: 'x' }), InputError);
});
