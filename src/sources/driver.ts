import type { z } from 'zod';
import type { Member } from '../members/model.js';
import type { Source, SourceContext, SourceFactory } from './types.js';

/**
 * A source driver: everything rosterd knows about one source type, in one small module that loads nothing
 * heavy. The config schema is composed from the drivers' `options`, `createSource` builds sources through
 * them, and the implementation (with its Serf client, resolver, etcd client or file watcher) is imported by
 * `load()` only when a source of that type starts. The unstorage driver pattern, with a schema added.
 */
export interface SourceDriver<Type extends string = string, Schema extends z.core.$ZodType = z.core.$ZodType, Options = z.output<Schema>, Input = z.input<Schema>> {
  /** The `type` written in a config. */
  readonly type: Type;
  /** The options as a config gives them, `type` included: strict, with durations parsed and defaults filled. */
  readonly options: Schema;
  /** The defaults `options` fills in, for docs and hover help. */
  readonly defaults: Readonly<Partial<Options>>;
  /**
   * Checks resolved options (as a library user may pass them, without the schema) and throws a
   * `SourceError` (not retryable) naming the bad option. Runs when the source is built, not when it starts.
   */
  readonly validate: (name: string, options: Options) => void;
  /** Imports the implementation: its factory, which validates again and builds the source. */
  readonly load: () => Promise<SourceFactory<Options>>;
  /**
   * The options as a config file writes them: a documented interface equal to `z.input<Schema>` (the
   * inferred type loses its JSDoc in the published declarations; test/config/input-types.test.ts checks
   * that the two agree). Types only: never set.
   */
  readonly input?: Input;
}

/**
 * Declares a source driver; a typed identity function, as `defineConfig` is. `Input` is the documented
 * interface of the options as a config writes them: `defineSourceDriver<SerfSourceConfig>()({ … })`.
 */
export function defineSourceDriver<Input>() {
  return <const Type extends string, Schema extends z.core.$ZodType, Options = z.output<Schema>>(
    driver: SourceDriver<Type, Schema, Options, Input>,
  ): SourceDriver<Type, Schema, Options, Input> => driver;
}

/**
 * Builds a source through its driver: the options are checked now (a bad one throws here), the
 * implementation is loaded and built on `start()`. The source keeps the `Source` contract: `stop()` before,
 * during or after the load ends everything the source started.
 */
export function createDriverSource<Options>(driver: SourceDriver<string, z.core.$ZodType, Options, unknown>, name: string, options: NoInfer<Options>, context: SourceContext): Source {
  driver.validate(name, options);
  let inner: Source | undefined;
  let loading: Promise<Source> | undefined;
  let stopped = false;
  return {
    name,
    async start(onSnapshot: (members: Member[]) => void, onError: (err: Error) => void) {
      stopped = false;
      loading ??= driver.load().then((factory) => factory(name, options, context));
      inner = await loading;
      // A stop while the implementation loaded wins: nothing starts.
      if (stopped) return;
      await inner.start(onSnapshot, onError);
    },
    async stop() {
      stopped = true;
      await loading?.catch(() => {});
      await inner?.stop();
    },
  };
}
