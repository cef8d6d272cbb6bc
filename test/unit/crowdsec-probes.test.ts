// The crowdsec role's no-change answers from its probes (roles/crowdsec; issue 17): the collections probe and its
// reading, the local API TLS script's check mode (the step's probe: changes nothing, prints the files' modes), the
// local API's one-shot answer check, built as strings.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LAPI_TLS, lapiAnswersScript, lapiTlsScript } from '../../roles/crowdsec/config.ts';
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
