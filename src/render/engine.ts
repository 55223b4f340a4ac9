import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type * as LiquidModule from 'liquidjs';
import type { Context, Emitter, FilterImplOptions, ForTag, IncludeTag, LayoutTag, Liquid, RenderTag, TablerowTag, Template } from 'liquidjs';
import { TemplateError } from '../errors.js';
import { groupByTag, quote, slug, SlugScope, sortBy, status, tagged } from './filters.js';

let liquidjs: typeof LiquidModule | undefined;

/**
 * liquidjs, required when the first template is compiled (the render process: at its start); importing rosterd
 * does not load it. Required, not imported: it is a CommonJS package, and Node 20 imports one into an ES
 * module only after scanning its whole source (180 kB) for export names, which took 40-60 ms every start.
 */
export function loadLiquid(): typeof LiquidModule {
  return (liquidjs ??= createRequire(import.meta.url)('liquidjs') as typeof LiquidModule);
}

/**
 * What one render may use. A template is code: a loop over `(1..100000000)` or a partial that includes itself
 * must fail its render with a clear error, never the daemon. liquidjs counts time and allocations between
 * steps; the render process (sandbox.ts) is stopped when a render exceeds them anyway, and its heap is bounded.
 */
export interface RenderLimits {
  /** Milliseconds one render may take. */
  readonly timeMs: number;
  /** Characters and list items the filters and ranges of one render may allocate (liquidjs's `memoryLimit`). */
  readonly allocations: number;
  /** MiB of heap the render process may use for a render and its members. */
  readonly heapMb: number;
}

/**
 * The limits every render runs under. 200,000 members in an HAProxy template take about 250 MiB of heap
 * and 9 s on a busy two-core machine, so these leave room for several times that.
 */
export const RENDER_LIMITS: RenderLimits = { timeMs: 30_000, allocations: 2 ** 26, heapMb: 2048 };
/** Characters of template text, partials included, one template may have (liquidjs's `parseLimit`). */
const MAX_TEMPLATE_CHARS = 2 ** 24;
/** Partials within partials: a partial that includes itself stops here, at once, instead of filling the heap. */
export const MAX_PARTIAL_DEPTH = 50;

/** A template parsed at load time, ready to render many times. */
export interface CompiledTemplate {
  /** Distinct for every compile: the render process compiles the same text once per id. */
  readonly id: number;
  /** The template's name in logs and errors. */
  readonly name: string;
  /** Where the text came from: the file, or `<inline templates[i].contents>`. */
  readonly file: string;
  /** The template's text and the directory its partials are found in, to compile it again elsewhere. */
  readonly text: string;
  readonly root: string;
  readonly strict: boolean;
  readonly engine: Liquid;
  readonly parsed: Template[];
}

let compiles = 0;

/**
 * Creates the Liquid engine for one template. Strict by default: an unknown variable or filter is an
 * error, not an empty string; `{% if %}` and `| default` still accept missing keys. Partials
 * (`{% render "x.liquid" %}`) resolve next to the template and are cached until the next config load.
 */
function createEngine(options: { root: string; strict: boolean; limits: RenderLimits }): Liquid {
  const { ForTag, IncludeTag, LayoutTag, Liquid: LiquidEngine, RenderTag, TablerowTag } = loadLiquid();
  const engine = new LiquidEngine({
    root: [options.root],
    partials: [options.root],
    strictVariables: options.strict,
    strictFilters: options.strict,
    lenientIf: true,
    ownPropertyOnly: true,
    cache: true,
    // `{% for m in (members | tagged: "role", "web") %}`: filters in a loop need the parentheses.
    groupedExpressions: true,
    parseLimit: MAX_TEMPLATE_CHARS,
    renderLimit: options.limits.timeMs,
    memoryLimit: options.limits.allocations,
    // The `date` filter names months and days in one language on every machine (byte-identical output), and
    // liquidjs does not ask ICU for the machine's locale, which took 15-30 ms of every start.
    locale: 'en-US',
  });
  engine.registerTag('for', loopTagWithoutBareFilters(ForTag, 'for'));
  engine.registerTag('tablerow', loopTagWithoutBareFilters(TablerowTag, 'tablerow'));
  engine.registerTag('include', depthLimited(IncludeTag, 'include'));
  engine.registerTag('render', depthLimited(RenderTag, 'render'));
  engine.registerTag('layout', depthLimited(LayoutTag, 'layout'));
  engine.registerFilter('tagged', tagged);
  engine.registerFilter('status', status);
  engine.registerFilter('sort_by', sortBy);
  engine.registerFilter('group_by_tag', groupByTag);
  engine.registerFilter('slug', slugInRender);
  engine.registerFilter('quote', quote);
  return engine;
}

/**
 * Parses a template. A syntax error or an unknown filter is a `TemplateError` (`E_TEMPLATE`) naming the
 * file, line and column.
 */
export function compileTemplate(input: { name: string; text: string; file: string; root?: string; strict: boolean; limits?: RenderLimits }): CompiledTemplate {
  const root = input.root ?? dirname(input.file);
  const engine = createEngine({ root, strict: input.strict, limits: input.limits ?? RENDER_LIMITS });
  try {
    const parsed = engine.parse(input.text, input.file);
    return { id: ++compiles, name: input.name, file: input.file, text: input.text, root, strict: input.strict, engine, parsed };
  } catch (err) {
    throw toTemplateError('E_TEMPLATE', input.name, input.file, err);
  }
}

/**
 * Renders a compiled template in this thread, within its time and allocation limits (a step that runs long
 * still blocks the thread: the daemon renders through sandbox.ts). A render failure is a `TemplateError`
 * (`E_RENDER`) with file, line and column. `slugs` lets several renders share one `slug` scope (the files of a
 * fan-out); by default each render has its own.
 */
export async function renderTemplate(template: CompiledTemplate, context: object, slugs: SlugScope = new SlugScope()): Promise<string> {
  try {
    // Globals are shared with every partial of this render (registers are not), and a symbol is no variable.
    const globals: RenderGlobals = { [SLUG_SCOPE]: slugs, [PARTIAL_DEPTH]: 0 };
    return await template.engine.render(template.parsed, context, { globals });
  } catch (err) {
    throw toTemplateError('E_RENDER', template.name, template.file, err);
  }
}

// --- internal ---

const SLUG_SCOPE = Symbol('slug scope');
const PARTIAL_DEPTH = Symbol('partial depth');
/** What one render shares with all its partials. */
interface RenderGlobals {
  [SLUG_SCOPE]?: SlugScope;
  [PARTIAL_DEPTH]?: number;
}

/** `slug` with the scope of the render it runs in: no two values get the same identifier in one render. */
const slugInRender: FilterImplOptions = function (this: { context: Context }, value: unknown) {
  return slug(value, (this.context.globals as RenderGlobals)[SLUG_SCOPE]);
};

/** A partial tag that refuses to nest deeper than `MAX_PARTIAL_DEPTH`, counted across the whole render. */
function depthLimited<T extends typeof IncludeTag | typeof RenderTag | typeof LayoutTag>(Base: T, name: string): T {
  return class extends (Base as typeof IncludeTag) {
    override *render(ctx: Context, emitter: Emitter): Generator<unknown, void, unknown> {
      const globals = ctx.globals as RenderGlobals;
      const depth = (globals[PARTIAL_DEPTH] ?? 0) + 1;
      if (depth > MAX_PARTIAL_DEPTH) throw new Error(`partials nested more than ${MAX_PARTIAL_DEPTH} deep ({% ${name} %}: does a partial include itself?)`);
      globals[PARTIAL_DEPTH] = depth;
      try {
        yield* super.render(ctx, emitter);
      } finally {
        globals[PARTIAL_DEPTH] = depth - 1;
      }
    }
  } as unknown as T;
}

/**
 * True for `x in members | tagged: "a"`: a filter after the loop's collection, outside parentheses and
 * quotes (`x in (members | tagged: "a")` and `x in sources["a|b"]` are fine).
 */
export function hasBareFilter(args: string): boolean {
  const collection = /^\s*[\w-]+\s+in\s+/.exec(args);
  if (!collection) return false;
  let quote: string | undefined;
  let depth = 0;
  for (const c of args.slice(collection[0].length)) {
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return true;
  }
  return false;
}

/**
 * Liquid silently ignores a filter written after a loop's collection (`for m in members | tagged: …`) and
 * loops over the unfiltered list, which for a config renderer means servers in the wrong backend. The loop
 * tags here refuse that at compile time and say how to write it.
 */
function loopTagWithoutBareFilters<T extends typeof ForTag | typeof TablerowTag>(Base: T, name: string): T {
  return class extends (Base as typeof ForTag) {
    constructor(...args: ConstructorParameters<typeof ForTag>) {
      const [token] = args;
      if (hasBareFilter(token.args)) {
        const [variable, , ...rest] = token.args.trim().split(/\s+/);
        throw new Error(`filters in a ${name} loop need parentheses: {% ${name} ${variable} in (${rest.join(' ')}) %}`);
      }
      super(...args);
    }
  } as unknown as T;
}

function toTemplateError(code: 'E_TEMPLATE' | 'E_RENDER', name: string, file: string, err: unknown): TemplateError {
  const where: { template: string; file: string; line?: number; column?: number; excerpt?: string } = { template: name, file };
  let reason = err instanceof Error ? err.message : String(err);
  // liquidjs's lines around the error, the failing one marked `>>`: kept apart from the one-line message.
  const excerpt = (err as { context?: unknown }).context;
  if (typeof excerpt === 'string' && excerpt.trim() !== '') where.excerpt = excerpt.replace(/\s+$/, '');
  const token = (err as { token?: { getPosition?: () => number[]; file?: string; props?: { file?: string }[] } }).token;
  if (token?.getPosition) {
    const [line, column] = token.getPosition();
    where.line = line;
    where.column = column;
    // A variable's token carries its file on its parts: that is how an error inside a partial names the partial.
    const file = token.file ?? token.props?.find((p) => p.file)?.file;
    if (file) where.file = file;
  }
  // liquidjs appends ", file:…, line:…, col:…" to its messages; we print the position our own way.
  reason = reason.replace(/, file:.*$/s, '').replace(/, line:\d+, col:\d+$/, '');
  const position = where.line !== undefined ? `:${where.line}:${where.column}` : '';
  const verb = code === 'E_TEMPLATE' ? 'does not compile' : 'failed to render';
  return new TemplateError(code, `${where.file}${position}: ${verb}: ${reason}`, where, { cause: err });
}
