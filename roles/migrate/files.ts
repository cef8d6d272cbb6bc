// wp-content from the legacy host to the farm with rsync, host to host THROUGH the controller's two SSH
// connections: neither host needs a key for the other, nothing is installed on the source, and a rerun (the
// cutover's final delta) sends only what changed.
//
// How: on the target, rsync runs as the client with a remote-shell program (`-e T/rsh`) that hands its stdio to
// two FIFOs; the controller starts `rsync --server --sender` on the source (the command rsync asked its remote
// shell to run, read back from T/cmd) and pipes the FIFOs to it over the source connection. File names travel in
// the protocol (--secluded-args), never through a shell. Checksums of both sides compare the result (verify).
import { quote } from '../../lib/shell.ts';
import type { Connection } from '../../lib/types.ts';

/** the connection's streaming exec (every SSH connection has one; test doubles may not) */
export function execStream(conn: Connection): NonNullable<Connection['execStream']> {
  if (!conn.execStream) throw new Error(`${conn.host.name}: the connection cannot stream a command`);
  return conn.execStream.bind(conn);
}

export interface RsyncStats {
  files: number;
  bytes: number;
  ms: number;
}

/** excluded from the copy: caches a plugin rebuilds, and WordPress's own update scratch space */
export const CONTENT_EXCLUDES = ['/cache/', '/upgrade/', '/wflogs/'];

// Like ssh, it must end when the server's output ends (rsync waits for its remote shell before it exits, and keeps
// the pipe to it open until then). A background job's stdin is /dev/null unless redirected: hence `<&3`.
const RSH = (t: string) => `#!/bin/sh
# the remote-shell program rsync starts: "rsh HOST COMMAND...": the command goes to the controller, stdio to FIFOs
shift
printf '%s\\n' "$*" > ${t}/cmd.tmp && mv ${t}/cmd.tmp ${t}/cmd
exec 3<&0
cat <&3 > ${t}/to_src &
w=$!
cat ${t}/from_src
kill $w 2>/dev/null
wait $w 2>/dev/null
exit 0
`;

export async function rsyncContent(
  src: Connection,
  srcDir: string,
  dst: Connection,
  dstDir: string,
  opts: { excludes?: readonly string[]; timeoutMs?: number; owner?: string } = {},
): Promise<RsyncStats> {
  const t0 = performance.now();
  const t = (await dst.exec('mktemp -d /tmp/wpfarm-rsync.XXXXXX')).stdout.trim();
  if (!/^\/tmp\/wpfarm-rsync\.[A-Za-z0-9]+$/.test(t)) throw new Error(`mktemp gave '${t}'`);
  try {
    await dst.put(`${t}/rsh`, RSH(t), { mode: 0o700 });
    await dst.exec(`mkfifo -m 0600 ${t}/to_src ${t}/from_src && install -d -m 0755 ${quote(dstDir)}`);
    const excludes = (opts.excludes ?? CONTENT_EXCLUDES).map((e) => `--exclude=${quote(e)}`).join(' ');
    // the farm's owner of site files (the source's owners mean nothing there: another uid, or a name it lacks)
    const chown = opts.owner ? `--chown=${quote(`${opts.owner}:${opts.owner}`)} ` : '';
    // -a: owners, modes, times, symlinks; links pointing out of wp-content (Debian's theme links) are copied as files
    const client = execStream(dst)(
      `rsync -a --secluded-args --delete --copy-unsafe-links --stats ${chown}${excludes} -e ${t}/rsh ` +
        `src:${quote(`${srcDir}/`)} ${quote(`${dstDir}/`)}`,
    );
    const out: Buffer[] = [];
    client.stdout.on('data', (d: Buffer) => out.push(d));
    let cmd = '';
    const deadline = Date.now() + 15_000;
    while (!cmd) {
      const r = await dst.exec(`cat ${t}/cmd 2>/dev/null || true`);
      cmd = r.stdout.trim();
      if (cmd) break;
      if (Date.now() > deadline) {
        client.kill();
        const d = await client.done;
        throw new Error(`rsync on ${dst.host.name} did not start its transfer: ${d.stderr.trim() || `exit ${d.code}`}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    // what rsync itself asked its remote shell to run: `rsync --server --sender <flags> .` (names are in the protocol)
    if (!/^rsync --server --sender( [-A-Za-z0-9.=,]+)+( \.)?$/.test(cmd)) {
      client.kill();
      throw new Error(`unexpected rsync server command '${cmd}'`);
    }
    const toSrc = execStream(dst)(`cat ${t}/to_src`);
    const server = execStream(src)(cmd, { stdin: [toSrc.stdout] });
    const fromSrc = execStream(dst)(`cat > ${t}/from_src`, { stdin: [server.stdout] });
    const [c, s] = await Promise.all([client.done, server.done, toSrc.done, fromSrc.done]);
    if (c.code !== 0 || s.code !== 0) {
      throw new Error(
        `rsync ${src.host.name}:${srcDir} → ${dst.host.name}:${dstDir} failed (exit ${c.code}/${s.code}): ` +
          (c.stderr || s.stderr).trim().split('\n').slice(-3).join(' '),
      );
    }
    const text = Buffer.concat(out).toString('utf8');
    const num = (re: RegExp) => Number((re.exec(text)?.[1] ?? '0').replaceAll(',', ''));
    return {
      files: num(/Number of regular files transferred: ([\d,]+)/),
      bytes: num(/Total transferred file size: ([\d,]+)/),
      ms: Math.round(performance.now() - t0),
    };
  } finally {
    await dst.exec(`rm -rf -- ${quote(t)}`, { nothrow: true });
  }
}

/** sha256 of every regular file under `dir` (relative path → hash); a missing directory is empty */
export async function checksums(conn: Connection, dir: string): Promise<Map<string, string>> {
  const r = await conn.exec(
    `cd -- ${quote(dir)} 2>/dev/null || exit 0; find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum --zero`,
  );
  const out = new Map<string, string>();
  for (const rec of r.stdout.split('\0')) {
    const m = /^\\?([0-9a-f]{64}) [ *](.*)$/s.exec(rec.replace(/^\n/, ''));
    if (m) out.set(m[2]!.replace(/^\.\//, ''), m[1]!);
  }
  return out;
}

/** the differences between two checksum maps: missing, extra, changed (first `max` of each kind) */
export function compareChecksums(a: Map<string, string>, b: Map<string, string>, max = 5): string[] {
  const missing = [...a.keys()].filter((k) => !b.has(k));
  const extra = [...b.keys()].filter((k) => !a.has(k));
  const changed = [...a.keys()].filter((k) => b.has(k) && b.get(k) !== a.get(k));
  const part = (what: string, l: string[]) =>
    l.length ? [`${l.length} ${what}: ${l.slice(0, max).join(', ')}${l.length > max ? ', ...' : ''}`] : [];
  return [...part('missing on the target', missing), ...part('only on the target', extra), ...part('different', changed)];
}
