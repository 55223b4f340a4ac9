import type { SourceConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { createDnsSource } from './dns.js';
import createEtcdSource from './etcd.js';
import { createFileSource } from './file.js';
import createSerfSource from './serf.js';
import { isSource, type Source, type SourceContext, type SourceFactory } from './types.js';

/** The built-in source types, by the `type` written in a config. */
const FACTORIES: { [T in SourceConfig['type']]: SourceFactory<Extract<SourceConfig, { type: T }>> } = {
  file: createFileSource,
  dns: createDnsSource,
  serf: createSerfSource,
  etcd: createEtcdSource,
};

/** Builds the source a config entry describes, or returns a plugged-in `Source` object as it is. */
export function createSource(name: string, config: SourceConfig | Source, logger: Logger, context: Omit<SourceContext, 'logger'> = {}): Source {
  if (isSource(config)) return config;
  const factory = FACTORIES[config.type] as SourceFactory<SourceConfig>;
  return factory(name, config, { ...context, logger: logger.child({ source: name }) });
}

export { isSource } from './types.js';
export type { Member, MemberStatus, SerfQueryHandler, Source, SourceContext, SourceFactory } from './types.js';
