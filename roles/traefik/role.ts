// traefik: the edge router as a Swarm stack on the managers (group `edge`). Generators in config.ts;
// variables in docs/roles/traefik.md. Where the inventory sets `edge_standin: haproxy` (the lab, whose machines
// cannot pull Traefik's image), Debian's HAProxy is deployed in its place from the same router model
// (standin-steps.ts) and the recap says so; elsewhere, an image that cannot be pulled makes the deploy skipped,
// with that reason in the recap.
import { InputError } from '../../lib/errors.ts';
import { lookupEnv, envFileShown } from '../../lib/env.ts';
import { task } from '../../lib/ops/base.ts';
import { directory, file } from '../../lib/ops/files.ts';
import { dockerConfig, dockerSecret, imageAvailable, imagePresentProbe, stackDeploy, type SecretResult } from '../../lib/ops/docker.ts';
import { sh } from '../../lib/shell.ts';
import type { Role, Step, StepContext } from '../../lib/types.ts';
import { traefikSettings, traefikStack, letsEncryptBudget, TraefikVarsError, type TraefikSettings } from './config.ts';
import { lapiUrl, TRAEFIK_BOUNCER_KEY_FILE } from '../crowdsec/config.ts';
import { RETENTION_VARS, retentionOf } from '../common/retention.ts';
import { renderTemplate, templatePath } from '../../lib/ops/template.ts';
import { standinImageWarmup, standinOf, standinSteps } from './standin-steps.ts';

function settings(ctx: StepContext): TraefikSettings {
  try {
    // the bouncer middleware asks the CrowdSec local API that roles/crowdsec runs on a manager (host service,
    // private address, port 8080, TLS with the role's own CA): the same default host as that role (crowdsec_lapi_host, else the first manager)
    const lapiName = String(ctx.vars.crowdsec_lapi_host ?? ctx.hosts('managers')[0]?.name ?? '');
    const lapi = lapiName ? ctx.hosts(lapiName)[0] : undefined;
    return traefikSettings({
      swarm_managers: ctx.hosts('managers').length || undefined,
      ...(lapi ? { crowdsec_lapi_url: lapiUrl(lapi.address).replace(/\/$/, '') } : {}),
      ...ctx.vars,
    });
  } catch (e) {
    if (e instanceof TraefikVarsError) throw new InputError(e.message);
    throw e;
  }
}

/**
 * The CrowdSec bouncer plugin's key as a Docker secret: the key is the one the crowdsec role made with cscli on its
 * local API host and keeps root 0600 in TRAEFIK_BOUNCER_KEY_FILE on the edge nodes (phase 2, before this role); it is
 * read here (masked from the moment it is read) and given to `docker secret create` on stdin.
 */
function bouncerKeySecret(): Step {
  return task(
    'traefik_crowdsec_bouncer_key (the key the crowdsec role made)',
    async (c) => {
      const r = await c.exec(sh`cat ${TRAEFIK_BOUNCER_KEY_FILE}`, { nothrow: true });
      const key = r.stdout.trim();
      if (r.code !== 0 || !key) {
        const why = `${TRAEFIK_BOUNCER_KEY_FILE} is missing on ${c.host.name}: the crowdsec role (phase 2) makes the Traefik bouncer's key`;
        if (c.check) return { changed: true, changes: [`the secret traefik_crowdsec_bouncer_key (${why})`] };
        throw new Error(`${why}; run it first (npx tsx playbooks/run-role.ts crowdsec)`);
      }
      c.secret(key);
      const res = await c.run(dockerSecret({ name: 'traefik_crowdsec_bouncer_key', content: key }));
      if (res.status === 'failed') throw new Error(res.error ?? `${res.step} failed`);
      return { changed: res.status === 'changed', changes: res.changes, result: res.result, reason: res.reason };
    },
    { runOnce: true, register: 'traefik_bouncer_secret', tags: ['traefik'] },
  );
}

const role: Role = {
  name: 'traefik',
  hosts: 'edge',
  tags: ['traefik'],
  vars: RETENTION_VARS,
  description: 'Traefik v3 edge router (Swarm stack on the managers): TLS, ACME, security headers, allow lists, CrowdSec bouncer, metrics',
  // the lab's edge stand-in: its image is built on the controller while the earlier roles run
  warmup: standinImageWarmup,
  steps(ctx) {
    const s = settings(ctx);
    const budget = letsEncryptBudget(s, Number(ctx.vars.expected_sites ?? 0));
    if (!budget.ok) ctx.log(`Let's Encrypt: ${budget.reasons.join('; ')}`);
    // Traefik's files are generated (and their errors reported) even where a stand-in runs in its place
    const bundle = traefikStack(s, { externalConfigs: true });
    const logs: Step[] = [
      directory({ path: s.logDir, mode: '0750' }, { tags: ['traefik', 'logs'] }),
      file(
        {
          path: '/etc/logrotate.d/traefik',
          content: renderTemplate(templatePath('traefik', 'logrotate.ejs'), { days: retentionOf(ctx.vars).logs.edgeFileDays }),
          mode: '0644',
        },
        { tags: ['traefik', 'logs'] },
      ),
    ];
    const standin = standinOf(ctx.vars);
    if (standin) {
      // the lab (edge_standin in the inventory): HAProxy from Traefik's router model, see standin-steps.ts
      const why =
        `edge_standin: ${standin} in the inventory ` +
        `(Traefik ${s.image} is not deployed here; its configuration is generated and checked)`;
      return [
        ...logs,
        task('traefik replaced by the edge stand-in', async () => ({ standIn: { component: 'traefik', by: standin, why } }), {
          runOnce: true,
          tags: ['traefik', 'edge-standin'],
        }),
        ...standinSteps(s),
      ];
    }
    const steps: Step[] = [
      ...logs,
      // acme.json must be 0600 for Traefik; its directory is private
      directory({ path: s.acmeStorageDir, mode: '0700' }, { tags: ['traefik', 'acme'] }),
    ];
    // Swarm objects and the stack: once, on a manager
    steps.push(
      task(
        `traefik image ${s.image}`,
        async (c, probed) => {
          const a = await imageAvailable(c, s.image, probed);
          return a.ok ? { result: a, changes: [] } : { skipped: a.reason, result: a, standIn: { component: 'traefik', why: a.reason } };
        },
        { runOnce: true, register: 'traefik_image', tags: ['traefik'], probe: () => imagePresentProbe(s.image) },
      ),
      dockerConfig({ name: 'traefik_static', content: bundle.files['traefik.yml']! }, { runOnce: true, tags: ['traefik'] }),
      dockerConfig({ name: 'traefik_dynamic', content: bundle.files['dynamic.yml']! }, { runOnce: true, tags: ['traefik'] }),
    );
    const secretStep = (prefix: string, envName: string, register: string): Step => {
      const value = lookupEnv(envName);
      if (!value) throw new InputError(`${envName} is not set in ${envFileShown()} (needed for ${prefix})`);
      ctx.secret(value);
      return dockerSecret({ name: prefix, content: value }, { runOnce: true, register, tags: ['traefik'] });
    };
    if (s.acmeChallenge === 'cloudflare')
      steps.push(
        secretStep(
          'traefik_cf_dns_api_token',
          String(ctx.vars.cloudflare_dns_token_env ?? 'CLOUDFLARE_DNS_API_TOKEN'),
          'traefik_cf_secret',
        ),
      );
    if (s.crowdsec.enabled) steps.push(bouncerKeySecret());
    steps.push(
      task(
        'traefik stack',
        async (c) => {
          // a skipped step keeps its reason (not its result): either says the image is missing
          const reg = c.registered.traefik_image;
          const img = reg?.result as { ok: boolean; reason: string } | undefined;
          if (reg?.status === 'skipped' || (img && !img.ok))
            return { skipped: img?.reason || reg?.reason || 'the Traefik image is not available' };
          // the secrets' content-hashed names, as dockerSecret created them
          const name = (reg: string): string | undefined => (c.registered[reg]?.result as SecretResult | undefined)?.name;
          const final = traefikStack(
            {
              ...s,
              secretNames: {
                cloudflareToken: name('traefik_cf_secret') ?? s.secretNames.cloudflareToken,
                bouncerKey: name('traefik_bouncer_secret') ?? s.secretNames.bouncerKey,
              },
            },
            { externalConfigs: true },
          );
          const r = await c.run(stackDeploy({ name: 'traefik', compose: final.stackYaml }));
          if (r.status === 'failed') throw new Error(r.error ?? 'stack deploy failed');
          return { changed: r.status === 'changed', changes: r.changes, diff: r.diff, result: r.result };
        },
        { runOnce: true, tags: ['traefik'] },
      ),
    );
    return steps;
  },
};

export default role;
