// Validation of generated configuration against the official JSON schemas kept in ../shared/schemas
// (see ../shared/schemas/SOURCES.md for provenance). Used by the traefik, crowdsec and monitoring
// roles' tests; no network access, schemas are read from disk.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import AjvModule from 'ajv';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { ErrorObject, ValidateFunction } from 'ajv';

// ajv and ajv-formats are CommonJS; under NodeNext the default import is module.exports, whose
// `default` property is the class / plugin itself.
const Ajv = AjvModule.default;
const Ajv2020 = Ajv2020Module.default;
const addFormats = addFormatsModule.default;
type AjvInstance = InstanceType<typeof Ajv>;

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');

/** ../shared/schemas beside the repository, or $WPFARM_SHARED/schemas. */
export function sharedSchemasDir(): string {
  const shared = process.env.WPFARM_SHARED ? path.resolve(process.env.WPFARM_SHARED) : path.resolve(repoRoot, '../shared');
  return path.join(shared, 'schemas');
}

function readSchema(rel: string): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(sharedSchemasDir(), rel), 'utf8')) as Record<string, unknown>;
}

export type SchemaName =
  | 'traefik-static'
  | 'traefik-dynamic'
  | 'compose'
  | 'docker-stack-v3'
  | 'prometheus'
  | 'prometheus-rules'
  | 'grafana-dashboard'
  | 'crowdsec-acquisition-docker';

const cache = new Map<SchemaName, ValidateFunction>();

/** Go's time.ParseDuration syntax, as docker/cli registers the "duration" format. */
const goDuration = /^-?(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^0$/;

function withFormats<T extends AjvInstance>(ajv: T): T {
  addFormats(ajv);
  return ajv;
}

function compile(name: SchemaName): ValidateFunction {
  switch (name) {
    case 'traefik-static':
      return new Ajv({ allErrors: true }).compile(readSchema('traefik/traefik-v3.json'));
    case 'traefik-dynamic':
      return new Ajv({ allErrors: true }).compile(readSchema('traefik/traefik-v3-file-provider.json'));
    case 'prometheus':
      // SchemaStore lists this schema under ajvNotStrictMode.
      return withFormats(new Ajv({ allErrors: true, strictTypes: false })).compile(readSchema('prometheus/prometheus.json'));
    case 'prometheus-rules':
      return new Ajv({ allErrors: true }).compile(readSchema('prometheus/prometheus.rules.json'));
    case 'grafana-dashboard': {
      const ajv = withFormats(new Ajv({ allErrors: true }));
      ajv.addKeyword('x-deprecation-message');
      return ajv.compile(readSchema('grafana/dashboard.jsonschema.json'));
    }
    case 'compose': {
      const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, strictTypes: false });
      const require = createRequire(import.meta.url);
      const draft7 = require('ajv/dist/refs/json-schema-draft-07.json') as Record<string, unknown>;
      ajv.addMetaSchema({ ...draft7, $id: 'https://json-schema.org/draft-07/schema' });
      addFormats(ajv);
      ajv.addFormat('duration', goDuration);
      return ajv.compile(readSchema('docker/compose-spec.json'));
    }
    case 'docker-stack-v3': {
      // docker/cli's own schema (what `docker stack deploy` enforces) is draft-04. Its only draft-04
      // specifics are fragment-only `id` annotations ("#/definitions/service"); every $ref is
      // root-relative, so dropping them and declaring draft-07 keeps the schema's meaning.
      const raw = readSchema('docker/config_schema_v3.13.json');
      const ajv = withFormats(new Ajv({ allErrors: true, allowUnionTypes: true, strictTypes: false }));
      ajv.addFormat('duration', goDuration);
      ajv.addFormat(
        'ports',
        (v: string | number) =>
          /^(\d+(-\d+)?:)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/.test(String(v)) || /^[\d.:[\]a-f]+:\d+/.test(String(v)),
      );
      ajv.addFormat('expose', true);
      return ajv.compile(draft04to07(raw) as Record<string, unknown>);
    }
    case 'crowdsec-acquisition-docker': {
      const ajv = withFormats(new Ajv2020({ allErrors: true }));
      ajv.addSchema(readSchema('crowdsec/acquisition-docker.json'), 'docker.yaml');
      return ajv.compile(readSchema('crowdsec/acquisition-datasource.json'));
    }
  }
}

function draft04to07(node: unknown, root = true): unknown {
  if (Array.isArray(node)) return node.map((x) => draft04to07(x, false));
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (k === 'id' && typeof v === 'string' && (v.startsWith('#') || root)) continue;
    if (k === '$schema' && root) continue;
    // under "properties"/"patternProperties"/"definitions" keys are names, not keywords
    out[k] = draft04to07(v, false);
  }
  if (root) {
    out.$schema = 'http://json-schema.org/draft-07/schema#';
    out.$id = 'https://wpfarm.invalid/docker/config_schema_v3.13.json';
  }
  return out;
}

export interface SchemaResult {
  valid: boolean;
  errors: string[];
}

/** Validate a parsed document; errors as "instancePath message" lines. */
export function validateAgainst(name: SchemaName, doc: unknown): SchemaResult {
  let v = cache.get(name);
  if (!v) {
    v = compile(name);
    cache.set(name, v);
  }
  const valid = v(doc) as boolean;
  return { valid, errors: valid ? [] : formatErrors(v.errors ?? []) };
}

function formatErrors(errors: ErrorObject[]): string[] {
  return errors.map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${e.params ? JSON.stringify(e.params) : ''}`.trim());
}
