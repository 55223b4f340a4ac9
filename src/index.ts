/**
 * rosterd: render config files from live membership.
 *
 * ```ts
 * import { createRenderer, loadConfig } from 'rosterd';
 * const renderer = await createRenderer(await loadConfig());
 * renderer.on('rendered', (e) => console.log('wrote', e.destination));
 * await renderer.start();
 * ```
 */
export { defineConfig, type ConfigExport } from './config/define.js';
export { loadConfig, resolveConfig, CONFIG_SEARCH_PLACES, type ResolvedConfig, type ResolvedTemplate } from './config/load.js';
export type { RosterdConfig } from './config/schema.js';
export { parseDuration } from './config/duration.js';
export {
  RosterdError,
  ConfigError,
  TemplateError,
  SourceError,
  TemplateRunError,
  InstallError,
  type InstallStep,
  type RosterdErrorCode,
  type ConfigIssue,
} from './errors.js';
export { createRenderer, Renderer, type RendererOptions, type RenderOnceOptions } from './runner/renderer.js';
export type {
  RendererEvents,
  RenderedEvent,
  UnchangedEvent,
  GuardedEvent,
  CheckFailedEvent,
  ReloadedEvent,
  ReloadFailedEvent,
  SourceErrorEvent,
  RendererErrorEvent,
  RenderReport,
  ReloadReport,
  TemplateResult,
  TemplateStatus,
  FanOutFile,
  RefusedItem,
} from './runner/events.js';
export type { CompiledTemplate } from './render/engine.js';
export type { SourceStatus } from './runner/roster.js';
export { createFileSource, type FileSourceOptions } from './sources/file.js';
export { default as createSerfSource, type SerfSourceOptions } from './sources/serf.js';
export { createDnsSource, type DnsSourceOptions } from './sources/dns.js';
export { sanitizeMembers, type DroppedMember } from './sources/snapshot.js';
export type { Member, MemberStatus } from './members/model.js';
export type { SerfQueryHandler, Source, SourceContext, SourceFactory } from './sources/types.js';
export { createLogger, type Logger, type LoggerOptions, type LogFormat } from './logger.js';
export { createMetrics, METRIC_PREFIX, type RendererMetrics } from './ops/metrics.js';
export { startStatusServer, readiness, type StatusServer, type StatusServerOptions, type Readiness } from './ops/http.js';
export { createHistory, historyOptions, RenderHistory, type HistoryEntry, type HistoryOptions, type FileDiff, type Trigger, type SourceChange } from './ops/history.js';
