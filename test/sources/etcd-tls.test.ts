import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SourceError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import createEtcdSource, { type EtcdSourceOptions } from '../../src/sources/etcd.js';
import { createSnapshotGate } from '../../src/sources/snapshot.js';
import type { Member, Source } from '../../src/sources/types.js';
import { startEtcdCluster, type EtcdCluster } from '../helpers/etcd.js';
import { tempDir } from '../helpers/tmp.js';
import { createTestPki, type TestPki } from '../helpers/tls.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The etcd source over TLS, against real etcd serving https with certificates made for the test: the
 * servers verified with `tls.ca`, a client certificate where etcd requires one, and every way the
 * handshake can fail named in the error (a CA that did not sign the server, a host the certificate is not
 * for, a missing or unusable client certificate), with no snapshot.
 */

const PREFIX = '/services/web/';
const MEMBER = JSON.stringify({ address: '10.0.0.1', port: 8080 });

let pki: TestPki;
let dir: string;
let cleanupDir: () => Promise<void>;
/** Serves https; any client may connect. */
let serverOnly: EtcdCluster;
/** Serves https to clients with a certificate from the test CA only. */
let clientCerts: EtcdCluster;

beforeAll(async () => {
  ({ path: dir, cleanup: cleanupDir } = await tempDir('rosterd-etcd-tls-'));
  pki = await createTestPki(dir);
  [serverOnly, clientCerts] = await Promise.all([startEtcdCluster(1, { tls: { pki } }), startEtcdCluster(1, { tls: { pki, clientCertAuth: true } })]);
  await Promise.all([serverOnly.etcdctl(['put', `${PREFIX}web-1`, MEMBER]), clientCerts.etcdctl(['put', `${PREFIX}web-1`, MEMBER])]);
}, 60_000);

afterAll(async () => {
  await Promise.all([serverOnly?.cleanup(), clientCerts?.cleanup()]);
  await cleanupDir?.();
});

const started: Source[] = [];
afterEach(async () => {
  for (const source of started.splice(0)) await source.stop();
});

/** Starts a source; resolves with its first snapshot or its first error, whichever comes first. */
async function firstOutcome(endpoints: string[], tls: EtcdSourceOptions['tls']): Promise<{ members?: Member[]; error?: SourceError }> {
  const source = createEtcdSource('web', { type: 'etcd', endpoints, prefix: PREFIX, requestTimeout: 2000, tls }, { logger: silentLogger() });
  started.push(source);
  let outcome: { members?: Member[]; error?: SourceError } | undefined;
  await source.start(
    createSnapshotGate('web', (members) => (outcome ??= { members }), () => {}),
    (error) => (outcome ??= { error: error as SourceError }),
  );
  return waitFor(() => outcome, 'a snapshot or an error', { timeout: 15_000 });
}

const rendered = [{ name: 'web-1', address: '10.0.0.1', port: 8080, tags: {}, status: 'alive', source: 'web' }];

describe('server certificates', () => {
  it('reads over https, the server verified with tls.ca', async () => {
    expect(serverOnly.endpoints[0]).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(await firstOutcome(serverOnly.endpoints, { ca: pki.ca })).toEqual({ members: rendered });
  });

  it('a CA that did not sign the server: no snapshot, an error that says so and names the CA file', async () => {
    const { members, error } = await firstOutcome(serverOnly.endpoints, { ca: pki.otherCa });
    expect(members).toBeUndefined();
    expect(error).toBeInstanceOf(SourceError);
    expect(error!.retryable).toBe(false);
    expect(error!.message).toBe(
      `[source web] etcd at ${serverOnly.endpoints[0]}: etcd's TLS certificate is not accepted (unable to verify the first certificate): checked against the CA file ${pki.otherCa}`,
    );
  });

  it('without tls.ca the system roots do not know the test CA: the error says no CA file was given', async () => {
    const { error } = await firstOutcome(serverOnly.endpoints, undefined);
    expect(error!.message).toMatch(/etcd's TLS certificate is not accepted \(unable to verify the first certificate\): no CA file is given, so the system's root CAs checked it$/);
  });

  it('a host name the certificate is not for is refused, naming both', async () => {
    const { error } = await firstOutcome([serverOnly.endpoints[0]!.replace('127.0.0.1', 'localhost')], { ca: pki.ca });
    expect(error!.message).toMatch(/etcd's TLS certificate is not accepted \(Hostname\/IP does not match certificate's altnames: Host: localhost\. is not cert's CN: 127\.0\.0\.1\)/);
  });
});

describe('client certificates', () => {
  it('reads with tls.cert and tls.key when etcd requires a client certificate', async () => {
    expect(await firstOutcome(clientCerts.endpoints, { ca: pki.ca, cert: pki.client.cert, key: pki.client.key })).toEqual({ members: rendered });
  });

  it('without a client certificate etcd refuses the handshake, and the error says none was given', async () => {
    const { members, error } = await firstOutcome(clientCerts.endpoints, { ca: pki.ca });
    expect(members).toBeUndefined();
    expect(error!.retryable).toBe(false);
    expect(error!.message).toBe(`[source web] etcd at ${clientCerts.endpoints[0]}: etcd refused the TLS handshake (bad certificate): no client certificate was given`);
  });

  it('a client certificate from another CA is refused, naming the certificate', async () => {
    await mkdir(join(dir, 'other'));
    const other = await createTestPki(join(dir, 'other'));
    // Signed by a CA etcd does not trust (the other PKI's client certificate).
    const { error } = await firstOutcome(clientCerts.endpoints, { ca: pki.ca, cert: other.client.cert, key: other.client.key });
    expect(error!.message).toMatch(new RegExp(`etcd refused the TLS handshake \\(bad certificate\\): it did not accept the client certificate ${escape(other.client.cert)}$`));
  });

  it('files that are not PEM, or a key that is not the certificate\'s, are named before any connection', async () => {
    const garbage = join(dir, 'garbage.pem');
    await writeFile(garbage, 'not a certificate\n');
    const cases: [EtcdSourceOptions['tls'], string][] = [
      [{ ca: garbage }, `the CA file ${garbage} is not a PEM certificate`],
      [{ ca: pki.ca, cert: garbage, key: pki.client.key }, `the client certificate ${garbage} is not a PEM certificate`],
      [{ ca: pki.ca, cert: pki.client.cert, key: garbage }, `the client key ${garbage} is not a PEM private key (without a passphrase)`],
      [{ ca: pki.ca, cert: pki.client.cert, key: pki.server.key }, `the client key ${pki.server.key} is not the key of the client certificate ${pki.client.cert}`],
      [{ ca: join(dir, 'missing.pem') }, `cannot read the CA file ${join(dir, 'missing.pem')}: ENOENT`],
    ];
    for (const [tls, message] of cases) {
      const { members, error } = await firstOutcome(clientCerts.endpoints, tls);
      expect(members).toBeUndefined();
      expect(error!.retryable).toBe(false);
      expect(error!.message).toBe(`[source web] etcd at ${clientCerts.endpoints[0]}: ${message}`);
    }
  });
});

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
