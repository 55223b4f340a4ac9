/**
 * RFC 1123 host names, as members and DNS names may use them: labels of letters, digits and `-` (never at a
 * label's ends), up to 63 characters, 253 in all, a trailing dot allowed. Underscores are tolerated too
 * (`_http._tcp.web.example`, and they cannot break a config line).
 */
const HOST_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** True when `text` is a host name (see above). */
export function isHostName(text: string): boolean {
  return HOST_NAME.test(text);
}
