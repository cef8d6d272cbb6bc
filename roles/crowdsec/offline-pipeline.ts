// Runs Debian's real crowdsec 1.4.6 (binaries and offline hub taken from the .deb with `apt-get
// download` + `dpkg-deb -x`, nothing installed system-wide, no firewall touched) in a temp directory
// with wpfarm's generated configuration: the local API on a loopback port, the agent in replay mode
// (`-dsn file://... -no-api`). Used by the contract tests to prove that the Traefik access-log lines
// wpfarm writes are parsed by crowdsecurity/traefik-logs and end in a ban decision, and that cscli
// deletes it. The nftables part of the proof (the firewall bouncer) belongs to the lab.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, copyFileSync, writeFileSync, cpSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { run } from '../monitoring/tools.ts';
import { resolveCollections, enableScript, type HubIndex, type HubLink } from './hub.ts';
import { crowdsecConfig, profiles, acquisitionYaml, type AcquisitionEntry, type CrowdsecPaths } from './config.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export async function ensureCrowdsecPackage(cacheDir: string): Promise<string> {
  const root = path.join(cacheDir, 'root');
  if (existsSync(path.join(root, 'usr/bin/crowdsec')) && existsSync(path.join(root, 'usr/bin/cscli'))) return root;
  mkdirSync(cacheDir, { recursive: true });
  let r = await run('apt-get', ['download', 'crowdsec'], { timeoutMs: 600_000, cwd: cacheDir });
  if (r.code !== 0) {
    await run('apt-get', ['-o', 'DPkg::Lock::Timeout=600', '-q', 'update'], { timeoutMs: 600_000 });
    r = await run('apt-get', ['download', 'crowdsec'], { timeoutMs: 600_000, cwd: cacheDir });
  }
  if (r.code !== 0) throw new Error(`apt-get download crowdsec failed: ${r.stderr.slice(-1000)}`);
  const deb = readdirSync(cacheDir).find((f) => /^crowdsec_.*\.deb$/.test(f));
  if (!deb) throw new Error('no crowdsec .deb after apt-get download');
  const x = await run('dpkg-deb', ['-x', path.join(cacheDir, deb), root]);
  if (x.code !== 0) throw new Error(`dpkg-deb -x failed: ${x.stderr}`);
  return root;
}

/** The firewall bouncer's packaged default configuration (extracted from its .deb, not installed). */
export async function packagedBouncerConfig(cacheDir: string): Promise<string> {
  const root = path.join(cacheDir, 'root-bouncer');
  const file = path.join(root, 'etc/crowdsec/bouncers/crowdsec-firewall-bouncer.yaml');
  if (existsSync(file)) return readFileSync(file, 'utf8');
  mkdirSync(cacheDir, { recursive: true });
  const r = await run('apt-get', ['download', 'crowdsec-firewall-bouncer'], { timeoutMs: 600_000, cwd: cacheDir });
  if (r.code !== 0) throw new Error(`apt-get download crowdsec-firewall-bouncer failed: ${r.stderr.slice(-1000)}`);
  const deb = readdirSync(cacheDir).find((f) => /^crowdsec-firewall-bouncer_.*\.deb$/.test(f));
  if (!deb) throw new Error('no crowdsec-firewall-bouncer .deb after apt-get download');
  const x = await run('dpkg-deb', ['-x', path.join(cacheDir, deb), root]);
  if (x.code !== 0) throw new Error(`dpkg-deb -x failed: ${x.stderr}`);
  return readFileSync(file, 'utf8');
}

export interface OfflineSetup {
  /** extra s02-enrich parsers: file name → YAML */
  enrichers?: Record<string, string>;
  collections: readonly string[];
  acquisition: AcquisitionEntry[];
  lapiPort: number;
}

export class OfflineCrowdsec {
  readonly paths: CrowdsecPaths;
  readonly config: string;
  private lapi?: ChildProcess;
  private lapiLog = '';
  links: HubLink[] = [];

  constructor(
    readonly pkgRoot: string,
    readonly work: string,
  ) {
    this.paths = {
      configDir: path.join(work, 'etc'),
      dataDir: path.join(work, 'data'),
      hubDir: path.join(work, 'hub'),
      pluginDir: path.join(pkgRoot, 'usr/lib/crowdsec/plugins'),
      logDir: path.join(work, 'log'),
    };
    this.config = path.join(this.paths.configDir, 'config.yaml');
  }

  private env(): NodeJS.ProcessEnv {
    // cscli explain and friends exec `crowdsec` from PATH
    return { ...process.env, PATH: `${path.join(this.pkgRoot, 'usr/bin')}:${process.env.PATH ?? ''}` };
  }

  cscli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return run(path.join(this.pkgRoot, 'usr/bin/cscli'), ['-c', this.config, ...args], { env: this.env(), timeoutMs: 120_000 });
  }

  /** cscli in a network namespace of its own (no route anywhere): hub commands must work offline. */
  cscliOffline(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return run('unshare', ['--net', '--', path.join(this.pkgRoot, 'usr/bin/cscli'), '-c', this.config, ...args], {
      env: this.env(),
      timeoutMs: 120_000,
    });
  }

  crowdsec(args: string[], timeoutMs = 120_000): Promise<{ code: number; stdout: string; stderr: string }> {
    return run(path.join(this.pkgRoot, 'usr/bin/crowdsec'), ['-c', this.config, ...args], { env: this.env(), timeoutMs });
  }

  /** Lay out the directories like Debian's postinst does, with wpfarm's generated files. */
  async setup(o: OfflineSetup): Promise<void> {
    const p = this.paths;
    for (const d of [
      p.configDir,
      p.dataDir,
      p.logDir,
      path.join(p.configDir, 'parsers/s02-enrich'),
      path.join(p.configDir, 'notifications'),
    ])
      mkdirSync(d, { recursive: true });
    // the offline hub (Debian: /var/lib/crowdsec/hub -> /usr/share/crowdsec/hub) and data files
    cpSync(path.join(this.pkgRoot, 'usr/share/crowdsec/hub'), p.hubDir, { recursive: true });
    const data = path.join(this.pkgRoot, 'usr/share/crowdsec/data');
    for (const f of readdirSync(data)) copyFileSync(path.join(data, f), path.join(p.dataDir, f));
    cpSync(path.join(this.pkgRoot, 'etc/crowdsec/patterns'), path.join(p.configDir, 'patterns'), { recursive: true });
    copyFileSync(path.join(this.pkgRoot, 'etc/crowdsec/simulation.yaml'), path.join(p.configDir, 'simulation.yaml'));
    const cfg = crowdsecConfig(
      { lapiHost: '127.0.0.1', privateCidrs: [], isLapi: true, onlineApi: false, listenAddress: '127.0.0.1' },
      p,
      o.lapiPort,
    );
    writeFileSync(this.config, YAML.stringify(cfg));
    writeFileSync(path.join(p.configDir, 'profiles.yaml'), profiles([]));
    writeFileSync(path.join(p.configDir, 'acquis.yaml'), acquisitionYaml(o.acquisition));
    for (const [name, text] of Object.entries(o.enrichers ?? {})) writeFileSync(path.join(p.configDir, 'parsers/s02-enrich', name), text);
    // enable the collections the way the role does on the nodes (symlinks, no download)
    const index = JSON.parse(readFileSync(path.join(p.hubDir, '.index.json'), 'utf8')) as HubIndex;
    this.links = resolveCollections(index, o.collections);
    const sh = await run('bash', ['-c', enableScript(this.links, p.hubDir, p.configDir)]);
    if (sh.code !== 0) throw new Error(`enabling hub items: ${sh.stderr}`);
    const m = await this.cscli([
      'machines',
      'add',
      'wpfarm-test',
      '--auto',
      '--force',
      '-f',
      path.join(p.configDir, 'local_api_credentials.yaml'),
    ]);
    if (m.code !== 0) throw new Error(`cscli machines add: ${m.stdout}${m.stderr}`);
  }

  /** `crowdsec -t`: the configuration (with every enabled item) loads. */
  test(): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.crowdsec(['-t']);
  }

  /** Start the local API only (no acquisition), on the loopback port of the configuration. */
  async startLapi(port: number): Promise<void> {
    this.lapi = spawn(path.join(this.pkgRoot, 'usr/bin/crowdsec'), ['-c', this.config, '-no-cs'], {
      env: this.env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (b: Buffer) => {
      this.lapiLog += b.toString();
    };
    this.lapi.stdout!.on('data', collect);
    this.lapi.stderr!.on('data', collect);
    const t0 = Date.now();
    for (;;) {
      const ok = await fetch(`http://127.0.0.1:${port}/health`).then(
        (r) => r.status < 500,
        () => false,
      );
      if (ok) return;
      if (this.lapi.exitCode !== null || Date.now() - t0 > 30_000) throw new Error(`LAPI did not start: ${this.lapiLog.slice(-2000)}`);
      await sleep(250);
    }
  }

  /** Replay a log file through the agent (forensic mode): alerts and decisions go to the LAPI. */
  replay(file: string, type: string): Promise<{ code: number; stdout: string; stderr: string }> {
    return this.crowdsec(['-dsn', `file://${file}`, '-type', type, '-no-api']);
  }

  async decisions(): Promise<Array<{ value: string; type: string; scenario: string; origin: string }>> {
    const r = await this.cscli(['decisions', 'list', '-o', 'json']);
    if (r.code !== 0) throw new Error(`cscli decisions list: ${r.stderr}`);
    const alerts = (JSON.parse(r.stdout || 'null') ?? []) as Array<{
      decisions?: Array<{ value: string; type: string; scenario: string; origin: string }>;
    }>;
    return alerts.flatMap((a) => a.decisions ?? []);
  }

  async stop(): Promise<void> {
    const p = this.lapi;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
