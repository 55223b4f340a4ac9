/**
 * The record of the files a fan-out template wrote, and their removal.
 *
 * A fan-out template (`forEach`) keeps a manifest in its directory, `.rosterd-manifest.json`: the files it
 * wrote, relative to the directory. It is what makes pruning safe: only a file listed there is ever removed, so
 * a file someone else put in the directory, or one that merely matches the destination's pattern, stays. The
 * manifest is written atomically (as any output), before the files it adds are installed and after the files
 * it drops are removed, so that it always lists at least every file of the template on disk, even after a
 * crash. Entries that leave the directory are ignored: the record is data on disk, not trusted to point
 * elsewhere.
 */
import { lstat, rename, unlink } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { InstallError } from '../errors.js';
import { prepareCandidate, readCurrent, syncDirectory, type CurrentFile } from './install.js';

/** The manifest's file name, in the fan-out's directory. Names holding `.rosterd-` are never outputs. */
export const MANIFEST_NAME = '.rosterd-manifest.json';

/** The format's version, written as `rosterd` in the file. */
const FORMAT = 1;

/** The manifest's path for a fan-out directory. */
export function manifestPath(directory: string): string {
  return join(directory, MANIFEST_NAME);
}

/**
 * The files the manifest of `directory` lists (absolute paths); empty when there is none yet. An unreadable or
 * malformed manifest, or one that is not a regular file, is an `InstallError` (`E_INSTALL`, step `record`): without it, nothing in the
 * directory can be told to be rosterd's.
 */
export async function readManifest(directory: string): Promise<Set<string>> {
  const path = manifestPath(directory);
  await refuseSymlink(path);
  const current = await readCurrent(path);
  if (current === undefined) return new Set();
  let files: unknown;
  try {
    files = (JSON.parse(current.bytes.toString()) as { files?: unknown }).files;
  } catch (err) {
    throw new InstallError('record', path, `${path} is not valid JSON (${(err as Error).message}); fix it or remove it (the files it listed are then no longer removed by prune)`, { cause: err });
  }
  if (!Array.isArray(files)) throw new InstallError('record', path, `${path} has no "files" list; fix it or remove it`);
  const owned = new Set<string>();
  for (const entry of files) {
    if (typeof entry !== 'string' || entry === '') continue;
    const file = resolve(directory, entry);
    if (file.startsWith(directory + sep)) owned.add(file);
  }
  return owned;
}

/** Replaces the manifest of `directory` atomically with `files` (absolute paths inside it), sorted. */
export async function writeManifest(directory: string, template: string, files: Iterable<string>): Promise<void> {
  const path = manifestPath(directory);
  await refuseSymlink(path);
  const list = [...files].map((file) => relative(directory, file)).sort();
  const text = `${JSON.stringify({ rosterd: FORMAT, template, files: list }, null, 2)}\n`;
  const candidate = await prepareCandidate(path, text, {}, await readCurrent(path));
  await candidate.commit();
}

/**
 * Removes an output file: renamed to `<file>.bak` with `backup`, else unlinked. Returns what it held, for a
 * rollback; undefined when it was already gone. A path that is not a regular file (a symlink, a directory) is
 * refused: a record can be stale, and rosterd only ever wrote regular files there.
 */
export async function removeOutput(path: string, options: { backup: boolean }): Promise<CurrentFile | undefined> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InstallError('inspect', path, `cannot inspect ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (!stats.isFile()) throw new InstallError('inspect', path, `${path} is not a regular file (rosterd only writes regular files): left in place`);
  const previous = await readCurrent(path);
  try {
    if (options.backup) await rename(path, `${path}.bak`);
    else await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InstallError('remove', path, `cannot remove ${path}: ${(err as Error).message}`, { cause: err });
  }
  await syncDirectory(dirname(path));
  return previous;
}

// --- internal ---

/** A planted symlink in place of the manifest would make rosterd write elsewhere. */
async function refuseSymlink(path: string): Promise<void> {
  const stats = await lstat(path).catch(() => undefined);
  if (stats?.isSymbolicLink()) throw new InstallError('record', path, `${path} is a symlink; the record of a fan-out's files must be a regular file`);
}
