// Alertmanager configuration from the inventory's alert channels. Secrets (webhook URLs, tokens,
// passwords) are never written in the inventory: a channel names the .env variable that holds them
// (`*_env`). The rendered configuration must contain them, so the renderer returns the list of secret
// values for the caller to register (ctx.secret) and mask in every output.
import YAML from 'yaml';

export type Severity = 'warning' | 'critical';

interface ChannelBase {
  /** lowest severity sent to this channel (default warning: everything) */
  min_severity?: Severity;
  /** also send resolved notifications (default true) */
  send_resolved?: boolean;
}

export type AlertChannel =
  | (ChannelBase & {
      type: 'email';
      to: string;
      from: string;
      smarthost: string;
      auth_username?: string;
      auth_password_env?: string;
      require_tls?: boolean;
    })
  | (ChannelBase & { type: 'slack'; webhook_url_env: string; channel?: string })
  | (ChannelBase & { type: 'discord'; webhook_url_env: string })
  | (ChannelBase & { type: 'pagerduty'; routing_key_env: string })
  | (ChannelBase & { type: 'telegram'; bot_token_env: string; chat_id: number })
  | (ChannelBase & { type: 'webhook'; url?: string; url_env?: string });

export class AlertChannelError extends Error {
  override name = 'AlertChannelError';
}

export type EnvLookup = (name: string) => string | undefined;

export interface RenderedAlertmanager {
  config: Record<string, unknown>;
  yaml: string;
  /** every secret value present in `yaml`; register them with ctx.secret and mask output */
  secrets: string[];
  /** .env variable names the configuration needs */
  envNames: string[];
}

const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

/** Parse and check the inventory's `alert_channels` list. */
export function parseChannels(raw: unknown): AlertChannel[] {
  // -e alert_channels='[...]' on the command line gives a string: YAML (JSON is YAML)
  if (typeof raw === 'string') raw = YAML.parse(raw) as unknown;
  if (!Array.isArray(raw) || raw.length === 0) throw new AlertChannelError('alert_channels must be a non-empty list');
  return raw.map((c: unknown, i) => {
    if (!c || typeof c !== 'object') throw new AlertChannelError(`alert_channels[${i}] must be a mapping`);
    const ch = c as Record<string, unknown>;
    const where = `alert_channels[${i}] (${String(ch.type)})`;
    const need = (k: string, kind: 'string' | 'number' = 'string'): void => {
      if (typeof ch[k] !== kind || ch[k] === '') throw new AlertChannelError(`${where}: ${k} is required (${kind})`);
    };
    for (const [k, v] of Object.entries(ch)) {
      if (k.endsWith('_env') && (typeof v !== 'string' || !ENV_NAME.test(v)))
        throw new AlertChannelError(`${where}: ${k} must name an environment variable (A-Z, 0-9, _)`);
      // a secret written inline in the inventory is refused: it would end up in git
      if (/(url|token|key|password)$/.test(k) && !k.endsWith('_env') && !(ch.type === 'webhook' && k === 'url')) {
        throw new AlertChannelError(`${where}: ${k} must not be inline; put it in .env and use ${k}_env`);
      }
    }
    if (ch.min_severity !== undefined && ch.min_severity !== 'warning' && ch.min_severity !== 'critical')
      throw new AlertChannelError(`${where}: min_severity must be warning or critical`);
    switch (ch.type) {
      case 'email':
        need('to');
        need('from');
        need('smarthost');
        if (!/^[^:\s]+:\d+$/.test(String(ch.smarthost))) throw new AlertChannelError(`${where}: smarthost must be host:port`);
        break;
      case 'slack':
      case 'discord':
        need('webhook_url_env');
        break;
      case 'pagerduty':
        need('routing_key_env');
        break;
      case 'telegram':
        need('bot_token_env');
        need('chat_id', 'number');
        break;
      case 'webhook':
        if ((ch.url === undefined) === (ch.url_env === undefined)) throw new AlertChannelError(`${where}: exactly one of url, url_env`);
        if (ch.url !== undefined && !/^https?:\/\//.test(String(ch.url))) throw new AlertChannelError(`${where}: url must be http(s)`);
        break;
      default:
        throw new AlertChannelError(`${where}: unknown type (email, slack, discord, pagerduty, telegram, webhook)`);
    }
    return ch as unknown as AlertChannel;
  });
}

function receiverEntries(ch: AlertChannel, env: (name: string) => string): Record<string, unknown[]> {
  const sr = { send_resolved: ch.send_resolved ?? true };
  switch (ch.type) {
    case 'email':
      return {
        email_configs: [
          {
            ...sr,
            to: ch.to,
            from: ch.from,
            smarthost: ch.smarthost,
            require_tls: ch.require_tls ?? true,
            ...(ch.auth_username ? { auth_username: ch.auth_username } : {}),
            ...(ch.auth_password_env ? { auth_password: env(ch.auth_password_env) } : {}),
          },
        ],
      };
    case 'slack':
      return {
        slack_configs: [
          {
            ...sr,
            api_url: env(ch.webhook_url_env),
            ...(ch.channel ? { channel: ch.channel } : {}),
            title: '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }}',
            text: '{{ range .Alerts }}{{ .Annotations.summary }}\n{{ end }}',
          },
        ],
      };
    case 'discord':
      return { discord_configs: [{ ...sr, webhook_url: env(ch.webhook_url_env) }] };
    case 'pagerduty':
      return { pagerduty_configs: [{ ...sr, routing_key: env(ch.routing_key_env) }] };
    case 'telegram':
      return { telegram_configs: [{ ...sr, bot_token: env(ch.bot_token_env), chat_id: ch.chat_id, parse_mode: 'HTML' }] };
    case 'webhook':
      return { webhook_configs: [{ ...sr, url: ch.url ?? env(ch.url_env!), max_alerts: 0 }] };
  }
}

function merge(into: Record<string, unknown[]>, add: Record<string, unknown[]>): void {
  for (const [k, v] of Object.entries(add)) into[k] = [...(into[k] ?? []), ...v];
}

/** alertmanager.yml: receivers "warning" (channels taking warnings) and "critical" (all channels). */
export function renderAlertmanager(
  channels: AlertChannel[],
  lookup: EnvLookup,
  opts: { groupWait?: string; groupInterval?: string; repeatInterval?: string } = {},
): RenderedAlertmanager {
  const secrets = new Set<string>();
  const envNames = new Set<string>();
  const missing: string[] = [];
  const env = (name: string): string => {
    envNames.add(name);
    const v = lookup(name);
    if (v === undefined || v === '') {
      missing.push(name);
      return '';
    }
    secrets.add(v);
    return v;
  };
  const warning: Record<string, unknown[]> = {};
  const critical: Record<string, unknown[]> = {};
  for (const ch of channels) {
    const entries = receiverEntries(ch, env);
    merge(critical, entries);
    if ((ch.min_severity ?? 'warning') === 'warning') merge(warning, entries);
  }
  if (missing.length) throw new AlertChannelError(`missing in .env: ${[...new Set(missing)].join(', ')}`);
  const config: Record<string, unknown> = {
    global: { resolve_timeout: '5m' },
    route: {
      receiver: 'warning',
      group_by: ['alertname', 'instance', 'service'],
      group_wait: opts.groupWait ?? '30s',
      group_interval: opts.groupInterval ?? '5m',
      repeat_interval: opts.repeatInterval ?? '4h',
      routes: [{ matchers: ['severity="critical"'], receiver: 'critical' }],
    },
    // a node that is down explains everything else that fails on it
    inhibit_rules: [{ source_matchers: ['alertname="NodeDown"'], target_matchers: ['alertname!="NodeDown"'], equal: ['instance'] }],
    receivers: [
      { name: 'warning', ...warning },
      { name: 'critical', ...critical },
    ],
  };
  return { config, yaml: YAML.stringify(config, { lineWidth: 0 }), secrets: [...secrets], envNames: [...envNames] };
}

/** Replace every secret value by *** (for logs, diffs and test output). */
export function maskSecrets(text: string, secrets: string[]): string {
  let out = text;
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) if (s) out = out.split(s).join('***');
  return out;
}
