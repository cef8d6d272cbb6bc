// Provision the farm's machines on DigitalOcean from the `cloud:` section of an inventory file, and
// write the result as an engine inventory (default inventory/production.yml).
//
//   node --import tsx playbooks/provision.ts [--inventory inventory/production.example.yml] [--check]
//        [--out inventory/production.yml] [--destroy [--yes]] [--api-url URL] [--address public|private]
//        [--dotenv .env] [--spaces-endpoint URL] [-v]
//
// Token: DIGITALOCEAN_TOKEN from the environment or .env (never from the inventory, never printed).
// Spaces keys (optional): SPACES_ACCESS_KEY_ID / SPACES_SECRET_ACCESS_KEY; without them the bucket step
// is reported as skipped.
// (--dotenv, not --env-file: Node 20 grabs --env-file even after the script name.)
// Exit codes: 0 ok, 2 an API call failed, 4 bad input (inventory, arguments, missing token), 130 interrupted.
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline/promises';
import { pathToFileURL } from 'node:url';
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

const USAGE = 'usage: provision.ts [--inventory FILE] [--out FILE] [--check] [--destroy [--yes]] [--api-url URL] [--address public|private] [--dotenv FILE] [--spaces-endpoint URL] [-v]';

export async function runProvision(argv: string[], io: Io): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        inventory: { type: 'string', short: 'i', default: 'inventory/production.example.yml' },
        out: { type: 'string', default: 'inventory/production.yml' },
        check: { type: 'boolean', default: false },
        destroy: { type: 'boolean', default: false },
        yes: { type: 'boolean', default: false },
        'api-url': { type: 'string' },
        address: { type: 'string', default: 'public' },
        'dotenv': { type: 'string' },
        'spaces-endpoint': { type: 'string' },
        'per-page': { type: 'string' },
        'poll-ms': { type: 'string' },
        verbose: { type: 'boolean', short: 'v', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    io.err(`${(err as Error).message}\n${USAGE}`);
    return EXIT.BAD_INPUT;
  }
  if (args.help) {
    io.out(USAGE);
    return EXIT.OK;
  }
  let token = '';
  try {
    if (args.address !== 'public' && args.address !== 'private') throw new InputError(`--address must be public or private, got ${JSON.stringify(args.address)}`);
    const perPage = args['per-page'] ? Number(args['per-page']) : undefined;
    if (perPage !== undefined && !(Number.isInteger(perPage) && perPage >= 1 && perPage <= 200)) throw new InputError('--per-page must be an integer from 1 to 200');
    const { cloud, cloudflare, doc } = loadCloudInventory(args.inventory!);
    const inputVars = typeof doc['vars'] === 'object' && doc['vars'] !== null && !Array.isArray(doc['vars']) ? (doc['vars'] as Record<string, unknown>) : {};
    const env = readEnvFile(args['dotenv']);
    token = requireCredential('DIGITALOCEAN_TOKEN', undefined, env);
    const client = makeDoClient({
      token,
      baseUrl: args['api-url'],
      onExchange: args.verbose ? (e) => io.err(`  ${e.method} ${e.path} -> ${e.status}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ''}${e.violations ? ` VIOLATIONS: ${e.violations}` : ''}`) : undefined,
    });
    const readOpts = { perPage, pollIntervalMs: args['poll-ms'] ? Number(args['poll-ms']) : undefined };
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
      const gone = removeHostsFromInventory(args.out!, plan.flatMap((a) => (a.kind === 'delete-droplet' ? [a.name] : [])));
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
                return await ensureBucket(bucket, { region, accessKeyId: spacesKey, secretAccessKey: spacesSecret, endpoint: args['spaces-endpoint'] });
              } catch (err) {
                return `failed: ${maskSecrets((err as Error).message, secrets)}`;
              }
            }
          : undefined,
    });
    const inv = inventoryFromActual(cloud, result.actual, { address: args.address, zone: cloudflare?.zone });
    // the desired-state file's own vars travel with the hosts (computed cloud vars win on a clash)
    inv.vars = { ...inputVars, ...inv.vars };
    writeInventory(args.out!, inv);
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
