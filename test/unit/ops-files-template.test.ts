// template: ejs rendering with strict variables (errors name file, line, variable) and the write.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { after, describe, test } from 'node:test';
import { InputError } from '../../lib/errors.ts';
import { renderTemplate, template } from '../../lib/ops/template.ts';
import { cycle, runOp, tempDir } from './ops-files.harness.ts';

// templates live under the working directory (like templates/), so messages use relative paths
const tdir = join(process.cwd(), '.wpfarm', `test-templates-${process.pid}`);
mkdirSync(tdir, { recursive: true });
const rel = relative(process.cwd(), tdir);
const tmp = tempDir('wpf-tpl-');
after(() => {
  rmSync(tdir, { recursive: true, force: true });
  tmp.cleanup();
});
const tpl = (name: string, text: string): string => {
  writeFileSync(join(tdir, name), text);
  return join(rel, name);
};

function inputError(re: RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof InputError, `InputError expected, got ${String(e)}`);
    assert.match(e.message, re);
    return true;
  };
}

describe('renderTemplate', () => {
  test('renders vars, nested values, arrays, loops, escaping', () => {
    const src = tpl(
      'ok.conf.ejs',
      'server_name <%= site.domain %>;\n<% for (const u of upstreams) { %>server <%= u %>;\n<% } %>title=<%= title %> raw=<%- title %>\n',
    );
    const out = renderTemplate(src, { site: { domain: 'ex.com' }, upstreams: ['10.0.0.1', '10.0.0.2'], title: 'a<b' });
    assert.equal(out, 'server_name ex.com;\nserver 10.0.0.1;\nserver 10.0.0.2;\ntitle=a&lt;b raw=a<b\n');
  });

  test('a missing variable names the file, the line and the variable', () => {
    const src = tpl('x.conf.ejs', Array.from({ length: 11 }, (_, i) => `line ${i + 1}`).join('\n') + '\nlisten <%= foo %>;\n');
    assert.throws(
      () => renderTemplate(src, { bar: 1 }),
      inputError(new RegExp(`^${rel.replace(/[.]/g, '\\.')}/x\\.conf\\.ejs:12: undefined variable 'foo'$`)),
    );
  });

  test('a missing property of a var is an error too (site.domian)', () => {
    const src = tpl('prop.ejs', 'a\n<%= site.domian %>\n');
    assert.throws(() => renderTemplate(src, { site: { domain: 'x' } }), inputError(/prop\.ejs:2: undefined variable 'site\.domian'$/));
    const deep = tpl('deep.ejs', '<%= db.nodes[1].addr %>\n');
    assert.throws(
      () => renderTemplate(deep, { db: { nodes: [{ addr: 'a' }, { name: 'b' }] } }),
      inputError(/deep\.ejs:1: undefined variable 'db\.nodes\[1\]\.addr'$/),
    );
  });

  test('optional values: typeof checks and `in` work; methods and JSON work', () => {
    const src = tpl(
      'opt.ejs',
      "<% if (typeof extra !== 'undefined') { %>extra<% } %><%= 'port' in site ? site.port : 80 %> <%- JSON.stringify(site) %> <%= list.join(',') %> <%= list.length %>\n",
    );
    assert.equal(renderTemplate(src, { site: { a: 1 }, list: [1, 2] }), '80 {"a":1} 1,2 2\n');
    assert.equal(renderTemplate(src, { site: { port: 81 }, list: [], extra: 1 }), 'extra81 {"port":81}  0\n');
  });

  test('an error inside an include points at the included file', () => {
    tpl('inner.ejs', 'one\ntwo <%= missing_in_inner %>\n');
    const src = tpl('outer.ejs', 'head\n<%- include("inner.ejs") %>\n');
    assert.throws(() => renderTemplate(src, {}), inputError(/inner\.ejs:2: undefined variable 'missing_in_inner'$/));
  });

  test('vars named like ejs internals (include, __append, locals) do not break rendering', () => {
    tpl('part.ejs', 'part <%= name %>\n');
    const src = tpl('internals.ejs', "<%- include('part.ejs') %>end <%= locals.name %>\n");
    assert.equal(renderTemplate(src, { name: 'n', include: 'not a function', __append: 1, locals: 'x', escapeFn: 0 }), 'part n\nend n\n');
  });

  test('syntax errors and runtime errors are InputErrors with the file', () => {
    const bad = tpl('bad.ejs', 'a <%= if ( %>\n');
    assert.throws(() => renderTemplate(bad, {}), inputError(/bad\.ejs: template syntax error/));
    const rt = tpl('rt.ejs', 'x\n<%= n.toFixed(2).nope() %>\n');
    assert.throws(() => renderTemplate(rt, { n: 1 }), inputError(/rt\.ejs:2: template error: .*not a function/));
    assert.throws(() => renderTemplate(join(rel, 'missing.ejs'), {}), inputError(/missing\.ejs: template not found: ENOENT/));
  });

  test('an edited template is recompiled (cache keyed by mtime and size)', () => {
    const src = tpl('edit.ejs', 'v1 <%= a %>\n');
    assert.equal(renderTemplate(src, { a: 1 }), 'v1 1\n');
    writeFileSync(join(tdir, 'edit.ejs'), 'version2 <%= a %>\n');
    assert.equal(renderTemplate(src, { a: 1 }), 'version2 1\n');
  });
});

describe('template operation', () => {
  test('host vars < step vars; check predicts; run writes; rerun ok; diff', async () => {
    const src = tpl('app.conf.ejs', 'name=<%= name %>\nport=<%= port %>\n');
    const p = join(tmp.dir, 'app.conf');
    const vars = { name: 'h1', port: 80 };
    const make = () => template({ path: p, src, vars: { port: 8080 }, mode: '0640' });
    const { check, run, rerun } = await cycle(make, { vars, diff: true });
    assert.deepEqual(check.plan.changes, ['create (18 bytes, mode 0640)']);
    assert.equal(check.plan.diff, `--- /dev/null\n+++ ${p}\n@@ -0,0 +1,2 @@\n+name=h1\n+port=8080\n`);
    assert.deepEqual(run.plan.changes, check.plan.changes);
    assert.equal(readFileSync(p, 'utf8'), 'name=h1\nport=8080\n');
    assert.equal(statSync(p).mode & 0o7777, 0o640);
    assert.equal(rerun.status, 'ok');
    const changed = await runOp(make(), { vars: { name: 'h2' }, diff: true });
    assert.match(changed.plan.changes[0]!, /^content changed \(18 -> 18 bytes/);
    assert.equal(changed.plan.diff, `--- ${p}\n+++ ${p}\n@@ -1,2 +1,2 @@\n-name=h1\n+name=h2\n port=8080\n`);
  });

  test('a missing variable fails the step with the InputError, nothing written', async () => {
    const src = tpl('miss.ejs', 'a=<%= a %>\nb=<%= b %>\n');
    const p = join(tmp.dir, 'miss.conf');
    await assert.rejects(runOp(template({ path: p, src }), { vars: { a: 1 } }), inputError(/miss\.ejs:2: undefined variable 'b'/));
    assert.throws(() => statSync(p));
  });

  test('secret: diff hidden', async () => {
    const src = tpl('sec.ejs', 'password=<%= pw %>\n');
    const p = join(tmp.dir, 'sec.conf');
    writeFileSync(p, 'password=old\n');
    const r = await runOp(template({ path: p, src, secret: true }), { vars: { pw: 'hunter2' }, diff: true, check: true });
    assert.equal(r.plan.diff, 'content hidden (secret)');
    assert.ok(!r.plan.changes.join(' ').includes('hunter2'));
  });
});
