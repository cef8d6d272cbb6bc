// The price table of node sizes (files/capacity/digitalocean-sizes.yml): read by the one YAML reader and checked
// by a zod schema (lib/schema.ts), so a bad table is bad input (exit 4) naming file:line:col and field. Besides
// the types: slugs unique, and a slug that names its size (s-8vcpu-16gb) must agree with vcpus and memory.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputErrors, int, matching, nonEmpty, num, problemAt, validate, z, type Problem } from '../../lib/schema.ts';
import { parseYamlFile, parseYamlText, type YamlSource } from '../../lib/yamlsrc.ts';

/** The table shipped with wpfarm. */
export const DEFAULT_PRICES_FILE = path.relative(
  process.cwd(),
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../files/capacity/digitalocean-sizes.yml'),
);

export interface NodeSize {
  slug: string;
  vcpus: number;
  /** MiB, as the DigitalOcean API's `memory` */
  memoryMiB: number;
  priceMonthly: number;
}

export interface PriceTable {
  file: string;
  source: string;
  asOf: string;
  currency: string;
  sizes: Map<string, NodeSize>;
}

const Size = z.strictObject({
  slug: matching(/^[a-z0-9][a-z0-9-]*$/, 'a size slug like s-4vcpu-8gb'),
  vcpus: int(1, 512),
  memory: int(256, 4 * 1024 * 1024),
  price_monthly: num(0, 1_000_000),
});

const Table = z.strictObject({
  source: nonEmpty,
  as_of: matching(/^\d{4}-\d{2}(-\d{2})?$/, 'a date like 2024-06'),
  currency: matching(/^[A-Z]{3}$/, 'a currency code like USD'),
  sizes: z.array(Size).min(1),
});

/** "s-8vcpu-16gb" → { vcpus: 8, memoryMiB: 16384 }; undefined when the slug does not say. */
export function sizeFromSlug(slug: string): { vcpus: number; memoryMiB: number } | undefined {
  const m = /-(\d+)vcpu-(\d+)gb(?:-|$)/.exec(slug);
  return m ? { vcpus: Number(m[1]), memoryMiB: Number(m[2]) * 1024 } : undefined;
}

function tableOf(y: YamlSource): PriceTable {
  const raw = y.toPlain();
  const t = validate(Table, raw, y, { rootName: '(document)' });
  const problems: Problem[] = [];
  const sizes = new Map<string, NodeSize>();
  t.sizes.forEach((s, i) => {
    if (sizes.has(s.slug)) problems.push(problemAt(y, ['sizes', i, 'slug'], `${s.slug} is listed twice`));
    const named = sizeFromSlug(s.slug);
    if (named && named.vcpus !== s.vcpus)
      problems.push(problemAt(y, ['sizes', i, 'vcpus'], `${s.slug} has ${named.vcpus} vCPUs by its name, the table says ${s.vcpus}`));
    if (named && named.memoryMiB !== s.memory)
      problems.push(problemAt(y, ['sizes', i, 'memory'], `${s.slug} has ${named.memoryMiB} MiB by its name, the table says ${s.memory}`));
    sizes.set(s.slug, { slug: s.slug, vcpus: s.vcpus, memoryMiB: s.memory, priceMonthly: s.price_monthly });
  });
  if (problems.length) throw new InputErrors(problems);
  return { file: y.file, source: t.source, asOf: t.as_of, currency: t.currency, sizes };
}

/** Read and check a price table; InputErrors (exit 4) list every problem as file:line:col field: message. */
export function loadPriceTable(file: string = DEFAULT_PRICES_FILE): PriceTable {
  return tableOf(parseYamlFile(file));
}

/** The same from text (tests). */
export function parsePriceTable(text: string, file: string): PriceTable {
  return tableOf(parseYamlText(text, file));
}
