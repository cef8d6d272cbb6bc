// Unified diff of two texts for the engine's --diff output, computed by the `diff` package (jsdiff:
// Myers' algorithm, context, "\ No newline at end of file" markers, an edit-length cap). What is ours: the
// `diff -u` compatible hunk headers (`@@ -3 +3 @@` for one-line ranges) and caps, so that a huge or wildly
// different file never burns the controller's CPU: beyond the caps the diff is replaced by a one-line note.
// Both texts are masked (lib/secrets.ts) BEFORE they are diffed: a diff prefixes every line with -/+/space,
// so a secret spanning lines (a private key) could no longer be found in the diff's text afterwards, and the
// old content of a file (a password being replaced or removed) is masked just like the new one.
import { structuredPatch } from 'diff';
import { mask } from './secrets.ts';

export interface DiffOptions {
  /** label of the old text ("--- label"); default "before" */
  fromLabel?: string;
  /** label of the new text ("+++ label"); default "after" */
  toLabel?: string;
  /** lines of context around each change; default 3 */
  context?: number;
  /** max total lines (old + new) to diff; default 40000 */
  maxLines?: number;
  /** max edit distance explored before giving up; default 1500 */
  maxEdits?: number;
  /** max output characters; default 200000 (the rest is cut with a note) */
  maxChars?: number;
}

/** Is the text binary (contains NUL)? */
export function isBinary(text: string | Buffer): boolean {
  return typeof text === 'string' ? text.includes('\u0000') : text.includes(0);
}

function lineCount(text: string): number {
  if (text === '') return 0;
  let n = 1;
  for (let i = text.indexOf('\n'); i >= 0 && i < text.length - 1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * Unified diff of two texts. Returns '' when they are equal. When the caps are exceeded the result is
 * a single line starting with "diff omitted:".
 */
export function unifiedDiff(beforeText: string, afterText: string, opts: DiffOptions = {}): string {
  if (beforeText === afterText) return '';
  const before = mask(beforeText);
  const after = mask(afterText);
  if (before === after) return 'diff omitted: only secret values changed';
  const maxLines = opts.maxLines ?? 40000;
  const maxEdits = opts.maxEdits ?? 1500;
  const maxChars = opts.maxChars ?? 200000;
  if (isBinary(before) || isBinary(after)) {
    return `diff omitted: binary content (${Buffer.byteLength(before)} -> ${Buffer.byteLength(after)} bytes)`;
  }
  const na = lineCount(before);
  const nb = lineCount(after);
  if (na + nb > maxLines) return `diff omitted: too many lines (${na} -> ${nb}, cap ${maxLines})`;
  const patch = structuredPatch('a', 'b', before, after, undefined, undefined, {
    context: opts.context ?? 3,
    maxEditLength: maxEdits,
  });
  if (!patch) return `diff omitted: too many differences (more than ${maxEdits} edits)`;
  const out: string[] = [`--- ${opts.fromLabel ?? 'before'}`, `+++ ${opts.toLabel ?? 'after'}`];
  let chars = out[0]!.length + out[1]!.length + 2;
  for (const h of patch.hunks) {
    // GNU diff: a range of one line is written without its count; an empty range starts at the line before.
    const header = `@@ -${range(h.oldStart, h.oldLines)} +${range(h.newStart, h.newLines)} @@`;
    for (const line of [header, ...h.lines]) {
      chars += line.length + 1;
      if (chars > maxChars) {
        out.push(`... diff cut at ${maxChars} characters`);
        return `${out.join('\n')}\n`;
      }
      out.push(line);
    }
  }
  return `${out.join('\n')}\n`;
}

function range(start: number, count: number): string {
  if (count === 0) return `${Math.max(0, start - 1)},0`; // jsdiff names the line after an empty range, GNU the one before
  return count === 1 ? `${start}` : `${start},${count}`;
}
