// A subset of a big OpenAPI document: the paths matching some patterns, with every component they reach
// through $ref (schemas, parameters, request bodies, responses, headers) and all security schemes. Prism
// loads the 12 MB Cloudflare spec in minutes on this machine; a subset of the operations a test uses loads in
// seconds and validates the same way (the same schemas; see requestSideReadOnly for the one adjustment).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
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

/**
 * OpenAPI 3.0: a readOnly property that is `required` is required in responses only. Prism applies that to the top
 * level of a request body only, so a nested one (the Cloudflare rules' `version`, `last_updated` inside `rules[]`)
 * fails every request. This gives request bodies their own copies of the schemas they reach (`<name>__request`)
 * with readOnly properties left out of `required`; responses keep the schemas as they are.
 */
export function requestSideReadOnly(spec: Json): Json {
  const components = (spec['components'] ?? {}) as Record<string, Record<string, unknown>>;
  const schemas = (components['schemas'] ?? {}) as Record<string, unknown>;
  const REF = '#/components/schemas/';
  const resolve = (v: unknown): Json | undefined => {
    const ref = v && typeof v === 'object' ? (v as Json)['$ref'] : undefined;
    return typeof ref === 'string' && ref.startsWith(REF) ? (schemas[ref.slice(REF.length)] as Json | undefined) : (v as Json | undefined);
  };
  const copies = new Map<string, unknown>();
  const rewrite = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (!v || typeof v !== 'object') return v;
    const o = v as Json;
    const ref = o['$ref'];
    if (typeof ref === 'string' && ref.startsWith(REF)) {
      const name = ref.slice(REF.length);
      if (!copies.has(name)) {
        copies.set(name, null);
        copies.set(name, rewrite(schemas[name]));
      }
      return { ...o, $ref: `${REF}${name}__request` };
    }
    const out: Json = Object.fromEntries(Object.entries(o).map(([k, x]) => [k, rewrite(x)]));
    const props = o['properties'] as Json | undefined;
    if (Array.isArray(o['required']) && props) {
      out['required'] = (o['required'] as string[]).filter((k) => resolve(props[k])?.['readOnly'] !== true);
    }
    return out;
  };
  const bodies = (components['requestBodies'] ?? {}) as Record<string, unknown>;
  const newBodies = Object.fromEntries(Object.entries(bodies).map(([k, b]) => [k, rewrite(b)]));
  const paths = Object.fromEntries(
    Object.entries(spec['paths'] as Record<string, Json>).map(([p, item]) => [
      p,
      Object.fromEntries(
        Object.entries(item).map(([m, op]) => [
          m,
          op && typeof op === 'object' && 'requestBody' in (op as Json)
            ? { ...(op as Json), requestBody: rewrite((op as Json)['requestBody']) }
            : op,
        ]),
      ),
    ]),
  );
  const extra = Object.fromEntries([...copies].map(([k, x]) => [`${k}__request`, x]));
  return {
    ...spec,
    paths,
    components: { ...components, schemas: { ...schemas, ...extra }, ...(components['requestBodies'] ? { requestBodies: newBodies } : {}) },
  };
}

/** The subset of a shared spec (plain or .gz), written once per content into .wpfarm/specs; returns its path. */
export function specSubsetPath(name: string, keep: readonly RegExp[]): string {
  const key = createHash('sha256').update(name).update(keep.map(String).join('\n')).update('readonly-v1').digest('hex').slice(0, 12);
  const dir = path.join(repoRoot, '.wpfarm', 'specs');
  const out = path.join(dir, `${name.replace(/\.(json|ya?ml)$/, '')}.subset-${key}.json`);
  if (existsSync(out)) return out;
  const text = readFileSync(specPath(name), 'utf8');
  const spec = (/\.ya?ml$/.test(name) ? parseYaml(text) : JSON.parse(text)) as Json;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(requestSideReadOnly(subsetOpenApi(spec, keep))));
  // rename: concurrent test files never read a half-written subset
  renameSync(tmp, out);
  return out;
}
