import { RosterdError } from '../errors.js';

/**
 * What went wrong with a Serf RPC request or connection:
 * - `agent`: the agent answered with an error (`agentError` holds its text; `authFailed` tells auth errors apart);
 * - `connect`: the agent could not be reached, or the connection was not ready within the connect timeout;
 * - `closed`: the connection closed (by the agent, by `close()`, or after a fatal error) before the reply came;
 * - `protocol`: the agent sent something that is not a valid Serf RPC message (the connection is dropped);
 * - `timeout`: no reply within the request timeout (the connection is dropped).
 */
export type SerfErrorReason = 'agent' | 'connect' | 'closed' | 'protocol' | 'timeout';

/** The agent's error texts that mean the client is not (or wrongly) authenticated. */
const AUTH_ERRORS = new Set(['Authentication required', 'Invalid authentication token']);

/** A Serf RPC request or connection failed. `code` is always `E_SERF`. */
export class SerfError extends RosterdError {
  /** Why it failed. */
  readonly reason: SerfErrorReason;
  /** The RPC command that failed (`members`, `stream`…), when a request failed. */
  readonly command: string | undefined;
  /** The agent's own error text (`Invalid authentication token`…), when the agent answered with one. */
  readonly agentError: string | undefined;
  /** True when the agent refused the auth key, or requires one and none was sent. Retrying will not help. */
  readonly authFailed: boolean;

  constructor(
    reason: SerfErrorReason,
    message: string,
    options: { command?: string; agentError?: string; cause?: unknown } = {},
  ) {
    super('E_SERF', message, options.cause === undefined ? undefined : { cause: options.cause });
    this.reason = reason;
    this.command = options.command;
    this.agentError = options.agentError;
    this.authFailed = options.agentError !== undefined && AUTH_ERRORS.has(options.agentError);
  }
}
