// File operations: directory, file (content / touch / absent / attributes), copy.
// Also the shared machinery of every content-writing operation (template, lineinfile, blockinfile,
// sysctl): one read-only probe of a path, and one plan that compares sha256 / mode / owner / group and
// applies everything in ONE atomic shell script (temp file in the same directory, chmod, chown, mv -f).
//
// Probe output (sections, see lib/shell.ts):
//   @@stat    "%F|%a|%u|%U|%g|%G|%s" of the path (symlinks followed) or "absent"
//   @@link    "yes" when the path itself is a symbolic link
//   @@real    the path with symlinks resolved (readlink -f), empty when a parent is missing
//   @@parent  "yes" when the parent directory of the (resolved) path exists
//   @@owner / @@group  "ok" or "missing" (only when a non-numeric owner/group is requested)
//   @@sha     sha256 of the content (regular readable files)
//   @@content "b64 <base64>", "toolarge <bytes>" or "unreadable" (when content is needed)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import crypto from 'node:crypto';
import { join, resolve as resolvePath } from 'node:path';
import type { ApplyScript, Operation, Plan, StepContext, StepOptions } from '../types.ts';
import { InputError } from '../errors.ts';
import { absPath, argSpec, attrShape, defineOp } from './base.ts';
import { z } from '../schema.ts';
import { parts } from './sys-util.ts';
import { GATHER_WORD, MEMO_VAR, atomicWriteScript, chmodArg, chownSpec, gathered, memoFile, sections, sh, modeString } from '../shell.ts';
import { unifiedDiff, isBinary } from '../diff.ts';
import { mask } from '../secrets.ts';

/** Content returned for --diff is capped (base64 of at most this many bytes). */
export const DIFF_CONTENT_CAP = 256 * 1024;
/** Files edited in place (lineinfile, blockinfile, sysctl) are read whole, up to this size. */
export const EDIT_CONTENT_CAP = 8 * 1024 * 1024;

export type Mode = number | string;

export interface Attrs {
  /** octal: 0o644, "0644" or "644", or symbolic like chmod / Ansible: "u+rwx,g-w,o=r", "u=rwX,go=rX" */
  mode?: Mode;
  /** user name or numeric uid */
  owner?: string;
  /** group name or numeric gid */
  group?: string;
}

// ---------------------------------------------------------------------------------------------------
// Probe

export interface PathProbeOptions {
  /** fetch the sha256 of the content */
  sha?: boolean;
  /** fetch the content itself, base64, up to this many bytes (0/undefined: no content) */
  contentCap?: number;
  owner?: string;
  group?: string;
}

const isNumericId = (s: string): boolean => /^\d+$/.test(s);

/** (lib/shell.ts) the 5-digit chmod argument for a 4-digit mode */
export { chmodArg };

/** The gathered lists a path probe reads (Probe.gather): `paths` stat'ed once per batch, `shas` hashed once per batch. */
const PATHS = 'paths';
const SHAS = 'shas';
/** a path the batch can gather (a word, see lib/shell.ts GATHER_WORD; short enough to name a file after) */
const gatherable = (path: string): boolean => GATHER_WORD.test(path) && path.length <= 200;

/**
 * The words the probes of these paths (pathProbeScript) add to their batch's gathered lists: each path's stat is then
 * asked once for every path of the batch (one `stat`), and the sha256 of those whose content is compared once (one
 * `sha256sum`), instead of one or two processes per path. A path that is not a plain word is left out: its probe asks
 * on its own, the same answer.
 */
export function pathGather(...paths: { path: string; sha?: boolean }[]): Record<string, string[]> | undefined {
  const ok = paths.filter((p) => gatherable(p.path));
  if (!ok.length) return undefined;
  const shas = ok.filter((p) => p.sha).map((p) => p.path);
  return { [PATHS]: ok.map((p) => p.path), ...(shas.length ? { [SHAS]: shas } : {}) };
}

/** a gathered path's answer file in the batch's memo directory (`/` spelled `%`: a path word has no `%`) */
const answerFile = (kind: 's' | 'h'): string => `"$${MEMO_VAR}/${kind}\${p//\\//%}"`;
/** once per batch (memoFile): one line `%F|%a|%u|%U|%g|%G|%s` per gathered path that stat can read, in its answer file */
const GATHER_STAT = memoFile(
  `while IFS= read -r l; do n=\${l%%|*}; printf '%s\\n' "\${l#*|}" > "$${MEMO_VAR}/s\${n//\\//%}"; done < <(LC_ALL=C stat -L -c '%n|%F|%a|%u|%U|%g|%G|%s' -- ${gathered(PATHS)})`,
  '_gathered',
);
/** once per batch (memoFile): the sha256 of every gathered regular readable file, in its answer file */
const GATHER_SHA = memoFile(
  `fl=(); for x in ${gathered(SHAS)}; do [ -f "$x" ] && [ -r "$x" ] && fl+=("$x"); done; if [ \${#fl[@]} -gt 0 ]; then while read -r h n; do printf '%s\\n' "$h" > "$${MEMO_VAR}/h\${n//\\//%}"; done < <(sha256sum -- "\${fl[@]}"); fi`,
  '_gathered',
);

/**
 * The read-only probe script for one path (exit 0 always; stderr silenced; no `exit`). In a probe batch whose probes
 * gathered the path (pathGather), its stat and sha256 are read from the batch's one `stat` and one `sha256sum` for
 * every gathered path; otherwise asked for this path alone. Either way the same output.
 */
export function pathProbeScript(path: string, o: PathProbeOptions = {}): string {
  // Few processes per probe (a role may probe hundreds of paths per host in one batch): none when gathered, else
  // stat, plus sha256sum / base64 when content is needed, readlink only for symlinks, getent only when the wanted
  // owner/group differs from the current one; the rest is bash builtins.
  const inBatch = (list: string): string =>
    `[ -n "\${${MEMO_VAR}:-}" ] && case " ${gathered(list)} " in *" $p "*) true ;; *) false ;; esac`;
  const lines: string[] = [
    sh`p=${path}`,
    `st=''; if ${inBatch(PATHS)}; then ${GATHER_STAT}; if [ -e ${answerFile('s')} ]; then read -r st < ${answerFile('s')}; else st=absent; fi; fi`,
    `[ -n "$st" ] || st=$(LC_ALL=C stat -L -c '%F|%a|%u|%U|%g|%G|%s' -- "$p") || st=absent`,
    `echo @@stat; printf '%s\n' "$st"`,
    `IFS='|' read -r _ _ _ U _ G S <<<"$st"`,
    `r=$p; echo @@link; if [ -L "$p" ]; then echo yes; r=$(readlink -f -- "$p") || r=; fi`,
    `echo @@real; printf '%s\n' "$r"`,
    `d=\${r%/*}; echo @@parent; if [ -n "$r" ] && [ -d "\${d:-/}" ]; then echo yes; fi`,
  ];
  if (o.owner && !isNumericId(o.owner)) {
    lines.push(
      sh`if [ "$U" != ${o.owner} ]; then echo @@owner; if getent passwd ${o.owner} >/dev/null; then echo ok; else echo missing; fi; fi`,
    );
  }
  if (o.group && !isNumericId(o.group)) {
    lines.push(
      sh`if [ "$G" != ${o.group} ]; then echo @@group; if getent group ${o.group} >/dev/null; then echo ok; else echo missing; fi; fi`,
    );
  }
  if (o.sha) {
    lines.push(
      `echo @@sha; if [ -f "$p" ] && [ -r "$p" ]; then h=''; if ${inBatch(SHAS)}; then ${GATHER_SHA}; [ -e ${answerFile('h')} ] && read -r h < ${answerFile('h')}; fi; ` +
        `[ -n "$h" ] || { h=$(sha256sum < "$p") && h=\${h%% *}; }; [ -n "$h" ] && printf '%s\n' "$h"; fi`,
    );
  }
  if (o.contentCap) {
    lines.push(
      `echo @@content; if [ -f "$p" ]; then if [ ! -r "$p" ]; then echo unreadable; ` +
        sh`elif [ "$S" -le ${o.contentCap} ]; then printf 'b64 '; base64 -w0 < "$p"; echo; else echo "toolarge $S"; fi; fi`,
    );
  }
  lines.push(':');
  return `{\n${lines.join('\n')}\n} 2>/dev/null`;
}

export interface PathState {
  exists: boolean;
  /** stat %F: "regular file", "regular empty file", "directory", ... */
  type: string;
  isDir: boolean;
  isFile: boolean;
  isLink: boolean;
  /** "0644" */
  mode: string;
  uid: string;
  user: string;
  gid: string;
  groupName: string;
  size: number;
  /** symlinks resolved; '' when unknown */
  real: string;
  parentExists: boolean;
  ownerKnown?: boolean;
  groupKnown?: boolean;
  sha?: string;
  /** current content when fetched */
  content?: Buffer;
  /** why content is not there: "toolarge 123456" / "unreadable" */
  contentNote?: string;
}

/** Parse the output of pathProbeScript. Robust to missing sections (treated as "unknown/absent"). */
export function parsePathProbe(out: string): PathState {
  const s = sections(out);
  const stat = (s.get('stat') ?? '').trim().split('\n')[0] ?? '';
  const f = stat.split('|');
  const exists = stat !== '' && stat !== 'absent' && f.length >= 7;
  const type = exists ? f[0]! : '';
  const st: PathState = {
    exists,
    type,
    isDir: type === 'directory',
    isFile: type === 'regular file' || type === 'regular empty file',
    isLink: (s.get('link') ?? '').trim() === 'yes',
    mode: exists ? modeString(parseInt(f[1]!, 8)) : '',
    uid: exists ? f[2]! : '',
    user: exists ? f[3]! : '',
    gid: exists ? f[4]! : '',
    groupName: exists ? f[5]! : '',
    size: exists ? Number(f[6]) : 0,
    real: (s.get('real') ?? '').trim(),
    parentExists: (s.get('parent') ?? '').trim() === 'yes',
  };
  if (s.has('owner')) st.ownerKnown = s.get('owner')!.trim() === 'ok';
  if (s.has('group')) st.groupKnown = s.get('group')!.trim() === 'ok';
  const sha = (s.get('sha') ?? '').trim();
  if (/^[0-9a-f]{64}$/.test(sha)) st.sha = sha;
  const c = (s.get('content') ?? '').trim();
  if (c.startsWith('b64')) st.content = Buffer.from(c.slice(3).trim(), 'base64');
  else if (c) st.contentNote = c;
  return st;
}

// ---------------------------------------------------------------------------------------------------
// Plan helpers

/**
 * sha256 in hex. crypto.hash (node ≥ 20.12) is the one-shot form: ~2 µs against ~5 for createHash's object (a rerun
 * hashes each step's probe output and each file's content, per host); createHash on older node.
 */
export const sha256hex: (b: Buffer | string) => string =
  typeof crypto.hash === 'function' ? (b) => crypto.hash('sha256', b, 'hex') : (b) => crypto.createHash('sha256').update(b).digest('hex');

const short = (sha: string): string => sha.slice(0, 12);

/** Normalised requested attributes (validated). */
export interface WantAttrs {
  mode?: string;
  /** a symbolic mode, resolved against the current mode at plan time (resolveMode) */
  symbolic?: string;
  owner?: string;
  group?: string;
}

const SYM_CLAUSE = /^[ugoa]*([-+=][rwxXstugo]*)+$/;
/** umask assumed for symbolic modes without a "who" ("+x"), as chmod and Ansible apply the host's umask */
export const SYMBOLIC_UMASK = 0o022;

/**
 * A symbolic mode applied to a mode, with Ansible's algorithm (module_utils/basic.py
 * _symbolic_mode_to_octal): clauses in order; X and the u/g/o copies read the ORIGINAL mode; an empty
 * "who" means a, masked by the umask for r/w/x.
 */
export function symbolicMode(cur: number, spec: string, isDir: boolean, umask = SYMBOLIC_UMASK): number {
  const prev = cur & 0o7777;
  let mode = prev;
  const applyX = isDir || (prev & 0o111) !== 0;
  for (const clause of spec.split(',')) {
    if (!SYM_CLAUSE.test(clause)) throw new InputError(`invalid symbolic mode ${JSON.stringify(spec)}`);
    const opers = clause.match(/[-+=]/g)!;
    const [usersRaw, ...permlist] = clause.split(/[-+=]/);
    const useUmask = usersRaw === '';
    const users = usersRaw === '' || usersRaw!.includes('a') ? 'ugo' : usersRaw!;
    permlist.forEach((perms, idx) => {
      for (const u of users) {
        const shift = u === 'u' ? 6 : u === 'g' ? 3 : 0;
        let bits = 0;
        for (const p of perms) {
          const rwx = (b: number): number => (useUmask ? b & ~umask : b);
          if (p === 'r') bits |= rwx(4 << shift);
          else if (p === 'w') bits |= rwx(2 << shift);
          else if (p === 'x') bits |= rwx(1 << shift);
          else if (p === 'X') bits |= applyX ? 1 << shift : 0;
          else if (p === 's') bits |= u === 'u' ? 0o4000 : u === 'g' ? 0o2000 : 0;
          else if (p === 't') bits |= u === 'o' ? 0o1000 : 0;
          else {
            const from = p === 'u' ? 6 : p === 'g' ? 3 : 0;
            bits |= ((prev >> from) & 7) << shift;
          }
        }
        const op = opers[idx];
        if (op === '=') {
          const mask = u === 'u' ? 0o4700 : u === 'g' ? 0o2070 : 0o1007;
          mode = (mode & ~mask) | bits;
        } else if (op === '+') mode |= bits;
        else mode &= ~bits;
      }
    });
  }
  return mode & 0o7777;
}

/** The wanted attributes with a symbolic mode resolved against a current mode ("0644") and type. */
export function resolveMode(want: WantAttrs, curMode: string, isDir: boolean): WantAttrs {
  if (!want.symbolic) return want;
  const { symbolic, ...rest } = want;
  return { ...rest, mode: modeString(symbolicMode(parseInt(curMode, 8), symbolic, isDir)) };
}

export function normAttrs(a: Attrs, what: string): WantAttrs {
  const w: WantAttrs = {};
  if (typeof a.mode === 'string' && !/^[0-7]{1,4}$/.test(a.mode)) {
    if (!a.mode.split(',').every((c) => SYM_CLAUSE.test(c))) {
      throw new InputError(`${what}: invalid mode ${JSON.stringify(a.mode)} (octal like "0644" or symbolic like "u+rwx,g-w,o=r")`);
    }
    w.symbolic = a.mode;
  } else if (a.mode !== undefined) {
    try {
      w.mode = modeString(a.mode);
    } catch {
      throw new InputError(`${what}: invalid mode ${JSON.stringify(a.mode)} (octal like "0644" or symbolic like "u+rwx,g-w,o=r")`);
    }
  }
  for (const k of ['owner', 'group'] as const) {
    const v = a[k];
    if (v === undefined) continue;
    if (typeof v !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/.test(v) || v.length > 32) {
      throw new InputError(`${what}: invalid ${k} ${JSON.stringify(v)}`);
    }
    w[k] = v;
  }
  return w;
}

const sameId = (want: string, name: string, id: string): boolean => (isNumericId(want) ? want === id : want === name);

/**
 * Something the plan needs is missing on the host (parent directory, user, group, a tool).
 * In check mode an earlier step may be about to create it (nothing was applied), so the plan says so in
 * the progress output and goes on, keeping its change lines identical to what the real run reports;
 * otherwise it is an error.
 */
export function requireThat(ctx: StepContext, ok: boolean, message: string): void {
  if (ok) return;
  if (ctx.check) ctx.log(`check mode: ${message}; assuming an earlier step provides it`);
  else throw new Error(message);
}

/** Attribute changes (mode, owner, group) of an existing path, as change lines. */
function attrChanges(st: PathState, want: WantAttrs): string[] {
  const out: string[] = [];
  if (want.mode && want.mode !== st.mode) out.push(`mode ${st.mode} -> ${want.mode}`);
  if (want.owner && !sameId(want.owner, st.user, st.uid)) out.push(`owner ${st.user} -> ${want.owner}`);
  if (want.group && !sameId(want.group, st.groupName, st.gid)) out.push(`group ${st.groupName} -> ${want.group}`);
  return out;
}

/** chmod/chown of an existing path (no content change). */
function attrScript(target: string, st: PathState, want: WantAttrs, recurse = false): string {
  const cmds: string[] = [];
  if (want.mode && want.mode !== st.mode) cmds.push(sh`chmod ${chmodArg(want.mode)} -- ${target}`);
  const spec = chownSpec(want);
  if (spec) cmds.push(recurse ? sh`chown -R ${spec} -- ${target}` : sh`chown ${spec} -- ${target}`);
  return cmds.join(' && ');
}

export interface ContentDiffInput {
  path: string;
  before: Buffer | null;
  /** why `before` is unknown */
  beforeNote?: string;
  after: Buffer | null;
  secret?: boolean;
}

/** The diff text for --diff, honouring secrets, binary content and size caps. */
export function contentDiff(d: ContentDiffInput): string {
  if (d.secret) return 'content hidden (secret)';
  if (d.beforeNote?.startsWith('toolarge')) return 'diff omitted: file too large';
  if (d.beforeNote === 'unreadable') return 'diff omitted: file not readable';
  if ((d.after && d.after.length > DIFF_CONTENT_CAP) || (d.before && d.before.length > DIFF_CONTENT_CAP))
    return 'diff omitted: file too large';
  const before = d.before ?? Buffer.alloc(0);
  const after = d.after ?? Buffer.alloc(0);
  if (isBinary(before) || isBinary(after)) return `diff omitted: binary content (${before.length} -> ${after.length} bytes)`;
  return unifiedDiff(before.toString('utf8'), after.toString('utf8'), {
    fromLabel: d.before ? d.path : '/dev/null',
    toLabel: d.after ? d.path : '/dev/null',
  });
}

export interface WriteSpec {
  /** the path as given (for messages) */
  path: string;
  /** desired content; undefined = content not managed */
  content?: Buffer;
  want: WantAttrs;
  /** create an empty file when missing and content is not managed (touch) */
  touch?: boolean;
  /** touch of an existing file: which times to set to now (Ansible's modification_time/access_time: now) */
  touchTimes?: { mtime: boolean; atime: boolean };
  /** never show the content (diff) nor its hash */
  secret?: boolean;
  /** replaces the generic "content changed" / "create" line (lineinfile: "line added", ...) */
  contentChange?: string;
  /** default mode of a new file */
  defaultMode?: string;
  /** a command run on the new content before it replaces the file ("%s" = the temp file); non-zero = fail */
  validate?: string;
  /** a new file's missing parent directories are created (mkdir -p, 0755 with the usual umask) */
  parents?: boolean;
  /** keep a timestamped copy of the file before its content is replaced (path in the result: backup_file) */
  backup?: boolean;
  /** false: write only when the file is absent (copy force: false) */
  force?: boolean;
  /** the content comes from this remote file (copy remoteSrc), `content` being its probed bytes or a placeholder */
  from?: string;
  /** sha256 of the content when `content` is not available (remoteSrc without --diff) */
  sha?: string;
  result?: Record<string, unknown>;
}

/** Ansible's backup name: "<path>.<pid>.<YYYY-MM-DD@HH:MM:SS>~" (controller pid and local time). */
export function backupName(path: string, now = new Date()): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${now.getFullYear()}-${p(now.getMonth() + 1)}-${p(now.getDate())}@${p(now.getHours())}:${p(now.getMinutes())}:${p(now.getSeconds())}`;
  return `${path}.${process.pid}.${stamp}~`;
}

/**
 * The plan of a content/attribute write, from a parsed probe. Pure. The apply is one script:
 * an atomic content write (when content changes or the file is created) or chmod/chown.
 */
export function planWrite(ctx: StepContext, st: PathState, spec: WriteSpec): Plan {
  // content that contains a registered secret (ctx.secret) is treated as secret: no hash, no diff
  const w = spec.secret || !spec.content || !containsSecret(spec.content) ? spec : { ...spec, secret: true };
  const target = st.real || w.path;
  const via = st.isLink && st.real && st.real !== w.path ? ` (via symlink -> ${st.real})` : '';
  if (st.exists && st.isDir) throw new Error(`${w.path} is a directory`);
  if (st.exists && !st.isFile) throw new Error(`${w.path} is not a regular file (${st.type})`);
  if (st.ownerKnown === false) requireThat(ctx, false, `user ${w.want.owner} does not exist`);
  if (st.groupKnown === false) requireThat(ctx, false, `group ${w.want.group} does not exist`);
  const result: Record<string, unknown> = { path: w.path, ...w.result };
  const newSha = w.sha ?? (w.content !== undefined ? sha256hex(w.content) : undefined);
  if (!st.exists) {
    if (w.content === undefined && w.sha === undefined && !w.touch) {
      // check mode: an earlier step may create it; what this step would then do cannot be known
      requireThat(ctx, false, `${w.path} does not exist`);
      return { changed: true, changes: [`${w.path} does not exist (assumed created by an earlier step)`], result };
    }
    if (!w.parents) requireThat(ctx, st.parentExists, `parent directory of ${w.path} does not exist (set create: true to create it)`);
    const content = w.content ?? Buffer.alloc(0);
    const base = w.defaultMode ?? (w.secret ? '0600' : '0644'); // content holding a secret: created private
    const want = resolveMode(w.want, base, false);
    const mode = want.mode ?? base;
    const attrs = [`mode ${mode}`];
    if (want.owner) attrs.push(`owner ${want.owner}`);
    if (want.group) attrs.push(`group ${want.group}`);
    const size = w.from !== undefined ? ((w.result?.size as number | undefined) ?? content.length) : content.length;
    // An edit (lineinfile, blockinfile, sysctl) that creates its file reports just the edit: several
    // steps often edit one new file, and in check mode every one of them sees it missing, so "create"
    // would be predicted for each while the run reports it for the first only.
    const withParents = w.parents && !st.parentExists ? ', with parents' : '';
    const plan: Plan = {
      changed: true,
      changes: [
        w.contentChange
          ? `${w.contentChange}${withParents ? ' (file created with parents)' : ''}`
          : `create${via} (${size} bytes, ${attrs.join(', ')}${withParents})`,
      ],
      apply: {
        script: atomicWriteScript(target, {
          ...want,
          exists: false,
          defaultMode: mode,
          validate: w.validate,
          sha: newSha ?? sha256hex(content),
          parents: w.parents && !st.parentExists,
          from: w.from,
        }),
        stdin: w.from !== undefined ? undefined : content,
      },
      result,
    };
    if (ctx.diff && w.content !== undefined && w.from === undefined)
      plan.diff = contentDiff({ path: w.path, before: null, after: content, secret: w.secret });
    return plan;
  }
  const want = resolveMode(w.want, st.mode, false);
  const changes: string[] = [];
  let contentChanged = false;
  if (newSha !== undefined && w.force !== false) {
    if (st.sha === undefined && !st.content) throw new Error(`${w.path}: cannot read the current content`);
    const curSha = st.sha ?? sha256hex(st.content!);
    if (newSha !== curSha) {
      contentChanged = true;
      const newSize = w.content?.length ?? (w.result?.size as number | undefined) ?? 0;
      if (w.contentChange) changes.push(w.contentChange);
      else if (w.secret) changes.push(`content changed (secret, ${st.size} -> ${newSize} bytes)`);
      else changes.push(`content changed (${st.size} -> ${newSize} bytes, sha256 ${short(curSha)} -> ${short(newSha)})`);
    }
  }
  changes.push(...attrChanges(st, want));
  const times = w.touch && w.touchTimes && (w.touchTimes.mtime || w.touchTimes.atime) ? w.touchTimes : undefined;
  if (times) changes.push(times.mtime && times.atime ? 'times updated' : times.mtime ? 'mtime updated' : 'atime updated');
  if (!changes.length) {
    const reason =
      spec.content !== undefined ? 'file already has that content and attributes' : 'file already exists with those attributes';
    return { changed: false, changes: [], result, reason };
  }
  if (via) changes[0] += via;
  let apply: ApplyScript;
  if (contentChanged) {
    const backup = w.backup ? backupName(w.path) : undefined;
    if (backup) result.backup_file = backup;
    apply = {
      script: atomicWriteScript(target, { ...want, exists: true, validate: w.validate, sha: newSha!, backup, from: w.from }),
      stdin: w.from !== undefined ? undefined : w.content!,
    };
  } else {
    const cmds = [attrScript(target, st, want)].filter(Boolean);
    if (times) cmds.push(sh`touch -c ${times.mtime && times.atime ? [] : times.mtime ? ['-m'] : ['-a']} -- ${target}`);
    apply = { script: cmds.join(' && ') };
  }
  const plan: Plan = { changed: true, changes, apply, result };
  if (ctx.diff && contentChanged && w.content !== undefined && w.from === undefined) {
    plan.diff = contentDiff({ path: w.path, before: st.content ?? null, beforeNote: st.contentNote, after: w.content, secret: w.secret });
  }
  return plan;
}

/** Does the text contain a value registered through ctx.secret()? */
export function containsSecret(content: Buffer): boolean {
  if (isBinary(content)) return false;
  const text = content.toString('utf8');
  return mask(text) !== text;
}

/** Validate an absolute path. */
export function checkPath(path: unknown, what: string): string {
  if (typeof path !== 'string' || !path.startsWith('/') || /[\0\n]/.test(path) || /(^|\/)\.\.(\/|$)/.test(path)) {
    throw new InputError(`${what}: path must be absolute without '..' or newlines (got ${JSON.stringify(path)})`);
  }
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

// ---------------------------------------------------------------------------------------------------
// directory

export interface DirectoryArgs extends Attrs {
  path: string;
  /** apply mode/owner/group to everything below too, files and directories alike (Ansible's recurse;
   *  symbolic modes such as "u=rwX,g=rX,o=" are resolved per entry); symlinks below are left alone */
  recurse?: boolean;
  state?: 'present' | 'absent';
}

/** "/a/b/c" → ["/a", "/a/b", "/a/b/c"] */
const prefixes = (path: string): string[] => {
  const parts = path.split('/').filter(Boolean);
  return parts.map((_, i) => `/${parts.slice(0, i + 1).join('/')}`);
};

/** A new directory's mode: mkdir's 0777 under the umask, then the wanted (possibly symbolic) mode. */
const newDirMode = (want: WantAttrs): string => resolveMode(want, '0755', true).mode ?? '0755';

export const DIRECTORY_ARGS = argSpec<DirectoryArgs>()(
  'directory',
  { ...attrShape, path: absPath, recurse: z.boolean().optional(), state: z.enum(['present', 'absent']).default('present') },
  { check: (a) => (a.state === 'absent' && a.path === '/' ? ['path', 'refusing to remove /'] : null) },
);

export function directory(input: DirectoryArgs, opts: StepOptions = {}): Operation {
  return DIRECTORY_ARGS.build(input, (args) => directoryOp(args, opts));
}

function directoryOp(args: z.output<typeof DIRECTORY_ARGS.schema>, opts: StepOptions): Operation {
  const path = args.path;
  const want = normAttrs(args, `directory ${path}`);
  const state = args.state;
  const spec = chownSpec(want);
  const recurse = !!args.recurse && (!!spec || want.mode !== undefined || want.symbolic !== undefined);
  return defineOp({
    kind: 'directory',
    title: `directory ${path}`,
    options: opts,
    probe: () => {
      let script = pathProbeScript(path, { owner: want.owner, group: want.group });
      if (recurse && state === 'present') {
        // entries below, grouped by (mode, type, owner, group): small output whatever the tree's size
        script += `\n{ echo @@below; if [ -d ${sh`${path}`} ]; then find ${sh`${path}`} -mindepth 1 ! -type l -printf '%m|%y|%U|%u|%G|%g\\n' | sort | uniq -c; fi; } 2>/dev/null`;
      }
      return { script, gather: pathGather({ path }) };
    },
    plan: (ctx, out) => {
      const st = parsePathProbe(out);
      const result = { path, state };
      if (state === 'absent') {
        if (!st.exists && !st.isLink) return { changed: false, changes: [], result, reason: 'already absent' };
        return {
          changed: true,
          changes: [st.isDir && !st.isLink ? 'remove directory (recursively)' : `remove (${st.isLink ? 'symlink' : st.type})`],
          apply: { script: st.isDir && !st.isLink ? sh`rm -rf -- ${path}` : sh`rm -f -- ${path}` },
          result,
        };
      }
      if (st.ownerKnown === false) requireThat(ctx, false, `user ${want.owner} does not exist`);
      if (st.groupKnown === false) requireThat(ctx, false, `group ${want.group} does not exist`);
      if (!st.exists) {
        if (st.isLink) throw new Error(`${path} is a dangling symbolic link`);
        const mode = newDirMode(want);
        const attrs = [`mode ${mode}`];
        if (want.owner) attrs.push(`owner ${want.owner}`);
        if (want.group) attrs.push(`group ${want.group}`);
        // like Ansible: every directory created on the way gets the wanted mode, owner and group
        const each = [sh`mkdir -- "$d"`, sh`chmod ${chmodArg(mode)} -- "$d"`];
        if (spec) each.push(sh`chown ${spec} -- "$d"`);
        const script = `for d in ${prefixes(path)
          .map((d) => sh`${d}`)
          .join(' ')}; do [ -d "$d" ] || { ${each.join(' && ')}; } || exit 1; done`;
        return {
          changed: true,
          changes: [`create (${attrs.join(', ')}${st.parentExists ? '' : ', with parents'})`],
          apply: { script },
          result,
        };
      }
      if (!st.isDir) throw new Error(`${path} exists and is not a directory (${st.type})`);
      const top = resolveMode(want, st.mode, true);
      const changes = attrChanges(st, top);
      const target = st.real || path;
      const cmds: string[] = [];
      if (top.mode && top.mode !== st.mode) cmds.push(sh`chmod ${chmodArg(top.mode)} -- ${target}`);
      if (spec && changes.some((c) => c.startsWith('owner') || c.startsWith('group'))) cmds.push(sh`chown ${spec} -- ${target}`);
      if (recurse) {
        let modeN = 0;
        let ownN = 0;
        const clauses: string[] = [];
        for (const line of (sections(out).get('below') ?? '').split('\n')) {
          const m = /^\s*(\d+) ([0-7]+)\|(\w)\|(\d+)\|([^|]*)\|(\d+)\|(.*)$/.exec(line);
          if (!m) continue;
          const [, n, perm, type, uid, user, gid, grp] = m;
          const cur = modeString(parseInt(perm!, 8));
          const w = resolveMode(want, cur, type === 'd');
          if (w.mode && w.mode !== cur) {
            modeN += Number(n);
            clauses.push(sh`\\( -type ${type!} -perm ${cur} -exec chmod ${chmodArg(w.mode)} -- {} + \\)`);
          }
          if ((want.owner && !sameId(want.owner, user!, uid!)) || (want.group && !sameId(want.group, grp!, gid!))) ownN += Number(n);
        }
        // one find: each entry is tested once, against its mode before any change
        if (clauses.length) cmds.push(sh`find ${target} -mindepth 1 ! -type l` + ` \\( ${clauses.join(' -o ')} \\)`);
        const entries = (k: number): string => `${k} entr${k === 1 ? 'y' : 'ies'} below`;
        if (modeN) changes.push(`mode of ${entries(modeN)} -> ${want.mode ?? want.symbolic}`);
        if (ownN) {
          changes.push(`owner/group of ${entries(ownN)} -> ${spec}`);
          cmds.push(sh`chown -R ${spec!} -- ${target}`);
        }
      }
      if (!changes.length) return { changed: false, changes: [], result, reason: 'directory already exists with those attributes' };
      return { changed: true, changes, apply: { script: cmds.join(' && ') }, result };
    },
  });
}

// ---------------------------------------------------------------------------------------------------
// file / copy

export interface FileArgs extends Attrs {
  path: string;
  /** the content (text or bytes) */
  content?: string | Buffer;
  /** present: a local file (on the controller, relative to the working directory) whose bytes are the
   *  content, or a local directory whose files are copied below path (recursively, like Ansible's "src: dir/");
   *  with remoteSrc: a file on the host; link/hard: the link's target (relative: to path's directory) */
  src?: string;
  /** present (default): content/attributes; absent: removed (directories recursively); touch: exists and
   *  times set to now; link: a symbolic link to src; hard: a hard link to src */
  state?: 'present' | 'absent' | 'touch' | 'link' | 'hard';
  /** hide the content: no diff, no hash in the change lines; the mode defaults to 0600 */
  secret?: boolean;
  /** check the new content before it replaces the file: a command with %s for the temp file
   *  (e.g. "sshd -t -f %s", "visudo -cf %s"); a non-zero exit fails the step, the file stays as it was */
  validate?: string;
  /** content: false = write only when the file is absent (Ansible copy force: no);
   *  link/hard: replace an existing file (or an empty directory) */
  force?: boolean;
  /** src is a file on the host (Ansible copy remote_src) */
  remoteSrc?: boolean;
  /** create the missing parent directories of a new file */
  create?: boolean;
  /** keep a timestamped copy before replacing the content (its path: result.backup_file) */
  backup?: boolean;
  /** touch: 'preserve' leaves that time of an existing file alone (both preserve = create only) */
  modificationTime?: 'now' | 'preserve';
  accessTime?: 'now' | 'preserve';
}

/** Validate the `validate` argument: a non-empty command that mentions %s. */
export function checkValidate(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !v.includes('%s'))
    throw new InputError(`${what}: validate must be a command containing %s (the file to check)`);
  return v;
}

function loadSrc(src: string, what: string): Buffer {
  try {
    return readFileSync(resolvePath(src));
  } catch (e) {
    throw new InputError(`${what}: cannot read src ${src}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

const timeChoice = z.enum(['now', 'preserve']).optional();

export const FILE_ARGS = argSpec<FileArgs>()(
  'file',
  {
    ...attrShape,
    path: absPath,
    content: z.union([z.string(), z.instanceof(Buffer)]).optional(),
    src: z.string().min(1).optional(),
    state: z.enum(['present', 'absent', 'touch', 'link', 'hard']).default('present'),
    secret: z.boolean().optional(),
    validate: z.string().optional(),
    force: z.boolean().optional(),
    remoteSrc: z.boolean().optional(),
    create: z.boolean().optional(),
    backup: z.boolean().optional(),
    modificationTime: timeChoice,
    accessTime: timeChoice,
  },
  {
    mutuallyExclusive: [['content', 'src']],
    requiredIf: [
      ['remoteSrc', true, ['src']],
      ['state', 'link', ['src']],
      ['state', 'hard', ['src']],
    ],
    check: (a) => {
      if (a.state === 'absent' && a.path === '/') return ['path', 'refusing to remove /'];
      if ((a.state === 'absent' || a.state === 'touch') && (a.content !== undefined || a.src !== undefined)) {
        return [a.content !== undefined ? 'content' : 'src', `only with state present, not ${a.state}`];
      }
      for (const k of ['modificationTime', 'accessTime'] as const) {
        if (a[k] !== undefined && a.state !== 'touch') return [k, 'only with state touch'];
      }
      if (a.remoteSrc && typeof a.src === 'string' && !absPath.safeParse(a.src).success) {
        return ['src', 'must be an absolute path on the host (remoteSrc)'];
      }
      return null;
    },
  },
);

export function file(input: FileArgs, opts: StepOptions = {}): Operation {
  return FILE_ARGS.build(input, (args) => fileOp(args, opts));
}

function fileOp(args: z.output<typeof FILE_ARGS.schema>, opts: StepOptions): Operation {
  const path = args.path;
  const what = `file ${path}`;
  // a secret file is private unless the role says otherwise (new and existing files alike)
  const want = normAttrs(args.secret && args.mode === undefined ? { ...args, mode: '0600' } : args, what);
  const state = args.state;
  if (state === 'link' || state === 'hard') return link(path, state, args, want, opts);
  const validate = checkValidate(args.validate, what);
  if (args.src !== undefined && !args.remoteSrc && isLocalDir(args.src)) return copyTree(path, args, want, validate, opts);
  let srcBytes: Buffer | undefined;
  const content = (): Buffer | undefined => {
    if (args.content !== undefined) return Buffer.isBuffer(args.content) ? args.content : Buffer.from(args.content, 'utf8');
    if (args.src !== undefined && !args.remoteSrc) return (srcBytes ??= loadSrc(args.src, what));
    return undefined;
  };
  const managesContent = args.content !== undefined || args.src !== undefined;
  return defineOp({
    kind: args.src !== undefined ? 'copy' : 'file',
    title: args.src !== undefined ? `copy ${args.remoteSrc ? 'remote ' : ''}${args.src} -> ${path}` : what,
    options: opts,
    probe: (ctx) => {
      const cap = ctx.diff && (managesContent || state === 'absent') && !args.secret ? DIFF_CONTENT_CAP : 0;
      let script = pathProbeScript(path, { sha: managesContent, contentCap: cap, owner: want.owner, group: want.group });
      if (args.remoteSrc) script += `\necho @@src\n${pathProbeScript(args.src!, { sha: true, contentCap: cap })}`;
      const gather = pathGather({ path, sha: managesContent }, ...(args.remoteSrc ? [{ path: args.src!, sha: true }] : []));
      return { script, gather };
    },
    plan: (ctx, out) => {
      let st = parsePathProbe(out);
      if (state === 'absent') {
        const result = { path, state };
        if (!st.exists && !st.isLink) return { changed: false, changes: [], result, reason: 'already absent' };
        const recursive = st.isDir && !st.isLink;
        const plan: Plan = {
          changed: true,
          changes: [recursive ? 'remove directory (recursively)' : `remove (${st.isLink ? 'symlink' : st.type})`],
          apply: { script: recursive ? sh`rm -rf -- ${path}` : sh`rm -f -- ${path}` },
          result,
        };
        if (ctx.diff && st.isFile && !st.isLink) {
          plan.diff = contentDiff({ path, before: st.content ?? null, beforeNote: st.contentNote, after: null, secret: args.secret });
        }
        return plan;
      }
      const common = { path, want, secret: args.secret, validate, parents: args.create, backup: args.backup, force: args.force };
      if (args.remoteSrc) {
        const i = out.indexOf('\n@@src\n');
        st = parsePathProbe(out.slice(0, i));
        const src = parsePathProbe(out.slice(i + 7));
        if (!src.exists || !src.isFile || !src.sha) throw new Error(`${what}: remote src ${args.src} is not a readable regular file`);
        if (!st.exists || args.force !== false) {
          // a new file gets the default 0644, as Ansible's copy remote_src does (the source's mode is not copied)
          return planWrite(ctx, st, {
            ...common,
            content: src.content,
            sha: src.sha,
            from: src.real || args.src,
            result: { state, src: args.src, size: src.size },
          });
        }
      }
      if (args.force === false && st.exists) {
        return planWrite(ctx, st, { ...common, content: undefined, result: { state } });
      }
      const touchTimes = { mtime: args.modificationTime !== 'preserve', atime: args.accessTime !== 'preserve' };
      return planWrite(ctx, st, { ...common, content: content(), touch: state === 'touch', touchTimes, result: { state } });
    },
  });
}

function isLocalDir(src: string): boolean {
  try {
    return statSync(resolvePath(src)).isDirectory();
  } catch {
    return false;
  }
}

/** The files below a local directory, sorted, relative ("a/b.conf"). */
function walk(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...walk(root, r));
    else if (e.isFile()) out.push(r);
  }
  return out;
}

/**
 * copy with a local directory src: every file below it is written below path (missing directories are
 * created), each compared by sha256; one probe and one apply script for the whole tree. The change lines
 * and result.files name each file changed.
 */
function copyTree(path: string, args: FileArgs, want: WantAttrs, validate: string | undefined, opts: StepOptions): Operation {
  const what = `copy ${args.src} -> ${path}`;
  const root = resolvePath(args.src!);
  const files = walk(root);
  if (validate) throw new InputError(`${what}: validate is for one file, not a directory src`);
  return defineOp({
    kind: 'copy',
    title: what,
    options: opts,
    probe: () => ({
      script: files
        .map((f, i) => `echo %%f${i}\n${pathProbeScript(`${path}/${f}`, { sha: true, owner: want.owner, group: want.group })}`)
        .join('\n'),
      gather: pathGather(...files.map((f) => ({ path: `${path}/${f}`, sha: true }))),
    }),
    plan: (ctx, out) => {
      const chunks = parts(out);
      const changes: string[] = [];
      const scripts: string[] = [];
      const stdin: Buffer[] = [];
      const changed: string[] = [];
      files.forEach((f, i) => {
        const dest = `${path}/${f}`;
        const st = parsePathProbe(chunks.get(`f${i}`) ?? '');
        const bytes = readFileSync(join(root, f));
        const p = planWrite(ctx, st, {
          path: dest,
          content: bytes,
          want,
          parents: true,
          secret: args.secret,
          backup: args.backup,
          force: args.force,
        });
        if (!p.changed) return;
        changed.push(f);
        changes.push(...p.changes.map((c) => `${f}: ${c}`));
        const a = p.apply as ApplyScript;
        if (a.stdin !== undefined) {
          scripts.push(
            a.script.replace(
              '\ncat > "$t"\n',
              `\n${sh`dd bs=65536 count=${String(bytes.length)} iflag=count_bytes,fullblock status=none`} > "$t"\n`,
            ),
          );
          stdin.push(bytes);
        } else scripts.push(a.script);
      });
      const result = { path, src: args.src, files: changed };
      if (!changes.length) return { changed: false, changes: [], result, reason: 'every file already has that content' };
      return { changed: true, changes, apply: { script: scripts.join(' &&\n'), stdin: Buffer.concat(stdin) }, result };
    },
  });
}

/** file state link / hard. */
function link(path: string, state: 'link' | 'hard', args: FileArgs, want: WantAttrs, opts: StepOptions): Operation {
  const what = `file ${path}`;
  if (typeof args.src !== 'string' || !args.src || /[\0\n]/.test(args.src))
    throw new InputError(`${what}: src (the link target) is required with state ${state}`);
  if (want.mode !== undefined || want.symbolic !== undefined)
    throw new InputError(`${what}: mode is not supported on links (a link has no mode of its own)`);
  if (args.content !== undefined) throw new InputError(`${what}: content is not allowed with state ${state}`);
  const src = args.src;
  const dir = path.replace(/\/[^/]*$/, '') || '/';
  const absSrc = src.startsWith('/') ? src : `${dir}/${src}`;
  const spec = chownSpec(want);
  return defineOp({
    kind: 'file',
    title: `${what} (${state === 'link' ? 'symlink' : 'hard link'} -> ${src})`,
    options: opts,
    probe: () => ({
      script: [
        sh`p=${path}; s=${absSrc}`,
        `{ echo @@type; LC_ALL=C stat -c '%F|%d:%i|%U|%u|%G|%g' -- "$p" || echo absent`,
        `echo @@target; if [ -L "$p" ]; then readlink -- "$p"; fi`,
        `echo @@empty; if [ -d "$p" ] && [ ! -L "$p" ] && [ -z "$(ls -A -- "$p")" ]; then echo yes; fi`,
        `echo @@src; LC_ALL=C stat -L -c '%F|%d:%i' -- "$s" || echo absent; } 2>/dev/null`,
      ].join('\n'),
    }),
    plan: (ctx, out) => {
      const s = sections(out);
      const [type = 'absent', inode = '', user = '', uid = '', grp = '', gid = ''] = (s.get('type') ?? 'absent').trim().split('|');
      const target = (s.get('target') ?? '').replace(/\n$/, '');
      const empty = (s.get('empty') ?? '').trim() === 'yes';
      const [srcType = 'absent', srcInode = ''] = (s.get('src') ?? 'absent').trim().split('|');
      const srcExists = srcType !== 'absent';
      const prev =
        type === 'absent'
          ? 'absent'
          : type === 'symbolic link'
            ? 'link'
            : type === 'directory'
              ? 'directory'
              : type.startsWith('regular')
                ? 'file'
                : 'other';
      const result = { path, src, state };
      let replace = false;
      if (state === 'link') {
        // check mode: an earlier step may create the target (a directory step before the link)
        if (!args.force) requireThat(ctx, srcExists, `${what}: src ${absSrc} does not exist (force: true links to it anyway)`);
        if (prev === 'directory') {
          if (!args.force) throw new Error(`${what}: refusing to convert from directory to symlink`);
          if (!empty) throw new Error(`${what}: the directory is not empty, refusing to convert it`);
        } else if ((prev === 'file' || prev === 'other') && !args.force)
          throw new Error(`${what}: refusing to convert from ${type} to symlink (force: true replaces it)`);
        replace = prev !== 'link' || target !== src;
      } else {
        requireThat(ctx, srcExists, `${what}: src ${absSrc} does not exist`);
        if (prev === 'directory') throw new Error(`${what}: refusing to replace a directory with a hard link`);
        if (prev === 'link') replace = true;
        else if (prev !== 'absent' && inode !== srcInode) {
          if (!args.force) throw new Error(`${what}: cannot link, a different file exists at the destination (force: true replaces it)`);
          replace = true;
        } else replace = prev === 'absent';
      }
      const changes: string[] = [];
      const cmds: string[] = [];
      if (replace) {
        const kind = state === 'link' ? 'symlink' : 'hard link';
        changes.push(
          prev === 'absent'
            ? `create ${kind} -> ${src}`
            : prev === 'link' && state === 'link'
              ? `symlink ${target} -> ${src}`
              : `replace ${type} with ${kind} -> ${src}`,
        );
        cmds.push(
          `t=${sh`${dir}`}/.wpfarm.ln.$$`,
          state === 'link' ? sh`ln -s -- ${src} "$t"` : sh`ln -- ${absSrc} "$t"`,
          ...(prev === 'directory' ? [sh`rmdir -- ${path}`] : []),
          sh`mv -Tf -- "$t" ${path}`,
        );
      }
      // owner/group: of the link itself (lchown, as Ansible does), or of the linked file for a hard link
      const ownerOff = !!want.owner && !sameId(want.owner, user, uid);
      const groupOff = !!want.group && !sameId(want.group, grp, gid);
      if (spec && (replace || ownerOff || groupOff)) {
        if (!replace) {
          if (ownerOff) changes.push(`owner ${user} -> ${want.owner}`);
          if (groupOff) changes.push(`group ${grp} -> ${want.group}`);
        }
        cmds.push(state === 'link' ? sh`chown -h ${spec} -- ${path}` : sh`chown ${spec} -- ${path}`);
      }
      if (!changes.length) {
        return { changed: false, changes: [], result, reason: `${state === 'link' ? 'symbolic' : 'hard'} link already in place` };
      }
      return { changed: true, changes, apply: { script: cmds.join(' && ') }, result };
    },
  });
}

/** `copy` = file with a local src. */
export function copy(args: Omit<FileArgs, 'content' | 'state'> & { src: string }, opts: StepOptions = {}): Operation {
  return file({ ...args, state: 'present' }, opts);
}
