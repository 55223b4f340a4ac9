import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TemplateError } from '../../src/errors.js';
import { compileTemplate, MAX_PARTIAL_DEPTH, renderTemplate } from '../../src/render/engine.js';
import { RenderSandbox } from '../../src/render/sandbox.js';
import { tempDir } from '../helpers/tmp.js';

const sandboxes: RenderSandbox[] = [];
afterEach(async () => {
  for (const sandbox of sandboxes.splice(0)) await sandbox.close();
});

function sandbox(limits: ConstructorParameters<typeof RenderSandbox>[0] = {}): RenderSandbox {
  const created = new RenderSandbox(limits);
  sandboxes.push(created);
  return created;
}

const compile = (text: string, file = '/tpl/t.liquid') => compileTemplate({ name: 't', text, file, strict: true });

async function renderError(box: RenderSandbox, template: ReturnType<typeof compile>, context: object = {}): Promise<TemplateError> {
  const error = await box.render(template, context).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(TemplateError);
  return error as TemplateError;
}

describe('RenderSandbox (renders in a child process)', () => {
  it('renders what the engine renders, and reports errors with the same file, line and column', async () => {
    const box = sandbox();
    const template = compile('{% for m in members %}{{ m.name | slug }} {{ m.name | quote }}\n{% endfor %}');
    const context = { members: [{ name: 'web 2' }, { name: 'web_2-88f3e9' }] };
    expect(await box.render(template, context)).toBe(await renderTemplate(template, context));
    const broken = compile('ok\n  {{ nope }}');
    const error = await renderError(box, broken);
    const local = (await renderTemplate(broken, {}).catch((err: unknown) => err)) as TemplateError;
    expect({ code: error.code, message: error.message, file: error.file, line: error.line, column: error.column }).toEqual({
      code: local.code,
      message: local.message,
      file: local.file,
      line: local.line,
      column: local.column,
    });
  });

  it('fails a loop over (1..100000000) at once: the allocation limit', async () => {
    const error = await renderError(sandbox(), compile('{% for i in (1..100000000) %}x{% endfor %}'));
    expect(error.message).toBe('[template t] /tpl/t.liquid:1:1: failed to render: memory alloc limit exceeded');
  });

  it('fails a partial that includes itself, at once, naming the tag', async () => {
    const dir = await tempDir();
    try {
      await writeFile(join(dir.path, 'self.liquid'), 'x{% include "self.liquid" %}');
      const error = await renderError(sandbox(), compile('{% render "self.liquid" %}', join(dir.path, 'main.liquid')));
      expect(error.message).toContain(`failed to render: partials nested more than ${MAX_PARTIAL_DEPTH} deep ({% include %}: does a partial include itself?)`);
    } finally {
      await dir.cleanup();
    }
  });

  it('ends a render at its time limit, and this process keeps running meanwhile', async () => {
    const box = sandbox({ timeMs: 300 });
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 20);
    const started = Date.now();
    try {
      const error = await renderError(box, compile('{% for i in (1..50000000) %}{% endfor %}'));
      // liquidjs's own limit ends it; on a starved machine the parent's deadline (2 s later) may come first.
      expect(error.message).toMatch(/failed to render: (template render limit exceeded|did not finish within 2\.3 s \(the time limit is 0\.3 s\))/);
    } finally {
      clearInterval(ticker);
    }
    const elapsed = Date.now() - started;
    // The timer fired all along: the render did not block this process.
    expect(ticks).toBeGreaterThan(elapsed / 20 / 4);
  });

  it('ends a render that runs out of the render process heap, and the next render gets a fresh process', async () => {
    const box = sandbox({ heapMb: 64 });
    // Lists of 2^25 items are within the allocation limit and far beyond 64 MiB: only the heap limit stops this.
    const error = await renderError(box, compile('{% assign a = (1..1024) %}{% for i in (1..15) %}{% assign a = a | concat: a %}{% endfor %}{{ a | size }}'));
    expect(error.message).toBe('[template t] /tpl/t.liquid: failed to render: ran out of memory (the limit is 64 MiB); stopped');
    expect(await box.render(compile('{{ a }}'), { a: 'fine' })).toBe('fine');
  });

  it('close() fails the render under way and the queued ones', async () => {
    const box = sandbox();
    const slow = box.render(compile('{% for i in (1..50000000) %}{% endfor %}'), {}).catch((err: unknown) => err as TemplateError);
    const queued = box.render(compile('{{ a }}'), { a: 1 }).catch((err: unknown) => err as TemplateError);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    await box.close();
    expect(Date.now() - started).toBeLessThan(2000);
    for (const error of [await slow, await queued]) expect((error as TemplateError).message).toContain('failed to render: stopped: the renderer is stopping');
    expect(await box.render(compile('{{ a }}'), { a: 'again' })).toBe('again');
  });
});
