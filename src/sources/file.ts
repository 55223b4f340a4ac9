import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { FSWatcher } from 'chokidar';
import { SourceError } from '../errors.js';
import type { Member } from '../members/model.js';
import { validateFileOptions, type FileSourceOptions } from './drivers/file.js';
import { parseMemberFile, readMemberText } from './member-file.js';
import type { Source, SourceFactory } from './types.js';

export type { FileSourceOptions } from './drivers/file.js';
export { readMemberFile } from './member-file.js';

const TRAILING_READ_MS = 150;
/**
 * How often the file is looked at (one `stat`) besides the watcher. Watchers can go deaf: a symlink swapped
 * after it dangled, a file → directory → file sequence under load, or a watched directory replaced as a
 * whole. A different inode, size, mode or time then leads to a read within this interval.
 */
export const RECHECK_INTERVAL_MS = 1000;

/**
 * Members listed in a file, JSON or YAML: a list of members or `{ members: [...] }`. The file is watched:
 * an atomic replace, an in-place write, or a delete followed by a re-create all lead to a re-read. A file
 * that cannot be read or parsed is reported (with line and column) and the last good snapshot stays.
 * An empty file is an error, not an empty list: a file caught half-written must never empty a backend.
 * With `context.once`, the file is read once and not watched.
 */
export const createFileSource: SourceFactory<FileSourceOptions> = (name, options, context) => {
  validateFileOptions(name, options);
  const path = options.path;
  let watcher: FSWatcher | undefined;
  let reading: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  let trailing: NodeJS.Timeout | undefined;
  let recheck: NodeJS.Timeout | undefined;
  /** The text of the last good read. */
  let lastText: string | undefined;
  /** What `fileSignature` said just before the last read: the recheck reads again when it changes. */
  let lastSignature: string | undefined;
  /** Resolves the wait for the watcher's first scan: `stop()` may come before it. */
  let endWait: (() => void) | undefined;

  const source: Source = {
    name,
    async start(onSnapshot, onError) {
      stopped = false;
      lastText = undefined;
      // Reads run one at a time; events that arrive during a read cause exactly one more read, because
      // chokidar may merge several quick replacements into one event and only the newest content matters.
      const read = (): void => {
        if (reading) {
          again = true;
          return;
        }
        reading = (async () => {
          do {
            again = false;
            try {
              lastSignature = await fileSignature(path);
              const text = await readMemberText(name, path);
              // Most events (other files in the directory, the trailing read) find the same text: nothing to say.
              if (text === lastText) continue;
              // Raw entries: the runner's snapshot gate validates them like any other untrusted member.
              const members = (await parseMemberFile(name, path, text)) as Member[];
              lastText = text;
              if (!stopped) onSnapshot(members);
            } catch (err) {
              // After an error the same text is news again: it tells that the source is back.
              lastText = undefined;
              if (!stopped) onError(err as Error);
            }
          } while (again && !stopped);
          reading = undefined;
        })();
      };
      // Looked at once: a watcher would only add its start-up (and chokidar's load) to a process that exits.
      if (context?.once) return read();
      // Watch the directory, not the file: a file replaced by rename is a new inode, and a watch on the
      // old one can miss the writes that follow. Any event in the directory leads to a read (the snapshot
      // gate drops what did not change): a member file that is a symlink into a directory swapped as a whole
      // (a Kubernetes ConfigMap, an `ln -sfn` deploy) changes without an event of its own.
      const directory = dirname(path);
      // chokidar throttles change events (about 50 ms per file), so the last write of a quick burst may
      // have no event of its own: every event also schedules one trailing read.
      const refresh = (): void => {
        if (stopped) return;
        read();
        clearTimeout(trailing);
        trailing = setTimeout(read, TRAILING_READ_MS);
      };
      // Imported here, not at the top: `import 'rosterd'` exports this factory and loads no file watcher.
      const { watch } = await import('chokidar');
      if (stopped) return;
      watcher = watch(directory, { ignoreInitial: true, depth: 0 });
      watcher.on('all', (event, changed) => {
        if (event !== 'unlink' || changed !== path) return refresh();
        lastText = undefined;
        lastSignature = MISSING;
        if (!stopped) onError(new SourceError(name, `${path} was removed; keeping the last members until it is back`, { retryable: false }));
      });
      watcher.on('error', (err) => onError(new SourceError(name, `watching ${path} failed: ${(err as Error).message}`, { cause: err })));
      await new Promise<void>((resolve) => {
        endWait = resolve;
        watcher!.once('ready', () => resolve());
      });
      if (stopped) return;
      read();
      recheck = setInterval(() => {
        if (reading) return;
        void fileSignature(path).then((signature) => {
          if (signature !== lastSignature && !stopped) read();
        });
      }, RECHECK_INTERVAL_MS);
    },
    async stop() {
      stopped = true;
      endWait?.();
      clearInterval(recheck);
      clearTimeout(trailing);
      await watcher?.close();
      watcher = undefined;
      clearTimeout(trailing);
      await reading;
    },
  };
  return source;
};

const MISSING = 'missing';

/** What identifies the file's state without reading it: inode, size, mode and times, or that it is missing. */
async function fileSignature(path: string): Promise<string> {
  try {
    const s = await stat(path, { bigint: true });
    return `${s.dev}:${s.ino}:${s.mode}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? MISSING : `error ${(err as NodeJS.ErrnoException).code}`;
  }
}
