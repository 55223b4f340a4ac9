import type { Command } from 'commander';
import { commandContext, type CliIo } from '../context.js';
import { ExitCode } from '../exit-codes.js';

/** `rosterd validate`: load the config, compile every template, report every problem at once. */
export function registerValidate(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('validate')
    .description('load the config and compile every template; report every problem at once (exit 0 or 2)')
    .action(async (_options, command: Command) => {
      const ctx = commandContext(command, io);
      const { loadConfig } = await import('../../config/load.js');
      const config = await loadConfig(ctx.options.config, { cwd: ctx.cwd });
      const where = config.file ?? 'config';
      ctx.logger.info(
        { templates: config.templates.length, sources: Object.keys(config.sources).length },
        `${where} is valid: ${config.templates.length} template(s), ${Object.keys(config.sources).length} source(s)`,
      );
      setExit(ExitCode.OK);
    });
}
