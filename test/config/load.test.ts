import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defineConfig } from '../../src/config/define.js';
import { loadConfig, resolveConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { tempDir } from '../helpers/tmp.js';

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir());
});
afterEach(async () => cleanup());

async function configError(input: Parameters<typeof loadConfig>[0], cwd = dir): Promise<ConfigError> {
  const error = await loadConfig(input, { cwd }).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(ConfigError);
  return error as ConfigError;
}

const minimal = defineConfig({ sources: { web: { type: 'file', path: 'members.yaml' } }, templates: [{ contents: 'x', destination: 'out.cfg' }] });

describe('loadConfig', () => {
  it('fills every default in one place and resolves paths against the base directory', async () => {
    const config = await loadConfig(minimal, { baseDir: dir });
    const t = config.templates[0]!;
    expect(t).toMatchObject({
      name: 'out.cfg',
      destination: join(dir, 'out.cfg'),
      sources: ['web'],
      env: [],
      wait: false,
      backup: false,
      minMembers: 0,
      timeout: 30_000,
      rollback: true,
      strict: true,
    });
    expect(t.maxShrink).toBeUndefined();
    expect(config.sources.web).toEqual({ type: 'file', path: join(dir, 'members.yaml') });
  });

  it('refuses a config that is not an object with a ConfigError, not a TypeError', async () => {
    for (const value of [null, undefined, 42, 'text']) {
      const error = await resolveConfig(value, { baseDir: dir }).catch((err: unknown) => err);
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).message).toMatch(value === undefined ? /required/ : /expected object/);
    }
  });

  it('parses durations, octal modes and wait.max defaulting to 4 × min', async () => {
    const config = await loadConfig(
      { ...minimal, templates: [{ contents: 'x', destination: 'a', wait: { min: '250ms' }, perms: '0640', timeout: '1m' }] },
      { baseDir: dir },
    );
    expect(config.templates[0]).toMatchObject({ wait: { min: 250, max: 1000 }, perms: 0o640, timeout: 60_000 });
  });

  it('fills serf and dns source defaults', async () => {
    const config = await loadConfig(
      { sources: { c: { type: 'serf' }, d: { type: 'dns', name: '_x._tcp.example' } }, templates: [{ contents: 'x', destination: 'a' }] },
      { baseDir: dir },
    );
    expect(config.sources.c).toMatchObject({ rpcAddr: '127.0.0.1:7373', status: ['alive'], portTag: 'port', monitor: true, resyncDelay: 20, refreshInterval: 1000 });
    expect(config.sources.d).toMatchObject({ record: 'SRV', interval: 5000, timeout: 2000 });
  });

  it('reports every problem at once, each with its path', async () => {
    const error = await configError({
      sources: { a: { type: 'file', path: 'm.json', extra: 1 }, b: { type: 'serf', rpcAdr: 'x' } },
      templates: [
        { contents: 'x', destination: 'out', wiat: { min: '2s' }, perms: 644 },
        { destination: 'o2', sources: ['nope'], wait: { min: 'soon' } },
      ],
    } as never);
    expect(error.code).toBe('E_CONFIG');
    expect(error.issues).toEqual(
      expect.arrayContaining([
        { path: 'sources.a.extra', message: 'unknown key (known keys: type, path)' },
        { path: 'sources.b.rpcAdr', message: 'unknown key — did you mean "rpcAddr"?' },
        { path: 'templates[0].wiat', message: 'unknown key — did you mean "wait"?' },
        { path: 'templates[0].perms', message: expect.stringContaining('write "0644" in quotes') },
        { path: 'templates[1].wait.min', message: expect.stringContaining('"soon" is not a duration') },
        { path: 'templates[1]', message: 'give exactly one of "source" (a file) and "contents" (inline)' },
        { path: 'templates[1].sources[0]', message: 'unknown source "nope" (declared: "a", "b")' },
      ]),
    );
    expect(error.issues).toHaveLength(7);
    expect(error.message).toContain('7 problems');
  });

  it('explains source names and the branch of a union the value was meant for', async () => {
    const error = await configError({
      sources: { 'bad name': { type: 'file', path: 'x' } },
      templates: [{ contents: 'x', destination: 'o', reload: { haproxy: { masterSockt: '/run/m.sock' } } }],
    } as never);
    expect(error.issues).toEqual([
      { path: 'sources["bad name"]', message: 'a source name starts with a letter or "_" and holds only letters, digits, "_" and "-"' },
      { path: 'templates[0].reload.haproxy.masterSocket', message: 'required' },
      { path: 'templates[0].reload.haproxy.masterSockt', message: 'unknown key — did you mean "masterSocket"?' },
    ]);
  });

  it('refuses timeout 0 with the HAProxy reloader, which needs time to confirm', async () => {
    const error = await configError({ ...minimal, templates: [{ contents: 'x', destination: 'o', timeout: 0, reload: { haproxy: { masterSocket: 'm.sock' } } }] });
    expect(error.issues).toEqual([{ path: 'templates[0].timeout', message: 'the HAProxy reloader needs a timeout above 0 to confirm the reload' }]);
  });

  it('checks dns names and servers as the dns source will', async () => {
    const error = await configError({ sources: { d: { type: 'dns', name: 'bad name!', servers: ['dns.example', '127.0.0.1:0', '[::1]:53'] } }, templates: [{ contents: 'x', destination: 'o' }] } as never);
    expect(error.issues.map((i) => i.path)).toEqual(['sources.d.name', 'sources.d.servers[0]', 'sources.d.servers[1]']);
  });

  it('names a missing required key', async () => {
    const error = await configError({ sources: { a: { type: 'file', path: 'x' } }, templates: [{ contents: 'x' }] } as never);
    expect(error.issues).toEqual([{ path: 'templates[0].destination', message: 'required' }]);
  });

  it('refuses an unknown source type with the accepted ones', async () => {
    const error = await configError({ sources: { a: { type: 'consul' } }, templates: [{ contents: 'x', destination: 'a' }] } as never);
    expect(error.issues[0]!.path).toBe('sources.a');
    expect(error.issues[0]!.message).toMatch(/file|serf|dns/);
  });

  it('refuses duplicate template names and destinations', async () => {
    const error = await configError({
      sources: { a: { type: 'file', path: 'x' } },
      templates: [
        { contents: 'x', destination: 'one/out.cfg' },
        { contents: 'y', destination: 'two/out.cfg' },
        { contents: 'z', destination: 'one/out.cfg', name: 'third' },
      ],
    });
    expect(error.issues).toEqual([
      { path: 'templates[1].name', message: 'templates[0] is also named "out.cfg"; give each template a distinct "name"' },
      { path: 'templates[2].destination', message: `templates[0] writes the same file ${join(dir, 'one/out.cfg')}` },
    ]);
  });

  it('compiles templates at load: a syntax error names the file and line', async () => {
    await writeFile(join(dir, 'bad.liquid'), 'line one\n{% for m in members %}\n{{ m.name | nosuchfilter }}\n{% endfor %}\n');
    await writeFile(join(dir, 'renderer.config.yaml'), 'sources:\n  a: { type: file, path: m.yaml }\ntemplates:\n  - { source: bad.liquid, destination: out }\n');
    const error = await configError(undefined);
    expect(error.file).toBe(join(dir, 'renderer.config.yaml'));
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]!.path).toBe('templates[0].source');
    expect(error.issues[0]!.message).toContain(`${join(dir, 'bad.liquid')}:3:`);
    expect(error.issues[0]!.message).toContain('nosuchfilter');
  });

  it('reports a missing template file', async () => {
    const error = await configError({ ...minimal, templates: [{ source: 'nope.liquid', destination: 'out' }] });
    expect(error.issues).toEqual([{ path: 'templates[0].source', message: `cannot read template ${join(dir, 'nope.liquid')}: ENOENT` }]);
  });

  it('finds renderer.config.ts in the working directory and resolves paths against it', async () => {
    const sub = join(dir, 'conf');
    await mkdir(sub);
    await writeFile(
      join(sub, 'renderer.config.ts'),
      `const port: number = 1;\nexport default { sources: { a: { type: 'file' as const, path: 'm.yaml' } }, templates: [{ contents: 'p' + port, destination: 'out/x.cfg' }] };\n`,
    );
    const config = await loadConfig(undefined, { cwd: sub });
    expect(config.file).toBe(join(sub, 'renderer.config.ts'));
    expect(config.templates[0]!.destination).toBe(join(sub, 'out/x.cfg'));
  });

  it('lets go of the Babel transform a TypeScript config was loaded with (nothing of it left for the GC to walk)', async () => {
    await writeFile(join(dir, 'renderer.config.ts'), `const path: string = 'm.yaml';\nexport default { sources: { a: { type: 'file' as const, path } }, templates: [{ contents: 'p', destination: 'x.cfg' }] };\n`);
    const formatter = Error.prepareStackTrace;
    await loadConfig('renderer.config.ts', { cwd: dir });
    expect(Error.prepareStackTrace).toBe(formatter);
    expect(Object.keys(createRequire(import.meta.url).cache).filter((file) => file.endsWith(join('jiti', 'dist', 'babel.cjs')))).toEqual([]);
  });

  it('loads a config file given by path (JSON), relative to the working directory', async () => {
    await writeFile(join(dir, 'c.json'), JSON.stringify(minimal));
    const config = await loadConfig('c.json', { cwd: dir });
    expect(config.file).toBe(join(dir, 'c.json'));
    expect(config.baseDir).toBe(dir);
  });

  it('a YAML syntax error names the file and line', async () => {
    await writeFile(join(dir, 'c.yaml'), 'sources:\n  a: [unclosed\n');
    const error = await configError('c.yaml');
    expect(error.message).toContain('c.yaml');
    expect(error.message).toMatch(/line|:\d+/);
  });

  it('a YAML file given by path: blank is empty, missing is not found, and $import still merges', async () => {
    await writeFile(join(dir, 'blank.yaml'), '  \n');
    expect((await configError('blank.yaml')).message).toContain('blank.yaml: the config file is empty');
    expect((await configError('missing.yaml')).message).toContain('missing.yaml: config file not found');
    await writeFile(join(dir, 'base.yaml'), 'sources:\n  web: { type: file, path: members.yaml }\n');
    await writeFile(join(dir, 'c.yaml'), '$import: base.yaml\ntemplates:\n  - contents: x\n    destination: out.cfg\n');
    const config = await loadConfig('c.yaml', { cwd: dir });
    expect(config.file).toBe(join(dir, 'c.yaml'));
    expect(Object.keys(config.sources)).toEqual(['web']);
  });

  it('says where it looked when no config is found', async () => {
    const error = await configError(undefined);
    expect(error.message).toContain('no config file found');
    expect(error.message).toContain('renderer.config.ts');
  });

  it('refuses a key named __proto__ with its path, alone or beside others, in JSON, YAML or an object', async () => {
    const proto = '"__proto__" cannot be a name here (JavaScript objects reserve it); choose another';
    await writeFile(join(dir, 'alone.json'), '{"sources":{"__proto__":{"type":"file","path":"m.json"}},"templates":[{"contents":"x","destination":"o"}]}');
    expect((await configError('alone.json')).issues).toContainEqual({ path: 'sources.__proto__', message: proto });
    await writeFile(join(dir, 'beside.yaml'), 'sources:\n  __proto__: { type: file, path: m.json }\n  web: { type: file, path: n.json }\ntemplates:\n  - { contents: x, destination: o }\n');
    expect((await configError('beside.yaml')).issues).toEqual([{ path: 'sources.__proto__', message: proto }]);
    const tagFilter = JSON.parse('{"sources":{"s":{"type":"serf","tags":{"__proto__":"web"}}},"templates":[{"contents":"x","destination":"o"}]}');
    expect((await configError(tagFilter)).issues).toEqual([{ path: 'sources.s.tags.__proto__', message: proto }]);
  });

  it('accepts a function from defineConfig', async () => {
    const config = await loadConfig(defineConfig(async () => minimal), { baseDir: dir });
    expect(config.templates).toHaveLength(1);
  });

  it('accepts a Source object in place of a source config', async () => {
    const source = { name: 'mine', start: async () => undefined, stop: async () => undefined };
    const config = await loadConfig({ sources: { mine: source }, templates: [{ contents: 'x', destination: 'o' }] }, { baseDir: dir });
    expect(config.sources.mine).toBe(source);
  });
});

describe('perms in YAML and JSON configs', () => {
  let dir2: string;
  let done: () => Promise<void>;
  beforeEach(async () => {
    ({ path: dir2, cleanup: done } = await tempDir());
  });
  afterEach(async () => done());

  it('refuses a numeric mode, which YAML would misread, and accepts a quoted one', async () => {
    const yaml = (perms: string) => `sources:\n  a: { type: file, path: m.yaml }\ntemplates:\n  - { contents: x, destination: out, perms: ${perms} }\n`;
    await writeFile(join(dir2, 'c.yaml'), yaml('0440'));
    const error = await loadConfig('c.yaml', { cwd: dir2 }).then(
      () => undefined,
      (err: unknown) => err as ConfigError,
    );
    expect(error?.issues).toEqual([{ path: 'templates[0].perms', message: 'write the mode as a quoted octal string, e.g. "0440": a number is ambiguous in YAML and JSON' }]);
    await writeFile(join(dir2, 'c.yaml'), yaml('"0440"'));
    expect((await loadConfig('c.yaml', { cwd: dir2 })).templates[0]!.perms).toBe(0o440);
  });

  it('a decimal mode in JSON gets its octal spelling as the hint (384 is "0600")', async () => {
    await writeFile(join(dir2, 'c.json'), JSON.stringify({ sources: { a: { type: 'file', path: 'm' } }, templates: [{ contents: 'x', destination: 'o', perms: 384 }] }));
    const error = await loadConfig('c.json', { cwd: dir2 }).then(
      () => undefined,
      (err: unknown) => err as ConfigError,
    );
    expect(error?.issues).toEqual([{ path: 'templates[0].perms', message: 'write the mode as a quoted octal string, e.g. "0600": a number is ambiguous in YAML and JSON' }]);
  });

  it('accepts a number in a TypeScript config, where 0o440 is unambiguous', async () => {
    await writeFile(join(dir2, 'renderer.config.ts'), `export default { sources: { a: { type: 'file', path: 'm' } }, templates: [{ contents: 'x', destination: 'o', perms: 0o440 }] };\n`);
    expect((await loadConfig(undefined, { cwd: dir2 })).templates[0]!.perms).toBe(0o440);
  });
});
