import { RosterdError, TemplateError } from '../errors.js';
import { compileTemplate, renderTemplate, type CompiledTemplate } from './engine.js';
import { SlugScope } from './filters.js';
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

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => undefined);
process.on('disconnect', () => process.exit(0));

process.on('message', (message) => {
  const request = message as RenderRequest;
  const reply = (answer: RenderReply): void => void process.send?.(answer);
  reply({ id: request.id, started: true });
  let item: number | undefined;
  (async () => {
    try {
      if (!request.each) {
        reply({ id: request.id, output: await renderTemplate(compiled(request.template), request.context) });
        return;
      }
      // A fan-out: one slug scope for every file, so that no two values share an identifier across them.
      const slugs = new SlugScope();
      const outputs: string[][] = [];
      for (const spec of request.each.templates) {
        const template = compiled(spec);
        const rendered: string[] = [];
        for (item = 0; item < request.each.items.length; item++) rendered.push(await renderTemplate(template, { ...request.context, ...request.each.items[item] }, slugs));
        outputs.push(rendered);
      }
      reply({ id: request.id, output: outputs });
    } catch (err) {
      const known = err instanceof TemplateError ? err : undefined;
      const detail = RosterdError.is(err) ? err.detail : `${request.template.file}: failed to render: ${err instanceof Error ? err.message : String(err)}`;
      reply({ id: request.id, error: { code: known?.code ?? 'E_RENDER', detail, file: known?.file, line: known?.line, column: known?.column, excerpt: known?.excerpt, item } });
    }
  })();
});
