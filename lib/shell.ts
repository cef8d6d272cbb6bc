// Remote command building, and the parsing of sectioned script output (`sections`). Every interpolated
// value is quoted with zx's `quote` (bash ANSI-C quoting where needed); nothing is ever concatenated by hand.
// Remote login shells must be bash (Debian's default for root and for users created by the `user` operation).
import { createHash } from 'node:crypto';
import { quote } from 'zx/core';

export { quote };

/** A piece of shell that must not be quoted again (the output of `sh`). */
export class Raw {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

export type ShellArg = string | number | boolean | Raw | ReadonlyArray<string | number | Raw>;

function one(v: string | number | boolean | Raw): string {
  if (v instanceof Raw) return v.text;
  return quote(String(v));
}

/**
 * Tagged template for remote commands: `sh\`install -m ${mode} ${src} ${dest}\``.
 * Strings and numbers are quoted, arrays become several quoted words, Raw is inserted as is.
 */
export function sh(pieces: TemplateStringsArray, ...args: ShellArg[]): string {
  let out = pieces[0] ?? '';
  args.forEach((a, i) => {
    out += Array.isArray(a) ? (a as ReadonlyArray<string | number | Raw>).map(one).join(' ') : one(a as string | number | boolean | Raw);
    out += pieces[i + 1] ?? '';
  });
  return out;
}

/** Mark an already-built command as raw (for composing `sh` outputs). */
export const raw = (text: string): Raw => new Raw(text);

/** Join commands so that the first failure stops the rest. */
export const and = (...cmds: string[]): string => cmds.filter(Boolean).join(' && ');

/** Octal mode string "0644" from a number or string. */
export function modeString(mode: number | string): string {
  const n = typeof mode === 'number' ? mode : parseInt(mode, 8);
  if (!Number.isInteger(n) || n < 0 || n > 0o7777) throw new Error(`invalid mode ${String(mode)}`);
  return n.toString(8).padStart(4, '0');
}

/**
 * The chmod argument for a 4-digit mode: 5 digits ("00755"), because GNU chmod keeps a directory's
 * setuid/setgid bits on a 4-digit numeric mode (so "0755" on a 2775 directory would never converge).
 */
export const chmodArg = (mode: string): string => `0${mode}`;

/** chown's argument for a wanted owner and/or group ("u:g", "u", ":g"), null when neither is wanted. */
export function chownSpec(o: { owner?: string; group?: string }): string | null {
  if (o.owner && o.group) return `${o.owner}:${o.group}`;
  if (o.owner) return o.owner;
  if (o.group) return `:${o.group}`;
  return null;
}

export interface AtomicWrite {
  /** sha256 (hex) of the content sent on stdin: the temp file is checked before the rename, so a transfer cut short never lands */
  sha: string;
  /** wanted mode (octal: 0o600, "0600", "600"); unset: the existing file's, or `defaultMode` for a new one */
  mode?: number | string;
  /** wanted owner / group (names or ids); unset: the existing file's */
  owner?: string;
  group?: string;
  /** whether the target exists, when a probe has said so; undefined: the script looks on the host */
  exists?: boolean;
  /** mode of a new file when `mode` is unset (default 0644) */
  defaultMode?: number | string;
  /** a check run on the new content before it replaces the file ("%s" = the temp file; trusted shell code) */
  validate?: string;
  /** create the missing parent directories first (mkdir -p, default umask), for a new file */
  parents?: boolean;
  /** copy the file being replaced to this path first (mode, times, xattrs/ACLs kept; owned by the writer, like Ansible) */
  backup?: string;
  /** read the content from this remote file instead of stdin (copy remoteSrc) */
  from?: string;
  /** read exactly this many bytes of stdin (several writes sharing one stdin: a directory copy) */
  bytes?: number;
}

/**
 * A trap's first words once a script is stopping: further HUP, INT and TERM are ignored, by the shell and by what it
 * runs next (an ignored signal stays ignored across exec), so that its cleanup (`rm`) is not killed half-way by a
 * second signal to the process group.
 */
const STOP_QUIETLY = `trap '' HUP INT TERM`;

/**
 * Set first by a script that cleans up after itself (an atomic write's temp file, a probe batch's memo directory): a
 * write of its shell to a closed output fails instead of killing it. Ctrl-C's TERM kills the command under the shell
 * (`cat > "$t"`, a probe's `sleep`), then the channel is closed and sshd closes the command's stdout and stderr; a
 * shell that ran only after that (a busy host) wrote bash's "Terminated" into the closed pipe and SIGPIPE killed it
 * while its TERM trap ran, before its EXIT trap (CI-like run 15 left an upload's temp file on h02; reproduced by
 * stopping the shell until sshd closed the pipe: left every time; strace: EPIPE, killed by SIGPIPE). Caught, not
 * ignored: what the script runs still gets the default SIGPIPE (exec resets a caught signal).
 */
const CATCH_PIPE = 'trap : PIPE';

/**
 * `cmd` with its stdout and stderr passed on by relays that outlive the SSH channel: for the commands that are not
 * stopped half-way (apt/dpkg, docker: lib/transport.ts unsafeToStop), which must finish even when nobody reads their
 * output any more (a second Ctrl-C quits at once, the controller is killed, the connection drops). Without them the
 * command's next write into the closed channel killed it by SIGPIPE: a `docker stack deploy` between two "Creating
 * service" lines, apt or dpkg between two packages. Ignoring SIGPIPE is not enough (Go programs such as docker die of
 * it all the same: `docker rm` exited 141 with SIGPIPE ignored, measured here). Each relay copies until a write
 * fails, then drains to /dev/null until the command ends; `cmd` sees a pipe that is always read. The exit status is
 * cmd's; stdout and stderr stay apart. Needs bash (PIPESTATUS), as the rest of these scripts.
 */
export function outlivingOutput(cmd: string): string {
  const relay = `{ trap '' PIPE; cat 2>/dev/null; exec cat >/dev/null; }`;
  return `{ { { ${cmd}
} 2>&1 1>&3 3>&- | ${relay} >&2; exit "\${PIPESTATUS[0]}"; } 3>&1 | ${relay}; exit "\${PIPESTATUS[0]}"; }`;
}

/**
 * Lines that make `$t`, a new empty file (0600) beside `$p` in its directory, removed when the script ends short of
 * taking it (the caller's `trap - EXIT` once it is renamed over `$p`). The traps come first, and the name is in `$t`
 * BEFORE the file exists: with `t=$(mktemp …)` a signal between mktemp's creating the file and the assignment ran
 * the EXIT trap with `$t` empty. The name is ours (`.wpfarm.<pid>.<random>`, made with O_EXCL: noclobber), so
 * whatever the trap removes under it is ours too. Once stopping, the script ignores further signals (stopSignals):
 * a second TERM to its process group (Ctrl-C's, then the quit's) killed the trap's `rm` before it unlinked the file,
 * the `.wpfarm.*` left on a host in CI-like runs 13 and 14 (reproduced: 5 in 100 with two TERMs 2 ms apart, 0 in 260).
 * Its shell catches SIGPIPE (CATCH_PIPE).
 */
export function tempBeside(): string[] {
  return [
    `t=''`,
    CATCH_PIPE,
    `trap ${sh`${`${STOP_QUIETLY}; rm -f -- "$t"`}`} EXIT`,
    `trap ${sh`${`${STOP_QUIETLY}; exit 143`}`} HUP INT TERM`,
    `d=$(dirname -- "$p")`,
    `for _ in 1 2 3 4 5 6 7 8; do t="$d/.wpfarm.$BASHPID.$RANDOM$RANDOM"; if (umask 077; set -C; : > "$t") 2>/dev/null; then break; fi; t=''; done`,
    `[ -n "$t" ] || { echo "no temp file could be made in $d" >&2; exit 1; }`,
  ];
}

/**
 * The one script that writes stdin atomically to `target` (file operations' apply and Connection.put):
 * a temp file in the target's directory, sha256 checked, mode and owner copied from the existing file then
 * set as asked, validated, renamed over the target. Anything short of the rename leaves the target as it
 * was and removes the temp file.
 */
export function atomicWriteScript(target: string, o: AtomicWrite): string {
  if (!/^[0-9a-f]{64}$/.test(o.sha)) throw new Error('atomicWriteScript: sha must be sha256 hex');
  const mode = o.mode === undefined ? undefined : modeString(o.mode);
  const defaultMode = modeString(o.defaultMode ?? '0644');
  const lines = [
    '( set -e',
    sh`p=${target}`,
    ...(o.parents ? [`mkdir -p -- "$(dirname -- "$p")"`] : []),
    // stopped (Ctrl-C: TERM to the command's process group; HUP, INT): the temp file goes, nothing lands
    ...tempBeside(),
    o.from !== undefined
      ? sh`cat -- ${o.from} > "$t"`
      : o.bytes !== undefined
        ? sh`dd bs=65536 count=${String(o.bytes)} iflag=count_bytes,fullblock status=none > "$t"`
        : `cat > "$t"`,
    `if [ "$(sha256sum < "$t" | cut -d' ' -f1)" != ${o.sha} ]; then echo ${sh`${`transfer to ${target} incomplete: left unchanged`}`} >&2; exit 1; fi`,
  ];
  // like `cp --preserve=all` minus times: mode, owner, group, extended ACLs and xattrs of the file replaced
  // (ACLs are xattrs); chmod/chown --reference when cp cannot (a filesystem without xattrs)
  const copyAttrs = [
    `{ cp --attributes-only --preserve=mode,ownership,xattr -- "$p" "$t" 2>/dev/null || { chmod --reference="$p" -- "$t"; chown --reference="$p" -- "$t"; }; }`,
  ];
  if (o.exists === true) lines.push(...copyAttrs);
  else if (o.exists === undefined)
    lines.push(`if [ -e "$p" ]; then ${copyAttrs.join('; ')}; ${mode ? '' : sh`else chmod ${chmodArg(defaultMode)} -- "$t"; `}fi`);
  if (mode) lines.push(sh`chmod ${chmodArg(mode)} -- "$t"`);
  else if (o.exists === false) lines.push(sh`chmod ${chmodArg(defaultMode)} -- "$t"`);
  const spec = chownSpec(o);
  if (spec) lines.push(sh`chown ${spec} -- "$t"`);
  if (o.validate) {
    lines.push(`if ! { ${o.validate.replace(/%s/g, '"$t"')}
} >&2; then echo ${sh`${`validation failed (${o.validate}): ${target} left unchanged`}`} >&2; exit 1; fi`);
  }
  if (o.backup) lines.push(sh`if [ -e "$p" ]; then cp --preserve=mode,timestamps,xattr -- "$p" ${o.backup}; fi`);
  lines.push(`mv -f -- "$t" "$p"`, `trap - EXIT`, ')');
  return lines.join('\n');
}

/**
 * Split a script's output into sections written as `@@name` lines: how one round trip answers several
 * questions (fact probes in lib/facts.ts, operation probes in lib/ops, roles' status scripts).
 */
export function sections(out: string): Map<string, string> {
  const map = new Map<string, string>();
  let name = '';
  let buf: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^@@([A-Za-z0-9_.:-]+)$/.exec(line);
    if (m) {
      if (name) map.set(name, buf.join('\n'));
      name = m[1]!;
      buf = [];
    } else buf.push(line);
  }
  if (name) map.set(name, buf.join('\n'));
  return map;
}

// ---------------------------------------------------------------------------------------------
// One probe batch, many probes: what they share
//
// The runner sends the probes of many steps to a host as ONE script (lib/runner.ts probeScript), run at one moment
// and changing nothing. Its prelude (batchPrelude) gives the probes a directory of their own ($WPFARM_MEMO): a
// read-only command that several probes run word for word (`docker info` in every docker operation's probe) runs
// once there (memo), and a command that takes many arguments at once (`systemctl show UNIT...`) can be asked once for
// the arguments every probe of the batch gathers (Probe.gather, $WPFARM_GATHER_<name>). A probe run alone (no
// prelude) runs its commands as written: the same answer, only slower.

/** the batch's memo directory (exported by batchPrelude; unset outside a batch) */
export const MEMO_VAR = 'WPFARM_MEMO';
/** a gathered list's variable: `${GATHER_VAR}<name>` */
export const GATHER_VAR = 'WPFARM_GATHER_';
/** a gathered list's name, and each of its words (a word needs no quoting: the list is split by the shell) */
export const GATHER_NAME = /^[a-z][a-z0-9_]*$/;
export const GATHER_WORD = /^[A-Za-z0-9:_.@+/-]+$/;

/** where memo() keeps `cmd`'s answer in the batch's directory (without .out / .rc) */
const memoPath = (cmd: string): string => `"$${MEMO_VAR}"/${createHash('sha256').update(cmd).digest('hex').slice(0, 16)}`;
/** runs `cmd` into its memo files unless a probe of the batch did already */
const memoRun = (cmd: string): string => {
  const f = memoPath(cmd);
  return `[ -e ${f}.rc ] || { { ${cmd}\n  } > ${f}.out; echo $? > ${f}.rc; }`;
};

/**
 * `cmd` (read-only: it must change nothing) run once per probe batch: the first probe that runs it keeps its stdout
 * and exit status in the batch's memo directory, the next ones (the same command, byte for byte) read them back;
 * its stderr is as the first run left it. Outside a batch, `cmd` as written. The same exit status either way.
 */
export function memo(cmd: string): string {
  const f = memoPath(cmd);
  return [
    `if [ -n "\${${MEMO_VAR}:-}" ]; then`,
    `  ${memoRun(cmd)}`,
    `  cat ${f}.out; read -r _memo_rc < ${f}.rc; (exit "$_memo_rc")`,
    `else { ${cmd}\n}; fi`,
  ].join('\n');
}

/**
 * memo() for a probe that reads the answer with shell builtins (no `cat`, no pipe: a fork less each): sets `$<v>` to
 * the file holding `cmd`'s stdout, run once per batch; to '' outside a batch (the probe then asks on its own).
 */
export function memoFile(cmd: string, v: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(v)) throw new Error(`memoFile: invalid variable name ${JSON.stringify(v)}`);
  return `${v}=''; if [ -n "\${${MEMO_VAR}:-}" ]; then ${memoRun(cmd)}; ${v}=${memoPath(cmd)}.out; fi`;
}

/** `${WPFARM_GATHER_<name>:-}`: the words the batch's probes gathered under `name` (empty outside a batch). */
export function gathered(name: string): string {
  if (!GATHER_NAME.test(name)) throw new Error(`gathered: invalid name ${JSON.stringify(name)}`);
  return `\${${GATHER_VAR}${name}:-}`;
}

/**
 * The prelude of a probe batch: its memo directory (in /dev/shm, else $TMPDIR; removed when the script ends, even
 * when it is stopped) and the gathered lists (name → words, in the probes' order, each once). Without a directory
 * (mktemp failed) every memo() runs its command as written.
 */
export function batchPrelude(gather: ReadonlyMap<string, readonly string[]> = new Map()): string {
  const lines = [
    `if ${MEMO_VAR}=$(mktemp -d /dev/shm/wpfarm-probe.XXXXXX 2>/dev/null || mktemp -d 2>/dev/null); then`,
    `  export ${MEMO_VAR}; ${CATCH_PIPE}; trap ${sh`${`${STOP_QUIETLY}; rm -rf -- "$${MEMO_VAR}"`}`} EXIT; trap ${sh`${`${STOP_QUIETLY}; exit 143`}`} HUP INT TERM`,
    `else unset ${MEMO_VAR}; fi`,
  ];
  for (const [name, words] of gather) {
    if (!GATHER_NAME.test(name)) throw new Error(`batchPrelude: invalid gather name ${JSON.stringify(name)}`);
    const bad = words.find((w) => !GATHER_WORD.test(w));
    if (bad !== undefined) throw new Error(`batchPrelude: gather ${name}: invalid word ${JSON.stringify(bad)}`);
    lines.push(sh`export ${raw(`${GATHER_VAR}${name}`)}=${[...new Set(words)].join(' ')}`);
  }
  return lines.join('\n');
}
