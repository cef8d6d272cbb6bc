// A run: inventory + CLI flags + one connection pool, then roles one after another, then the recap, the
// JSON report, the retry file and the exit code. Playbooks are short scripts over this:
//
//   const run = Run.fromArgv(process.argv.slice(2), { command: { name: 'x.ts', summary: '...' } });
//   await run.role(common);
//   await run.role(swarmManager);
//   await run.exit();
import { basename, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type CommandSpec, type CommonFlags, type OptionValue, type Parsed, fail, parseOrExit } from './cli.ts';
import { type AuditEntry, abandonedEntry, appendScript, gitCommit, outcomeOf, summarizeHosts } from './audit.ts';
import { EXIT, InputError } from './errors.ts';
import { checkVars, type Inventory, loadInventory, parseExtraVars } from './inventory.ts';
import { ConsoleReporter, type Reporter, formatRecap, recapRows, writeJsonReport, writePrivateFile } from './output.ts';
import { DeployLock, lockHosts } from './lock.ts';
import { selectHosts } from './patterns.ts';
import { type HostState, type RoleRunResult, exitCodeFor, runRole } from './runner.ts';
import { mask, maskDeep } from './secrets.ts';
import { StepTimes, renderTimeline, timelinePathFor } from './timeline.ts';
import { ConnectionPool, DEFAULT_CONNECT_TIMEOUT_MS } from './transport.ts';
import type { HostSpec, Role, StepResult } from './types.ts';

export interface RunConfig {
  flags: CommonFlags;
  /** every option of the command by its long name (lib/cli.ts), parsed */
  opts?: Record<string, OptionValue>;
  /** positional arguments */
  positionals?: string[];
  reporter?: Reporter;
  /** name used for the retry file and the report */
  name?: string;
  /** false: a read-only playbook that never takes the deploy lock (default: mutating runs take it) */
  lock?: boolean;
}

export class Run {
  readonly inventory: Inventory;
  readonly pool: ConnectionPool;
  readonly reporter: Reporter;
  readonly hostState = new Map<string, HostState>();
  readonly results: StepResult[] = [];
  readonly roleRuns: RoleRunResult[] = [];
  readonly signal = { interrupted: false };
  readonly started = performance.now();
  /** controller CPU at the start of the run (the engine's own cost, process start excluded) */
  readonly cpuAtStart = process.cpuUsage();
  private readonly hostMs = new Map<string, number>();
  private readonly touched: string[] = [];
  private sigint?: () => void;
  readonly startedAt = new Date();
  /** start/end of every step, its role, the round trips per host (for the report and the timeline) */
  readonly times = new StepTimes(this.started);
  private lock?: DeployLock;
  private lockPool?: ConnectionPool;
  private lockReleased = false;

  constructor(readonly config: RunConfig) {
    const f = config.flags;
    this.inventory = loadInventory(f.inventory, { extraVars: parseExtraVars(f.extraVars) });
    const kh = this.inventory.settings.knownHosts;
    this.pool = new ConnectionPool({
      knownHosts: kh ? (isAbsolute(kh) ? kh : resolve(kh)) : resolve('.wpfarm/known_hosts'),
      acceptNew: f.acceptNewHostKeys || this.inventory.settings.acceptNewHostKeys,
      connectTimeoutMs: (f.connectTimeout ?? this.inventory.settings.connectTimeoutS ?? DEFAULT_CONNECT_TIMEOUT_MS / 1000) * 1000,
      onCommand: (h, c) => {
        this.times.command(h);
        if (f.verbose > 2) this.reporter.log(h, `$ ${c.split('\n')[0]}`);
      },
    });
    this.reporter = config.reporter ?? new ConsoleReporter({ verbose: f.verbose, diff: f.diff });
    // check the limit pattern early: an unknown pattern is bad input before anything runs
    if (f.limit) selectHosts(this.inventory, 'all', f.limit);
  }

  /** Parse argv against the command's declaration (lib/cli.ts: --help, exit 4 on bad input), load the inventory. */
  static fromArgv(argv: string[], o: { name?: string; command?: CommandSpec; lock?: boolean } = {}): Run {
    const cmd = o.command ?? { name: o.name ?? 'run', summary: '' };
    return Run.fromParsed(parseOrExit(argv, cmd), { name: o.name ?? cmd.name.replace(/\.ts$/, ''), lock: o.lock });
  }

  /** A run from options already parsed (a playbook that checks its own options first); bad input exits 4. */
  static fromParsed(p: Parsed, o: { name?: string; lock?: boolean } = {}): Run {
    try {
      return new Run({ flags: p.flags, name: o.name, opts: p.opts, positionals: p.positionals, lock: o.lock }).installSignals();
    } catch (e) {
      fail(e);
    }
  }

  installSignals(): this {
    this.sigint = () => {
      if (this.signal.interrupted) {
        // quit at once, but give the deploy lock back first (3 s at most; else its heartbeat expires)
        setTimeout(() => process.exit(EXIT.INTERRUPTED), 3000).unref();
        void this.releaseLock(EXIT.INTERRUPTED).finally(() => process.exit(EXIT.INTERRUPTED));
        return;
      }
      this.signal.interrupted = true;
      this.reporter.say('\ninterrupted: stopping (no new step starts; running commands are closed). Press Ctrl-C again to quit at once.');
      this.pool.abortAll();
    };
    process.on('SIGINT', this.sigint);
    process.on('SIGTERM', this.sigint);
    return this;
  }

  /** The hosts a role targets on this run: its pattern (or an override) restricted by --limit. */
  hostsFor(pattern: string): HostSpec[] {
    return selectHosts(this.inventory, pattern, this.config.flags.limit);
  }

  /** Say a phase banner. */
  phase(title: string): void {
    this.reporter.say(`\n== ${title} ==`);
  }

  /**
   * Take the farm-wide deploy lock (lib/lock.ts) unless this run is --check, --no-lock or a read-only playbook.
   * role() calls it before the first role; a playbook that changes something before its first role calls it first.
   * Refused: LockHeldError (exit 5).
   */
  async takeLock(): Promise<void> {
    const f = this.config.flags;
    if (this.lock || f.check || f.noLock || this.config.lock === false) return;
    const hosts = lockHosts(this.inventory);
    if (!hosts.length) return;
    const kh = this.inventory.settings.knownHosts;
    this.lockPool = new ConnectionPool({
      knownHosts: kh ? (isAbsolute(kh) ? kh : resolve(kh)) : resolve('.wpfarm/known_hosts'),
      acceptNew: f.acceptNewHostKeys || this.inventory.settings.acceptNewHostKeys,
    });
    const lock = new DeployLock({ hosts, pool: this.lockPool, say: (m) => this.reporter.say(m) });
    await lock.acquire(f.waitLock);
    this.lock = lock;
  }

  /** Append this run's audit line (and one per stale run taken over) and release the lock; once. */
  private async releaseLock(code: number): Promise<void> {
    if (!this.lock || this.lockReleased) return;
    this.lockReleased = true;
    const lk = this.lock;
    const entries: AuditEntry[] = lk.tookOver.map((h) => abandonedEntry(h, lk.info));
    entries.push({
      v: 1,
      kind: 'run',
      id: lk.info.token,
      who: lk.info.owner,
      from: lk.info.controller,
      pid: lk.info.pid,
      command: lk.info.command,
      playbook: this.config.name,
      inventory: this.inventory.file,
      commit: gitCommit(this.inventory.file),
      start: this.startedAt.toISOString(),
      end: new Date().toISOString(),
      outcome: outcomeOf(code),
      exitCode: code,
      hosts: summarizeHosts(this.results),
    });
    try {
      await lk.release(appendScript(entries));
    } catch (e) {
      const why = mask((e as Error).message);
      this.reporter.say(`WARNING: the deploy lock was not released (${why}); it goes stale when its heartbeat stops`);
    }
    await this.lockPool?.closeAll();
  }

  /** Run a role on its hosts (or `pattern`). Returns the role's result; never throws for host failures. */
  async role(role: Role, pattern?: string): Promise<RoleRunResult> {
    // the role's variables are checked before the lock and before any connection (bad input: exit 4)
    if (role.vars) checkVars(this.inventory, role.vars);
    await this.takeLock();
    const hosts = this.hostsFor(pattern ?? role.hosts);
    const f = this.config.flags;
    const r = await runRole(role, hosts, {
      pool: this.pool,
      reporter: this.times.tap(this.reporter),
      options: { check: f.check, diff: f.diff, forks: f.forks, tags: f.tags, skipTags: f.skipTags, verbose: f.verbose },
      allHosts: this.inventory.hosts,
      select: (p) => selectHosts(this.inventory, p),
      signal: this.signal,
      hostState: this.hostState,
    });
    this.roleRuns.push(r);
    this.results.push(...r.results);
    for (const h of r.hosts) {
      this.hostMs.set(h.host, (this.hostMs.get(h.host) ?? 0) + h.ms);
      if (!this.touched.includes(h.host)) this.touched.push(h.host);
    }
    return r;
  }

  /** true when the host is still usable in this run */
  healthy(host: string): boolean {
    const s = this.hostState.get(host);
    return !s || (!s.failed && !s.unreachable);
  }

  changedCount(): number {
    return this.results.filter((r) => r.status === 'changed').length;
  }

  /** Recap, JSON report, retry file; returns the exit code. */
  async finish(): Promise<number> {
    this.reporter.finish();
    const wall = performance.now() - this.started;
    const rows = recapRows(this.results, this.hostMs, this.touched);
    const tty = !!process.stdout.isTTY;
    process.stdout.write(`${formatRecap(rows, this.results, wall, tty && !process.env.NO_COLOR)}\n`);
    const bad = [...this.hostState.entries()].filter(([, s]) => s.failed || s.unreachable).map(([h]) => h);
    let retryFile: string | undefined;
    if (bad.length) {
      retryFile = resolve('.wpfarm/retry', `${this.config.name ?? 'run'}.retry`);
      const text = `# failed or unreachable hosts of the last run; rerun with --limit @${retryFile}\n${bad.join('\n')}\n`;
      writePrivateFile(retryFile, mask(text));
      process.stdout.write(`retry file: ${retryFile} (rerun with --limit @${retryFile})\n`);
    }
    const code = exitCodeFor(this.hostState.values(), this.signal.interrupted);
    const timeline = this.config.flags.timeline ?? (this.config.flags.json ? timelinePathFor(this.config.flags.json) : undefined);
    if (this.config.flags.json || timeline) {
      const report = {
        name: this.config.name,
        startedAt: this.startedAt.toISOString(),
        endedAt: new Date().toISOString(),
        check: this.config.flags.check,
        exitCode: code,
        wallMs: Math.round(wall),
        engineCpuMs: Math.round(
          (() => {
            const c = process.cpuUsage(this.cpuAtStart);
            return (c.user + c.system) / 1000;
          })(),
        ),
        peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
        roundTrips: await this.pool.totalRoundTrips(),
        hosts: rows,
        roles: this.roleRuns.map((r) => ({ role: r.role, aborted: r.aborted, hosts: r.hosts })),
        results: this.results.map((r) => ({ ...r, ...this.times.of(r) })),
        roleTimes: this.times.roles,
        roundTripsAt: this.times.commands,
        lock: this.lock ? { hosts: this.lock.held, roundTrips: this.lock.roundTrips, tookOver: this.lock.tookOver } : undefined,
        retryFile,
      };
      if (this.config.flags.json) writeJsonReport(this.config.flags.json, report);
      // masked before rendering: the HTML escapes (&#39; &quot;...) would otherwise hide a secret from mask()
      if (timeline) writePrivateFile(timeline, mask(renderTimeline(maskDeep(report))));
    }
    await this.releaseLock(code);
    await this.pool.closeAll();
    if (this.sigint) {
      process.off('SIGINT', this.sigint);
      process.off('SIGTERM', this.sigint);
    }
    return code;
  }

  async exit(): Promise<never> {
    const code = await this.finish();
    process.exit(code);
  }
}

/** Load a role by name (roles/<name>/role.ts) or by path; its default export is the Role. */
export async function loadRole(nameOrPath: string, rolesDir = resolve('roles')): Promise<Role> {
  const looksLikePath = nameOrPath.includes('/') || nameOrPath.endsWith('.ts');
  const file = looksLikePath ? resolve(nameOrPath) : resolve(rolesDir, nameOrPath, 'role.ts');
  let mod: { default?: Role };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: Role };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes(basename(file))) {
      throw new InputError(`unknown role '${nameOrPath}' (no ${looksLikePath ? file : `roles/${nameOrPath}/role.ts`})`);
    }
    throw e;
  }
  const role = mod.default;
  if (!role || typeof role.steps !== 'function' || typeof role.name !== 'string') {
    throw new InputError(`${file}: the default export is not a role (needs name, hosts and steps())`);
  }
  return role;
}

export { mask };
