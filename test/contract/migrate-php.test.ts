// The serialized-safe URL rewrite against real PHP: values made by PHP's serialize() (emoji, RTL text, objects
// with protected/private properties, nesting, double serialization, lengths that change), rewritten by
// roles/migrate/serialized.ts, must unserialize() in PHP to the original with the URLs replaced.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { expandPairs, rewriteValue } from '../../roles/migrate/serialized.ts';

const PHP = '/usr/bin/php';
const SCRIPT = join(import.meta.dirname, '../fixtures/migrate/serialize-cases.php');
const pairs = expandPairs([
  { from: 'https://old.example', to: 'https://nouveau.example.net' },
  { from: 'http://old.example', to: 'https://nouveau.example.net' },
]);

describe('serialized rewrite, checked by PHP unserialize()', () => {
  it('every PHP-made value unserializes to the expected structure', () => {
    const made = JSON.parse(execFileSync(PHP, [SCRIPT, 'make'], { encoding: 'utf8' })) as string[];
    assert.ok(made.length >= 10, `${made.length} cases`);
    let replaced = 0;
    const pairsOut = made.map((original) => {
      const r = rewriteValue(original, pairs);
      assert.deepEqual(r.problems, [], original);
      replaced += r.replaced;
      return { original, rewritten: r.value };
    });
    assert.ok(replaced >= 60, `replaced ${replaced}`);
    // the lengths really changed somewhere (a rewrite that kept every s:N: would be wrong)
    assert.ok(pairsOut.some((p) => p.original.length !== p.rewritten.length));
    const out = execFileSync(PHP, [SCRIPT, 'check'], { input: JSON.stringify(pairsOut), encoding: 'utf8' });
    const ok = out.split('\n').filter((l) => l.endsWith(': ok'));
    assert.equal(ok.length, made.length, out);
  });

  it('a value with a broken length is left as it is (PHP cannot read it before or after)', () => {
    const broken = 'a:1:{s:3:"url";s:5:"http://old.example";}';
    const r = rewriteValue(broken, pairs);
    assert.equal(r.value, broken);
    assert.equal(r.problems.length, 1);
    const out = execFileSync(PHP, ['-r', 'var_export(@unserialize(stream_get_contents(STDIN)));'], { input: r.value, encoding: 'utf8' });
    assert.equal(out, 'false');
  });
});
