// A run: inventory + CLI flags + one connection pool, then roles one after another, then the recap, the
// JSON report, the retry file and the exit code. Everything the run does is an event of its stream (lib/events.ts):
// the console, the run's NDJSON log, the recap/report/timeline and the plan file listen to it. Each run has its
// directory (.wpfarm/runs/<time>-<playbook>/, 0700: events.ndjson, report.json, timeline.html; old ones pruned
// per settings.run_log_retention). Playbooks are short scripts over this:
//
//   const run = Run.fromArgv(process.argv.slice(2), { command: { name: 'x.ts', summary: '...' } });
//   await run.role(common);
//   await run.role(swarmManager);
//   await run.exit();
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type CommandSpec, type CommonFlags, type OptionValue, type Parsed, fail, parseOrExit } from './cli.ts';
import { AuditTrail, abandonedEntry, appendScript } from './audit.ts';
import { EXIT, InputError } from './errors.ts';
import { checkVars, type Inventory, loadInventory, parseExtraVars } from './inventory.ts';
import {
  DEFAULT_RETENTION,
  EVENTS_FORMAT_VERSION,
  EventStream,
  type Listener,
  RunLog,
  RunRecord,
  makeRunDir,
  pruneRuns,
  runDirName,
} from './events.ts';
import { ConsoleReporter, formatRecap, jsonReportPieces, recapRows, writePrivateFile, writePrivateFiles } from './output.ts';
import { DeployLock, LockHeldError, commandLine, lockHosts } from './lock.ts';
import {
  type PlanFile,
  PlanRecorder,
  type PlanStep,
  buildPlan,
  checkInputs,
  compareRole,
  describePlan,
  guardMessage,
  inputsOf,
  planInputFiles,
  planStepFor,
  readPlan,
  writePlan,
} from './plan.ts';
import { selectHosts } from './patterns.ts';
import {
  type HostState,
  PrefetchedProbes,
  type RoleRunResult,
  type RunEnv,
  exitCodeFor,
  prefetchProbes,
  runRole,
  tagsMatch,
} from './runner.ts';
import { mask, maskedView } from './secrets.ts';
import { renderTimelinePieces, timelinePathFor } from './timeline.ts';
import { ConnectionPool, sshOptions } from './transport.ts';
import { ackTsxParent, guardAgainstTsxParent } from './tsx-parent.ts';
import type { HostSpec, Role, StepResult } from './types.ts';

export interface RunConfig {
  flags: CommonFlags;
  /** every option of the command by its long name (lib/cli.ts), parsed */
  opts?: Record<string, OptionValue>;
  /** positional arguments */
  positionals?: string[];
  /** the console listener (default: lib/output.ts ConsoleReporter) */
  reporter?: Listener;
  /** name used for the retry file and the report */
  name?: string;
  /** false: a read-only playbook that never takes the deploy lock (default: mutating runs take it) */
  lock?: boolean;
}

/** A second SIGINT sooner than this after the first is the same Ctrl-C relayed (npx, tsx, make), not the user's. */
const SECOND_SIGNAL_MS = 1000;

export class Run {
  readonly inventory: Inventory;
  readonly pool: ConnectionPool;
  /** the run's one event stream: emit through it, listen to it */
  readonly events: EventStream;
  /** steps with their times, roles, round trips: what the recap, the report and the timeline read */
  readonly record = new RunRecord();
  /** the audit line of a mutating run (appended on the lock hosts when the lock is released) */
  private readonly audit = new AuditTrail();
  readonly hostState = new Map<string, HostState>();
  readonly results: StepResult[] = [];
  /** probes read ahead by prefetch() */
  private readonly probes = new PrefetchedProbes();
  readonly roleRuns: RoleRunResult[] = [];
  readonly signal = { interrupted: false };
  readonly started = performance.now();
  /** controller CPU at the start of the run (the engine's own cost, process start excluded) */
  readonly cpuAtStart = process.cpuUsage();
  private sigint?: () => void;
  /** stops the worker that acknowledges Ctrl-C to tsx's CLI while we are busy (lib/tsx-parent.ts) */
  private unguard?: () => void;
  /** performance.now() of the first SIGINT */
  private interruptedAt?: number;
  readonly startedAt = new Date();
  /** this run's directory (events.ndjson, report.json, timeline.html) */
  readonly runDir: string;
  private readonly log: RunLog;
  private console?: ConsoleReporter;
  /** --plan-out: the steps planned so far; --apply: the plan and this run's own record of it */
  private readonly planRecorder = new PlanRecorder();
  private readonly plan?: PlanFile;
  private readonly changedHosts = new Set<string>();
  private inputsChecked = false;
  private lock?: DeployLock;
  private lockPool?: ConnectionPool;
  private lockReleased = false;
  /** the lock hosts held (the report's; release() empties lock.held) */
  private lockHeld: string[] = [];
  /** the warm-ups started by warmup() */
  private readonly warmups: Promise<void>[] = [];

  constructor(readonly config: RunConfig) {
    const f = config.flags;
    this.events = new EventStream(this.started);
    this.inventory = loadInventory(f.inventory, { extraVars: parseExtraVars(f.extraVars) });
    this.pool = new ConnectionPool({
      ...sshOptions(this.inventory.settings, f),
      onCommand: (h, c) => this.events.command(h, c),
      onHandshake: (h, n) => this.events.handshake(h, n),
    });
    // check the limit pattern early: an unknown pattern is bad input before anything runs
    if (f.limit) selectHosts(this.inventory, 'all', f.limit);
    if (f.apply) {
      this.plan = readPlan(f.apply);
      if (this.plan.playbook !== this.playbook) {
        const which = `a plan of ${this.plan.playbook}, not of ${this.playbook}`;
        throw new InputError(`${f.apply}: ${which}: apply it with the command that made it`);
      }
    }
    if (config.reporter) this.events.on(config.reporter);
    else {
      this.console = new ConsoleReporter({ verbose: f.verbose, diff: f.diff });
      this.events.on(this.console.listener);
    }
    this.events.on(this.record.listener);
    this.events.on(this.audit.listener);
    // what a plan is made of: only when this run writes one (--plan-out) or applies one (--apply)
    if (f.planOut || f.apply) this.events.on(this.planRecorder.listener);
    // the run's directory: old ones go first (retention), then this one's log records every event
    const root = this.inventory.settings.runLogDir ?? resolve('.wpfarm/runs');
    pruneRuns(root, this.inventory.settings.runLogRetention ?? DEFAULT_RETENTION);
    this.runDir = makeRunDir(root, runDirName(this.startedAt, this.playbook));
    this.log = new RunLog(join(this.runDir, 'events.ndjson'));
    this.events.on(this.log.listener);
    this.events.emit({
      kind: 'run.start',
      name: this.playbook,
      command: commandLine(),
      check: f.check,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      mode: f.planOut ? 'plan' : f.apply ? 'apply' : undefined,
    });
  }

  get playbook(): string {
    return this.config.name ?? 'run';
  }

  /** Files whose contents a plan depends on (lib/plan.ts). */
  private planInputs(): PlanFile['inputs'] {
    const codeRoot = process.cwd(); // like loadRole's roles/: the checkout the run is started in
    return inputsOf(planInputFiles({ inventoryFiles: this.inventory.files, codeRoot, roleFiles: [...loadedRoleFiles] }));
  }

  /** A result of the playbook's own (a drill's figures...): in the run's log, and in the JSON report under data[name]. */
  data(name: string, data: unknown): void {
    this.events.emit({ kind: 'data', name, data });
  }

  /** Say something on the console and in the run's log. */
  say(message: string): void {
    this.events.say(message);
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

  /**
   * Ctrl-C (SIGINT, or SIGTERM): no new step starts, the commands in flight are stopped where that is safe
   * (ConnectionPool.abortAll; apt/dpkg and docker are left to finish, and said), then the run ends normally:
   * recap, retry file, report, exit 130. One Ctrl-C reaches us more than once: from the terminal to the whole
   * process group, and relayed by npx, tsx and make (within milliseconds). So only a signal at least
   * SECOND_SIGNAL_MS after the first is the user's second Ctrl-C, which quits at once.
   */
  installSignals(): this {
    this.sigint = () => {
      const now = performance.now();
      ackTsxParent();
      if (this.interruptedAt !== undefined) {
        if (now - this.interruptedAt < SECOND_SIGNAL_MS) return;
        this.events.emit({ kind: 'interrupt', signal: 'SIGINT', again: true });
        this.events.say('\nsecond Ctrl-C: quitting now (the recap, retry file and report are not written)');
        // quit at once, but give the deploy lock back first (3 s at most; else its heartbeat expires)
        setTimeout(() => process.exit(EXIT.INTERRUPTED), 3000).unref();
        void this.releaseLock(EXIT.INTERRUPTED).finally(() => process.exit(EXIT.INTERRUPTED));
        return;
      }
      this.interruptedAt = now;
      this.signal.interrupted = true;
      this.events.emit({ kind: 'interrupt', signal: 'SIGINT', again: false });
      this.events.say('\ninterrupted: stopping (no new step starts; running commands are stopped). Press Ctrl-C again to quit at once.');
      void this.pool.abortAll().then((left) => {
        if (!left.length) return;
        this.events.say(`waiting for ${left.length} command(s) that are not safe to stop half-way:\n  ${left.join('\n  ')}`);
      });
    };
    process.on('SIGINT', this.sigint);
    process.on('SIGTERM', this.sigint);
    this.unguard = guardAgainstTsxParent();
    return this;
  }

  /** The hosts a role targets on this run: its pattern (or an override) restricted by --limit. */
  hostsFor(pattern: string): HostSpec[] {
    return selectHosts(this.inventory, pattern, this.config.flags.limit);
  }

  /** Every host these roles run on (each once). */
  private hostsOfRoles(roles: readonly Role[]): HostSpec[] {
    const seen = new Map<string, HostSpec>();
    for (const r of roles) for (const h of this.hostsFor(r.hosts)) seen.set(h.name, h);
    return [...seen.values()];
  }

  /** Say a phase banner. */
  phase(title: string): void {
    this.events.say(`\n== ${title} ==`);
  }

  /**
   * Take the farm-wide deploy lock (lib/lock.ts) unless this run is --check, --no-lock or a read-only playbook.
   * role() calls it before the first role; a playbook that changes something before its first role calls it first.
   * Refused: LockHeldError (exit 5).
   */
  async takeLock(connect: readonly HostSpec[] = []): Promise<void> {
    const f = this.config.flags;
    if (this.lock || this.signal.interrupted || f.check || f.noLock || this.config.lock === false) return;
    const hosts = lockHosts(this.inventory);
    if (!hosts.length) return;
    // the run's own connections (`connect`: the hosts it is about to read) are made while the lock is taken: a
    // handshake reads and changes nothing, and the two were one after the other (0.5-0.8 s of a farm rerun)
    for (const h of connect) void this.pool.get(h).catch(() => undefined);
    this.lockPool = new ConnectionPool(sshOptions(this.inventory.settings, f));
    const lock = new DeployLock({ hosts, pool: this.lockPool, say: (m) => this.events.say(m) });
    try {
      await lock.acquire(f.waitLock);
    } catch (e) {
      if (e instanceof LockHeldError) this.events.emit({ kind: 'lock', action: 'refused', message: e.message });
      throw e;
    }
    this.lock = lock;
    this.lockHeld = [...lock.held];
    const message = lock.tookOver.length ? 'took over a stale lock' : undefined;
    this.events.emit({ kind: 'lock', action: 'acquired', hosts: lock.held, message });
  }

  /** Append this run's audit line (and one per stale run taken over) and release the lock; once. */
  private async releaseLock(code: number): Promise<void> {
    if (!this.lock || this.lockReleased) return;
    this.lockReleased = true;
    const lk = this.lock;
    // one line per stale run taken over, then this run's, built from the event stream (lib/audit.ts AuditTrail)
    const entries = [...lk.tookOver.map((h) => abandonedEntry(h, lk.info)), this.audit.entry(lk.info, code, this.inventory.file)];
    try {
      const held = [...lk.held]; // release() empties it
      await lk.release(appendScript(entries));
      this.events.emit({ kind: 'lock', action: 'released', hosts: held });
    } catch (e) {
      const why = mask((e as Error).message);
      this.events.emit({ kind: 'lock', action: 'release-failed', message: why });
      this.events.say(`WARNING: the deploy lock was not released (${why}); it goes stale when its heartbeat stops`);
    }
    await this.lockPool?.closeAll();
  }

  /** Run a role on its hosts (or `pattern`). Returns the role's result; never throws for host failures. */
  async role(role: Role, pattern?: string): Promise<RoleRunResult> {
    // the role's variables are checked before the lock and before any connection (bad input: exit 4)
    if (role.vars) checkVars(this.inventory, role.vars);
    // --apply: the inputs are compared once the playbook loaded its roles, before the lock and the first change
    if (this.plan && !this.inputsChecked) {
      checkInputs(this.plan, this.planInputs(), this.config.flags.apply!);
      this.inputsChecked = true;
    }
    const hosts = this.hostsFor(pattern ?? role.hosts);
    await this.takeLock(hosts);
    const env = { ...this.env(), prefetched: this.plan ? undefined : this.probes };
    const plan = this.plan;
    let planGuard: ((e: Parameters<NonNullable<Parameters<typeof runRole>[2]['planGuard']>>[0]) => string | undefined) | undefined;
    if (plan) {
      const roleIndex = this.planRecorder.currentRole + 1;
      await this.verifyPlan(plan, role, hosts, roleIndex);
      planGuard = (e) => {
        const n = this.planRecorder.occurrence(e.host);
        return guardMessage(n === undefined ? undefined : planStepFor(plan, roleIndex, e.host, e.step, n), e);
      };
    }
    const r = await runRole(role, hosts, { ...env, planGuard });
    this.roleRuns.push(r);
    this.results.push(...r.results);
    for (const x of r.results) if (x.status === 'changed') this.changedHosts.add(x.host);
    return r;
  }

  /** What runRole() needs from this run (a role's check pass under --apply builds its own). */
  private env(): RunEnv {
    const f = this.config.flags;
    return {
      pool: this.pool,
      events: this.events,
      options: { check: f.check, diff: f.diff, forks: f.forks, tags: f.tags, skipTags: f.skipTags, verbose: f.verbose },
      allHosts: this.inventory.hosts,
      select: (p: string) => selectHosts(this.inventory, p),
      signal: this.signal,
      hostState: this.hostState,
    };
  }

  /**
   * Read ahead the probes of these roles (those of a phase, or every role a playbook will run) on all their hosts,
   * in one round trip per host (lib/runner.ts prefetchProbes), so that a no-change rerun of them costs that round
   * trip. Then run them with role() as always. Nothing is read again while the probes read hold (the run changed
   * nothing since) and cover these roles; with --apply (each role checked against its plan first) it does nothing.
   */
  async prefetch(roles: Role[]): Promise<void> {
    if (this.plan || this.signal.interrupted || !roles.length) return;
    if (this.probes.valid(this.pool) && roles.every((r) => this.probes.roles.has(r.name))) return;
    // the roles' variables are checked before the lock and before any connection (bad input: exit 4)
    for (const r of roles) if (r.vars) checkVars(this.inventory, r.vars);
    await this.takeLock(this.hostsOfRoles(roles));
    await prefetchProbes(
      roles.map((role) => ({ role, hosts: this.hostsFor(role.hosts) })),
      this.env(),
      this.probes,
    );
  }

  /**
   * Start the warm-ups of these roles (Role.warmup: controller-side work such as image builds) in the background,
   * each with the vars of its first host, so that they overlap the host work of the roles before theirs. Not in
   * check, plan or apply mode, nor for a role that --tags/--skip-tags or --limit leave out. A warm-up that fails is
   * said and otherwise ignored: its role does the same work in its turn. Returns once they are started (the deploy
   * lock taken first); finish() waits for them.
   */
  async warmup(roles: Role[]): Promise<void> {
    const f = this.config.flags;
    if (f.check || f.planOut || f.apply || this.signal.interrupted || !roles.some((r) => r.warmup)) return;
    // after the lock (a run refused by it builds nothing) and the variables' check (bad input: exit 4)
    for (const r of roles) if (r.vars) checkVars(this.inventory, r.vars);
    await this.takeLock(this.hostsOfRoles(roles));
    for (const role of roles) {
      if (!role.warmup) continue;
      if (!tagsMatch(role.tags ?? [], undefined, this.env().options)) continue;
      const host = this.hostsFor(role.hosts)[0];
      if (!host) continue;
      const t = performance.now();
      const emit = (action: 'start' | 'log' | 'end' | 'failed', message?: string, ms?: number): void => {
        this.events.emit({ kind: 'warmup', role: role.name, action, message, ms });
      };
      emit('start', role.description ?? role.name);
      this.warmups.push(
        role
          .warmup(host.vars, (line) => emit('log', line))
          .then(
            () => emit('end', undefined, Math.round(performance.now() - t)),
            (e: unknown) => emit('failed', e instanceof Error ? e.message : String(e), Math.round(performance.now() - t)),
          ),
      );
    }
  }

  /**
   * --apply: before the role changes anything, run it in check mode (its own event stream; the round trips still
   * reach this run's log) and compare every step with the plan; refused (InputError, exit 4) naming host and step.
   */
  private async verifyPlan(plan: PlanFile, role: Role, hosts: HostSpec[], roleIndex: number): Promise<void> {
    const f = this.config.flags;
    const events = new EventStream(this.started);
    const rec = new PlanRecorder(roleIndex);
    events.on(rec.listener);
    this.events.say(`verifying the plan for role ${role.name} (check mode) …`);
    const r = await runRole(role, hosts, {
      pool: this.pool,
      events,
      options: { check: true, diff: false, forks: f.forks, tags: f.tags, skipTags: f.skipTags, verbose: f.verbose },
      allHosts: this.inventory.hosts,
      select: (p: string) => selectHosts(this.inventory, p),
      signal: this.signal,
      hostState: new Map(),
    });
    const now: PlanStep[] = rec.steps;
    const refusals = compareRole(plan, roleIndex, role.name, now, this.changedHosts);
    const bad = r.hosts.filter((h) => h.status === 'failed' || h.status === 'unreachable');
    for (const h of bad) {
      refusals.push(`host ${h.host}: the check pass ${h.status === 'failed' ? 'failed' : 'could not reach it'} (${h.error ?? ''})`);
    }
    if (refusals.length) {
      const shown = refusals
        .slice(0, 10)
        .map((x) => `  ${x}`)
        .join('\n');
      const more = refusals.length > 10 ? `\n  … and ${refusals.length - 10} more` : '';
      const msg = `apply refused, this run differs from the plan:\n${shown}${more}\nnothing of role ${role.name} was changed: plan again`;
      throw new InputError(`${f.apply}: ${msg}`);
    }
  }

  /** true once Ctrl-C was pressed: a playbook does nothing more (run.role() starts no step; finish() and exit) */
  get interrupted(): boolean {
    return this.signal.interrupted;
  }

  /** true when the host is still usable in this run (never after an interrupt) */
  healthy(host: string): boolean {
    const s = this.hostState.get(host);
    return !this.signal.interrupted && (!s || (!s.failed && !s.unreachable));
  }

  changedCount(): number {
    return this.results.filter((r) => r.status === 'changed').length;
  }

  /** Recap, JSON report, timeline, plan, retry file; returns the exit code. */
  async finish(): Promise<number> {
    // the warm-ups still running (their roles did not run, or failed): not left behind, unless interrupted
    if (!this.signal.interrupted) await Promise.allSettled(this.warmups);
    const code = exitCodeFor(this.hostState.values(), this.signal.interrupted);
    await this.releaseLock(code);
    const wall = performance.now() - this.started;
    this.events.emit({ kind: 'run.end', exitCode: code, wallMs: Math.round(wall), interrupted: this.signal.interrupted });
    this.console?.finish();
    const rec = this.record;
    const rows = recapRows(rec.results, rec.hostMs, rec.touched);
    const tty = !!process.stdout.isTTY;
    process.stdout.write(`${formatRecap(rows, rec.results, wall, tty && !process.env.NO_COLOR)}\n`);
    const bad = [...this.hostState.entries()].filter(([, s]) => s.failed || s.unreachable || s.interrupted).map(([h]) => h);
    let retryFile: string | undefined;
    if (bad.length) {
      retryFile = resolve(this.inventory.settings.retryDir ?? '.wpfarm/retry', `${this.config.name ?? 'run'}.retry`);
      const text = `# failed or unreachable hosts of the last run; rerun with --limit @${retryFile}\n${bad.join('\n')}\n`;
      writePrivateFile(retryFile, mask(text));
      process.stdout.write(`retry file: ${retryFile} (rerun with --limit @${retryFile})\n`);
    }
    const f = this.config.flags;
    if (f.planOut) this.writePlanFile(f.planOut, bad);
    const cpu = process.cpuUsage(this.cpuAtStart);
    const report = {
      formatVersion: EVENTS_FORMAT_VERSION,
      name: this.config.name,
      startedAt: this.startedAt.toISOString(),
      endedAt: new Date().toISOString(),
      check: this.config.flags.check,
      exitCode: code,
      wallMs: Math.round(wall),
      engineCpuMs: Math.round((cpu.user + cpu.system) / 1000),
      peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
      roundTrips: rec.roundTrips,
      hosts: rows,
      roles: this.roleRuns.map((r) => ({ role: r.role, aborted: r.aborted, hosts: r.hosts })),
      results: rec.results,
      roleTimes: rec.roles,
      roundTripsAt: rec.commands,
      lock: this.lock ? { hosts: this.lockHeld, roundTrips: this.lock.roundTrips, tookOver: this.lock.tookOver } : undefined,
      retryFile,
      runDir: this.runDir,
      log: join(this.runDir, 'events.ndjson'),
      plan: f.planOut ?? f.apply,
      data: Object.keys(rec.data).length ? rec.data : undefined,
    };
    // the report and the timeline always go in the run's directory; --json / --timeline write them there too
    // the log ends with run.end (a command cut by the close ends after it, unlogged, as before); the connections go
    // before the report is written: their buffers are free for it (the run's peak of memory)
    this.log.close();
    await this.pool.closeAll();
    // the report masked once for its files and the timeline: itself when no secret is in it (at 500 hosts a copy of
    // the results is tens of MB at the run's peak of memory), else one masked copy
    // Both are written in pieces as they are made, never whole strings (at 500 hosts 6.5 MB of JSON and 5.6 MB of
    // HTML, ~40 MB more at the peak), each piece masked as text too (writePrivateFiles).
    const masked = maskedView(report);
    writePrivateFiles(
      [join(this.runDir, 'report.json'), f.json].filter((x): x is string => !!x),
      jsonReportPieces(masked),
    );
    const timelines = [join(this.runDir, 'timeline.html'), f.timeline ?? (f.json ? timelinePathFor(f.json) : undefined)];
    // the report is masked before rendering too: the HTML escapes (&#39; &quot;...) would hide a secret from mask()
    writePrivateFiles(
      timelines.filter((x): x is string => !!x),
      renderTimelinePieces(masked),
    );
    if (this.sigint) {
      process.off('SIGINT', this.sigint);
      process.off('SIGTERM', this.sigint);
    }
    this.unguard?.();
    return code;
  }

  /** --plan-out: write the plan, unless the check run could not plan every host (then say why, write none). */
  private writePlanFile(file: string, bad: string[]): void {
    if (bad.length || this.signal.interrupted) {
      const why = this.signal.interrupted ? 'the run was interrupted' : `the check run failed on ${bad.join(', ')}`;
      process.stdout.write(`plan NOT written to ${file}: ${why} (a plan must cover every host)\n`);
      return;
    }
    const plan = buildPlan({ playbook: this.playbook, command: commandLine(), inputs: this.planInputs(), recorder: this.planRecorder });
    writePlan(file, plan);
    process.stdout.write(`${describePlan(plan, file)}\n`);
  }

  async exit(): Promise<never> {
    const code = await this.finish();
    process.exit(code);
  }
}

/** Role files loaded by loadRole (inputs of a plan: a role given by path may live outside roles/). */
const loadedRoleFiles = new Set<string>();

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
  loadedRoleFiles.add(file);
  if (!role || typeof role.steps !== 'function' || typeof role.name !== 'string') {
    throw new InputError(`${file}: the default export is not a role (needs name, hosts and steps())`);
  }
  return role;
}

export { mask };
