// Controller-side helpers for checking generated monitoring configuration with the real tools
// (promtool, amtool from Debian's prometheus and prometheus-alertmanager packages).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: opts.timeoutMs ?? 120_000, env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number'
            ? (err as unknown as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

function installed(pkg: string): Promise<boolean> {
  return run('dpkg-query', ['-W', '-f=${Status}', pkg]).then((r) => r.code === 0 && r.stdout.includes('install ok installed'));
}

/**
 * Install Debian packages on the controller if missing (idempotent; the test harness calls it so CI on
 * a fresh machine works). Services are not started: the packages' units need systemd, which is not PID 1
 * here, and the tests start the binaries themselves on loopback.
 */
export async function ensureDebPackages(pkgs: string[]): Promise<void> {
  const missing: string[] = [];
  for (const p of pkgs) if (!(await installed(p))) missing.push(p);
  if (!missing.length) return;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = ['-o', 'DPkg::Lock::Timeout=600', '-y', '-q'];
  let r = await run('apt-get', [...apt, 'install', '--no-install-recommends', ...missing], { timeoutMs: 900_000, env });
  if (r.code !== 0) {
    await run('apt-get', [...apt, 'update'], { timeoutMs: 600_000, env });
    r = await run('apt-get', [...apt, 'install', '--no-install-recommends', ...missing], { timeoutMs: 900_000, env });
  }
  if (r.code !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed:\n${r.stderr.slice(-2000)}`);
}

export const PROMETHEUS_BIN = '/usr/bin/prometheus';
export const PROMTOOL = '/usr/bin/promtool';
export const AMTOOL = '/usr/bin/amtool';
export const ALERTMANAGER_BIN = '/usr/bin/prometheus-alertmanager';
export const NODE_EXPORTER_BIN = '/usr/bin/prometheus-node-exporter';

export async function ensureMonitoringTools(withNodeExporter = false): Promise<void> {
  const pkgs = ['prometheus', 'prometheus-alertmanager', ...(withNodeExporter ? ['prometheus-node-exporter'] : [])];
  if ([PROMTOOL, AMTOOL, ...(withNodeExporter ? [NODE_EXPORTER_BIN] : [])].every((p) => existsSync(p))) return;
  await ensureDebPackages(pkgs);
}
