import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Drives a lab (`examples/haproxy-serf/lab.mjs` by default, or `examples/nginx-dns/lab.mjs`) from tests and
 * benchmarks through its own command line, so that they exercise the example exactly as a reader runs it.
 */

/** The example's directory and its command-line entry point. */
export const LAB_DIR = fileURLToPath(new URL('../../examples/haproxy-serf/', import.meta.url));
export const LAB = join(LAB_DIR, 'lab.mjs');

/** `lab.mjs status --json`. */
export interface LabStatus {
  dir: string;
  lb?: {
    pid: number;
    running: boolean;
    httpPort: number;
    statsPort: number;
    serfBind: number;
    serfRpc: number;
    masterSocket: string;
    rosterdPid?: number;
    haproxyPid?: number;
    reloads?: number;
    failedReloads?: number;
    workers?: number;
    oldWorkers?: number;
  };
  nodes: { name: string; pid?: number; running: boolean; appPort?: number; serf?: string; haproxy?: string; server?: string }[];
}

export interface LabRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Lab<Status = LabStatus> {
  /** The run directory. */
  readonly dir: string;
  /** Runs `lab.mjs --dir DIR ARGS`; rejects when it exits with another code than 0 (unless `allowFailure`). */
  run(args: readonly string[], options?: { allowFailure?: boolean; timeout?: number; env?: NodeJS.ProcessEnv }): Promise<LabRun>;
  /** `lab.mjs status --json`. */
  status(): Promise<Status>;
  /**
   * A log of the run directory's `logs/`: by default the HAProxy lab's load balancer (Serf, HAProxy and rosterd
   * lines, each prefixed with the program's name).
   */
  log(file?: string): Promise<string>;
  /** SIGKILL to every process group the run directory names (`pid` in its JSON files and in nodes/). */
  killAll(): void;
}

const labs = new Set<{ killAll(): void }>();

// A test run that dies before its clean-up must not leave the lab behind: its processes are detached.
process.once('exit', () => {
  for (const lab of labs) lab.killAll();
});

export function createLab<Status = LabStatus>(dir: string, script = LAB): Lab<Status> {
  const lab: Lab<Status> = {
    dir,
    run(args, { allowFailure = false, timeout = 60_000, env } = {}) {
      return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, [script, '--dir', dir, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const timer = setTimeout(() => child.kill('SIGKILL'), timeout);
        child.on('error', reject);
        child.on('close', (code) => {
          clearTimeout(timer);
          if (code !== 0 && !allowFailure) reject(new Error(`${script} ${args.join(' ')} exited with ${code}\n${stdout}${stderr}`));
          else resolve({ code, stdout, stderr });
        });
      });
    },
    async status() {
      const { stdout } = await lab.run(['status', '--json']);
      return JSON.parse(stdout) as Status;
    },
    log: (file = 'lb.log') => readFile(join(dir, 'logs', file), 'utf8').catch(() => ''),
    killAll() {
      const files = [...safeList(dir).map((f) => join(dir, f)), ...safeList(join(dir, 'nodes')).map((f) => join(dir, 'nodes', f))];
      for (const file of files) {
        try {
          const { pid } = JSON.parse(readFileSync(file, 'utf8')) as { pid?: number };
          if (pid) process.kill(-pid, 'SIGKILL');
        } catch {
          // Gone, or never written.
        }
      }
    },
  };
  labs.add(lab);
  return lab;
}

function safeList(path: string): string[] {
  try {
    return readdirSync(path).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
}
