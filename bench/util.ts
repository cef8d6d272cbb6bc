// Helpers shared by the bench scripts (bench/run.ts, bench/cli-start.ts).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Timed {
  wall: number;
  cpu: number;
  rssMb: number;
  stdout: string;
  code: number;
}

/** Run a command under GNU time: wall, CPU (user+sys, children included) and peak RSS. */
export function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Timed {
  const tf = join('/tmp', `wpfarm-bench-time-${process.pid}`);
  const r = spawnSync('/usr/bin/time', ['-o', tf, '-f', '%e %U %S %M', cmd, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 64 * 1024 * 1024,
  });
  const [e, u, s, m] = readFileSync(tf, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
  rmSync(tf, { force: true });
  return { wall: e!, cpu: u! + s!, rssMb: m! / 1024, stdout: (r.stdout ?? '') + (r.stderr ?? ''), code: r.status ?? -1 };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** How a wpfarm playbook is started: through tsx (as `npx tsx` / `node --import tsx`), or the prebuilt fast CLI. */
export type CliMode = 'tsx' | 'fast';
export const LAUNCHER = '.wpfarm/cli/wpfarm.mjs';

/** node arguments that run `playbook args...` in the given mode */
export const nodeArgs = (mode: CliMode, playbook: string, args: string[]): string[] =>
  mode === 'fast' ? [LAUNCHER, playbook, ...args] : ['--import', 'tsx', playbook, ...args];

/**
 * Record a scenario's row: bench/results/latest.json keeps one row per scenario (this one replaced), and
 * bench/README.md the text between `<!-- scenario:start -->` and `<!-- scenario:end -->` (a new section
 * `## title` at the end the first time).
 */
export function recordScenario(scenario: string, row: Record<string, unknown>, markdown: string, title: string): void {
  const file = 'bench/results/latest.json';
  const rows = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { scenario?: string }[]) : [];
  writeFileSync(file, `${JSON.stringify([...rows.filter((r) => r.scenario !== scenario), row], null, 2)}\n`);
  const start = `<!-- ${scenario}:start -->`;
  const end = `<!-- ${scenario}:end -->`;
  const block = `${start}\n${markdown}\n${end}`;
  const readme = readFileSync('bench/README.md', 'utf8');
  writeFileSync(
    'bench/README.md',
    readme.includes(start) ? readme.replace(new RegExp(`${start}[\\s\\S]*${end}`), () => block) : `${readme}\n## ${title}\n\n${block}\n`,
  );
}
