import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { waitFor } from './wait.js';

/**
 * True when the process no longer runs. A zombie counts as gone: it is dead, and only waits for its parent to
 * reap it. Orphans are reparented to PID 1, and some container inits never reap them.
 */
export function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.charAt(stat.lastIndexOf(')') + 2) === 'Z';
  } catch {
    return true;
  }
}

/** Waits for the pid file written by the `sleep-with-child` fixture: its own pid and its grandchild's. */
export async function readPids(file: string, timeout?: number): Promise<{ leader: number; grandchild: number }> {
  const text = await waitFor(() => readFile(file, 'utf8').catch(() => ''), `pid file ${file}`, timeout === undefined ? {} : { timeout });
  const [leader, grandchild] = text.trim().split(' ').map(Number);
  if (!leader || !grandchild) throw new Error(`bad pid file: ${text}`);
  return { leader, grandchild };
}
