import type { CommandAction } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { lazyImport } from '../../lazy-import.js';

/** `rosterd validate`: load the config, compile every template, report every problem at once. */
export const action: CommandAction<object> = async (_options, ctx) => {
  const { loadConfig } = await lazyImport<typeof import('../../config/load.js')>('../../config/load.js', import.meta.url);
  const config = await loadConfig(ctx.options.config, { cwd: ctx.cwd });
  const where = config.file ?? 'config';
  ctx.logger.info(
    { templates: config.templates.length, sources: Object.keys(config.sources).length },
    `${where} is valid: ${config.templates.length} template(s), ${Object.keys(config.sources).length} source(s)`,
  );
  return ExitCode.OK;
};
