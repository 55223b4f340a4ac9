import { TemplateError } from '../errors.js';
import { renderTemplate, type CompiledTemplate } from './engine.js';
import { SlugScope } from './filters.js';

/**
 * Where templates render: in a render process of their own (`RenderSandbox`, sandbox.ts: what a daemon uses,
 * so that a runaway template fails its render and not the daemon), or in this process (`InProcessBackend`:
 * for a process that renders once and exits, such as `rosterd render --once`, where a second process would
 * only add its start-up). Both fail a render with the same `TemplateError`.
 */
export interface RenderBackend {
  /** Renders `template` with `context`. Rejects with a `TemplateError`. */
  render(template: CompiledTemplate, context: object): Promise<string>;
  /**
   * Renders each of `templates` once per item, over `context` with the item's `vars`, all with one `slug`
   * scope. Returns `outputs[template][item]`. A failure names the item by its `label`.
   */
  renderEach(templates: readonly CompiledTemplate[], context: object, items: readonly { vars: object; label: string }[]): Promise<string[][]>;
  /** Ends what the backend keeps (a render process); the next render starts again. */
  close(): Promise<void>;
}

/**
 * Renders in this process, within liquidjs's time and allocation limits. What those limits miss (a single
 * step that runs long, a heap that runs out) is not stopped here: use it where the process ends with the
 * render anyway, not in a daemon.
 */
export class InProcessBackend implements RenderBackend {
  render(template: CompiledTemplate, context: object): Promise<string> {
    return renderTemplate(template, context);
  }

  async renderEach(templates: readonly CompiledTemplate[], context: object, items: readonly { vars: object; label: string }[]): Promise<string[][]> {
    try {
      return await renderEachItem(templates, context, items.map((item) => item.vars));
    } catch (err) {
      if (!(err instanceof ItemRenderError)) throw err;
      const { cause } = err;
      const where = { template: cause.template, file: cause.file, line: cause.line, column: cause.column, excerpt: cause.excerpt };
      throw new TemplateError(cause.code === 'E_TEMPLATE' ? 'E_TEMPLATE' : 'E_RENDER', `${cause.detail} (rendering the file of ${items[err.item]!.label})`, where, { cause: cause.cause });
    }
  }

  async close(): Promise<void> {}
}

/**
 * The render process backend (`RenderSandbox`), loaded with the first render: a process that renders in
 * itself, or not at all, never loads it (nor `node:child_process`).
 */
export function renderProcessBackend(): RenderBackend {
  let backend: Promise<RenderBackend> | undefined;
  const started = (): Promise<RenderBackend> => (backend ??= import('./sandbox.js').then(({ RenderSandbox }) => new RenderSandbox()));
  return {
    render: async (template, context) => (await started()).render(template, context),
    renderEach: async (templates, context, items) => (await started()).renderEach(templates, context, items),
    close: async () => {
      if (backend) await (await backend).close();
    },
  };
}

/** A fan-out item's render failed: which item, and the `TemplateError`. */
export class ItemRenderError extends Error {
  override readonly cause: TemplateError;
  constructor(
    readonly item: number,
    cause: TemplateError,
  ) {
    super(cause.message, { cause });
    this.cause = cause;
  }
}

/**
 * The renders of a fan-out: each template for every item before the next template, over `context` with the
 * item's variables, all with one slug scope, so that no two values share an identifier across the files.
 * Returns `outputs[template][item]`; a failure is an `ItemRenderError`. The render process (child.ts) and
 * `InProcessBackend` both render fan-outs with it.
 */
export async function renderEachItem(templates: readonly CompiledTemplate[], context: object, items: readonly object[]): Promise<string[][]> {
  const slugs = new SlugScope();
  const outputs: string[][] = [];
  for (const template of templates) {
    const rendered: string[] = [];
    for (let item = 0; item < items.length; item++) {
      try {
        rendered.push(await renderTemplate(template, { ...context, ...items[item] }, slugs));
      } catch (err) {
        throw err instanceof TemplateError ? new ItemRenderError(item, err) : err;
      }
    }
    outputs.push(rendered);
  }
  return outputs;
}
