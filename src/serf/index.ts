/**
 * A standalone client for the Serf agent's RPC protocol (`rosterd/serf`).
 *
 * @example
 * ```ts
 * import { SerfClient } from 'rosterd/serf';
 *
 * const client = await SerfClient.connect({ address: '127.0.0.1:7373' });
 * const members = await client.members();
 * await client.close();
 * ```
 */
export { SerfClient } from './client.js';
export type {
  SerfClientOptions,
  SerfClientEvents,
  SerfMember,
  SerfMemberStatus,
  SerfVersionRange,
  SerfMemberEvent,
  SerfMemberEventType,
  SerfUserEvent,
  SerfQueryEvent,
  SerfQueryOptions,
  SerfQueryResponse,
  SerfStreamEvent,
  SerfMembersFilter,
  SerfStats,
  SerfStream,
  SerfLogLevel,
  SerfMonitorOptions,
} from './client.js';
export { SerfError } from './errors.js';
export type { SerfErrorReason } from './errors.js';
export { DEFAULT_RPC_ADDRESS, formatSerfAddr, parseRpcAddress } from './address.js';
