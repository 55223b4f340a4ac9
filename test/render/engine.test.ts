import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TemplateError } from '../../src/errors.js';
import { buildContext } from '../../src/render/context.js';
import { compileTemplate, hasBareFilter, renderTemplate } from '../../src/render/engine.js';
import type { Member } from '../../src/sources/types.js';
import { tempDir } from '../helpers/tmp.js';

const compile = (text: string, strict = true) => compileTemplate({ name: 't', text, file: '/tpl/t.liquid', root: '/tpl', strict });
const m = (name: string, extra: Partial<Member> = {}): Member => ({ name, address: '10.0.0.1', tags: {}, status: 'alive', source: 'a', ...extra });

async function renderError(text: string, context: object): Promise<TemplateError> {
  const error = await renderTemplate(compile(text), context).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(TemplateError);
  return error as TemplateError;
}

describe('render engine', () => {
  it('a member without a port is an undefined variable unless the template gives a default', async () => {
    const error = await renderError('{% for x in members %}{{ x.port }}{% endfor %}', { members: [m('a')] });
    expect(error.message).toContain('undefined variable: x.port');
  });

  it('renders members with the job filters', async () => {
    const members = [m('web 1', { tags: { role: 'web' }, port: 81 }), m('db', { tags: { role: 'db' } })];
    const out = await renderTemplate(compile('{% for x in (members | tagged: "role", "web") %}server {{ x.name | slug }} {{ x.address }}:{{ x.port }}{% endfor %}'), { members });
    expect(out).toMatch(/^server web_1-[0-9a-f]{6} 10\.0\.0\.1:81$/);
  });

  it('is strict: an undefined variable is an error with line and column', async () => {
    const error = await renderError('ok\n  {{ nope }}', { members: [] });
    expect(error.code).toBe('E_RENDER');
    expect(error.line).toBe(2);
    expect(error.column).toBe(6);
    expect(error.message).toBe('[template t] /tpl/t.liquid:2:6: failed to render: undefined variable: nope');
  });

  it('is strict about missing member keys, but if and default still work', async () => {
    const members = [m('a')];
    const error = await renderError('{% for x in members %}{{ x.tags.port }}{% endfor %}', { members });
    expect(error.message).toContain('undefined variable: x.tags.port');
    const out = await renderTemplate(compile('{% for x in members %}{% if x.tags.port %}p{% else %}none{% endif %}-{{ x.tags.port | default: 80 }}{% endfor %}'), { members });
    expect(out).toBe('none-80');
  });

  it('an unknown filter fails at compile time with file and line', () => {
    let error: unknown;
    try {
      compile('a\nb {{ x | nofilter }}');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(TemplateError);
    expect((error as TemplateError).code).toBe('E_TEMPLATE');
    expect((error as TemplateError).line).toBe(2);
    expect((error as TemplateError).message).toContain('/tpl/t.liquid:2:');
    expect((error as TemplateError).message).toContain('nofilter');
  });

  it('refuses a filter after a loop collection without parentheses, which Liquid would ignore', () => {
    for (const tag of ['for', 'tablerow']) {
      let error: unknown;
      try {
        compile(`{% ${tag} m in members | tagged: "role", "web" %}{{ m.name }}{% end${tag} %}`);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(TemplateError);
      expect((error as TemplateError).message).toContain(`filters in a ${tag} loop need parentheses: {% ${tag} m in (members | tagged: "role", "web") %}`);
    }
  });

  it('finds a bare loop filter behind quotes and brackets, and only outside parentheses and strings', () => {
    expect(hasBareFilter('m in sources["web"] | tagged: "role", "db"')).toBe(true);
    expect(hasBareFilter("m in sources['a'] | size")).toBe(true);
    expect(hasBareFilter('m in (sources["web"] | tagged: "role", "db")')).toBe(false);
    expect(hasBareFilter('m in sources["a|b"]')).toBe(false);
    expect(hasBareFilter('m in members limit: 2')).toBe(false);
  });

  it('still accepts loop modifiers and plain collections', async () => {
    const members = [m('a'), m('b'), m('c')];
    expect(await renderTemplate(compile('{% for x in members limit: 2 reversed %}{{ x.name }}{% endfor %}'), { members })).toBe('ba');
  });

  it('can be lenient when strict is off', async () => {
    expect(await renderTemplate(compile('[{{ nope }}]', false), {})).toBe('[]');
  });

  it('renders the same membership byte-identically whatever the order it arrived in', async () => {
    const tpl = compile('{% for x in members %}{{ x.source }}/{{ x.name }}@{{ x.address }}:{{ x.port | default: "-" }}\n{% endfor %}');
    const a = [m('b', { port: 2 }), m('a', { port: 1 }), m('a', { port: 0, address: '10.0.0.0' })];
    const b = [m('c', { source: 'b' })];
    const one = await renderTemplate(tpl, buildContext(new Map([['a', a], ['b', b]]), ['a', 'b'], []));
    const two = await renderTemplate(tpl, buildContext(new Map([['a', [...a].reverse()], ['b', b]]), ['b', 'a'], []));
    expect(one).toBe(two);
    expect(one).toBe('a/a@10.0.0.0:0\na/a@10.0.0.1:1\na/b@10.0.0.1:2\nb/c@10.0.0.1:-\n');
  });

  it('exposes only the allow-listed environment variables', async () => {
    const context = buildContext(new Map(), [], ['DC'], { DC: 'eu', SECRET: 'x' });
    expect(await renderTemplate(compile('{{ env.DC }}'), context)).toBe('eu');
    const error = await renderError('{{ env.SECRET }}', context);
    expect(error.message).toContain('undefined variable: env.SECRET');
  });

  it('builds the context of 200,000 members, whichever source they come from', () => {
    const many = (source: string, count: number) => Array.from({ length: count }, (_, i) => m(`${source}-${i}`, { source }));
    const context = buildContext(new Map([['a', many('a', 150_000)], ['b', many('b', 50_000)]]), ['a', 'b'], []);
    expect(context.members).toHaveLength(200_000);
    expect(context.sources.a).toHaveLength(150_000);
    expect(context.members.at(-1)!.name).toBe('b-9999');
  });

  it('exposes each source separately', async () => {
    const context = buildContext(new Map([['a', [m('x')]], ['b', [m('y', { source: 'b' })]]]), ['a', 'b'], []);
    expect(await renderTemplate(compile('{{ sources.a | size }}{{ sources.b[0].name }}{{ members | size }}'), context)).toBe('1y2');
  });
});

describe('partials', () => {
  it('render next to the template, and an error inside one names the partial', async () => {
    const dir = await tempDir();
    try {
      await writeFile(join(dir.path, 'server.liquid'), 'server {{ m.name }}\n');
      await writeFile(join(dir.path, 'broken.liquid'), 'ok\nline {{ nope }}\n');
      const main = compileTemplate({ name: 't', text: '{% for m in members %}{% render "server.liquid", m: m %}{% endfor %}', file: join(dir.path, 'main.liquid'), strict: true });
      expect(await renderTemplate(main, { members: [m('a'), m('b')] })).toBe('server a\nserver b\n');
      // slug gives out names for the whole render, partials included: a look-alike name gets a longer hash.
      await writeFile(join(dir.path, 'slug.liquid'), '{{ m.name | slug }}\n');
      const slugs = compileTemplate({ name: 't', text: '{{ members[0].name | slug }}\n{% render "slug.liquid", m: members[1] %}', file: join(dir.path, 'main.liquid'), strict: true });
      const lines = (await renderTemplate(slugs, { members: [m('web 2'), m('web_2-88f3e9')] })).split('\n');
      expect(lines[0]).toBe('web_2-88f3e9');
      expect(lines[1]).toMatch(/^web_2-88f3e9-[0-9a-f]{6}$/);
      const bad = compileTemplate({ name: 't', text: 'x\n{% render "broken.liquid" %}', file: join(dir.path, 'main.liquid'), strict: true });
      const error = await renderTemplate(bad, {}).then(
        () => undefined,
        (err: unknown) => err as TemplateError,
      );
      expect(error?.file).toBe(join(dir.path, 'broken.liquid'));
      expect(error?.line).toBe(2);
      expect(error?.message).toContain(`${join(dir.path, 'broken.liquid')}:2:`);
    } finally {
      await dir.cleanup();
    }
  });
});
