import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { configSchema } from '../../src/config/schema.js';

const EXAMPLE = fileURLToPath(new URL('../../renderer.config.example.ts', import.meta.url));

/** Every object key anywhere in the schema. */
function schemaKeys(schema: z.core.$ZodType, found = new Set<string>()): Set<string> {
  const def = schema._zod.def as unknown as Record<string, unknown> & { type: string };
  const children: unknown[] = [];
  if (def.type === 'object') {
    for (const [key, child] of Object.entries(def.shape as Record<string, unknown>)) {
      found.add(key);
      children.push(child);
    }
  }
  for (const field of ['innerType', 'in', 'out', 'element', 'valueType']) if (def[field]) children.push(def[field]);
  if (Array.isArray(def.options)) children.push(...def.options);
  for (const child of children) schemaKeys(child as z.core.$ZodType, found);
  return found;
}

describe('renderer.config.example.ts', () => {
  it('is a valid config', async () => {
    const { default: example } = (await import(EXAMPLE)) as { default: unknown };
    const parsed = configSchema.safeParse(example);
    expect(parsed.error?.issues ?? []).toEqual([]);
  });

  it('documents every key of the schema', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    const keys = schemaKeys(configSchema);
    expect([...keys]).toEqual(expect.arrayContaining(['sources', 'templates', 'maxShrink', 'rpcAddr', 'masterSocket', 'record', 'listen']));
    const missing = [...keys].filter((key) => !new RegExp(`\\b${key}\\b\\s*:`).test(text));
    expect(missing).toEqual([]);
  });
});
