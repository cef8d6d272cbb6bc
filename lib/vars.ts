// Reading inventory vars of loose types, the same way everywhere (roles and engine).
/** A string var: the value when it is a non-empty string, else `dflt`. */
export function str(v: unknown, dflt: string): string {
  return typeof v === 'string' && v !== '' ? v : dflt;
}

/** `'a, b,,c'` → `['a', 'b', 'c']`: comma separated, items trimmed, empty items dropped. */
export function splitList(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/**
 * A list var: a YAML list (items as strings), or a string of comma-separated items, trimmed, empty ones dropped
 * (`'a,b'` is two items: that is how a list arrives from `-e name=a,b`); anything else is [].
 */
export function list(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  return typeof v === 'string' ? splitList(v) : [];
}
