// A run: inventory + CLI flags + one connection pool, then roles one after another, then the recap, the
// JSON report, the retry file and the exit code. Playbooks are short scripts over this:
//
//   const run = await Run.fromArgv(process.argv.slice(2), { usage: '...' });
//   await run.role(common);
//   await run.role(swarmManager);
//   await run.exit();
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { COMMON_HELP, type CommonFlags, fail, parseCli } from './cli.ts';
import { EXIT, InputError } from './errors.ts';
import { type Inventory, loadInventory, parseExtraVars } from './inventory.ts';
import { ConsoleReporter, type Reporter, formatRecap, recapRows, writeJsonReport } from './output.ts';
import { selectHosts } from './patterns.ts';
import { type HostState, type RoleRunResult, exitCodeFor, runRole } from './runner.ts';
import { mask } from './secrets.ts';
import { ConnectionPool, DEFAULT_CONNECT_TIMEOUT_MS } from './transport.ts';
import type { HostSpec, Role, StepResult } from './types.ts';

export interface RunConfig {
  flags: CommonFlags;
  /** the playbook's own flags, parsed */
  extra?: Record<string, unknown>;
  /** positional arguments */
  positionals?: string[];
  reporter?: Reporter;
  /** name used for the retry file and the report */
  name?: string;
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

  constructor(readonly config: RunConfig) {
    const f = config.flags;
    this.inventory = loadInventory(f.inventory, { extraVars: parseExtraVars(f.extraVars) });
    const kh = this.inventory.settings.knownHosts;
    this.pool = new ConnectionPool({
      knownHosts: kh ? (isAbsolute(kh) ? kh : resolve(kh)) : resolve('.wpfarm/known_hosts'),
      acceptNew: f.acceptNewHostKeys || this.inventory.settings.acceptNewHostKeys,
      connectTimeoutMs: (f.connectTimeout ?? this.inventory.settings.connectTimeoutS ?? DEFAULT_CONNECT_TIMEOUT_MS / 1000) * 1000,
      onCommand: f.verbose > 2 ? (h, c) => this.reporter.log(h, `$ ${c.split('\n')[0]}`) : undefined,
    });
    this.reporter = config.reporter ?? new ConsoleReporter({ verbose: f.verbose, diff: f.diff });
    // check the limit pattern early: an unknown pattern is bad input before anything runs
    if (f.limit) selectHosts(this.inventory, 'all', f.limit);
  }

  /** Parse argv, print --help, load the inventory; bad input exits 4 with a clear message. */
  static fromArgv(argv: string[], o: { usage: string; name?: string; options?: Parameters<typeof parseCli>[1] }): Run {
    try {
      const { flags, extra, positionals } = parseCli(argv, o.options ?? {});
      if (flags.help) {
        process.stdout.write(`${o.usage}\n\n${COMMON_HELP}\n`);
        process.exit(0);
      }
      return new Run({ flags, name: o.name, extra, positionals }).installSignals();
    } catch (e) {
      fail(e);
    }
  }

  installSignals(): this {
    this.sigint = () => {
      if (this.signal.interrupted) process.exit(EXIT.INTERRUPTED);
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

  /** Run a role on its hosts (or `pattern`). Returns the role's result; never throws for host failures. */
  async role(role: Role, pattern?: string): Promise<RoleRunResult> {
    const hosts = this.hostsFor(pattern ?? role.hosts);
    const f = this.config.flags;
    const r = await runRole(role, hosts, {
      pool: this.pool,
      reporter: this.reporter,
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
      mkdirSync(dirname(retryFile), { recursive: true });
      writeFileSync(retryFile, `# failed or unreachable hosts of the last run; rerun with --limit @${retryFile}\n${bad.join('\n')}\n`);
      process.stdout.write(`retry file: ${retryFile} (rerun with --limit @${retryFile})\n`);
    }
    const code = exitCodeFor(this.hostState.values(), this.signal.interrupted);
    if (this.config.flags.json) {
      writeJsonReport(this.config.flags.json, {
        name: this.config.name,
        check: this.config.flags.check,
        exitCode: code,
        wallMs: Math.round(wall),
        engineCpuMs: Math.round((() => { const c = process.cpuUsage(this.cpuAtStart); return (c.user + c.system) / 1000; })()),
        peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
        roundTrips: await this.pool.totalRoundTrips(),
        hosts: rows,
        roles: this.roleRuns.map((r) => ({ role: r.role, aborted: r.aborted, hosts: r.hosts })),
        results: this.results,
        retryFile,
      });
    }
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
