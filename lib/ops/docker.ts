// Docker primitives for Swarm: swarm facts, overlay networks, secrets/configs under content-hashed
// names, and stack deploy that diffs the rendered stack file before deploying.
//
// Secrets and configs are immutable in Swarm: a changed value gets a new name `<prefix>_<sha256-8>`
// (the stack file refers to it with `name:`), old versions are removed once no service uses them.
// Secret content never appears in a command line or in output: it passes through stdin.
//
// These operations talk to the local engine of the host they run on: networks, secrets, configs and
// stacks need a swarm manager (use runOnce or delegateTo a manager in roles).
import { createHash } from 'node:crypto';
import YAML from 'yaml';
import type { Operation, Plan, Probe, StepContext, StepOptions } from '../types.ts';
import { InputError } from '../errors.ts';
import { argSpec, defineOp, unchanged } from './base.ts';
import { z } from '../schema.ts';
import { GATHER_VAR, MEMO_VAR, gathered, memo, raw, sh } from '../shell.ts';
import { SWARM_INFO, parseSwarm, type SwarmFact } from '../facts.ts';
import { b64decode, keyValues, lineDiff, nonEmptyLines, parts, sha256 } from './sys-util.ts';

export { parseSwarm, type SwarmFact };

const DOCKER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** where stackDeploy keeps the last deployed render of each stack */
export const STACK_DIR = '/var/lib/wpfarm/stacks';

/** this node's swarm state in a probe (once per probe batch: memo) */
const SWARM_PROBE = `echo %%swarm; ${memo(SWARM_INFO)}`;

function needManager(ctx: StepContext, swarm: SwarmFact, what: string): string | null {
  if (swarm.state === 'active' && swarm.isManager) return null;
  const why =
    swarm.state === 'unavailable'
      ? 'docker does not answer'
      : swarm.state !== 'active'
        ? `swarm state is ${swarm.state}`
        : 'this node is not a swarm manager';
  // in check mode an earlier step (docker install, swarm init) may be what makes this work
  if (ctx.check) return `${why} (an earlier step must make it a swarm manager)`;
  throw new Error(`${what}: ${why} on ${ctx.host.name}: run it on a swarm manager`);
}

// ---------------------------------------------------------------------------------------------
// swarm facts

/** Read the swarm state (docker info .Swarm); changes nothing; registers a SwarmFact. */
export function swarmFacts(options: StepOptions = {}): Operation {
  return defineOp({
    kind: 'swarmFacts',
    title: 'swarm facts',
    options,
    probe: () => ({ script: `( ${memo(SWARM_INFO)}\n) 2>/dev/null`, become: options.become }),
    plan: (_ctx, out) => unchanged(parseSwarm(out), 'read only'),
  });
}

// ---------------------------------------------------------------------------------------------
// networks

/**
 * `docker network inspect --format '{{json .}}'` of one network, in a probe: in a batch that gathered several
 * (`networks`), one inspect for all of them (memo) and this one's line (by its name); alone, or when that answer has
 * no line of that name (a network missing, docker not answering), the network asked on its own.
 */
export function networkInspect(name: string): string {
  const all = memo(`docker network inspect --format '{{.Name}} {{json .}}' -- $${GATHER_VAR}networks`);
  return [
    sh`n=${name}; l=''`,
    `case " ${gathered('networks')} " in *" $n "*) l=$(${all} 2>/dev/null | awk -v n="$n" '$1 == n { print substr($0, length(n) + 2); exit }') ;; esac`,
    `if [ -n "$l" ]; then printf '%s\\n' "$l"; else docker network inspect --format '{{json .}}' -- "$n"; fi`,
  ].join('\n');
}

export interface NetworkArgs {
  name: string;
  driver?: 'overlay' | 'bridge';
  attachable?: boolean;
  internal?: boolean;
  /** IPsec between nodes. 'auto': only when the kernel has ESP (without it, encrypted overlays pass no traffic) */
  encrypted?: boolean | 'auto';
  labels?: Record<string, string>;
  subnet?: string;
  state?: 'present' | 'absent';
  /** remove and create again when the existing network differs (fails while containers use it) */
  recreate?: boolean;
}

interface NetInspect {
  Driver?: string;
  Attachable?: boolean;
  Internal?: boolean;
  Options?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
  IPAM?: { Config?: Array<{ Subnet?: string }> | null };
}

const labelsSpec = z
  .record(z.string().regex(/^[A-Za-z0-9_.\-/]+$/, { error: (iss) => `invalid label key ${JSON.stringify(iss.input)}` }), z.string())
  .optional();

export const NETWORK_ARGS = argSpec<NetworkArgs>()('dockerNetwork', {
  name: z.string().regex(DOCKER_NAME, { error: (iss) => `invalid network name ${JSON.stringify(iss.input)}` }),
  driver: z.enum(['overlay', 'bridge']).default('overlay'),
  attachable: z.boolean().optional(),
  internal: z.boolean().optional(),
  encrypted: z.union([z.boolean(), z.literal('auto')]).optional(),
  labels: labelsSpec,
  subnet: z.string().optional(),
  state: z.enum(['present', 'absent']).default('present'),
  recreate: z.boolean().optional(),
});

export function dockerNetwork(input: NetworkArgs, options: StepOptions = {}): Operation {
  return NETWORK_ARGS.build(input, (a) => dockerNetworkOp(a, options));
}

function dockerNetworkOp(a: z.output<typeof NETWORK_ARGS.schema>, options: StepOptions): Operation {
  const driver = a.driver ?? 'overlay';
  const state = a.state ?? 'present';

  return defineOp({
    kind: 'dockerNetwork',
    title: `docker network ${a.name}${state === 'absent' ? ' absent' : ''}`,
    options,
    probe: () => ({
      script: [
        '(',
        `echo %%net; ${networkInspect(a.name)}`,
        SWARM_PROBE,
        'echo %%kernel; if grep -qw esp4 /proc/crypto || [ -d /sys/module/esp4 ]; then echo esp=yes; else echo esp=no; fi',
        ') 2>/dev/null',
      ].join('\n'),
      become: options.become,
      gather: { networks: [a.name] },
    }),
    plan: (ctx: StepContext, out: string): Plan => {
      const p = parts(out);
      const text = nonEmptyLines(p.get('net') ?? '').find((l) => l.startsWith('{'));
      const cur = text ? (JSON.parse(text) as NetInspect) : null;
      const esp = keyValues(p.get('kernel') ?? '').esp === 'yes';
      const swarm = parseSwarm(p.get('swarm') ?? '');
      if (state === 'absent') {
        if (!cur) return unchanged({ name: a.name, exists: false }, 'network already absent');
        return {
          changed: true,
          changes: [`remove network ${a.name}`],
          apply: { script: sh`docker network rm -- ${a.name}`, become: options.become },
          result: { name: a.name, exists: false },
        };
      }
      let encrypted = a.encrypted === true;
      if (a.encrypted === 'auto') encrypted = esp && driver === 'overlay';
      if (a.encrypted === true && !esp)
        throw new Error(
          `network ${a.name}: encrypted overlay requested but the kernel of ${ctx.host.name} has no ESP (IPsec): it would silently pass no traffic between nodes; use encrypted: 'auto' or false`,
        );
      const result = { name: a.name, exists: true, encrypted };
      const args: string[] = ['--driver', driver];
      if (a.attachable) args.push('--attachable');
      if (a.internal) args.push('--internal');
      if (encrypted) args.push('--opt', 'encrypted');
      if (a.subnet) args.push('--subnet', a.subnet);
      for (const [k, v] of Object.entries(a.labels ?? {})) args.push('--label', `${k}=${v}`);
      const create = sh`docker network create ${args} -- ${a.name}`;
      const note = driver === 'overlay' ? needManager(ctx, swarm, `network ${a.name}`) : null;
      if (!cur) {
        const desc = [driver, a.attachable ? 'attachable' : '', a.internal ? 'internal' : '', encrypted ? 'encrypted' : '']
          .filter(Boolean)
          .join(', ');
        return {
          changed: true,
          changes: [`create network ${a.name} (${desc})${note ? `; ${note}` : ''}`],
          apply: { script: create, become: options.become },
          result,
        };
      }
      const diffs: string[] = [];
      if ((cur.Driver ?? '') !== driver) diffs.push(`driver ${cur.Driver} -> ${driver}`);
      if (!!cur.Attachable !== !!a.attachable) diffs.push(`attachable ${!!cur.Attachable} -> ${!!a.attachable}`);
      if (!!cur.Internal !== !!a.internal) diffs.push(`internal ${!!cur.Internal} -> ${!!a.internal}`);
      const curEnc = Object.prototype.hasOwnProperty.call(cur.Options ?? {}, 'encrypted');
      if (curEnc !== encrypted) diffs.push(`encrypted ${curEnc} -> ${encrypted}`);
      for (const [k, v] of Object.entries(a.labels ?? {}))
        if ((cur.Labels ?? {})[k] !== v) diffs.push(`label ${k}: ${JSON.stringify((cur.Labels ?? {})[k] ?? null)} -> ${JSON.stringify(v)}`);
      const curSubnet = cur.IPAM?.Config?.[0]?.Subnet ?? '';
      if (a.subnet && curSubnet !== a.subnet) diffs.push(`subnet ${curSubnet || 'auto'} -> ${a.subnet}`);
      if (!diffs.length) return unchanged(result, 'network already exists as wanted');
      if (!a.recreate)
        throw new Error(
          `network ${a.name} exists with other settings (${diffs.join('; ')}): networks are immutable; remove it or set recreate: true`,
        );
      return {
        changed: true,
        changes: [`recreate network ${a.name}: ${diffs.join('; ')}`],
        apply: { script: `set -e\n${sh`docker network rm -- ${a.name}`}\n${create}`, become: options.become },
        result,
      };
    },
  });
}

// ---------------------------------------------------------------------------------------------
// secrets and configs

export type ObjectKind = 'secret' | 'config';

/** The content-hashed name of a secret/config version: `<prefix>_<first 8 hex of sha256>`. */
export function hashedName(prefix: string, content: string | Buffer): string {
  return `${prefix}_${sha256(content).slice(0, 8)}`;
}

const HASHED = /^(.+)_([0-9a-f]{8})$/;

/** The names of every secret or config, in a probe (once per probe batch: memo; every probe filters it itself). */
const objectNames = (kind: ObjectKind): string => memo(`docker ${kind} ls --format '{{.Name}}'`);

export interface SecretArgs {
  /** prefix; the object is created as `<name>_<sha256-8>` */
  name: string;
  content: string | Buffer;
  labels?: Record<string, string>;
}

export interface SecretResult {
  /** the hashed name to put in the stack file (`name:`) */
  name: string;
  prefix: string;
  /** other versions present (candidates for secretPrune) */
  otherVersions: string[];
}

const versionedArgs = (kind: ObjectKind) =>
  argSpec<SecretArgs>()(kind === 'secret' ? 'dockerSecret' : 'dockerConfig', {
    name: z
      .string()
      .regex(DOCKER_NAME, { error: (iss) => `invalid ${kind} name prefix ${JSON.stringify(iss.input)}` })
      .max(54),
    content: z.union([z.string(), z.instanceof(Buffer)]),
    labels: labelsSpec,
  });
export const SECRET_ARGS = versionedArgs('secret');
export const CONFIG_ARGS = versionedArgs('config');

function versioned(kind: ObjectKind, input: SecretArgs, options: StepOptions): Operation {
  return (kind === 'secret' ? SECRET_ARGS : CONFIG_ARGS).build(input, (a) => versionedOp(kind, a, options));
}

function versionedOp(kind: ObjectKind, a: z.output<typeof SECRET_ARGS.schema>, options: StepOptions): Operation {
  const name = hashedName(a.name, a.content);
  const labels = { ...(a.labels ?? {}), 'wpfarm.prefix': a.name };

  return defineOp({
    kind: kind === 'secret' ? 'dockerSecret' : 'dockerConfig',
    title: `docker ${kind} ${a.name}`,
    options,
    probe: () => ({
      script: [
        '(',
        // the names that start with the prefix (the plan keeps `<prefix>_<8 hex>`)
        `echo %%versions; ${objectNames(kind)} | ${sh`awk -v p=${`${a.name}_`} 'index($0, p) == 1'`}`,
        SWARM_PROBE,
        ') 2>/dev/null',
      ].join('\n'),
      become: options.become,
    }),
    plan: (ctx: StepContext, out: string): Plan => {
      // mask the value in every output (short values would mask too much unrelated text)
      if (kind === 'secret' && typeof a.content === 'string' && a.content.length >= 6) ctx.secret(a.content);
      const p = parts(out);
      const all = nonEmptyLines(p.get('versions') ?? '').filter((n) => HASHED.exec(n)?.[1] === a.name);
      const result: SecretResult = { name, prefix: a.name, otherVersions: all.filter((n) => n !== name) };
      if (all.includes(name)) return unchanged(result, `${kind} ${name} already exists`);
      const note = needManager(ctx, parseSwarm(p.get('swarm') ?? ''), `${kind} ${name}`);
      const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
      return {
        changed: true,
        changes: [
          `create ${kind} ${name}${result.otherVersions.length ? ` (other versions: ${result.otherVersions.join(', ')})` : ''}${note ? `; ${note}` : ''}`,
        ],
        // the content goes through stdin ("-"), never on the command line
        apply: { script: sh`docker ${kind} create ${labelArgs} -- ${name} -`, stdin: a.content, become: options.become },
        result,
      };
    },
  });
}

export const dockerSecret = (a: SecretArgs, options: StepOptions = {}): Operation => versioned('secret', a, options);
export const dockerConfig = (a: SecretArgs, options: StepOptions = {}): Operation => versioned('config', a, options);

export interface PruneArgs {
  kind: ObjectKind;
  /** prefixes whose old versions (`<prefix>_<8 hex>`) are removed */
  prefixes: string[];
  /** names never removed (e.g. the versions just created) */
  keep?: string[];
}

/** Shell listing `name` lines of every secret/config referenced by any service spec. */
const IN_USE = sh`docker service ls -q | xargs -r docker service inspect --format ${'{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{println .SecretName}}{{end}}{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{println .ConfigName}}{{end}}'}`;

/** Remove old versions of content-hashed secrets/configs that no service references. */
export const PRUNE_ARGS = argSpec<PruneArgs>()('secretPrune', {
  kind: z.enum(['secret', 'config']),
  prefixes: z.array(z.string().regex(DOCKER_NAME, { error: (iss) => `invalid name prefix ${JSON.stringify(iss.input)}` })),
  keep: z.array(z.string()).optional(),
});

export function secretPrune(input: PruneArgs, options: StepOptions = {}): Operation {
  return PRUNE_ARGS.build(input, (a) => secretPruneOp(a, options));
}

function secretPruneOp(a: z.output<typeof PRUNE_ARGS.schema>, options: StepOptions): Operation {
  return defineOp({
    kind: 'secretPrune',
    title: `prune old ${a.kind}s ${a.prefixes.join(',')}`,
    options,
    probe: () => ({
      script: ['(', `echo %%all; ${objectNames(a.kind)}`, `echo %%inuse; ${IN_USE}`, ') 2>/dev/null'].join('\n'),
      become: options.become,
    }),
    plan: (_ctx, out): Plan => {
      const p = parts(out);
      const inUse = new Set(nonEmptyLines(p.get('inuse') ?? ''));
      const keep = new Set(a.keep ?? []);
      const remove = nonEmptyLines(p.get('all') ?? '').filter((n) => {
        const m = HASHED.exec(n);
        return !!m && a.prefixes.includes(m[1]!) && !inUse.has(n) && !keep.has(n);
      });
      if (!remove.length) return unchanged({ removed: [] }, 'no unused old version');
      return {
        changed: true,
        changes: remove.map((n) => `remove unused ${a.kind} ${n}`),
        apply: { script: sh`docker ${a.kind} rm -- ${remove}`, become: options.become },
        result: { removed: remove },
      };
    },
  });
}

// ---------------------------------------------------------------------------------------------
// stacks

export interface StackArgs {
  name: string;
  /** the rendered stack file (YAML) */
  compose: string;
  /** --prune: remove services no longer in the file */
  prune?: boolean;
  /** default true: --with-registry-auth */
  withRegistryAuth?: boolean;
  /** default true: after deploying, remove old versions of the content-hashed secrets/configs it uses */
  pruneVersions?: boolean;
  /** --resolve-image (docker's default: always); 'never' for images that exist only on the nodes */
  resolveImage?: 'always' | 'changed' | 'never';
}

/** The secret and config names (`name:` or the key) a stack file declares. */
export function stackObjects(compose: string): { services: string[]; secrets: string[]; configs: string[] } {
  let doc: unknown;
  try {
    doc = YAML.parse(compose);
  } catch (e) {
    throw new InputError(`stack file is not valid YAML: ${(e as Error).message}`);
  }
  if (
    !doc ||
    typeof doc !== 'object' ||
    !('services' in doc) ||
    typeof (doc as { services: unknown }).services !== 'object' ||
    !(doc as { services: unknown }).services
  )
    throw new InputError('stack file has no services mapping');
  const d = doc as {
    services: Record<string, unknown>;
    secrets?: Record<string, { name?: string } | null>;
    configs?: Record<string, { name?: string } | null>;
  };
  const names = (m: Record<string, { name?: string } | null> | undefined): string[] =>
    Object.entries(m ?? {}).map(([k, v]) => (v && typeof v.name === 'string' ? v.name : k));
  return { services: Object.keys(d.services), secrets: names(d.secrets), configs: names(d.configs) };
}

export const STACK_ARGS = argSpec<StackArgs>()('stackDeploy', {
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, { error: (iss) => `invalid stack name ${JSON.stringify(iss.input)}` }),
  compose: z.string(),
  prune: z.boolean().optional(),
  withRegistryAuth: z.boolean().optional(),
  pruneVersions: z.boolean().optional(),
  resolveImage: z.enum(['always', 'changed', 'never']).optional(),
});

export function stackDeploy(input: StackArgs, options: StepOptions = {}): Operation {
  return STACK_ARGS.build(input, (a) => stackDeployOp(a, options));
}

function stackDeployOp(a: z.output<typeof STACK_ARGS.schema>, options: StepOptions): Operation {
  const objs = stackObjects(a.compose);
  const file = `${STACK_DIR}/${a.name}.yml`;
  const want = sha256(a.compose);
  const prefixes = (names: string[]): string[] => [...new Set(names.map((n) => HASHED.exec(n)?.[1]).filter((x): x is string => !!x))];
  const secretPrefixes = prefixes(objs.secrets);
  const configPrefixes = prefixes(objs.configs);
  const pruneVersions = a.pruneVersions ?? true;

  return defineOp({
    kind: 'stackDeploy',
    title: `stack ${a.name}`,
    options,
    probe: () => ({
      script: [
        '(',
        sh`if [ -f ${file} ]; then echo exists=yes; echo sha256=$(sha256sum < ${file} | cut -c1-64); else echo exists=no; fi`,
        SWARM_PROBE,
        sh`echo %%services; docker stack services --format '{{.Name}} {{.Replicas}} {{.Image}}' -- ${a.name}`,
        pruneVersions && secretPrefixes.length ? `echo %%secrets; ${objectNames('secret')}` : '',
        pruneVersions && configPrefixes.length ? `echo %%configs; ${objectNames('config')}` : '',
        sh`echo %%content; [ -f ${file} ] && [ $(stat -c %s ${file}) -le 1048576 ] && base64 -w0 < ${file}; echo`,
        ') 2>/dev/null',
      ]
        .filter(Boolean)
        .join('\n'),
      become: options.become,
    }),
    plan: (ctx: StepContext, out: string): Plan => {
      const p = parts(out);
      const r = keyValues(p.get('') ?? '');
      const services = nonEmptyLines(p.get('services') ?? '').filter((l) => !/^(Nothing found|ID\s)/.test(l));
      const result = { name: a.name, file, services: objs.services, secrets: objs.secrets, configs: objs.configs };
      const same = r.exists === 'yes' && r.sha256 === want;
      if (same && services.length > 0) return unchanged(result, 'stack already deployed with that file');
      const note = needManager(ctx, parseSwarm(p.get('swarm') ?? ''), `stack ${a.name}`);
      const changes: string[] = [];
      if (same) changes.push(`deploy stack ${a.name}: the rendered file is unchanged but the stack has no services`);
      else
        changes.push(
          `${r.exists === 'yes' ? 'update' : 'deploy'} stack ${a.name} (${objs.services.length} services: ${objs.services.join(', ')})`,
        );
      if (note) changes.push(note);
      const old = (list: string, pre: string[], keep: string[]): string[] =>
        nonEmptyLines(p.get(list) ?? '').filter((n) => {
          const m = HASHED.exec(n);
          return !!m && pre.includes(m[1]!) && !keep.includes(n);
        });
      const oldSecrets = pruneVersions ? old('secrets', secretPrefixes, objs.secrets) : [];
      const oldConfigs = pruneVersions ? old('configs', configPrefixes, objs.configs) : [];
      if (oldSecrets.length) changes.push(`then remove old secret versions no service uses: ${oldSecrets.join(', ')}`);
      if (oldConfigs.length) changes.push(`then remove old config versions no service uses: ${oldConfigs.join(', ')}`);
      const oldText = r.exists === 'yes' ? b64decode(p.get('content') ?? '') : '';
      const flags = [
        ...((a.withRegistryAuth ?? true) ? ['--with-registry-auth'] : []),
        ...(a.prune ? ['--prune'] : []),
        ...(a.resolveImage ? ['--resolve-image', a.resolveImage] : []),
      ];
      const script = [
        'set -e',
        sh`install -d -m 0700 -- ${STACK_DIR}`,
        sh`tmp=$(mktemp ${`${STACK_DIR}/.${a.name}.XXXXXX`})`,
        `trap 'rm -f "$tmp"' EXIT`,
        'cat > "$tmp"',
        // the render is recorded only after a successful deploy: a failed deploy is retried next run
        sh`docker stack deploy ${flags} -c "$tmp" -- ${a.name}`,
        sh`mv -f "$tmp" ${file}`,
        // an old version still referenced by another service cannot be removed: that is fine
        ...oldSecrets.map((n) => sh`docker secret rm -- ${n} >/dev/null 2>&1 || true`),
        ...oldConfigs.map((n) => sh`docker config rm -- ${n} >/dev/null 2>&1 || true`),
      ].join('\n');
      return {
        changed: true,
        changes,
        diff: ctx.diff ? lineDiff(oldText, a.compose, file) : undefined,
        apply: { script, stdin: a.compose, become: options.become },
        result,
      };
    },
  });
}

// ---------------------------------------------------------------------------------------------

/** what the daemon pulls through besides the registry itself (mirrors, proxies): "0" when nothing (memo) */
const PULLS_THROUGH = `${memo(SWARM_INFO)} | sed -n 's/^pulls=//p'`;

/**
 * imageAvailable's read-only probe: "present"; else, when the daemon pulls from the registry itself (no mirror, no
 * proxy: what the CLI reaches is what a pull reaches), whether the registry has the image: "pullable", or "cannot: "
 * and docker's last line; "absent" when that cannot be told (a mirror or a proxy, no answer within 20 s).
 */
export function imagePresentProbe(image: string): Probe {
  // a registry that cannot be reached at all ("error pinging v2 registry") answers so for every image of it: in a
  // batch, asked once per registry
  const down = `"$${MEMO_VAR}"/registry-${createHash('sha256').update(registryOf(image)).digest('hex').slice(0, 16)}.down`;
  // the node's images listed once per batch (one docker CLI process for every image probe of the host)
  const listed = listedName(image);
  return {
    script: [
      listed
        ? sh`if printf '%s\\n' "$(${raw(IMAGE_LIST)})" | grep -qxF -- ${listed}; then echo present`
        : sh`if docker image inspect --format '{{.Id}}' ${image} >/dev/null 2>&1; then echo present`,
      `elif [ "$(${PULLS_THROUGH})" != 0 ]; then echo absent`,
      `elif [ -n "\${${MEMO_VAR}:-}" ] && [ -s ${down} ]; then echo "cannot: $(cat ${down})"`,
      sh`else m=$(timeout 20 docker manifest inspect --insecure ${image} 2>&1 >/dev/null); rc=$?`,
      '  if [ $rc = 0 ]; then echo pullable; elif [ $rc = 124 ]; then echo absent',
      `  else l=\${m##*$'\\n'}; case $l in *'error pinging v2 registry'*) [ -z "\${${MEMO_VAR}:-}" ] || printf '%s\\n' "$l" > ${down} ;; esac`,
      '    echo "cannot: $l"; fi',
      'fi',
    ].join('\n'),
  };
}

/** every image of the node as `docker image ls` names it, repository:tag (memo: once per batch) */
const IMAGE_LIST = memo(`docker image ls --format '{{.Repository}}:{{.Tag}}'`);

/**
 * How `docker image ls` names an image reference (repository:tag, docker.io/ and library/ dropped, :latest added),
 * or undefined for a reference by digest, which only `docker image inspect` can tell.
 */
export function listedName(image: string): string | undefined {
  if (image.includes('@')) return undefined;
  const name = image.replace(/^docker\.io\//, '').replace(/^library\//, '');
  return name.split('/').pop()!.includes(':') ? name : `${name}:latest`;
}

/** The registry an image reference is pulled from (docker's rule: a first part with a dot or a port, or localhost). */
export function registryOf(image: string): string {
  const first = image.split('/')[0]!;
  return image.includes('/') && (/[.:]/.test(first) || first === 'localhost') ? first : 'docker.io';
}

/**
 * The image is present on the node, or can be pulled within a minute; otherwise the reason ("image X cannot be
 * pulled here: <docker's last line>"), for a role to report its stack skipped where no registry is reachable.
 * Check mode only reads: the local image, else the registry's manifest (what a real run's pull needs).
 * `probed`: the output of imagePresentProbe(image), read with the step's probes: no round trip when it says the image
 * is present, or that the registry cannot give it (nothing is tried: no command, no write), or in check mode that it
 * can.
 */
export async function imageAvailable(ctx: StepContext, image: string, probed?: string): Promise<{ ok: boolean; reason: string }> {
  const seen = probed?.trim();
  if (seen === 'present') return { ok: true, reason: '' };
  const cannotSay = (why: string) => ({ ok: false, reason: `image ${image} cannot be pulled here: ${why}` });
  if (seen?.startsWith('cannot: ')) return cannotSay(seen.slice('cannot: '.length).trim() || 'the registry did not give it');
  if (seen === 'pullable' && ctx.check) return { ok: true, reason: 'check mode: the image would be pulled' };
  const cannot = (r: { code: number; stdout: string; stderr: string }) =>
    cannotSay((r.stderr || r.stdout).trim().split('\n').pop() || `exit ${r.code}`);
  if (ctx.check) {
    const r = await ctx.exec(sh`docker image inspect --format '{{.Id}}' ${image}`, { nothrow: true, readOnly: true });
    if (r.code === 0) return { ok: true, reason: '' };
    const m = await ctx.exec(sh`timeout 60 docker manifest inspect ${image} >/dev/null`, {
      nothrow: true,
      timeoutMs: 90_000,
      readOnly: true,
    });
    return m.code === 0 ? { ok: true, reason: 'check mode: the image would be pulled' } : cannot(m);
  }
  const r = await ctx.exec(sh`docker image inspect --format '{{.Id}}' ${image} >/dev/null 2>&1 || timeout 60 docker pull -q ${image}`, {
    nothrow: true,
    timeoutMs: 90_000,
  });
  return r.code === 0 ? { ok: true, reason: '' } : cannot(r);
}
