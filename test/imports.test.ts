import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SOURCE_DRIVERS } from '../src/sources/registry.js';

/**
 * The import graph of `src/`, read from the files: no cycle, and the dependency direction that
 * docs/architecture.md states. Type-only imports count (a type cycle is a design cycle too); a dynamic
 * `import()` does not: it is where a module loads something heavy lazily (a source driver its
 * implementation, the CLI a command), and the loaded module may use its loader's light parts.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(ROOT, 'src');

/**
 * The layers, lowest first. A module may import from its own layer and the ones below, never from a
 * layer above. Areas are `src/` folders or top-level files; `config-blocks` are the config's leaf modules
 * (durations, zod building blocks, reload options) that sources and reloaders may use.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['vendor', 'errors.ts', 'logger.ts', 'version.ts', 'retry.ts', 'lazy-import.ts', 'members', 'net', 'config-blocks'],
  ['serf', 'etcd', 'haproxy', 'output', 'render', 'exec', 'reload'],
  ['sources'],
  ['config'],
  ['runner'],
  ['ops', 'fleet'],
  ['cli', 'index.ts'],
];
const CONFIG_BLOCKS = new Set(['config/duration.ts', 'config/fields.ts', 'config/reload.ts']);

/** A module's area (see LAYERS), from its path relative to `src/`. */
function areaOf(file: string): string {
  if (CONFIG_BLOCKS.has(file)) return 'config-blocks';
  return file.includes('/') ? file.slice(0, file.indexOf('/')) : file;
}

function layerOf(area: string): number {
  const layer = LAYERS.findIndex((areas) => areas.includes(area));
  if (layer < 0) throw new Error(`src/${area} is in no layer of test/imports.test.ts: add it where it belongs`);
  return layer;
}

interface Module {
  /** Relative to `src/`, e.g. `sources/dns.ts`. */
  file: string;
  /** Static imports and re-exports (value and type) of other `src/` modules. */
  imports: string[];
  /** `import()` of other `src/` modules. */
  lazy: string[];
}

function listSources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return listSources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Code without comments, so that an import written in a doc comment is not taken for one. */
function withoutComments(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('//'))
    .join('\n');
}

const STATIC_IMPORT = /^\s*(?:import|export)\s(?:[^;'"]*?\sfrom\s*)?['"]([^'"]+)['"]/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

function readModule(path: string): Module {
  const code = withoutComments(readFileSync(path, 'utf8'));
  const resolve = (specifier: string): string[] =>
    specifier.startsWith('.') ? [relative(SRC, join(dirname(path), specifier.replace(/\.js$/, '.ts')))] : [];
  return {
    file: relative(SRC, path),
    imports: [...code.matchAll(STATIC_IMPORT)].flatMap((m) => resolve(m[1]!)),
    lazy: [...code.matchAll(DYNAMIC_IMPORT)].flatMap((m) => resolve(m[1]!)),
  };
}

const modules = new Map(listSources(SRC).map((path) => [relative(SRC, path), readModule(path)]));

/** Every strongly connected set of two or more modules (Tarjan), each as a list of files. */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

/** `from > to` for every static import of `src/` matching `test`. */
function importsWhere(test: (from: string, to: string) => boolean): string[] {
  return [...modules.values()].flatMap((m) => m.imports.filter((to) => test(m.file, to)).map((to) => `${m.file} > ${to}`));
}

describe('imports in src/', () => {
  it('resolve to files that exist (the scan reads the imports it checks)', () => {
    const missing = importsWhere((_, to) => !modules.has(to));
    expect(missing).toEqual([]);
    // A sanity check of the scan itself: a module known to import two others.
    expect(modules.get('render/context.ts')!.imports).toContain('members/model.ts');
    expect(modules.get('sources/drivers/serf.ts')!.lazy).toEqual(['sources/serf.ts']);
  });

  it('form no cycle', () => {
    const graph = new Map([...modules.values()].map((m) => [m.file, m.imports]));
    expect(cycles(graph)).toEqual([]);
  });

  it('go down the layers of docs/architecture.md, never up', () => {
    const upward = importsWhere((from, to) => layerOf(areaOf(to)) > layerOf(areaOf(from)));
    expect(upward).toEqual([]);
  });

  it('keep the main directions: templates know members, not sources; nothing below the runner reads the config schema; ops follow the runner', () => {
    expect(importsWhere((from, to) => from.startsWith('render/') && to.startsWith('sources/'))).toEqual([]);
    const belowRunner = (file: string) => layerOf(areaOf(file)) < layerOf('config');
    expect(importsWhere((from, to) => belowRunner(from) && (to === 'config/schema.ts' || to === 'config/load.ts'))).toEqual([]);
    expect(importsWhere((from, to) => from.startsWith('runner/') && (to.startsWith('ops/') || to.startsWith('fleet/')))).toEqual([]);
    expect(importsWhere((from, to) => from.startsWith('config/') && to.startsWith('ops/'))).toEqual([]);
    // The member model and the address module stand alone.
    expect(importsWhere((from) => from.startsWith('members/') || from.startsWith('net/'))).toEqual([]);
  });

  it('load a source implementation only through its driver: no static import of one outside sources/', () => {
    const implementations = SOURCE_DRIVERS.map((d) => `sources/${d.type}.ts`);
    expect(importsWhere((from, to) => implementations.includes(to) && !from.startsWith('sources/') && from !== 'index.ts')).toEqual([]);
    // The registry and the schema reach the implementations only lazily.
    for (const file of ['sources/registry.ts', 'sources/index.ts', 'config/schema.ts']) {
      expect(modules.get(file)!.imports.filter((to) => implementations.includes(to)), file).toEqual([]);
    }
  });
});

describe('source drivers', () => {
  const driverFiles = readdirSync(join(SRC, 'sources/drivers')).filter((name) => name.endsWith('.ts'));

  it('every driver file is registered, under its own name, and loads its implementation lazily', () => {
    expect(SOURCE_DRIVERS.map((d) => `${d.type}.ts`).sort()).toEqual([...driverFiles].sort());
    for (const driver of SOURCE_DRIVERS) {
      const module = modules.get(`sources/drivers/${driver.type}.ts`)!;
      expect(module.lazy, driver.type).toEqual([`sources/${driver.type}.ts`]);
      expect(module.imports.filter((to) => to === `sources/${driver.type}.ts`), driver.type).toEqual([]);
    }
  });

  it('every driver is documented in docs/configuration.md, with its defaults', () => {
    const docs = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
    for (const driver of SOURCE_DRIVERS) {
      const heading = `### \`${driver.type}\``;
      expect(docs, driver.type).toContain(heading);
      const rest = docs.slice(docs.indexOf(heading) + heading.length);
      const end = rest.search(/\n##+ /);
      const section = end < 0 ? rest : rest.slice(0, end);
      for (const key of Object.keys(driver.defaults)) expect(section, `${driver.type}.${key}`).toContain(`\`${key}\``);
    }
  });

  it('every driver has a contract test against its real backend', () => {
    const tests = readdirSync(join(ROOT, 'test/sources'));
    for (const driver of SOURCE_DRIVERS) expect(tests, driver.type).toContain(`${driver.type}-contract.test.ts`);
  });
});
