// `make test`: the unit tier first, then the contract and engine tiers side by side with the lab tier.
//   node --import tsx scripts/test-tiers.ts [--serial]
//
// Why side by side: the lab tier (~37 min) spends most of its time waiting on its containers (Swarm convergence,
// request loops, timers), and the contract and engine tiers (~13 min) need no lab, so `make test` takes about as long
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
  const unit: Stream = { tag: 'unit', files: files('unit') };
  const fast: Stream = { tag: 'fast', files: files('contract', 'engine') };
  const lab: Stream = { tag: 'lab', files: files('lab') };
  const started = Date.now();
  // the unit tier alone first: it is short, and its few timing checks (SIGINT relays) run on a quiet machine
  const rcs = [await run(unit, false)];
  if (serial) {
    rcs.push(await run(fast, false), await run(lab, false));
  } else {
    process.stdout.write('contract and engine tiers [fast] side by side with the lab tier [lab]\n');
    rcs.push(...(await Promise.all([run(fast, true), run(lab, true)])));
  }
  process.stdout.write(`make test: ${Math.round((Date.now() - started) / 1000)} s of tests, exit ${rcs.find((c) => c !== 0) ?? 0}\n`);
  return rcs.find((c) => c !== 0) ?? 0;
}

process.exitCode = await main();
