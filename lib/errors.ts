// Error types and exit codes. 0 all ok, 2 a host failed, 3 a host unreachable, 4 bad input, 5 deploy lock held.
import { mask } from './secrets.ts';

export const EXIT = { OK: 0, FAILED: 2, UNREACHABLE: 3, BAD_INPUT: 4, LOCKED: 5, INTERRUPTED: 130 } as const;

/** Bad input: inventory, arguments, templates, site records. `where` is "file:line" or "file:line field". */
export class InputError extends Error {
  readonly exitCode = EXIT.BAD_INPUT;
  constructor(
    message: string,
    readonly where?: string,
  ) {
    super(where ? `${where}: ${message}` : message);
    this.name = 'InputError';
  }
}

/** A remote command exited non-zero. */
export class RemoteCommandError extends Error {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly code: number,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    // masked BEFORE the cuts below: a secret cut in two by them would no longer be found
    const tail = mask(stderr || stdout)
      .trim()
      .split('\n')
      .slice(-6)
      .join('\n');
    super(`${host}: command failed (exit ${code}): ${firstLine(mask(command))}${tail ? `\n${tail}` : ''}`);
    this.name = 'RemoteCommandError';
  }
}

/** The host cannot be reached (connect failure, dropped connection after one reconnect, timeout). */
export class UnreachableError extends Error {
  constructor(
    readonly host: string,
    reason: string,
  ) {
    super(`${host}: unreachable: ${reason}`);
    this.name = 'UnreachableError';
  }
}

/** The host key presented differs from known_hosts, or is unknown and first contact was not allowed. */
export class HostKeyError extends Error {
  constructor(
    readonly host: string,
    message: string,
  ) {
    super(`${host}: ${message}`);
    this.name = 'HostKeyError';
  }
}

function firstLine(s: string): string {
  const line = s.split('\n')[0] ?? '';
  return line.length > 160 ? `${line.slice(0, 157)}...` : line;
}

/** The run was interrupted (Ctrl-C): a command stopped on the host, or a unit of work not started. Exit 130. */
export class InterruptedError extends Error {
  readonly exitCode = EXIT.INTERRUPTED;
  constructor(
    readonly host: string,
    what = 'interrupted',
  ) {
    super(host ? `${host}: ${what}` : what);
    this.name = 'InterruptedError';
  }
}
