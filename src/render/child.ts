import { RosterdError, TemplateError } from '../errors.js';
import { ItemRenderError, renderEachItem } from './backend.js';
import { compileTemplate, loadLiquid, renderTemplate, type CompiledTemplate } from './engine.js';
import type { RenderReply, RenderRequest } from './sandbox.js';

/**
 * The render process (see sandbox.ts): compiles each template it is sent once, from the same text and root
 * as the daemon did, and renders it. Templates are kept by the id of their compile, so a config reload (new
 * ids) reads its partials afresh, as a render in the daemon would. The daemon alone decides when this process
 * ends: it ignores the signals a terminal or a service manager sends to the whole group, and exits when the
 * daemon is gone.
 */

/** Compiled templates kept, the most recently used last: far more than one config has. */
const MAX_TEMPLATES = 64;
const templates = new Map<number, CompiledTemplate>();

function compiled(spec: RenderRequest['template']): CompiledTemplate {
  let template = templates.get(spec.id);
  if (template) templates.delete(spec.id);
  else template = compileTemplate({ name: spec.name, text: spec.text, file: spec.file, root: spec.root, strict: spec.strict, limits: spec.limits });
  templates.set(spec.id, template);
  if (templates.size > MAX_TEMPLATES) templates.delete(templates.keys().next().value!);
  return template;
}

// Loaded before the first request: a render's time limit counts from its start and must not include this.
loadLiquid();

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
process.on('disconnect', () => process.exit(0));

process.on('message', (message) => {
  const request = message as RenderRequest;
  const reply = (answer: RenderReply): void => void process.send?.(answer);
  reply({ id: request.id, started: true });
  (async () => {
    try {
      const output = request.each
        ? await renderEachItem(request.each.templates.map(compiled), request.context, request.each.items)
        : await renderTemplate(compiled(request.template), request.context);
      reply({ id: request.id, output });
    } catch (caught) {
      const item = caught instanceof ItemRenderError ? caught.item : undefined;
      const err: unknown = caught instanceof ItemRenderError ? caught.cause : caught;
      const known = err instanceof TemplateError ? err : undefined;
      const detail = RosterdError.is(err) ? err.detail : `${request.template.file}: failed to render: ${err instanceof Error ? err.message : String(err)}`;
      reply({ id: request.id, error: { code: known?.code ?? 'E_RENDER', detail, file: known?.file, line: known?.line, column: known?.column, excerpt: known?.excerpt, item } });
    }
  })();
});
