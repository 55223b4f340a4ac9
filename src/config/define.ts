import type { RosterdConfig } from './schema.js';

/** What a config file may export: the config, or a function (sync or async) that returns it. */
export type ConfigExport = RosterdConfig | (() => RosterdConfig | Promise<RosterdConfig>);

/**
 * Types a config in a `renderer.config.ts` file. It returns its argument unchanged: validation happens
 * when the config is loaded, with every problem reported at once.
 */
export function defineConfig(config: RosterdConfig): RosterdConfig;
export function defineConfig(config: () => RosterdConfig | Promise<RosterdConfig>): () => RosterdConfig | Promise<RosterdConfig>;
export function defineConfig(config: ConfigExport): ConfigExport {
  return config;
}
