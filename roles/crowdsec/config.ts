// Pure generators for the crowdsec role: acquisition, the agent/LAPI configuration, profiles,
// notification plugins, the nftables firewall bouncer, a client-IP enricher for traffic proxied by
// Cloudflare, and the pre-seeded online-API credentials file that lets Debian's package install offline.
// Targets Debian bookworm's crowdsec 1.4.6 and crowdsec-firewall-bouncer 0.0.25. The hand-written files are
// templates in templates/crowdsec/; files generated from data (acquisition, validated against CrowdSec's
// schema; config.yaml; notification plugins carrying .env secrets; credentials; the Cloudflare enricher,
// whose filter lists every range) stay objects serialized by the yaml library.
import { X509Certificate } from 'node:crypto';
import YAML from 'yaml';
import { quote } from 'zx';
import { InputError } from '../../lib/errors.ts';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';
import type { AlertChannel, EnvLookup } from '../monitoring/alertmanager.ts';
import { AlertChannelError } from '../monitoring/alertmanager.ts';
import { CLOUDFLARE_IPS } from '../traefik/cloudflare-ips.ts';

/** templates/crowdsec/<name>: the text configs of this role */
const tpl = (name: string) => templatePath('crowdsec', name);

export const TRAEFIK_ACCESS_LOG = '/var/log/traefik/access.log';
export const LAPI_PORT = 8080;

/** Collections from the package's offline hub (/usr/share/crowdsec/hub). */
export const COLLECTIONS = [
  'crowdsecurity/linux',
  'crowdsecurity/traefik',
  'crowdsecurity/nginx',
  'crowdsecurity/wordpress',
  'crowdsecurity/sshd',
  'crowdsecurity/base-http-scenarios',
] as const;

export interface AcquisitionOptions {
  /** where Traefik's JSON access log is read from: the host file (bind mount) or the container's output */
  traefikSource?: 'file' | 'docker';
  traefikLogPath?: string;
  /** Swarm service of Traefik (docker source) */
  traefikService?: string;
  /** sshd through journald (Debian 12 has no rsyslog by default) and syslog files if present */
  syslogFiles?: string[];
}

export type AcquisitionEntry = Record<string, unknown>;

/** acquis.yaml entries (a multi-document YAML file). */
export function acquisition(o: AcquisitionOptions = {}): AcquisitionEntry[] {
  const traefik: AcquisitionEntry =
    (o.traefikSource ?? 'file') === 'file'
      ? // force_inotify: watch the directory even while the file does not exist yet (the agent may start before
        // Traefik writes its first line); without it crowdsec 1.4 warns "No matching files" and never reads it (lab)
        { source: 'file', filenames: [o.traefikLogPath ?? TRAEFIK_ACCESS_LOG], force_inotify: true, labels: { type: 'traefik' } }
      : // Traefik writes its access log to stdout in this variant; the docker datasource follows the service's tasks
        {
          source: 'docker',
          service_name: [o.traefikService ?? 'traefik_traefik'],
          follow_stdout: true,
          follow_stderr: false,
          labels: { type: 'traefik' },
        };
  const entries: AcquisitionEntry[] = [
    traefik,
    { source: 'journalctl', journalctl_filter: ['_SYSTEMD_UNIT=ssh.service'], labels: { type: 'syslog' } },
  ];
  if (o.syslogFiles?.length) entries.push({ source: 'file', filenames: o.syslogFiles, labels: { type: 'syslog' } });
  return entries;
}

export function acquisitionYaml(entries: AcquisitionEntry[]): string {
  return entries.map((e) => YAML.stringify(e)).join('---\n');
}

/** Fields each acquisition source accepts (crowdsec 1.4 modules), beyond the common ones. */
const SOURCE_FIELDS: Record<string, string[]> = {
  file: ['filename', 'filenames', 'exclude_regexps', 'force_inotify', 'max_buffer_size', 'poll_without_inotify'],
  journalctl: ['journalctl_filter', 'since'],
  docker: [], // validated by the official schema
};

/**
 * Check an acquisition entry. Only the docker datasource has an official schema (checked by the tests
 * with ../shared/schemas/crowdsec); for file and journalctl this checks the common fields against that
 * same schema's common part and the module fields against SOURCE_FIELDS.
 */
export function checkAcquisition(e: AcquisitionEntry, commonFields: string[]): string[] {
  const problems: string[] = [];
  const source = (e.source as string | undefined) ?? ('filename' in e || 'filenames' in e ? 'file' : undefined);
  if (!source || !(source in SOURCE_FIELDS)) return [`unknown source ${String(e.source)}`];
  const labels = e.labels as Record<string, unknown> | undefined;
  if (!labels || typeof labels.type !== 'string') problems.push('labels.type is required (it selects the parser)');
  for (const k of Object.keys(e)) {
    if (!commonFields.includes(k) && !SOURCE_FIELDS[source]!.includes(k)) problems.push(`unknown field ${k} for source ${source}`);
  }
  if (source === 'file') {
    const files = (e.filenames as unknown[] | undefined) ?? (e.filename ? [e.filename] : []);
    if (!files.length || !files.every((f) => typeof f === 'string' && f.startsWith('/')))
      problems.push('file source needs absolute filename(s)');
  }
  if (source === 'journalctl') {
    const f = e.journalctl_filter as unknown[] | undefined;
    if (!Array.isArray(f) || !f.length || !f.every((x) => typeof x === 'string' && /^[A-Z_]+=/.test(x)))
      problems.push('journalctl_filter must be FIELD=value matches');
  }
  return problems;
}

export interface LapiSettings {
  /** address of the LAPI host (a manager) on the private network */
  lapiHost: string;
  /** CIDRs allowed to use the LAPI (machines and bouncers): the private network */
  privateCidrs: string[];
  /** this host runs the LAPI */
  isLapi: boolean;
  /** push signals to / pull the community blocklist from CrowdSec's central API */
  onlineApi: boolean;
  /** log level of the agent */
  logLevel?: 'info' | 'debug' | 'warning';
  /** LAPI listen address (default all interfaces; the private address in production) */
  listenAddress?: string;
  /** the LAPI serves TLS with this certificate and key (LAPI_TLS); absent: plain HTTP (the contract test on loopback) */
  tls?: { certFile: string; keyFile: string };
}

/**
 * The local API's own TLS (crowdsec 1.4.6 api.server.tls): a CA made by the role on the LAPI host, whose key never
 * leaves it (0600 in a 0700 directory); a server certificate for the LAPI's address. Agents (local_api_credentials
 * ca_cert_path) and the firewall bouncers (ca_cert_path) verify the server against a copy of the CA certificate.
 */
export const LAPI_TLS = {
  dir: '/etc/crowdsec/tls',
  caCert: '/etc/crowdsec/tls/ca.crt',
  caKey: '/etc/crowdsec/tls/ca.key',
  cert: '/etc/crowdsec/tls/lapi.crt',
  key: '/etc/crowdsec/tls/lapi.key',
} as const;

/** https://ADDRESS:8080/ */
export const lapiUrl = (lapiHost: string, port = LAPI_PORT) => `https://${lapiHost}:${port}/`;

/**
 * bash for the LAPI host: make the CA and the server certificate (for `address` and 127.0.0.1) unless they exist,
 * verify and are valid for 30 more days; serialised with flock (agents' runs delegate it here concurrently).
 * Prints "changed: ..." lines, then the CA certificate (public). With check=1 it changes nothing (no directory, lock or
 * chmod: it prints the files' modes, "modes 600 600 644 644" as they should be) and says what it would do: the step's
 * read-only probe.
 */
export function lapiTlsScript(address: string, check: boolean): string {
  const t = LAPI_TLS;
  return `set -euo pipefail
umask 077
check=${check ? 1 : 0}
[ "$check" = 1 ] && [ ! -d ${t.dir} ] && { echo "changed: create the local API's CA and certificate for ${address}"; exit 0; }
if [ "$check" = 0 ]; then
  install -d -m 0700 ${t.dir}
  exec 9>${t.dir}/.lock
  flock 9
fi
if [ ! -s ${t.caKey} ] || [ ! -s ${t.caCert} ] || ! openssl x509 -in ${t.caCert} -noout -checkend 2592000 >/dev/null; then
  echo "changed: new CA ${t.caCert}"
  [ "$check" = 1 ] && exit 0
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ${t.caKey} -out ${t.caCert} -days 3650 \
    -subj "/CN=wpfarm crowdsec local API CA" -addext basicConstraints=critical,CA:TRUE \\
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  rm -f ${t.cert}
fi
if [ ! -s ${t.key} ] || [ ! -s ${t.cert} ] || ! openssl verify -CAfile ${t.caCert} ${t.cert} >/dev/null 2>&1 \
  || ! openssl x509 -in ${t.cert} -noout -checkip ${address} | grep -q 'does match' \
  || ! openssl x509 -in ${t.cert} -noout -checkend 2592000 >/dev/null; then
  echo "changed: new server certificate ${t.cert} for ${address}"
  [ "$check" = 1 ] && exit 0
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ${t.key} -out ${t.dir}/lapi.csr \\
    -subj "/CN=${address}" 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' ${address} > ${t.dir}/lapi.ext
  openssl x509 -req -in ${t.dir}/lapi.csr -CA ${t.caCert} -CAkey ${t.caKey} -CAcreateserial -days 825 -extfile ${t.dir}/lapi.ext \
    -out ${t.cert} 2>/dev/null
  rm -f ${t.dir}/lapi.csr ${t.dir}/lapi.ext
fi
if [ "$check" = 1 ]; then
  echo "modes $(stat -c %a ${t.caKey} ${t.key} ${t.caCert} ${t.cert} | tr '\\n' ' ')"
else
  chmod 0600 ${t.caKey} ${t.key}
  chmod 0644 ${t.caCert} ${t.cert}
fi
cat ${t.caCert}
`;
}

/**
 * The TLS step's read-only probe: the files' modes, whether the keys are there, and both certificates (public). The
 * controller checks them in process (lapiTlsInPlace); only when that finds something to do does the step run
 * lapiTlsScript, whose openssl checks are the same (five openssl processes per rerun were a third of the LAPI
 * host's probe time).
 */
export function lapiTlsProbe(): string {
  const t = LAPI_TLS;
  return `[ -d ${t.dir} ] || { echo @@nodir; exit 0; }
echo "modes $(stat -c %a ${t.caKey} ${t.key} ${t.caCert} ${t.cert} 2>/dev/null | tr '\n' ' ')"
echo "keys $([ -s ${t.caKey} ] && echo ca) $([ -s ${t.key} ] && echo lapi)"
echo @@cert; cat ${t.cert} 2>/dev/null
echo @@ca; cat ${t.caCert} 2>/dev/null`;
}

/**
 * What lapiTlsProbe read, checked as lapiTlsScript checks it with openssl: both keys there, the files' modes right,
 * the server certificate signed by the CA, for `address`, both valid now and for 30 more days. Returns the CA
 * certificate (as `cat` gives it) when nothing is to be done, else undefined.
 */
export function lapiTlsInPlace(out: string, address: string, now = Date.now()): string | undefined {
  if (!/^modes 600 600 644 644 ?$/m.test(out) || !/^keys ca lapi$/m.test(out)) return undefined;
  const certAt = out.indexOf('\n@@cert\n');
  const caAt = out.indexOf('\n@@ca\n');
  if (certAt < 0 || caAt < certAt) return undefined;
  const certPem = out.slice(certAt + 8, caAt);
  const caPem = out.slice(caAt + 6);
  try {
    const cert = new X509Certificate(certPem);
    const ca = new X509Certificate(caPem);
    const lives = (c: X509Certificate) => Date.parse(c.validFrom) <= now && Date.parse(c.validTo) - now > 2_592_000_000;
    const ok = cert.checkIssued(ca) && cert.verify(ca.publicKey) && lives(cert) && lives(ca) && cert.checkIP(address) === address;
    return ok ? `${caPem.trimEnd()}\n` : undefined;
  } catch {
    return undefined;
  }
}

/** Where crowdsec's files live; the defaults are Debian's. Tests point them into a temp dir. */
export interface CrowdsecPaths {
  configDir: string;
  dataDir: string;
  hubDir: string;
  pluginDir: string;
  logDir: string;
}

export const DEBIAN_PATHS: CrowdsecPaths = {
  configDir: '/etc/crowdsec',
  dataDir: '/var/lib/crowdsec/data',
  hubDir: '/var/lib/crowdsec/hub',
  pluginDir: '/usr/lib/crowdsec/plugins',
  logDir: '/var/log',
};

/**
 * Debian's crowdsec package installs its notification plugins as /usr/lib/crowdsec/plugins/{http,email,
 * slack,splunk,dummy}, but crowdsec (1.4.6) only loads plugins named `<type>-<name>` and refuses to start
 * with any other file in plugin_dir once a profile uses notifications ("plugin name .../dummy is invalid").
 * The role links the ones wpfarm uses under their proper names into a directory of its own.
 */
export const PLUGIN_LINK_DIR = '/usr/local/lib/wpfarm/crowdsec-plugins';
export const NOTIFICATION_PLUGINS = ['http', 'email', 'slack', 'splunk'] as const;

/** /etc/crowdsec/config.yaml (full file, replacing the package's). */
export function crowdsecConfig(s: LapiSettings, p: CrowdsecPaths = DEBIAN_PATHS, lapiPort = LAPI_PORT): Record<string, unknown> {
  const server: Record<string, unknown> = {
    log_level: 'info',
    listen_uri: `${s.isLapi ? (s.listenAddress ?? '0.0.0.0') : '127.0.0.1'}:${lapiPort}`,
    profiles_path: `${p.configDir}/profiles.yaml`,
    console_path: `${p.configDir}/console.yaml`,
    trusted_ips: ['127.0.0.1', '::1', ...s.privateCidrs],
  };
  if (s.onlineApi) server.online_client = { credentials_path: `${p.configDir}/online_api_credentials.yaml` };
  // no ca_cert_path here: that would be the CA of client certificates (agents log in with passwords, bouncers with keys)
  if (s.isLapi && s.tls) server.tls = { cert_file: s.tls.certFile, key_file: s.tls.keyFile };
  return {
    common: {
      daemonize: true,
      log_media: 'file',
      log_level: s.logLevel ?? 'info',
      log_dir: `${p.logDir}/`,
      log_max_size: 20,
      compress_logs: true,
      log_max_files: 10,
      working_dir: '.',
    },
    config_paths: {
      config_dir: `${p.configDir}/`,
      data_dir: `${p.dataDir}/`,
      simulation_path: `${p.configDir}/simulation.yaml`,
      hub_dir: `${p.hubDir}/`,
      index_path: `${p.hubDir}/.index.json`,
      notification_dir: `${p.configDir}/notifications/`,
      plugin_dir: `${p.pluginDir}/`,
    },
    crowdsec_service: { acquisition_path: `${p.configDir}/acquis.yaml`, acquisition_dir: `${p.configDir}/acquis.d`, parser_routines: 1 },
    // a fixed hub branch: otherwise cscli asks version.crowdsec.net for it on every hub command (fails offline)
    cscli: { output: 'human', color: 'auto', hub_branch: 'master' },
    db_config: {
      log_level: 'info',
      type: 'sqlite',
      db_path: `${p.dataDir}/crowdsec.db`,
      use_wal: true,
      flush: { max_items: 5000, max_age: '7d' },
    },
    plugin_config: { user: 'nobody', group: 'nogroup' },
    api: {
      client: { insecure_skip_verify: false, credentials_path: `${p.configDir}/local_api_credentials.yaml` },
      // agents on edge nodes run without a LAPI (crowdsec -no-api, see agentServiceDropIn) and push to the manager's
      server,
    },
    prometheus: { enabled: true, level: 'full', listen_addr: '0.0.0.0', listen_port: 6060 },
  };
}

/** systemd drop-in for agents that must not run a local API (edge nodes). */
export function agentServiceDropIn(): string {
  return renderTemplate(tpl('wpfarm-agent.conf.ejs'), {});
}

/** /etc/crowdsec/local_api_credentials.yaml of an agent registered to the LAPI (credentials, not an edited config). */
export function localApiCredentials(lapiHost: string, login: string, password: string, caCertPath: string = LAPI_TLS.caCert): string {
  return YAML.stringify({ url: lapiUrl(lapiHost), login, password, ca_cert_path: caCertPath });
}

/**
 * Pre-seeded /etc/crowdsec/online_api_credentials.yaml. Debian's postinst registers with the central
 * API unless this file exists and is non-empty, and that registration fails offline (the whole
 * package install fails). When the online API is wanted, the role registers afterwards
 * (`cscli capi register`) on the LAPI host, which overwrites this file.
 */
export function onlineApiCredentialsSeed(): string {
  return renderTemplate(tpl('online_api_credentials.yaml.ejs'), {});
}

/** A Go duration as crowdsec takes it (4h, 90m, 1h30m). */
const GO_DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

/** profiles.yaml (templates/crowdsec/profiles.yaml.ejs): ban offending IPs (longer for repeat offenders), notify the alert channels. */
export function profiles(notificationNames: string[], banDuration = '4h'): string {
  if (!GO_DURATION.test(banDuration)) throw new InputError(`crowdsec_ban_duration: '${banDuration}' is not a duration (e.g. 4h, 90m)`);
  return renderTemplate(tpl('profiles.yaml.ejs'), { ban_duration: banDuration, notifications: notificationNames });
}

export interface RenderedNotifications {
  /** file name under /etc/crowdsec/notifications → content */
  files: Record<string, string>;
  /** plugin config names for profiles.yaml */
  names: string[];
  secrets: string[];
}

const TEXT_FORMAT =
  '{{range . -}}{{$alert := . -}}{{range .Decisions -}}CrowdSec: {{.Value}} banned for {{.Duration}} ({{.Scenario}}) on {{$alert.MachineID}}\n{{end -}}{{end -}}';

/** CrowdSec notification plugins for the inventory's alert channels (same list as Alertmanager's). */
export function notifications(channels: AlertChannel[], lookup: EnvLookup): RenderedNotifications {
  const files: Record<string, string> = {};
  const names: string[] = [];
  const secrets: string[] = [];
  const missing: string[] = [];
  const env = (n: string): string => {
    const v = lookup(n);
    if (!v) {
      missing.push(n);
      return '';
    }
    secrets.push(v);
    return v;
  };
  const http = (name: string, url: string, format: string, headers: Record<string, string> = { 'Content-Type': 'application/json' }) => {
    files[`${name}.yaml`] = YAML.stringify({
      type: 'http',
      name,
      log_level: 'info',
      format,
      url,
      method: 'POST',
      headers,
      skip_tls_verification: false,
    });
    names.push(name);
  };
  channels.forEach((ch, i) => {
    const name = `wpfarm_${ch.type}_${i}`;
    switch (ch.type) {
      case 'slack':
        files[`${name}.yaml`] = YAML.stringify({
          type: 'slack',
          name,
          log_level: 'info',
          format: TEXT_FORMAT,
          webhook: env(ch.webhook_url_env),
        });
        names.push(name);
        break;
      case 'email':
        files[`${name}.yaml`] = YAML.stringify({
          type: 'email',
          name,
          log_level: 'info',
          format: TEXT_FORMAT,
          smtp_host: ch.smarthost.split(':')[0],
          smtp_port: Number(ch.smarthost.split(':')[1]),
          ...(ch.auth_username ? { smtp_username: ch.auth_username, auth_type: 'login' } : { auth_type: 'none' }),
          ...(ch.auth_password_env ? { smtp_password: env(ch.auth_password_env) } : {}),
          sender_email: ch.from,
          sender_name: 'CrowdSec (wpfarm)',
          email_subject: 'CrowdSec: new ban',
          receiver_emails: [ch.to],
          encryption_type: ch.require_tls === false ? 'none' : 'starttls',
        });
        names.push(name);
        break;
      case 'discord':
        http(name, env(ch.webhook_url_env), `{"content": "${TEXT_FORMAT.replace(/\n/g, '\\n')}"}`);
        break;
      case 'telegram':
        http(
          name,
          `https://api.telegram.org/bot${env(ch.bot_token_env)}/sendMessage`,
          `{"chat_id": ${ch.chat_id}, "text": "${TEXT_FORMAT.replace(/\n/g, '\\n')}"}`,
        );
        break;
      case 'pagerduty':
        // bans are not pages: PagerDuty receives them only if it takes warnings
        if ((ch.min_severity ?? 'warning') === 'critical') break;
        http(
          name,
          'https://events.pagerduty.com/v2/enqueue',
          `{"routing_key": "${env(ch.routing_key_env)}", "event_action": "trigger", "payload": {"summary": "CrowdSec ban", "source": "crowdsec", "severity": "warning", "custom_details": {{.|toJson}}}}`,
        );
        break;
      case 'webhook':
        http(name, ch.url ?? env(ch.url_env!), '{{.|toJson}}');
        break;
    }
  });
  if (missing.length) throw new AlertChannelError(`missing in .env: ${[...new Set(missing)].join(', ')}`);
  return { files, names, secrets };
}

export interface FirewallBouncerSettings {
  lapiHost: string;
  /** API key of this bouncer (cscli bouncers add), a secret */
  apiKey: string;
  /** the local API's CA certificate on this host (default LAPI_TLS.caCert) */
  caCertPath?: string;
}

/** /etc/crowdsec/bouncers/crowdsec-firewall-bouncer.yaml (nftables; templates/crowdsec/crowdsec-firewall-bouncer.yaml.ejs) */
export function firewallBouncerConfig(s: FirewallBouncerSettings): string {
  return renderTemplate(tpl('crowdsec-firewall-bouncer.yaml.ejs'), {
    api_url: lapiUrl(s.lapiHost),
    api_key: s.apiKey,
    ca_cert_path: s.caCertPath ?? LAPI_TLS.caCert,
    table4: BAN_SET_V4.table,
    set4: BAN_SET_V4.set,
    table6: BAN_SET_V6.table,
    set6: BAN_SET_V6.set,
  });
}

/** The nftables set the bouncer fills (family, table, set) for checks. */
export const BAN_SET_V4 = { family: 'ip', table: 'crowdsec', set: 'crowdsec-blacklists' } as const;
export const BAN_SET_V6 = { family: 'ip6', table: 'crowdsec6', set: 'crowdsec6-blacklists' } as const;
/** our ruleset around the bouncer's sets (templates/crowdsec/ban-sets.nft.ejs), loaded before the bouncer starts */
export const BAN_SETS_NFT = '/etc/crowdsec/bouncers/wpfarm-ban-sets.nft';

/**
 * The tables, sets and chains the bouncer (set-only: true) fills but never creates: the ban set dropped on input
 * AND on forward (ports Docker publishes are DNATed and never reach input), at priority filter - 1, with counters.
 * Idempotent: reloading keeps the set's elements (the bans) and the counters.
 */
export function banSetsNft(): string {
  return renderTemplate(tpl('ban-sets.nft.ejs'), { v4: BAN_SET_V4, v6: BAN_SET_V6 });
}

/** systemd drop-in for crowdsec-firewall-bouncer: our tables exist before it starts (else "could not find ipv4 table"). */
export function firewallBouncerDropIn(): string {
  return renderTemplate(tpl('firewall-bouncer.conf.ejs'), { nft_file: BAN_SETS_NFT });
}

/**
 * s02-enrich parser: behind Cloudflare, Traefik's ClientAddr (what crowdsecurity/traefik-logs takes as
 * source_ip) is a Cloudflare edge address. Replace it with the Cf-Connecting-Ip header that Traefik logs
 * (accessLog.fields.headers), but only when the hop really is Cloudflare; a client cannot spoof it.
 */
export function cloudflareClientIpParser(cloudflareIps: readonly string[] = CLOUDFLARE_IPS): string {
  const ranges = cloudflareIps.map((c) => `'${c}'`).join(', ');
  return YAML.stringify({
    name: 'wpfarm/cloudflare-client-ip',
    description: 'Use Cf-Connecting-Ip as the source of requests that came through Cloudflare',
    filter: `evt.Meta.log_type == 'http_access-log' && evt.Parsed.program startsWith 'traefik' && any([${ranges}], {IpInRange(evt.Meta.source_ip, #)})`,
    // no onsuccess: next_stage here, the other enrichers of s02 (http-logs, whitelists) must still run
    statics: [
      { meta: 'cloudflare_edge', expression: 'evt.Meta.source_ip' },
      { meta: 'source_ip', expression: 'JsonExtract(evt.Line.Raw, "request_Cf-Connecting-Ip")' },
    ],
  });
}

/** s02-enrich whitelist (templates/crowdsec/management-whitelist.yaml.ejs): the management network is never banned. */
export function managementWhitelist(cidrs: string[]): string {
  if (!cidrs.length) throw new InputError('management_cidrs is required (never banned)');
  for (const c of cidrs) {
    if (!/^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(c)) throw new InputError(`management_cidrs: '${c}' is not an IP address or CIDR`);
  }
  return renderTemplate(tpl('management-whitelist.yaml.ejs'), { cidrs });
}

// Credentials never go on a command line on the LAPI host (any local user reads those with `ps`); cscli 1.4.6 takes
// them there only (`machines add --password`, `bouncers add -k`; its `machines add -i` with a piped password
// registers an EMPTY password). Instead, scripts for the LAPI host that read them on stdin:
//   - an agent registers through the local API itself (POST /v1/watchers, the JSON body sent by curl from stdin),
//     then `cscli machines validate`; its login (POST /v1/watchers/login, same body) tells whether it is done;
//   - a bouncer's key is made by cscli (`bouncers add NAME -o raw`, printed on stdout) and carried on stdin to the
//     bouncer's host; the key in place is tested with GET /v1/decisions (X-Api-Key in a curl config on stdin) and
//     replaced only when the local API refuses it.
// Every script waits for the local API to answer (60 s; a restart takes a few seconds), prints "ok" or
// "changed: ..." lines; with check=true it changes nothing (and does not wait).

/** Where the scripts reach the local API: its URL, and the CA certificate to verify it with (none: plain HTTP in tests). */
export interface LapiEndpoint {
  url: string;
  caCert?: string;
}

function lapiCurlPrelude(api: LapiEndpoint, check: boolean): string {
  const url = api.url.replace(/\/+$/, '');
  return `set -euo pipefail
check=${check ? 1 : 0}
api=${quote(url)}
curlx() {
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10${api.caCert ? ` --cacert ${quote(api.caCert)}` : ''} "$@" 2>/dev/null || true
}
# the local API answers (any HTTP status) within 60 s; in check mode it is asked once
answered() {
  local code i
  for i in $(seq 1 $([ "$check" = 1 ] && echo 1 || echo 120)); do
    code=$("$@")
    [ "$code" != 000 ] && [ -n "$code" ] && { echo "$code"; return 0; }
    [ "$check" = 1 ] || sleep 0.5
  done
  echo 000
}`;
}

/**
 * bash for the LAPI host: wait until the local API answers (any HTTP status) over its TLS, 60 s at most; `once`: ask
 * once (the step's read-only probe).
 */
export function lapiAnswersScript(api: LapiEndpoint, once = false): string {
  return `${lapiCurlPrelude(api, once)}
heartbeat() { curlx "$api/v1/heartbeat"; }
code=$(answered heartbeat)
[ "$code" != 000 ] || { echo "the local API at $api did not answer within 60 s (journalctl -u crowdsec)" >&2; exit 1; }
echo "answered $code"
`;
}

/** The JSON body of POST /v1/watchers and /v1/watchers/login for an agent (given on stdin, one line). */
export function watcherBody(name: string, password: string): string {
  return `${JSON.stringify({ machine_id: name, password })}\n`;
}

/**
 * bash for the LAPI host, the agent's watcherBody() on stdin: logs in as the agent; when refused, registers it
 * through the local API (a machine of that name with another password is deleted first) and validates it.
 */
export function registerAgentScript(name: string, api: LapiEndpoint, check: boolean): string {
  return `${lapiCurlPrelude(api, check)}
IFS= read -r body || true
login() { printf '%s' "$body" | curlx -H 'Content-Type: application/json' --data-binary @- "$api/v1/watchers/login"; }
code=$(answered login)
[ "$code" = 200 ] && { echo ok; exit 0; }
if [ "$code" = 000 ]; then
  [ "$check" = 1 ] && { echo "changed: register agent ${name} once the local API answers"; exit 0; }
  echo "the local API at $api did not answer within 60 s (journalctl -u crowdsec)" >&2; exit 1
fi
echo "changed: register agent ${name} on the local API (its login answered $code)"
[ "$check" = 1 ] && exit 0
cscli machines delete ${quote(name)} >/dev/null 2>&1 || true
code=$(printf '%s' "$body" | curlx -H 'Content-Type: application/json' --data-binary @- "$api/v1/watchers")
[ "$code" = 201 ] || [ "$code" = 200 ] || { echo "POST /v1/watchers answered $code" >&2; exit 1; }
cscli machines validate ${quote(name)} >/dev/null
code=$(login)
[ "$code" = 200 ] || { echo "agent ${name}: login after its registration answered $code" >&2; exit 1; }
`;
}

/** Where the Traefik bouncer's key is kept, root 0600, on the edge nodes (and the LAPI host): the crowdsec role writes it
 * (made by cscli on the LAPI host), the traefik role reads it into its Docker secret. */
export const TRAEFIK_BOUNCER_KEY_FILE = '/var/lib/wpfarm/secrets/crowdsec-traefik-bouncer.key';

/**
 * bash for the LAPI host, a bouncer's current key on stdin (an empty line: none): "ok" when the local API accepts it;
 * otherwise the bouncer is registered again (deleted first when it exists) with a key made by cscli, printed last as
 * "key=<key>" (a secret: the caller registers it before anything shows the output). No key is ever on a command line
 * (cscli 1.4.6 takes a key of ours only there, so every key is cscli's own).
 */
export function bouncerKeyScript(name: string, api: LapiEndpoint, check: boolean): string {
  return `${lapiCurlPrelude(api, check)}
IFS= read -r key || true
accepted() {
  local k=\${key//\\\\/\\\\\\\\}
  k=\${k//\\"/\\\\\\"}
  printf 'header = "X-Api-Key: %s"\\n' "$k" | curlx -K - "$api/v1/decisions?ip=192.0.2.1"
}
# the key is accepted AND a bouncer of that name exists (on the LAPI host itself, Debian's postinst registered the
# firewall bouncer under a name of its own, with a key this API accepts too)
registered() { cscli bouncers list -o json 2>/dev/null | grep -qF ${quote(`"name": "${name}"`)}; }
code=$(answered accepted)
[ -n "$key" ] && [ "$code" = 200 ] && registered && { echo ok; exit 0; }
if [ "$code" = 000 ]; then
  [ "$check" = 1 ] && { echo "changed: a key for bouncer ${name} once the local API answers"; exit 0; }
  echo "the local API at $api did not answer within 60 s (journalctl -u crowdsec)" >&2; exit 1
fi
why="the local API answered $code to the one in place$(registered || echo ', no bouncer of that name')"
echo "changed: a new key for bouncer ${name} ($why)"
[ "$check" = 1 ] && exit 0
cscli bouncers delete ${quote(name)} >/dev/null 2>&1 || true
new=$(cscli bouncers add ${quote(name)} -o raw)
new=\${new//[[:space:]]/}
[ -n "$new" ] || { echo "cscli bouncers add ${name} printed no key" >&2; exit 1; }
key=$new
code=$(accepted)
[ "$code" = 200 ] || { echo "bouncer ${name}: the local API answered $code to its new key" >&2; exit 1; }
printf 'key=%s\\n' "$new"
`;
}

/** The key bouncerKeyScript printed ("key=..."), or undefined when it kept the one in place. */
export function parseBouncerKey(stdout: string): string | undefined {
  return /^key=(\S+)$/m.exec(stdout)?.[1];
}
