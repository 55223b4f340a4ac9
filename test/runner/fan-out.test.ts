import { lstat, mkdir, readdir, readFile, rename, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defineConfig } from '../../src/config/define.js';
import { loadConfig } from '../../src/config/load.js';
import type { RosterdConfig } from '../../src/config/schema.js';
import { checkDestination } from '../../src/runner/fan-out.js';
import { createRenderer, type Renderer } from '../../src/runner/renderer.js';
import type { Member, Source } from '../../src/sources/types.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

const BIN = fileURLToPath(new URL('../fixtures/bin/', import.meta.url));
const PER_MEMBER = 'server {{ member.name | slug }} {{ member.address }}:{{ member.port | default: 80 }}\n';
const PER_ZONE = '# zone {{ group }}\n{% for m in members %}server {{ m.name | slug }} {{ m.address }}\n{% endfor %}';

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

const at = (...names: string[]): string => join(dir, ...names);
type RawMember = { name: string; address?: string; port?: number; tags?: Record<string, string> };
const member = (name: string, tags: Record<string, string> = {}): RawMember => ({ name, tags });

/** Replaces the member file atomically; a member without an address gets 10.0.0.<position> and port 800<position>. */
async function writeMembers(list: RawMember[]): Promise<void> {
  await writeFile(at('members.json.tmp'), JSON.stringify(list.map((m, i) => ({ address: `10.0.0.${i + 1}`, port: 8000 + i + 1, ...m }))));
  await rename(at('members.json.tmp'), at('members.json'));
}

/** A reload command that appends a line per call: the tests count reloads. */
const recordingReload = (): string => `echo reload >> ${at('reloads')}`;
async function reloads(): Promise<number> {
  return (await readFile(at('reloads'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
}

async function make(template: Partial<RosterdConfig['templates'][number]> = {}, extra: Partial<RosterdConfig> = {}): Promise<Renderer> {
  const config = defineConfig({
    sources: { web: { type: 'file', path: 'members.json' } },
    templates: [{ contents: PER_MEMBER, destination: 'out/{{ member.name | slug }}.conf', forEach: 'member', ...template }],
    ...extra,
  });
  renderer = await createRenderer(await loadConfig(config, { baseDir: dir }));
  return renderer;
}

/** The files in `out/`, the record left aside. */
async function outputs(sub = 'out'): Promise<string[]> {
  return (await readdir(at(sub)).catch(() => [])).filter((name) => name !== '.rosterd-manifest.json').sort();
}

async function manifest(sub = 'out'): Promise<string[]> {
  return (JSON.parse(await readFile(at(sub, '.rosterd-manifest.json'), 'utf8')) as { files: string[] }).files;
}

describe('forEach: member', () => {
  it('writes one file per member, with one reload, and keeps a record of them', async () => {
    await writeMembers([member('web-1'), member('web 2'), member('web-3')]);
    const r = await make({ reload: recordingReload() });
    const [result] = await r.renderOnce();
    expect(result).toMatchObject({ status: 'written', destination: at('out'), members: 3, template: 'out/{{ member.name | slug }}.conf' });
    expect(result!.files!.map((f) => [f.item, f.destination, f.changed])).toEqual([
      ['web 2', at('out/web_2-88f3e9.conf'), true],
      ['web-1', at('out/web-1.conf'), true],
      ['web-3', at('out/web-3.conf'), true],
    ]);
    expect(await outputs()).toEqual(['web-1.conf', 'web-3.conf', 'web_2-88f3e9.conf']);
    expect(await readFile(at('out/web-1.conf'), 'utf8')).toBe('server web-1 10.0.0.1:8001\n');
    expect(await readFile(at('out/web_2-88f3e9.conf'), 'utf8')).toBe('server web_2-88f3e9 10.0.0.2:8002\n');
    expect(await manifest()).toEqual(['web-1.conf', 'web-3.conf', 'web_2-88f3e9.conf']);
    expect(await reloads()).toBe(1);
  });

  it('the daemon follows changes: only the changed file is written, new files appear, gone ones are pruned; one reload per batch', async () => {
    await writeMembers([member('a'), member('b'), member('c')]);
    const r = await make({ reload: recordingReload(), prune: true });
    const rendered: { files?: string[]; removed?: string[] }[] = [];
    r.on('rendered', (e) => rendered.push(e));
    await r.start();
    await waitFor(async () => (await reloads()) === 1, 'the first render and its reload');
    expect(await outputs()).toEqual(['a.conf', 'b.conf', 'c.conf']);
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((n) => stat(at(`out/${n}.conf`))));

    // b changes its port: only b's file is replaced.
    await writeMembers([member('a'), { ...member('b'), port: 9999 }, member('c')]);
    await waitFor(async () => (await reloads()) === 2, 'the second reload');
    expect(await readFile(at('out/b.conf'), 'utf8')).toBe('server b 10.0.0.2:9999\n');
    const [a2, b2, c2] = await Promise.all(['a', 'b', 'c'].map((n) => stat(at(`out/${n}.conf`))));
    expect([a2!.ino, a2!.mtimeMs]).toEqual([a!.ino, a!.mtimeMs]);
    expect([c2!.ino, c2!.mtimeMs]).toEqual([c!.ino, c!.mtimeMs]);
    expect(b2!.ino).not.toBe(b!.ino);
    expect(rendered[1]).toMatchObject({ files: [at('out/b.conf')], removed: [] });

    // c leaves and d joins in one snapshot: one batch, one reload.
    await writeMembers([member('a'), { ...member('b'), port: 9999 }, member('d')]);
    await waitFor(async () => (await reloads()) === 3, 'the third reload');
    expect(await outputs()).toEqual(['a.conf', 'b.conf', 'd.conf']);
    expect(await manifest()).toEqual(['a.conf', 'b.conf', 'd.conf']);
    expect(rendered[2]).toMatchObject({ files: [at('out/d.conf')], removed: [at('out/c.conf')] });
    expect(await reloads()).toBe(3);
  });

  it('without prune, the files of gone members stay (and stay recorded, so that prune can remove them later)', async () => {
    await writeMembers([member('a'), member('b')]);
    const r = await make();
    await r.renderOnce();
    await writeMembers([member('a')]);
    const [result] = await r.renderOnce();
    expect(result!.status).toBe('unchanged');
    expect(await outputs()).toEqual(['a.conf', 'b.conf']);
    expect(await manifest()).toEqual(['a.conf', 'b.conf']);

    await renderer!.stop();
    const pruning = await make({ prune: true, backup: true });
    const [pruned] = await pruning.renderOnce();
    expect(pruned).toMatchObject({ status: 'written', removed: [at('out/b.conf')] });
    // With backup, a removed file is kept as <file>.bak.
    expect(await outputs()).toEqual(['a.conf', 'b.conf.bak']);
    expect(await readFile(at('out/b.conf.bak'), 'utf8')).toBe('server b 10.0.0.2:8002\n');
  });

  it('never removes or replaces a file it did not write', async () => {
    await mkdir(at('out'));
    await writeFile(at('out/mine.conf'), 'hand-written\n');
    await writeFile(at('out/b.conf'), 'someone else\n');
    await writeFile(at('out/a.conf'), 'server a 10.0.0.1:8001\n');
    await writeMembers([member('a'), member('b'), member('c')]);
    const r = await make({ prune: true });
    const [result] = await r.renderOnce();
    expect(result!.status).toBe('written');
    // b's destination holds a file that is not this template's: b gets no file, and the file stays.
    expect(result!.refused).toEqual([{ item: 'b', destination: 'out/b.conf', reason: expect.stringContaining('was not written by this template') }]);
    expect(await readFile(at('out/b.conf'), 'utf8')).toBe('someone else\n');
    // a's file already holds what a renders: it is adopted, not rewritten.
    expect(await manifest()).toEqual(['a.conf', 'c.conf']);
    await writeMembers([]);
    const [emptied] = await r.renderOnce();
    expect(emptied!.removed).toEqual([at('out/a.conf'), at('out/c.conf')]);
    expect(await outputs()).toEqual(['b.conf', 'mine.conf']);
  });

  it('a render error names the item whose file failed, and writes none of the files', async () => {
    await writeMembers([member('a', { zone: 'z' }), member('b')]);
    const r = await make({ contents: 'zone {{ member.tags.zone }}\n' });
    const [result] = await r.renderOnce();
    expect(result).toMatchObject({ status: 'failed', error: { code: 'E_RENDER' } });
    expect(result!.error!.message).toContain('undefined variable: member.tags.zone (rendering the file of member "b")');
    expect(await outputs()).toEqual([]);
  });

  it('a failing check on one file installs none of them and reloads nothing', async () => {
    await writeMembers([member('a'), member('b')]);
    const r = await make({ check: `grep -qv 'server b' {{candidate}}`, reload: recordingReload() });
    const [result] = await r.renderOnce();
    expect(result).toMatchObject({ status: 'failed', error: { code: 'E_CHECK_FAILED' } });
    expect(result!.error!.message).toContain(at('out/b.conf'));
    expect(await outputs()).toEqual([]);
    expect(await reloads()).toBe(0);
  });

  it('runs the check on each changed file with its candidate and destination', async () => {
    await writeMembers([member('a'), member('b')]);
    const r = await make({ check: `grep -q server {{candidate}} && echo {{destination}} >> ${at('checked')}` });
    await r.renderOnce();
    expect((await readFile(at('checked'), 'utf8')).split('\n').filter(Boolean).sort()).toEqual([at('out/a.conf'), at('out/b.conf')]);
  });

  it('a failed reload restores the changed files, the removed ones and the record', async () => {
    await writeMembers([member('a'), member('b')]);
    const first = await make({ prune: true });
    await first.renderOnce();
    await renderer!.stop();
    const r = await make({ prune: true, reload: [join(BIN, 'exit-with'), '1', 'refused'] });
    await writeMembers([{ ...member('a'), port: 1 }, member('c')]);
    const failures: { rolledBack: boolean }[] = [];
    r.on('reloadFailed', (e) => failures.push(e));
    const [result] = await r.renderOnce();
    expect(result).toMatchObject({ status: 'failed', error: { code: 'E_RELOAD_FAILED' } });
    expect(failures).toEqual([expect.objectContaining({ rolledBack: true })]);
    expect(await outputs()).toEqual(['a.conf', 'b.conf']);
    expect(await readFile(at('out/a.conf'), 'utf8')).toBe('server a 10.0.0.1:8001\n');
    expect(await readFile(at('out/b.conf'), 'utf8')).toBe('server b 10.0.0.2:8002\n');
    expect(await manifest()).toEqual(expect.arrayContaining(['a.conf', 'b.conf']));
  });

  it('--dry lists each file with its content and diff, and what prune would remove; nothing is written', async () => {
    await writeMembers([member('a'), member('b')]);
    const r = await make({ prune: true });
    await r.renderOnce();
    await writeMembers([{ ...member('a'), port: 1 }]);
    const [result] = await r.renderOnce({ dry: true });
    expect(result).toMatchObject({ status: 'dry', changed: true, removed: [at('out/b.conf')] });
    expect(result!.files).toEqual([{ item: 'a', destination: at('out/a.conf'), changed: true, content: 'server a 10.0.0.1:1\n', diff: expect.stringContaining('+server a 10.0.0.1:1') }]);
    expect(result!.diff).toContain('+++ /dev/null');
    expect(await outputs()).toEqual(['a.conf', 'b.conf']);
  });
});

describe('forEach: { groupBy }', () => {
  it('writes one file per tag value, with that group in members and sources; members without the tag are left out', async () => {
    await writeMembers([member('w1', { zone: 'a' }), member('w2', { zone: 'b' }), member('w3', { zone: 'a' }), member('loner')]);
    const r = await make({ contents: `${PER_ZONE}{{ sources.web | size }} from web, {{ group }}`, destination: 'sites/{{ group | slug }}.conf', forEach: { groupBy: 'zone' }, reload: recordingReload() });
    const [result] = await r.renderOnce();
    expect(result!.files!.map((f) => f.item)).toEqual(['a', 'b']);
    expect(await outputs('sites')).toEqual(['a.conf', 'b.conf']);
    expect(await readFile(at('sites/a.conf'), 'utf8')).toBe('# zone a\nserver w1 10.0.0.1\nserver w3 10.0.0.3\n2 from web, a');
    expect(await readFile(at('sites/b.conf'), 'utf8')).toBe('# zone b\nserver w2 10.0.0.2\n1 from web, b');
    expect(await reloads()).toBe(1);
  });

  it('a zone that empties is pruned; a change in one zone rewrites that zone only', async () => {
    await writeMembers([member('w1', { zone: 'a' }), member('w2', { zone: 'b' })]);
    const r = await make({ contents: PER_ZONE, destination: 'sites/{{ group | slug }}.conf', forEach: { groupBy: 'zone' }, prune: true, reload: recordingReload() });
    await r.renderOnce();
    const before = await stat(at('sites/a.conf'));
    await writeMembers([member('w1', { zone: 'a' }), member('w2', { zone: 'c' })]);
    const [result] = await r.renderOnce();
    expect(result).toMatchObject({ status: 'written', removed: [at('sites/b.conf')] });
    expect(await outputs('sites')).toEqual(['a.conf', 'c.conf']);
    expect((await stat(at('sites/a.conf'))).ino).toBe(before.ino);
    expect(await reloads()).toBe(2);
  });
});

describe('hostile names', () => {
  const hostile = async (destination: string, names: string[]): Promise<{ refused: { item: string; reason: string }[]; files: string[] }> => {
    await writeMembers(names.map((name) => member(name)));
    const r = await make({ destination, contents: 'x\n' });
    const [result] = await r.renderOnce();
    expect(result!.status).not.toBe('failed');
    return { refused: (result!.refused ?? []).map(({ item, reason }) => ({ item, reason })), files: (result!.files ?? []).map((f) => f.destination) };
  };

  it('cannot leave the directory with .. or an absolute path; the others still get their files', async () => {
    await mkdir(at('out'));
    const { refused, files } = await hostile('out/{{ member.name }}', ['../escaped', '../../etc/passwd', 'a/../../b', '/etc/passwd', '..', 'ok']);
    expect(refused).toEqual(
      expect.arrayContaining([
        { item: '../escaped', reason: `leaves ${at('out')}` },
        { item: '../../etc/passwd', reason: `leaves ${at('out')}` },
        { item: 'a/../../b', reason: `leaves ${at('out')}` },
        { item: '..', reason: expect.stringContaining('names a directory') },
      ]),
    );
    // "out//etc/passwd" is out/etc/passwd: inside, so allowed.
    expect(files.sort()).toEqual([at('out/etc/passwd'), at('out/ok')]);
    expect(await readdir(dir)).not.toContain('escaped');
    await expect(stat(at('b'))).rejects.toThrow(/ENOENT/);
  });

  it('refuses empty names, names ending in "/", names too long, and names of rosterd\'s own files', async () => {
    const long = 'x'.repeat(300);
    const { refused, files } = await hostile('out/{{ member.tags.file | default: member.name }}', [long, 'dir/', '.rosterd-manifest.json', 'fine']);
    expect(refused.map((r) => r.item).sort()).toEqual(['.rosterd-manifest.json', 'dir/', long].sort());
    expect(refused.find((r) => r.item === long)!.reason).toContain('300 bytes');
    expect(files).toEqual([at('out/fine')]);
  });

  it('two members that render the same file: the first in order keeps it, the other is refused', async () => {
    const { refused, files } = await hostile('out/{{ member.name | downcase }}.conf', ['WEB', 'web']);
    expect(files).toEqual([at('out/web.conf')]);
    expect(refused).toEqual([{ item: 'web', reason: 'collides with the file of member "WEB"' }]);
  });

  it('does not follow a symlink planted in the directory, as a directory or as a file', async () => {
    await mkdir(at('out'));
    await mkdir(at('outside'));
    await writeFile(at('outside/victim'), 'precious\n');
    await symlink(at('outside'), at('out/evil'));
    await symlink(at('outside/victim'), at('out/victim.conf'));
    const { refused, files } = await hostile('out/{{ member.name }}', ['evil/victim', 'victim.conf', 'good']);
    expect(refused).toEqual(
      expect.arrayContaining([
        { item: 'evil/victim', reason: expect.stringContaining('is a symlink') },
        { item: 'victim.conf', reason: `${at('out/victim.conf')} is a symlink` },
      ]),
    );
    expect(files).toEqual([at('out/good')]);
    expect(await readFile(at('outside/victim'), 'utf8')).toBe('precious\n');
    expect((await lstat(at('out/victim.conf'))).isSymbolicLink()).toBe(true);
  });

  it('warns once per refused item, naming it escaped', async () => {
    await writeMembers([member('../x'), member('ok')]);
    const lines: string[] = [];
    const { createLogger } = await import('../../src/logger.js');
    const { PassThrough } = await import('node:stream');
    const stream = new PassThrough();
    stream.on('data', (c: Buffer) => lines.push(...c.toString().split('\n').filter(Boolean)));
    const config = await loadConfig(
      defineConfig({ sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ contents: 'x', destination: 'out/{{ member.name }}', forEach: 'member' }] }),
      { baseDir: dir },
    );
    renderer = await createRenderer(config, { logger: createLogger({ level: 'warn', format: 'json', destination: stream }) });
    await renderer.renderOnce();
    await renderer.renderOnce();
    const warnings = lines.filter((l) => l.includes('refused'));
    expect(warnings).toHaveLength(1);
    expect(JSON.parse(warnings[0]!).msg).toBe(`"../x": destination "out/../x" refused: leaves ${at('out')}; no file for it`);
  });

  it('checkDestination refuses NUL and control characters, which no member can hold but a template literal could', () => {
    const fanOut = { directory: at('out'), baseDir: dir, reserved: [at('out/main.conf')] };
    expect(checkDestination(fanOut, 'out/a\u0000b')).toEqual({ reason: 'holds a NUL character' });
    expect(checkDestination(fanOut, 'out/a\nb')).toEqual({ reason: 'holds a control character' });
    expect(checkDestination(fanOut, '   ')).toEqual({ reason: 'the destination rendered empty' });
    expect(checkDestination(fanOut, 'out/main.conf')).toEqual({ reason: "is another template's destination" });
    expect(checkDestination(fanOut, 'out')).toEqual({ reason: `leaves ${at('out')}` });
    expect(checkDestination(fanOut, 'out/sub/a.conf')).toEqual({ path: at('out/sub/a.conf') });
  });
});

describe('guards over a fan-out', () => {
  it('minMembers refuses the whole render: nothing written, nothing removed', async () => {
    await writeMembers([member('a'), member('b')]);
    const r = await make({ prune: true, minMembers: 2 });
    await r.renderOnce();
    await writeMembers([member('a')]);
    const [result] = await r.renderOnce();
    expect(result).toMatchObject({ status: 'failed', error: { code: 'E_GUARD' } });
    expect(await outputs()).toEqual(['a.conf', 'b.conf']);
  });

  it('maxShrink counts removed files: losing one group of two is refused even when few members go', async () => {
    const zones = (n: number): RawMember[] => [...Array.from({ length: 9 }, (_, i) => member(`a${i}`, { zone: 'a' })), ...Array.from({ length: n }, (_, i) => member(`b${i}`, { zone: 'b' }))];
    await writeMembers(zones(1));
    const r = await make({ contents: PER_ZONE, destination: 'sites/{{ group }}.conf', forEach: { groupBy: 'zone' }, prune: true, maxShrink: 0.3 });
    const guarded: string[] = [];
    r.on('guarded', (e) => guarded.push(e.reason));
    await r.renderOnce();
    await writeMembers(zones(0));
    const [result] = await r.renderOnce();
    expect(result!.status).toBe('failed');
    expect(guarded).toEqual([expect.stringContaining('1 of 2 file(s) would be removed at once (50% > maxShrink 30%); keeping the previous files')]);
    expect(await outputs('sites')).toEqual(['a.conf', 'b.conf']);
  });

  it('maxShrink counts members as for a single file', async () => {
    await writeMembers([member('a'), member('b'), member('c'), member('d')]);
    const r = await make({ maxShrink: 0.4 });
    await r.renderOnce();
    // Without prune, members that go change no file: nothing to guard.
    await writeMembers([member('a'), member('b')]);
    expect((await r.renderOnce())[0]!.status).toBe('unchanged');
    await writeMembers([member('a'), { ...member('b'), port: 2 }]);
    expect((await r.renderOnce())[0]!.status).toBe('written');
    // 1 of the 2 members of the last install goes while a's file changes: refused.
    await writeMembers([{ ...member('a'), port: 3 }]);
    const [refused] = await r.renderOnce();
    expect(refused!.error?.message).toContain('1 of 2 member(s) would disappear at once (50%');
  });
});

describe('fan-out config', () => {
  const problems = async (templates: RosterdConfig['templates']): Promise<string> => {
    const error = await loadConfig(defineConfig({ sources: { web: { type: 'file', path: 'm.json' } }, templates }), { baseDir: dir }).catch((err: Error) => err);
    return (error as Error).message;
  };

  it('says what is wrong with a destination, at its path', async () => {
    const message = await problems([
      { contents: 'x', destination: 'out/fixed.conf', forEach: 'member' },
      { contents: 'x', destination: 'out/{{ member.name }}.conf' },
      { contents: 'x', destination: '{{ member.name }}.conf', forEach: 'member' },
      { contents: 'x', destination: 'out/{{ member.name }}/', forEach: 'member' },
      { contents: 'x', destination: 'sites/{{ member.name | nosuch }}', forEach: 'member' },
    ]);
    expect(message).toContain('templates[0].destination: with forEach, the destination must vary per item');
    expect(message).toContain('templates[1].destination: holds a Liquid tag, but only a template with forEach renders its destination');
    expect(message).toContain('templates[2].destination: the directory before the first {{ must be written out');
    expect(message).toContain('templates[3].destination: ends in "/"');
    expect(message).toContain('templates[4].destination: <templates[4].destination>:1:7: does not compile: undefined filter: nosuch');
    expect(await problems([{ contents: 'x', destination: 'a.conf', prune: true }])).toContain('templates[0].prune: prune removes the files of a fan-out: it needs forEach');
  });

  it('refuses two fan-outs into one directory, and a forEach that is neither member nor groupBy', async () => {
    const message = await problems([
      { contents: 'x', destination: 'out/{{ member.name }}.a', forEach: 'member' },
      { contents: 'x', destination: 'out/sub/{{ member.name }}.b', forEach: 'member' },
    ]);
    expect(message).toContain(`templates[1].destination: templates[0] fans out into ${at('out')}: two fan-outs cannot share a directory`);
    const bad = await problems([{ contents: 'x', destination: 'out/{{ member.name }}', forEach: 'members' as 'member' }]);
    expect(bad).toContain('templates[0].forEach');
  });

  it('another template\'s destination inside the directory is never an item\'s file', async () => {
    await writeMembers([member('main'), member('b')]);
    const config = await loadConfig(
      defineConfig({
        sources: { web: { type: 'file', path: 'members.json' } },
        templates: [
          { contents: 'main', destination: 'out/main.conf' },
          { contents: PER_MEMBER, destination: 'out/{{ member.name }}.conf', forEach: 'member', prune: true },
        ],
      }),
      { baseDir: dir },
    );
    renderer = await createRenderer(config);
    const [, fanned] = await renderer.renderOnce();
    expect(fanned!.refused).toEqual([{ item: 'main', destination: 'out/main.conf', reason: "is another template's destination" }]);
    expect(await readFile(at('out/main.conf'), 'utf8')).toBe('main');
  });
});

describe('a plugged-in source with a thousand members', () => {
  it('renders a file for each in one render request', async () => {
    const many: Member[] = Array.from({ length: 1000 }, (_, i) => ({ name: `m${i}`, address: `10.1.${i >> 8}.${i & 255}`, tags: {}, status: 'alive', source: 'big' }));
    const source: Source = { name: 'big', start: async (onSnapshot) => onSnapshot(many), stop: async () => undefined };
    const config = await loadConfig(defineConfig({ sources: { big: source }, templates: [{ contents: PER_MEMBER, destination: 'out/{{ member.name }}.conf', forEach: 'member' }] }), { baseDir: dir });
    renderer = await createRenderer(config);
    const [result] = await renderer.renderOnce();
    expect(result!.status).toBe('written');
    expect((await outputs()).length).toBe(1000);
  });
});
