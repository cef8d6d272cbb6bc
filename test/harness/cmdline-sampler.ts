// A sampler of every process's command line, as `ps` shows them to any local user: reads /proc/*/cmdline in a
// loop (perl: perl-base is essential on Debian, no fork per process) until a stop file exists or a time limit, then
// prints each distinct command line once. Used to prove that credentials never appear on a command line (the
// tests first check that it did see the short-lived cscli/curl processes of the run it watched).
import { spawn } from 'node:child_process';
import { quote } from 'zx';

const PERL = String.raw`
my ($stop, $max) = @ARGV; my %seen; my $end = time + $max; my $passes = 0;
while (time < $end && !-e $stop) {
  for my $f (glob "/proc/[0-9]*/cmdline") {
    open(my $h, "<", $f) or next; local $/; my $c = <$h>; close $h;
    next unless defined $c && length $c;
    $c =~ tr/\0/ /; $c =~ s/ +$//; $seen{$c} = 1;
  }
  $passes++;
}
print "passes=$passes\n"; print "cmd=$_\n" for sort keys %seen;
`;

/** The shell command that samples until `stopFile` exists (or `maxSeconds`), then prints what it saw. */
export function samplerCommand(stopFile: string, maxSeconds = 900): string {
  return `perl -e ${quote(PERL)} ${quote(stopFile)} ${maxSeconds}`;
}

/** What samplerCommand printed: the number of passes over /proc and the distinct command lines. */
export function parseSampler(out: string): { passes: number; cmdlines: string[] } {
  const passes = Number(/^passes=(\d+)$/m.exec(out)?.[1] ?? 0);
  const cmdlines = out
    .split('\n')
    .filter((l) => l.startsWith('cmd='))
    .map((l) => l.slice(4));
  return { passes, cmdlines };
}

/** A sampler on this machine; stop() ends it and returns the distinct command lines it saw. */
export function startCmdlineSampler(stopFile = `/tmp/wpfarm-sampler-${process.pid}-${Date.now()}.stop`): {
  stop(): Promise<string[]>;
} {
  const p = spawn('bash', ['--norc', '-c', samplerCommand(stopFile)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<void>((r) => p.on('close', () => r()));
  return {
    async stop() {
      const { writeFileSync, rmSync } = await import('node:fs');
      writeFileSync(stopFile, '');
      await done;
      rmSync(stopFile, { force: true });
      return parseSampler(out).cmdlines;
    },
  };
}
