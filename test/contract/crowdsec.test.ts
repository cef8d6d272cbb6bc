// Contract tests for the crowdsec role. Acquisition entries are checked against CrowdSec's own schema
// (../shared/schemas/crowdsec, docker datasource; its common fields for the others). Debian's real
// crowdsec 1.4.6 (taken from the .deb, nothing installed system-wide, no firewall touched) then runs
// wpfarm's generated configuration on loopback: the brute-force lines wpfarm's generator writes in
// Traefik's JSON format are parsed by crowdsecurity/traefik-logs and end in a ban decision in the local
// API; a normal visitor, the management network and Cloudflare's edge are not banned; cscli unbans.
// The nftables ban set (firewall bouncer) is proven in the lab (proveBan in roles/crowdsec/bruteforce.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { validateAgainst, sharedSchemasDir } from '../../roles/traefik/schema-check.ts';
import {
  acquisition,
  acquisitionYaml,
  checkAcquisition,
  cloudflareClientIpParser,
  managementWhitelist,
  notifications,
  profiles,
  firewallBouncerConfig,
  banSetsNft,
  onlineApiCredentialsSeed,
  crowdsecConfig,
  COLLECTIONS,
  registerAgentScript,
  bouncerKeyScript,
  parseBouncerKey,
  watcherBody,
} from '../../roles/crowdsec/config.ts';
import { bruteForceReplay, traefikAccessLine, parseNftSet, appendLinesCommand } from '../../roles/crowdsec/bruteforce.ts';
import { run } from '../../roles/monitoring/tools.ts';
import { startCmdlineSampler } from '../harness/cmdline-sampler.ts';
import { ensureCrowdsecPackage, packagedBouncerConfig, OfflineCrowdsec } from '../../roles/crowdsec/offline-pipeline.ts';
import { parseChannels, maskSecrets } from '../../roles/monitoring/alertmanager.ts';

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML/JSON documents, read field by field in assertions
type FreeForm = Record<string, any>;

const COMMON_FIELDS = ['source', 'mode', 'labels', 'log_level', 'name', 'use_time_machine', 'unique_id', 'transform'];
const ATTACKER = '198.51.100.23';
const VISITOR = '203.0.113.45';
const ADMIN = '192.0.2.10'; // inside the management network below
const CF_EDGE = '172.70.1.9'; // inside Cloudflare's 172.64.0.0/13
const MGMT = ['192.0.2.0/24'];

test("acquisition: Traefik access log (file or docker source) and sshd through journald; docker entries valid against CrowdSec's schema", () => {
  const dockerSchema = JSON.parse(readFileSync(path.join(sharedSchemasDir(), 'crowdsec/acquisition-docker.json'), 'utf8')) as {
    properties: Record<string, unknown>;
  };
  for (const f of COMMON_FIELDS) assert.ok(f in dockerSchema.properties, `${f} is a common field of the official schema`);
  const fileVariant = acquisition({ syslogFiles: ['/var/log/syslog'] });
  assert.deepEqual(fileVariant[0], {
    source: 'file',
    filenames: ['/var/log/traefik/access.log'],
    force_inotify: true,
    labels: { type: 'traefik' },
  });
  for (const e of fileVariant) assert.deepEqual(checkAcquisition(e, COMMON_FIELDS), [], JSON.stringify(e));
  const dockerVariant = acquisition({ traefikSource: 'docker' });
  const r = validateAgainst('crowdsec-acquisition-docker', dockerVariant[0]);
  assert.equal(r.valid, true, r.errors.join('\n'));
  // multi-document YAML round trip
  const docs = YAML.parseAllDocuments(acquisitionYaml(fileVariant)).map((d) => d.toJS());
  assert.deepEqual(docs, fileVariant);
  // the checks are not vacuous
  assert.equal(validateAgainst('crowdsec-acquisition-docker', { ...dockerVariant[0], service_nme: ['x'] }).valid, false);
  assert.equal(validateAgainst('crowdsec-acquisition-docker', { ...dockerVariant[0], labels: {} }).valid, false);
  assert.notDeepEqual(checkAcquisition({ source: 'file', filenames: ['relative.log'], labels: { type: 'traefik' } }, COMMON_FIELDS), []);
  assert.notDeepEqual(
    checkAcquisition({ source: 'file', filename: '/x', labels: { type: 'traefik' }, poll_without_inotfy: true }, COMMON_FIELDS),
    [],
  );
  assert.notDeepEqual(
    checkAcquisition({ source: 'journalctl', journalctl_filter: ['ssh'], labels: { type: 'syslog' } }, COMMON_FIELDS),
    [],
  );
});

test('notifications for every alert channel, referenced by the profiles; secrets come from .env and are masked', () => {
  const channels = parseChannels([
    {
      type: 'email',
      to: 'ops@example.net',
      from: 'cs@example.net',
      smarthost: 'smtp.example.net:587',
      auth_username: 'cs',
      auth_password_env: 'SMTP_PASSWORD',
    },
    { type: 'slack', webhook_url_env: 'SLACK_WEBHOOK_URL' },
    { type: 'discord', webhook_url_env: 'DISCORD_WEBHOOK_URL' },
    { type: 'telegram', bot_token_env: 'TELEGRAM_BOT_TOKEN', chat_id: -100123 },
    { type: 'pagerduty', routing_key_env: 'PAGERDUTY_ROUTING_KEY', min_severity: 'critical' },
    { type: 'webhook', url: 'http://127.0.0.1:9099/crowdsec' },
  ]);
  const env: Record<string, string> = {
    SMTP_PASSWORD: 'pw-31337x',
    SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T/B/slacksecret',
    DISCORD_WEBHOOK_URL: 'https://discord.com/api/webhooks/1/discordsecret',
    TELEGRAM_BOT_TOKEN: '42:telegramsecret',
    PAGERDUTY_ROUTING_KEY: 'pdsecret',
  };
  const n = notifications(channels, (k) => env[k]);
  // PagerDuty pages only critical alerts: bans are not sent there
  assert.deepEqual(n.names, ['wpfarm_email_0', 'wpfarm_slack_1', 'wpfarm_discord_2', 'wpfarm_telegram_3', 'wpfarm_webhook_5']);
  for (const name of n.names) {
    const doc = YAML.parse(n.files[`${name}.yaml`]!) as Record<string, unknown>;
    assert.equal(doc.name, name);
    assert.match(String(doc.type), /^(email|slack|http)$/);
  }
  const prof = YAML.parseAllDocuments(profiles(n.names)).map((d) => d.toJS() as Record<string, unknown>);
  assert.deepEqual(prof[0]!.notifications, n.names);
  assert.deepEqual(prof[0]!.decisions, [{ type: 'ban', duration: '4h' }]);
  const all = Object.values(n.files).join('\n');
  for (const s of Object.values(env).filter((s) => s !== 'pdsecret')) assert.ok(all.includes(s));
  const masked = maskSecrets(all, n.secrets);
  for (const s of Object.values(env)) assert.ok(!masked.includes(s));
  assert.throws(() => notifications(channels, () => undefined), /SMTP_PASSWORD/);
});

const CACHE = path.join(tmpdir(), 'wpfarm-cache', 'crowdsec-deb');

/** Paths of every leaf key: "nftables.ipv4.table". */
function keyPaths(doc: unknown, prefix = ''): string[] {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) return [prefix];
  return Object.entries(doc as Record<string, unknown>).flatMap(([k, v]) => keyPaths(v, prefix ? `${prefix}.${k}` : k));
}

test('firewall bouncer: nftables mode, LAPI on the manager, only keys the packaged bouncer knows', async () => {
  // biome-ignore lint/suspicious/noExplicitAny: free-form document
  const cfg = YAML.parse(firewallBouncerConfig({ lapiHost: '10.77.0.11', apiKey: 'k3y' })) as Record<string, any>; // free-form document
  // Debian's default file (0.0.25) lists every option; ours must not invent any
  const packaged = YAML.parse((await packagedBouncerConfig(CACHE)).replace(/\$\{[A-Z_]+\}/g, 'x'));
  const known = new Set(keyPaths(packaged));
  // ca_cert_path is not in the packaged file but is an option of the packaged binary (its yaml tags)
  const binary = readFileSync(path.join(CACHE, 'root-bouncer/usr/bin/crowdsec-firewall-bouncer')).toString('latin1');
  assert.ok(binary.includes('yaml:"ca_cert_path"'), 'the packaged bouncer reads ca_cert_path');
  known.add('ca_cert_path');
  for (const k of keyPaths(cfg)) assert.ok(known.has(k), `bouncer option ${k} is not in the packaged configuration`);
  assert.equal(cfg.mode, 'nftables');
  // the local API over TLS, verified against the role's CA; the bouncer only fills the sets (our chains drop them)
  assert.equal(cfg.api_url, 'https://10.77.0.11:8080/');
  assert.equal(cfg.ca_cert_path, '/etc/crowdsec/tls/ca.crt');
  assert.equal(cfg.insecure_skip_verify, false);
  assert.equal(cfg.nftables.ipv4['set-only'], true);
  assert.equal(cfg.nftables.ipv6['set-only'], true);
  assert.match(banSetsNft(), /table ip crowdsec \{\n {2}set crowdsec-blacklists \{\n {4}type ipv4_addr; flags timeout;/);
  assert.match(banSetsNft(), /type filter hook forward priority filter - 1; policy accept;/);
  assert.equal(cfg.nftables.ipv4.table, 'crowdsec');
  assert.equal(cfg.blacklists_ipv4, 'crowdsec-blacklists');
  assert.ok(onlineApiCredentialsSeed().trim().length > 0, "non-empty: Debian's postinst then skips the online registration");
  // parseNftSet reads the set as `nft -j list set` prints it
  const nftJson = JSON.stringify({
    nftables: [
      { metainfo: { version: '1.0.6' } },
      {
        set: {
          family: 'ip',
          name: 'crowdsec-blacklists',
          table: 'crowdsec',
          type: 'ipv4_addr',
          flags: ['timeout'],
          elem: [{ elem: { val: ATTACKER, timeout: 14400, expires: 14390 } }, '192.0.2.99'],
        },
      },
    ],
  });
  assert.deepEqual(parseNftSet(nftJson), [ATTACKER, '192.0.2.99']);
  // biome-ignore lint/suspicious/noExplicitAny: free-form
  const agent = crowdsecConfig({ lapiHost: '10.77.0.11', privateCidrs: ['10.77.0.0/24'], isLapi: false, onlineApi: false }) as FreeForm; // free-form
  assert.equal(agent.api.server.listen_uri, '127.0.0.1:8080');
  assert.equal(agent.api.server.online_client, undefined);
});

test('the lab proof appends the replay to the access log byte for byte (real bash)', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'wpfarm-append-'));
  try {
    const lines = bruteForceReplay({ attacker: ATTACKER, visitor: VISITOR, start: new Date(), viaCloudflare: CF_EDGE });
    lines.push(JSON.stringify({ odd: 'it\'s $HOME `x` \\ "q"' }));
    const log = path.join(dir, "access log's.log");
    // remote login shells are bash (lib/shell.ts): zx's quote uses bash's $'...' where needed
    const r = await run('bash', ['-c', appendLinesCommand(lines, log)]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(log, 'utf8'), lines.join('\n') + '\n');
    const attempts = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l['request_Cf-Connecting-Ip'] === ATTACKER && l.RequestPath === '/wp-login.php');
    assert.equal(attempts.length, 12);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let cs: OfflineCrowdsec | undefined;
let work = '';
before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'wpfarm-crowdsec-'));
});
after(async () => {
  await cs?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test("Debian's crowdsec runs the generated configuration: brute force banned, visitor/management/Cloudflare edge not, cscli unbans", {
  timeout: 600_000,
}, async () => {
  const pkg = await ensureCrowdsecPackage(CACHE);
  // the lines carry every field the packaged parser extracts
  const parserYaml = readFileSync(path.join(pkg, 'usr/share/crowdsec/hub/parsers/s01-parse/crowdsecurity/traefik-logs.yaml'), 'utf8');
  const fields = [...parserYaml.matchAll(/JsonExtract\(evt\.Parsed\.message, "([^"]+)"\)/g)].map((m) => m[1]!);
  assert.ok(fields.length >= 10);
  const sample = JSON.parse(traefikAccessLine({ clientIp: ATTACKER, path: '/wp-login.php', method: 'POST', time: new Date() })) as Record<
    string,
    unknown
  >;
  for (const f of fields) assert.ok(f in sample, `access-log line lacks ${f}`);

  const lapiPort = await freePort();
  cs = new OfflineCrowdsec(pkg, work);
  await cs.setup({
    collections: COLLECTIONS,
    acquisition: acquisition({ traefikLogPath: path.join(work, 'access.log') }),
    enrichers: { 'cloudflare-client-ip.yaml': cloudflareClientIpParser(), 'wpfarm-management-whitelist.yaml': managementWhitelist(MGMT) },
    lapiPort,
  });
  const t = await cs.test();
  assert.equal(t.code, 0, `crowdsec -t: ${t.stdout}${t.stderr}`);
  // the symlinked collections are what cscli itself reports as enabled (asked with no network at all)
  const list = await cs.cscliOffline(['collections', 'list', '-o', 'json']);
  assert.equal(list.code, 0, list.stderr);
  const enabled = (JSON.parse(list.stdout) as { collections: Array<{ name: string; status: string }> }).collections
    .filter((c) => /enabled/.test(c.status))
    .map((c) => c.name);
  for (const c of COLLECTIONS) assert.ok(enabled.includes(c), `${c} enabled (cscli: ${enabled.join(', ')})`);
  await cs.startLapi(lapiPort);

  // the role's registration scripts against the real cscli and local API (a wrapper on PATH adds -c <config>: on a
  // node cscli finds /etc/crowdsec/config.yaml itself): credentials travel on stdin only, and a sampler of every
  // process's command line (/proc/*/cmdline every ~2 ms, as `ps` shows them) never sees one, while it does see the
  // scripts' cscli and curl processes
  const bin = path.join(work, 'bin');
  mkdirSync(bin);
  writeFileSync(path.join(bin, 'cscli'), `#!/bin/sh\nexec ${path.join(pkg, 'usr/bin/cscli')} -c ${cs.config} "$@"\n`, { mode: 0o755 });
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
  const api = { url: `http://127.0.0.1:${lapiPort}/` };
  const bash = (script: string, stdin: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const p = spawn('bash', ['--norc', '-c', script], { env });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      p.stdin.end(stdin);
    });
  const sampler = startCmdlineSampler();
  const password = 'agent-password-0123456789';
  const agent = registerAgentScript('edge-7', api, false);
  const r1 = await bash(agent, watcherBody('edge-7', password));
  assert.equal(r1.code, 0, r1.stderr);
  assert.match(r1.stdout, /^changed: register agent edge-7 on the local API \(its login answered 40\d\)$/m);
  // what the agent does: log in with that password (an empty one must not work)
  // the agent's login, through curl with the body on stdin (as the role's script; Node's fetch was refused by
  // this gin/jwt login for the same JSON body)
  const status = async (r: Promise<{ stdout: string }>) => ({ status: Number((await r).stdout.trim().slice(-3)) });
  const login = (pw: string) =>
    status(
      bash(
        `curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @- ${api.url}v1/watchers/login`,
        watcherBody('edge-7', pw),
      ),
    );
  assert.equal((await login(password)).status, 200, 'the agent logs in with its password');
  assert.notEqual((await login('')).status, 200, 'not with an empty password');
  const again = await bash(agent, watcherBody('edge-7', password));
  assert.equal(again.stdout.trim(), 'ok', `rerun: ${again.stdout}${again.stderr}`);
  assert.equal((await bash(registerAgentScript('edge-7', api, true), watcherBody('edge-7', password))).stdout.trim(), 'ok');
  // a new password (the registration secret changed): check mode says so, the real run re-registers
  const pw2 = 'agent-password-9876543210';
  assert.match((await bash(registerAgentScript('edge-7', api, true), watcherBody('edge-7', pw2))).stdout, /^changed: /m);
  const r2 = await bash(agent, watcherBody('edge-7', pw2));
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal((await login(pw2)).status, 200);
  assert.notEqual((await login(password)).status, 200, 'the old password no longer logs in');

  // a bouncer: no key yet → cscli makes one (printed as key=...), the local API accepts it; the same key → ok
  const bouncer = bouncerKeyScript('firewall-edge-7', api, false);
  const b1 = await bash(bouncer, '\n');
  assert.equal(b1.code, 0, b1.stderr);
  const key = parseBouncerKey(b1.stdout);
  assert.ok(key && key.length >= 16, `a key was printed: ${b1.stdout.replace(/key=.*/, 'key=***')}`);
  const pull = (k: string) =>
    status(
      bash(`curl -s -o /dev/null -w '%{http_code}' -K - ${api.url}v1/decisions`, `header = "X-Api-Key: ${k.replace(/[\\"]/g, '\\$&')}"\n`),
    );
  assert.equal((await pull(key)).status, 200, 'the bouncer pulls decisions with its key');
  const b2 = await bash(bouncer, `${key}\n`);
  assert.equal(b2.stdout.trim(), 'ok', `the key in place is kept: ${b2.stdout}${b2.stderr}`);
  assert.equal((await bash(bouncerKeyScript('firewall-edge-7', api, true), `${key}\n`)).stdout.trim(), 'ok');
  // a key the local API refuses (Debian's postinst registered the bouncer with another API) is replaced
  const b3 = await bash(bouncer, 'not-the-key\n');
  const key2 = parseBouncerKey(b3.stdout);
  assert.ok(key2 && key2 !== key, b3.stderr);
  assert.equal((await pull(key2)).status, 200);
  assert.equal((await pull(key)).status, 403, "the bouncer's old key is revoked");
  // the Traefik bouncer: its key is cscli's own too (the crowdsec role keeps it 0600 on the edge nodes for the traefik
  // role); the one in place is kept, a rerun with it is ok
  const t1 = await bash(bouncerKeyScript('traefik', api, false), '\n');
  assert.equal(t1.code, 0, t1.stderr);
  const traefikKey = parseBouncerKey(t1.stdout);
  assert.ok(traefikKey && traefikKey !== key2, 'cscli made the Traefik bouncer a key of its own');
  assert.equal((await pull(traefikKey)).status, 200, "the Traefik bouncer's key pulls decisions");
  assert.equal((await bash(bouncerKeyScript('traefik', api, false), `${traefikKey}\n`)).stdout.trim(), 'ok');
  const seen = await sampler.stop();
  assert.ok(
    seen.some((c) => /(^|\/)cscli /.test(c)) && seen.some((c) => /^curl /.test(c)),
    `the sampler saw cscli and curl: ${seen.length}`,
  );
  for (const secret of [password, pw2, key, key2, traefikKey])
    assert.deepEqual(
      seen.filter((c) => c.includes(secret)),
      [],
      'no agent password or bouncer key (firewall or Traefik) on a command line',
    );
  console.log(`sampler: ${seen.length} distinct command lines, none holding a password or a key`);

  const start = new Date(Date.now() - 120_000);
  const replays: Record<string, string[]> = {
    direct: bruteForceReplay({ attacker: ATTACKER, visitor: VISITOR, start }),
    admin: bruteForceReplay({ attacker: ADMIN, visitor: VISITOR, start }),
    cloudflare: bruteForceReplay({ attacker: '198.51.100.77', visitor: '203.0.113.46', viaCloudflare: CF_EDGE, start }),
  };
  for (const [name, lines] of Object.entries(replays)) {
    const file = path.join(work, `${name}.log`);
    writeFileSync(file, lines.join('\n') + '\n');
    const r = await cs.replay(file, 'traefik');
    assert.equal(r.code, 0, `${name}: ${r.stderr.slice(-2000)}`);
  }
  const decisions = await cs.decisions();
  const banned = decisions.filter((d) => d.type === 'ban').map((d) => d.value);
  assert.ok(banned.includes(ATTACKER), `attacker banned (decisions: ${JSON.stringify(decisions)})`);
  assert.equal(decisions.find((d) => d.value === ATTACKER)!.scenario, 'crowdsecurity/http-bf-wordpress_bf');
  assert.ok(banned.includes('198.51.100.77'), 'the client behind Cloudflare is banned by its Cf-Connecting-Ip');
  for (const innocent of [VISITOR, '203.0.113.46', ADMIN, CF_EDGE]) assert.ok(!banned.includes(innocent), `${innocent} must not be banned`);

  const del = await cs.cscli(['decisions', 'delete', '--ip', ATTACKER]);
  assert.equal(del.code, 0, del.stderr);
  const after2 = (await cs.decisions()).map((d) => d.value);
  assert.ok(!after2.includes(ATTACKER), 'cscli decisions delete unbans');
  assert.ok(after2.includes('198.51.100.77'), 'other decisions stay');

  // without wpfarm's Cloudflare enricher the packaged parser bans Cloudflare's edge (the pitfall it fixes)
  rmSync(path.join(cs.paths.configDir, 'parsers/s02-enrich/cloudflare-client-ip.yaml'));
  const file = path.join(work, 'cloudflare-raw.log');
  writeFileSync(
    file,
    bruteForceReplay({ attacker: '198.51.100.78', visitor: '203.0.113.47', viaCloudflare: CF_EDGE, start }).join('\n') + '\n',
  );
  assert.equal((await cs.replay(file, 'traefik')).code, 0);
  const raw = (await cs.decisions()).map((d) => d.value);
  assert.ok(raw.includes(CF_EDGE), 'the edge address is what gets banned without the enricher');
  assert.ok(!raw.includes('198.51.100.78'));
});
