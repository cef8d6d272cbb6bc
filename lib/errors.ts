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

/** Signals by number (Linux), for exit codes 128+n. */
const SIGNALS: Record<number, [string, string]> = {
  1: ['SIGHUP', 'hangup: its terminal or session went away'],
  2: ['SIGINT', 'interrupted (Ctrl-C)'],
  3: ['SIGQUIT', 'quit'],
  4: ['SIGILL', 'illegal instruction'],
  6: ['SIGABRT', 'aborted (assertion or abort())'],
  7: ['SIGBUS', 'bus error'],
  8: ['SIGFPE', 'arithmetic error'],
  9: ['SIGKILL', 'killed (kill -9, the out-of-memory killer, or a timeout)'],
  11: ['SIGSEGV', 'segmentation fault'],
  13: ['SIGPIPE', 'wrote to a pipe nobody reads'],
  14: ['SIGALRM', 'alarm clock'],
  15: ['SIGTERM', 'terminated (asked to stop: kill, systemctl stop, a timeout)'],
};

/**
 * What an exit code means, as zx explains it: 127 command not found, 126 found but not executable, 128+n
 * killed by signal n (130 interrupted, 137 killed, 143 terminated), 1/2 the usual failure/usage errors.
 */
export function explainExit(code: number): string {
  if (code === 1) return 'general error (the command reported a failure)';
  if (code === 2) return 'misuse: bad arguments or usage (shell builtins, most CLIs)';
  if (code === 124) return 'timed out (timeout(1) stopped the command)';
  if (code === 125) return 'the command wrapper (timeout, env, docker run) itself failed';
  if (code === 126) return 'command found but not executable (permission denied, or not a program)';
  if (code === 127) return 'command not found (not installed, or not in PATH)';
  if (code === 255) return 'exited with -1/255 (ssh, or a fatal error reported as 255)';
  if (code > 128 && code < 128 + 65) {
    const sig = SIGNALS[code - 128];
    return sig ? `${sig[1]}: signal ${sig[0]} (${code - 128})` : `killed by signal ${code - 128}`;
  }
  return 'failed';
}

/** A remote command exited non-zero: the code explained, with the last lines of its stderr (masked). */
export class RemoteCommandError extends Error {
  constructor(
    readonly host: string,
    readonly command: string,
    readonly code: number,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    // masked BEFORE the cuts below: a secret cut in two by them would no longer be found
    const tail = mask(stderr.trim() ? stderr : stdout)
      .trim()
      .split('\n')
      .slice(-6)
      .join('\n');
    super(`${host}: command failed (exit ${code}: ${explainExit(code)}): ${firstLine(mask(command))}${tail ? `\n${tail}` : ''}`);
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
