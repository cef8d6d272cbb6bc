// Accounts: user, group, authorized_key.
//
// Probes read getent/id output and the authorized_keys file (base64, one line). Apply scripts use
// Debian's useradd/usermod/userdel and groupadd/groupmod/groupdel; authorized_keys is rewritten
// atomically (temp file in ~/.ssh + rename) with mode 0600 and the user's ownership.
//
// Users created here get /bin/bash as their shell unless told otherwise (Debian's useradd default is
// /bin/sh, and the engine's remote commands use bash syntax).
import type { Operation, Plan, StepContext, StepOptions } from '../types.ts';
import { absPath, argSpec, defineOp } from './base.ts';
import { z } from '../schema.ts';
import { sh } from '../shell.ts';
import { parsePasswdLine } from '../facts.ts';
import { b64decode, check, keyValues, lineDiff, nonEmptyLines, parts, validAccountName } from './sys-util.ts';

export interface UserArgs {
  name: string;
  state?: 'present' | 'absent';
  uid?: number;
  /** primary group (name); default: a group named after the user (useradd's USERGROUPS_ENAB) */
  group?: string;
  /** supplementary groups (must exist) */
  groups?: string[];
  /** true (default): add to `groups`, keep others; false: exactly `groups` */
  append?: boolean;
  shell?: string;
  home?: string;
  /** create the home directory (default: true for normal users, false for system users) */
  createHome?: boolean;
  system?: boolean;
  comment?: string;
  /** with state absent: also remove the home directory and mail spool */
  removeHome?: boolean;
}

interface UserProbe {
  exists: boolean;
  uid: number;
  gid: number;
  comment: string;
  home: string;
  shell: string;
  primary: string;
  groups: string[];
}

export function parseUserProbe(out: string): UserProbe {
  const p = parts(out);
  const pw = nonEmptyLines(p.get('passwd') ?? '')[0];
  const parsed = pw ? parsePasswdLine(pw) : null;
  const primary = nonEmptyLines(p.get('primary') ?? '')[0] ?? '';
  const all = (nonEmptyLines(p.get('groups') ?? '')[0] ?? '').split(/\s+/).filter(Boolean);
  if (!parsed) return { exists: false, uid: -1, gid: -1, comment: '', home: '', shell: '', primary: '', groups: [] };
  const [, u] = parsed;
  return { exists: true, ...u, primary, groups: all.filter((g) => g !== primary) };
}

export const USER_ARGS = argSpec<UserArgs>()('user', {
  name: z.string().refine(validAccountName, { error: (iss) => `invalid account name ${JSON.stringify(iss.input)}` }),
  state: z.enum(['present', 'absent']).default('present'),
  uid: z.int().min(0).optional(),
  group: z
    .string()
    .refine(validAccountName, { error: (iss) => `invalid account name ${JSON.stringify(iss.input)}` })
    .optional(),
  groups: z.array(z.string().refine(validAccountName, { error: (iss) => `invalid account name ${JSON.stringify(iss.input)}` })).optional(),
  append: z.boolean().optional(),
  shell: absPath.optional(),
  home: absPath.optional(),
  createHome: z.boolean().optional(),
  system: z.boolean().optional(),
  comment: z
    .string()
    .refine((c) => !/[:\n]/.test(c), { error: 'must not contain ":" or a newline' })
    .optional(),
  removeHome: z.boolean().optional(),
});

export function user(input: UserArgs, options: StepOptions = {}): Operation {
  return USER_ARGS.build(input, (a) => userOp(a, options));
}

function userOp(a: z.output<typeof USER_ARGS.schema>, options: StepOptions): Operation {
  const state = a.state ?? 'present';
  const append = a.append ?? true;

  return defineOp({
    kind: 'user',
    title: `user ${a.name}${state === 'absent' ? ' absent' : ''}`,
    options,
    probe: () => ({
      script: [
        '(',
        sh`echo %%passwd; getent passwd -- ${a.name}`,
        sh`echo %%primary; id -gn -- ${a.name}`,
        sh`echo %%groups; id -Gn -- ${a.name}`,
        ') 2>/dev/null',
      ].join('\n'),
      become: options.become,
    }),
    plan: (_ctx: StepContext, out: string): Plan => {
      const u = parseUserProbe(out);
      const result = { name: a.name, exists: u.exists, uid: u.uid, home: u.home };
      if (state === 'absent') {
        if (!u.exists) return { changed: false, changes: [], result, reason: 'user already absent' };
        return {
          changed: true,
          changes: [`remove user ${a.name} (uid ${u.uid})${a.removeHome ? ` and ${u.home}` : ''}`],
          apply: { script: sh`userdel ${a.removeHome ? ['-r'] : []} -- ${a.name}`, become: options.become },
          invalidates: ['users'],
          result,
        };
      }
      if (!u.exists) {
        const args: (string | number)[] = [];
        if (a.system) args.push('--system');
        if (a.uid !== undefined) args.push('--uid', a.uid);
        if (a.group !== undefined) args.push('--gid', a.group);
        else args.push('--user-group');
        if (a.groups?.length) args.push('--groups', a.groups.join(','));
        args.push('--shell', a.shell ?? '/bin/bash');
        if (a.home !== undefined) args.push('--home-dir', a.home);
        args.push((a.createHome ?? !a.system) ? '--create-home' : '--no-create-home');
        if (a.comment !== undefined) args.push('--comment', a.comment);
        const detail = [
          a.uid !== undefined ? `uid ${a.uid}` : '',
          a.groups?.length ? `groups ${a.groups.join(',')}` : '',
          `shell ${a.shell ?? '/bin/bash'}`,
        ]
          .filter(Boolean)
          .join(', ');
        return {
          changed: true,
          changes: [`create user ${a.name} (${detail})`],
          apply: { script: sh`useradd ${args} -- ${a.name}`, become: options.become },
          invalidates: ['users'],
          result,
        };
      }
      const args: (string | number)[] = [];
      const changes: string[] = [];
      if (a.uid !== undefined && a.uid !== u.uid) {
        args.push('--uid', a.uid);
        changes.push(`uid ${u.uid} -> ${a.uid}`);
      }
      if (a.group !== undefined && a.group !== u.primary) {
        args.push('--gid', a.group);
        changes.push(`primary group ${u.primary} -> ${a.group}`);
      }
      if (a.shell !== undefined && a.shell !== u.shell) {
        args.push('--shell', a.shell);
        changes.push(`shell ${u.shell} -> ${a.shell}`);
      }
      if (a.home !== undefined && a.home !== u.home) {
        args.push('--home', a.home, '--move-home');
        changes.push(`home ${u.home} -> ${a.home}`);
      }
      if (a.comment !== undefined && a.comment !== u.comment) {
        args.push('--comment', a.comment);
        changes.push(`comment ${JSON.stringify(u.comment)} -> ${JSON.stringify(a.comment)}`);
      }
      if (a.groups !== undefined) {
        const want = [...new Set(a.groups)];
        const add = want.filter((g) => !u.groups.includes(g));
        const drop = append ? [] : u.groups.filter((g) => !want.includes(g));
        if (add.length || drop.length) {
          if (append) args.push('--append', '--groups', add.join(','));
          else args.push('--groups', want.join(','));
          if (add.length) changes.push(`add to groups ${add.join(',')}`);
          if (drop.length) changes.push(`remove from groups ${drop.join(',')}`);
        }
      }
      if (!changes.length) return { changed: false, changes: [], result, reason: 'user already exists as wanted' };
      return {
        changed: true,
        changes,
        apply: { script: sh`usermod ${args} -- ${a.name}`, become: options.become },
        invalidates: ['users'],
        result,
      };
    },
  });
}

export interface GroupArgs {
  name: string;
  state?: 'present' | 'absent';
  gid?: number;
  system?: boolean;
}

export const GROUP_ARGS = argSpec<GroupArgs>()('group', {
  name: z.string().refine(validAccountName, { error: (iss) => `invalid account name ${JSON.stringify(iss.input)}` }),
  state: z.enum(['present', 'absent']).default('present'),
  gid: z.int().min(0).optional(),
  system: z.boolean().optional(),
});

export function group(input: GroupArgs, options: StepOptions = {}): Operation {
  return GROUP_ARGS.build(input, (a) => groupOp(a, options));
}

function groupOp(a: z.output<typeof GROUP_ARGS.schema>, options: StepOptions): Operation {
  const state = a.state ?? 'present';
  return defineOp({
    kind: 'group',
    title: `group ${a.name}${state === 'absent' ? ' absent' : ''}`,
    options,
    probe: () => ({ script: sh`( getent group -- ${a.name} ) 2>/dev/null`, become: options.become }),
    plan: (_ctx, out): Plan => {
      const line = nonEmptyLines(out).find((l) => l.startsWith(`${a.name}:`));
      const gid = line ? parseInt(line.split(':')[2] ?? '', 10) : -1;
      const result = { name: a.name, exists: !!line, gid };
      if (state === 'absent') {
        if (!line) return { changed: false, changes: [], result, reason: 'group already absent' };
        return {
          changed: true,
          changes: [`remove group ${a.name} (gid ${gid})`],
          apply: { script: sh`groupdel -- ${a.name}`, become: options.become },
          invalidates: ['users'],
          result,
        };
      }
      if (!line) {
        const args: (string | number)[] = [];
        if (a.system) args.push('--system');
        if (a.gid !== undefined) args.push('--gid', a.gid);
        return {
          changed: true,
          changes: [`create group ${a.name}${a.gid !== undefined ? ` (gid ${a.gid})` : ''}`],
          apply: { script: sh`groupadd ${args} -- ${a.name}`, become: options.become },
          invalidates: ['users'],
          result,
        };
      }
      if (a.gid !== undefined && a.gid !== gid)
        return {
          changed: true,
          changes: [`gid ${gid} -> ${a.gid}`],
          apply: { script: sh`groupmod --gid ${a.gid} -- ${a.name}`, become: options.become },
          invalidates: ['users'],
          result,
        };
      return { changed: false, changes: [], result, reason: 'group already exists' };
    },
  });
}

export interface AuthorizedKeyArgs {
  user: string;
  /** one key line ("ssh-ed25519 AAAA... comment", options allowed before the type) or several */
  key: string | string[];
  state?: 'present' | 'absent';
  /** the file holds exactly these keys (others are removed) */
  exclusive?: boolean;
}

const KEYTYPE = /^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)$/;

/** The identity of a key line: its type and base64 blob (options and comment ignored). */
export function keyId(line: string): string | null {
  const f = line.trim().split(/\s+/);
  for (let i = 0; i < f.length - 1; i++) if (KEYTYPE.test(f[i]!) && /^[A-Za-z0-9+/]+=*$/.test(f[i + 1]!)) return `${f[i]} ${f[i + 1]}`;
  return null;
}

export const AUTHORIZED_KEY_ARGS = argSpec<AuthorizedKeyArgs>()('authorizedKey', {
  user: z.string().refine(validAccountName, { error: (iss) => `invalid account name ${JSON.stringify(iss.input)}` }),
  key: z.union([z.string(), z.array(z.string())]),
  state: z.enum(['present', 'absent']).default('present'),
  exclusive: z.boolean().optional(),
});

export function authorizedKey(input: AuthorizedKeyArgs, options: StepOptions = {}): Operation {
  return AUTHORIZED_KEY_ARGS.build(input, (a) => authorizedKeyOp(a, options));
}

function authorizedKeyOp(a: z.output<typeof AUTHORIZED_KEY_ARGS.schema>, options: StepOptions): Operation {
  const keys = (Array.isArray(a.key) ? a.key : a.key.split('\n')).map((k) => k.trim()).filter((k) => k && !k.startsWith('#'));
  check(keys.length > 0, 'authorized key', a.key);
  for (const k of keys) check(keyId(k) !== null, 'SSH public key line', k.slice(0, 40));
  const state = a.state ?? 'present';
  const ids = keys.map((k) => keyId(k)!);

  return defineOp({
    kind: 'authorizedKey',
    title: `authorized key ${a.user} ${state === 'absent' ? 'absent ' : ''}${keys.map((k) => k.split(/\s+/).slice(-1)[0]).join(',')}`,
    options,
    probe: () => ({
      script: [
        '(',
        sh`h=$(getent passwd -- ${a.user} | cut -d: -f6)`,
        'echo home=$h',
        'if [ -n "$h" ] && [ -f "$h/.ssh/authorized_keys" ]; then echo exists=yes; echo %%content; base64 -w0 < "$h/.ssh/authorized_keys"; echo; fi',
        ') 2>/dev/null',
      ].join('\n'),
      become: options.become,
    }),
    plan: (ctx: StepContext, out: string): Plan => {
      const p = parts(out);
      const r = keyValues(p.get('') ?? '');
      const result0 = { user: a.user, path: '' };
      if (!r.home && state === 'absent') return { changed: false, changes: [], result: result0, reason: 'no such user: no key to remove' };
      if (!r.home && !ctx.check) throw new Error(`authorized key: user ${a.user} does not exist on ${ctx.host.name}`);
      const current = r.exists === 'yes' ? b64decode(p.get('content') ?? '') : '';
      const lines = current === '' ? [] : current.replace(/\n$/, '').split('\n');
      let next: string[];
      if (state === 'absent') {
        next = lines.filter((l) => {
          const id = keyId(l);
          return !id || !ids.includes(id);
        });
      } else if (a.exclusive) {
        next = [...keys];
      } else {
        next = [...lines];
        for (const k of keys) {
          const id = keyId(k)!;
          const at = next.findIndex((l) => keyId(l) === id);
          if (at < 0) next.push(k);
          else if (next[at]!.trim() !== k) next[at] = k; // same key, other options/comment: take ours
        }
      }
      const content = next.length ? `${next.join('\n')}\n` : '';
      const result = { user: a.user, path: r.home ? `${r.home}/.ssh/authorized_keys` : '' };
      if (
        content === (current === '' ? '' : current.endsWith('\n') ? current : `${current}\n`) &&
        (r.exists === 'yes' || state === 'absent')
      ) {
        return { changed: false, changes: [], result, reason: state === 'present' ? 'key already authorized' : 'key already absent' };
      }
      const added = next.filter((l) => !lines.includes(l)).length;
      const removed = lines.filter((l) => !next.includes(l)).length;
      const changes = [`${result.path || `~${a.user}/.ssh/authorized_keys`}: ${added} key line(s) added, ${removed} removed`];
      const script = [
        'set -e',
        sh`h=$(getent passwd -- ${a.user} | cut -d: -f6); g=$(id -gn -- ${a.user})`,
        sh`[ -n "$h" ] || { echo ${`no such user: ${a.user}`} >&2; exit 1; }`,
        sh`install -d -m 0700 -o ${a.user} -g "$g" "$h/.ssh"`,
        'tmp=$(mktemp "$h/.ssh/.authorized_keys.XXXXXX")',
        'cat > "$tmp"',
        sh`chmod 0600 "$tmp"; chown ${a.user}:"$g" "$tmp"`,
        'mv -f "$tmp" "$h/.ssh/authorized_keys"',
      ].join('\n');
      return {
        changed: true,
        changes,
        diff: ctx.diff ? lineDiff(current, content, result.path || 'authorized_keys') : undefined,
        apply: { script, stdin: content, become: options.become },
        result,
      };
    },
  });
}
