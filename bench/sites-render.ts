// Bench: parse + validate 500 site records, render all 500 stacks, diff them against one
// `docker service ls` output and one state file (the no-change reconcile), then with 5 sites edited.
// Target (issue 6): render + diff of all 500 under 5 s. Not a timed test: prints the numbers.
//
//   node --import tsx bench/sites-render.ts [count]

import { performance } from 'node:perf_hooks';
import { parseSiteRecord, checkFarmUniqueness, type SiteRecord } from '../roles/wp-site/site.ts';
import { formatProblem } from '../lib/schema.ts';
import {
  renderSiteStack,
  diffFarm,
  secretHash,
  updatedStateFile,
  type FarmStackSettings,
  type RenderedStack,
} from '../roles/wp-site/stack.ts';

const count = Number(process.argv[2] ?? 500);
const INV = { management_cidrs: ['203.0.113.0/24', '198.51.100.0/24'] };

function recordText(i: number): string {
  const id = `site${String(i).padStart(3, '0')}`;
  const lines = [`id: ${id}`, `domain: ${id}.example.com`, `aliases: [www.${id}.example.com]`];
  if (i % 5 === 0) lines.push('replicas: 3', 'limits: { php: { cpus: 2, memory: 1G } }');
  if (i % 7 === 0) lines.push('xmlrpc: true', 'cache_ttl: 120');
  if (i % 11 === 0) lines.push('php: { memory_limit: 128M, upload_max_filesize: 32M, post_max_size: 32M }');
  return lines.join('\n') + '\n';
}

const texts = Array.from({ length: count }, (_, i) => recordText(i));
const ids = texts.map((_, i) => `site${String(i).padStart(3, '0')}`);
const farm: FarmStackSettings = {
  registry: '10.10.0.2:5000',
  images: {
    wordpressFpm: '10.10.0.2:5000/wpfarm/wordpress-fpm:0123456789abcdef',
    nginx: '10.10.0.2:5000/wpfarm/nginx:fedcba9876543210',
    redis: '10.10.0.2:5000/wpfarm/redis:7.0',
    varnish: '10.10.0.2:5000/wpfarm/varnish:aaaabbbbccccdddd',
  },
  glusterSitesPath: '/mnt/gluster/sites',
  endpointMode: 'vip',
  db: { host: 'galera', port: 3306 },
  secretHashes: Object.fromEntries(ids.map((id) => [id, { db_password: secretHash(`pw-${id}`), wp_keys: secretHash(`k-${id}`) }])),
};

function ms(t0: number): string {
  return `${(performance.now() - t0).toFixed(0)} ms`;
}

function serviceLsFor(rendered: RenderedStack[]): string {
  let n = 0;
  return rendered
    .flatMap((r) =>
      Object.entries(r.services).map(([svc, s]) =>
        JSON.stringify({
          ID: `x${n++}`,
          Image: s.image,
          Mode: 'replicated',
          Name: `${r.stack}_${svc}`,
          Ports: '',
          Replicas: `${s.replicas}/${s.replicas}`,
        }),
      ),
    )
    .join('\n');
}

const tAll = performance.now();
let t = performance.now();
const sites: SiteRecord[] = texts.map((text, i) => parseSiteRecord(`inventory/sites/${ids[i]}.yml`, text, INV));
const uniq = checkFarmUniqueness(sites);
if (uniq.length) throw new Error(uniq.map(formatProblem).join('\n'));
const tParse = ms(t);

t = performance.now();
const rendered = sites.map((s) => renderSiteStack(s, farm));
const tRender = ms(t);

// what the managers would answer: built here once (not part of the measured reconcile)
const live = serviceLsFor(rendered);
const state = updatedStateFile('', rendered, '2026-11-26T00:00:00.000Z');

t = performance.now();
const noChange = diffFarm(rendered, live, state);
const tDiff = ms(t);
if (noChange.changes.length !== 0 || noChange.unchanged !== count) throw new Error(`expected no change, got ${noChange.changes.length}`);

// full reconcile pass as a role would do it: render everything again, then diff
t = performance.now();
const again = sites.map((s) => renderSiteStack(s, farm));
const second = diffFarm(again, live, state);
const tReconcile = ms(t);

// 5 edited sites
const edited = sites.map((s, i) => (i % 100 === 3 ? { ...s, cache_ttl: s.cache_ttl + 1 } : s));
t = performance.now();
const editedDiff = diffFarm(
  edited.map((s) => renderSiteStack(s, farm)),
  live,
  state,
);
const tEdited = ms(t);

const bytes = rendered.reduce((n, r) => n + r.yaml.length, 0);
console.log(
  `sites: ${count}, rendered YAML: ${(bytes / 1024).toFixed(0)} KiB (${Math.round(bytes / count)} B per stack), service ls: ${(live.length / 1024).toFixed(0)} KiB`,
);
console.log(`parse+validate+uniqueness: ${tParse}`);
console.log(`render all:                ${tRender}`);
console.log(`diff all (no change):      ${tDiff}  -> ${noChange.unchanged} unchanged, ${noChange.changes.length} to deploy`);
console.log(`render+diff all (reconcile): ${tReconcile} -> ${second.changes.length} to deploy`);
console.log(`render+diff, 5 edited:     ${tEdited}  -> ${editedDiff.changes.map((c) => c.stack).join(' ')}`);
console.log(`all phases above:          ${ms(tAll)} (the target is render+diff of ${count} < 5000 ms)`);
