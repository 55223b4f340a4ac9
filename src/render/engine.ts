import { dirname } from 'node:path';
import { ForTag, Liquid, TablerowTag, type Context, type FilterImplOptions, type Template } from 'liquidjs';
import { TemplateError } from '../errors.js';
import { groupByTag, quote, slug, SlugScope, sortBy, status, tagged } from './filters.js';

/** A template parsed at load time, ready to render many times. */
export interface CompiledTemplate {
  /** The template's name in logs and errors. */
  readonly name: string;
  /** Where the text came from: the file, or `<inline templates[i].contents>`. */
  readonly file: string;
  readonly strict: boolean;
  readonly engine: Liquid;
  readonly parsed: Template[];
}

/**
 * Creates the Liquid engine for one template. Strict by default: an unknown variable or filter is an
 * error, not an empty string; `{% if %}` and `| default` still accept missing keys. Partials
 * (`{% render "x.liquid" %}`) resolve next to the template and are cached until the next config load.
 */
function createEngine(options: { root: string; strict: boolean }): Liquid {
  const engine = new Liquid({
    root: [options.root],
    partials: [options.root],
    strictVariables: options.strict,
    strictFilters: options.strict,
    lenientIf: true,
    ownPropertyOnly: true,
    cache: true,
    // `{% for m in (members | tagged: "role", "web") %}`: filters in a loop need the parentheses.
    groupedExpressions: true,
  });
  engine.registerTag('for', loopTagWithoutBareFilters(ForTag, 'for'));
  engine.registerTag('tablerow', loopTagWithoutBareFilters(TablerowTag, 'tablerow'));
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
export function compileTemplate(input: { name: string; text: string; file: string; root?: string; strict: boolean }): CompiledTemplate {
  const root = input.root ?? dirname(input.file);
  const engine = createEngine({ root, strict: input.strict });
  try {
    const parsed = engine.parse(input.text, input.file);
    return { name: input.name, file: input.file, strict: input.strict, engine, parsed };
  } catch (err) {
    throw toTemplateError('E_TEMPLATE', input.name, input.file, err);
  }
}

/** Renders a compiled template. A render failure is a `TemplateError` (`E_RENDER`) with file, line and column. */
export async function renderTemplate(template: CompiledTemplate, context: object): Promise<string> {
  try {
    // Globals are shared with every partial of this render (registers are not), and a symbol is no variable.
    return await template.engine.render(template.parsed, context, { globals: { [SLUG_SCOPE]: new SlugScope() } });
  } catch (err) {
    throw toTemplateError('E_RENDER', template.name, template.file, err);
  }
}

// --- internal ---

const SLUG_SCOPE = Symbol('slug scope');

/** `slug` with the scope of the render it runs in: no two values get the same identifier in one render. */
const slugInRender: FilterImplOptions = function (this: { context: Context }, value: unknown) {
  return slug(value, (this.context.globals as { [SLUG_SCOPE]?: SlugScope })[SLUG_SCOPE]);
};

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
  const where: { template: string; file: string; line?: number; column?: number } = { template: name, file };
  let reason = err instanceof Error ? err.message : String(err);
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
