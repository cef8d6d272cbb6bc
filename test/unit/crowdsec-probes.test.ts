// The crowdsec role's no-change answers from its probes (roles/crowdsec; issue 17): the collections probe and its
// reading, the local API TLS script's check mode (the step's probe: changes nothing, prints the files' modes), the
// local API's one-shot answer check, built as strings; the TLS files checked in process against the real script's.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAPI_TLS, lapiAnswersScript, lapiTlsInPlace, lapiTlsProbe, lapiTlsScript } from '../../roles/crowdsec/config.ts';
import { COLLECTIONS_PROBE, parseCollectionsProbe, pemFrom } from '../../roles/crowdsec/role.ts';

test('the collections probe: the hub index when installed, then every link under /etc/crowdsec', () => {
  assert.equal(
    COLLECTIONS_PROBE,
    [
      'if [ -r /usr/share/crowdsec/hub/.index.json ]; then echo @@index; cat /usr/share/crowdsec/hub/.index.json; fi',
      'echo; echo @@links',
      "find /etc/crowdsec -type l -printf '%p\\t%l\\n' 2>/dev/null || true",
    ].join('\n'),
  );
  const got = parseCollectionsProbe(
    '@@index\n{"collections":{}}\n@@links\n/etc/crowdsec/collections/sshd.yaml\t/var/lib/crowdsec/hub/collections/crowdsecurity/sshd.yaml\n',
  );
  assert.deepEqual(JSON.parse(got.index!), { collections: {} });
  assert.equal(got.links.get('/etc/crowdsec/collections/sshd.yaml'), '/var/lib/crowdsec/hub/collections/crowdsecurity/sshd.yaml');
  const none = parseCollectionsProbe('\n@@links\n');
  assert.equal(none.index, undefined, 'the package is not installed');
  assert.equal(none.links.size, 0);
});

test("the local API TLS script's check mode writes nothing and prints the files' modes; the real one fixes them", () => {
  const check = lapiTlsScript('10.0.0.11', true);
  const real = lapiTlsScript('10.0.0.11', false);
  assert.match(check, /^check=1$/m);
  assert.match(real, /^check=0$/m);
  // directory, lock and chmod only when not checking
  assert.match(check, new RegExp(`if \\[ "\\$check" = 0 \\]; then\\n  install -d -m 0700 ${LAPI_TLS.dir}\\n  exec 9>`));
  assert.match(
    check,
    new RegExp(
      `if \\[ "\\$check" = 1 \\]; then\\n  echo "modes \\$\\(stat -c %a ${LAPI_TLS.caKey} ${LAPI_TLS.key} ${LAPI_TLS.caCert} ${LAPI_TLS.cert}`,
    ),
  );
  assert.match(check, new RegExp(`else\\n  chmod 0600 ${LAPI_TLS.caKey} ${LAPI_TLS.key}\\n  chmod 0644`));
  // every command that writes is after a check-mode exit or inside the check = 0 branches
  for (const line of check.split('\n').filter((l) => /openssl req|openssl x509 -req|rm -f/.test(l)))
    assert.ok(check.indexOf(line) > check.indexOf('[ "$check" = 1 ] && exit 0'), line);
});

test('the local API answer check: asked once as a probe, waited for (up to 60 s) in the step', () => {
  const api = { url: 'https://10.0.0.11:8080/', caCert: LAPI_TLS.caCert };
  assert.match(lapiAnswersScript(api, true), /^check=1$/m);
  assert.match(lapiAnswersScript(api), /^check=0$/m);
  assert.match(lapiAnswersScript(api), /echo "answered \$code"/);
});

test("the CA certificate is the same whether read by the step's probe (trimmed) or its own exec (not)", () => {
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const exec = `modes 600 600 644 644 \n${pem}`;
  const probe = exec.trimEnd();
  assert.equal(pemFrom(exec), pem);
  assert.equal(pemFrom(probe), pem);
  assert.equal(pemFrom('changed: new CA\n'), '');
});

test('the local API TLS files are checked in process as the script checks them with openssl', () => {
  // the real script and probe, run with bash and openssl on files in a temporary directory instead of /etc/crowdsec/tls
  const dir = mkdtempSync(join(tmpdir(), 'wpfarm-lapi-tls-'));
  const here = (script: string) => script.split(LAPI_TLS.dir).join(dir);
  const bash = (script: string) => execFileSync('bash', ['-c', here(script)], { encoding: 'utf8' });
  try {
    const made = bash(lapiTlsScript('10.0.0.11', false));
    assert.match(made, /changed: new CA/);
    const out = bash(lapiTlsProbe()).trimEnd(); // a probe's output comes trimmed
    assert.equal(lapiTlsInPlace(out, '10.0.0.11'), pemFrom(made), 'valid: the CA certificate, as cat gave it');
    // the script's own check mode agrees: nothing to do
    assert.doesNotMatch(bash(lapiTlsScript('10.0.0.11', true)), /changed:/);
    // another address, a key mode, a missing key, the renewal window: something to do, as the script's check says
    assert.equal(lapiTlsInPlace(out, '10.0.0.12'), undefined);
    assert.match(bash(lapiTlsScript('10.0.0.12', true)), /changed: new server certificate/);
    assert.equal(lapiTlsInPlace(out.replace('modes 600 600', 'modes 644 600'), '10.0.0.11'), undefined);
    assert.equal(lapiTlsInPlace(out.replace('keys ca lapi', 'keys ca '), '10.0.0.11'), undefined);
    const validTo = Date.parse(new X509Certificate(readFileSync(join(dir, 'lapi.crt'))).validTo);
    assert.equal(lapiTlsInPlace(out, '10.0.0.11', validTo - 10 * 86_400_000), undefined, '10 days left');
    assert.ok(lapiTlsInPlace(out, '10.0.0.11', validTo - 40 * 86_400_000), '40 days left');
    // a server certificate from another CA
    const other = mkdtempSync(join(tmpdir(), 'wpfarm-lapi-tls-'));
    try {
      execFileSync('bash', ['-c', lapiTlsScript('10.0.0.11', false).split(LAPI_TLS.dir).join(other)]);
      const foreign = out.replace(/@@cert\n[^@]*/, `@@cert\n${readFileSync(join(other, 'lapi.crt'), 'utf8')}`);
      assert.equal(lapiTlsInPlace(foreign, '10.0.0.11'), undefined);
      assert.notEqual(spawnSync('openssl', ['verify', '-CAfile', join(dir, 'ca.crt'), join(other, 'lapi.crt')]).status, 0);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
    assert.equal(lapiTlsInPlace('@@nodir', '10.0.0.11'), undefined);
    assert.equal(lapiTlsInPlace(out.replace(/MII/g, 'XXX'), '10.0.0.11'), undefined, 'garbage');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
