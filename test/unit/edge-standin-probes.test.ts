// The edge stand-in's files step answered from its probe (roles/traefik/standin-steps.ts; issue 17): the probe as a
// string, and "in place" only when the host holds exactly the bundle's files with the directory private.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { filesInPlace, filesProbe, type Rendered } from '../../roles/traefik/standin-steps.ts';
import { certFile, type EdgeModel } from '../../roles/traefik/standin.ts';

const r: Rendered = {
  model: {} as EdgeModel,
  config: 'global\n  maxconn 100\n',
  crtList: '/usr/local/etc/haproxy/certs/a.pem a.example.test\n',
  certs: [{ host: 'a.example.test', pem: '-----BEGIN CERTIFICATE-----\nx\n', issued: false }],
};
const sha = (t: string) => createHash('sha256').update(t).digest('hex');
const listing = (files: Record<string, string>, modes = ['700', '700']) =>
  [`mode . ${modes[0]}`, `mode certs ${modes[1]}`, ...Object.entries(files).map(([n, c]) => `${sha(c)}  ./${n}`)].join('\n');
const held = { 'haproxy.cfg': r.config, 'crt-list': r.crtList, [`certs/${certFile('a.example.test')}`]: r.certs[0]!.pem };

test('filesProbe: the directory modes, then every file digest (stage and backup left out)', () => {
  assert.equal(
    filesProbe('/etc/wpfarm/edge'),
    "cd /etc/wpfarm/edge 2>/dev/null && stat -c 'mode %n %a' . certs && find . -path ./.stage -prune -o -path ./.prev -prune -o -type f -print0 | xargs -0r sha256sum",
  );
});

test('filesInPlace: exactly the bundle, private directories; anything else is a change', () => {
  assert.equal(filesInPlace(r, listing(held)), true);
  assert.equal(filesInPlace(r, listing({ ...held, 'haproxy.cfg': 'other' })), false, 'another configuration');
  assert.equal(filesInPlace(r, listing({ ...held, 'certs/old.pem': 'x' })), false, 'a certificate no longer listed');
  const { 'crt-list': _, ...noList } = held;
  assert.equal(filesInPlace(r, listing(noList)), false, 'a file missing');
  assert.equal(filesInPlace(r, listing(held, ['755', '700'])), false, 'the directory not private');
  assert.equal(filesInPlace(r, ''), false, 'no directory');
});
