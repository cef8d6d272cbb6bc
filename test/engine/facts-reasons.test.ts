// Typed facts with arguments, reasons of unchanged steps, step locations and explained exit codes, through
// the CLI on a real OpenSSH sshd host (test/harness/sshd.ts) with the fixture role test/fixtures/roles/typed-facts.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type SshdLab, startSshdHosts } from '../harness/sshd.ts';

interface Result {
  host: string;
  step: string;
  status: string;
  changes: string[];
  error?: string;
  reason?: string;
  location?: string;
  result?: unknown;
}
interface Report {
  exitCode: number;
  results: Result[];
}

const ROLE = 'test/fixtures/roles/typed-facts.ts';
let lab: SshdLab;

function cli(args: string[]): Promise<{ code: number; stdout: string; json?: Report }> {
  const jsonFile = join(lab.dir, `report-${Math.random().toString(36).slice(2)}.json`);
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'playbooks/run-role.ts', ROLE, '--inventory', lab.inventoryFile, '--json', jsonFile, ...args],
      {
        env: { ...process.env, CI: 'true' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('close', (code) => {
      const json = existsSync(jsonFile) ? (JSON.parse(readFileSync(jsonFile, 'utf8')) as Report) : undefined;
      resolve({ code: code ?? -1, stdout, json });
    });
  });
}

/** the line of the fixture that carries `marker` (1-based) */
const lineOf = (marker: string) =>
  readFileSync(ROLE, 'utf8')
    .split('\n')
    .findIndex((l) => l.includes(marker)) + 1;

before(async () => {
  lab = await startSshdHosts(1, { prefix: 'tf' });
});
after(async () => {
  await lab?.stop();
});

describe('typed facts, reasons, locations on a real sshd host', () => {
  test('fileStat with two different paths: one round trip, each typed value from its own path', async () => {
    const r = await cli([]);
    assert.equal(r.code, 0, r.stdout);
    const stat = r.json!.results.find((x) => x.step === 'stat two paths')!;
    const v = stat.result as {
      a: { exists: boolean; type: string; mode: string; size: number };
      none: { exists: boolean };
      roundTrips: number;
    };
    assert.equal(v.roundTrips, 1, 'two fileStat facts with different arguments cost ONE round trip');
    assert.deepEqual([v.a.exists, v.a.type, v.a.mode, v.a.size], [true, 'file', '0640', 4]);
    assert.equal(v.none.exists, false);
    // the first run creates b.conf between two reads of its fileStat: the second read sees it (not the cached absence)
    const before = r.json!.results.find((x) => x.step === 'stat b before')!.result as { exists: boolean };
    const after = r.json!.results.find((x) => x.step === 'stat b after')!.result as { exists: boolean; mode: string; size: number };
    assert.equal(r.json!.results.find((x) => x.step === 'file /srv/tf/b.conf')!.status, 'changed');
    assert.equal(before.exists, false);
    assert.deepEqual([after.exists, after.mode, after.size], [true, '0600', 5]);
  });

  test('a rerun: every unchanged step says why, at -v and in the JSON report, with its location', async () => {
    const r = await cli(['-v']);
    assert.equal(r.code, 0, r.stdout);
    const res = r.json!.results;
    assert.ok(
      res.every((x) => x.status === 'ok'),
      JSON.stringify(res),
    );
    const f = res.find((x) => x.step === 'file /srv/tf/a.conf')!;
    assert.equal(f.reason, 'file already has that content and attributes');
    assert.equal(res.find((x) => x.step === 'directory /srv/tf')!.reason, 'directory already exists with those attributes');
    assert.equal(res.find((x) => x.step === 'stat two paths')!.reason, 'read only', 'a task returns its own reason');
    assert.match(r.stdout, /ok\s+\S+\s+file \/srv\/tf\/a\.conf \(file already has that content and attributes\)/);
    assert.match(f.location ?? '', /^test\/fixtures\/roles\/typed-facts\.ts:\d+:\d+$/);
    const quiet = await cli([]);
    assert.doesNotMatch(quiet.stdout, /already has that content/, 'reasons of ok steps only at -v');
  });

  test('a bad argument: exit 4, the message names the field and the role file:line, nothing runs', async () => {
    const r = await cli(['-e', 'bad_arg=1']);
    assert.equal(r.code, 4, r.stdout);
    assert.match(
      r.stdout,
      new RegExp(
        `test/fixtures/roles/typed-facts\\.ts:${lineOf('BAD-ARG-LINE')}:\\d+ lineinfile\\.line: is required when state is "present"`,
      ),
    );
  });

  test('a missing command: exit 127 explained, stderr shown, location in the failure line, the recap and the report', async () => {
    const r = await cli(['-e', 'missing_cmd=1']);
    assert.equal(r.code, 2, r.stdout);
    const failed = r.json!.results.find((x) => x.status === 'failed')!;
    assert.match(failed.error ?? '', /exit 127: command not found \(not installed, or not in PATH\)/);
    assert.match(failed.error ?? '', /wpfarm-no-such-command: (command )?not found/);
    const loc = `test/fixtures/roles/typed-facts.ts:${lineOf('MISSING-CMD-LINE')}`;
    assert.match(failed.location ?? '', new RegExp(`^${loc}:\\d+$`));
    const recap = r.stdout.slice(r.stdout.indexOf('FAILURES'));
    assert.match(recap, new RegExp(`command wpfarm-no-such-command --flag  \\(${loc}:\\d+\\)`));
  });
});
