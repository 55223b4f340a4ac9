import { HaproxyError } from './errors.js';

/**
 * Parser for the master CLI's `show proc` reply in HAProxy 2.6 (see `cli_io_handler_show_proc` in
 * `src/mworker.c`). The reply is fixed-width text:
 *
 * ```text
 * #<PID>          <type>          <reloads>       <uptime>        <version>
 * 5343            master          2 [failed: 1]   0d00h00m02s     2.6.12-1+deb12u4
 * # workers
 * 5358            worker          1               0d00h00m01s     2.6.12-1+deb12u4
 * # old workers
 * 5346            worker          2               0d00h00m02s     2.6.12-1+deb12u4
 * # programs
 * 5437            stubborn        0               0d00h00m01s     -
 * # old programs
 * ...
 * ```
 *
 * `# old workers` and `# old programs` only appear when there are some. Columns are padded to 15
 * characters but can overflow (`10 [failed: 0]`), so lines are split on whitespace, not on offsets.
 */

/** The master process line of `show proc`. */
export interface MasterProc {
  pid: number;
  /** Reloads since the master started (failed ones included). */
  reloads: number;
  /** Failed reloads *in a row*: 2.6 resets it to 0 on the next successful reload. */
  failedReloads: number;
  /** As printed, e.g. `0d00h01m13s`. */
  uptime: string;
  version: string;
}

/** A worker or program line of `show proc`. */
export interface ChildProc {
  pid: number;
  /** Reloads this process has survived: 0 for a worker forked by the latest successful reload. */
  reloads: number;
  /** As printed, e.g. `0d00h00m01s`. */
  uptime: string;
  /** HAProxy version of a worker; `-` for a program. */
  version: string;
}

/** An external process declared in a `program` section. */
export interface ProgramProc extends ChildProc {
  /** The name of the `program` section. */
  name: string;
}

/** The process tree of a master-worker HAProxy, as `show proc` reports it. */
export interface ProcState {
  master: MasterProc;
  /** Current workers: the ones that serve the latest successfully loaded config. */
  workers: ChildProc[];
  /** Workers that were told to stop and are still finishing their connections. */
  oldWorkers: ChildProc[];
  programs: ProgramProc[];
  oldPrograms: ProgramProc[];
}

type Section = 'workers' | 'oldWorkers' | 'programs' | 'oldPrograms';

const SECTIONS: Record<string, Section> = {
  '# workers': 'workers',
  '# old workers': 'oldWorkers',
  '# programs': 'programs',
  '# old programs': 'oldPrograms',
};

// `<pid> master <reloads> [failed: <n>] <uptime> <version>`; the failed part is absent before 2.5.
const MASTER_LINE = /^(\d+)\s+master\s+(\d+)(?:\s+\[failed:\s*(\d+)\])?\s+(\S+)\s+(\S+)\s*$/;
// `<pid> <type> <reloads> <uptime> <version>`; `type` is `worker` or a program's name.
const CHILD_LINE = /^(\d+)\s+(\S+)\s+(\d+)\s+(\S+)\s+(\S+)\s*$/;
const UPTIME = /^(\d+)d(\d+)h(\d+)m(\d+)s$/;

/**
 * Parses the text of `show proc` (HAProxy 2.6 master CLI, non-interactive mode).
 *
 * Unknown sections and lines are skipped so that a later version's additions do not break it.
 *
 * @throws HaproxyError (`E_HAPROXY`) when the text has no master line: it is not a `show proc` reply
 *   (an error message, or the reply of a worker's stats socket).
 */
export function parseShowProc(text: string): ProcState {
  let master: MasterProc | undefined;
  const state: Omit<ProcState, 'master'> = { workers: [], oldWorkers: [], programs: [], oldPrograms: [] };
  let section: Section | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#<')) continue;
    if (line.startsWith('#')) {
      section = SECTIONS[line.replace(/\s+/g, ' ')];
      continue;
    }
    const masterMatch = MASTER_LINE.exec(line);
    if (masterMatch && master === undefined && section === undefined) {
      master = {
        pid: Number(masterMatch[1]),
        reloads: Number(masterMatch[2]),
        failedReloads: Number(masterMatch[3] ?? 0),
        uptime: masterMatch[4]!,
        version: masterMatch[5]!,
      };
      continue;
    }
    const child = CHILD_LINE.exec(line);
    if (!child || section === undefined) continue;
    const proc: ChildProc = {
      pid: Number(child[1]),
      reloads: Number(child[3]),
      uptime: child[4]!,
      version: child[5]!,
    };
    if (section === 'workers' || section === 'oldWorkers') state[section].push(proc);
    else state[section].push({ name: child[2]!, ...proc });
  }
  if (master === undefined) {
    const excerpt = text.trim().slice(0, 200);
    throw new HaproxyError(
      `not a "show proc" reply (no master line): ${excerpt === '' ? '(empty)' : JSON.stringify(excerpt)}`,
    );
  }
  return { master, ...state };
}

/** Converts a `show proc` uptime (`1d02h03m04s`) to seconds; `undefined` when it has another form. */
export function uptimeSeconds(uptime: string): number | undefined {
  const match = UPTIME.exec(uptime);
  if (!match) return undefined;
  const [, d, h, m, s] = match;
  return Number(d) * 86_400 + Number(h) * 3_600 + Number(m) * 60 + Number(s);
}
