import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

/**
 * Certificates for TLS tests, made with `openssl` when the test runs (nothing secret is checked in): a CA,
 * a server certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1) and a client certificate signed by it,
 * and a second, unrelated CA that trusts neither.
 */

const run = promisify(execFile);

/** A certificate and its private key (PEM files). */
export interface CertificateFiles {
  cert: string;
  key: string;
}

export interface TestPki {
  /** The CA that signed `server` and `client`. */
  ca: string;
  /** For 127.0.0.1: what a server on the loopback presents. */
  server: CertificateFiles;
  /** For client-certificate authentication (CN `rosterd`). */
  client: CertificateFiles;
  /** A CA that signed none of them. */
  otherCa: string;
}

/** Creates the CA and certificates in `dir` (P-256 keys, valid for a day). */
export async function createTestPki(dir: string): Promise<TestPki> {
  const path = (name: string): string => join(dir, name);
  const ca = await selfSignedCa(path('ca'), 'rosterd test CA');
  const otherCa = await selfSignedCa(path('other-ca'), 'another test CA');
  const server = await signed(path('server'), '127.0.0.1', ['subjectAltName=IP:127.0.0.1', 'extendedKeyUsage=serverAuth,clientAuth'], ca);
  const client = await signed(path('client'), 'rosterd', ['extendedKeyUsage=clientAuth'], ca);
  return { ca: ca.cert, server, client, otherCa: otherCa.cert };
}

// --- internal ---

const openssl = (args: readonly string[]) => run('openssl', args);
const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function selfSignedCa(base: string, name: string): Promise<CertificateFiles> {
  const files = { cert: `${base}.pem`, key: `${base}-key.pem` };
  await openssl(['req', '-x509', ...newKey, '-keyout', files.key, '-out', files.cert, '-days', '1', '-subj', `/CN=${name}`]);
  return files;
}

async function signed(base: string, commonName: string, extensions: readonly string[], ca: CertificateFiles): Promise<CertificateFiles> {
  const files = { cert: `${base}.pem`, key: `${base}-key.pem` };
  const request = `${base}.csr`;
  const extfile = `${base}.ext`;
  await writeFile(extfile, `${extensions.join('\n')}\n`);
  await openssl(['req', '-new', ...newKey, '-keyout', files.key, '-out', request, '-subj', `/CN=${commonName}`]);
  await openssl(['x509', '-req', '-in', request, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(Date.now()), '-days', '1', '-extfile', extfile, '-out', files.cert]);
  return files;
}
