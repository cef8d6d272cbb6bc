// A reverse SSH tunnel (`ssh -R 127.0.0.1:0:127.0.0.1:PORT` in OpenSSH terms): a port on the host's
// loopback that leads to a TCP port on the controller's loopback, through an SSH connection.
//
// Why: restic runs ON the files host and talks S3 itself. In production the host reaches Spaces directly.
// When the object store is a gateway on the controller's own loopback (the lab: a Ceph RGW started on this
// machine; or an operator's local gateway), the host cannot reach it; instead of opening any port, the
// host gets a loopback port tunnelled back to the controller for the duration of the run.
//
// A separate SSH connection (same host key checks as the engine's transport: known_hosts, no TOFU unless
// asked) because the engine's Connection offers only forward (direct) tunnels, not remote forwarding.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { Client } from 'ssh2';
import { verifyHostKey } from '../../lib/transport.ts';
import type { HostSpec } from '../../lib/types.ts';

export interface ReverseTunnel {
  /** port bound on the host's 127.0.0.1 */
  remotePort: number;
  /** connections carried so far */
  readonly connections: number;
  close(): Promise<void>;
}

/** Is this endpoint's host a loopback address of the controller (127.0.0.0/8, ::1, localhost)? */
export function isLoopbackEndpoint(endpoint: string): boolean {
  let h: string;
  try {
    h = new URL(endpoint).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return false;
  }
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The endpoint as the host sees it through the tunnel: same scheme and path, host 127.0.0.1:remotePort. */
export function tunnelledEndpoint(endpoint: string, remotePort: number): string {
  const u = new URL(endpoint);
  u.hostname = '127.0.0.1';
  u.port = String(remotePort);
  return u.toString().replace(/\/$/, '');
}

/**
 * Open the tunnel: connections to 127.0.0.1:<remotePort> on `host` reach `target` on this machine.
 * The remote port is chosen by the host's sshd (port 0), so parallel runs never collide.
 */
export async function openReverseTunnel(
  host: HostSpec,
  target: { host: string; port: number },
  o: { knownHosts: string; acceptNew?: boolean; timeoutMs?: number },
): Promise<ReverseTunnel> {
  const client = new Client();
  let refusal: string | null = null;
  let count = 0;
  const sockets = new Set<net.Socket>();
  client.on('tcp connection', (_info, accept) => {
    const ch = accept();
    const s = net.connect({ host: target.host, port: target.port, noDelay: true });
    sockets.add(s);
    count++;
    const end = () => {
      sockets.delete(s);
      s.destroy();
      ch.close();
    };
    s.on('error', end);
    ch.on('error', end);
    s.on('close', end);
    ch.on('close', end);
    ch.pipe(s).pipe(ch);
  });
  const privateKey = host.key ? readFileSync(host.key, 'utf8') : undefined;
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve());
    client.once('error', (e) => reject(new Error(`${host.name}: tunnel to the object store: ${refusal ?? e.message}`)));
    client.connect({
      host: host.address,
      port: host.port,
      username: host.user,
      privateKey,
      agent: privateKey ? undefined : process.env.SSH_AUTH_SOCK,
      readyTimeout: o.timeoutMs ?? 15_000,
      keepaliveInterval: 5_000,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer) => {
        const v = verifyHostKey(o.knownHosts, host, key, !!o.acceptNew);
        if (!v.ok) refusal = v.reason;
        return v.ok;
      },
    });
  });
  const remotePort = await new Promise<number>((resolve, reject) => {
    client.forwardIn('127.0.0.1', 0, (err, port) => {
      if (err) return reject(new Error(`${host.name}: sshd refused a remote forward (AllowTcpForwarding?): ${err.message}`));
      resolve(port);
    });
  }).catch((e: unknown) => {
    client.end();
    throw e;
  });
  return {
    remotePort,
    get connections() {
      return count;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        client.once('close', () => resolve());
        client.end();
        setTimeout(resolve, 2000).unref();
      }),
  };
}
