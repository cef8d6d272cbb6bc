// Per-site secret values: generation and the names they get in Swarm.
//
// The values live with the operator (the farm's secret store, e.g. the .env the inventory reads);
// Swarm secrets cannot be read back, so the controller must hold them to compute content-hashed names.
// The stack renderer only ever sees their sha256 (siteSecretHashes); the engine's
// dockerSecret({ name: siteSecretPrefix(id, key), content }) creates exactly the name secretName() renders.

import { randomBytes, randomInt } from 'node:crypto';
import { SITE_SECRET_KEYS, secretHash, type SiteSecretKey } from './stack.ts';

export const WP_KEY_NAMES = [
  'AUTH_KEY',
  'SECURE_AUTH_KEY',
  'LOGGED_IN_KEY',
  'NONCE_KEY',
  'AUTH_SALT',
  'SECURE_AUTH_SALT',
  'LOGGED_IN_SALT',
  'NONCE_SALT',
] as const;

// Printable, no quote/backslash/'$'/whitespace: safe in a PHP string and in the NAME=value file.
const KEY_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#%&()*+,-./:;<=>?@[]^_{|}~';

export type SiteSecretValues = Record<SiteSecretKey, string>;

function randomString(length: number): string {
  let s = '';
  for (let i = 0; i < length; i++) s += KEY_ALPHABET[randomInt(KEY_ALPHABET.length)];
  return s;
}

/** Fresh values for a new site (or a rotation): DB password and the 8 WordPress keys/salts. */
export function generateSiteSecrets(): SiteSecretValues {
  return {
    db_password: randomBytes(24).toString('base64url'), // 32 chars, [A-Za-z0-9_-]
    wp_keys: WP_KEY_NAMES.map((k) => `${k}=${randomString(64)}`).join('\n') + '\n',
  };
}

/** Checks the wp_keys file format the image's wp-config.php reads (one NAME=value per line). */
export function checkWpKeys(text: string): string | null {
  const seen = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    if (!line) continue;
    const m = /^([A-Z_]+)=(.+)$/.exec(line);
    if (!m) return 'each line must be NAME=value';
    seen.set(m[1], m[2]);
  }
  for (const k of WP_KEY_NAMES) {
    const v = seen.get(k);
    if (!v) return `${k} is missing`;
    if (v.length < 32) return `${k} is shorter than 32 characters`;
  }
  return null;
}

/** Prefix given to the engine's dockerSecret(): the object is `<prefix>_<sha256-8>`. */
export function siteSecretPrefix(id: string, key: SiteSecretKey): string {
  return `site_${id}_${key}`;
}

/** What the renderer gets (FarmStackSettings.secretHashes[id]). */
export function siteSecretHashes(values: SiteSecretValues): Record<SiteSecretKey, string> {
  const e = checkWpKeys(values.wp_keys);
  if (e) throw new Error(`wp_keys: ${e}`);
  if (values.db_password.length < 16) throw new Error('db_password: shorter than 16 characters');
  return Object.fromEntries(SITE_SECRET_KEYS.map((k) => [k, secretHash(values[k])])) as Record<SiteSecretKey, string>;
}
