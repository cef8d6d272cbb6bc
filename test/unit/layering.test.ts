// The engine's layering, read from the sources: nothing under lib/ may import from the farm (roles/,
// playbooks/), the tooling (scripts/, bench/) or the tests; and facts know no operations (lib/facts.ts
// imports nothing from lib/ops). Imports are read with the TypeScript parser, so every form counts: static
// imports, `import type`, side-effect imports, re-exports, `import x = require()`, `require('...')`, dynamic
// `import('...')` with a string literal and type-level `import('...')`. Comments and strings do not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FORBIDDEN = ['roles', 'playbooks', 'scripts', 'bench', 'test'];

interface ImportRef {
  specifier: string;
  line: number;
  kind: string;
}

/** Every module specifier a TypeScript source names, with its line and the form it was written in. */
function importsOf(source: string, fileName = 'x.ts'): ImportRef[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out: ImportRef[] = [];
  const add = (node: ts.Node, spec: ts.Node | undefined, kind: string) => {
    if (!spec || !ts.isStringLiteralLike(spec)) return;
    out.push({ specifier: spec.text, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, kind });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) add(node, node.moduleSpecifier, node.importClause?.isTypeOnly ? 'import type' : 'import');
    else if (ts.isExportDeclaration(node)) add(node, node.moduleSpecifier, 're-export');
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, node.moduleReference.expression, 'import =');
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node, node.argument.literal, 'type import()');
    else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword) add(node, node.arguments[0], 'import()');
      else if (ts.isIdentifier(callee) && callee.text === 'require') add(node, node.arguments[0], 'require()');
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** Where a specifier of `fromFile` points inside the repository ("roles/x.ts"), or null for a package. */
function resolveInRepo(fromFile: string, specifier: string, root = ROOT): string | null {
  let target: string;
  if (specifier.startsWith('file:')) target = fileURLToPath(specifier);
  else if (specifier.startsWith('.') || specifier.startsWith('/')) target = resolve(dirname(fromFile), specifier);
  else return null;
  const rel = relative(root, target);
  return rel.startsWith('..') ? rel : rel.split(sep).join('/');
}

/** The layering violations of one lib file's source (repository-relative `file`). */
function violations(file: string, source: string, root = ROOT): string[] {
  const bad: string[] = [];
  for (const ref of importsOf(source, file)) {
    const to = resolveInRepo(join(root, file), ref.specifier, root);
    if (to === null) continue;
    const top = to.split('/')[0]!;
    const at = `${file}:${ref.line}: ${ref.kind} '${ref.specifier}'`;
    if (to.startsWith('..')) bad.push(`${at} leaves the repository`);
    else if (FORBIDDEN.includes(top)) bad.push(`${at} reaches ${top}/ (lib/ is the engine only)`);
    else if (file === 'lib/facts.ts' && to.startsWith('lib/ops/')) bad.push(`${at}: facts must not know operations`);
  }
  return bad;
}

function libFiles(dir = join(ROOT, 'lib')): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...libFiles(p));
    else if (/\.(ts|mts|cts|js|mjs)$/.test(e.name)) out.push(relative(ROOT, p).split(sep).join('/'));
  }
  return out.sort();
}

test('the parser sees every import form and nothing in comments or strings', () => {
  const src = [
    "import { a } from '../roles/wp-site/site.ts';",
    "import type { B } from '../playbooks/x.ts';",
    "import '../scripts/side-effect.ts';",
    "import * as ns from './ops/base.ts';",
    "export { c } from '../bench/workload.ts';",
    "export * from '../test/harness/sshd.ts';",
    "export type { D } from './types.ts';",
    "import e = require('../roles/e.ts');",
    'const m = await import(\n  "../roles/dyn.ts"\n);',
    "type S = import('node:stream').Duplex;",
    "const r = require('../roles/req.cjs');",
    'const n = await import(someVariable);',
    "// import { z } from '../roles/in-a-comment.ts';",
    "/* export * from '../roles/in-a-block-comment.ts'; */",
    'const s = "import { y } from \'../roles/in-a-string.ts\'";',
  ].join('\n');
  const refs = importsOf(src);
  assert.deepEqual(
    refs.map((r) => `${r.line} ${r.kind} ${r.specifier}`),
    [
      '1 import ../roles/wp-site/site.ts',
      '2 import type ../playbooks/x.ts',
      '3 import ../scripts/side-effect.ts',
      '4 import ./ops/base.ts',
      '5 re-export ../bench/workload.ts',
      '6 re-export ../test/harness/sshd.ts',
      '7 re-export ./types.ts',
      '8 import = ../roles/e.ts',
      '9 import() ../roles/dyn.ts',
      '12 type import() node:stream',
      '13 require() ../roles/req.cjs',
    ],
  );
});

test('self-check: a synthetic offending lib file is caught by the same checker, a clean one is not', () => {
  const offending = [
    "import { loadSites } from '../roles/wp-site/site.ts';",
    "import type { X } from '../playbooks/add-site.ts';",
    "export * from '../bench/workload.ts';",
    "const t = await import('../test/harness/rgw.ts');",
    "import { sh } from '../scripts/build-cli.ts';",
    "import { y } from '../../elsewhere/y.ts';",
  ].join('\n');
  const bad = violations('lib/x.ts', offending);
  assert.equal(bad.length, 6, bad.join('\n'));
  assert.match(bad[0]!, /^lib\/x\.ts:1: import '\.\.\/roles\/wp-site\/site\.ts' reaches roles\//);
  assert.match(bad[1]!, /^lib\/x\.ts:2: import type .* reaches playbooks\//);
  assert.match(bad[2]!, /^lib\/x\.ts:3: re-export .* reaches bench\//);
  assert.match(bad[3]!, /^lib\/x\.ts:4: import\(\) .* reaches test\//);
  assert.match(bad[4]!, /^lib\/x\.ts:5: import .* reaches scripts\//);
  assert.match(bad[5]!, /^lib\/x\.ts:6: import .* leaves the repository/);
  // two levels down, the same farm module is two '..' away
  assert.equal(violations('lib/cloud/x.ts', "import type { X } from '../../playbooks/add-site.ts';").length, 1);
  // '../roles' from lib/ops/x.ts is lib/roles: inside lib, allowed; from lib/x.ts it is the farm
  assert.deepEqual(violations('lib/ops/x.ts', "import { a } from '../roles.ts';"), []);
  assert.equal(violations('lib/x.ts', "import { a } from '../roles/a.ts';").length, 1);
  // facts → ops is refused; facts → shell and ops → facts are fine
  assert.equal(violations('lib/facts.ts', "import { defineOp } from './ops/base.ts';").length, 1);
  assert.equal(violations('lib/facts.ts', "export type { Op } from './ops/base.ts';").length, 1);
  assert.deepEqual(violations('lib/facts.ts', "import { sections } from './shell.ts';"), []);
  assert.deepEqual(violations('lib/ops/docker.ts', "import { parseSwarm } from '../facts.ts';"), []);
  assert.deepEqual(violations('lib/x.ts', "import { $ } from 'zx';\nimport fs from 'node:fs';"), []);
});

test('nothing under lib/ imports roles/, playbooks/, scripts/, bench/ or test/; facts import no ops', () => {
  const files = libFiles();
  let imports = 0;
  let relativeImports = 0;
  const bad: string[] = [];
  for (const file of files) {
    const source = readFileSync(join(ROOT, file), 'utf8');
    const refs = importsOf(source, file);
    imports += refs.length;
    relativeImports += refs.filter((r) => r.specifier.startsWith('.')).length;
    bad.push(...violations(file, source));
  }
  assert.ok(files.length > 30, `found only ${files.length} files under lib/`);
  assert.ok(imports > 100, `found only ${imports} imports under lib/`);
  assert.ok(relativeImports > 50, `found only ${relativeImports} relative imports under lib/`);
  assert.ok(files.includes('lib/facts.ts') && files.includes('lib/ops/base.ts'), 'lib/facts.ts and lib/ops/base.ts are read');
  assert.deepEqual(bad, [], `lib/ must stay the engine:\n${bad.join('\n')}`);
});
