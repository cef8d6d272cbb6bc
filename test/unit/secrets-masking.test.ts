// lib/secrets.ts masking: every encoding a secret can take in wpfarm's output, masking before serialising,
// diffs that mask old and new content (multiline secrets too), errors masked before they are cut.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { quote } from 'zx/core';
import { unifiedDiff } from '../../lib/diff.ts';
import { RemoteCommandError } from '../../lib/errors.ts';
import { commandStdin } from '../../lib/ops/command.ts';
import { encodings, mask, maskDeep, maskedView, registerSecret } from '../../lib/secrets.ts';

const S = 'a\\b\'c"d$e\nline-two-Zk81.*+?(x)|^';
const KEY = '-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\nQ2xyzzyabc7788EE\n-----END KEY-----';
registerSecret(S);
registerSecret(KEY);

test('each encoding, and encodings of encodings, are masked whole', () => {
  const html = (x: string) => x.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
  const cases = [
    S,
    quote(S),
    quote(`bash -c ${quote(S)}`),
    JSON.stringify(S),
    JSON.stringify(quote(S)),
    JSON.stringify(JSON.stringify(S)),
    encodeURIComponent(S),
    html(S),
    html(quote(S)),
    Buffer.from(S).toString('base64'),
    Buffer.from(`xy${S}z`).toString('base64'),
  ];
  for (const c of cases) {
    const out = mask(`<<${c}>>`);
    assert.ok(out.includes('***'), c);
    assert.ok(!out.includes('Zk81'), `${c} -> ${out}`);
  }
  assert.ok(encodings(S).size > 10);
});

test('maskDeep masks before JSON.stringify: no escape sequence can hide a secret', () => {
  const report = { results: [{ step: `command echo ${quote(S)}`, result: { stdout: `${S}\n` }, [`k ${S}`]: 1 }], when: new Date(0) };
  const text = JSON.stringify(maskDeep(report));
  assert.ok(!text.includes('Zk81'), text);
  assert.match(text, /command echo \*\*\*"/);
  assert.match(text, /"when":"1970-01-01T00:00:00.000Z"/);
});

test('maskedView: the value itself when masking changes nothing in it, else the masked copy maskDeep makes', () => {
  const clean = { kind: 'step.end', result: { step: 'file /etc/x', changes: ['mode 0644'], result: { n: 1, ok: true, none: null } } };
  assert.equal(maskedView(clean), clean);
  // a secret in a nested string or in a key: a masked copy, the original untouched
  for (const dirty of [
    { kind: 'log', result: { changes: [`token ${S}`] } },
    { kind: 'data', data: { [`k ${S}`]: 1 } },
  ]) {
    const view = maskedView(dirty);
    assert.notEqual(view, dirty);
    assert.deepEqual(view, maskDeep(dirty));
    assert.ok(!JSON.stringify(view).includes('Zk81'));
    assert.ok(JSON.stringify(dirty).includes('Zk81'));
  }
  // what maskDeep converts (Map, Set, toJSON) is converted here too, secret or not
  const conv = { m: new Map([['a', 1]]), s: new Set(['x']), when: new Date(0) };
  assert.deepEqual(maskedView(conv), { m: { a: 1 }, s: ['x'], when: '1970-01-01T00:00:00.000Z' });
  // a cycle is left to maskDeep
  const cyc: Record<string, unknown> = { a: 'x' };
  cyc.self = cyc;
  const v = maskedView(cyc) as Record<string, unknown>;
  assert.notEqual(v, cyc);
  assert.equal(v.self, v);
});

test('diffs mask the old and the new content before diffing; a multiline secret never shows a line', () => {
  const d = unifiedDiff(`key=${KEY}\nplain=0\n`, 'plain=1\n', { fromLabel: '/etc/x', toLabel: '/etc/x' });
  assert.ok(!/MIIBOg|Q2xyzz|line-two/.test(d), d);
  assert.match(d, /^-key=\*\*\*$/m);
  assert.equal(unifiedDiff(`pw=${S}\n`, `pw=${KEY}\n`), 'diff omitted: only secret values changed');
  // the lines of a multiline secret are masked on their own (printed with CRLF, or in part)
  assert.equal(mask('MIIBOgIBAAJBAKj34GkxFhD9\r\nQ2xyzzyabc7788EE\r\n'), '***\r\n***\r\n');
});

test('remote command errors are masked before the command line and the output are cut', () => {
  const long = `${'x'.repeat(150)} ${quote(S)}`;
  const e = new RemoteCommandError('h1', long, 3, '', `1\n2\n3\n4\n5\n${S}`);
  assert.ok(!/Zk81|line-two|a\\b/.test(e.message), e.message);
});

test('command env values travel on stdin, NUL-terminated, ahead of the command stdin', () => {
  assert.equal(commandStdin({ env: { A: S, B: 'bbbb' }, stdin: 'data\n' }), `${S}\0bbbb\0data\n`);
  assert.equal(commandStdin({ stdin: 'data' }), 'data');
});
