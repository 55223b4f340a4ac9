import type { z } from 'zod';
import type { ConfigIssue } from '../errors.js';

/**
 * Turns zod issues into config issues a person can act on: the path written as in the config
 * (`templates[0].wait.min`), one issue per unknown key with the closest known key as a suggestion.
 */
export function toConfigIssues(error: z.core.$ZodError, schema: z.core.$ZodType, input: unknown): ConfigIssue[] {
  return convert(error.issues, schema, input);
}

function convert(zodIssues: readonly z.core.$ZodIssue[], schema: z.core.$ZodType, input: unknown): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const issue of zodIssues) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(schema, issue.path, input);
      for (const key of issue.keys) {
        const guess = closest(key, known);
        const hint = guess ? ` — did you mean "${guess}"?` : known.length > 0 ? ` (known keys: ${known.join(', ')})` : '';
        issues.push({ path: formatPath([...issue.path, key]), message: `unknown key${hint}` });
      }
    } else if (issue.code === 'invalid_union') {
      // Report the branch that fits the value's shape (a source config's "type"), not every alternative.
      const branch = pickUnionBranch(issue, input);
      if (branch) issues.push(...convert(branch.map((i) => ({ ...i, path: [...issue.path, ...i.path] })), schema, input));
      else issues.push({ path: formatPath(issue.path), message: unionMessage(issue, valueAt(input, issue.path)) });
    } else if (issue.code === 'invalid_key') {
      // A record key (a source name) that breaks the naming rule: say the rule.
      issues.push({ path: formatPath(issue.path), message: issue.issues[0]?.message ?? issue.message });
    } else {
      issues.push({ path: formatPath(issue.path), message: humanMessage(issue) });
    }
  }
  return issues;
}

/** `['templates', 0, 'wait', 'min']` → `templates[0].wait.min`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (typeof part === 'string' && /^[A-Za-z_$][\w$]*$/.test(part)) out += out ? `.${part}` : part;
    else out += `[${JSON.stringify(String(part))}]`;
  }
  return out;
}

// --- internal ---

function humanMessage(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined')) return 'required';
  return issue.message;
}

/** What a value matching none of a union's branches should have been. */
function unionMessage(issue: z.core.$ZodIssueInvalidUnion, value: unknown): string {
  const rootIssues = issue.errors.flatMap((branch) => branch.filter((i) => i.path.length === 0));
  const custom = rootIssues.find((i) => i.code === 'custom');
  if (custom) return custom.message;
  const expected = rootIssues.map((i) =>
    i.code === 'invalid_type' ? i.expected : i.code === 'invalid_value' ? i.values.map((v) => JSON.stringify(v)).join(' or ') : undefined,
  );
  const got = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  return expected.every((e) => e !== undefined) && expected.length > 0 ? `expected ${expected.join(' or ')}, got ${got}` : issue.message;
}

function pickUnionBranch(issue: z.core.$ZodIssueInvalidUnion, input: unknown): z.core.$ZodIssue[] | undefined {
  const value = valueAt(input, issue.path);
  if (typeof value !== 'object' || value === null) return undefined;
  // Keep the branches that accepted the value's shape: not those that failed on its type as a whole, nor
  // (for source configs) on the "type" discriminator. Their issues are about the keys the user wrote.
  const fitting = issue.errors.filter(
    (branch) =>
      !branch.some(
        (i) =>
          (i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'invalid_value' || i.code === 'invalid_union' || i.code === 'custom')) ||
          (i.path.length === 1 && i.path[0] === 'type' && i.code !== 'unrecognized_keys'),
      ),
  );
  return fitting.length === 1 ? fitting[0] : undefined;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let value = input;
  for (const part of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<PropertyKey, unknown>)[part];
  }
  return value;
}

/** The keys the schema allows at `path`, following the input to choose among union branches. */
function knownKeysAt(schema: z.core.$ZodType, path: readonly PropertyKey[], input: unknown): string[] {
  const found = new Set<string>();
  const walk = (node: z.core.$ZodType, rest: readonly PropertyKey[], value: unknown): void => {
    const def = node._zod.def as unknown as Record<string, unknown> & { type: string };
    switch (def.type) {
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'readonly':
      case 'catch':
        return walk(def.innerType as z.core.$ZodType, rest, value);
      case 'pipe':
        return walk(def.in as z.core.$ZodType, rest, value);
      case 'union':
        for (const option of def.options as z.core.$ZodType[]) {
          const optionDef = option._zod.def as unknown as { type: string; shape?: Record<string, z.core.$ZodType> };
          const literal = optionDef.shape?.type?._zod.def as unknown as { values?: unknown[] } | undefined;
          const type = typeof value === 'object' && value !== null ? (value as { type?: unknown }).type : undefined;
          if (literal?.values && type !== undefined && !literal.values.includes(type)) continue;
          walk(option, rest, value);
        }
        return;
      case 'array':
        if (rest.length === 0) return;
        return walk(def.element as z.core.$ZodType, rest.slice(1), valueAt(value, rest.slice(0, 1)));
      case 'record':
        if (rest.length === 0) return;
        return walk(def.valueType as z.core.$ZodType, rest.slice(1), valueAt(value, rest.slice(0, 1)));
      case 'object': {
        const shape = def.shape as Record<string, z.core.$ZodType>;
        if (rest.length === 0) {
          for (const key of Object.keys(shape)) found.add(key);
          return;
        }
        const child = shape[String(rest[0])];
        if (child) walk(child, rest.slice(1), valueAt(value, rest.slice(0, 1)));
        return;
      }
      default:
        return;
    }
  };
  walk(schema, path, input);
  return [...found];
}

/** The known key closest to `key`, if it is close enough to be a likely typo. */
function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** Damerau–Levenshtein distance (with adjacent transpositions, so "wiat" is one edit from "wait"). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}
