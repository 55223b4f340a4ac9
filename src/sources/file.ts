import { constants } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { dirname, extname } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import yaml from 'js-yaml';
import { SourceError } from '../errors.js';
import type { Member } from '../members/model.js';
import type { Source, SourceFactory } from './types.js';

const TRAILING_READ_MS = 150;
/**
 * How often the file is looked at (one `stat`) besides the watcher. Watchers can go deaf: a symlink swapped
 * after it dangled, a file → directory → file sequence under load, or a watched directory replaced as a
 * whole. A different inode, size, mode or time then leads to a read within this interval.
 */
export const RECHECK_INTERVAL_MS = 1000;

/** Resolved options of a `file` source. */
export interface FileSourceOptions {
  type: 'file';
  /** Absolute path of the member file: JSON (`.json`) or YAML (anything else). */
  path: string;
}

/**
 * Members listed in a file, JSON or YAML: a list of members or `{ members: [...] }`. The file is watched:
 * an atomic replace, an in-place write, or a delete followed by a re-create all lead to a re-read. A file
 * that cannot be read or parsed is reported (with line and column) and the last good snapshot stays.
 * An empty file is an error, not an empty list: a file caught half-written must never empty a backend.
 */
export const createFileSource: SourceFactory<FileSourceOptions> = (name, options) => {
  if (typeof options.path !== 'string' || options.path === '') throw new TypeError(`[source ${name}] option "path" is required`);
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
              const members = parseMemberFile(name, path, text) as Member[];
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

/**
 * Reads and parses a member file. Returns the raw member list (validated later, with the others), with
 * scalar tag values and numeric-string ports turned into what the member format expects.
 * Throws a non-retryable `SourceError` naming the file, line and column.
 */
export async function readMemberFile(sourceName: string, path: string): Promise<unknown[]> {
  return parseMemberFile(sourceName, path, await readMemberText(sourceName, path));
}

/**
 * Reads a member file's text; a missing, unreadable or non-regular file is a non-retryable `SourceError`.
 * Opened without blocking: a FIFO at the path would otherwise hang the read (and a thread of libuv's pool)
 * until a writer comes, and with it every later read and the source's stop.
 */
async function readMemberText(sourceName: string, path: string): Promise<string> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const stats = await handle.stat();
    if (!stats.isFile()) {
      const kind = stats.isDirectory() ? 'a directory' : stats.isFIFO() ? 'a FIFO' : stats.isSocket() ? 'a socket' : 'a device';
      throw new SourceError(sourceName, `member file ${path} is not a regular file (it is ${kind})`, { retryable: false });
    }
    return await handle.readFile('utf8');
  } catch (err) {
    if (err instanceof SourceError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable' : `cannot be read (${code ?? (err as Error).message})`;
    throw new SourceError(sourceName, `member file ${path} ${reason}`, { cause: err, retryable: false });
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

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

/** Parses a member file's text (JSON by extension, else YAML) into the raw member list. */
function parseMemberFile(sourceName: string, path: string, text: string): unknown[] {
  if (text.trim() === '') throw new SourceError(sourceName, `member file ${path} is empty (write [] for no members)`, { retryable: false });
  const data = extname(path).toLowerCase() === '.json' ? parseJson(sourceName, path, text) : parseYaml(sourceName, path, text);
  const list = Array.isArray(data) ? data : typeof data === 'object' && data !== null && Array.isArray((data as { members?: unknown }).members) ? (data as { members: unknown[] }).members : undefined;
  if (!list) throw new SourceError(sourceName, `${path}: expected a list of members or { members: [...] }`, { retryable: false });
  return list.map(normalizeMember);
}

// --- internal ---

function parseJson(sourceName: string, path: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const position = /at position (\d+)/.exec(message);
    const offset = position ? Number(position[1]) : text.length;
    const { line, column } = lineAndColumn(text, offset);
    const reason = message.replace(/ in JSON at position \d+.*$/, '').replace(/^JSON\.parse: /, '');
    throw new SourceError(sourceName, `${path}:${line}:${column}: invalid JSON: ${reason}`, { cause: err, retryable: false });
  }
}

function parseYaml(sourceName: string, path: string, text: string): unknown {
  try {
    return yaml.load(text, { filename: path, schema: yaml.CORE_SCHEMA });
  } catch (err) {
    const mark = (err as { mark?: { line: number; column: number } }).mark;
    const reason = (err as { reason?: string }).reason ?? (err as Error).message;
    const where = mark ? `${path}:${mark.line + 1}:${mark.column + 1}` : path;
    throw new SourceError(sourceName, `${where}: invalid YAML: ${reason}`, { cause: err, retryable: false });
  }
}

function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  return { line, column: offset - before.lastIndexOf('\n') };
}

// A person writes `port: 8080` or `weight: 10` in YAML; the member format wants tag values as strings and
// a port as a number. Only those unambiguous scalars are converted; anything else is left for the gate.
function normalizeMember(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const member = { ...(value as Record<string, unknown>) };
  if (typeof member.port === 'string' && /^\d{1,5}$/.test(member.port)) member.port = Number(member.port);
  if (typeof member.tags === 'object' && member.tags !== null && !Array.isArray(member.tags)) {
    const tags: Record<string, unknown> = {};
    for (const [key, tag] of Object.entries(member.tags)) {
      const scalar = typeof tag === 'number' || typeof tag === 'boolean';
      Object.defineProperty(tags, key, { value: scalar ? String(tag) : tag, enumerable: true, writable: true, configurable: true });
    }
    member.tags = tags;
  }
  return member;
}
