// command: run a shell command, guarded so that it is idempotent and check mode predicts honestly.
//
// Guards are evaluated in the probe (read-only, one round trip with the other probes):
//   creates  — skip when this path exists          removes — skip when this path does NOT exist
//   unless   — a read-only check command; exit 0 = already done, skip
//   onlyIf   — a read-only check command; non-zero = skip
// Without any guard the command always runs and reports changed ("would run (unguarded)" in check
// mode), unless changedWhen(result) says otherwise after the real run.
//
// `cmd` as a string is shell code written by the role author (trusted, like Ansible's `shell`); as an
// array it is argv, every word quoted. Paths and chdir are always quoted.
//
// `env` values never appear on a command line (a host's `ps` shows every local user the command line of the
// shell that sshd starts): they travel on stdin, NUL-terminated, ahead of `stdin`, and the script reads them
// with bash's `read -d ''` (a builtin, one byte at a time from a pipe, so the bytes after them stay for the
// command) and exports them. Only the names are in the script. The guards (creates/removes/unless/onlyIf)
// run in the probe without `env`: it is the command's environment, not theirs.
import type { ExecResult, Operation, Plan, StepContext, StepOptions } from '../types.ts';
import { RemoteCommandError } from '../errors.ts';
import { argSpec, defineOp, fn } from './base.ts';
import { z } from '../schema.ts';
import { sh } from '../shell.ts';
import { mask } from '../secrets.ts';
import { keyValues } from './sys-util.ts';

export interface CommandArgs {
  cmd: string | string[];
  creates?: string;
  removes?: string;
  /** read-only check run in the probe: exit 0 = already done (skip) */
  unless?: string | string[];
  /** read-only check run in the probe: exit non-zero = skip */
  onlyIf?: string | string[];
  /** decide after the real run whether it changed something (default: it did) */
  changedWhen?: (r: ExecResult) => boolean;
  /** exit codes that are not failures (default [0]) */
  okCodes?: number[];
  chdir?: string;
  env?: Record<string, string>;
  /** bytes for the command's stdin */
  stdin?: string;
  timeoutMs?: number;
}

/** What the step registers: the guard decision, or the command's result. */
export interface CommandResult {
  skipped: boolean;
  reason: string;
  stdout?: string;
  stderr?: string;
  code?: number;
}

const words = (c: string | string[]): string => (Array.isArray(c) ? sh`${c}` : c);

/** `read` + `export` of each env name (values come on stdin), then `cd DIR`, joined by && (empty: no prelude). */
function prelude(a: CommandArgs): string {
  const out: string[] = [];
  for (const k of Object.keys(a.env ?? {})) out.push(`IFS= read -r -d '' ${k} && export ${k}`);
  if (a.chdir !== undefined) out.push(sh`cd -- ${a.chdir}`);
  return out.join(' && ');
}

/** The stdin of the apply: each env value NUL-terminated, in the order of prelude(), then the command's own stdin. */
export function commandStdin(a: Pick<CommandArgs, 'env' | 'stdin'>): string | undefined {
  const values = Object.values(a.env ?? {});
  if (!values.length) return a.stdin;
  return `${values.map((v) => `${v}\0`).join('')}${a.stdin ?? ''}`;
}

export const COMMAND_ARGS = argSpec<CommandArgs>()('command', {
  cmd: z.union([z.string().refine((c) => c.trim() !== '', { error: 'must be a non-empty command' }), z.array(z.string()).min(1)]),
  creates: z.string().optional(),
  removes: z.string().optional(),
  unless: z.union([z.string(), z.array(z.string())]).optional(),
  onlyIf: z.union([z.string(), z.array(z.string())]).optional(),
  changedWhen: fn<(r: ExecResult) => boolean>().optional(),
  okCodes: z.array(z.int().min(0).max(255)).optional(),
  chdir: z.string().optional(),
  env: z
    .record(
      z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: (iss) => `invalid environment variable name ${JSON.stringify(iss.input)}` }),
      z.string().refine((v) => !v.includes('\0'), { error: 'a NUL byte cannot be in an environment variable' }),
    )
    .optional(),
  stdin: z.string().optional(),
  timeoutMs: z.int().min(1).optional(),
});

export function command(input: CommandArgs, options: StepOptions = {}): Operation {
  return COMMAND_ARGS.build(input, (a) => commandOp(a, options));
}

function commandOp(a: z.output<typeof COMMAND_ARGS.schema>, options: StepOptions): Operation {
  const text = words(a.cmd);
  const guarded = a.creates !== undefined || a.removes !== undefined || a.unless !== undefined || a.onlyIf !== undefined;
  // masked before it is cut: a secret cut in two by the cut would no longer be found by mask()
  const short = mask(text).split('\n')[0]!.slice(0, 80);

  return defineOp({
    kind: 'command',
    title: `command ${short}`,
    options,
    probe: () => {
      if (!guarded && a.chdir === undefined) return null;
      const s: string[] = [];
      if (a.chdir !== undefined) s.push(sh`if cd -- ${a.chdir}; then echo chdir=ok; else echo chdir=missing; fi`);
      if (a.creates !== undefined)
        s.push(sh`if [ -e ${a.creates} ] || [ -L ${a.creates} ]; then echo creates=yes; else echo creates=no; fi`);
      if (a.removes !== undefined)
        s.push(sh`if [ -e ${a.removes} ] || [ -L ${a.removes} ]; then echo removes=yes; else echo removes=no; fi`);
      // guards run in their own subshell, stdin closed, output discarded: only the exit code matters
      if (a.unless !== undefined) s.push(`( ${words(a.unless)}\n) </dev/null >/dev/null 2>&1; echo unless=$?`);
      if (a.onlyIf !== undefined) s.push(`( ${words(a.onlyIf)}\n) </dev/null >/dev/null 2>&1; echo onlyif=$?`);
      return { script: `(\n${s.join('\n')}\n) 2>/dev/null`, become: options.become };
    },
    plan: (_ctx: StepContext, out: string): Plan => {
      const r = keyValues(out);
      const skip = (reason: string): Plan => ({
        changed: false,
        changes: [],
        result: { skipped: true, reason } satisfies CommandResult,
        reason,
      });
      const why: string[] = [];
      if (r.chdir === 'missing')
        why.push(`chdir ${a.chdir} missing: guards not evaluated, the run fails unless an earlier step creates it`);
      else {
        if (a.creates !== undefined) {
          if (r.creates === 'yes') return skip(`skipped: ${a.creates} exists`);
          why.push(`${a.creates} missing`);
        }
        if (a.removes !== undefined) {
          if (r.removes !== 'yes') return skip(`skipped: ${a.removes} does not exist`);
          why.push(`${a.removes} exists`);
        }
        if (a.unless !== undefined) {
          if (r.unless === '0') return skip('skipped: unless check passed');
          why.push(`unless check failed (exit ${r.unless ?? '?'})`);
        }
        if (a.onlyIf !== undefined) {
          if (r.onlyif !== '0') return skip(`skipped: onlyIf check failed (exit ${r.onlyif ?? '?'})`);
          why.push('onlyIf check passed');
        }
      }
      const reason = guarded ? why.join(', ') : 'unguarded';
      const plan: Plan = {
        changed: true,
        changes: [`would run (${reason})${a.changedWhen ? ' (changedWhen decides after the run)' : ''}: ${short}`],
        result: { skipped: false, reason } satisfies CommandResult,
      };
      plan.apply = async (ctx: StepContext): Promise<void> => {
        const pre = prelude(a);
        const script = pre ? `${pre} && {\n${text}\n}` : text;
        const res = await ctx.exec(script, { nothrow: true, stdin: commandStdin(a), become: options.become, timeoutMs: a.timeoutMs });
        if (!(a.okCodes ?? [0]).includes(res.code)) throw new RemoteCommandError(ctx.host.name, text, res.code, res.stdout, res.stderr);
        // The outcome is only known now: the plan object is updated in place (the runner reports
        // plan.changed / changes / result as they are after apply).
        plan.result = { skipped: false, reason, stdout: res.stdout, stderr: res.stderr, code: res.code } satisfies CommandResult;
        plan.changes = [`ran (${reason}): ${short}`];
        if (a.changedWhen && !a.changedWhen(res)) {
          plan.changed = false;
          plan.changes = [];
        }
      };
      return plan;
    },
  });
}
