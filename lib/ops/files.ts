// File operations: directory, file (content / touch / absent / attributes), copy.
// Also the shared machinery of every content-writing operation (template, lineinfile, blockinfile,
// sysctl): one read-only probe of a path, and one plan that compares sha256 / mode / owner / group and
// applies everything in ONE atomic shell script (temp file in the same directory, chmod, chown, mv -f).
//
// Probe output (sections of lib/ops/base.ts):
//   @@stat    "%F|%a|%u|%U|%g|%G|%s" of the path (symlinks followed) or "absent"
//   @@link    "yes" when the path itself is a symbolic link
//   @@real    the path with symlinks resolved (readlink -f), empty when a parent is missing
//   @@parent  "yes" when the parent directory of the (resolved) path exists
//   @@owner / @@group  "ok" or "missing" (only when a non-numeric owner/group is requested)
//   @@sha     sha256 of the content (regular readable files)
//   @@content "b64 <base64>", "toolarge <bytes>" or "unreadable" (when content is needed)
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { resolve as resolvePath } from 'node:path';
import type { ApplyScript, Operation, Plan, StepContext, StepOptions } from '../types.ts';
import { InputError } from '../errors.ts';
import { defineOp, sections } from './base.ts';
import { atomicWriteScript, chmodArg, chownSpec, sh, modeString } from '../shell.ts';
import { unifiedDiff, isBinary } from '../diff.ts';
import { mask } from '../secrets.ts';

/** Content returned for --diff is capped (base64 of at most this many bytes). */
export const DIFF_CONTENT_CAP = 256 * 1024;
/** Files edited in place (lineinfile, blockinfile, sysctl) are read whole, up to this size. */
export const EDIT_CONTENT_CAP = 8 * 1024 * 1024;

export type Mode = number | string;

export interface Attrs {
  /** octal: 0o644, "0644" or "644" */
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

/** The read-only probe script for one path (exit 0 always; stderr silenced; no `exit`). */
export function pathProbeScript(path: string, o: PathProbeOptions = {}): string {
  // Few processes per probe (a role may probe hundreds of paths per host in one batch): stat, plus
  // sha256sum / base64 when content is needed, readlink only for symlinks, getent only when the wanted
  // owner/group differs from the current one; the rest is bash builtins.
  const lines: string[] = [
    sh`p=${path}`,
    `st=$(stat -L -c '%F|%a|%u|%U|%g|%G|%s' -- "$p") || st=absent`,
    `echo @@stat; printf '%s\n' "$st"`,
    `IFS='|' read -r _ _ _ U _ G S <<<"$st"`,
    `r=$p; echo @@link; if [ -L "$p" ]; then echo yes; r=$(readlink -f -- "$p") || r=; fi`,
    `echo @@real; printf '%s\n' "$r"`,
    `d=\${r%/*}; echo @@parent; if [ -n "$r" ] && [ -d "\${d:-/}" ]; then echo yes; fi`,
  ];
  if (o.owner && !isNumericId(o.owner)) {
    lines.push(sh`if [ "$U" != ${o.owner} ]; then echo @@owner; if getent passwd ${o.owner} >/dev/null; then echo ok; else echo missing; fi; fi`);
  }
  if (o.group && !isNumericId(o.group)) {
    lines.push(sh`if [ "$G" != ${o.group} ]; then echo @@group; if getent group ${o.group} >/dev/null; then echo ok; else echo missing; fi; fi`);
  }
  if (o.sha) {
    lines.push(`echo @@sha; if [ -f "$p" ] && [ -r "$p" ]; then h=$(sha256sum < "$p") && printf '%s\n' "\${h%% *}"; fi`);
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

export const sha256hex = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

const short = (sha: string): string => sha.slice(0, 12);

/** Normalised requested attributes (validated). */
export interface WantAttrs {
  mode?: string;
  owner?: string;
  group?: string;
}

export function normAttrs(a: Attrs, what: string): WantAttrs {
  const w: WantAttrs = {};
  if (a.mode !== undefined) {
    try {
      w.mode = modeString(a.mode);
    } catch {
      throw new InputError(`${what}: invalid mode ${JSON.stringify(a.mode)} (octal like "0644" expected)`);
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
  if ((d.after && d.after.length > DIFF_CONTENT_CAP) || (d.before && d.before.length > DIFF_CONTENT_CAP)) return 'diff omitted: file too large';
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
  /** never show the content (diff) nor its hash */
  secret?: boolean;
  /** replaces the generic "content changed" / "create" line (lineinfile: "line added", ...) */
  contentChange?: string;
  /** default mode of a new file */
  defaultMode?: string;
  /** a command run on the new content before it replaces the file ("%s" = the temp file); non-zero = fail */
  validate?: string;
  result?: Record<string, unknown>;
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
  const result = { path: w.path, ...w.result };
  if (!st.exists) {
    if (w.content === undefined && !w.touch) {
      // check mode: an earlier step may create it; what this step would then do cannot be known
      requireThat(ctx, false, `${w.path} does not exist`);
      return { changed: true, changes: [`${w.path} does not exist (assumed created by an earlier step)`], result };
    }
    requireThat(ctx, st.parentExists, `parent directory of ${w.path} does not exist`);
    const content = w.content ?? Buffer.alloc(0);
    const mode = w.want.mode ?? w.defaultMode ?? '0644';
    const attrs = [`mode ${mode}`];
    if (w.want.owner) attrs.push(`owner ${w.want.owner}`);
    if (w.want.group) attrs.push(`group ${w.want.group}`);
    // An edit (lineinfile, blockinfile, sysctl) that creates its file reports just the edit: several
    // steps often edit one new file, and in check mode every one of them sees it missing, so "create"
    // would be predicted for each while the run reports it for the first only.
    const plan: Plan = {
      changed: true,
      changes: [w.contentChange ?? `create${via} (${content.length} bytes, ${attrs.join(', ')})`],
      apply: { script: atomicWriteScript(target, { ...w.want, exists: false, defaultMode: mode, validate: w.validate, sha: sha256hex(content) }), stdin: content },
      result,
    };
    if (ctx.diff && w.content !== undefined) plan.diff = contentDiff({ path: w.path, before: null, after: content, secret: w.secret });
    return plan;
  }
  const changes: string[] = [];
  let contentChanged = false;
  if (w.content !== undefined) {
    const newSha = sha256hex(w.content);
    if (st.sha === undefined && !st.content) throw new Error(`${w.path}: cannot read the current content`);
    const curSha = st.sha ?? sha256hex(st.content!);
    if (newSha !== curSha) {
      contentChanged = true;
      if (w.contentChange) changes.push(w.contentChange);
      else if (w.secret) changes.push(`content changed (secret, ${st.size} -> ${w.content.length} bytes)`);
      else changes.push(`content changed (${st.size} -> ${w.content.length} bytes, sha256 ${short(curSha)} -> ${short(newSha)})`);
    }
  }
  changes.push(...attrChanges(st, w.want));
  if (!changes.length) return { changed: false, changes: [], result };
  if (via) changes[0] += via;
  const apply: ApplyScript = contentChanged
    ? { script: atomicWriteScript(target, { ...w.want, exists: true, validate: w.validate, sha: sha256hex(w.content!) }), stdin: w.content! }
    : { script: attrScript(target, st, w.want) };
  const plan: Plan = { changed: true, changes, apply, result };
  if (ctx.diff && contentChanged) {
    plan.diff = contentDiff({ path: w.path, before: st.content ?? null, beforeNote: st.contentNote, after: w.content!, secret: w.secret });
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
  /** with owner/group: apply them to everything below too (chown -R); mode is never recursive */
  recurse?: boolean;
  state?: 'present' | 'absent';
}

export function directory(args: DirectoryArgs, opts: StepOptions = {}): Operation {
  const path = checkPath(args.path, 'directory');
  const want = normAttrs(args, `directory ${path}`);
  const state = args.state ?? 'present';
  if (state !== 'present' && state !== 'absent') throw new InputError(`directory ${path}: invalid state ${JSON.stringify(state)}`);
  if (state === 'absent' && path === '/') throw new InputError('directory: refusing to remove /');
  const spec = chownSpec(want);
  const recurse = !!args.recurse && !!spec;
  return defineOp({
    kind: 'directory',
    title: `directory ${path}`,
    options: opts,
    probe: () => {
      let script = pathProbeScript(path, { owner: want.owner, group: want.group });
      if (recurse && state === 'present') {
        const tests: string[] = [];
        if (want.owner) tests.push(sh`! -user ${want.owner}`);
        if (want.group) tests.push(sh`! -group ${want.group}`);
        const cond = tests.join(' -o ');
        script += `\n{ echo @@below; if [ -d ${sh`${path}`} ]; then find ${sh`${path}`} -mindepth 1 \\( ${cond} \\) -print | wc -l; fi; } 2>/dev/null`;
      }
      return { script };
    },
    plan: (ctx, out) => {
      const st = parsePathProbe(out);
      const result = { path, state };
      if (state === 'absent') {
        if (!st.exists && !st.isLink) return { changed: false, changes: [], result };
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
        const mode = want.mode ?? '0755';
        const attrs = [`mode ${mode}`];
        if (want.owner) attrs.push(`owner ${want.owner}`);
        if (want.group) attrs.push(`group ${want.group}`);
        const cmds = [sh`mkdir -p -- ${path}`, sh`chmod ${chmodArg(mode)} -- ${path}`];
        if (spec) cmds.push(sh`chown ${spec} -- ${path}`);
        return {
          changed: true,
          changes: [`create (${attrs.join(', ')}${st.parentExists ? '' : ', with parents'})`],
          apply: { script: cmds.join(' && ') },
          result,
        };
      }
      if (!st.isDir) throw new Error(`${path} exists and is not a directory (${st.type})`);
      const changes = attrChanges(st, want);
      const below = Number((sections(out).get('below') ?? '0').trim() || '0');
      if (recurse && below > 0) changes.push(`owner/group of ${below} entr${below === 1 ? 'y' : 'ies'} below -> ${spec}`);
      if (!changes.length) return { changed: false, changes: [], result };
      const target = st.real || path;
      const cmds: string[] = [];
      if (want.mode && want.mode !== st.mode) cmds.push(sh`chmod ${chmodArg(want.mode)} -- ${target}`);
      if (spec && (recurse && below > 0 ? true : changes.some((c) => c.startsWith('owner') || c.startsWith('group')))) {
        cmds.push(recurse && below > 0 ? sh`chown -R ${spec} -- ${target}` : sh`chown ${spec} -- ${target}`);
      }
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
  /** a local file (on the controller) whose bytes are the content; relative to the working directory */
  src?: string;
  /** present (default): content/attributes; absent: removed (directories recursively); touch: exists (created empty) */
  state?: 'present' | 'absent' | 'touch';
  /** hide the content: no diff, no hash in the change lines */
  secret?: boolean;
  /** check the new content before it replaces the file: a command with %s for the temp file
   *  (e.g. "sshd -t -f %s", "visudo -cf %s"); a non-zero exit fails the step, the file stays as it was */
  validate?: string;
}

/** Validate the `validate` argument: a non-empty command that mentions %s. */
export function checkValidate(v: unknown, what: string): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !v.includes('%s')) throw new InputError(`${what}: validate must be a command containing %s (the file to check)`);
  return v;
}

function loadSrc(src: string, what: string): Buffer {
  try {
    return readFileSync(resolvePath(src));
  } catch (e) {
    throw new InputError(`${what}: cannot read src ${src}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

export function file(args: FileArgs, opts: StepOptions = {}): Operation {
  const path = checkPath(args.path, 'file');
  const what = `file ${path}`;
  const want = normAttrs(args, what);
  const state = args.state ?? 'present';
  if (!['present', 'absent', 'touch'].includes(state)) throw new InputError(`${what}: invalid state ${JSON.stringify(state)}`);
  if (args.content !== undefined && args.src !== undefined) throw new InputError(`${what}: give content or src, not both`);
  if (state !== 'present' && (args.content !== undefined || args.src !== undefined)) {
    throw new InputError(`${what}: content/src only with state present`);
  }
  if (state === 'absent' && path === '/') throw new InputError('file: refusing to remove /');
  const validate = checkValidate(args.validate, what);
  let srcBytes: Buffer | undefined;
  const content = (): Buffer | undefined => {
    if (args.content !== undefined) return Buffer.isBuffer(args.content) ? args.content : Buffer.from(args.content, 'utf8');
    if (args.src !== undefined) return (srcBytes ??= loadSrc(args.src, what));
    return undefined;
  };
  const managesContent = args.content !== undefined || args.src !== undefined;
  return defineOp({
    kind: args.src !== undefined ? 'copy' : 'file',
    title: args.src !== undefined ? `copy ${args.src} -> ${path}` : what,
    options: opts,
    probe: (ctx) => ({
      script: pathProbeScript(path, {
        sha: managesContent,
        contentCap: ctx.diff && (managesContent || state === 'absent') && !args.secret ? DIFF_CONTENT_CAP : 0,
        owner: want.owner,
        group: want.group,
      }),
    }),
    plan: (ctx, out) => {
      const st = parsePathProbe(out);
      if (state === 'absent') {
        const result = { path, state };
        if (!st.exists && !st.isLink) return { changed: false, changes: [], result };
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
      return planWrite(ctx, st, { path, content: content(), want, touch: state === 'touch', secret: args.secret, validate, result: { state } });
    },
  });
}

/** `copy` = file with a local src. */
export function copy(args: Omit<FileArgs, 'content' | 'state'> & { src: string }, opts: StepOptions = {}): Operation {
  return file({ ...args, state: 'present' }, opts);
}
