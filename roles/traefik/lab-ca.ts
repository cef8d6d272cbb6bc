// The lab's certificate authority: where Let's Encrypt cannot reach the edge (the lab), the edge stand-in's
// certificates come from a CA of the lab's own, made once by `make lab-up` in the lab's state directory
// (ca.crt, ca.key), and a certificate per site host issued from it by ensureHostCert (the traefik role's
// stand-in). Runs on the controller: Debian's openssl issues, node:crypto checks a certificate in place; private
// keys are written 0600 in 0700 directories. A browser or curl trusts the lab's sites by trusting ca.crt
// (README: "Open a site in a browser").
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Leaf certificates live 397 days (browsers refuse longer); they are re-issued 30 days before the end. */
const LEAF_DAYS = 397;
const RENEW_SECONDS = 30 * 86400;
const HOST = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/;

export interface LabCa {
  dir: string;
  cert: string;
  key: string;
}

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** The lab's CA in `dir` (ca.crt, ca.key 0600), created when missing; returns its paths. Idempotent. */
export function ensureLabCa(dir: string, o: { create?: boolean } = {}): LabCa {
  const ca: LabCa = { dir, cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') };
  if (o.create === false) return ca;
  privateDir(dir);
  if (existsSync(ca.cert) && existsSync(ca.key)) {
    chmodSync(ca.key, 0o600);
    return ca;
  }
  const tmpKey = `${ca.key}.tmp-${process.pid}`;
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', tmpKey]);
  chmodSync(tmpKey, 0o600);
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    tmpKey,
    '-sha256',
    '-days',
    '3650',
    '-subj',
    '/O=wpfarm/CN=wpfarm lab CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE,pathlen:0',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    '-out',
    `${ca.cert}.tmp`,
  ]);
  writeFileSync(ca.key, readFileSync(tmpKey), { mode: 0o600 });
  writeFileSync(ca.cert, readFileSync(`${ca.cert}.tmp`), { mode: 0o644 });
  rmSync(tmpKey, { force: true });
  rmSync(`${ca.cert}.tmp`, { force: true });
  return ca;
}

/**
 * The certificate in `certFile` is signed by the lab's CA, names `host`, and lives more than RENEW_SECONDS yet (the
 * CA too). Read in process (node:crypto): a rerun with hundreds of sites starts no openssl.
 */
export function validFor(certFile: string, ca: LabCa, host: string, now = Date.now()): boolean {
  if (!existsSync(certFile)) return false;
  try {
    const cert = new X509Certificate(readFileSync(certFile));
    const issuer = new X509Certificate(readFileSync(ca.cert));
    const lives = (c: X509Certificate) => Date.parse(c.validFrom) <= now && Date.parse(c.validTo) - now > RENEW_SECONDS * 1000;
    return (
      cert.checkIssued(issuer) &&
      cert.verify(issuer.publicKey) &&
      lives(cert) &&
      lives(issuer) &&
      (cert.subjectAltName ?? '').split(', ').includes(`DNS:${host}`)
    );
  } catch {
    return false;
  }
}

/**
 * A certificate for `host` signed by the lab's CA, in <ca dir>/hosts/<host>.{crt,key} (key 0600), issued when
 * missing, about to expire or not from this CA. Returns the PEM HAProxy loads (certificate, CA, then key).
 */
export function ensureHostCert(ca: LabCa, host: string, o: { issue?: boolean } = {}): { pem: string; issued: boolean } {
  if (!HOST.test(host)) throw new Error(`${JSON.stringify(host)} is not a lower-case host name`);
  const dir = path.join(ca.dir, 'hosts');
  const crt = path.join(dir, `${host}.crt`);
  const key = path.join(dir, `${host}.key`);
  const valid = existsSync(key) && validFor(crt, ca, host);
  // check mode: say that it would be issued, write nothing
  if (!valid && o.issue === false) return { pem: '', issued: true };
  privateDir(dir);
  let issued = false;
  if (!valid) {
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
    chmodSync(key, 0o600);
    const csr = openssl(['req', '-new', '-key', key, '-subj', `/CN=${host}`]);
    const ext = path.join(dir, `${host}.ext.tmp`);
    writeFileSync(
      ext,
      `basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:${host}\n`,
    );
    try {
      const cert = openssl(
        ['x509', '-req', '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', String(LEAF_DAYS), '-sha256', '-extfile', ext],
        csr,
      );
      writeFileSync(crt, cert, { mode: 0o644 });
    } finally {
      rmSync(ext, { force: true });
    }
    issued = true;
  }
  chmodSync(key, 0o600);
  return { pem: `${readFileSync(crt, 'utf8')}${readFileSync(ca.cert, 'utf8')}${readFileSync(key, 'utf8')}`, issued };
}
