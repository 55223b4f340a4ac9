/**
 * HAProxy support: a master CLI client, a `show proc` parser, a reload confirmed through `show proc`, and a
 * guard against `bind` addresses that another process already holds.
 */
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
