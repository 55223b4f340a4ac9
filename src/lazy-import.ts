import { createRequire } from 'node:module';

/**
 * Loads one of rosterd's own modules when it is first needed, as `import(specifier)` from `parentUrl` would.
 *
 * In the build, through `require()`: Node (≥ 20.19) then loads the ES module and everything it imports
 * synchronously, where `import()` goes through the asynchronous loader, with round trips for every module.
 * For the 50-odd modules behind `rosterd render --once` that measured about 5 ms. From the TypeScript source
 * (the tests), through `import()`. A module loaded this way must not use top-level `await`.
 *
 * `T` is the module's type: `lazyImport<typeof import('./x.js')>('./x.js', import.meta.url)`.
 */
export async function lazyImport<T>(specifier: string, parentUrl: string): Promise<T> {
  if (parentUrl.endsWith('.js')) return createRequire(parentUrl)(specifier) as T;
  return (await import(new URL(specifier, parentUrl).href)) as T;
}
