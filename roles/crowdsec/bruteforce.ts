// Brute-force replay for the CrowdSec proof: access-log lines in the JSON format Traefik v3 writes
// (accessLog.format json, with the User-Agent and Cf-Connecting-Ip headers kept, see roles/traefik),
// and the lab check: replayed lines → the attacker in the nftables ban set within a minute, a normal
// visitor not banned, `cscli decisions delete` unbans.
import { quote } from 'zx';
import { BAN_SET_V4, TRAEFIK_ACCESS_LOG } from './config.ts';
import { setTimeout as sleep } from 'node:timers/promises';

export interface AccessLogRequest {
  /** address of the TCP peer (Cloudflare's edge when proxied) */
  clientIp: string;
  /** the visitor behind Cloudflare (Cf-Connecting-Ip), when proxied */
  cfConnectingIp?: string;
  method?: string;
  path: string;
  status?: number;
  host?: string;
  time: Date;
  router?: string;
  userAgent?: string;
}

/** One access-log line as Traefik v3 writes it (fields of its JSON access log). */
export function traefikAccessLine(r: AccessLogRequest): string {
  const port = 40000 + (r.time.getTime() % 20000);
  const router = r.router ?? 'site-example-admin@swarm';
  const service = router.replace(/-admin@/, '@');
  const line: Record<string, unknown> = {
    ClientAddr: `${r.clientIp}:${port}`,
    ClientHost: r.cfConnectingIp ?? r.clientIp,
    ClientPort: String(port),
    ClientUsername: '-',
    DownstreamContentSize: 4861,
    DownstreamStatus: r.status ?? 200,
    Duration: 48213000,
    OriginContentSize: 4861,
    OriginDuration: 47990000,
    OriginStatus: r.status ?? 200,
    Overhead: 223000,
    RequestAddr: r.host ?? 'example.com',
    RequestContentSize: r.method === 'POST' ? 74 : 0,
    RequestCount: 1,
    RequestHost: r.host ?? 'example.com',
    RequestMethod: r.method ?? 'GET',
    RequestPath: r.path,
    RequestPort: '-',
    RequestProtocol: 'HTTP/2.0',
    RequestScheme: 'https',
    RetryAttempts: 0,
    RouterName: router,
    ServiceAddr: '10.0.1.15:8080',
    ServiceName: service,
    ServiceURL: 'http://10.0.1.15:8080',
    StartUTC: r.time.toISOString(),
    entryPointName: 'websecure',
    level: 'info',
    msg: '',
    'request_User-Agent': r.userAgent ?? 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
    time: r.time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
  if (r.cfConnectingIp) line['request_Cf-Connecting-Ip'] = r.cfConnectingIp;
  return JSON.stringify(line);
}

export interface ReplayOptions {
  attacker: string;
  visitor: string;
  /** when set, both come through this Cloudflare edge address */
  viaCloudflare?: string;
  start: Date;
  /** failed logins of the attacker (WordPress answers 200 to a failed login) */
  attempts?: number;
  host?: string;
}

/**
 * Lines of a WordPress login brute force (POST /wp-login.php every second) interleaved with a normal
 * visitor who reads pages and logs in once.
 */
export function bruteForceReplay(o: ReplayOptions): string[] {
  const attempts = o.attempts ?? 12;
  const at = (s: number) => new Date(o.start.getTime() + s * 1000);
  const peer = (ip: string) => (o.viaCloudflare ? { clientIp: o.viaCloudflare, cfConnectingIp: ip } : { clientIp: ip });
  const lines: string[] = [];
  for (let i = 0; i < attempts; i++) {
    lines.push(
      traefikAccessLine({
        ...peer(o.attacker),
        method: 'POST',
        path: '/wp-login.php',
        status: 200,
        time: at(i),
        host: o.host,
        userAgent: 'python-requests/2.31',
      }),
    );
    if (i % 3 === 0) {
      const paths = ['/', '/2024/05/hello-world/', '/wp-content/themes/twentytwentyfour/style.css', '/about/'];
      lines.push(
        traefikAccessLine({
          ...peer(o.visitor),
          path: paths[(i / 3) % paths.length]!,
          time: at(i),
          host: o.host,
          router: 'site-example@swarm',
        }),
      );
    }
  }
  // the visitor logs in once, successfully (302 to wp-admin)
  lines.push(
    traefikAccessLine({ ...peer(o.visitor), method: 'POST', path: '/wp-login.php', status: 302, time: at(attempts), host: o.host }),
  );
  return lines;
}

/** Something that runs a shell command on a host (Connection.exec, StepContext.exec). */
export type Exec = (
  command: string,
  opts?: { become?: boolean; nothrow?: boolean },
) => Promise<{ stdout: string; stderr: string; code: number }>;

export interface BanProofResult {
  bannedAfterMs: number;
  visitorBanned: boolean;
  unbannedAfterMs: number;
}

/** Addresses in the bouncer's nftables set, from `nft -j list set`. */
export function parseNftSet(json: string): string[] {
  const doc = JSON.parse(json) as { nftables?: Array<Record<string, { elem?: unknown[] }>> };
  const out: string[] = [];
  for (const item of doc.nftables ?? []) {
    for (const e of item.set?.elem ?? []) {
      // plain address, {elem: {val, timeout, expires}}, or {prefix: {addr, len}}
      if (typeof e === 'string') out.push(e);
      else if (e && typeof e === 'object') {
        const el = (e as { elem?: { val?: unknown } }).elem;
        const pre = (e as { prefix?: { addr: string; len: number } }).prefix;
        if (el && typeof el.val === 'string') out.push(el.val);
        else if (pre) out.push(`${pre.addr}/${pre.len}`);
      }
    }
  }
  return out;
}

/** Shell command appending lines to a log file (each argument quoted by zx; JSON survives intact). */
export function appendLinesCommand(lines: string[], log: string): string {
  return `printf '%s\\n' ${lines.map((l) => quote(l)).join(' ')} >> ${quote(log)}`;
}

/**
 * The lab proof. `edge` runs Traefik's access log, the agent and the firewall bouncer; `lapi` runs the
 * local API (may be the same host). Throws with what was seen when a step misses its deadline.
 */
export async function proveBan(
  edge: Exec,
  lapi: Exec,
  o: { attacker: string; visitor: string; accessLog?: string; deadlineMs?: number; viaCloudflare?: string },
): Promise<BanProofResult> {
  const log = o.accessLog ?? TRAEFIK_ACCESS_LOG;
  const deadline = o.deadlineMs ?? 60_000;
  const lines = bruteForceReplay({ attacker: o.attacker, visitor: o.visitor, start: new Date(), viaCloudflare: o.viaCloudflare });
  const listSet = `nft -j list set ${BAN_SET_V4.family} ${BAN_SET_V4.table} ${BAN_SET_V4.set}`;
  const banned = async (): Promise<string[]> => {
    const r = await edge(listSet, { become: true, nothrow: true });
    return r.code === 0 ? parseNftSet(r.stdout) : [];
  };
  await edge(appendLinesCommand(lines, log), { become: true });
  const t0 = Date.now();
  let seen: string[] = [];
  while (!(seen = await banned()).includes(o.attacker)) {
    if (Date.now() - t0 > deadline)
      throw new Error(
        `${o.attacker} not in ${BAN_SET_V4.table}/${BAN_SET_V4.set} after ${deadline} ms (set: ${seen.join(' ') || 'empty'})`,
      );
    await sleep(1000);
  }
  const bannedAfterMs = Date.now() - t0;
  // The replayed lines can overflow more than one scenario (or one bucket twice): wait until the attacker's
  // alerts stop coming (the count unchanged for 10 s) so that a late alert does not ban it again after the
  // delete below.
  const alertCount = async (): Promise<number> => {
    const r = await lapi(`cscli alerts list --ip ${quote(o.attacker)} -o json`, { become: true, nothrow: true });
    try {
      const j = JSON.parse(r.stdout || '[]') as unknown;
      return Array.isArray(j) ? j.length : 0;
    } catch {
      return 0;
    }
  };
  for (let last = -1, stableSince = Date.now(); Date.now() - t0 < deadline; await sleep(2000)) {
    const n = await alertCount();
    if (n !== last) [last, stableSince] = [n, Date.now()];
    else if (Date.now() - stableSince >= 10_000) break;
  }
  const decisions = await lapi(`cscli decisions list -o json`, { become: true });
  const visitorBanned = seen.includes(o.visitor) || decisions.stdout.includes(`"${o.visitor}"`);
  await lapi(`cscli decisions delete --ip ${quote(o.attacker)}`, { become: true });
  const t1 = Date.now();
  while ((seen = await banned()).includes(o.attacker)) {
    if (Date.now() - t1 > deadline) throw new Error(`${o.attacker} still banned ${deadline} ms after cscli decisions delete`);
    await sleep(1000);
  }
  return { bannedAfterMs, visitorBanned, unbannedAfterMs: Date.now() - t1 };
}
