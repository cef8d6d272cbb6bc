// A small, fast, deterministic YAML emitter for plain data (objects, arrays, strings, numbers,
// booleans). 500 stacks through the `yaml` package's stringify cost ~6 s here; this costs
// milliseconds. Every string VALUE is written double-quoted in JSON syntax (a JSON string is a valid
// YAML double-quoted scalar), so no value can be read back as a YAML 1.1 boolean ("no", "off"),
// a number, null or an octal. Keys are plain only when they cannot be mistaken for anything else.

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_./-]*$/;
const AMBIGUOUS_KEY = /^(y|n|yes|no|on|off|true|false|null|~)$/i;

function key(k: string): string {
  return PLAIN_KEY.test(k) && !AMBIGUOUS_KEY.test(k) ? k : JSON.stringify(k);
}

function scalar(v: unknown, where: string): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`yaml-emit: ${where}: non-finite number`);
    return String(v);
  }
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v === null) return 'null';
  throw new Error(`yaml-emit: ${where}: unsupported value of type ${typeof v}`);
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function emit(v: unknown, indent: string, out: string[], where: string): void {
  if (isObj(v)) {
    for (const [k, val] of Object.entries(v)) {
      if (val === undefined) continue;
      const w = `${where}.${k}`;
      if (isObj(val)) {
        if (Object.keys(val).length === 0) out.push(`${indent}${key(k)}: {}`);
        else {
          out.push(`${indent}${key(k)}:`);
          emit(val, indent + '  ', out, w);
        }
      } else if (Array.isArray(val)) {
        if (val.length === 0) out.push(`${indent}${key(k)}: []`);
        else {
          out.push(`${indent}${key(k)}:`);
          emit(val, indent + '  ', out, w);
        }
      } else out.push(`${indent}${key(k)}: ${scalar(val, w)}`);
    }
    return;
  }
  if (Array.isArray(v)) {
    v.forEach((item, i) => {
      const w = `${where}[${i}]`;
      if (isObj(item) && Object.keys(item).length) {
        const sub: string[] = [];
        emit(item, indent + '  ', sub, w);
        // first line of the mapping goes after "- "
        out.push(`${indent}- ${sub[0].slice(indent.length + 2)}`, ...sub.slice(1));
      } else if (Array.isArray(item) && item.length) {
        throw new Error(`yaml-emit: ${w}: nested sequences are not supported`);
      } else if (isObj(item)) out.push(`${indent}- {}`);
      else if (Array.isArray(item)) out.push(`${indent}- []`);
      else out.push(`${indent}- ${scalar(item, w)}`);
    });
    return;
  }
  throw new Error(`yaml-emit: ${where}: the document must be a mapping`);
}

/** Emit a mapping as block YAML (2-space indent, insertion order of keys). */
export function emitYaml(doc: Record<string, unknown>): string {
  const out: string[] = [];
  emit(doc, '', out, '$');
  return out.join('\n') + '\n';
}
