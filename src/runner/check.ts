import { dirname } from 'node:path';
import { commandFailure, logFailedOutput } from '../reload/reloader.js';
import type { ResolvedTemplate } from '../config/load.js';
import { TemplateRunError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * Runs a template's `check` command on a candidate file: `{{candidate}}` is the candidate, `{{destination}}` the
 * file it is meant to replace. Returns the failure (`E_CHECK_FAILED`), or undefined when the check passed or
 * there is none. The command runs in the destination's directory unless `cwd` says otherwise.
 */
export async function runCheck(
  template: Pick<ResolvedTemplate, 'name' | 'check' | 'timeout'>,
  files: { candidate: string; destination: string; cwd?: string },
  logger: Logger,
): Promise<TemplateRunError | undefined> {
  if (!template.check) return undefined;
  const log = logger.child({ command: 'check' });
  // Loaded with the first command: a render without commands never loads the command runner.
  const { runCommand } = await import('../exec/run.js');
  const result = await runCommand(template.check, {
    placeholders: { candidate: files.candidate, destination: files.destination },
    timeout: template.timeout,
    cwd: files.cwd ?? dirname(files.destination),
    onLine: (stream, line) => log.debug({ stream }, line),
  });
  if (result.ok) return undefined;
  logFailedOutput(log, result.output);
  return new TemplateRunError('E_CHECK_FAILED', template.name, `check ${result.command} ${commandFailure(result)}; ${files.destination} left as it was`, {
    exitCode: result.exitCode,
    timedOut: result.timedOut,
    output: result.output,
  });
}
