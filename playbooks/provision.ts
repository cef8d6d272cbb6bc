// Provision the farm's machines on DigitalOcean from the `cloud:` section of an inventory file, and
// write the result as an engine inventory (default inventory/production.yml).
//
//   node --import tsx playbooks/provision.ts --inventory inventory/production.example.yml [--check] [--destroy [--yes]]
//        (--help: every option)
import { createInterface } from 'node:readline/promises';
import { pathToFileURL } from 'node:url';
import { type CommandSpec, parseForIo } from '../lib/cli.ts';
import { EXIT, InputError } from '../lib/errors.ts';
import { lookupEnv, readEnvFile, requireCredential } from '../lib/env.ts';
import { loadCloudInventory } from '../lib/cloud/config.ts';
import {
  applyDestroy,
  applyProvision,
  describeAction,
  describeDestroy,
  makeDoClient,
  planChanges,
  planDestroy,
  planProvision,
  readActual,
} from '../lib/cloud/digitalocean.ts';
import { inventoryFromActual, removeHostsFromInventory, writeInventory } from '../lib/cloud/inventory-out.ts';
import { ensureBucket } from '../lib/cloud/spaces.ts';
import { CLUSTER_PORTS } from '../roles/common/firewall.ts';
import { CloudApiError, maskSecrets } from '../lib/cloud/retry.ts';

export interface Io {
  out: (line: string) => void;
  err: (line: string) => void;
  /** asks a question, resolves with the answer; undefined when there is no terminal */
  ask?: (question: string) => Promise<string>;
}

const CMD: CommandSpec = {
  name: 'provision.ts',
  summary: `Provisions the farm's machines on DigitalOcean from the \`cloud:\` section of the inventory given (the desired
state, e.g. inventory/production.example.yml) and writes the result as an engine inventory (--out).
Token: DIGITALOCEAN_TOKEN from the environment or .env (never from the inventory, never printed). Spaces keys
(optional): SPACES_ACCESS_KEY_ID / SPACES_SECRET_ACCESS_KEY; without them the bucket step is reported as skipped.`,
  options: [
    { name: 'out', type: 'string', arg: 'FILE', default: 'inventory/production.yml', help: 'the engine inventory written' },
    { name: 'destroy', type: 'boolean', help: "delete the resources tagged with the inventory's owner tag (asks first)" },
    { name: 'yes', type: 'boolean', help: 'with --destroy: do not ask' },
    { name: 'api-url', type: 'string', arg: 'URL', help: "the API's base URL (tests)" },
    {
      name: 'address',
      type: 'string',
      arg: 'KIND',
      choices: ['public', 'private'],
      default: 'public',
      help: 'the address the engine connects to',
    },
    // --dotenv, not --env-file: Node 20 grabs --env-file even after the script name
    { name: 'dotenv', type: 'string', arg: 'FILE', defaultHelp: '.env', help: 'credentials file' },
    { name: 'spaces-endpoint', type: 'string', arg: 'URL', help: 'the Spaces (S3) endpoint' },
    { name: 'per-page', type: 'integer', min: 1, max: 200, help: 'page size of list calls' },
    { name: 'poll-ms', type: 'integer', min: 1, help: 'poll interval while droplets start (ms)' },
  ],
  common: ['inventory', 'check', 'verbose'],
  epilog: 'Exit codes: 0 ok, 2 an API call failed, 4 bad input (inventory, arguments, missing token), 130 interrupted.',
};

export async function runProvision(argv: string[], io: Io): Promise<number> {
  const parsed = parseForIo(argv, CMD, io);
  if (typeof parsed === 'number') return parsed;
  const o = parsed.opts as {
    out: string;
    destroy: boolean;
    yes: boolean;
    'api-url'?: string;
    address: 'public' | 'private';
    dotenv?: string;
    'spaces-endpoint'?: string;
    'per-page'?: number;
    'poll-ms'?: number;
  };
  const args = { ...o, inventory: parsed.flags.inventory, check: parsed.flags.check, verbose: parsed.flags.verbose > 0 };
  let token = '';
  try {
    const perPage = args['per-page'];
    if (args.inventory.length !== 1) throw new InputError(`-i/--inventory: one desired-state file, got ${args.inventory.length}`);
    const { cloud, cloudflare, doc } = loadCloudInventory(args.inventory[0]!);
    const inputVars =
      typeof doc['vars'] === 'object' && doc['vars'] !== null && !Array.isArray(doc['vars'])
        ? (doc['vars'] as Record<string, unknown>)
        : {};
    const env = readEnvFile(args['dotenv']);
    token = requireCredential('DIGITALOCEAN_TOKEN', undefined, env);
    const client = makeDoClient({
      token,
      baseUrl: args['api-url'],
      onExchange: args.verbose
        ? (e) =>
            io.err(
              `  ${e.method} ${e.path} -> ${e.status}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ''}${e.violations ? ` VIOLATIONS: ${e.violations}` : ''}`,
            )
        : undefined,
    });
    const readOpts = { perPage, pollIntervalMs: args['poll-ms'] };
    const actual = await readActual(client, cloud, readOpts);

    if (args.destroy) {
      const plan = planDestroy(cloud, actual);
      io.out(`destroy plan (${plan.length} action(s)) for resources tagged ${cloud.ownerTag}:`);
      for (const a of plan) io.out(`  - ${describeDestroy(a)}`);
      if (cloud.spaces) io.out(`  (the Spaces bucket ${cloud.spaces.bucket} holds backups and is never deleted here)`);
      if (args.check || plan.length === 0) return EXIT.OK;
      if (!args.yes) {
        if (!io.ask) throw new InputError('--destroy needs confirmation: no terminal to ask on, pass --yes to confirm');
        const answer = (await io.ask(`type the tag "${cloud.ownerTag}" to delete these ${plan.length} resources: `)).trim();
        if (answer !== cloud.ownerTag) {
          io.err('not confirmed; nothing deleted');
          return EXIT.BAD_INPUT;
        }
      }
      const done = await applyDestroy(client, plan, { log: (l) => io.out(`  done: ${l}`) });
      const gone = removeHostsFromInventory(
        args.out,
        plan.flatMap((a) => (a.kind === 'delete-droplet' ? [a.name] : [])),
      );
      io.out(`destroyed: ${done.length} resource(s)${gone.length ? `; ${gone.length} host(s) removed from ${args.out}` : ''}`);
      return EXIT.OK;
    }

    const plan = planProvision(cloud, actual, CLUSTER_PORTS);
    const changes = planChanges(plan);
    io.out(`plan (${changes.length} change(s)):`);
    for (const a of plan) io.out(`  ${a.kind === 'note' ? '!' : a.kind === 'ensure-bucket' ? '?' : '+'} ${describeAction(a)}`);
    if (args.check) return EXIT.OK;

    const spacesKey = lookupEnv('SPACES_ACCESS_KEY_ID', env);
    const spacesSecret = lookupEnv('SPACES_SECRET_ACCESS_KEY', env);
    const secrets = [token, spacesSecret ?? ''];
    const result = await applyProvision(client, cloud, plan, {
      ...readOpts,
      log: (l) => io.out(`  done: ${l}`),
      ensureBucket:
        spacesKey && spacesSecret
          ? async (bucket, region) => {
              try {
                return await ensureBucket(bucket, {
                  region,
                  accessKeyId: spacesKey,
                  secretAccessKey: spacesSecret,
                  endpoint: args['spaces-endpoint'],
                });
              } catch (err) {
                return `failed: ${maskSecrets((err as Error).message, secrets)}`;
              }
            }
          : undefined,
    });
    const inv = inventoryFromActual(cloud, result.actual, { address: args.address, zone: cloudflare?.zone });
    // the desired-state file's own vars travel with the hosts (computed cloud vars win on a clash)
    inv.vars = { ...inputVars, ...inv.vars };
    writeInventory(args.out, inv);
    io.out(`changed: ${result.done.length}; ${Object.keys(inv.hosts).length} host(s) written to ${args.out}`);
    return EXIT.OK;
  } catch (err) {
    if (err instanceof InputError) {
      io.err(`error: ${err.message}`);
      return EXIT.BAD_INPUT;
    }
    if (err instanceof CloudApiError) {
      io.err(`error: ${maskSecrets(err.message, [token])}`);
      return EXIT.FAILED;
    }
    io.err(`error: ${maskSecrets(err instanceof Error ? err.message : String(err), [token])}`);
    return EXIT.FAILED;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const io: Io = {
    out: (l) => process.stdout.write(`${l}\n`),
    err: (l) => process.stderr.write(`${l}\n`),
    ask: process.stdin.isTTY
      ? async (q) => {
          const rl = createInterface({ input: process.stdin, output: process.stdout });
          try {
            return await rl.question(q);
          } finally {
            rl.close();
          }
        }
      : undefined,
  };
  process.on('SIGINT', () => process.exit(EXIT.INTERRUPTED));
  runProvision(process.argv.slice(2), io).then((code) => process.exit(code));
}
