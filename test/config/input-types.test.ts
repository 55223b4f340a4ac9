import { describe, expectTypeOf, it } from 'vitest';
import type { z } from 'zod';
import type { RosterdConfig } from '../../src/config/input.js';
import { configSchema } from '../../src/config/schema.js';
import { SOURCE_DRIVERS } from '../../src/sources/registry.js';

/**
 * The documented input interfaces (what hover help shows in a config file) say exactly what the schema
 * accepts: checked by the type checker (`npm run typecheck`), and run by vitest as a plain test.
 */
describe('the documented config interfaces', () => {
  it('equal the schema’s input type', () => {
    expectTypeOf<RosterdConfig>().toEqualTypeOf<z.input<typeof configSchema>>();
  });

  it('equal each driver’s options input type', () => {
    type Drivers = (typeof SOURCE_DRIVERS)[number];
    type Check<D> = D extends { options: infer S extends z.core.$ZodType; input?: infer I } ? [I, z.input<S>] : never;
    expectTypeOf<Check<Extract<Drivers, { type: 'file' }>>[0]>().toEqualTypeOf<Check<Extract<Drivers, { type: 'file' }>>[1]>();
    expectTypeOf<Check<Extract<Drivers, { type: 'serf' }>>[0]>().toEqualTypeOf<Check<Extract<Drivers, { type: 'serf' }>>[1]>();
    expectTypeOf<Check<Extract<Drivers, { type: 'dns' }>>[0]>().toEqualTypeOf<Check<Extract<Drivers, { type: 'dns' }>>[1]>();
    expectTypeOf<Check<Extract<Drivers, { type: 'etcd' }>>[0]>().toEqualTypeOf<Check<Extract<Drivers, { type: 'etcd' }>>[1]>();
  });
});
