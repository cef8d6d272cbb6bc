// Credentials by name: process.env first, then the repository's `.env` file (read with dotenv).
//
// `.env` is parsed with dotenv.parse() and kept in memory; it is NOT copied into process.env, so the
// credentials are not inherited by every child process (ssh, docker, ...) the controller starts.
// The effect for lookups is the same as dotenv.config() without override: a variable already set in the
// environment wins over the file. A missing default `.env` is fine; a missing explicit envFile is an error.

import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import dotenv from 'dotenv';
import { InputError } from './errors.ts';
import { MIN_SECRET_LENGTH, registerSecret } from './secrets.ts';
import { displayPath } from './yamlsrc.ts';

export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface EnvSource {
  /** absolute path of the .env file read (even when it does not exist) */
  file: string;
  /** values from the file (empty when the file does not exist) */
  values: Map<string, string>;
  exists: boolean;
}

const cache = new Map<string, { mtimeMs: number; size: number; src: EnvSource }>();

/** The credentials file named by the loaded inventory (settings.env_file); undefined: `.env`. */
let inventoryEnvFile: string | undefined;

/** Called by the inventory loader: the run's credentials come from the file its inventory names. */
export function setInventoryEnvFile(file: string | undefined): void {
  inventoryEnvFile = file;
}

/**
 * Read a dotenv file. Default: the inventory's settings.env_file, else `.env` in the current directory
 * (the repository root); a missing default is fine (a credential lookup then names the file it tried).
 * A file named by the caller must exist.
 */
export function readEnvFile(envFile?: string): EnvSource {
  const explicit = envFile !== undefined;
  const file = path.resolve(envFile ?? inventoryEnvFile ?? '.env');
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(file);
  } catch {
    if (explicit) throw new InputError(`env file not found: ${displayPath(file)}`);
    return { file, values: new Map(), exists: false };
  }
  const hit = cache.get(file);
  if (hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.src;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read env file ${displayPath(file)}: ${(e as Error).message}`);
  }
  const src: EnvSource = { file, values: new Map(Object.entries(dotenv.parse(text))), exists: true };
  cache.set(file, { mtimeMs: st.mtimeMs, size: st.size, src });
  return src;
}

/** The credentials file lookups read (the inventory's settings.env_file, else .env), as shown in messages. */
export function envFileShown(): string {
  return displayPath(readEnvFile().file);
}

/** Value of an env var: process.env wins over the .env file. Undefined when unset or empty. */
export function lookupEnv(name: string, src: EnvSource = readEnvFile()): string | undefined {
  const v = process.env[name];
  if (v !== undefined && v !== '') return v;
  const f = src.values.get(name);
  return f !== undefined && f !== '' ? f : undefined;
}

/**
 * A credential by name: looked up, checked and registered as a secret.
 * `where` ("file:line field") names the reference in messages. Throws InputError (exit 4) when the
 * name is invalid, the variable is unset or empty, or the value is too short to be masked.
 */
export function requireCredential(name: string, where: string | undefined, src: EnvSource = readEnvFile()): string {
  if (!ENV_NAME_RE.test(name)) {
    throw new InputError(`invalid env var name '${name}' (letters, digits and _ only, not starting with a digit)`, where);
  }
  const v = lookupEnv(name, src);
  if (v === undefined) {
    const looked = src.exists
      ? `in the environment nor in ${displayPath(src.file)}`
      : `in the environment, and there is no ${displayPath(src.file)} file`;
    throw new InputError(`env var ${name} is not set (or empty) ${looked}`, where);
  }
  if (v.length < MIN_SECRET_LENGTH) {
    throw new InputError(
      `env var ${name} is too short to be a credential (${v.length} characters; at least ${MIN_SECRET_LENGTH} are needed so it can be masked in output)`,
      where,
    );
  }
  registerSecret(v);
  return v;
}
