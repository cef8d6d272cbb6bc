// download: fetch a URL on the host (curl, else wget) into dest, verified by sha256, atomically.
// The probe reads dest's sha256 and attributes (and which of curl/wget exist); when the sha256 already
// matches nothing is downloaded. The apply downloads into a temp file in dest's directory, checks the
// sha256 (a mismatch fails the step and leaves dest untouched), then chmod/chown and mv -f.
import type { Operation, StepOptions } from '../types.ts';
import { absPath, argSpec, attrShape, defineOp } from './base.ts';
import { z } from '../schema.ts';
import { sections, sh, tempBeside } from '../shell.ts';
import { chmodArg, normAttrs, requireThat, parsePathProbe, pathGather, pathProbeScript, type Attrs } from './files.ts';

export interface DownloadArgs extends Attrs {
  url: string;
  /** remote destination file */
  dest: string;
  /** expected sha256 (hex) of the content */
  sha256: string;
  /** seconds for the whole transfer (default 600) */
  timeoutSec?: number;
}

/** The apply script: download to a temp file, verify, install atomically. */
export function downloadScript(a: {
  url: string;
  target: string;
  sha256: string;
  mode?: string;
  chown?: string | null;
  exists: boolean;
  timeoutSec: number;
}): string {
  const lines = [
    '( set -e',
    sh`p=${a.target}; u=${a.url}; want=${a.sha256}`,
    ...tempBeside(),
    'if command -v curl >/dev/null 2>&1; then',
    sh`  curl -fsSL --retry 2 --connect-timeout 20 --max-time ${a.timeoutSec} -o "$t" --url "$u"`,
    'elif command -v wget >/dev/null 2>&1; then',
    sh`  wget -q --tries=3 --timeout=20 -O "$t" -- "$u"`,
    `else echo 'download: neither curl nor wget is installed' >&2; exit 1; fi`,
    `got=$(sha256sum < "$t" | cut -d' ' -f1)`,
    `if [ "$got" != "$want" ]; then echo "download: sha256 mismatch: expected $want, got $got" >&2; exit 1; fi`,
  ];
  if (a.exists) lines.push(`chmod --reference="$p" -- "$t"`, `chown --reference="$p" -- "$t"`);
  if (a.mode) lines.push(sh`chmod ${chmodArg(a.mode)} -- "$t"`);
  if (a.chown) lines.push(sh`chown ${a.chown} -- "$t"`);
  lines.push(`mv -f -- "$t" "$p"`, 'trap - EXIT', ')');
  return lines.join('\n');
}

export const DOWNLOAD_ARGS = argSpec<DownloadArgs>()('download', {
  ...attrShape,
  url: z.string().regex(/^(https?|ftp|file):\/\/\S+$/i, {
    error: (iss) => `url must be http(s)://, ftp:// or file:// (got ${JSON.stringify(iss.input)})`,
  }),
  dest: absPath,
  sha256: z
    .string()
    .transform((s) => s.toLowerCase().replace(/^sha256:/, ''))
    .refine((s) => /^[0-9a-f]{64}$/.test(s), { error: 'must be 64 hex digits' }),
  timeoutSec: z.int().min(1).default(600),
});

export function download(input: DownloadArgs, opts: StepOptions = {}): Operation {
  return DOWNLOAD_ARGS.build(input, (args) => downloadOp(args, opts));
}

function downloadOp(args: z.output<typeof DOWNLOAD_ARGS.schema>, opts: StepOptions): Operation {
  const dest = args.dest;
  const what = `download ${dest}`;
  const sha = args.sha256;
  const want = normAttrs(args, what);
  const timeoutSec = args.timeoutSec;
  const chown = want.owner && want.group ? `${want.owner}:${want.group}` : want.owner ? want.owner : want.group ? `:${want.group}` : null;
  return defineOp({
    kind: 'download',
    title: what,
    options: opts,
    probe: () => ({
      script:
        pathProbeScript(dest, { sha: true, owner: want.owner, group: want.group }) +
        `\n{ echo @@tools; command -v curl || :; command -v wget || :; } 2>/dev/null`,
      gather: pathGather({ path: dest, sha: true }),
    }),
    plan: (ctx, out) => {
      const st = parsePathProbe(out);
      const result = { path: dest, url: args.url, sha256: sha };
      if (st.exists && !st.isFile) throw new Error(`${dest} exists and is not a regular file (${st.type})`);
      const need = (ok: boolean, msg: string): void => requireThat(ctx, ok, `${what}: ${msg}`);
      if (st.ownerKnown === false) need(false, `user ${want.owner} does not exist`);
      if (st.groupKnown === false) need(false, `group ${want.group} does not exist`);
      const target = st.real || dest;
      if (st.exists && st.sha === sha) {
        const changes: string[] = [];
        const cmds: string[] = [];
        if (want.mode && want.mode !== st.mode) {
          changes.push(`mode ${st.mode} -> ${want.mode}`);
          cmds.push(sh`chmod ${chmodArg(want.mode)} -- ${target}`);
        }
        const ownerDiff = want.owner && !(/^\d+$/.test(want.owner) ? want.owner === st.uid : want.owner === st.user);
        const groupDiff = want.group && !(/^\d+$/.test(want.group) ? want.group === st.gid : want.group === st.groupName);
        if (ownerDiff) changes.push(`owner ${st.user} -> ${want.owner}`);
        if (groupDiff) changes.push(`group ${st.groupName} -> ${want.group}`);
        if ((ownerDiff || groupDiff) && chown) cmds.push(sh`chown ${chown} -- ${target}`);
        if (!changes.length) return { changed: false, changes: [], result, reason: 'file already there with that sha256' };
        return { changed: true, changes, apply: { script: cmds.join(' && ') }, result };
      }
      const tools = (sections(out).get('tools') ?? '').trim();
      need(tools !== '', 'neither curl nor wget is installed');
      need(st.exists || st.parentExists, `parent directory of ${dest} does not exist`);
      const mode = want.mode ?? (st.exists ? undefined : '0644');
      const change = st.exists
        ? `replace (sha256 ${st.sha ? st.sha.slice(0, 12) : 'unknown'} -> ${sha.slice(0, 12)})`
        : `download (sha256 ${sha.slice(0, 12)}, mode ${mode}${want.owner ? `, owner ${want.owner}` : ''}${want.group ? `, group ${want.group}` : ''})`;
      const changes = [change];
      if (st.exists) {
        if (want.mode && want.mode !== st.mode) changes.push(`mode ${st.mode} -> ${want.mode}`);
        if (want.owner && !(/^\d+$/.test(want.owner) ? want.owner === st.uid : want.owner === st.user))
          changes.push(`owner ${st.user} -> ${want.owner}`);
        if (want.group && !(/^\d+$/.test(want.group) ? want.group === st.gid : want.group === st.groupName))
          changes.push(`group ${st.groupName} -> ${want.group}`);
      }
      return {
        changed: true,
        changes,
        apply: { script: downloadScript({ url: args.url, target, sha256: sha, mode, chown, exists: st.exists, timeoutSec }) },
        result,
      };
    },
  });
}
