import { Option, type Command } from 'commander';
import { commandContext, type CliIo } from '../context.js';
import { ExitCode, exitCodeFor } from '../exit-codes.js';
import { durationOption, usageError } from '../options.js';

interface RenderOptions {
  once?: boolean;
  dry?: boolean;
  diff?: boolean;
  reload: boolean;
  timeout: number;
}

/**
 * `rosterd render --once`: wait for each source's first snapshot, render every template, run the
 * commands, exit. Every template is attempted; the exit code is the worst outcome.
 */
export function registerRender(program: Command, io: CliIo, setExit: (code: number) => void): void {
  program
    .command('render')
    .description('render every template once and exit')
    .option('--once', 'render once and exit (required: the daemon is `rosterd run`)')
    .option('--dry', 'print what would be written (path and content); write and run nothing')
    .option('--diff', 'like --dry, but print a unified diff against the file on disk')
    .option('--no-reload', 'install (after the check) but run no reload, e.g. before the service that reads the file is started')
    .addOption(new Option('--timeout <duration>', 'how long to wait for first snapshots').default(30_000, '30s').argParser(durationOption('--timeout')))
    .action(async (options: RenderOptions, command: Command) => {
      if (!options.once) throw usageError('render needs --once (to keep rendering on changes, run `rosterd run`)');
      const ctx = commandContext(command, io);
      const [{ loadConfig }, { Renderer }] = await Promise.all([import('../../config/load.js'), import('../../runner/renderer.js')]);
      const config = await loadConfig(ctx.options.config, { cwd: ctx.cwd });
      const renderer = new Renderer(config, { logger: ctx.logger });
      const dry = Boolean(options.dry || options.diff);
      const results = await renderer.renderOnce({ dry, timeout: options.timeout, reload: options.reload });
      let exit: number = ExitCode.OK;
      for (const result of results) {
        if (result.status === 'dry') {
          if (options.diff) io.stdout.write(result.diff ?? '');
          else if (result.files) {
            // A fan-out: each of its files, then those prune would remove.
            for (const file of result.files) io.stdout.write(dryFile(file.destination, file.changed, file.content ?? ''));
            for (const path of result.removed ?? []) io.stdout.write(`==> ${path} (would be removed) <==\n`);
          } else io.stdout.write(dryFile(result.destination, result.changed, result.content ?? ''));
        }
        if (result.error) {
          const code = exitCodeFor(result.error);
          // A source that gave nothing outranks a template that failed: nothing could be rendered from it.
          if (code === ExitCode.SOURCE || exit === ExitCode.OK) exit = code;
        }
      }
      setExit(exit);
    });
}

/** A file as `render --once --dry` prints it: a header with its path, then its content. */
function dryFile(destination: string, changed: boolean, content: string): string {
  return `==> ${destination} (${changed ? 'would change' : 'unchanged'}) <==\n${content}${content.endsWith('\n') || content === '' ? '' : '\n'}`;
}
