// Through the real command line (playbooks/run-role.ts): bad inventory input exits 4 with a clear message
// before anything connects. Run: node --import tsx --test test/unit/inventory*.test.ts
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FIX = 'test/fixtures/inventory';

function runRole(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env = { ...process.env };
  delete env.WPF_TEST_SURELY_UNSET_VAR;
  delete env.WPFARM_INVENTORY;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'playbooks/run-role.ts', ...args], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

test('an unknown --limit pattern: exit 4, the pattern named', async () => {
  const r = await runRole(['common', '-i', `${FIX}/minimal.yml`, '--limit', 'solo,nosuch']);
  assert.equal(r.code, 4, r.stderr);
  assert.match(r.stderr, /unknown host pattern 'nosuch': no host or group of inventory test\/fixtures\/inventory\/minimal\.yml matches/);
});

test('a missing .env value: exit 4, the variable and the file:line of the reference named', async () => {
  const r = await runRole(['common', '-i', `${FIX}/bad-missing-env.yml`]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(
    r.stderr,
    /test\/fixtures\/inventory\/bad-missing-env\.yml:6:\d+ hosts\.db1\.become_password: env var WPF_TEST_SURELY_UNSET_VAR is not set \(or empty\) in the environment/,
  );
});

test('a malformed inventory: exit 4, file:line named', async () => {
  const r = await runRole(['common', '-i', `${FIX}/bad-typo.yml`]);
  assert.equal(r.code, 4, r.stderr);
  assert.match(
    r.stderr,
    /test\/fixtures\/inventory\/bad-typo\.yml:6:\d+ hosts\.db1\.adress: unknown key 'adress' in hosts\.db1 \(did you mean 'address'\?\)/,
  );
});
