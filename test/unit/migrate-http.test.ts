// roles/migrate/http.ts without processes: page normalisation (URLs, scripts, generated attributes), the first
// difference, and the parsing of the curl script's sections.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { quote } from '../../lib/shell.ts';
import { curlScript, firstDifference, normalisePage, parseCurl } from '../../roles/migrate/http.ts';

const bases = ['http://old.example', 'https://old.example'];
const page = (base: string, extra = '') => `<!doctype html><html><head><title>Vieux blog 😀 | ${base.replace(/^https?:/, '')}</title>
<link rel="stylesheet" href="${base}/wp-includes/css/x.css?ver=6.1.9"><script>var n = "${Math.random()}";</script></head>
<body class="home ${extra ? 'wp-container-7' : 'wp-container-2'}"><h1><a href="${base}/">Vieux blog</a></h1>
<!-- generated in 0.0${extra ? 2 : 3} s --><article><p dir="rtl">مرحبا <a href="${base}/about/">${base}/about/</a></p>
<img src="${base.replace(/\//g, '\\/')}/wp-content/uploads/2024/05/logo.png" alt=""></article>
<style>.a{color:red}</style><script src="${base}/wp-includes/js/wp-emoji.js?ver=${extra || '1'}"></script>${extra}</body></html>`;

test('the same page on the old and the new base normalises to the same text', () => {
  const a = normalisePage(page('http://old.example'), bases);
  const b = normalisePage(page('https://old.example', ''), bases);
  assert.equal(firstDifference(a, b), '');
  assert.match(a, /^title: Vieux blog 😀 \| @SITE@\n/, 'a scheme-relative URL too');
  assert.match(a, /links: @SITE@\/ @SITE@\/about\/ @SITE@\/wp-content\/uploads\/2024\/05\/logo\.png$/);
  assert.doesNotMatch(a, /color:red|Math|ver=|generated/);
});

test("the avatar host WordPress picks by the page's scheme is not a difference; another host still is", () => {
  const avatar = (u: string) => `<p>A WordPress Commenter</p><img src="${u}/avatar/d7a9?s=50&d=mm&r=g" alt="">`;
  const a = normalisePage(page('http://old.example', avatar('http://1.gravatar.com')), bases);
  const b = normalisePage(page('https://old.example', avatar('https://secure.gravatar.com')), bases);
  // the page() helper's extra also changes the emoji script's version: compare from the commenter on
  const from = (x: string) => x.slice(x.indexOf('A WordPress Commenter'));
  assert.equal(firstDifference(from(a), from(b)), '');
  assert.match(a, /@GRAVATAR@\/avatar\/d7a9/);
  const c = normalisePage(page('https://old.example', avatar('https://evil.example')), bases);
  assert.match(firstDifference(from(a), from(c)), /evil\.example/);
});

test('a visible difference (text or a link elsewhere) is found and located', () => {
  const a = normalisePage(page('http://old.example'), bases);
  const b = normalisePage(page('https://old.example', '<p>Legacy Hello</p>'), bases);
  assert.match(firstDifference(a, b), /^differ at character \d+: old .*, new .*Legacy Hello/);
  const c = normalisePage(page('http://old.example').replace('/about/">', '/about/" data-x="1">'), bases);
  assert.equal(firstDifference(a, c), '', 'other attributes are not compared');
  const d = normalisePage(
    page('http://old.example').replace('href="http://old.example/about/"', 'href="http://other.example/about/"'),
    bases,
  );
  assert.match(firstDifference(a, d), /other\.example/);
});

test('parseCurl reads status, location, cookies and the base64 body of each request', () => {
  const body = Buffer.from('<p>é😀</p>\n').toString('base64');
  const out = [
    '@@s0',
    '302',
    '@@h0',
    'HTTP/1.1 302 Found',
    'Location: https://old.example/wp-admin/',
    'Set-Cookie: wordpress_test_cookie=x; path=/',
    'set-cookie: wordpress_logged_in_abc=admin%7C1; path=/; HttpOnly',
    '',
    '@@b0',
    '',
    '@@s1',
    '200',
    '@@h1',
    'HTTP/1.1 200 OK',
    '@@b1',
    body,
  ].join('\n');
  const [a, b] = parseCurl(out, 2);
  assert.equal(a!.status, 302);
  assert.equal(a!.location, 'https://old.example/wp-admin/');
  assert.deepEqual(
    a!.setCookies.map((c) => c.split('=')[0]),
    ['wordpress_test_cookie', 'wordpress_logged_in_abc'],
  );
  assert.equal(b!.status, 200);
  assert.equal(b!.body, '<p>é😀</p>\n');
  assert.equal(parseCurl('', 1)[0]!.status, 0, 'no output: status 0');
});

test('the curl script quotes every value and keeps the password to stdin', () => {
  const s = curlScript(
    { base: 'https://old.example', connectTo: 'http://127.0.0.1:8080', curlArgs: ['-H', "Host: it's"], run: async () => '' },
    [{ path: '/?p=1' }, { path: '/wp-login.php', form: { log: 'ad min', pwd: '@stdin' }, cookie: 'a=b' }],
  );
  assert.ok(s.includes(`${quote('http://127.0.0.1:8080/?p=1')} </dev/null`), s);
  assert.ok(s.includes(`-H ${quote("Host: it's")}`), s);
  assert.ok(s.includes(`--data-urlencode ${quote('log=ad min')} --data-urlencode ${quote('pwd@-')} `), 'the password comes from stdin');
  assert.ok(s.includes(`-b ${quote('a=b')}`), s);
});
