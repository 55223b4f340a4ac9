import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { extname } from 'node:path';
import { SourceError } from '../errors.js';

/**
 * The member file format, read once: what the `file` source reads on every change and `rosterd test` reads
 * for its fixtures. Kept apart from the watcher, so reading a file does not load one.
 */

/**
 * Reads and parses a member file. Returns the raw member list (validated later, with the others), with
 * scalar tag values and numeric-string ports turned into what the member format expects.
 * Throws a non-retryable `SourceError` naming the file, line and column.
 */
export async function readMemberFile(sourceName: string, path: string): Promise<unknown[]> {
  return await parseMemberFile(sourceName, path, await readMemberText(sourceName, path));
}

/**
 * Reads a member file's text; a missing, unreadable or non-regular file is a non-retryable `SourceError`.
 * Opened without blocking: a FIFO at the path would otherwise hang the read (and a thread of libuv's pool)
 * until a writer comes, and with it every later read and the source's stop.
 */
export async function readMemberText(sourceName: string, path: string): Promise<string> {
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

/** Parses a member file's text (JSON by extension, else YAML) into the raw member list. */
export async function parseMemberFile(sourceName: string, path: string, text: string): Promise<unknown[]> {
  if (text.trim() === '') throw new SourceError(sourceName, `member file ${path} is empty (write [] for no members)`, { retryable: false });
  const data = extname(path).toLowerCase() === '.json' ? parseJson(sourceName, path, text) : await parseYaml(sourceName, path, text);
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

async function parseYaml(sourceName: string, path: string, text: string): Promise<unknown> {
  // Imported on the first YAML file: `import 'rosterd'` (which exports the file source) loads no YAML parser.
  const { default: yaml } = await import('js-yaml');
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
