import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import type { Command as CommandType } from 'commander';
import { DEFAULT_ETCD_ENDPOINT } from '../etcd/endpoints.js';
import { ConfigError, RosterdError, TemplateError } from '../errors.js';
import { commandContext, type CliIo, type CommandAction } from './context.js';
import { releaseEarlySignals } from './early-signals.js';
import { ExitCode, exitCodeFor } from './exit-codes.js';
import { countOption, durationOption, PASSWORD_ENV } from './options.js';
import { lazyImport } from '../lazy-import.js';
import { VERSION } from '../version.js';

// Required, not imported: Node imports a CommonJS package into an ES module only after scanning its source
// for export names, a few ms of every start, `--version` included. Through `vendor/commander.cjs`, which the
// build makes a bundle of commander.
const { Command, CommanderError, Option } = createRequire(import.meta.url)('../vendor/commander.cjs') as typeof import('commander');

/** The subcommands, each with its module in `./commands/`. */
type CommandName = 'run' | 'render' | 'validate' | 'members' | 'fleet' | 'history' | 'announce' | 'test';

/**
 * Runs the CLI with `argv` (without the node and script paths) and returns the exit code. Known errors
 * print one clear line (what and where); unknown ones print their stack.
 *
 * Start-up is kept short: this file declares every command (its description and options) and loads a
 * command's module (`./commands/<name>.js`) only when that command runs, so that `--version`, `--help` and a
 * usage error load commander and nothing else of size.
 */
export async function main(argv: readonly string[], io: CliIo = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  let exitCode: number = ExitCode.OK;
  /** The action of a command, in `./commands/<name>.js`, which is loaded when the command runs. */
  const lazy =
    (name: CommandName) =>
    async (options: object, command: CommandType): Promise<void> => {
      const [{ action }, ctx] = await Promise.all([lazyImport<{ action: CommandAction<object> }>(`./commands/${name}.js`, import.meta.url), commandContext(command, io)]);
      exitCode = await action(options, ctx);
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

  program
    .command('run', { isDefault: true })
    .description('watch the sources and keep every output up to date (the default command)')
    .option('--listen <address>', 'serve the status page, /health, /ready, /metrics, /history and /fleet on this host:port (overrides http.listen)')
    .action(lazy('run'));

  program
    .command('render')
    .description('render every template once and exit')
    .option('--once', 'render once and exit (required: the daemon is `rosterd run`)')
    .option('--dry', 'print what would be written (path and content); write and run nothing')
    .option('--diff', 'like --dry, but print a unified diff against the file on disk')
    .option('--no-reload', 'install (after the check) but run no reload, e.g. before the service that reads the file is started')
    .addOption(snapshotTimeoutOption())
    .action(lazy('render'));

  program
    .command('validate')
    .description('load the config and compile every template; report every problem at once (exit 0 or 2)')
    .action(lazy('validate'));

  program
    .command('members')
    .description('print the members each source sees, then exit')
    .option('--json', 'print JSON ({ "<source>": [members] }) instead of a table')
    .addOption(snapshotTimeoutOption())
    .action(lazy('members'));

  program
    .command('fleet')
    .description('list the rosterds of the Serf cluster and mark those that differ from the majority or lag')
    .option('--json', 'print JSON ({ source, self, view }) instead of a table')
    .option('--source <name>', 'the Serf source whose agent to ask (default: the first in the config)')
    .addOption(new Option('--lag <duration>', 'a rosterd that differs for longer than this lags (default: fleet.lag)').argParser(durationOption('--lag')))
    .addOption(new Option('--timeout <duration>', 'how long to wait for answers (default: fleet.timeout)').argParser(durationOption('--timeout')))
    .action(lazy('fleet'));

  program
    .command('history')
    .description("print a running daemon's render history (from its status endpoint), oldest first")
    .option('--url <url>', 'the status endpoint (default: http://<http.listen of the config>)')
    .option('-t, --template <name>', 'only this template')
    .addOption(new Option('-n, --limit <count>', 'the last COUNT renders').default(20).argParser(countOption('--limit')))
    .option('--diff', 'print the diff of each installed file')
    .option('--json', 'print the entries as JSON')
    .action(lazy('history'));

  program
    .command('announce')
    .description('register this node in etcd (under a lease, kept alive) until SIGTERM/SIGINT, which revoke it')
    .requiredOption('--prefix <prefix>', 'key prefix the etcd source watches, e.g. /services/web/')
    .requiredOption('--address <address>', "this node's address (IP address or host name)")
    .addOption(new Option('--name <name>', 'member name: the key after the prefix').default(hostname(), 'the host name'))
    .option('--port <port>', "this node's service port")
    .addOption(new Option('--tag <key=value>', 'a tag (repeatable)').argParser((value: string, list: string[]) => [...list, value]).default([], 'none'))
    .addOption(new Option('--ttl <duration>', 'lease time to live: how long a crashed node stays listed').default(10_000, '10s').argParser(durationOption('--ttl')))
    .option('--endpoints <list>', 'etcd endpoints, comma-separated', DEFAULT_ETCD_ENDPOINT)
    .option('--user <name>', `etcd user name (the password comes from $${PASSWORD_ENV} or --password-file)`)
    .option('--password-file <file>', 'file holding the etcd password')
    .addOption(new Option('--password <password>', 'etcd password (visible to other users in `ps`: prefer the environment variable or --password-file)').env(PASSWORD_ENV))
    .option('--cacert <file>', 'CA certificate (PEM) that verifies the etcd servers')
    .option('--cert <file>', 'client certificate (PEM)')
    .option('--key <file>', "client certificate's key (PEM)")
    .addOption(new Option('--request-timeout <duration>', 'how long each etcd request may take').default(5000, '5s').argParser(durationOption('--request-timeout')))
    .action(lazy('announce'));

  program
    .command('test')
    .description('render every template from fixture member files and compare with golden files; install and reload nothing')
    .requiredOption('--fixtures <dir>', 'fixtures: <source name>.yaml|yml|json per source, golden files under expected/')
    .option('--update', 'write the golden files of outputs that differ (and remove those of fan-out files no longer rendered)')
    .action(lazy('test'));

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

/** `--timeout` of the commands that wait for every source's first snapshot (`render`, `members`). */
function snapshotTimeoutOption(): InstanceType<typeof Option> {
  return new Option('--timeout <duration>', 'how long to wait for first snapshots').default(30_000, '30s').argParser(durationOption('--timeout'));
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
