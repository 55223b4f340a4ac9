import type { Logger } from '../logger.js';
import { createDriverSource, type SourceDriver } from './driver.js';
import { SOURCE_DRIVERS, type SourceConfig } from './registry.js';
import { isSource, type Source, type SourceContext } from './types.js';

/** The built-in drivers by `type`. */
const DRIVERS = new Map<string, SourceDriver<string, never, never>>(SOURCE_DRIVERS.map((driver) => [driver.type, driver as unknown as SourceDriver<string, never, never>]));

/**
 * Builds the source a config entry describes, or returns a plugged-in `Source` object as it is. The options
 * are checked now (a bad one throws a `SourceError`); the driver's implementation loads when the source starts.
 */
export function createSource(name: string, config: SourceConfig | Source, logger: Logger, context: Omit<SourceContext, 'logger'> = {}): Source {
  if (isSource(config)) return config;
  const driver = DRIVERS.get(config.type);
  if (driver === undefined) throw new TypeError(`[source ${name}] unknown source type ${JSON.stringify(config.type)}`);
  return createDriverSource(driver, name, config as never, { ...context, logger: logger.child({ source: name }) });
}

export { isSource } from './types.js';
export type { Member, MemberStatus, SerfQueryHandler, Source, SourceContext, SourceFactory } from './types.js';
