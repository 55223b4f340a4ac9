import { resolve } from 'node:path';
import type { CommandAction } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { lazyImport } from '../../lazy-import.js';

interface TestOptions {
  fixtures: string;
  update?: boolean;
}

/**
 * `rosterd test --fixtures DIR [--update]`: render every template from fixture member files, run each
 * template's check on its output, compare with the golden files under `DIR/expected/`. Installs and reloads
 * nothing. Exit 0 when all match, 1 with a unified diff per mismatch (or a failed check or render), 2 for a
 * config error or a missing fixture.
 */
export const action: CommandAction<TestOptions> = async (options, ctx) => {
  const { io } = ctx;
  const [{ loadConfig }, { testTemplates }] = await Promise.all([
    lazyImport<typeof import('../../config/load.js')>('../../config/load.js', import.meta.url),
    lazyImport<typeof import('../../runner/template-test.js')>('../../runner/template-test.js', import.meta.url),
  ]);
  const config = await loadConfig(ctx.options.config, { cwd: ctx.cwd });
  const report = await testTemplates(config, { fixtures: resolve(ctx.cwd, options.fixtures), update: options.update === true, logger: ctx.logger });
  const out = (line: string): boolean => io.stdout.write(`${line}\n`);
  const label = { match: 'ok', differs: 'DIFFERS', updated: 'updated', checkFailed: 'CHECK FAILED', unexpected: 'UNEXPECTED', removed: 'removed' } as const;
  for (const output of report.outputs) {
    const note = output.status === 'unexpected' ? ' (a golden file that no output renders)' : output.error ? `: ${output.error.message}` : '';
    out(`${label[output.status].padEnd(12)} expected/${output.golden}${note}`);
    if (output.status === 'differs') io.stdout.write(output.diff ?? '');
  }
  for (const { template, error } of report.failures) out(`${'FAILED'.padEnd(12)} ${template}: ${error.message}`);
  for (const { template, item, destination, reason } of report.refused) out(`${'refused'.padEnd(12)} ${template}: ${JSON.stringify(item)} → ${JSON.stringify(destination)}: ${reason}`);
  const count = (status: keyof typeof label): number => report.outputs.filter((o) => o.status === status).length;
  const failed = count('differs') + count('checkFailed') + count('unexpected') + report.failures.length;
  const summary = [`${count('match')} match`, count('updated') ? `${count('updated')} updated` : '', count('removed') ? `${count('removed')} removed` : '', failed ? `${failed} failed` : ''];
  out(`${report.outputs.length} output(s): ${summary.filter(Boolean).join(', ')}`);
  return failed > 0 ? ExitCode.TEMPLATE_FAILED : ExitCode.OK;
};
