// The traefik role's steps where the inventory sets `edge_standin: haproxy` (the lab: Traefik's image cannot be
// pulled there). Debian's HAProxy runs as the Swarm stack `edge` on the managers, host-mode 80/443/8082 like
// Traefik, on the same network; its configuration comes from the very labels Traefik's swarm provider would read
// (the site services' `traefik.*` labels, one probe) and the file provider's middlewares (standin.ts), and its
// certificates from the lab's CA (lab-ca.ts, `edge_ca_dir`). add-site and remove-site rerun the role, as Traefik
// would have picked the change up by itself.
//
//   step                          what it does
//   edge stand-in image           build/push files/images/edge-haproxy (content-hashed tag, like the site images)
//   edge stand-in configuration   read the labelled services; render haproxy.cfg and the crt-list; certificates
//   edge stand-in files           on every edge node: haproxy.cfg, crt-list and certificates in edge_standin_dir
//                                 (root 0700, keys 0600); when they changed, checked and reloaded (SIGUSR2) in place
//   edge stand-in stack           docker stack deploy edge (the image; the files are bind-mounted: a new route is a
//                                 reload, not a redeploy)
import path from 'node:path';
import { InputError } from '../../lib/errors.ts';
import { nestedOutputs, nestedProbe, task } from '../../lib/ops/base.ts';
import { sh } from '../../lib/shell.ts';
import { createHash } from 'node:crypto';
import { stackDeploy } from '../../lib/ops/docker.ts';
import type { Step, StepContext, TaskOutcome } from '../../lib/types.ts';
import { ensureImage, localImageId, contextHash } from '../wp-site/images.ts';
import { imageSettings, wpSiteSettings } from '../wp-site/reconcile.ts';
import { ENTRY_POINTS, toYaml, type TraefikSettings } from './config.ts';
import { ensureHostCert, ensureLabCa } from './lab-ca.ts';
import { StandinError, certFile, crtList, edgeModel, haproxyConfig, type EdgeModel, type LabelledService } from './standin.ts';

export const STANDINS = ['haproxy'] as const;
const IMAGE = 'wpfarm/edge-haproxy';
const CFG_DIR = '/usr/local/etc/haproxy';
/** the stand-in's files on each edge node (bind-mounted read-only at CFG_DIR) */
const HOST_DIR = '/etc/wpfarm/edge';
export const STANDIN_STACK = 'edge';

export interface Rendered {
  model: EdgeModel;
  config: string;
  crtList: string;
  certs: { host: string; pem: string; issued: boolean }[];
}

/** The stand-in named by the inventory (`edge_standin`), or undefined in production. */
export function standinOf(vars: Record<string, unknown>): 'haproxy' | undefined {
  const v = vars.edge_standin;
  if (v === undefined || v === '' || v === false) return undefined;
  if (v !== 'haproxy') throw new InputError(`edge_standin must be haproxy (the only stand-in) or unset, not ${JSON.stringify(v)}`);
  return v;
}

function str(ctx: StepContext, key: string, dflt: string): string {
  const v = ctx.vars[key];
  return typeof v === 'string' && v !== '' ? v : dflt;
}

/** `docker service inspect` of every service labelled traefik.enable=true: name TAB labels (JSON), one per line. */
// one inspect for every labelled service (a line each; one that went away meanwhile is only missing), not one per
// service: with hundreds of sites that was hundreds of docker processes per rerun
const PROBE = `docker service ls -q --filter label=traefik.enable=true | xargs -r docker service inspect --format '{{json .Spec.Name}}{{"\\t"}}{{json .Spec.Labels}}' 2>/dev/null || true`;

export function parseLabelledServices(out: string): LabelledService[] {
  return out
    .split('\n')
    .filter((l) => l.includes('\t'))
    .map((l) => {
      const [name, labels] = l.split('\t') as [string, string];
      return { service: JSON.parse(name) as string, labels: JSON.parse(labels) as Record<string, string> };
    })
    .filter((s) => s.labels['traefik.enable'] === 'true');
}

/** Wait until the service's tasks run on every manager (global mode) and no rolling update is under way, else throw. */
async function waitRunning(ctx: StepContext, service: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  const cmd =
    `m=$(docker node ls --filter role=manager -q | wc -l); ` +
    `r=$(docker service ps --filter desired-state=running --format '{{.CurrentState}}' ${service} | grep -c '^Running'); ` +
    `u=$(docker service inspect --format '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' ${service}); ` +
    `echo "$r $m \${u:-none}"`;
  let last = '';
  while (Date.now() < end) {
    last = (await ctx.exec(cmd)).stdout.trim();
    const [r, m, update] = last.split(' ');
    // a rolling update (stop-first, one node at a time) is done when its state is no longer "updating"
    if (Number(m) > 0 && Number(r) >= Number(m) && update !== 'updating' && update !== 'rollback_started') return;
    await new Promise((res) => setTimeout(res, 2000));
  }
  throw new Error(`${service}: not running on every manager after ${timeoutMs / 1000} s (running/managers: ${last})`);
}

/** The files step's probe: the modes of DIR and DIR/certs, the SHA-256 of every file in DIR (stage and backup left out). */
export const filesProbe = (dir: string): string =>
  sh`cd ${dir} 2>/dev/null && stat -c 'mode %n %a' . certs && ` +
  'find . -path ./.stage -prune -o -path ./.prev -prune -o -type f -print0 | xargs -0r sha256sum';

/**
 * true when filesProbe's output shows DIR holding exactly the bundle's files (the configuration, the crt-list and
 * every certificate, none more), DIR and its certs private (0700): what filesScript would find with nothing to do.
 */
export function filesInPlace(r: Rendered, out: string): boolean {
  const have = new Map<string, string>();
  for (const line of out.split('\n')) {
    const m = /^([0-9a-f]{64}) [ *]\.\/(.+)$/.exec(line.trim());
    if (m) have.set(m[2]!, m[1]!);
  }
  const want = new Map<string, string>([
    ['haproxy.cfg', r.config],
    ['crt-list', r.crtList],
    ...r.certs.map((c): [string, string] => [`certs/${certFile(c.host)}`, c.pem]),
  ]);
  const sha = (t: string) => createHash('sha256').update(t).digest('hex');
  return (
    /^mode \. 700$/m.test(out) &&
    /^mode certs 700$/m.test(out) &&
    [...want].every(([name, content]) => have.get(name) === sha(content)) &&
    [...have.keys()].every((name) => !name.startsWith('certs/') || want.has(name))
  );
}

/** One line per file on stdin: `NAME MODE BASE64` (the certificates' keys never stand on a command line). */
export function filesBundle(r: Rendered): string {
  const line = (name: string, mode: string, content: string) => `${name} ${mode} ${Buffer.from(content).toString('base64')}\n`;
  return (
    line('haproxy.cfg', '0644', r.config) +
    line('crt-list', '0644', r.crtList) +
    r.certs.map((c) => line(`certs/${certFile(c.host)}`, '0600', c.pem)).join('')
  );
}

/**
 * Write the bundle read on stdin into DIR (staged, compared, then renamed file by file: the directory itself is
 * bind-mounted and must stay the same inode), remove certificates no longer listed, and when anything changed and
 * the stand-in runs here: check the configuration with its own haproxy, reload it (SIGUSR2), or put the previous
 * files back and fail. CHECK=1 only reports. Prints `@@changed FILE`, `@@removed FILE`, `@@reloaded`.
 */
export function filesScript(dir: string, check: boolean): string {
  return `set -eu
d=${dir}; s=$d/.stage; p=$d/.prev; CHECK=${check ? 1 : 0}
rm -rf "$s" "$p"; mkdir -p "$s/certs" "$p/certs"
[ "$CHECK" = 1 ] || { mkdir -p "$d/certs"; chmod 0700 "$d" "$d/certs"; }
while read -r name mode b64; do printf '%s' "$b64" | base64 -d > "$s/$name"; chmod "$mode" "$s/$name"; done
changed=$(cd "$s" && find . -type f | sort | while read -r f; do cmp -s "$f" "$d/$f" 2>/dev/null || echo "\${f#./}"; done)
removed=$( { [ -d "$d/certs" ] && cd "$d" && find ./certs -type f; } | while read -r f; do [ -e "$s/$f" ] || echo "\${f#./}"; done)
for f in $changed; do echo "@@changed $f"; done
for f in $removed; do echo "@@removed $f"; done
if [ "$CHECK" = 1 ] || [ -z "$changed$removed" ]; then rm -rf "$s" "$p"; exit 0; fi
for f in $changed $removed; do [ ! -e "$d/$f" ] || cp -p "$d/$f" "$p/$f"; done
for f in $changed; do mv -f "$s/$f" "$d/$f"; done
for f in $removed; do rm -f "$d/$f"; done
cid=$(docker ps -q --filter label=com.docker.swarm.service.name=${STANDIN_STACK}_haproxy | head -n1)
if [ -n "$cid" ]; then
  if ! out=$(docker exec "$cid" haproxy -c -q -f ${CFG_DIR}/haproxy.cfg 2>&1); then
    for f in $changed; do if [ -e "$p/$f" ]; then mv -f "$p/$f" "$d/$f"; else rm -f "$d/$f"; fi; done
    for f in $removed; do mv -f "$p/$f" "$d/$f"; done
    rm -rf "$s" "$p"; echo "the new configuration does not load; the previous files are back: $out" >&2; exit 1
  fi
  docker kill -s USR2 "$cid" >/dev/null && echo @@reloaded
fi
rm -rf "$s" "$p"`;
}

/** The stand-in's image built on the controller ahead of the role (its warm-up): the step below then only pushes it. */
export async function standinImageWarmup(vars: Record<string, unknown>, log: (line: string) => void): Promise<void> {
  if (!standinOf(vars)) return;
  const { baseImage, imagesDir, registryPush } = imageSettings(vars);
  await ensureImage(
    { name: IMAGE, contextDir: path.join(imagesDir, 'edge-haproxy'), baseImage },
    { registry: registryPush || undefined, push: 'when-reachable' as const, log },
  );
}

export function standinSteps(s: TraefikSettings): Step[] {
  return [
    task(
      'edge stand-in image',
      async (ctx): Promise<TaskOutcome> => {
        // the site images' base, directory and registries (the same variables, the same defaults)
        const { baseImage: base, imagesDir, registryPush: push, registry: pull } = wpSiteSettings(ctx);
        const spec = { name: IMAGE, contextDir: path.join(imagesDir, 'edge-haproxy'), baseImage: base };
        const nodeRef = (tag: string) => `${pull ? `${pull}/` : ''}${IMAGE}:${tag}`;
        if (ctx.check) {
          const id = await localImageId(base);
          if (!id) throw new Error(`base image ${base} is not present on the controller`);
          const tag = contextHash(spec.contextDir, { baseImageId: id });
          return { changed: false, result: { ref: nodeRef(tag) } };
        }
        const r = await ensureImage(spec, { registry: push || undefined, log: (l) => ctx.log(l) });
        const changes = [...(r.built ? [`build ${r.ref}`] : []), ...(r.pushed ? [`push ${r.ref}`] : [])];
        return { changed: changes.length > 0, changes, result: { ref: nodeRef(r.tag) } };
      },
      { runOnce: true, register: 'edge_standin_image', tags: ['traefik', 'edge-standin'] },
    ),
    task(
      'edge stand-in configuration',
      async (ctx, probed): Promise<TaskOutcome> => {
        // the labelled services as read with the role's probes, else here
        const services = parseLabelledServices(probed ?? (await ctx.exec(PROBE, { timeoutMs: 60_000, readOnly: true })).stdout);
        let model: EdgeModel;
        try {
          model = edgeModel(s, services);
        } catch (e) {
          if (e instanceof StandinError) throw new InputError(`edge stand-in: ${e.message}`);
          throw e;
        }
        // check mode writes nothing on the controller either: a missing CA or certificate is only announced
        const ca = ensureLabCa(path.resolve(str(ctx, 'edge_ca_dir', '.wpfarm/lab/ca')), { create: !ctx.check });
        const certs = model.hosts.map((host) => {
          const c = ensureHostCert(ca, host, { issue: !ctx.check });
          const key = c.pem.indexOf('-----BEGIN PRIVATE KEY-----');
          if (key >= 0) ctx.secret(c.pem.slice(key));
          return { host, ...c };
        });
        const rendered: Rendered = {
          model,
          config: haproxyConfig(model, { crtList: `${CFG_DIR}/crt-list` }),
          crtList: crtList(model),
          certs,
        };
        ctx.log(
          `${services.length} labelled service(s), ${model.routers.length} router(s), ${model.hosts.length} host(s)` +
            (model.notExpressed.length ? `; not expressed by HAProxy: ${model.notExpressed.join(', ')}` : ''),
        );
        const issued = certs.filter((c) => c.issued).map((c) => `issue the lab CA's certificate for ${c.host} (${ca.dir})`);
        return { changed: issued.length > 0, changes: issued, result: rendered };
      },
      { runOnce: true, register: 'edge_standin_config', tags: ['traefik', 'edge-standin'], probe: () => ({ script: PROBE }) },
    ),
    task(
      'edge stand-in files',
      async (c, probed): Promise<TaskOutcome> => {
        const r = c.registered.edge_standin_config?.result as Rendered | undefined;
        if (!r) return { skipped: 'the configuration step did not run (--tags?)' };
        const dir = str(c, 'edge_standin_dir', HOST_DIR);
        // no-change answer: the files' digests read with the role's probes
        if (probed !== undefined && filesInPlace(r, probed)) return { changed: false, reason: `${dir} holds this configuration` };
        const out = (await c.exec(filesScript(dir, c.check), { stdin: filesBundle(r) })).stdout;
        const lines = out.split('\n');
        const changes = [
          ...lines.filter((l) => l.startsWith('@@changed ')).map((l) => `${c.check ? 'would write' : 'write'} ${dir}/${l.slice(10)}`),
          ...lines.filter((l) => l.startsWith('@@removed ')).map((l) => `${c.check ? 'would remove' : 'remove'} ${dir}/${l.slice(10)}`),
          ...(lines.includes('@@reloaded') ? ['reload haproxy here (SIGUSR2)'] : []),
        ];
        return changes.length ? { changed: true, changes } : { changed: false, reason: `${dir} holds this configuration` };
      },
      { tags: ['traefik', 'edge-standin'], probe: (c) => ({ script: filesProbe(str(c, 'edge_standin_dir', HOST_DIR)) }) },
    ),
    task(
      'edge stand-in stack',
      async (c, probed): Promise<TaskOutcome> => {
        const image = (c.registered.edge_standin_image?.result as { ref: string } | undefined)?.ref;
        if (!image) return { skipped: 'the image step did not run (--tags?)' };
        const changes: string[] = [];
        const d = await c.run(deploy(c, image), nestedOutputs(probed, 1)[0]);
        if (d.status === 'failed') throw new Error(d.error ?? 'stack deploy failed');
        changes.push(...d.changes);
        // a site is served when add-site returns: wait until every manager runs the stand-in's current task
        if (d.status === 'changed' && !c.check) await waitRunning(c, `${STANDIN_STACK}_haproxy`, 180_000);
        return { changed: changes.length > 0, changes, diff: d.diff };
      },
      // the deploy's probe does not depend on the image
      { runOnce: true, tags: ['traefik', 'edge-standin'], probe: (c) => nestedProbe(c, [deploy(c, '')]) },
    ),
  ];

  function deploy(c: StepContext, image: string) {
    const stack = {
      version: '3.8',
      services: {
        haproxy: {
          image,
          ports: [
            { target: 80, published: 80, protocol: 'tcp', mode: 'host' },
            { target: 443, published: 443, protocol: 'tcp', mode: 'host' },
            { target: ENTRY_POINTS.metrics, published: ENTRY_POINTS.metrics, protocol: 'tcp', mode: 'host' },
          ],
          // every edge node's own copy (the files step): changed in place and reloaded, never redeployed
          volumes: [{ type: 'bind', source: str(c, 'edge_standin_dir', HOST_DIR), target: CFG_DIR, read_only: true }],
          networks: [s.network],
          deploy: {
            mode: 'global',
            endpoint_mode: s.endpointMode,
            placement: { constraints: ['node.role == manager'] },
            // host-mode ports cannot be bound twice on a node
            update_config: { parallelism: 1, delay: '2s', order: 'stop-first', failure_action: 'rollback', monitor: '10s' },
            restart_policy: { condition: 'any', delay: '2s', window: '30s' },
            resources: { limits: { cpus: '0.5', memory: '128M' } },
            labels: { 'wpfarm.edge-standin': 'haproxy' },
          },
        },
      },
      networks: { [s.network]: { external: true, name: s.network } },
    };
    return stackDeploy({ name: STANDIN_STACK, compose: toYaml(stack), resolveImage: 'never' });
  }
}
