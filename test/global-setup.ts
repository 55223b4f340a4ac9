import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Builds `dist/` once before the tests, so that the CLI, end-to-end and lab tests spawn the real, built
 * `rosterd` and never a stale one. A build that fails stops the run.
 */
export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
    // As `npm run build` does: the vendored packages become one bundled module each.
    execFileSync(process.execPath, ['scripts/bundle-vendor.mjs'], { cwd: root, stdio: 'pipe' });
  } catch (err) {
    const output = (err as { stdout?: Buffer }).stdout?.toString() ?? '';
    throw new Error(`building dist/ for the tests failed:\n${output}`);
  }
}
