// crowdsec: the agent from Debian's package on edge nodes (Traefik's access log, sshd through journald),
// the local API on one manager with every agent registered to it, the nftables firewall bouncer on edge
// nodes, the Traefik bouncer's API key, notifications to the alert channels. Generators in config.ts,
// hub.ts; variables in docs/roles/crowdsec.md.
//
// Credentials never go on a command line (config.ts, registerAgentScript and bouncerKeyScript): agent passwords
// are HMACs of the host name under CROWDSEC_REGISTRATION_SECRET (.env), registered through the local API with the
// body on stdin; bouncer keys (the firewall bouncers' and Traefik's) are made by cscli on the LAPI host and carried on
// stdin into 0600 files on the bouncer's host, kept while the local API accepts them (reruns change nothing).
//
// Order: the LAPI host converges first, restarts its crowdsec (handlers flushed) and waits until its API answers;
// every host meets it at a barrier before registering and before its agent and bouncer (re)start (agents and
// bouncers exit when the API refuses them at their start: CI 2026-12-06, mgr3's agent restarted while mgr1's API
// restarted).
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { InputError } from '../../lib/errors.ts';
import { lookupEnv, envFileShown } from '../../lib/env.ts';
import { apt } from '../../lib/ops/apt.ts';
import { command } from '../../lib/ops/command.ts';
import { directory, file } from '../../lib/ops/files.ts';
import { systemd } from '../../lib/ops/systemd.ts';
import { flushHandlers } from '../../lib/runner.ts';
import { sh } from '../../lib/shell.ts';
import type { HostSpec, Role, Step, StepContext } from '../../lib/types.ts';
import { parseChannels, AlertChannelError } from '../monitoring/alertmanager.ts';
import { CLOUDFLARE_IPS } from '../traefik/cloudflare-ips.ts';
import {
  acquisition,
  acquisitionYaml,
  agentServiceDropIn,
  BAN_SETS_NFT,
  banSetsNft,
  bouncerKeyScript,
  cloudflareClientIpParser,
  COLLECTIONS,
  crowdsecConfig,
  DEBIAN_PATHS,
  firewallBouncerConfig,
  firewallBouncerDropIn,
  LAPI_PORT,
  LAPI_TLS,
  lapiAnswersScript,
  lapiTlsScript,
  lapiTlsInPlace,
  lapiTlsProbe,
  lapiUrl,
  localApiCredentials,
  managementWhitelist,
  NOTIFICATION_PLUGINS,
  notifications,
  onlineApiCredentialsSeed,
  PLUGIN_LINK_DIR,
  parseBouncerKey,
  TRAEFIK_BOUNCER_KEY_FILE,
  profiles,
  registerAgentScript,
  watcherBody,
  type LapiEndpoint,
} from './config.ts';
import { enableScript, resolveCollections, type HubIndex } from './hub.ts';
import { nestedOutputs, nestedProbe, task } from '../../lib/ops/base.ts';
import YAML from 'yaml';
import { list } from '../../lib/vars.ts';

/** An agent's password: an HMAC of its host name under the registration secret (reruns need nothing stored). */
function derived(secret: string, purpose: string): string {
  return createHmac('sha256', secret).update(`wpfarm-crowdsec:${purpose}`).digest('hex').slice(0, 40);
}

/**
 * Enable wpfarm's collections from the package's offline hub (symlinks, as Debian's postinst does),
 * after the package is installed: the hub index is read on the host.
 */
function enableCollections(): Step {
  return task(
    `crowdsec collections ${COLLECTIONS.join(' ')}`,
    async (c, probed) => {
      // read with the role's probes: the hub index and every link under /etc/crowdsec (else read here)
      const read = probed ?? (await c.exec(COLLECTIONS_PROBE, { nothrow: true, readOnly: true })).stdout;
      const { index, links: have } = parseCollectionsProbe(read);
      if (index === undefined) {
        if (c.check) return { changed: true, changes: ['enable collections once the package is installed'] };
        throw new Error('/usr/share/crowdsec/hub/.index.json is missing: is the crowdsec package installed?');
      }
      const links = resolveCollections(JSON.parse(index) as HubIndex, COLLECTIONS);
      if (links.every((l) => have.get(`/etc/crowdsec/${l.configPath}`) === `/var/lib/crowdsec/hub/${l.hubPath}`)) return { changed: false };
      const changes = [`link ${links.length} hub items into /etc/crowdsec`];
      if (c.check) return { changed: true, changes };
      await c.exec(enableScript(links));
      c.notify('restart crowdsec');
      return { changed: true, changes };
    },
    { probe: () => ({ script: COLLECTIONS_PROBE }) },
  );
}

/** The collections step's probe: the package's hub index (when installed), then every link under /etc/crowdsec and its target. */
export const COLLECTIONS_PROBE = [
  'if [ -r /usr/share/crowdsec/hub/.index.json ]; then echo @@index; cat /usr/share/crowdsec/hub/.index.json; fi',
  'echo; echo @@links',
  "find /etc/crowdsec -type l -printf '%p\\t%l\\n' 2>/dev/null || true",
].join('\n');

export function parseCollectionsProbe(out: string): { index?: string; links: Map<string, string> } {
  const [head = '', linkList = ''] = out.split(/^@@links$/m);
  const i = head.search(/^@@index$/m);
  const links = new Map<string, string>();
  for (const line of linkList.split('\n')) {
    const [p, target] = line.split('\t');
    if (p && target !== undefined) links.set(p, target);
  }
  return { index: i < 0 ? undefined : head.slice(i + '@@index\n'.length), links };
}

/** Point the LAPI host's own client credentials at the address the local API listens on (TLS, verified with our CA). */
function lapiClientUrl(url: string): Step {
  const path = '/etc/crowdsec/local_api_credentials.yaml';
  return task(
    `crowdsec local API client url ${url}`,
    async (c, probed) => {
      // read with the role's probes ('@@missing' when absent), else here
      const r =
        probed !== undefined
          ? { code: probed.startsWith('@@missing') ? 1 : 0, stdout: probed }
          : await c.exec(sh`cat ${path}`, { nothrow: true, readOnly: true });
      if (r.code !== 0) {
        if (c.check) return { changed: true, changes: [`${path}: url ${url} once the package is installed`] };
        throw new Error(`${path} is missing: is the crowdsec package installed?`);
      }
      const cur = (YAML.parse(r.stdout) ?? {}) as { url?: string; login?: string; password?: string; ca_cert_path?: string };
      if (cur.password) c.secret(cur.password);
      if (cur.url === url && cur.ca_cert_path === LAPI_TLS.caCert) return { changed: false };
      const changes = [`${path}: url ${cur.url ?? '(none)'} -> ${url}, ca_cert_path ${LAPI_TLS.caCert}`];
      if (c.check) return { changed: true, changes };
      const content = YAML.stringify({ ...cur, url, ca_cert_path: LAPI_TLS.caCert });
      const res = await c.run(file({ path, content, mode: '0600', secret: true }));
      if (res.status === 'failed') throw new Error(res.error ?? `writing ${path} failed`);
      c.notify('restart crowdsec');
      return { changed: true, changes };
    },
    { probe: () => ({ script: sh`cat ${path} 2>/dev/null || echo @@missing` }) },
  );
}

/**
 * The local API's CA and server certificate, made on the LAPI host (agents' runs delegate this step there; the
 * script serialises with flock). The result is the CA certificate (public), registered for the next step.
 */
function lapiCertificate(address: string, delegateTo?: string): Step {
  return task(
    `crowdsec local API TLS: CA and certificate for ${address}`,
    async (c, probed) => {
      // read with the role's probes and checked here: nothing to make, the files' modes right
      const pem = probed !== undefined ? lapiTlsInPlace(probed, address) : undefined;
      if (pem) return { changed: false, result: pem, reason: 'CA and certificate valid (signature, address, 30 more days)' };
      const r = await c.exec(lapiTlsScript(address, c.check), { readOnly: c.check });
      const changes = r.stdout
        .split('\n')
        .filter((l) => l.startsWith('changed: '))
        .map((l) => l.slice(9));
      return { changed: changes.length > 0, changes, result: pemFrom(r.stdout) };
    },
    { register: 'crowdsec_lapi_ca', ...(delegateTo ? { delegateTo } : {}), probe: () => ({ script: lapiTlsProbe() }) },
  );
}

/**
 * The CA certificate at the end of the TLS script's output, ending in one newline as `cat` gave it: a probe's output
 * comes trimmed and an exec's does not, and the copies on the agents are compared byte for byte with this.
 */
export function pemFrom(out: string): string {
  const at = out.indexOf('-----BEGIN CERTIFICATE-----');
  return at < 0 ? '' : `${out.slice(at).trimEnd()}\n`;
}

/** A copy of the local API's CA certificate on an agent host (from the registered result of lapiCertificate). */
function lapiCaCopy(isEdge: boolean): Step {
  return task(
    `crowdsec local API CA certificate ${LAPI_TLS.caCert}`,
    async (c, probed) => {
      const pem = String(c.registered.crowdsec_lapi_ca?.result ?? '');
      if (!pem) {
        if (c.check) return { changed: true, changes: [`${LAPI_TLS.caCert} once the CA is made`] };
        throw new Error('the local API CA certificate was not read from the LAPI host');
      }
      const [dp, fp] = nestedOutputs(probed, 2);
      const d = await c.run(caDir(), dp);
      const f = await c.run(caFile(pem), fp);
      for (const x of [d, f]) if (x.status === 'failed') throw new Error(x.error ?? `writing ${LAPI_TLS.caCert} failed`);
      if (f.status !== 'changed') return { changed: d.status === 'changed', changes: d.changes };
      c.notify('restart crowdsec');
      if (isEdge) c.notify('restart firewall bouncer');
      return { changed: true, changes: [...d.changes, ...f.changes] };
    },
    { probe: (c) => nestedProbe(c, [caDir(), caFile('')]) },
  );
}
const caDir = () => directory({ path: LAPI_TLS.dir, mode: '0755' });
// its probe does not depend on its content
const caFile = (pem: string) => file({ path: LAPI_TLS.caCert, content: pem, mode: '0644' });

/** On the LAPI host: a running local API that serves another certificate than the file's is restarted. */
function lapiServesCurrentCert(address: string): Step {
  const fp = (src: string) => `${src} | openssl x509 -noout -fingerprint -sha256 2>/dev/null`;
  // a process started after the certificate file was last written has loaded it: no TLS handshake (three openssl
  // processes) on a rerun; otherwise the fingerprint it serves is compared with the file's
  const script = `systemctl is-active -q crowdsec || { echo inactive; exit 0; }
s=$(systemctl show -p ExecMainStartTimestamp --timestamp=unix --value crowdsec 2>/dev/null); s=\${s#@}
m=$(stat -c %Y ${LAPI_TLS.cert} 2>/dev/null || echo '')
if [ -n "$s" ] && [ -n "$m" ] && [ "$s" -gt "$m" ] 2>/dev/null; then echo "started after the certificate was written"; exit 0; fi
echo "served $(${fp(sh`echo | timeout 5 openssl s_client -connect ${`${address}:${LAPI_PORT}`} 2>/dev/null`)})"
echo "file $(${fp(sh`cat ${LAPI_TLS.cert} 2>/dev/null`)})"`;
  return task(
    'crowdsec local API serves the current certificate',
    async (c, probed) => {
      const out = probed ?? (await c.exec(script, { nothrow: true, readOnly: true })).stdout;
      if (/^inactive/m.test(out)) return { changed: false };
      if (/^started after the certificate was written$/m.test(out))
        return { changed: false, reason: 'crowdsec started after its certificate was written' };
      const served = /^served (.*)$/m.exec(out)?.[1]?.trim() ?? '';
      const want = /^file (.*)$/m.exec(out)?.[1]?.trim() ?? '';
      if (served && served === want) return { changed: false };
      const changes = [`the local API serves ${served ? 'another certificate' : 'no TLS'}: restart crowdsec`];
      if (!c.check) c.notify('restart crowdsec');
      return { changed: true, changes };
    },
    { probe: () => ({ script }) },
  );
}

/** On the LAPI host: wait until the local API answers over its TLS (after a restart it takes a few seconds). */
function lapiAnswers(api: LapiEndpoint): Step {
  return task(
    `crowdsec local API answers at ${api.url}`,
    async (c, probed) => {
      if (c.check) return { changed: false, reason: 'check mode: not waited for' };
      // asked once with the role's probes; waited for here when it did not answer then
      const seen = /^answered (\d+)$/m.exec(probed ?? '');
      if (seen) return { changed: false, reason: seen[0] };
      const r = await c.exec(lapiAnswersScript(api), { nothrow: true, readOnly: true });
      if (r.code !== 0) throw new Error(r.stderr.trim() || `the local API at ${api.url} did not answer`);
      return { changed: false, reason: r.stdout.trim() };
    },
    { probe: () => ({ script: lapiAnswersScript(api, true) }) },
  );
}

/** Every host of the run meets here: past it, the local API has restarted (if it had to) and answers. */
function lapiReadyBarrier(): Step {
  return task('crowdsec local API up before agents and bouncers register and (re)start', async (c) => {
    try {
      await c.barrier('crowdsec local api up', { timeoutMs: 10 * 60_000 });
    } catch (e) {
      // fewer --forks than hosts: no barrier; the registration scripts wait for the API, the units' Restart= covers the rest
      if (!/must run at once/.test((e as Error).message)) throw e;
      return { changed: false, reason: 'no barrier with fewer --forks than hosts' };
    }
    return { changed: false, reason: 'met' };
  });
}

/** The lines "changed: ..." of a registration script. */
const scriptChanges = (out: string): string[] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('changed: '))
    .map((l) => l.slice(9));

/** Register this agent on the LAPI host (runs there): the password goes on stdin, never on a command line. */
function registerAgent(name: string, password: string, api: LapiEndpoint, lapiName: string): Step {
  return task(
    `register agent ${name} on ${lapiName}`,
    async (c) => {
      const r = await checkFirst(c, c, (check) => registerAgentScript(name, api, check), watcherBody(name, password));
      if (r.code !== 0) throw new Error(r.stderr.trim() || `registering agent ${name} failed (exit ${r.code})`);
      const changes = scriptChanges(r.stdout);
      return { changed: changes.length > 0, changes, reason: 'the agent logs in' };
    },
    { delegateTo: lapiName },
  );
}

/**
 * The Traefik bouncer (runs on the LAPI host): its key is made by cscli there (`bouncers add traefik -o raw`, nothing
 * on a command line), kept while the local API accepts it, and written root 0600 to TRAEFIK_BOUNCER_KEY_FILE on the
 * edge nodes, where the traefik role reads it into its Docker secret. The key in place (on this host) is tested on
 * stdin on every run; a rerun changes nothing.
 */
function traefikBouncer(api: LapiEndpoint, edges: string[]): Step {
  const dir = path.posix.dirname(TRAEFIK_BOUNCER_KEY_FILE);
  const readKey = sh`cat ${TRAEFIK_BOUNCER_KEY_FILE} 2>/dev/null || true`;
  // the key's directory and file on a holder (their probes do not depend on the key)
  const held = (key: string) => [
    directory({ path: dir, mode: '0700' }),
    file({ path: TRAEFIK_BOUNCER_KEY_FILE, content: `${key}\n`, mode: '0600', secret: true }),
  ];
  return task(
    `Traefik bouncer: key made on the local API host, kept on ${edges.join(', ') || 'no edge node'}`,
    async (c, probed) => {
      // read with the role's probes: the key in place and its files here
      const [kp, ...here] = nestedOutputs(probed, 3);
      let key = (kp ?? (await c.exec(readKey, { nothrow: true, readOnly: true })).stdout).trim();
      if (key) c.secret(key);
      const r = await keyAccepted(c, c, 'traefik', api, key);
      const made = parseBouncerKey(r.stdout);
      if (made) c.secret(made);
      if (r.code !== 0) throw new Error(r.stderr.trim() || `the key of the Traefik bouncer failed (exit ${r.code})`);
      const changes = scriptChanges(r.stdout);
      if (made) key = made;
      else if (changes.length) return { changed: true, changes: [...changes, `${TRAEFIK_BOUNCER_KEY_FILE} with the new key`] };
      const holders = [...new Set([c.host.name, ...edges])];
      for (const h of holders) {
        const hc = h === c.host.name ? c : c.hostContext(h);
        const ops = held(key);
        // here: read with the probes; another holder: both read in one round trip
        const parts =
          h === c.host.name
            ? here
            : nestedOutputs((await hc.exec(nestedProbe(hc, ops)!.script, { nothrow: true, readOnly: true })).stdout, ops.length);
        for (const [i, op] of ops.entries()) {
          const res = await hc.run(op, parts[i]);
          if (res.status === 'failed') throw new Error(`${h}: ${res.error ?? `${res.step} failed`}`);
          if (res.status === 'changed') changes.push(...res.changes.map((x) => `${h}: ${x}`));
        }
      }
      return { changed: changes.length > 0, changes, reason: 'the local API accepts the key in place, the edge nodes hold it' };
    },
    { probe: (c) => nestedProbe(c, [{ script: readKey }, ...held('')]) },
  );
}

/**
 * bouncerKeyScript on the LAPI host (`lapi`) for the key in place: first in its check mode (read-only: the probes read
 * so far stay valid when the key is accepted), then, when it is not and this is no check run, for real.
 */
async function keyAccepted(c: StepContext, lapi: StepContext, name: string, api: LapiEndpoint, key: string) {
  return checkFirst(c, lapi, (check) => bouncerKeyScript(name, api, check), `${key}\n`);
}

/**
 * A script of the LAPI host (`lapi`) that says "ok" when nothing is to be done: run in its check mode first (read-only:
 * the probes read so far stay valid), then, when it is not ok and this is no check run, for real.
 */
async function checkFirst(c: StepContext, lapi: StepContext, script: (check: boolean) => string, stdin: string) {
  const ask = (check: boolean) => lapi.exec(script(check), { stdin, nothrow: true, readOnly: check });
  const r = await ask(true);
  return c.check || (r.code === 0 && /^ok$/m.test(r.stdout)) ? r : ask(false);
}

const BOUNCER_CONFIG = '/etc/crowdsec/bouncers/crowdsec-firewall-bouncer.yaml';
/** Debian's pending bouncer registrations (crowdsec's postinst processes them; the bouncer waits for it) */
const PENDING_REGISTRATION = '/var/lib/crowdsec/pending-registration';

/**
 * This edge node's firewall bouncer: its key (the one in place while the local API accepts it, else a new one made by
 * cscli on the LAPI host) and the two files that hold it. Debian's postinst registers the bouncer with the LOCAL API of
 * this host and writes that key to <config>.local, which the bouncer merges over its config (seen in the lab: "access
 * forbidden" from the manager's LAPI): both files are ours, 0600.
 */
function firewallBouncer(host: string, lapi: HostSpec, api: LapiEndpoint): Step {
  const name = `firewall-${host}`;
  const readKey = sh`cat ${`${BOUNCER_CONFIG}.local`} 2>/dev/null || true`;
  // the two files that hold the key (their probes do not depend on it)
  const files = (key: string) => [
    file({ path: BOUNCER_CONFIG, content: firewallBouncerConfig({ lapiHost: lapi.address, apiKey: key }), mode: '0600', secret: true }),
    file({ path: `${BOUNCER_CONFIG}.local`, content: YAML.stringify({ mode: 'nftables', api_key: key }), mode: '0600', secret: true }),
  ];
  return task(
    `firewall bouncer ${name}: key (registered on ${lapi.name}) and configuration`,
    async (c, probed) => {
      // read with the role's probes: the key in place and the two files
      const [kp, ...parts] = nestedOutputs(probed, 3);
      const cur = kp ?? (await c.exec(readKey, { nothrow: true, readOnly: true })).stdout;
      let key = '';
      try {
        key = String((YAML.parse(cur) as { api_key?: unknown } | null)?.api_key ?? '');
      } catch {
        key = '';
      }
      if (key) c.secret(key);
      const r = await keyAccepted(c, c.hostContext(lapi.name), name, api, key);
      const made = parseBouncerKey(r.stdout);
      if (made) c.secret(made);
      if (r.code !== 0) throw new Error(r.stderr.trim() || `the key of bouncer ${name} failed (exit ${r.code})`);
      const changes = scriptChanges(r.stdout);
      if (made) key = made;
      else if (changes.length) {
        // check mode: a new key would be made, the files would hold it
        return { changed: true, changes: [...changes, `${BOUNCER_CONFIG}(.local) with the new key`] };
      }
      for (const [i, f] of files(key).entries()) {
        const res = await c.run(f, parts[i]);
        if (res.status === 'failed') throw new Error(res.error ?? `writing ${res.step} failed`);
        if (res.status === 'changed') changes.push(...res.changes);
      }
      if (changes.length && !c.check) c.notify('restart firewall bouncer');
      return { changed: changes.length > 0, changes, reason: 'the local API accepts the key in place' };
    },
    { probe: (c) => nestedProbe(c, [{ script: readKey }, ...files('')]) },
  );
}

const role: Role = {
  name: 'crowdsec',
  hosts: 'edge,managers',
  tags: ['crowdsec'],
  description: 'CrowdSec agent + local API + nftables firewall bouncer, Traefik bouncer key, notifications',
  handlers: {
    'restart crowdsec': () => [systemd({ name: 'crowdsec', state: 'restarted', daemonReload: true })],
    'restart firewall bouncer': () => [systemd({ name: 'crowdsec-firewall-bouncer', state: 'restarted', daemonReload: true })],
  },
  steps(ctx) {
    const v = ctx.vars;
    const managers = ctx.hosts('managers');
    const lapiName = String(v.crowdsec_lapi_host ?? managers[0]?.name ?? '');
    const lapi = ctx.hosts(lapiName)[0];
    if (!lapi) throw new InputError(`crowdsec_lapi_host ${lapiName || '(none)'}: no such host (default: the first manager)`);
    const isLapi = ctx.host.name === lapi.name;
    const isEdge = ctx.hosts('edge').some((h) => h.name === ctx.host.name);
    // the same variable and default as roles/traefik
    const traefikLogDir = String(v.traefik_log_dir ?? '/var/log/traefik');
    const privateCidrs = list(v.private_cidr ?? v.private_cidrs);
    const mgmt = list(v.management_cidrs);
    if (!mgmt.length) throw new InputError('management_cidrs is required (never banned)');
    const regSecretName = String(v.crowdsec_registration_secret_env ?? 'CROWDSEC_REGISTRATION_SECRET');
    const regSecret = lookupEnv(regSecretName);
    if (!regSecret) throw new InputError(`${regSecretName} is not set in ${envFileShown()} (agent passwords are derived from it)`);
    const agentPassword = ctx.secret(derived(regSecret, `machine:${ctx.host.name}`));
    const api: LapiEndpoint = { url: lapiUrl(lapi.address), caCert: LAPI_TLS.caCert };
    let notif = { files: {} as Record<string, string>, names: [] as string[], secrets: [] as string[] };
    if (v.alert_channels !== undefined) {
      try {
        notif = notifications(parseChannels(v.alert_channels), (n) => lookupEnv(n));
      } catch (e) {
        if (e instanceof AlertChannelError) throw new InputError(`alert_channels: ${e.message}`);
        throw e;
      }
      for (const s of notif.secrets) ctx.secret(s);
    }
    const cfg = crowdsecConfig(
      {
        lapiHost: lapi.address,
        privateCidrs,
        isLapi,
        onlineApi: v.crowdsec_online_api === true,
        listenAddress: isLapi ? lapi.address : undefined,
        tls: { certFile: LAPI_TLS.cert, keyFile: LAPI_TLS.key },
      },
      { ...DEBIAN_PATHS, pluginDir: PLUGIN_LINK_DIR },
    );
    const steps: Step[] = [
      // before the package: Debian's postinst registers with the central API unless this file is non-empty
      directory({ path: '/etc/crowdsec', mode: '0755' }),
      file(
        { path: '/etc/crowdsec/online_api_credentials.yaml', content: onlineApiCredentialsSeed(), mode: '0600' },
        { notify: 'restart crowdsec' },
      ),
      apt(
        {
          // curl: the registration scripts talk to the local API from the LAPI host (config.ts)
          packages: ['crowdsec', ...(isLapi ? ['curl'] : []), ...(isEdge ? ['crowdsec-firewall-bouncer', 'nftables'] : [])],
          state: 'present',
          update_cache: 3600,
          // not started by the packages: Debian's crowdsec postinst, once the service is up, waits up to 20 s for
          // decisions from the central API (upstream #2120), which never come when it is off or unreachable
          // (28.7 s vs 6.4 s for the install on a lab node); the steps below configure, then start both services
          autostart: false,
        },
        { tags: ['packages'] },
      ),
      // Debian's registration of the firewall bouncer with the local API, left pending when dpkg configured the
      // bouncer before crowdsec and crowdsec's postinst did not get to it (it exits early while its service is not
      // running): the bouncer unit will not start while the file exists (ConditionPathExists=!), and its key is ours
      // (firewallBouncer below, registered on the LAPI host)
      ...(isEdge
        ? [file({ path: PENDING_REGISTRATION, state: 'absent' }, { name: `no pending Debian registration (${PENDING_REGISTRATION})` })]
        : []),
      directory({ path: PLUGIN_LINK_DIR, mode: '0755' }),
      ...NOTIFICATION_PLUGINS.map((t) => {
        const [src, dst] = [`${DEBIAN_PATHS.pluginDir}/${t}`, `${PLUGIN_LINK_DIR}/notification-${t}`];
        return command(
          { cmd: ['ln', '-sfn', src, dst], unless: ['bash', '-c', sh`[ "$(readlink ${dst})" = ${src} ]`] },
          { name: `crowdsec plugin notification-${t}`, notify: 'restart crowdsec' },
        );
      }),
      file({ path: '/etc/crowdsec/config.yaml', content: YAML.stringify(cfg), mode: '0644' }, { notify: 'restart crowdsec' }),
      file(
        {
          path: '/etc/crowdsec/acquis.yaml',
          content: acquisitionYaml(
            isEdge
              ? acquisition({
                  traefikSource: v.crowdsec_traefik_source === 'docker' ? 'docker' : 'file',
                  traefikLogPath: `${traefikLogDir}/access.log`,
                })
              : acquisition().slice(1),
          ),
          mode: '0644',
        },
        { notify: 'restart crowdsec' },
      ),
      file(
        { path: '/etc/crowdsec/profiles.yaml', content: profiles(notif.names, String(v.crowdsec_ban_duration ?? '4h')), mode: '0644' },
        { notify: 'restart crowdsec' },
      ),
      directory({ path: '/etc/crowdsec/notifications', mode: '0750' }),
      ...Object.entries(notif.files).map(([name, text]) =>
        file({ path: `/etc/crowdsec/notifications/${name}`, content: text, mode: '0600', secret: true }, { notify: 'restart crowdsec' }),
      ),
      directory({ path: '/etc/crowdsec/parsers/s02-enrich', mode: '0755' }),
      file(
        {
          path: '/etc/crowdsec/parsers/s02-enrich/cloudflare-client-ip.yaml',
          content: cloudflareClientIpParser(list(v.cloudflare_ips).length ? list(v.cloudflare_ips) : CLOUDFLARE_IPS),
          mode: '0644',
        },
        { notify: 'restart crowdsec' },
      ),
      file(
        { path: '/etc/crowdsec/parsers/s02-enrich/wpfarm-management-whitelist.yaml', content: managementWhitelist(mgmt), mode: '0644' },
        { notify: 'restart crowdsec' },
      ),
    ];
    if (isEdge) {
      // the agent follows Traefik's access log by name: its directory must exist when the agent starts (the
      // file datasource watches the directory for the file), whichever of traefik/crowdsec runs first
      steps.push(directory({ path: traefikLogDir, mode: '0750' }));
    }
    steps.push(enableCollections());
    // the local API speaks TLS with a CA of its own (made on the LAPI host); every client verifies it
    steps.push(lapiCertificate(lapi.address, isLapi ? undefined : lapi.name));
    if (!isLapi) steps.push(lapiCaCopy(isEdge));
    if (!isLapi) {
      // point the agent at the LAPI host (registered there after the barrier below); no local API here
      steps.push(
        file(
          {
            path: '/etc/crowdsec/local_api_credentials.yaml',
            content: localApiCredentials(lapi.address, ctx.host.name, agentPassword),
            mode: '0600',
            secret: true,
          },
          { notify: 'restart crowdsec' },
        ),
        directory({ path: '/etc/systemd/system/crowdsec.service.d', mode: '0755' }),
        file(
          { path: '/etc/systemd/system/crowdsec.service.d/wpfarm-agent.conf', content: agentServiceDropIn(), mode: '0644' },
          { notify: 'restart crowdsec' },
        ),
      );
    }
    if (isLapi) {
      // the local API listens on the private address only: the LAPI host's own agent (and cscli) must use it
      // too, with the machine credentials Debian's postinst created (kept as they are)
      steps.push(lapiClientUrl(lapiUrl(lapi.address)), lapiServesCurrentCert(lapi.address));
    }
    // The LAPI host restarts its crowdsec now if it has to (its handlers flushed) and waits until the API answers;
    // the other hosts wait for it here, then register and (re)start their agents and bouncers (handlers flushed once).
    if (isLapi)
      steps.push(flushHandlers(), systemd({ name: 'crowdsec', enabled: true, state: 'started', daemonReload: true }), lapiAnswers(api));
    steps.push(lapiReadyBarrier());
    if (!isLapi) steps.push(registerAgent(ctx.host.name, agentPassword, api, lapi.name));
    if (isLapi && v.crowdsec_bouncer_enabled !== false)
      steps.push(
        traefikBouncer(
          api,
          ctx.hosts('edge').map((h) => h.name),
        ),
      );
    if (isEdge) {
      // the firewall bouncer's files come after the barrier: notified before the LAPI host's flush above, its restart
      // would run there with Debian's configuration against a local API that has just moved to TLS on the private
      // address (the bouncer exits at its start then: lab run of 2026-12-06 10:50)
      steps.push(
        directory({ path: '/etc/crowdsec/bouncers', mode: '0755' }),
        // set-only: our tables and chains (input AND forward) around the bouncer's sets, loaded before it starts
        file({ path: BAN_SETS_NFT, content: banSetsNft(), mode: '0644' }, { notify: 'restart firewall bouncer' }),
        directory({ path: '/etc/systemd/system/crowdsec-firewall-bouncer.service.d', mode: '0755' }),
        file(
          { path: '/etc/systemd/system/crowdsec-firewall-bouncer.service.d/wpfarm.conf', content: firewallBouncerDropIn(), mode: '0644' },
          { notify: 'restart firewall bouncer' },
        ),
        firewallBouncer(ctx.host.name, lapi, api),
      );
    }
    // the restarts notified above run now, so that a service the packages left stopped is started once (by its
    // restart), not started and then restarted by the handlers at the end
    steps.push(flushHandlers());
    if (isEdge) steps.push(systemd({ name: 'crowdsec-firewall-bouncer', enabled: true, state: 'started', daemonReload: true }));
    steps.push(systemd({ name: 'crowdsec', enabled: true, state: 'started', daemonReload: true }));
    return steps;
  },
};

export default role;
