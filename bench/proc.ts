import { readFile } from 'node:fs/promises';

/** Clock ticks per second of /proc/<pid>/stat's CPU times (USER_HZ, 100 on Linux). */
export const TICKS_PER_SECOND = 100;

/** utime+stime and cutime+cstime of a process, in clock ticks. */
export async function cpuTicks(pid: number): Promise<{ own: number; children: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After `pid (comm)`: state is field 3, utime 14, stime 15, cutime 16, cstime 17 (1-based, man proc).
  const at = (n: number): number => Number(fields[n - 3]);
  return { own: at(14) + at(15), children: at(16) + at(17) };
}
