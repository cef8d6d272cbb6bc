// systemd: unit state (enabled, started/stopped/restarted/reloaded, masked) and unit files.
//
// Probe: `systemctl show -p ...` (LoadState, ActiveState, SubState, UnitFileState, NeedDaemonReload, DropInPaths)
// and `systemctl is-enabled`. systemd 252 (Debian 12) answers NeedDaemonReload=no for a drop-in written into a
// `<unit>.d` directory that did not exist at the last daemon-reload (it looks for drop-in directories in a cache of
// the unit directories made at that reload; later systemd versions bypass the cache there): the probe therefore also
// lists the drop-ins on disk and counts one that the loaded unit does not have as "needs daemon-reload".
// Apply: one script, in this order: daemon-reload, unmask, enable/disable, start/stop/restart/reload, mask. A start
// that systemd skips for an unmet Condition...= (exit 0, unit inactive) fails the step. 'restarted' and 'reloaded'
// always report changed (they are actions, used in handlers); everything else changes only what differs.
import type { Operation, Plan, StepContext, StepOptions } from '../types.ts';
import { absPath, argSpec, defineOp } from './base.ts';
import { z } from '../schema.ts';
import { GATHER_VAR, atomicWriteScript, gathered, memoFile, sh } from '../shell.ts';
import { b64decode, keyValues, lineDiff, parts, sha256 } from './sys-util.ts';

export interface SystemdArgs {
  name: string;
  enabled?: boolean;
  state?: 'started' | 'stopped' | 'restarted' | 'reloaded';
  masked?: boolean;
  /** run `systemctl daemon-reload` first when the unit's files changed on disk (or a drop-in is not loaded yet) */
  daemonReload?: boolean;
}

export interface UnitState {
  /** systemd is PID 1 on the host */
  systemd: boolean;
  load: string; // loaded | not-found | masked | bad-setting | error
  active: string; // active | inactive | failed | activating | deactivating | reloading
  sub: string;
  unitFileState: string;
  /** `systemctl is-enabled` answer: enabled, disabled, static, masked, alias, indirect, generated, ... */
  enabled: string;
  needDaemonReload: boolean;
  /** drop-ins on disk that the loaded unit does not have (systemd 252 may not say so in NeedDaemonReload) */
  newDropIns: string[];
}

const UNIT = /^[A-Za-z0-9:_.@\\-]+$/;

/** "nginx" → "nginx.service"; names with a known unit suffix stay as they are. */
export function unitName(name: string): string {
  return /\.(service|socket|timer|target|mount|automount|path|slice|scope|swap|device)$/.test(name) ? name : `${name}.service`;
}

/** Where a unit's own drop-in directories (`<unit>.d`) are looked for: /etc, /run, then the packages' directories. */
const DROPIN_DIRS = [
  '/etc/systemd/system',
  '/run/systemd/system',
  '/usr/local/lib/systemd/system',
  '/usr/lib/systemd/system',
  '/lib/systemd/system',
];

/** The unit properties a probe reads (`systemctl show -p`): Names tells which unit a block of a many-unit answer is. */
const SHOW =
  'systemctl show --no-pager -p Names -p LoadState -p ActiveState -p SubState -p UnitFileState -p NeedDaemonReload -p DropInPaths --';

/** A unit's words for its batch's gathered list (`units`): not a template (`foo@.service`: systemctl show refuses it, and with it the whole list). */
export const unitGather = (unit: string): { units: string[] } | undefined => (/@\.[a-z]+$/.test(unit) ? undefined : { units: [unit] });

/**
 * Shell setting $show to `systemctl show`'s block for unit $u and $en to `systemctl is-enabled`'s answer (prefixed
 * `=` when it came from the batch). In a probe batch that gathered the unit with others (unitGather), both are asked
 * once for every unit of the batch (memoFile) and this unit's part taken: its block (Names must list $u, else it is
 * not its block) and its line (when is-enabled got that far: it answers one line per unit, in order, and stops at the
 * first unit it cannot find). Otherwise, or when the batch's answer does not hold, asked for this unit alone. Read with
 * shell builtins only (each fork costs, and a host runs dozens of these probes).
 */
const UNIT_SHOW = [
  "show=''; en=''; names=''; i=0; n=0",
  `for x in ${gathered('units')}; do n=$((n + 1)); [ "$x" = "$u" ] && i=$n; done`,
  'if [ "$i" -gt 0 ]; then',
  `  ${memoFile(`${SHOW} $${GATHER_VAR}units 2>/dev/null`, 'f')}`,
  '  if [ -n "$f" ]; then',
  '    b=1; while IFS= read -r l; do',
  '      if [ -z "$l" ]; then b=$((b + 1)); [ "$b" -gt "$i" ] && break',
  `      elif [ "$b" -eq "$i" ]; then show="$show$l"$'\\n'; case $l in Names=*) names=\${l#Names=} ;; esac; fi`,
  '    done < "$f"',
  `    case " $names " in *" $u "*) show=\${show%$'\\n'} ;; *) show='' ;; esac`,
  `    ${memoFile(`systemctl is-enabled -- $${GATHER_VAR}units 2>/dev/null`, 'f')}`,
  '    k=0; while IFS= read -r l; do k=$((k + 1)); if [ "$k" -eq "$i" ]; then en="=$l"; break; fi; done < "$f"',
  '  fi',
  'fi',
  `[ -n "$show" ] || show=$(${SHOW} "$u" 2>/dev/null)`,
].join('\n');

/** Shell printing the `<key>=` line of $show (builtins only). */
const showLine = (key: string): string => `while IFS= read -r l; do case $l in ${key}=*) printf '%s\\n' "$l" ;; esac; done <<< "$show"`;

export function unitProbeScript(unit: string, dropInDirs: readonly string[] = DROPIN_DIRS): string {
  // a non-empty *.conf in <dir>/<unit>.d whose real path is not among the loaded unit's DropInPaths (empty files and
  // links to /dev/null mask a drop-in: systemd leaves them out, so does this)
  const globs = dropInDirs.map((d) => `${sh`${`${d}/${unit}.d`}`}/*.conf`).join(' ');
  return [
    'if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi',
    sh`u=${unit}`,
    UNIT_SHOW,
    `case $en in =*) en=\${en#=} ;; *) en=$(systemctl is-enabled -- "$u" 2>/dev/null) ;; esac`,
    `printf '%s\\n' "$show"`,
    'echo "IsEnabled=$en"',
    'dp=\'\'; while IFS= read -r l; do case $l in DropInPaths=*) dp=${l#DropInPaths=} ;; esac; done <<< "$show"',
    "known=' '; for d in $dp",
    '  do known="$known$(readlink -f -- "$d") "; done',
    `new=''; for f in ${globs}; do [ -s "$f" ] || continue; r=$(readlink -f -- "$f")`,
    '  case "$known" in *" $r "*) ;; *) case " $new " in *" $f "*) ;; *) new="$new $f" ;; esac ;; esac; done',
    'echo "NewDropIns=${new# }"',
  ].join('\n');
}

export function parseUnitState(out: string): UnitState {
  const r = keyValues(out);
  return {
    systemd: r.systemd === 'yes',
    load: r.LoadState ?? '',
    active: r.ActiveState ?? '',
    sub: r.SubState ?? '',
    unitFileState: r.UnitFileState ?? '',
    enabled: r.IsEnabled ?? '',
    needDaemonReload: r.NeedDaemonReload === 'yes',
    newDropIns: (r.NewDropIns ?? '').split(' ').filter(Boolean),
  };
}

const RUNNING = new Set(['active', 'activating', 'reloading']);
/** is-enabled answers that satisfy `enabled: true` (static/indirect/generated units cannot be enabled further) */
const ENABLED_OK = new Set([
  'enabled',
  'enabled-runtime',
  'static',
  'alias',
  'indirect',
  'generated',
  'transient',
  'linked',
  'linked-runtime',
]);

export const SYSTEMD_ARGS = argSpec<SystemdArgs>()('systemd', {
  name: z.string().regex(UNIT, { error: (iss) => `invalid unit name ${JSON.stringify(iss.input)}` }),
  enabled: z.boolean().optional(),
  state: z.enum(['started', 'stopped', 'restarted', 'reloaded']).optional(),
  masked: z.boolean().optional(),
  daemonReload: z.boolean().optional(),
});

export function systemd(input: SystemdArgs, options: StepOptions = {}): Operation {
  return SYSTEMD_ARGS.build(input, (a) => systemdOp(a, options));
}

/** After a start: systemd skips a unit whose Condition...= is not met and `systemctl start` still exits 0. */
export function conditionCheck(unit: string): string {
  const why = `${unit} was not started: a condition of the unit is not met (systemctl status ${unit})`;
  return sh`if [ "$(systemctl show -p ConditionResult --value -- ${unit})" = no ]; then echo ${why} >&2; exit 1; fi`;
}

function systemdOp(a: z.output<typeof SYSTEMD_ARGS.schema>, options: StepOptions): Operation {
  const unit = unitName(a.name);
  const what = [
    a.masked !== undefined ? (a.masked ? 'masked' : 'unmasked') : '',
    a.enabled !== undefined ? (a.enabled ? 'enabled' : 'disabled') : '',
    a.state ?? '',
  ]
    .filter(Boolean)
    .join(' ');

  return defineOp({
    kind: 'systemd',
    title: `systemd ${unit}${what ? ` ${what}` : ''}`,
    options,
    probe: () => ({ script: `(\n${unitProbeScript(unit)}\n) 2>/dev/null`, become: options.become, gather: unitGather(unit) }),
    plan: (ctx: StepContext, out: string): Plan => {
      const st = parseUnitState(out);
      if (!st.systemd) throw new Error(`${unit}: systemd is not the init system on ${ctx.host.name}`);
      const changes: string[] = [];
      const cmds: string[] = [];
      const missing = st.load === 'not-found' || (st.load === '' && st.unitFileState === '');
      if (missing && a.masked !== true) {
        // In check mode an earlier step (apt, unitFile) may be what creates the unit: predict, don't fail.
        if (!ctx.check) throw new Error(`${unit}: unit not found on ${ctx.host.name}`);
        changes.push(`unit ${unit} not found (an earlier step must create it)`);
      }
      const isMasked = st.load === 'masked' || st.unitFileState === 'masked' || st.enabled === 'masked';
      if ((st.needDaemonReload || st.newDropIns.length) && a.daemonReload) {
        cmds.push('systemctl daemon-reload');
        changes.push(
          st.needDaemonReload
            ? 'daemon-reload (unit files changed on disk)'
            : `daemon-reload (drop-in not loaded: ${st.newDropIns.join(', ')})`,
        );
      }
      if (a.masked === false && isMasked) {
        cmds.push(sh`systemctl unmask -- ${unit}`);
        changes.push('unmask');
      }
      const willBeMasked = a.masked === true || (isMasked && a.masked !== false);
      if (a.enabled !== undefined && !willBeMasked) {
        const en = ENABLED_OK.has(st.enabled);
        if (a.enabled && !en) {
          cmds.push(sh`systemctl enable -- ${unit}`);
          changes.push(`enable (was ${st.enabled || 'unknown'})`);
        } else if (!a.enabled && (st.enabled === 'enabled' || st.enabled === 'enabled-runtime' || st.enabled === 'linked')) {
          cmds.push(sh`systemctl disable -- ${unit}`);
          changes.push(`disable (was ${st.enabled})`);
        }
      }
      if (willBeMasked && (a.state === 'started' || a.state === 'restarted' || a.state === 'reloaded')) {
        // a masked unit cannot start: say so instead of reporting "ok" for a unit that is not running
        if (!ctx.check || a.masked === true)
          throw new Error(`${unit} is masked on ${ctx.host.name}: it cannot be ${a.state} (set masked: false)`);
        changes.push(`${unit} is masked: ${a.state} would fail unless an earlier step unmasks it`);
      }
      const running = RUNNING.has(st.active);
      if (a.state === 'started' && !running && !willBeMasked) {
        cmds.push(sh`systemctl start -- ${unit}`);
        changes.push(`start (was ${st.active || 'unknown'})`);
      } else if ((a.state === 'stopped' || (a.masked === true && !isMasked)) && running) {
        cmds.push(sh`systemctl stop -- ${unit}`);
        changes.push(`stop (was ${st.active})`);
      } else if (a.state === 'restarted') {
        cmds.push(sh`systemctl restart -- ${unit}`);
        changes.push(running ? 'restart' : `restart (was ${st.active || 'unknown'})`);
      } else if (a.state === 'reloaded') {
        // reload of a stopped unit starts it (there is nothing to reload)
        cmds.push(running ? sh`systemctl reload-or-restart -- ${unit}` : sh`systemctl start -- ${unit}`);
        changes.push(running ? 'reload' : `start (was ${st.active || 'unknown'})`);
      }
      if (cmds.some((c) => /^systemctl (start|restart|reload-or-restart) /.test(c))) {
        // a unit whose Condition...= is not met is skipped by `systemctl start`, which still exits 0: not started
        cmds.push(conditionCheck(unit));
      }
      if (a.masked === true && !isMasked) {
        cmds.push(sh`systemctl mask -- ${unit}`);
        changes.push('mask');
      }
      const result = { unit, ...st };
      if (changes.length === 0) return { changed: false, changes: [], result, reason: `service already ${what || 'in that state'}` };
      return {
        changed: true,
        changes,
        apply: { script: ['set -e', ...cmds].join('\n'), become: options.become },
        invalidates: ['services'],
        result,
      };
    },
  });
}

export interface UnitFileArgs {
  /** unit name; ".service" is added when there is no unit suffix */
  name: string;
  content: string;
  /** directory, default /etc/systemd/system */
  dir?: string;
}

/** A unit file under /etc/systemd/system, written atomically, with daemon-reload in the same script. */
export const UNIT_FILE_ARGS = argSpec<UnitFileArgs>()('unitFile', {
  name: z.string().regex(UNIT, { error: (iss) => `invalid unit name ${JSON.stringify(iss.input)}` }),
  content: z.string(),
  dir: absPath.default('/etc/systemd/system'),
});

export function unitFile(input: UnitFileArgs, options: StepOptions = {}): Operation {
  return UNIT_FILE_ARGS.build(input, (a) => unitFileOp(a, options));
}

function unitFileOp(a: z.output<typeof UNIT_FILE_ARGS.schema>, options: StepOptions): Operation {
  const unit = unitName(a.name);
  const dir = a.dir ?? '/etc/systemd/system';
  const path = `${dir.replace(/\/+$/, '')}/${unit}`;
  const want = sha256(a.content);

  return defineOp({
    kind: 'unitFile',
    title: `unit file ${path}`,
    options,
    probe: () => ({
      script: [
        '(',
        'if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi',
        sh`if [ -f ${path} ]; then echo exists=yes; echo sha256=$(sha256sum < ${path} | cut -d' ' -f1); else echo exists=no; fi`,
        sh`u=${unit}`,
        UNIT_SHOW,
        showLine('NeedDaemonReload'),
        sh`echo %%content; [ -f ${path} ] && [ $(stat -c %s ${path}) -le 262144 ] && base64 -w0 < ${path}; echo`,
        ') 2>/dev/null',
      ].join('\n'),
      become: options.become,
      gather: unitGather(unit),
    }),
    plan: (ctx: StepContext, out: string): Plan => {
      const p = parts(out);
      const r = keyValues(p.get('') ?? '');
      const same = r.exists === 'yes' && r.sha256 === want;
      const reload = r.systemd === 'yes';
      if (same && !(reload && r.NeedDaemonReload === 'yes')) {
        return { changed: false, changes: [], result: { path, unit }, reason: 'unit file already has that content' };
      }
      const changes: string[] = [];
      let diff: string | undefined;
      if (!same) {
        changes.push(r.exists === 'yes' ? `update ${path}` : `create ${path}`);
        if (ctx.diff) diff = lineDiff(r.exists === 'yes' ? b64decode(p.get('content') ?? '') : '', a.content, path);
      }
      if (reload) changes.push('daemon-reload');
      const script = [
        'set -e',
        sh`install -d -m 0755 -- ${dir}`,
        // the unit arrives on stdin: installed only when complete (sha256 checked), by a rename
        same ? '' : atomicWriteScript(path, { sha: want, mode: '0644' }),
        // without systemd as PID 1 (image builds) there is nothing to reload
        reload ? 'systemctl daemon-reload' : '',
      ]
        .filter(Boolean)
        .join('\n');
      return {
        changed: true,
        changes,
        diff,
        apply: { script, stdin: same ? undefined : a.content, become: options.become },
        invalidates: ['services'],
        result: { path, unit },
      };
    },
  });
}
