import * as z from '../../vendor/zod.js';
import { defineSourceDriver } from '../driver.js';
import { checkSourceName, invalidOption } from '../lifecycle.js';

/** Resolved options of a `file` source. */
export interface FileSourceOptions {
  type: 'file';
  /** Absolute path of the member file: JSON (`.json`) or YAML (anything else). */
  path: string;
}

/** A `file` source as a config writes it. */
export interface FileSourceConfig {
  type: 'file';
  /** The member file: JSON when it ends in `.json`, YAML otherwise. Relative to the config file's directory. */
  path: string;
}

/** The `file` source: members listed in a JSON or YAML file, re-read when it changes. Loads chokidar on start. */
export default defineSourceDriver<FileSourceConfig>()({
  type: 'file',
  options: z.strictObject({
    type: z.literal('file'),
    /** The member file (JSON or YAML, by extension). Relative to the config file's directory. */
    path: z.string().check(z.minLength(1)),
  }),
  defaults: {},
  validate: validateFileOptions,
  load: async () => (await import('../file.js')).createFileSource,
});

/** Checks the options of a `file` source. */
export function validateFileOptions(name: string, options: FileSourceOptions): void {
  checkSourceName(name);
  if (typeof options.path !== 'string' || options.path === '') throw invalidOption(name, 'path', 'expected the path of the member file');
}
