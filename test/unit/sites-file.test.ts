// add-sites' input file (roles/wp-site/sites-file.ts): a YAML list of sites checked as a whole against the farm's
// records; every problem is named file:line:col field (exit 4 through InputErrors), nothing is written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InputErrors } from '../../lib/schema.ts';
import { writeRecord } from '../../roles/wp-site/playbook-util.ts';
import { readSitesFile } from '../../roles/wp-site/sites-file.ts';

const CIDRS = ['203.0.113.0/24'];

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(path.join(tmpdir(), 'sites-file-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The problems of a bad file, as "line:col field: message" (the file name cut off). */
function problems(file: string, sitesDir: string): string[] {
  try {
    readSitesFile(file, sitesDir, CIDRS);
  } catch (e) {
    assert.ok(e instanceof InputErrors, String(e));
    assert.equal(e.exitCode, 4);
    return e.messages.map((m) => m.slice(m.indexOf(':') + 1));
  }
  assert.fail('expected bad input');
}

test('a good file: defaults filled in, ids derived, lines kept, records not written', () => {
  withDir((dir) => {
    const file = path.join(dir, 'sites.yml');
    const sites = path.join(dir, 'records');
    writeFileSync(
      file,
      [
        '# three shops',
        '- domain: blog.example.com',
        '  aliases: [www.blog.example.com]',
        '  title: The blog',
        '  replicas: 3',
        '- domain: shop.example.com',
        '  id: shop',
        '  admin_user: boss',
        '  admin_email: boss@example.org',
        '',
      ].join('\n'),
    );
    const r = readSitesFile(file, sites, CIDRS);
    assert.deepEqual(
      r.map((s) => [s.id, s.domain, s.aliases, s.replicas, s.title, s.adminUser, s.adminEmail, s.line]),
      [
        ['blog-example-com', 'blog.example.com', ['www.blog.example.com'], 3, 'The blog', 'wpadmin', 'admin@blog.example.com', 2],
        ['shop', 'shop.example.com', [], undefined, 'shop.example.com', 'boss', 'boss@example.org', 6],
      ],
    );
    assert.match(
      r[0]!.record!,
      /^id: blog-example-com\ndomain: blog\.example\.com\naliases:\n {2}- www\.blog\.example\.com\nreplicas: 3\n$/m,
    );
    assert.match(r[1]!.record!, /\nid: shop\ndomain: shop\.example\.com\n$/);
    assert.throws(() => readdirSync(sites), /ENOENT/, 'nothing written');
  });
});

test('bad entries: every problem named line:col field, none skipped', () => {
  withDir((dir) => {
    const file = path.join(dir, 'sites.yml');
    writeFileSync(
      file,
      [
        '- domain: ok.example.com', // 1
        '- domain: a$(touch /tmp/x).com', // 2
        '- domain: two.example.com', // 3
        '  replicas: 50', // 4
        '  admin_email: not-an-address', // 5
        '- domian: typo.example.com', // 6
        '- domain: ok.example.com', // 7: the same domain again
        '- domain: three.example.com', // 8
        '  admin_user: "x y"', // 9
        '  title: "bad\\u0007title"', // 10
        '  aliases: [ok.example.com]', // 11: another entry's domain
      ].join('\n'),
    );
    const p = problems(file, path.join(dir, 'records'));
    assert.deepEqual(
      p.map((x) => x.replace(/:.*$/, '')),
      ['2', '4', '5', '6', '6', '9', '10'],
      p.join('\n'),
    );
    assert.match(p[0]!, /^2:\d+ \[1\]\.domain: .*/);
    assert.match(p[1]!, /^4:\d+ \[2\]\.replicas: must be an integer from 1 to 20, got the number 50$/);
    assert.match(p[2]!, /^5:\d+ \[2\]\.admin_email: "not-an-address" is not an e-mail address$/);
    assert.match(p.join('\n'), /^6:\d+ \[3\]\.domian: unknown key 'domian' in \[3\] \(did you mean 'domain'\?\)/m);
    assert.match(p.join('\n'), /^6:\d+ \[3\]\.domain: is required$/m);
  });
  // (lines 7 and 11 repeat a domain: checked once every entry is well formed, below)
  // the schema passes: the repeated names are named, each at its second place
  withDir((dir) => {
    const file = path.join(dir, 'sites.yml');
    writeFileSync(
      file,
      [
        '- domain: ok.example.com', // 1
        '- domain: ok.example.com', // 2
        '- domain: three.example.com', // 3
        '  aliases: [ok.example.com]', // 4
        '- domain: four.example.com', // 5
        '  id: three-example-com', // 6: the id line 3 derives
      ].join('\n'),
    );
    const p = problems(file, path.join(dir, 'records'));
    assert.deepEqual(
      p.map((x) => x.replace(/ .*$/, '')),
      ['2:11', '2:11', '4:13', '6:7'],
      p.join('\n'),
    );
    assert.match(p[0]!, /\[1\]\.domain: (id ok-example-com|domain ok\.example\.com) is already given by the site at line 1$/);
    assert.match(p[2]!, /\[2\]\.aliases\[0\]: domain ok\.example\.com is already given by the site at line 1$/);
    assert.match(p[3]!, /\[3\]\.id: id three-example-com is already given by the site at line 3$/);
  });
});

test('against the farm: a domain another record serves is bad input; the same site again is kept (a rerun)', () => {
  withDir((dir) => {
    const records = path.join(dir, 'records');
    const file = path.join(dir, 'sites.yml');
    // an existing record: blog (blog.example.com, alias www.blog.example.com)
    writeFileSync(file, '- domain: blog.example.com\n  id: blog\n  aliases: [www.blog.example.com]\n');
    const first = readSitesFile(file, records, CIDRS);
    writeRecord(path.join(records, 'blog.yml'), first[0]!.record!);
    // the same file again: the site exists with this domain, kept without a record to write
    const again = readSitesFile(file, records, CIDRS);
    assert.equal(again.length, 1);
    assert.equal(again[0]!.record, undefined);
    // a new site claiming the existing alias, and an id taken by another domain
    writeFileSync(file, '- domain: www.blog.example.com\n- domain: other.example.com\n  id: blog\n');
    const p = problems(file, records);
    assert.equal(p.length, 2, p.join('\n'));
    assert.match(p[0]!, /^1:\d+ \[0\]\.domain: .*www\.blog\.example\.com/);
    assert.match(p[1]!, /^3:\d+ \[1\]\.id: site id blog is already used by blog\.example\.com/);
  });
});

test('not a list, an empty list, a YAML error, a missing file: bad input naming the file', () => {
  withDir((dir) => {
    const file = path.join(dir, 'sites.yml');
    for (const [text, re] of [
      ['domain: a.example.com\n', /must be a list of sites/],
      ['[]\n', /lists no site/],
      ['- domain: [\n', /YAML syntax error/],
    ] as const) {
      writeFileSync(file, text);
      assert.throws(
        () => readSitesFile(file, dir),
        (e: Error & { exitCode?: number }) => e.exitCode === 4 && re.test(e.message) && e.message.includes('sites.yml'),
      );
    }
    assert.throws(
      () => readSitesFile(path.join(dir, 'nope.yml'), dir),
      (e: Error & { exitCode?: number }) => e.exitCode === 4 && /file not found: .*nope\.yml/.test(e.message),
    );
  });
});
