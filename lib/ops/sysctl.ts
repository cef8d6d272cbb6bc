// sysctl: a kernel parameter, persisted in a sysctl.d file AND set live through /proc/sys.
// The probe reads the file (for the `name = value` line) and the live value in the same round trip.
// Values are compared with whitespace normalised ("4096 87380 6291456" == "4096\t87380\t6291456").
// state absent removes the persisted line only (the live value is left as is).
import type { Operation, Plan, StepOptions } from '../types.ts';
import { absPath, argSpec, defineOp } from './base.ts';
import { z } from '../schema.ts';
import { memo, sections, sh } from '../shell.ts';
import { parsePathProbe, pathGather, pathProbeScript, EDIT_CONTENT_CAP } from './files.ts';
import { editLines, planEdit } from './lineinfile.ts';

export interface SysctlArgs {
  /** dotted name: "net.ipv4.ip_forward" */
  name: string;
  value?: string | number;
  /** where to persist; default /etc/sysctl.d/99-wpfarm.conf */
  file?: string;
  /** set the live value too (default true) */
  reload?: boolean;
  state?: 'present' | 'absent';
}

export const DEFAULT_SYSCTL_FILE = '/etc/sysctl.d/99-wpfarm.conf';

/** /proc/sys path of a dotted name (a '/' inside a component, e.g. a VLAN "eth0.1" written eth0/1, is a '.'). */
export function procPath(name: string): string {
  return `/proc/sys/${name
    .split('.')
    .map((c) => c.replace(/\//g, '.'))
    .join('/')}`;
}

export const normValue = (v: string): string => v.trim().split(/\s+/).join(' ');

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The value of the last `name = value` line of a sysctl.d text, normalised; null when absent. */
function currentValue(text: string, re: RegExp): string | null {
  let found: string | null = null;
  for (const line of text.split('\n')) if (re.test(line)) found = normValue(line.slice(line.indexOf('=') + 1));
  return found;
}

export const SYSCTL_ARGS = argSpec<SysctlArgs>()(
  'sysctl',
  {
    name: z.string().refine((n) => /^[A-Za-z0-9_][A-Za-z0-9_./-]*$/.test(n) && !n.includes('..'), {
      error: (iss) => `invalid name ${JSON.stringify(iss.input)}`,
    }),
    value: z
      .union([z.string(), z.number()])
      .refine((v) => String(v) !== '', { error: 'value is required' })
      .refine((v) => !String(v).trim().includes('\n'), { error: 'must be one line' })
      .optional(),
    file: absPath.default(DEFAULT_SYSCTL_FILE),
    reload: z.boolean().default(true),
    state: z.enum(['present', 'absent']).default('present'),
  },
  { requiredIf: [['state', 'present', ['value']]] },
);

export function sysctl(input: SysctlArgs, opts: StepOptions = {}): Operation {
  return SYSCTL_ARGS.build(input, (args) => sysctlOp(args, opts));
}

function sysctlOp(args: z.output<typeof SYSCTL_ARGS.schema>, opts: StepOptions): Operation {
  const name = args.name;
  const what = `sysctl ${name}`;
  const state = args.state;
  const value = normValue(String(args.value ?? ''));
  const file = args.file;
  const reload = args.reload;
  const proc = procPath(name);
  const regexp = new RegExp(`^\\s*${escapeRe(name)}\\s*=`);
  return defineOp({
    kind: 'sysctl',
    title: state === 'present' ? `sysctl ${name}=${value}` : `sysctl ${name} absent`,
    options: opts,
    probe: () => ({
      script:
        // the file's part is the same for every sysctl step on that file (six in roles/common): read once per batch
        memo(pathProbeScript(file, { sha: true, contentCap: EDIT_CONTENT_CAP })) +
        // read with a builtin (no process); the value has no NUL, so read returns 1 at EOF with v set
        `\n{ echo @@live; v=; IFS= read -r -d '' v < ${sh`${proc}`}; if [ -n "$v" ]; then printf 'ok %s\\n' "$v"; else echo missing; fi; } 2>/dev/null`,
      gather: pathGather({ path: file, sha: true }),
    }),
    plan: (ctx, out) => {
      const live = (sections(out).get('live') ?? '').trim();
      const st = parsePathProbe(out);
      const persist = planEdit(ctx, st, {
        path: file,
        create: true,
        what,
        want: {},
        edit: (text) =>
          state === 'present' ? editLines(text, { line: `${name} = ${value}`, regexp, state }) : editLines(text, { regexp, state }),
        absentOk: state === 'absent',
      });
      const result = { name, value, file };
      // change lines name the key, not line numbers or file creation: several sysctl steps usually share
      // one file, and in check mode each sees it as it was before the run
      const changes: string[] = [];
      if (persist.changed) {
        const old = currentValue(st.content?.toString('utf8') ?? '', regexp);
        if (state === 'absent') changes.push(`${file}: remove ${name}`);
        else changes.push(old === null ? `${file}: add ${name} = ${value}` : `${file}: ${name} = ${old} -> ${value}`);
      }
      const scripts: string[] = [];
      if (persist.changed && persist.apply && typeof persist.apply !== 'function') scripts.push(persist.apply.script);
      const stdin = persist.changed && persist.apply && typeof persist.apply !== 'function' ? persist.apply.stdin : undefined;
      if (state === 'present' && reload) {
        if (!live.startsWith('ok')) throw new Error(`${what}: unknown key on this host (${proc} is not readable)`);
        const cur = normValue(live.slice(2));
        if (cur !== value) {
          changes.push(`live value ${cur} -> ${value}`);
          scripts.push(sh`printf '%s\\n' ${value} > ${proc}`);
        }
      }
      if (!changes.length) return { changed: false, changes: [], result, reason: 'value already set and persisted' };
      const plan: Plan = { changed: true, changes, result };
      if (scripts.length) plan.apply = { script: scripts.join(' && '), stdin: stdin ?? '' };
      if (persist.diff) plan.diff = persist.diff;
      return plan;
    },
  });
}
