// A subset of a big OpenAPI document: the paths matching some patterns, with every component they reach
// through $ref (schemas, parameters, request bodies, responses, headers) and all security schemes. Prism
// loads the 12 MB Cloudflare spec in minutes on this machine; a subset of the operations a test uses loads in
// seconds and validates the same way (the same schemas, byte for byte).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, specPath } from './prism.ts';

type Json = Record<string, unknown>;

/** Build the subset in memory: `keep` selects paths (a path is kept when one pattern matches it). */
export function subsetOpenApi(spec: Json, keep: readonly RegExp[]): Json {
  const paths = spec['paths'] as Record<string, unknown>;
  const components = (spec['components'] ?? {}) as Record<string, Record<string, unknown>>;
  const out: Record<string, Record<string, unknown>> = {};
  const kept = Object.fromEntries(Object.entries(paths).filter(([p]) => keep.some((re) => re.test(p))));
  if (Object.keys(kept).length === 0) throw new Error(`no path of the spec matches ${keep.map(String).join(', ')}`);
  const seen = new Set<string>();
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) for (const x of v) walk(x);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === '$ref' && typeof x === 'string' && x.startsWith('#/components/') && !seen.has(x)) {
          seen.add(x);
          const [, , kind, name] = x.split('/') as [string, string, string, string];
          const target = components[kind]?.[name];
          if (target === undefined) throw new Error(`unresolved ${x}`);
          (out[kind] ??= {})[name] = target;
          walk(target);
        } else walk(x);
      }
    }
  };
  walk(kept);
  if (components['securitySchemes']) out['securitySchemes'] = components['securitySchemes'];
  return { ...spec, paths: kept, components: out };
}

/** The subset of a shared spec (plain or .gz), written once per content into .wpfarm/specs; returns its path. */
export function specSubsetPath(name: string, keep: readonly RegExp[]): string {
  const key = createHash('sha256').update(name).update(keep.map(String).join('\n')).digest('hex').slice(0, 12);
  const dir = path.join(repoRoot, '.wpfarm', 'specs');
  const out = path.join(dir, `${name.replace(/\.json$/, '')}.subset-${key}.json`);
  if (existsSync(out)) return out;
  const spec = JSON.parse(readFileSync(specPath(name), 'utf8')) as Json;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(subsetOpenApi(spec, keep)));
  // rename: concurrent test files never read a half-written subset
  renameSync(tmp, out);
  return out;
}
