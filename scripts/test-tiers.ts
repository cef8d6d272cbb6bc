// `make test`: the unit tier's timed file first, then the unit, contract and engine tiers side by side with the lab tier.
//   node --import tsx scripts/test-tiers.ts [--serial]
//
// Why side by side: the lab tier (64 min in CI-like run 8) spends most of its time waiting on its containers (Swarm
// convergence, request loops, timers), and the unit, contract and engine tiers (26 min there) need no lab, so `make test` takes about as long
// as the lab tier alone instead of the sum. Every test runs exactly as it does alone (the same files, the same
// node --test options, each tier's files one at a time); only the two streams overlap. Each output line is prefixed
// with its stream ([lab] / [fast]); the exit status is the first non-zero of the streams. `--serial`
// (or WPFARM_TEST_SERIAL=1) runs everything one after the other, as before.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createInterface } from 'node:readline';

const NODE_TEST = ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=1800000', '--test-reporter=spec'];
/** test/<tier>/*.test.ts of each tier, in name order (the order the shell's glob gives) */
const files = (...tiers: string[]): string[] =>
  tiers.flatMap((t) =>
    readdirSync(`test/${t}`)
      .filter((f) => f.endsWith('.test.ts'))
      .sort()
      .map((f) => `test/${t}/${f}`),
  );

/** unit files whose assertions hold only on a quiet machine (a deadline of another program's, not ours) */
const QUIET_UNIT = ['test/unit/tsx-parent.test.ts'];

interface Stream {
  tag: string;
  files: string[];
}

function run(s: Stream, prefix: boolean): Promise<number> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [...NODE_TEST, ...s.files], { stdio: ['ignore', 'pipe', 'pipe'] });
    const tag = prefix ? `[${s.tag}] ` : '';
    for (const out of [child.stdout, child.stderr]) {
      const sink = out === child.stdout ? process.stdout : process.stderr;
      createInterface({ input: out }).on('line', (line) => sink.write(`${tag}${line}\n`));
    }
    child.on('close', (code, signal) => {
      const rc = code ?? (signal ? 128 : 1);
      process.stdout.write(`${tag}${s.tag} tier(s) ended: exit ${rc} after ${Math.round((Date.now() - started) / 1000)} s\n`);
      resolve(rc);
    });
  });
}

async function main(): Promise<number> {
  const serial = process.argv.includes('--serial') || process.env.WPFARM_TEST_SERIAL === '1';
  const started = Date.now();
  const unitFiles = files('unit');
  if (serial) {
    const rcs = [];
    for (const s of [
      { tag: 'unit', files: unitFiles },
      { tag: 'fast', files: files('contract', 'engine') },
      { tag: 'lab', files: files('lab') },
    ])
      rcs.push(await run(s, false));
    return end(started, rcs);
  }
  // the unit files that time a deadline they do not own (tsx's 60 ms before SIGKILL) alone first, on a quiet
  // machine; every other unit file runs in the fast stream, beside the lab (the lab tier is the long one: the unit
  // tier alone, ~200 s mostly process starts, was all on the critical path)
  const quiet = unitFiles.filter((f) => QUIET_UNIT.includes(f));
  const rcs = [await run({ tag: 'unit (timed)', files: quiet }, false)];
  const fast: Stream = { tag: 'fast', files: [...unitFiles.filter((f) => !quiet.includes(f)), ...files('contract', 'engine')] };
  const lab: Stream = { tag: 'lab', files: files('lab') };
  process.stdout.write('unit, contract and engine tiers [fast] side by side with the lab tier [lab]\n');
  rcs.push(...(await Promise.all([run(fast, true), run(lab, true)])));
  return end(started, rcs);
}

function end(started: number, rcs: number[]): number {
  process.stdout.write(`make test: ${Math.round((Date.now() - started) / 1000)} s of tests, exit ${rcs.find((c) => c !== 0) ?? 0}\n`);
  return rcs.find((c) => c !== 0) ?? 0;
}

process.exitCode = await main();
