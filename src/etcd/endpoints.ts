/**
 * etcd client endpoints as users write them: `host:port`, `http://host:port` or `https://host:port`
 * (IPv6 as `[::1]:2379`). Kept apart from the client so that the config schema and the CLI can check
 * endpoints without loading the etcd client.
 */

/** The address etcd listens on for clients by default, and so the default endpoint. */
export const DEFAULT_ETCD_ENDPOINT = 'http://127.0.0.1:2379';

/** One parsed endpoint. */
export interface EtcdEndpoint {
  /** `http://host:port` or `https://host:port`. */
  url: string;
  secure: boolean;
}

/** Parses one endpoint; throws an `Error` saying what is wrong. A missing scheme means `http://`. */
export function parseEtcdEndpoint(text: string): EtcdEndpoint {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new Error(`${JSON.stringify(text)} is not an endpoint: expected "host:port", "http://host:port" or "https://host:port"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${JSON.stringify(text)}: the scheme must be http:// or https://`);
  if (url.username !== '' || url.password !== '') throw new Error(`${JSON.stringify(text)}: give the user name and password as auth, not in the endpoint`);
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') throw new Error(`${JSON.stringify(text)}: an endpoint has no path`);
  // `new URL` drops a port that is the scheme's default (80, 443), so the port is read from the text.
  const port = /:(\d+)\/?$/.exec(withScheme)?.[1];
  if (port === undefined || Number(port) < 1 || Number(port) > 65535) throw new Error(`${JSON.stringify(text)}: give a port from 1 to 65535 (etcd's is usually 2379)`);
  return { url: `${url.protocol}//${url.hostname}:${Number(port)}`, secure: url.protocol === 'https:' };
}

/**
 * Parses a list of endpoints that one client uses together: all `http://` or all `https://` (with TLS
 * files, a scheme-less endpoint means `https://`). Throws an `Error` naming the first problem.
 */
export function parseEtcdEndpoints(texts: readonly string[], tls: boolean): EtcdEndpoint[] {
  if (texts.length === 0) throw new Error('give at least one endpoint');
  const parsed = texts.map((text) => {
    const endpoint = parseEtcdEndpoint(text);
    const explicit = /^https?:\/\//i.test(text);
    if (tls && !explicit) return { url: endpoint.url.replace(/^http:/, 'https:'), secure: true };
    if (tls && !endpoint.secure) throw new Error(`${JSON.stringify(text)}: TLS files are given, so the endpoint must be https://`);
    return endpoint;
  });
  if (new Set(parsed.map((e) => e.secure)).size > 1) throw new Error('the endpoints mix http:// and https://; one client speaks either, not both');
  return parsed;
}
