import type { Command } from 'commander';
import { createLogger, type LogFormat, type Logger } from '../logger.js';
import type { LevelWithSilent } from 'pino';

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

/** Builds the context for a subcommand from its parsed global options. */
export function commandContext(command: Command, io: CliIo): CommandContext {
  const options = command.optsWithGlobals<GlobalOptions>();
  const logger = createLogger({ level: options.logLevel, format: options.logFormat, destination: io.stderr });
  return { io, cwd: io.cwd ?? process.cwd(), options, logger };
}
