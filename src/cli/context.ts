import type { Command } from 'commander';
import type { LogFormat, Logger } from '../logger.js';
import type { LevelWithSilent } from 'pino';
import { lazyImport } from '../lazy-import.js';

/** Where the CLI reads and writes. Tests pass their own streams to drive it in-process. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Directory the config search and relative paths start from. Default: the process's. */
  cwd?: string;
  /** Whether `run` installs signal handlers on the process (SIGHUP, SIGTERM, SIGINT). Default true. */
  handleSignals?: boolean;
}

/** The options every command accepts. */
interface GlobalOptions {
  config?: string;
  logLevel: LevelWithSilent;
  logFormat: LogFormat;
}

/** What a subcommand gets to work with. */
export interface CommandContext {
  io: CliIo;
  cwd: string;
  options: GlobalOptions;
  logger: Logger;
}

/**
 * A subcommand's action: its module is loaded when the command runs (`rosterd --version` loads none), and
 * it resolves with the exit code.
 */
export type CommandAction<Options> = (options: Options, ctx: CommandContext) => Promise<number>;

/** Builds the context for a subcommand from its parsed global options. The logger (pino) is loaded here. */
export async function commandContext(command: Command, io: CliIo): Promise<CommandContext> {
  const options = command.optsWithGlobals<GlobalOptions>();
  const { createLogger } = await lazyImport<typeof import('../logger.js')>('../logger.js', import.meta.url);
  const logger = createLogger({ level: options.logLevel, format: options.logFormat, destination: io.stderr });
  if (io.stderr === process.stderr) logProcessWarnings(logger);
  return { io, cwd: io.cwd ?? process.cwd(), options, logger };
}

/**
 * Node's own warnings (a dependency's deprecation, such as gRPC giving TLS an IP address as the server
 * name) become log lines: printed by Node, they would be the one line on stderr not in the log's format.
 */
function logProcessWarnings(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => logger.warn({ warning: warning.name, code: warning.code }, warning.message));
}
