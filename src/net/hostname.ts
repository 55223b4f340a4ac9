/**
 * RFC 1123 host names, as members and DNS names may use them: labels of letters, digits and `-` (never at a
 * label's ends), up to 63 characters, 253 in all, a trailing dot allowed. Underscores are tolerated too
 * (`_http._tcp.web.example`, and they cannot break a config line). The last label is not a number.
 */
const HOST_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/**
 * A last label of digits, or of `0x` and hex digits. No top-level domain looks like that (RFC 1123 §2.1), but
 * resolvers and HAProxy read such a name as an IPv4 address in shorthand: `10.0.0` is 10.0.0.0, `2130706433`
 * and `0x7f.1` are 127.0.0.1. A half-written `10.0.0.13` must not become another address.
 */
const NUMERIC_LAST_LABEL = /(?:^|\.)(?:\d+|0x[0-9a-f]*)\.?$/i;

/** True when `text` is a host name (see above), and not a number that resolvers would take for an IPv4 address. */
export function isHostName(text: string): boolean {
  return HOST_NAME.test(text) && !NUMERIC_LAST_LABEL.test(text);
}
