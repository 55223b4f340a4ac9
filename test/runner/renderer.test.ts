import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defineConfig } from '../../src/config/define.js';
import type { RosterdConfig } from '../../src/config/schema.js';
import { loadConfig } from '../../src/config/load.js';
import { TemplateError } from '../../src/errors.js';
import type { Renderer } from '../../src/runner/renderer.js';
import { createRenderer } from '../../src/runner/renderer.js';
import type { Member, Source } from '../../src/sources/types.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const BIN = fileURLToPath(new URL('../fixtures/bin/', import.meta.url));
const TEMPLATE = '{% for m in members %}server {{ m.name | slug }} {{ m.address }}:{{ m.port | default: 80 }}\n{% endfor %}';

let dir: string;
let cleanup: () => Promise<void>;
let renderer: Renderer | undefined;
beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await renderer?.stop();
  renderer = undefined;
  await cleanup();
});

const at = (name: string): string => join(dir, name);
const members = (...names: string[]) => names.map((name, i) => ({ name, address: `10.0.0.${i + 1}`, port: 8000 + i }));

async function writeMembers(list: unknown): Promise<void> {
  // Replace atomically, as a careful tool would; the source re-reads on every change anyway.
  await writeFile(at('members.json.tmp'), JSON.stringify(list));
  await rename(at('members.json.tmp'), at('members.json'));
}

/** A reload command that appends a line to a counter file, so tests can count reloads. */
const countingReload = (): string => `echo reload >> ${at('reloads')}`;
async function reloads(): Promise<number> {
  return (await readFile(at('reloads'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
}

async function make(template: Partial<RosterdConfig['templates'][number]> = {}, extra: Partial<RosterdConfig> = {}): Promise<Renderer> {
  const config = defineConfig({
    sources: { web: { type: 'file', path: 'members.json' } },
    templates: [{ contents: TEMPLATE, destination: 'out/app.cfg', ...template }],
    ...extra,
  });
  renderer = await createRenderer(await loadConfig(config, { baseDir: dir }));
  return renderer;
}

describe('renderOnce', () => {
  it('renders the members into the destination, creating its directory', async () => {
    await writeMembers(members('web 1', 'web-2'));
    const r = await make();
    const [result] = await r.renderOnce();
    expect(result).toMatchObject({ template: 'app.cfg', status: 'written', changed: true, members: 2, destination: at('out/app.cfg') });
    expect(await readFile(at('out/app.cfg'), 'utf8')).toMatch(/^server web_1-[0-9a-f]{6} 10\.0\.0\.1:8000\nserver web-2 10\.0\.0\.2:8001\n$/);
  });

  it('leaves an unchanged file alone: same inode, same mtime, no reload', async () => {
    await writeMembers(members('a', 'b'));
    const r = await make({ reload: countingReload() });
    expect((await r.renderOnce())[0]!.status).toBe('written');
    expect(await reloads()).toBe(1);
    const before = await stat(at('out/app.cfg'));
    const [again] = await r.renderOnce();
    expect(again!.status).toBe('unchanged');
    const after = await stat(at('out/app.cfg'));
    expect(after.ino).toBe(before.ino);
    expect(after.mtimeMs).toBe(before.mtimeMs);
    expect(await reloads()).toBe(1);
  });

  it('a failing check leaves the previous bytes and installs nothing', async () => {
    await writeMembers(members('a'));
    await writeFile(at('app.cfg'), 'previous\n');
    const r = await make({ destination: 'app.cfg', check: [join(BIN, 'exit-with'), '3', 'bad config line 7'], reload: countingReload() });
    const events: string[] = [];
    r.on('checkFailed', (e) => events.push(e.error.message));
    const [result] = await r.renderOnce();
    expect(result!.status).toBe('failed');
    expect(result!.error?.code).toBe('E_CHECK_FAILED');
    expect(result!.error?.message).toContain('exited with code 3: bad config line 7');
    expect(await readFile(at('app.cfg'), 'utf8')).toBe('previous\n');
    expect(await reloads()).toBe(0);
    expect(events).toHaveLength(1);
  });

  it('runs the check on the candidate file, which holds the new content', async () => {
    await writeMembers(members('a'));
    const r = await make({ check: `grep -q 'server a' {{candidate}} && test ! -e {{destination}}` });
    expect((await r.renderOnce())[0]!.status).toBe('written');
  });

  it('a failing reload restores the previous file and reports it', async () => {
    await writeMembers(members('a'));
    await writeFile(at('app.cfg'), 'previous\n');
    const r = await make({ destination: 'app.cfg', reload: [join(BIN, 'exit-with'), '1', 'reload refused'] });
    const failures: { rolledBack: boolean }[] = [];
    r.on('reloadFailed', (e) => failures.push(e));
    const [result] = await r.renderOnce();
    expect(result!.status).toBe('failed');
    expect(result!.error?.code).toBe('E_RELOAD_FAILED');
    expect(result!.error?.message).toContain('previous file restored');
    expect(await readFile(at('app.cfg'), 'utf8')).toBe('previous\n');
    expect(failures).toEqual([expect.objectContaining({ rolledBack: true })]);
  });

  it('with rollback off, a failed reload leaves the new file', async () => {
    await writeMembers(members('a'));
    await writeFile(at('app.cfg'), 'previous\n');
    const r = await make({ destination: 'app.cfg', reload: [join(BIN, 'exit-with'), '1'], rollback: false });
    const [result] = await r.renderOnce();
    expect(result!.error?.message).toContain('rollback is off');
    expect(await readFile(at('app.cfg'), 'utf8')).toContain('server a');
  });

  it('a render error (strict variable) keeps the old file', async () => {
    await writeMembers(members('a'));
    await writeFile(at('app.cfg'), 'previous\n');
    const r = await make({ destination: 'app.cfg', contents: '{% for m in members %}{{ m.tags.missing }}{% endfor %}' });
    const [result] = await r.renderOnce();
    expect(result!.error?.code).toBe('E_RENDER');
    expect(result!.error?.message).toContain('undefined variable: m.tags.missing');
    expect(await readFile(at('app.cfg'), 'utf8')).toBe('previous\n');
  });

  it('a render error keeps liquidjs\'s excerpt of the template, the failing line marked >>', async () => {
    await writeMembers(members('a'));
    const r = await make({ contents: 'first\n{{ nope.x }}\nlast' });
    const [result] = await r.renderOnce();
    expect(result!.error).toBeInstanceOf(TemplateError);
    const excerpt = (result!.error as TemplateError).excerpt;
    expect(excerpt?.split('\n')).toEqual(expect.arrayContaining(['   1| first', '>> 2| {{ nope.x }}', '   3| last']));
    expect(result!.error?.message).not.toContain('>>');
  });

  it('a member with a newline in its name or tags never reaches the output', async () => {
    await writeMembers([
      ...members('good'),
      { name: 'evil\n    server injected 6.6.6.6:80', address: '10.0.0.9' },
      { name: 'evil2', address: '10.0.0.8', tags: { note: 'x\nbind *:22' } },
    ]);
    const r = await make({ contents: '{% for m in members %}{{ m.name }} {{ m.tags | json }}\n{% endfor %}' });
    const [result] = await r.renderOnce();
    expect(result!.members).toBe(1);
    const out = await readFile(at('out/app.cfg'), 'utf8');
    expect(out).toBe('good {}\n');
    expect(out).not.toContain('injected');
  });

  it('--dry renders and diffs but writes and runs nothing', async () => {
    await writeMembers(members('a'));
    await writeFile(at('app.cfg'), 'previous\n');
    const before = await stat(at('app.cfg'));
    const r = await make({ destination: 'app.cfg', check: `touch ${at('checked')}`, reload: countingReload() });
    const [result] = await r.renderOnce({ dry: true });
    expect(result).toMatchObject({ status: 'dry', changed: true, content: 'server a 10.0.0.1:8000\n' });
    expect(result!.diff).toContain('-previous');
    expect(result!.diff).toContain('+server a 10.0.0.1:8000');
    expect(await readFile(at('app.cfg'), 'utf8')).toBe('previous\n');
    expect((await stat(at('app.cfg'))).mtimeMs).toBe(before.mtimeMs);
    await expect(stat(at('checked'))).rejects.toThrow();
    expect(await reloads()).toBe(0);
  });

  it('minMembers refuses a render with too few members and keeps the old file', async () => {
    await writeMembers(members('a'));
    await writeFile(at('app.cfg'), 'previous\n');
    const r = await make({ destination: 'app.cfg', minMembers: 2 });
    const guarded: string[] = [];
    r.on('guarded', (e) => guarded.push(e.reason));
    const [result] = await r.renderOnce();
    expect(result!.error?.code).toBe('E_GUARD');
    expect(guarded[0]).toContain('only 1 member(s), fewer than minMembers 2');
    expect(await readFile(at('app.cfg'), 'utf8')).toBe('previous\n');
  });

  it('templates that share a reload command reload once; others reload separately', async () => {
    await writeMembers(members('a'));
    const r = await make(
      {},
      {
        templates: [
          { contents: 'one {{ members | size }}', destination: 'one.cfg', reload: countingReload() },
          { contents: 'two {{ members | size }}', destination: 'two.cfg', reload: countingReload() },
          { contents: 'three', destination: 'three.cfg', reload: `echo other >> ${at('reloads')}` },
        ],
      },
    );
    const reloaded: string[][] = [];
    r.on('reloaded', (e) => reloaded.push(e.templates));
    const results = await r.renderOnce();
    expect(results.map((x) => x.status)).toEqual(['written', 'written', 'written']);
    expect(await reloads()).toBe(2);
    expect(reloaded).toEqual(expect.arrayContaining([['one.cfg', 'two.cfg'], ['three.cfg']]));
  });

  it('attempts every template even when one fails', async () => {
    await writeMembers(members('a'));
    const r = await make({}, { templates: [{ contents: '{{ nope }}', destination: 'bad.cfg' }, { contents: 'ok', destination: 'good.cfg' }] });
    const results = await r.renderOnce();
    expect(results.map((x) => x.status)).toEqual(['failed', 'written']);
  });

  it('fails at once on a missing member file, with a source error', async () => {
    const r = await make();
    const started = Date.now();
    const [result] = await r.renderOnce({ timeout: 10_000 });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(result!.error?.code).toBe('E_SOURCE');
    expect(result!.error?.message).toContain('does not exist');
  });

  it('takes a Source object in place of a source config', async () => {
    const source: Source = {
      name: 'static',
      async start(onSnapshot) {
        onSnapshot([{ name: 'x', address: '192.0.2.1', tags: {}, status: 'alive', source: 'static' } satisfies Member]);
      },
      async stop() {},
    };
    renderer = await createRenderer(defineConfig({ sources: { mine: source }, templates: [{ contents: '{{ members[0].name }}@{{ members[0].source }}', destination: at('x.cfg') }] }));
    await renderer.renderOnce();
    expect(await readFile(at('x.cfg'), 'utf8')).toBe('x@mine');
  });

  it('gives up on a source with no first snapshot after the timeout', async () => {
    const silent: Source = { name: 'silent', start: async () => undefined, stop: async () => undefined };
    renderer = await createRenderer(defineConfig({ sources: { silent }, templates: [{ contents: 'x', destination: at('x.cfg') }] }));
    const [result] = await renderer.renderOnce({ timeout: 200 });
    expect(result!.error?.code).toBe('E_SOURCE_TIMEOUT');
    expect(result!.error?.message).toContain('no first snapshot within 200 ms');
  });
});

describe('start/stop (the daemon engine)', () => {
  it('renders at start, follows changes, and maxShrink refuses a render that drops too many', async () => {
    await writeMembers(members('a', 'b', 'c', 'd'));
    const r = await make({ maxShrink: 0.5 });
    const guarded: string[] = [];
    r.on('guarded', (e) => guarded.push(e.reason));
    await r.start();
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8').catch(() => '')).includes('server d'), 'first render');
    await writeMembers(members('a', 'b', 'c'));
    await waitFor(async () => !(await readFile(at('out/app.cfg'), 'utf8')).includes('server d'), 'render after a leave');
    await writeMembers(members('a'));
    await waitFor(() => guarded.length === 1, 'the maxShrink guard');
    expect(guarded[0]).toContain('2 of 3 member(s) would disappear at once');
    expect(await readFile(at('out/app.cfg'), 'utf8')).toContain('server c');

    // An operator accepts the shrink with a one-shot render (maxShrink does not apply there); the daemon then
    // has no baseline for the replaced file, and follows the next change.
    const once = await createRenderer(await loadConfig(defineConfig({ sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ contents: TEMPLATE, destination: 'out/app.cfg', maxShrink: 0.5 }] }), { baseDir: dir }));
    expect((await once.renderOnce())[0]!.status).toBe('written');
    await writeMembers(members('a', 'e'));
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8')).includes('server e '), 'the daemon follows after the accepted shrink');
    expect(guarded).toHaveLength(1);
  });

  it('a burst of changes inside wait.min gives one render and one reload', async () => {
    await writeMembers(members('a'));
    const r = await make({ wait: { min: '1s', max: '10s' }, reload: countingReload() });
    let rendered = 0;
    r.on('rendered', () => rendered++);
    await r.start();
    await waitFor(async () => (await reloads()) === 1, 'first render and reload');
    for (const n of ['b', 'c', 'd', 'e']) await writeMembers(members('a', n));
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8')).includes('server e'), 'the burst rendered');
    expect(rendered).toBe(2);
    expect(await reloads()).toBe(2);
  });

  it('keeps the last output when the member file breaks, and renders again once it is fixed', async () => {
    await writeMembers(members('a'));
    const r = await make();
    const errors: string[] = [];
    r.on('sourceError', (e) => errors.push(e.error.message));
    await r.start();
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8').catch(() => '')).includes('server a'), 'first render');
    await writeFile(at('members.json'), '[{"name": "b",');
    await waitFor(() => errors.length > 0, 'a source error');
    expect(await readFile(at('out/app.cfg'), 'utf8')).toContain('server a');
    await writeMembers(members('b'));
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8')).includes('server b'), 'a render after the fix');
  });

  it('reconfigure() swaps the config, keeping the snapshot of an unchanged source', async () => {
    await writeMembers(members('a'));
    const r = await make();
    await r.start();
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8').catch(() => '')).includes('server a'), 'first render');
    const next = await loadConfig(
      defineConfig({ sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ contents: 'v2 {{ members | size }}', destination: 'out/app.cfg' }] }),
      { baseDir: dir },
    );
    await r.reconfigure(next);
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8')) === 'v2 1', 'a render with the new template');
  });

  it('reload(), the deprecated name of reconfigure(), still swaps the config', async () => {
    await writeMembers(members('a'));
    const r = await make();
    await r.start();
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8').catch(() => '')).includes('server a'), 'first render');
    const next = await loadConfig(defineConfig({ sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ contents: 'v3', destination: 'out/app.cfg' }] }), { baseDir: dir });
    await r.reload(next);
    expect(r.currentConfig).toBe(next);
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8')) === 'v3', 'a render with the new template');
  });
});

describe('reconfigure() with a source that refuses its options', () => {
  it('changes nothing: the previous sources and templates keep running', async () => {
    await writeMembers(members('a'));
    const r = await make();
    await r.start();
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8').catch(() => '')).includes('server a'), 'first render');
    const next = await loadConfig(
      defineConfig({
        sources: { web: { type: 'file', path: 'members.json' }, broken: { type: 'serf', rpcAddr: '127.0.0.1:1' } },
        templates: [{ contents: 'v2', destination: 'out/app.cfg' }],
      }),
      { baseDir: dir },
    );
    (next.sources as Record<string, unknown>).broken = { type: 'serf', rpcAddr: 'not an address', status: ['alive'], portTag: 'port', resyncDelay: 0, connectTimeout: 1 };
    await expect(r.reconfigure(next)).rejects.toThrow(/rpcAddr/);
    await writeMembers(members('a', 'b'));
    await waitFor(async () => (await readFile(at('out/app.cfg'), 'utf8')).includes('server b'), 'the old template still renders');
  });
});

describe('one render at a time per template', () => {
  it('changes during a check are coalesced into one more render with the latest members, never two at once', async () => {
    await writeMembers(members('a'));
    // The check holds a lock while it waits for the test to release it; a second check at the same time fails.
    const check = `test ! -e ${at('lock')} && touch ${at('lock')} && echo started >> ${at('checks')} && while [ ! -e ${at('release')} ]; do sleep 0.02; done; rm ${at('lock')} ${at('release')}`;
    const r = await make({ check });
    const rendered: number[] = [];
    r.on('rendered', (e) => rendered.push(e.members));
    let checkFailures = 0;
    r.on('checkFailed', () => checkFailures++);
    await r.start();
    await waitFor(async () => (await readFile(at('checks'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length === 1, 'the first check to start');
    await writeMembers(members('a', 'b'));
    await writeMembers(members('a', 'b', 'c'));
    // Both changes were seen while the check blocked (the source holds three members and the template waits
    // for its next render); let it finish.
    await waitFor(() => r.sourceStatus().find((s) => s.name === 'web')?.members?.length === 3 && r.templateStatus()[0]!.pending, 'both changes seen during the check');
    await writeFile(at('release'), '');
    await waitFor(async () => (await readFile(at('checks'), 'utf8')).split('\n').filter(Boolean).length === 2, 'the coalesced second check');
    await writeFile(at('release'), '');
    await waitFor(() => rendered.length === 2, 'two renders');
    expect(rendered).toEqual([1, 3]);
    expect(checkFailures).toBe(0);
    expect(await readFile(at('out/app.cfg'), 'utf8')).toContain('server c');
  });
});

describe('reconfigure() keeps the sources whose config did not change', () => {
  it('does not restart them, and renders from their last snapshot', async () => {
    let starts = 0;
    const source: Source = {
      name: 'counted',
      async start(onSnapshot) {
        starts++;
        onSnapshot([{ name: 'x', address: '192.0.2.1', tags: {}, status: 'alive', source: 'counted' }]);
      },
      async stop() {},
    };
    renderer = await createRenderer(defineConfig({ sources: { mine: source }, templates: [{ contents: 'v1 {{ members | size }}', destination: at('x.cfg') }] }));
    await renderer.start();
    await waitFor(async () => (await readFile(at('x.cfg'), 'utf8').catch(() => '')) === 'v1 1', 'the first render');
    await renderer.reconfigure(await loadConfig(defineConfig({ sources: { mine: source }, templates: [{ contents: 'v2 {{ members | size }}', destination: at('x.cfg') }] })));
    await waitFor(async () => (await readFile(at('x.cfg'), 'utf8')) === 'v2 1', 'a render of the new template');
    expect(starts).toBe(1);
  });
});

describe('a reload that failed with the new file left in place', () => {
  it('runs again on the next render, even though the file is unchanged', async () => {
    await writeMembers(members('a'));
    const r = await make({ rollback: false, reload: `test -e ${at('ok')} && echo reload >> ${at('reloads')}` });
    const [first] = await r.renderOnce();
    expect(first!.error?.message).toContain('rollback is off, new file left in place');
    await writeFile(at('ok'), '');
    const [second] = await r.renderOnce();
    expect(second).toMatchObject({ status: 'unchanged' });
    expect(second!.error).toBeUndefined();
    expect(await reloads()).toBe(1);
    const [third] = await r.renderOnce();
    expect(third!.status).toBe('unchanged');
    expect(await reloads()).toBe(1);
  });
});

describe('lifecycle', () => {
  const counted = () => {
    const counts = { starts: 0, stops: 0 };
    const source: Source = {
      name: 'counted',
      async start(onSnapshot) {
        counts.starts++;
        onSnapshot([]);
      },
      async stop() {
        counts.stops++;
      },
    };
    return { counts, source };
  };

  it('a stop during a config reload stops the sources the reload started', async () => {
    const first = counted();
    const second = counted();
    renderer = await createRenderer(defineConfig({ sources: { one: first.source }, templates: [{ contents: 'x', destination: at('x.cfg') }] }));
    await renderer.start();
    const next = await loadConfig(defineConfig({ sources: { two: second.source }, templates: [{ contents: 'y', destination: at('x.cfg') }] }));
    await Promise.all([renderer.reconfigure(next), renderer.stop()]);
    expect(first.counts).toEqual({ starts: 1, stops: 1 });
    expect(second.counts).toEqual({ starts: 1, stops: 1 });
  });

  it('a start that fails (a source refuses its options) leaves nothing started, and says so again when retried', async () => {
    const config = await loadConfig(defineConfig({ sources: { web: { type: 'file', path: 'm.json' } }, templates: [{ contents: 'x', destination: 'o' }] }), { baseDir: dir });
    (config.sources as Record<string, unknown>).web = { type: 'file', path: '' };
    renderer = await createRenderer(config);
    await expect(renderer.start()).rejects.toThrow(/path/);
    await expect(renderer.start()).rejects.toThrow(/path/);
    expect(renderer.sourceStatus()).toEqual([]);
  });
});
