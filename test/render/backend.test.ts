import { afterAll, describe, expect, it } from 'vitest';
import { TemplateError } from '../../src/errors.js';
import { InProcessBackend, type RenderBackend } from '../../src/render/backend.js';
import { compileTemplate } from '../../src/render/engine.js';
import { RenderSandbox } from '../../src/render/sandbox.js';

/**
 * `render --once` renders in its own process (`InProcessBackend`), the daemon in its render process
 * (`RenderSandbox`): the same templates must give the same files and the same errors either way.
 */

const sandbox = new RenderSandbox();
afterAll(() => sandbox.close());
const backends: [string, RenderBackend][] = [
  ['in process', new InProcessBackend()],
  ['render process', sandbox],
];

const compile = (text: string, file = '/tpl/t.liquid') => compileTemplate({ name: 't', text, file, strict: true });
const members = [
  { name: 'web 2', address: '10.0.0.2' },
  { name: 'web_2', address: '10.0.0.3' },
];

/** What a backend gives for a render: the output, or the error's code, message and position. */
async function outcome(run: () => Promise<unknown>): Promise<unknown> {
  try {
    return { output: await run() };
  } catch (err) {
    expect(err).toBeInstanceOf(TemplateError);
    const { code, message, template, file, line, column } = err as TemplateError;
    return { code, message, template, file, line, column };
  }
}

describe('InProcessBackend and RenderSandbox render alike', () => {
  it('one file, and an error with its file, line and column', async () => {
    const template = compile('{% for m in members %}{{ m.name | slug }}\n{% endfor %}');
    const broken = compile('ok\n  {{ nope }}');
    const results = await Promise.all(
      backends.map(async ([, backend]) => [await outcome(() => backend.render(template, { members })), await outcome(() => backend.render(broken, {}))]),
    );
    expect((results[0]![0] as { output: string }).output).toMatch(/^web_2-[0-9a-f]{6}\nweb_2\n$/);
    expect(results[1]).toEqual(results[0]);
    expect(results[0]![1]).toMatchObject({ code: 'E_RENDER', file: '/tpl/t.liquid', line: 2, column: 6 });
  });

  it('a fan-out: one slug scope across its files, and an error naming the item', async () => {
    const destination = compile('out/{{ member.name | slug }}.cfg', '<templates[0].destination>');
    const content = compile('server {{ member.name | slug }} {{ member.address }}{% if member.name == "web_2" %}{{ member.port.nope }}{% endif %}\n');
    const fine = compile('server {{ member.name | slug }}\n');
    const items = members.map((member) => ({ vars: { member }, label: `member ${JSON.stringify(member.name)}` }));
    const results = await Promise.all(
      backends.map(async ([, backend]) => [
        await outcome(() => backend.renderEach([destination, fine], {}, items)),
        await outcome(() => backend.renderEach([destination, content], {}, items)),
      ]),
    );
    expect(results[1]).toEqual(results[0]);
    const [files, failure] = results[0]! as [{ output: string[][] }, { message: string }];
    // The two names slug alike: the one that was changed gets a hash, in the paths and the contents alike.
    expect(files.output[0]![0]).not.toBe(files.output[0]![1]);
    expect(files.output[1]).toEqual(files.output[0]!.map((path) => `server ${path.slice('out/'.length, -'.cfg'.length)}\n`));
    expect(failure.message).toContain('(rendering the file of member "web_2")');
  });
});
