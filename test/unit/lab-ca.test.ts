// The lab's CA (roles/traefik/lab-ca.ts) with Debian's openssl: a host certificate is issued once and kept; the
// in-process check (validFor, node:crypto) agrees with `openssl verify` and refuses a certificate of another CA,
// one for another name, and one inside its renewal window; check mode writes nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureHostCert, ensureLabCa, validFor } from '../../roles/traefik/lab-ca.ts';

const opensslVerifies = (caCert: string, cert: string): boolean => {
  try {
    execFileSync('openssl', ['verify', '-CAfile', caCert, cert], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
};

test('lab CA: issued once, kept on rerun; validFor agrees with openssl verify; other CA, other name, renewal window refused', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'wpfarm-lab-ca-'));
  try {
    const ca = ensureLabCa(path.join(work, 'ca'));
    assert.equal(statSync(ca.key).mode & 0o777, 0o600);
    const host = 'blog.lab.test';
    const crt = path.join(ca.dir, 'hosts', `${host}.crt`);
    // check mode on a missing certificate: it would be issued, nothing is written
    assert.deepEqual(ensureHostCert(ca, host, { issue: false }), { pem: '', issued: true });
    assert.equal(existsSync(crt), false);

    const first = ensureHostCert(ca, host);
    assert.equal(first.issued, true);
    assert.match(first.pem, /BEGIN CERTIFICATE[\s\S]+BEGIN CERTIFICATE[\s\S]+BEGIN PRIVATE KEY/);
    assert.equal(statSync(path.join(ca.dir, 'hosts')).mode & 0o777, 0o700);
    assert.equal(statSync(path.join(ca.dir, 'hosts', `${host}.key`)).mode & 0o777, 0o600);
    assert.equal(opensslVerifies(ca.cert, crt), true);
    assert.equal(validFor(crt, ca, host), true);
    const again = ensureHostCert(ca, host);
    assert.deepEqual(again, { pem: first.pem, issued: false }, 'a rerun keeps the certificate in place');

    assert.equal(validFor(crt, ca, 'other.lab.test'), false, 'another name');
    assert.equal(validFor(crt, ca, 'lab.test'), false, 'the parent name');
    // 397 days of life, renewed 30 days before the end: valid at +360 days, not at +368
    assert.equal(validFor(crt, ca, host, Date.now() + 360 * 86400_000), true);
    assert.equal(validFor(crt, ca, host, Date.now() + 368 * 86400_000), false, 'inside the renewal window');
    assert.equal(validFor(crt, ca, host, Date.now() - 86400_000), false, 'not valid yet');

    // a certificate of another CA in place: refused by both checks, then re-issued from this CA
    const other = ensureLabCa(path.join(work, 'other-ca'));
    ensureHostCert(other, host);
    copyFileSync(path.join(other.dir, 'hosts', `${host}.crt`), crt);
    assert.equal(opensslVerifies(ca.cert, crt), false);
    assert.equal(validFor(crt, ca, host), false);
    const reissued = ensureHostCert(ca, host);
    assert.equal(reissued.issued, true);
    assert.equal(opensslVerifies(ca.cert, crt), true);
    assert.notEqual(readFileSync(crt, 'utf8'), readFileSync(path.join(other.dir, 'hosts', `${host}.crt`), 'utf8'));

    // garbage in place: refused, re-issued
    copyFileSync(ca.key, crt);
    assert.equal(validFor(crt, ca, host), false);
    assert.equal(ensureHostCert(ca, host).issued, true);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
