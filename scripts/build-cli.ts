// The fast CLI: every playbook and role prebuilt by esbuild into .wpfarm/cli/, so that a run does not pay for
// tsx (its loader thread, and every TypeScript file resolved and transformed at each start).
//
//   node --import tsx scripts/build-cli.ts            build (or say it is up to date); --force, --quiet
//   node .wpfarm/cli/wpfarm.mjs playbooks/run-role.ts traefik --limit mgr1
//       = node --import tsx playbooks/run-role.ts traefik --limit mgr1, started faster
//
// The launcher (.wpfarm/cli/wpfarm.mjs, generated) runs the bundle only while it is exactly what the sources
// give: every file the build read (our sources, node_modules files, tsconfig.json, this script) is checked
// by size and mtime, and by sha256 when the mtime moved; the node version must match. Anything else (a
// changed or new source, a playbook or role that is not in the build, no build at all) runs the sources
// through tsx in the same process, as `node --import tsx` does. Playbooks, roles/<name>/role.ts and
// bench/workload.ts are the entries; one build with shared chunks, so a role imported at run time shares
// lib/ (secrets registry, facts cache) with the playbook. ssh2 and its native helpers stay in node_modules.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { type BuildResult, build, version as esbuildVersion, type Plugin } from 'esbuild';

export const CLI_FORMAT = 1;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface CliManifest {
  format: number;
  node: string;
  esbuild: string;
  root: string;
  buildId: string;
  builtAt: string;
  /** source entry (relative to root) → built file (relative to the cli dir) */
  entries: Record<string, string>;
  /** [file relative to root, size, mtimeMs, sha256] of everything the build read */
  inputs: [string, number, number, string][];
}

/** The entries: every playbook, every roles/<name>/role.ts, the bench workload. */
export function cliEntries(root = ROOT): string[] {
  const out: string[] = [];
  const ts = (d: string) =>
    existsSync(join(root, d))
      ? readdirSync(join(root, d))
          .filter((f) => f.endsWith('.ts'))
          .sort()
      : [];
  for (const f of ts('playbooks')) out.push(`playbooks/${f}`);
  if (existsSync(join(root, 'roles'))) {
    for (const r of readdirSync(join(root, 'roles')).sort())
      if (existsSync(join(root, 'roles', r, 'role.ts'))) out.push(`roles/${r}/role.ts`);
  }
  if (existsSync(join(root, 'bench/workload.ts'))) out.push('bench/workload.ts');
  return out;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * Our own sources, rewritten for the bundle (the sources on disk are untouched):
 * - `import.meta.url` becomes the source file's URL (roles find files relative to themselves; playbooks
 *   compare it with process.argv[1], which the launcher sets to the source entry as tsx does);
 * - a dynamic `import(expr)` whose argument is not a literal (lib/play.ts loadRole) goes through the
 *   launcher's `__wpfarmImport(base, spec)`, which maps a built .ts entry to its bundle.
 */
function sourcePlugin(read: Map<string, [number, number, string]>): Plugin {
  return {
    name: 'wpfarm-source',
    setup(b) {
      b.onLoad({ filter: /\.ts$/ }, (args) => {
        if (args.path.includes('/node_modules/')) return undefined;
        // the manifest records the hash of exactly what was compiled (a file edited during the build is stale)
        const st = statSync(args.path);
        const buf = readFileSync(args.path);
        read.set(args.path, [st.size, st.mtimeMs, sha256(buf)]);
        const url = JSON.stringify(pathToFileURL(args.path).href);
        const text = buf
          .toString('utf8')
          .replace(/\bimport\.meta\.url\b/g, url)
          .replace(/(?<![\w$.])import\((?!\s*['"`])/g, `__wpfarmImport(${url}, `);
        return { contents: text, loader: 'ts', resolveDir: dirname(args.path) };
      });
    },
  };
}

/** Is the build in `cliDir` up to date with the sources? null when fresh, else why not. */
export function staleReason(cliDir = join(ROOT, '.wpfarm/cli'), root = ROOT): string | null {
  let m: CliManifest;
  try {
    m = JSON.parse(readFileSync(join(cliDir, 'current.json'), 'utf8')) as CliManifest;
  } catch {
    return 'no build';
  }
  if (m.format !== CLI_FORMAT) return 'older build format';
  if (m.node !== process.version) return `built for node ${m.node}`;
  if (m.root !== root) return `built for ${m.root}`;
  if (m.esbuild !== esbuildVersion) return `built with esbuild ${m.esbuild}`;
  const want = cliEntries(root);
  const missing = want.filter((e) => !m.entries[e]);
  if (missing.length) return `not in the build: ${missing.join(', ')}`;
  for (const [file, size, mtimeMs, sha] of m.inputs) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(join(root, file));
    } catch {
      return `${file} is gone`;
    }
    if (st.size === size && st.mtimeMs === mtimeMs) continue;
    if (st.size !== size || sha256(readFileSync(join(root, file))) !== sha) return `${file} changed`;
  }
  return null;
}

/** Build into cliDir/<buildId>/, write the launcher and current.json (atomically), keep the previous build. */
export async function buildCli(
  o: { root?: string; cliDir?: string; force?: boolean; quiet?: boolean } = {},
): Promise<{ built: boolean; manifest: CliManifest; ms: number }> {
  const t0 = performance.now();
  const root = o.root ?? ROOT;
  const cliDir = o.cliDir ?? join(root, '.wpfarm/cli');
  const say = (s: string) => o.quiet || process.stdout.write(`${s}\n`);
  const why = o.force ? 'forced' : staleReason(cliDir, root);
  if (!why && existsSync(join(cliDir, 'wpfarm.mjs'))) {
    const manifest = JSON.parse(readFileSync(join(cliDir, 'current.json'), 'utf8')) as CliManifest;
    // newer than the sources for make's mtime rule (a source touched with the same content)
    const now = new Date();
    utimesSync(join(cliDir, 'current.json'), now, now);
    say(`build-cli: up to date (${manifest.buildId}, ${manifest.inputs.length} inputs)`);
    return { built: false, manifest, ms: performance.now() - t0 };
  }
  const entries = cliEntries(root);
  const tmpId = `tmp-${process.pid}-${Date.now()}`;
  const outdir = join(cliDir, tmpId);
  mkdirSync(cliDir, { recursive: true });
  const read = new Map<string, [number, number, string]>();
  let result: BuildResult<{ metafile: true }>;
  try {
    result = await build({
      absWorkingDir: root,
      entryPoints: entries,
      outdir,
      outbase: root,
      outExtension: { '.js': '.mjs' },
      chunkNames: 'chunks/[name]-[hash]',
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: `node${process.versions.node.split('.')[0]}`,
      // native addons and what loads them stay in node_modules (require()d through the banner's require); esbuild
      // too (the images' exporter bundle: its module reads __filename to find its binary, undefined in ESM)
      external: ['ssh2', 'cpu-features', 'esbuild'],
      banner: {
        js: "import { createRequire as __wpfarmCreateRequire } from 'node:module'; const require = __wpfarmCreateRequire(import.meta.url);",
      },
      // no source maps: 29 of 38 MB per build, and read only under --enable-source-maps
      legalComments: 'none',
      metafile: true,
      logLevel: 'error',
      plugins: [sourcePlugin(read)],
    });
  } catch (e) {
    rmSync(outdir, { recursive: true, force: true });
    throw e;
  }
  // what the build read, plus what shapes it without being read as a module; a package in node_modules
  // counts by its package.json (its version) and npm's record of the tree, not file by file (~2,700
  // files: 30 ms of stat at every start), so a hand edit inside node_modules needs --force
  const files = new Set<string>();
  for (const f of Object.keys(result.metafile.inputs)) {
    if (f.startsWith('<')) continue;
    const pkg = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(f);
    files.add(pkg && existsSync(join(root, pkg[1]!, 'package.json')) ? `${pkg[1]}/package.json` : f);
  }
  for (const f of ['tsconfig.json', 'package.json', 'scripts/build-cli.ts', 'node_modules/.package-lock.json'])
    if (existsSync(join(root, f))) files.add(f);
  const inputs: CliManifest['inputs'] = [...files].sort().map((f) => {
    const compiled = read.get(resolve(root, f));
    if (compiled) return [f, ...compiled];
    const st = statSync(join(root, f));
    return [f, st.size, st.mtimeMs, sha256(readFileSync(join(root, f)))];
  });
  const buildId = sha256(Buffer.from(JSON.stringify([inputs.map((i) => [i[0], i[3]]), process.version, esbuildVersion]))).slice(0, 16);
  const finalDir = join(cliDir, buildId);
  try {
    if (existsSync(finalDir)) rmSync(outdir, { recursive: true, force: true });
    else renameSync(outdir, finalDir);
  } catch (e) {
    // a concurrent build of the same sources renamed its copy first: same content, use it
    rmSync(outdir, { recursive: true, force: true });
    if (!existsSync(join(finalDir, entries[0]!.replace(/\.ts$/, '.mjs')))) throw e;
  }
  const manifest: CliManifest = {
    format: CLI_FORMAT,
    node: process.version,
    esbuild: esbuildVersion,
    root,
    buildId,
    builtAt: new Date().toISOString(),
    entries: Object.fromEntries(entries.map((e) => [e, `${buildId}/${e.replace(/\.ts$/, '.mjs')}`])),
    inputs,
  };
  const atomic = (name: string, text: string) => {
    const tmp = join(cliDir, `.${name}.${process.pid}`);
    writeFileSync(tmp, text);
    renameSync(tmp, join(cliDir, name));
  };
  let previous: string | undefined;
  try {
    previous = (JSON.parse(readFileSync(join(cliDir, 'current.json'), 'utf8')) as CliManifest).buildId;
  } catch {
    /* first build */
  }
  atomic('wpfarm.mjs', LAUNCHER);
  atomic('current.json', `${JSON.stringify(manifest)}\n`);
  // keep the current and the previous build, and any from the last day: a run started on one may still
  // import a chunk (a role, a playbook's lazy import) hours later
  for (const d of readdirSync(cliDir)) {
    if (d === buildId || d === previous || d.startsWith('.') || d === 'wpfarm.mjs' || d === 'current.json') continue;
    if (!d.startsWith('tmp-') && Date.now() - statSync(join(cliDir, d)).mtimeMs < 24 * 3600_000) continue;
    if (d.startsWith('tmp-') && d !== tmpId && builderAlive(Number(d.split('-')[1]))) continue; // another build writing
    rmSync(join(cliDir, d), { recursive: true, force: true });
  }
  const ms = performance.now() - t0;
  say(
    `build-cli: built ${entries.length} entries from ${inputs.length} inputs into ${relative(root, finalDir)} (${why}) in ${Math.round(ms)} ms`,
  );
  return { built: true, manifest, ms };
}

/** signal 0: does the process that owns a temp build dir still exist? (scripts/lab has the same helper, unexported) */
const builderAlive = (pid: number): boolean => {
  try {
    return pid > 0 && process.kill(pid, 0);
  } catch {
    return false;
  }
};

/** The launcher, plain JavaScript (it must start without tsx). */
const LAUNCHER = `// Generated by scripts/build-cli.ts; do not edit.
// node .wpfarm/cli/wpfarm.mjs playbooks/<name>.ts [args] = node --import tsx playbooks/<name>.ts [args], faster:
// the prebuilt bundle runs only while every file it was built from is unchanged (size and mtime, else sha256),
// else the sources run through tsx in this process. WPFARM_CLI_DEBUG=1 says which path and why.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const debug = (s) => process.env.WPFARM_CLI_DEBUG && process.stderr.write('wpfarm-cli: ' + s + '\\n');
const [script, ...args] = process.argv.slice(2);
if (!script) {
  process.stderr.write('usage: node .wpfarm/cli/wpfarm.mjs playbooks/<name>.ts [options]\\n');
  process.exit(4);
}
const entry = resolve(script);
const isTs = (p) => /\\.[cm]?tsx?$/.test(p);

function check() {
  let m;
  try {
    m = JSON.parse(readFileSync(join(here, 'current.json'), 'utf8'));
  } catch {
    return 'no build';
  }
  if (m.format !== ${CLI_FORMAT}) return 'older build format';
  if (m.node !== process.version) return 'built for node ' + m.node;
  if (m.root !== root) return 'built for ' + m.root;
  const out = m.entries[relative(root, entry)];
  if (!out) return script + ' is not in the build';
  for (const [file, size, mtimeMs, sha] of m.inputs) {
    let st;
    try {
      st = statSync(join(root, file));
    } catch {
      return file + ' is gone';
    }
    if (st.size === size && st.mtimeMs === mtimeMs) continue;
    if (st.size !== size || createHash('sha256').update(readFileSync(join(root, file))).digest('hex') !== sha) return file + ' changed';
  }
  // a .ts file or a role name on the command line that the build does not hold (run-role's role argument)
  for (const a of args) {
    for (const c of [resolve(a), join(root, 'roles', a, 'role.ts')]) {
      if (isTs(c) && existsSync(c) && !m.entries[relative(root, c)]) return a + ' is not in the build';
    }
  }
  return { m, out };
}

/** The same command through tsx in a child (only when a run asks for a module the build lacks). */
function throughTsxChild(why) {
  debug(why + ': rerun through tsx');
  const child = spawn(process.execPath, ['--import', 'tsx', entry, ...args], { stdio: 'inherit' });
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.removeAllListeners(s);
    process.on(s, () => { if (s !== 'SIGINT') child.kill(s); });
  }
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (signal === 'SIGINT' ? 2 : 15)));
  return new Promise(() => {});
}

const r = check();
process.argv = [process.argv[0], entry, ...args];
if (typeof r === 'string') {
  debug(r + ': running the sources through tsx');
  await import('tsx');
  await import(pathToFileURL(entry).href);
} else {
  debug('bundle ' + r.out);
  globalThis.__wpfarmImport = (base, spec) => {
    const url = /^(\\.{1,2}\\/|\\/|file:)/.test(spec) ? new URL(spec, base) : null;
    if (url && url.protocol === 'file:' && isTs(url.pathname)) {
      const built = r.m.entries[relative(root, fileURLToPath(url))];
      if (built) return import(pathToFileURL(join(here, built)).href);
      // nothing has touched a host yet when a role is loaded (lib/play.ts loadRole)
      return throughTsxChild(fileURLToPath(url) + ' is not in the build');
    }
    return import(url ? url.href : spec);
  };
  await import(pathToFileURL(join(here, r.out)).href);
}
`;

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const bad = argv.filter((a) => !['--force', '--quiet', '--check'].includes(a));
  if (bad.length || argv.includes('-h') || argv.includes('--help')) {
    process.stderr.write(
      'usage: node --import tsx scripts/build-cli.ts [--force] [--quiet] [--check]\n  --check: exit 1 when the build is missing or stale (and say why)\n',
    );
    process.exit(bad.length ? 4 : 0);
  }
  if (argv.includes('--check')) {
    const why = staleReason();
    process.stdout.write(why ? `build-cli: stale: ${why}\n` : 'build-cli: up to date\n');
    process.exit(why ? 1 : 0);
  }
  await buildCli({ force: argv.includes('--force'), quiet: argv.includes('--quiet') });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
