import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Builds `dist/` once before the tests, so that the CLI tests spawn the real, built `rosterd` binary and
 * not a stale one. A build that fails is reported here and then shows up as failing CLI tests (the type
 * check in `npm test` runs before the tests, so a broken build never passes unnoticed).
 */
export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const tsc = fileURLToPath(new URL('../node_modules/typescript/bin/tsc', import.meta.url));
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
  } catch (err) {
    const output = (err as { stdout?: Buffer }).stdout?.toString() ?? '';
    process.stderr.write(`\nbuilding dist/ for the CLI tests failed:\n${output}\n`);
  }
}
