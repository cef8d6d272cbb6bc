// Cloudflare DNS records of sites, by hand (the sites playbooks call lib/cloud/cloudflare.ts directly).
//
//   node --import tsx playbooks/dns.ts ensure NAME... [--zone example.com] [--target 198.51.100.7] [--no-proxy]
//   node --import tsx playbooks/dns.ts remove NAME... [--zone example.com]      (--help: every option)
//
// --zone and --target default to vars.cloudflare_zone and vars.edge_address of the inventory that
// playbooks/provision.ts wrote. Token: CLOUDFLARE_API_TOKEN from the environment or .env.
// Exit codes: 0 ok, 2 an API call failed, 4 bad input.
import { existsSync, readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parse } from 'yaml';
import { type CommandSpec, parseForIo } from '../lib/cli.ts';
import { EXIT, InputError } from '../lib/errors.ts';
import { readEnvFile, requireCredential } from '../lib/env.ts';
import { CloudflareDns } from '../lib/cloud/cloudflare.ts';
import { CloudApiError, maskSecrets } from '../lib/cloud/retry.ts';

export interface DnsIo {
  out: (l: string) => void;
  err: (l: string) => void;
}

const CMD: CommandSpec = {
  name: 'dns.ts',
  summary: `Cloudflare DNS records of sites, by hand. --zone and --target default to vars.cloudflare_zone and
vars.edge_address of the inventory (as playbooks/provision.ts writes it). Token: CLOUDFLARE_API_TOKEN from the
environment or .env.`,
  positionals: { usage: 'ensure|remove NAME...' },
  options: [
    { name: 'zone', type: 'string', arg: 'ZONE', defaultHelp: 'vars.cloudflare_zone', help: 'the Cloudflare zone' },
    { name: 'target', type: 'string', arg: 'ADDRESS', defaultHelp: 'vars.edge_address', help: 'what the names point at (ensure)' },
    { name: 'no-proxy', type: 'boolean', help: 'DNS only: not proxied through Cloudflare' },
    { name: 'api-url', type: 'string', arg: 'URL', help: "the API's base URL (tests)" },
    { name: 'dotenv', type: 'string', arg: 'FILE', defaultHelp: '.env', help: 'credentials file' },
  ],
  common: ['inventory', 'check', 'verbose'],
  epilog: 'Exit codes: 0 ok, 2 an API call failed, 4 bad input.',
};

export async function runDns(argv: string[], io: DnsIo): Promise<number> {
  const parsed = parseForIo(argv, CMD, io);
  if (typeof parsed === 'number') return parsed;
  const { positionals, flags } = parsed;
  const a = {
    ...(parsed.opts as { zone?: string; target?: string; 'no-proxy': boolean; 'api-url'?: string; dotenv?: string }),
    inventory: flags.inventory,
    check: flags.check,
    verbose: flags.verbose > 0,
  };
  const [cmd, ...names] = positionals;
  let token = '';
  try {
    if (cmd !== 'ensure' && cmd !== 'remove')
      throw new InputError(`unknown command ${JSON.stringify(cmd ?? '')}: ensure or remove (see --help)`);
    if (names.length === 0) throw new InputError(`${cmd}: at least one NAME is required`);
    // the inventories' vars, later files win
    let vars: Record<string, unknown> = {};
    for (const f of a.inventory.filter((x) => existsSync(x))) {
      const doc = parse(readFileSync(f, 'utf8')) as { vars?: Record<string, unknown> } | null;
      vars = { ...vars, ...doc?.vars };
    }
    const zone = a.zone ?? (typeof vars['cloudflare_zone'] === 'string' ? vars['cloudflare_zone'] : undefined);
    if (!zone) throw new InputError(`--zone: missing (and no vars.cloudflare_zone in ${a.inventory.join(', ')})`);
    token = requireCredential('CLOUDFLARE_API_TOKEN', undefined, readEnvFile(a['dotenv']));
    const dns = new CloudflareDns({
      token,
      baseUrl: a['api-url'],
      onExchange: a.verbose
        ? (e) =>
            io.err(
              `  ${e.method} ${e.path} -> ${e.status}${e.attempt > 1 ? ` (attempt ${e.attempt})` : ''}${e.violations ? ` VIOLATIONS: ${e.violations}` : ''}`,
            )
        : undefined,
    });
    if (cmd === 'ensure') {
      const target = a.target ?? (typeof vars['edge_address'] === 'string' ? vars['edge_address'] : undefined);
      if (!target) throw new InputError(`--target: missing (and no vars.edge_address in ${a.inventory.join(', ')})`);
      const r = await dns.ensureSiteRecords({ zoneName: zone, names, target, proxied: !a['no-proxy'], check: a.check });
      for (const n of r.created) io.out(`created ${n}`);
      for (const n of r.updated) io.out(`updated ${n}`);
      for (const n of r.deleted) io.out(`deleted ${n}`);
      for (const n of r.unchanged) io.out(`ok ${n}`);
      io.out(`${a.check ? 'would change' : 'changed'}: ${r.created.length + r.updated.length + r.deleted.length}`);
    } else {
      const r = await dns.removeSiteRecords({ zoneName: zone, names, check: a.check });
      for (const n of r.deleted) io.out(`deleted ${n}`);
      for (const n of r.absent) io.out(`absent ${n}`);
      io.out(`${a.check ? 'would change' : 'changed'}: ${r.deleted.length}`);
    }
    return EXIT.OK;
  } catch (err) {
    const msg = maskSecrets(err instanceof Error ? err.message : String(err), [token]);
    io.err(`error: ${msg}`);
    if (err instanceof InputError) return EXIT.BAD_INPUT;
    if (err instanceof CloudApiError) return EXIT.FAILED;
    return EXIT.FAILED;
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  runDns(process.argv.slice(2), { out: (l) => process.stdout.write(`${l}\n`), err: (l) => process.stderr.write(`${l}\n`) }).then((c) =>
    process.exit(c),
  );
}
