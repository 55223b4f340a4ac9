import type { Member } from '../members/model.js';

export type { Member, MemberStatus } from '../members/model.js';

/**
 * A source of membership. It is level-triggered: `onSnapshot` always receives the whole current member
 * list, never a delta. A source that cannot look at its backend calls `onError` and keeps quiet; it never
 * reports an empty list because it failed. Only a real answer ("no records", "the file lists nobody") is
 * an empty list.
 *
 * Members are untrusted: whatever a source emits is validated before it reaches a template.
 */
export interface Source {
  readonly name: string;
  /**
   * Starts watching. Resolves once the source is set up (not necessarily after its first snapshot).
   * Errors that happen later go to `onError`; an error with `retryable: false` before the first snapshot
   * means the source will not deliver without outside help (a missing file, a wrong key).
   */
  start(onSnapshot: (members: Member[]) => void, onError: (err: Error) => void): Promise<void>;
  /** Stops watching. Resolves when every socket, watcher and timer of the source is gone. */
  stop(): Promise<void>;
}

/** True when `value` is a `Source` object (anything with `start()` and `stop()`) rather than a source config. */
export function isSource(value: unknown): value is Source {
  return typeof value === 'object' && value !== null && typeof (value as Source).start === 'function' && typeof (value as Source).stop === 'function';
}

/** What a source factory gets besides its own options. */
export interface SourceContext {
  /** A child logger already bound to `{ source: name }`. */
  logger: import('pino').Logger;
  /** Serf queries to answer, by query name (the `serf` source answers them on its connection). */
  queries?: Readonly<Record<string, SerfQueryHandler>>;
  /**
   * The source is stopped soon after its first snapshot (`rosterd render --once`, `rosterd members`): it may
   * look once and leave out what it sets up to follow changes (the `file` source reads without a watcher).
   */
  once?: boolean;
}

/**
 * Answers a Serf query: called with the query's payload, returns the reply (at most the agent's
 * `query_response_size_limit`, 1024 bytes by default), or undefined to stay silent.
 */
export type SerfQueryHandler = (payload: Buffer | null) => Buffer | string | undefined;

/**
 * Builds a source from its resolved options (durations in milliseconds, paths absolute). Factories check
 * their options when called, not in `start()`.
 */
export type SourceFactory<Options> = (name: string, options: Options, context: SourceContext) => Source;
