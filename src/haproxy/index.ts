/**
 * HAProxy support: a master CLI client, a `show proc` parser, a reload confirmed through `show proc`, and a
 * guard against `bind` addresses that another process already holds.
 *
 * Errors are `HaproxyError`s, code `E_HAPROXY` (a `MasterCliError` for a master CLI exchange), as
 * `rosterd/serf`'s are `SerfError`s, `E_SERF`. A reload that fails is not an error: `reloadHaproxy` says so in its result.
 */
export { HaproxyError } from './errors.js';
export { masterCliCommand, MasterCliError, type MasterCliOptions } from './master-cli.js';
export {
  parseShowProc,
  uptimeSeconds,
  type ChildProc,
  type MasterProc,
  type ProcState,
  type ProgramProc,
} from './show-proc.js';
export {
  reloadHaproxy,
  type HaproxyReloadMethod,
  type HaproxyReloadOptions,
  type HaproxyReloadResult,
} from './reload.js';
export { findBindClashes, formatAddress, listBindAddresses, type BindAddress } from './bind-guard.js';
