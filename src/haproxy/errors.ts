import { RosterdError } from '../errors.js';

/**
 * An HAProxy exchange failed, or HAProxy answered something that is not what was asked for (a reply that is
 * not `show proc`). `code` is always `E_HAPROXY`, as `rosterd/serf`'s errors are `E_SERF`.
 */
export class HaproxyError extends RosterdError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_HAPROXY', message, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}
