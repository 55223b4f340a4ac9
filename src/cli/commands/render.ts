import type { CommandAction } from '../context.js';
import { ExitCode, exitCodeFor } from '../exit-codes.js';
import { usageError } from '../options.js';
import { lazyImport } from '../../lazy-import.js';

interface RenderOptions {
  once?: boolean;
  dry?: boolean;
  diff?: boolean;
  reload: boolean;
  timeout: number;
}

/**
 * `rosterd render --once`: wait for each source's first snapshot, render every template, run the
 * commands, exit. Every template is attempted; the exit code is the worst outcome. Templates render in this
 * process: the render process a daemon keeps (see render/sandbox.ts) would only add a process start.
 */
export const action: CommandAction<RenderOptions> = async (options, ctx) => {
  if (!options.once) throw usageError('render needs --once (to keep rendering on changes, run `rosterd run`)');
  const { io } = ctx;
  const [{ loadConfig }, { Renderer }] = await Promise.all([
    lazyImport<typeof import('../../config/load.js')>('../../config/load.js', import.meta.url),
    lazyImport<typeof import('../../runner/renderer.js')>('../../runner/renderer.js', import.meta.url),
  ]);
  const config = await loadConfig(ctx.options.config, { cwd: ctx.cwd });
  const renderer = new Renderer(config, { logger: ctx.logger, renderInProcess: true });
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
  return exit;
};

/** A file as `render --once --dry` prints it: a header with its path, then its content. */
function dryFile(destination: string, changed: boolean, content: string): string {
  return `==> ${destination} (${changed ? 'would change' : 'unchanged'}) <==\n${content}${content.endsWith('\n') || content === '' ? '' : '\n'}`;
}
