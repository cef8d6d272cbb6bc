// Credentials from .env / the environment, and their masking (lib/env.ts, lib/secrets.ts).
// Run: node --import tsx --test test/unit/inventory*.test.ts
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { quote } from 'zx';
import { loadInventory } from '../../lib/inventory.ts';
import { lookupEnv, readEnvFile, requireCredential } from '../../lib/env.ts';
import { clearSecretsForTests, isSecret, mask, registerSecret, secretCount } from '../../lib/secrets.ts';
import { InputError } from '../../lib/errors.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
process.chdir(root);
const FIX = 'test/fixtures/inventory';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'wpf-env-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const CF = 'cf-token-from-dotenv-0123456789';
const DB = "db pass with 'quotes' and $dollar";
const SUDO = 'sudo-secret-db1';

test('credentials resolve from the env file, land in vars and becomePassword, and are masked', () => {
  clearSecretsForTests();
  for (const v of ['WPF_TEST_CF_TOKEN', 'WPF_TEST_DB_PASSWORD', 'WPF_TEST_DB1_SUDO']) delete process.env[v];
  const inv = loadInventory(`${FIX}/farm.yml`, { envFile: `${FIX}/farm.env` });
  assert.equal(inv.vars.cloudflare_token, CF);
  assert.deepEqual(inv.vars.db, { user: 'wp', password: DB, port: 3306 }, 'a reference nested in a mapping');
  assert.equal(inv.hosts.get('wrk2')!.vars.cloudflare_token, CF);
  assert.equal(inv.hosts.get('db1')!.becomePassword, SUDO);
  for (const s of [CF, DB, SUDO]) assert.ok(isSecret(s), 'registered as a secret');

  const dump = JSON.stringify({ vars: inv.vars, host: inv.hosts.get('db1') });
  const masked = mask(dump);
  for (const s of [CF, SUDO, 'db pass with']) assert.ok(!masked.includes(s), `"${s}" must not survive mask()`);
  assert.match(masked, /"cloudflare_token":"\*\*\*"/);
  assert.match(masked, /"becomePassword":"\*\*\*"/);
  // the forms a secret takes in output: shell-quoted (zx), JSON-escaped, URL-encoded
  const cmd = `echo ${quote(DB)} | sudo -S true && curl -H ${quote(`Authorization: Bearer ${CF}`)}`;
  assert.equal(mask(cmd), `echo *** | sudo -S true && curl -H $'Authorization: Bearer ***'`);
  assert.equal(mask(`mysql://wp:${encodeURIComponent(DB)}@db1/wp`), 'mysql://wp:***@db1/wp');
  // .env values are not copied into process.env (children would inherit them)
  assert.equal(process.env.WPF_TEST_CF_TOKEN, undefined);
});

test('process.env wins over the .env file; an empty variable counts as unset', (t) => {
  t.after(() => {
    delete process.env.WPF_TEST_CF_TOKEN;
  });
  process.env.WPF_TEST_CF_TOKEN = 'from-the-environment-42';
  const inv = loadInventory(`${FIX}/farm.yml`, { envFile: `${FIX}/farm.env` });
  assert.equal(inv.vars.cloudflare_token, 'from-the-environment-42');
  assert.equal(mask('token=from-the-environment-42'), 'token=***');
  process.env.WPF_TEST_CF_TOKEN = '';
  assert.equal(loadInventory(`${FIX}/farm.yml`, { envFile: `${FIX}/farm.env` }).vars.cloudflare_token, CF);
});

test('the default env file is .env in the current directory (the repository root); missing is fine', (t) => {
  const repo = mkdtempSync(path.join(tmp, 'repo-'));
  const cwd = process.cwd();
  t.after(() => process.chdir(cwd));
  writeFileSync(path.join(repo, 'inv.yml'), 'vars:\n  tok: { env: WPF_DEFAULT_ENV_TOKEN }\nhosts:\n  a: { address: 10.0.0.1 }\n');
  delete process.env.WPF_DEFAULT_ENV_TOKEN;
  process.chdir(repo);
  assert.throws(
    () => loadInventory('inv.yml'),
    (e: unknown) =>
      e instanceof InputError &&
      e.exitCode === 4 &&
      e.message ===
        'inv.yml:2:8 vars.tok: env var WPF_DEFAULT_ENV_TOKEN is not set (or empty) in the environment, and there is no .env file',
  );
  writeFileSync(path.join(repo, '.env'), '# comment\nWPF_DEFAULT_ENV_TOKEN=default-dotenv-value\nOTHER="x y"\n');
  assert.equal(loadInventory('inv.yml').vars.tok, 'default-dotenv-value');
  // no references: the .env file is not needed at all
  writeFileSync(path.join(repo, 'plain.yml'), 'hosts:\n  a: { address: 10.0.0.1 }\n');
  rmSync(path.join(repo, '.env'));
  assert.equal(loadInventory('plain.yml').hosts.size, 1);
});

test('settings.env_file: the inventory names its credentials file; it serves the inventory and every later lookup', (t) => {
  const repo = mkdtempSync(path.join(tmp, 'repo-'));
  const cwd = process.cwd();
  t.after(() => process.chdir(cwd));
  process.chdir(repo);
  delete process.env.WPF_LAB_TOKEN;
  delete process.env.WPF_ROLE_ONLY;
  writeFileSync(path.join(repo, '.env'), 'WPF_LAB_TOKEN=from-dot-env\n');
  writeFileSync(path.join(repo, 'lab.env'), 'WPF_LAB_TOKEN=from-lab-env-file\nWPF_ROLE_ONLY=role-value-1234\n');
  writeFileSync(
    path.join(repo, 'lab.yml'),
    'settings:\n  env_file: lab.env\nvars:\n  tok: { env: WPF_LAB_TOKEN }\nhosts:\n  a: { address: 10.0.0.1 }\n',
  );
  const inv = loadInventory('lab.yml');
  assert.equal(inv.settings.envFile, path.join(repo, 'lab.env'));
  assert.equal(inv.vars.tok, 'from-lab-env-file', 'the named file, not .env');
  assert.equal(lookupEnv('WPF_ROLE_ONLY'), 'role-value-1234', 'a role looking a credential up reads the same file');
  // a missing file (not generated yet, or a typo): a credential that is needed names the file it looked in
  writeFileSync(
    path.join(repo, 'typo.yml'),
    'settings:\n  env_file: lab.evn\nvars:\n  tok: { env: WPF_LAB_TOKEN }\nhosts:\n  a: { address: 10.0.0.1 }\n',
  );
  assert.throws(
    () => loadInventory('typo.yml'),
    (e: unknown) =>
      e instanceof InputError &&
      e.message === 'typo.yml:4:8 vars.tok: env var WPF_LAB_TOKEN is not set (or empty) in the environment, and there is no lab.evn file',
  );
  // an inventory without env_file goes back to .env
  writeFileSync(path.join(repo, 'plain.yml'), 'vars:\n  tok: { env: WPF_LAB_TOKEN }\nhosts:\n  a: { address: 10.0.0.1 }\n');
  assert.equal(loadInventory('plain.yml').vars.tok, 'from-dot-env');
  assert.equal(lookupEnv('WPF_ROLE_ONLY'), undefined);
});

test('env file edits are seen (the parse cache is keyed on mtime and size)', () => {
  const env = path.join(tmp, 'edit.env');
  writeFileSync(env, 'WPF_EDIT=first-value\n');
  delete process.env.WPF_EDIT;
  assert.equal(lookupEnv('WPF_EDIT', readEnvFile(env)), 'first-value');
  writeFileSync(env, 'WPF_EDIT=second-value-longer\n');
  assert.equal(lookupEnv('WPF_EDIT', readEnvFile(env)), 'second-value-longer');
  assert.equal(requireCredential('WPF_EDIT', 'x.yml:1', readEnvFile(env)), 'second-value-longer');
  assert.ok(isSecret('second-value-longer'));
});

test('registerSecret refuses values shorter than 4 characters, without printing them', () => {
  for (const v of ['', 'a', 'abc']) {
    assert.throws(
      () => registerSecret(v),
      (e: unknown) => e instanceof RangeError && /at least 4 characters/.test(e.message) && (v === '' || !e.message.includes(`'${v}'`)),
    );
  }
  assert.equal(registerSecret('abcd'), 'abcd', 'returns the value');
  assert.equal(mask('xabcdx'), 'x***x');
});

test('mask: longest secret first, every occurrence, unchanged text without secrets', () => {
  clearSecretsForTests();
  assert.equal(secretCount(), 0);
  assert.equal(mask('nothing registered: s3cretvalue'), 'nothing registered: s3cretvalue');
  registerSecret('s3cr');
  registerSecret('s3cretvalue');
  assert.equal(mask('a s3cretvalue b s3cr c s3cretvalue'), 'a *** b *** c ***', 'the longer one is hidden whole');
  registerSecret('a.b*c(d)');
  assert.equal(mask('x a.b*c(d) axbbbcd'), 'x *** axbbbcd', 'regex characters are literal');
  assert.equal(mask(''), '');
  clearSecretsForTests();
  assert.equal(mask('s3cretvalue'), 's3cretvalue');
});

test('mask: overlapping secrets are hidden leftmost first; thousands of secrets stay fast', () => {
  clearSecretsForTests();
  registerSecret('abcdef');
  registerSecret('cdefgh');
  assert.equal(mask('abcdefgh'), '***gh', 'leftmost match wins, like a regular expression would');
  assert.equal(mask('xxcdefghabcdef'), 'xx******');
  clearSecretsForTests();
  // 2,000 generated secrets (500 sites x salts and passwords is this order), every one embedded once
  const secrets = Array.from({ length: 2000 }, (_, i) => `S${i.toString(36).padStart(4, '0')}-${(i * 7919).toString(16)}-secret`);
  for (const s of secrets) registerSecret(s);
  const lines = secrets.map((s, i) => `line ${i}: value=${s} and some ordinary output around it`);
  const expected = secrets.map((_, i) => `line ${i}: value=*** and some ordinary output around it`).join('\n');
  const t0 = performance.now();
  const out = mask(lines.join('\n'));
  const ms = performance.now() - t0;
  console.log(`# mask: ${out.length} chars with ${secretCount()} registered strings in ${ms.toFixed(1)} ms`);
  assert.equal(out, expected);
  assert.ok(ms < 2000, `mask took ${ms} ms`);
  clearSecretsForTests();
});
