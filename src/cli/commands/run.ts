import { ConfigError, RosterdError } from '../../errors.js';
import type { ServedState } from '../../fleet/served.js';
import type { RenderHistory } from '../../ops/history.js';
import type { Renderer } from '../../runner/renderer.js';
import type { CommandAction, CommandContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { usageError } from '../options.js';
import { parseListen } from '../../net/address.js';
import { VERSION } from '../../version.js';
import { DAEMON_SIGNALS, takeEarlySignals } from '../early-signals.js';
import { lazyImport } from '../../lazy-import.js';

/**
 * `rosterd run` (the default command): the daemon. Renders on every change until SIGTERM/SIGINT;
 * SIGHUP re-reads the config and templates, and applies them only if all of it is valid.
 */
export const action: CommandAction<{ listen?: string }> = async (options, ctx) => {
  // Signals first: one that arrives while the config loads must neither kill the process nor be lost.
  const signals = new SignalInbox(ctx.io.handleSignals !== false);
  try {
    // Loaded when the command runs: other commands (`announce`) need none of it.
    const [{ loadConfig }, { Renderer }, { FLEET_QUERY }, { createServedState }] = await Promise.all([
      lazyImport<typeof import('../../config/load.js')>('../../config/load.js', import.meta.url),
      lazyImport<typeof import('../../runner/renderer.js')>('../../runner/renderer.js', import.meta.url),
      lazyImport<typeof import('../../fleet/answer.js')>('../../fleet/answer.js', import.meta.url),
      lazyImport<typeof import('../../fleet/served.js')>('../../fleet/served.js', import.meta.url),
    ]);
    const config = await loadConfig(ctx.options.config, { cwd: ctx.cwd });
    const listen = options.listen ?? config.http?.listen;
    if (listen !== undefined) {
      try {
        parseListen(listen);
      } catch (err) {
        throw usageError(`--listen: ${(err as Error).message}`);
      }
    }
    if (signals.stopRequested) {
      ctx.logger.info({ signal: signals.stopRequested }, 'stopping before the start');
      return ExitCode.OK;
    }
    // The Serf sources answer the fleet's questions with what this daemon serves.
    let served: ServedState | undefined;
    const renderer = new Renderer(config, { logger: ctx.logger, serfQueries: { [FLEET_QUERY]: (question) => served?.answer(question) } });
    served = createServedState(renderer);
    try {
      return await daemon(renderer, ctx, listen, signals);
    } finally {
      served.close();
    }
  } finally {
    signals.close();
  }
};

/**
 * The daemon's signals from the first moment of `run` (and, through early-signals.ts, of the process). Until
 * the daemon takes them, a SIGTERM or SIGINT is remembered (the start is called off) and any number of
 * SIGHUPs become one config reload once started.
 */
class SignalInbox {
  stopRequested: NodeJS.Signals | undefined;
  reloadRequested = false;
  #handlers: { stop(signal: NodeJS.Signals): void; reload(): void } | undefined;
  readonly #listeners = DAEMON_SIGNALS.map((signal) => [signal, () => this.#receive(signal)] as const);
  readonly #installed: boolean;

  constructor(install: boolean) {
    this.#installed = install;
    if (!install) return;
    for (const [signal, listener] of this.#listeners) process.on(signal, listener);
    for (const signal of takeEarlySignals()) this.#receive(signal);
  }

  /** From now on, signals go to these handlers. */
  deliverTo(handlers: { stop(signal: NodeJS.Signals): void; reload(): void }): void {
    this.#handlers = handlers;
  }

  close(): void {
    if (this.#installed) for (const [signal, listener] of this.#listeners) process.off(signal, listener);
  }

  #receive(signal: NodeJS.Signals): void {
    if (this.#handlers) {
      if (signal === 'SIGHUP') this.#handlers.reload();
      else this.#handlers.stop(signal);
    } else if (signal === 'SIGHUP') this.reloadRequested = true;
    else this.stopRequested ??= signal;
  }
}

/** Runs the renderer (and the status endpoint, if asked) until a stop signal; resolves with the exit code. */
async function daemon(renderer: Renderer, ctx: CommandContext, listen: string | undefined, signals: SignalInbox): Promise<number> {
  const { logger } = ctx;
  const [{ loadConfig }, { killAllCommands }] = await Promise.all([
    lazyImport<typeof import('../../config/load.js')>('../../config/load.js', import.meta.url),
    lazyImport<typeof import('../../exec/run.js')>('../../exec/run.js', import.meta.url),
  ]);
  const configFile = renderer.currentConfig.file ?? ctx.options.config;
  let stopping: Promise<void> | undefined;
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));

  const stop = (signal: string): void => {
    if (stopping) {
      if (signal === 'SIGINT') {
        logger.warn('second SIGINT: exiting now, killing running commands');
        killAllCommands('SIGKILL');
        resolveDone(130);
      }
      return;
    }
    logger.info({ signal }, 'stopping');
    stopping = renderer.stop().then(
      () => {
        logger.info('stopped');
        resolveDone(ExitCode.OK);
      },
      (err: unknown) => {
        logger.error({ err }, `stop failed: ${(err as Error).message}`);
        resolveDone(ExitCode.TEMPLATE_FAILED);
      },
    );
  };

  let reloading = Promise.resolve();
  const reload = (): void => {
    reloading = reloading.then(async () => {
      if (stopping) return;
      logger.info({ file: configFile }, 'SIGHUP: reloading the config');
      try {
        const next = await loadConfig(configFile, { cwd: ctx.cwd });
        if (stopping) return;
        await renderer.reconfigure(next);
      } catch (err) {
        if (err instanceof ConfigError) {
          for (const issue of err.issues) logger.error({ path: issue.path, file: err.file }, `${issue.path ? `${issue.path}: ` : ''}${issue.message}`);
          logger.error('the new config is invalid; still running the previous one');
        } else if (RosterdError.is(err)) {
          logger.error(`${err.message}; still running the previous config`);
        } else {
          logger.error({ err }, `config reload failed: ${(err as Error).message}; still running the previous config`);
        }
      }
    });
  };

  signals.deliverTo({ stop, reload });
  let status: { close(): Promise<void> } | undefined;
  let history: RenderHistory | undefined;
  try {
    // Kept when something shows it: the endpoint, or the history file.
    if (listen !== undefined || renderer.currentConfig.history.file !== undefined) {
      const { createHistory, historyOptions } = await lazyImport<typeof import('../../ops/history.js')>('../../ops/history.js', import.meta.url);
      history = createHistory(renderer, historyOptions(renderer.currentConfig.history), logger);
    }
    // The endpoint comes up first, so that /ready tells the truth while the first renders are under way.
    if (listen !== undefined) status = await serveStatus(renderer, listen, logger, history);
    await renderer.start();
    logger.info({ templates: renderer.currentConfig.templates.map((t) => t.name), pid: process.pid }, 'started');
    // A SIGHUP during the start: the config may have changed after it was read.
    if (signals.reloadRequested) reload();
    return await done;
  } finally {
    await status?.close();
    await history?.close();
  }
}

/**
 * Starts the status endpoint and the fleet survey it shows; their code (prom-client, the HTTP server) is
 * loaded only when the endpoint is asked for.
 */
async function serveStatus(renderer: Renderer, listen: string, logger: CommandContext['logger'], history: RenderHistory | undefined): Promise<{ close(): Promise<void> }> {
  const [{ startStatusServer }, { createMetrics, METRIC_PREFIX }, { FleetMonitor }, { registerFleetMetrics }] = await Promise.all([
    lazyImport<typeof import('../../ops/http.js')>('../../ops/http.js', import.meta.url),
    lazyImport<typeof import('../../ops/metrics.js')>('../../ops/metrics.js', import.meta.url),
    lazyImport<typeof import('../../fleet/monitor.js')>('../../fleet/monitor.js', import.meta.url),
    lazyImport<typeof import('../../fleet/metrics.js')>('../../fleet/metrics.js', import.meta.url),
  ]);
  const metrics = createMetrics(renderer, VERSION);
  const fleet = new FleetMonitor(renderer, logger);
  registerFleetMetrics(metrics.registry, fleet, METRIC_PREFIX);
  fleet.on('update', () => metrics.invalidate());
  let server: Awaited<ReturnType<typeof startStatusServer>>;
  try {
    server = await startStatusServer({ listen, renderer, metrics, logger, version: VERSION, fleet, ...(history ? { history } : {}) });
  } catch (err) {
    await fleet.close();
    metrics.close();
    throw err;
  }
  return {
    async close() {
      await fleet.close();
      await server.close();
      metrics.close();
    },
  };
}
