import { parentPort } from 'node:worker_threads';
import { RosterdError, TemplateError } from '../errors.js';
import { compileTemplate, renderTemplate, type CompiledTemplate } from './engine.js';
import type { RenderReply, RenderRequest } from './sandbox.js';

/**
 * The render worker (see sandbox.ts): compiles each template it is sent once, from the same text and root
 * as the main thread did, and renders it. Templates are kept by the id of their compile, so a config reload
 * (new ids) reads its partials afresh, as a render on the main thread would.
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

parentPort!.on('message', (request: RenderRequest) => {
  const reply = (message: RenderReply): void => parentPort!.postMessage(message);
  (async () => {
    try {
      reply({ id: request.id, output: await renderTemplate(compiled(request.template), request.context) });
    } catch (err) {
      const known = err instanceof TemplateError ? err : undefined;
      const detail = RosterdError.is(err) ? err.detail : `${request.template.file}: failed to render: ${err instanceof Error ? err.message : String(err)}`;
      reply({ id: request.id, error: { code: known?.code ?? 'E_RENDER', detail, file: known?.file, line: known?.line, column: known?.column } });
    }
  })();
});
