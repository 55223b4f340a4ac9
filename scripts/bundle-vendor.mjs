// Replaces the built copies of src/vendor/ modules in dist/vendor/ with bundles of what they load, so that a
// start loads one file per vendored package instead of its many modules: `<name>.ts` (an ES module that
// re-exports part of a package) becomes `<name>.js`, `<name>.cjs` (CommonJS, for what is required
// synchronously) becomes `<name>.cjs`. Runs after `tsc` in the build. Each bundle opens with the name, version
// and licence text of every package in it.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const sources = readdirSync(join(root, 'src/vendor')).filter((f) => /^[^.]+\.(ts|cjs)$/.test(f));

for (const source of sources) {
  const esm = source.endsWith('.ts');
  const outfile = join(root, 'dist/vendor', source.replace(/\.ts$/, '.js'));
  const result = await build({
    absWorkingDir: root,
    entryPoints: [`src/vendor/${source}`],
    bundle: true,
    write: false,
    metafile: true,
    format: esm ? 'esm' : 'cjs',
    platform: 'node',
    target: 'node20',
    // Readable: a stack trace into a bundle still names the package's functions.
    minify: false,
    legalComments: 'inline',
    logLevel: 'warning',
  });
  const packages = new Set(Object.keys(result.metafile.inputs).flatMap((input) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1] ?? []));
  const notices = [...packages].sort().map((name) => {
    const dir = join(root, 'node_modules', name);
    const { version, license } = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    const file = readdirSync(dir).find((f) => /^licen[cs]e/i.test(f));
    const text = file === undefined ? '' : `\n${readFileSync(join(dir, file), 'utf8').trim()}\n`;
    return `${name} ${version} (${license})${text}`;
  });
  mkdirSync(dirname(outfile), { recursive: true });
  // tsc's source map describes the module that the bundle replaces.
  rmSync(`${outfile}.map`, { force: true });
  const banner = `/*! Bundled from these packages by scripts/bundle-vendor.mjs:\n\n${notices.join('\n').replaceAll('*/', '* /')}\n*/\n`;
  writeFileSync(outfile, banner + result.outputFiles[0].text);
}
