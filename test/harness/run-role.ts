// playbooks/run-role.ts as a user runs it, on a test's sshd hosts (test/harness/sshd.ts): its exit code, its console
// output and its --json report (the engine tests that read a run's report and events).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SshdLab } from './sshd.ts';

/** run-role.ts ROLES --inventory <the lab's> --json <file> ARGS; rejects when the run wrote no report. */
export function runRoles<R>(
  lab: SshdLab,
  roles: readonly string[],
  args: readonly string[],
): Promise<{ code: number; out: string; json: R }> {
  const jsonFile = join(lab.dir, `report-${Math.random().toString(36).slice(2)}.json`);
  const argv = ['--import', 'tsx', 'playbooks/run-role.ts', ...roles, '--inventory', lab.inventoryFile, '--json', jsonFile, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { env: { ...process.env, CI: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => {
      if (!existsSync(jsonFile)) return reject(new Error(`no report (exit ${code}):\n${out}`));
      resolve({ code: code ?? -1, out, json: JSON.parse(readFileSync(jsonFile, 'utf8')) as R });
    });
  });
}
