// The plan of a batch (migrations.yml), checked like every YAML input (lib/schema.ts: every problem at once as
// file:line:col field: message, exit 4):
//
//   defaults:                       # optional; each site may override
//     key: /root/.ssh/migrate_ed25519
//     farm_wordpress: 6.1.9
//   sites:
//     - from: ssh://root@legacy1.example.net/var/www/example
//       domain: example.com
//       new_domain: example.farm.example.net     # optional: the farm's name for it (default: domain)
import { InputErrors, checkedBy, matching, problemAt, validate, z } from '../../lib/schema.ts';
import { parseYamlFile } from '../../lib/yamlsrc.ts';
import { checkDomain } from '../wp-site/site.ts';
import { type SourceUrl, parseSourceUrl } from './source.ts';

const domain = z.string().superRefine(checkedBy((v) => checkDomain(v)));
const source = z.string().superRefine(checkedBy((v) => (typeof parseSourceUrl(v) === 'string' ? (parseSourceUrl(v) as string) : null)));
const version = matching(/^\d+\.\d+(?:\.\d+)?$/, 'a WordPress version like 6.1.9');

const Defaults = z.strictObject({ key: z.string().optional(), farm_wordpress: version.optional() });
const SitePlan = z.strictObject({
  from: source,
  domain,
  new_domain: domain.optional(),
  key: z.string().optional(),
  farm_wordpress: version.optional(),
});
export const PlanSchema = z.strictObject({ defaults: Defaults.optional(), sites: z.array(SitePlan).min(1) });

export interface PlannedSite {
  domain: string;
  newDomain: string;
  source: SourceUrl;
  from: string;
  key?: string;
  farmWordpress?: string;
}

/** Read and check a plan file; bad input: InputErrors (exit 4) naming file:line of every problem. */
export function loadPlan(file: string): PlannedSite[] {
  const y = parseYamlFile(file);
  const plan = validate(PlanSchema, y.toPlain(), y, { rootName: '(document)' });
  const problems = [];
  const seen = new Map<string, number>();
  for (const [i, s] of plan.sites.entries()) {
    for (const d of new Set([s.domain, s.new_domain ?? s.domain])) {
      const first = seen.get(d);
      if (first !== undefined && first !== i) {
        problems.push(problemAt(y, ['sites', i, 'domain'], `${d} is already planned by sites[${first}]: one migration per site`));
      } else seen.set(d, i);
    }
  }
  if (problems.length) throw new InputErrors(problems);
  return plan.sites.map((s) => ({
    domain: s.domain,
    newDomain: s.new_domain ?? s.domain,
    source: parseSourceUrl(s.from) as SourceUrl,
    from: s.from,
    key: s.key ?? plan.defaults?.key,
    farmWordpress: s.farm_wordpress ?? plan.defaults?.farm_wordpress,
  }));
}
