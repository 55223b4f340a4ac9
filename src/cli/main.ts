import { Command, CommanderError, Option } from 'commander';
import { ConfigError, RosterdError, TemplateError } from '../errors.js';
import { registerAnnounce } from './commands/announce.js';
import { registerFleet } from './commands/fleet.js';
import { registerHistory } from './commands/history.js';
import { registerMembers } from './commands/members.js';
import { registerRender } from './commands/render.js';
import { registerRun } from './commands/run.js';
import { registerTest } from './commands/test.js';
import { registerValidate } from './commands/validate.js';
import type { CliIo } from './context.js';
import { releaseEarlySignals } from './early-signals.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';
import { VERSION } from '../version.js';


/**
 * Runs the CLI with `argv` (without the node and script paths) and returns the exit code. Known errors
 * print one clear line (what and where); unknown ones print their stack.
 */
export async function main(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let exitCode: number = ExitCode.OK;
  const setExit = (code: number): void => {
    exitCode = code;
  };
  const program = new Command('rosterd')
    .description('Render config files from live membership (Serf, DNS, etcd, a member file), install them safely, reload.')
    .version(VERSION, '-V, --version')
    .option('-c, --config <file>', 'config file (default: renderer.config.{ts,js,yaml,json} or .rendererrc* in the working directory)')
    .addOption(new Option('--log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'))
    .addOption(new Option('--log-format <format>', 'log format on stderr').choices(['text', 'json']).default('text'))
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  for (const register of [registerRun, registerRender, registerValidate, registerMembers, registerFleet, registerHistory, registerAnnounce, registerTest]) register(program, io, setExit);
  for (const command of program.commands) command.exitOverride();
  // Only `run` handles signals; the other commands keep their default action (see early-signals.ts).
  program.hook('preAction', (_program, command) => {
    if (command.name() !== 'run') releaseEarlySignals();
  });

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; everything else commander rejects is a usage error (already printed).
      return err.exitCode === 0 ? ExitCode.OK : ExitCode.CONFIG;
    }
    io.stderr.write(describeFailure(err));
    return exitCodeFor(err);
  }
}

/**
 * The text printed for an error that ends a command: its message; below it, liquidjs's excerpt of each template
 * that does not compile (the `>>` line); for a bug, its stack.
 */
export function describeFailure(err: unknown): string {
  if (!RosterdError.is(err)) return `rosterd: unexpected error: ${stackOf(err)}\n`;
  if (err.code === 'E_INTERNAL') return `rosterd: ${err.message}\n${stackOf(err.cause)}\n`;
  const excerpts = err instanceof ConfigError ? err.issues.filter((i) => i.excerpt !== undefined).map((i) => `${i.path}:\n${indent(i.excerpt!)}`) : err instanceof TemplateError && err.excerpt !== undefined ? [indent(err.excerpt)] : [];
  return `rosterd: ${err.message}\n${excerpts.map((e) => `${e}\n`).join('')}`;
}

function indent(text: string): string {
  return text.replace(/^/gm, '  ');
}

function stackOf(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}
