import type { z } from 'zod';
import dns from './drivers/dns.js';
import etcd from './drivers/etcd.js';
import file from './drivers/file.js';
import serf from './drivers/serf.js';

/**
 * The built-in source drivers, one line each. The config schema's `sources` union, `createSource` and the
 * docs' list of types all come from here: a new source type is a driver file and a line here.
 */
export const SOURCE_DRIVERS = [file, serf, dns, etcd] as const;

/** The `type` of a built-in source. */
export type SourceType = (typeof SOURCE_DRIVERS)[number]['type'];

/** The drivers' option schemas, as a tuple (what `z.discriminatedUnion` takes). */
type OptionSchemas<Drivers extends readonly { options: z.core.$ZodType }[]> = { -readonly [K in keyof Drivers]: Drivers[K]['options'] };

/** The option schemas of the built-in drivers, in the registry's order. */
export const SOURCE_OPTION_SCHEMAS = SOURCE_DRIVERS.map((driver) => driver.options) as OptionSchemas<typeof SOURCE_DRIVERS>;

/** A built-in source's config after validation (durations in ms, defaults filled), one variant per driver. */
export type SourceConfig = z.output<(typeof SOURCE_DRIVERS)[number]['options']>;

/** A built-in source as a config writes it: the union of the drivers' documented input interfaces. */
export type SourceInput = NonNullable<(typeof SOURCE_DRIVERS)[number]['input']>;
