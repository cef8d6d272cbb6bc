import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { expandPairs, looksSerialized, replacePlain, rewriteValue } from '../../roles/migrate/serialized.ts';

const pairs = expandPairs([
  { from: 'http://old.example', to: 'https://new.example.com' },
  { from: 'https://old.example', to: 'https://new.example.com' },
]);

describe('serialized-safe URL rewrite', () => {
  it('plain text: whole origins only, JSON-escaped form too', () => {
    const r = replacePlain('a http://old.example/x b http://old.example.org c http://old.example. d http:\\/\\/old.example\\/y', pairs);
    assert.equal(
      r.value,
      'a https://new.example.com/x b http://old.example.org c https://new.example.com. d https:\\/\\/new.example.com\\/y',
    );
    assert.equal(r.replaced, 3);
  });

  it('a string: its byte length recomputed (multi-byte UTF-8)', () => {
    const v = 's:21:"http://old.example/é";';
    assert.equal(Buffer.byteLength('http://old.example/é'), 19 + 2);
    const r = rewriteValue(v, pairs);
    assert.deepEqual(r, { value: 's:26:"https://new.example.com/é";', replaced: 1, problems: [] });
  });

  it('nested arrays and objects, keys kept, other types copied', () => {
    const inner = 'http://old.example/a';
    const v =
      `a:3:{s:3:"url";s:${inner.length}:"${inner}";i:5;a:2:{i:0;b:1;s:1:"x";d:0.5;}` +
      `s:1:"o";O:8:"stdClass":1:{s:4:"home";s:18:"http://old.example";}}`;
    const r = rewriteValue(v, pairs);
    assert.equal(
      r.value,
      'a:3:{s:3:"url";s:25:"https://new.example.com/a";i:5;a:2:{i:0;b:1;s:1:"x";d:0.5;}' +
        's:1:"o";O:8:"stdClass":1:{s:4:"home";s:23:"https://new.example.com";}}',
    );
    assert.equal(r.replaced, 2);
    assert.deepEqual(r.problems, []);
  });

  it('double serialization: a serialized string inside a string', () => {
    const innerS = 's:18:"http://old.example";';
    const v = `s:${innerS.length}:"${innerS}";`;
    const r = rewriteValue(v, pairs);
    const newInner = 's:23:"https://new.example.com";';
    assert.equal(r.value, `s:${newInner.length}:"${newInner}";`);
  });

  it('malformed: a wrong length is left as it is and reported', () => {
    const v = 'a:1:{s:3:"url";s:99:"http://old.example";}';
    const r = rewriteValue(v, pairs);
    assert.equal(r.value, v);
    assert.equal(r.replaced, 0);
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]!, /malformed serialized value/);
  });

  it('malformed: truncated, trailing bytes, unknown type', () => {
    for (const v of ['a:1:{s:3:"url";s:18:"http://old.example"', 's:18:"http://old.example";x;', 'a:1:{i:0;Z:18:"http://old.example";}']) {
      const r = rewriteValue(v, pairs);
      assert.equal(r.value, v, v);
      assert.equal(r.problems.length, 1, v);
    }
  });

  it('a malformed serialized string inside a valid value is kept; the rest is rewritten', () => {
    const bad = 's:50:"http://old.example";';
    const v = `a:2:{i:0;s:${bad.length}:"${bad}";i:1;s:18:"http://old.example";}`;
    const r = rewriteValue(v, pairs);
    assert.equal(r.value, `a:2:{i:0;s:${bad.length}:"${bad}";i:1;s:23:"https://new.example.com";}`);
    assert.equal(r.problems.length, 1);
  });

  it('values without the old URL are returned untouched (even malformed ones)', () => {
    const v = 'a:1:{s:3:"url";s:99:"http://other.example";}';
    assert.deepEqual(rewriteValue(v, pairs), { value: v, replaced: 0, problems: [] });
  });

  it('text that only resembles serialization is plain text', () => {
    assert.equal(looksSerialized('see http://old.example'), false);
    assert.equal(looksSerialized('s:1:"a";'), true);
    assert.equal(looksSerialized('N;'), true);
    assert.equal(rewriteValue('see http://old.example', pairs).value, 'see https://new.example.com');
  });

  it('C: payloads are kept and reported', () => {
    const payload = 's:18:"http://old.example";';
    const v = `C:3:"Foo":${payload.length}:{${payload}}`;
    const r = rewriteValue(v, pairs);
    assert.equal(r.value, v);
    assert.deepEqual(r.problems, ['custom-serialized Foo (C:) kept as it is']);
  });

  it('a longer pair wins over its prefix', () => {
    const p = expandPairs([
      { from: 'http://old.example', to: 'https://a.example' },
      { from: 'http://old.example/blog', to: 'https://b.example' },
    ]);
    assert.equal(replacePlain('http://old.example/blog/x http://old.example/y', p).value, 'https://b.example/x https://a.example/y');
  });
});
