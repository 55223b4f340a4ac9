import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, type BenchSection } from './types.js';

/**
 * Start-up: how long a whole `rosterd` process takes, from spawn to exit, against `node -e 0` in the same
 * run. Every command of a round runs once, in turn, so that noise on the shared machine hits them alike.
 * The built CLI (`dist/`, `npm run build`) is what runs; logs go to a pipe, as in CI or a container.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'dist/cli/bin.js');
const ROUNDS = 15;

interface Case {
  name: string;
  args: string[];
  /** The goal, as a multiple of `node -e 0`. */
  goal?: number;
  cwd?: string;
}

export async function run(): Promise<BenchSection> {
  // The quickstart, copied: `render --once` writes its outputs next to the config.
  const dir = await mkdtemp(join(tmpdir(), 'rosterd-bench-startup-'));
  try {
    await cp(join(ROOT, 'examples/quickstart'), dir, { recursive: true, filter: (path) => !path.includes('/out') });
    const config = join(dir, 'renderer.config.yaml');
    const cases: Case[] = [
      { name: 'node -e 0', args: ['-e', '0'] },
      { name: 'rosterd --version', args: [BIN, '--version'], goal: 1.5 },
      { name: 'rosterd --help', args: [BIN, '--help'], goal: 1.5 },
      { name: 'rosterd render --once (quickstart)', args: [BIN, 'render', '--once', '-c', config], goal: 2.5 },
      { name: 'rosterd validate (quickstart)', args: [BIN, 'validate', '-c', config], goal: 2.5 },
      // Resolved by the package's own name from its directory: what a program that depends on rosterd loads.
      { name: "import('rosterd')", args: ['--input-type=module', '-e', "await import('rosterd')"], cwd: ROOT },
    ];
    const times = new Map<Case, number[]>(cases.map((c) => [c, []]));
    const once = (c: Case): number => {
      const start = performance.now();
      const result = spawnSync(process.execPath, c.args, { cwd: c.cwd ?? dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
      const ms = performance.now() - start;
      if (result.status !== 0) throw new Error(`${c.name} exited ${result.status ?? result.signal}: ${result.stderr.toString()}`);
      return ms;
    };
    // One warm-up round (the file system cache), not counted.
    for (const c of cases) once(c);
    for (let round = 0; round < ROUNDS; round++) for (const c of cases) times.get(c)!.push(once(c));
    const baseline = median(times.get(cases[0]!)!);
    const rows = cases.map((c) => {
      const ms = median(times.get(c)!);
      const ratio = ms / baseline;
      return {
        command: c.name,
        'median (ms)': ms,
        'ratio to node -e 0': `${ratio.toFixed(2)}×`,
        goal: c.goal === undefined ? '' : `≤ ${c.goal}× ${ratio <= c.goal ? '(met)' : '(missed)'}`,
      };
    });
    return {
      title: `Start-up of a whole process (median of ${ROUNDS}, in turn with node -e 0)`,
      rows,
      notes: [
        "Goals: --version and --help ≤ 1.5× node -e 0; render --once and validate of the quickstart ≤ 2.5×. import('rosterd') starts nothing and loads no heavy dependency until it is used.",
      ],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
