import { appendFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../logger.js';

/** Where the render history is written, one JSON object per line, and how big it may grow. */
export interface HistoryFileOptions {
  /** The file (absolute). Its directory is created. */
  path: string;
  /** Size in bytes at which the file is rotated: renamed to `<path>.1` (the older ones shift to `.2`, …). */
  maxBytes: number;
  /** Rotated files kept; older ones are overwritten. 0: the file is started afresh. */
  keep: number;
}

/** An append-only JSON-lines file, rotated by size. */
export interface HistoryFile {
  /** Queues one record; writes happen in order, in the background. */
  append(record: unknown): void;
  /** Resolves once every queued record is written. */
  close(): Promise<void>;
}

/**
 * Opens the history file. Writes never throw: a failure is logged (once until a write succeeds again) and the
 * record is lost, while the daemon goes on. So at most `maxBytes × (keep + 1)` bytes are ever on disk.
 */
export function createHistoryFile(options: HistoryFileOptions, logger: Logger): HistoryFile {
  let size: number | undefined;
  let failing = false;
  let queue: Promise<void> = Promise.resolve();

  const write = async (line: string): Promise<void> => {
    if (size === undefined) {
      await mkdir(dirname(options.path), { recursive: true });
      size = await stat(options.path).then(
        (s) => s.size,
        () => 0,
      );
    }
    const bytes = Buffer.byteLength(line);
    if (size > 0 && size + bytes > options.maxBytes) {
      await rotate(options);
      size = 0;
    }
    await appendFile(options.path, line, { mode: 0o640 });
    size += bytes;
  };

  return {
    append(record) {
      const line = `${JSON.stringify(record)}\n`;
      queue = queue.then(() =>
        write(line).then(
          () => {
            failing = false;
          },
          (err: unknown) => {
            // Unknown size after a failure: read it again next time.
            size = undefined;
            if (!failing) logger.error({ file: options.path }, `cannot write the history file ${options.path}: ${(err as Error).message}`);
            failing = true;
          },
        ),
      );
    },
    close: () => queue,
  };
}

/** `<path>.1` → `<path>.2` …, then `<path>` → `<path>.1`; with nothing to keep, the file is removed. */
async function rotate(options: HistoryFileOptions): Promise<void> {
  const numbered = (n: number): string => `${options.path}.${n}`;
  if (options.keep === 0) return rm(options.path, { force: true });
  // A missing older file is no error: it simply has not been made yet.
  for (let n = options.keep - 1; n >= 1; n--) await rename(numbered(n), numbered(n + 1)).catch(() => undefined);
  await rename(options.path, numbered(1));
}
