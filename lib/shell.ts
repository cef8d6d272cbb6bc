// Remote command building. Every interpolated value is quoted with zx's `quote` (bash ANSI-C quoting
// where needed); nothing is ever concatenated by hand. Remote login shells must be bash (Debian's default
// for root and for users created by the `user` operation).
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
