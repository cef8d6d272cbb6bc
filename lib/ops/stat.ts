// stat: read-only; registers whether a path exists and its type, mode, owner, size. Never changes anything.
import { sh } from '../shell.ts';
import type { Operation, StepOptions } from '../types.ts';
import { absPath, argSpec, defineOp } from './base.ts';

export interface StatResult {
  exists: boolean;
  type?: 'file' | 'directory' | 'symlink' | 'other';
  mode?: string;
  owner?: string;
  group?: string;
  size?: number;
  /** a symlink's target as stored in the link (readlink) */
  target?: string;
}

export function parseStat(out: string): StatResult {
  const line = out.trim();
  if (!line || line === 'absent') return { exists: false };
  const [first = '', target] = line.split('\n');
  const [type, mode, owner, group, size] = first.split(' ');
  const t =
    type === 'regular' || type === 'regular-empty'
      ? 'file'
      : type === 'directory'
        ? 'directory'
        : type === 'symbolic-link'
          ? 'symlink'
          : 'other';
  const r: StatResult = { exists: true, type: t, mode: mode?.padStart(4, '0'), owner, group, size: Number(size) };
  if (t === 'symlink' && target !== undefined) r.target = target;
  return r;
}

export const STAT_ARGS = argSpec<{ path: string }>()('stat', { path: absPath });

export function stat(input: string, options: StepOptions = {}): Operation {
  return STAT_ARGS.build({ path: input }, ({ path }) => statOp(path, options));
}

function statOp(path: string, options: StepOptions): Operation {
  return defineOp({
    kind: 'stat',
    title: `stat ${path}`,
    options,
    probe: () => ({
      script: sh`if [ -e ${path} ] || [ -L ${path} ]; then stat -c '%F %a %U %G %s' -- ${path} | sed 's/regular empty file/regular-empty/; s/regular file/regular/; s/symbolic link/symbolic-link/'; if [ -L ${path} ]; then readlink -- ${path}; fi; else echo absent; fi`,
    }),
    plan: (_ctx, out) => ({ changed: false, changes: [], result: parseStat(out), reason: 'read only' }),
  });
}
