// The WordPress exporter's build context (roles/wp-site/images.ts exporterContext): bundled by esbuild once, then
// reused while nothing it was made from changed (its stamp: esbuild's version, the image directory's files, every
// source the bundle read, the files it wrote). Each call below is its own process, as each run is (the context is
// also shared within a process). The context goes to a directory of the test's own, never the farm's.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { IMAGES_DIR } from '../../roles/wp-site/images.ts';

const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-exporter-ctx-'));
after(() => rmSync(work, { recursive: true, force: true }));
const images = path.join(work, 'images');
cpSync(path.join(IMAGES_DIR, 'wp-exporter'), path.join(images, 'wp-exporter'), { recursive: true });
const into = path.join(work, 'ctx');
const bundle = path.join(into, 'wp-exporter.cjs');

/** exporterContext in a new process; the context's tag (its content hash with a fixed base id) */
function assemble(): string {
  const script =
    "import { exporterContext, contextHash } from './roles/wp-site/images.ts';" +
    `const dir = await exporterContext(${JSON.stringify(images)}, ${JSON.stringify(into)});` +
    "process.stdout.write(contextHash(dir, { baseImageId: 'sha256:base' }));";
  return execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: path.resolve(IMAGES_DIR, '../..'),
    encoding: 'utf8',
  });
}

test('assembled once, then reused as long as nothing it was made from changed; any change assembles it again', () => {
  const tag = assemble();
  assert.match(tag, /^[0-9a-f]{16}$/);
  const stamp = JSON.parse(readFileSync(`${into}.inputs.json`, 'utf8')) as { read: Record<string, string | null> };
  const sources = Object.keys(stamp.read);
  assert.ok(
    sources.some((f) => f.endsWith('roles/wp-exporter/service.ts')) && sources.some((f) => f.includes('node_modules/mysql2/')),
    `the stamp lists the bundle's sources: ${sources.length} files`,
  );
  const built = statSync(bundle).mtimeMs;

  // no change: the same context, not written again
  assert.equal(assemble(), tag);
  assert.equal(statSync(bundle).mtimeMs, built, 'reused: the bundle was not written again');

  // a file of the image directory changed: another context, another tag
  appendFileSync(path.join(images, 'wp-exporter', 'Dockerfile'), '\n# changed\n');
  const changed = assemble();
  assert.notEqual(changed, tag);
  assert.match(readFileSync(path.join(into, 'Dockerfile'), 'utf8'), /# changed/);

  // a file added to the image directory: assembled again, the file is in the context
  writeFileSync(path.join(images, 'wp-exporter', 'extra.txt'), 'x\n');
  const added = assemble();
  assert.notEqual(added, changed);
  assert.equal(readFileSync(path.join(into, 'extra.txt'), 'utf8'), 'x\n');

  // the context itself edited by hand (the bundle): assembled again, back to what the inputs give
  const before = readFileSync(bundle);
  appendFileSync(bundle, '\n// edited\n');
  assert.equal(assemble(), added);
  assert.deepEqual(readFileSync(bundle), before);

  // a recorded source that is not what it was (the stamp says another sha256): bundled again
  const edited = JSON.parse(readFileSync(`${into}.inputs.json`, 'utf8')) as { read: Record<string, string | null> };
  const service = Object.keys(edited.read).find((f) => f.endsWith('roles/wp-exporter/service.ts'))!;
  edited.read[service] = '0'.repeat(64);
  writeFileSync(`${into}.inputs.json`, JSON.stringify(edited));
  const mtime = statSync(bundle).mtimeMs;
  assert.equal(assemble(), added);
  assert.notEqual(statSync(bundle).mtimeMs, mtime, 'bundled again');
});
