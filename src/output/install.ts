/**
 * Installing a rendered file safely.
 *
 * Guarantees:
 * - **Atomic replace.** The new content is written to a temporary file in the destination's own directory
 *   (a rename is atomic only within one filesystem), flushed with fsync, given its final mode and owner, then
 *   renamed over the destination. A reader sees the old file or the new one, never a mix, never nothing.
 * - **Durable.** The directory is fsynced after the rename, so the new name survives a crash. Filesystems that
 *   cannot fsync a directory are tolerated (the rename has happened; only that flush is lost).
 * - **Failure leaves things as they were.** If preparing or committing fails, the destination keeps its old
 *   bytes, mode and owner, and the temporary files are removed. The one exception is a directory that stops
 *   being writable between prepare and commit: nothing can be removed from it either, so the candidate stays
 *   until {@link Candidate.discard} succeeds. The error says so.
 * - **Recognisable temporary names.** `.<name>.rosterd-<8 hex>`: hidden, created with O_EXCL (never follows or
 *   reuses an existing file), unreadable to others until its final mode is set. A crash between prepare and
 *   commit can leave one behind; it is never taken for the destination, and {@link removeStaleTemporaries}
 *   removes it later.
 * - **Backup without a gap.** With `backup`, `<file>.bak` is replaced atomically by a hard link to the old file
 *   before the new file goes in, so the destination is never missing. (Where hard links are not supported, a
 *   copy is used.) If the install then fails, `.bak` holds the current bytes, which is harmless.
 * - **Symlinks are written through.** When the destination is a symbolic link (even a dangling one), the file it
 *   points to is replaced and the link stays, as write-file-atomic does. Temporary files and `.bak` live next to
 *   that target, because they must be on its filesystem.
 * - **Mode and owner.** The mode is `perms`, else the existing file's, else 0644; umask does not apply. The owner
 *   is `uid`/`gid`, else the existing file's. An explicit owner that cannot be set is an error; keeping an
 *   existing owner is best effort (an unprivileged process cannot give a file away).
 *
 * Not here: deciding whether to write at all (the caller compares with {@link readCurrent}), and serialising
 * installs of one destination (the caller runs one pipeline per destination). Errors are `InstallError`s
 * (`E_INSTALL`) with the destination and the step that failed, also named in the message; the errno error is
 * the `cause`.
 */
import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, open, readdir, readlink, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { InstallError, RosterdError, type InstallStep } from '../errors.js';

/** What is on disk now (undefined when the file does not exist). */
export interface CurrentFile {
  bytes: Buffer;
  /** Permission bits only (`st_mode & 0o7777`). */
  mode: number;
  uid: number;
  gid: number;
}

/** How {@link prepareCandidate} writes the file. */
export interface InstallOptions {
  /** File mode. Default: keep the existing file's mode, else 0o644. */
  perms?: number;
  /** Owner; default: keep the existing file's owner (chown only when it differs and we may). */
  uid?: number;
  /** Group; default: keep the existing file's group (chown only when it differs and we may). */
  gid?: number;
  /** Keep the previous file as `<destination>.bak` (replaced atomically too). */
  backup?: boolean;
}

/** A rendered file written next to its destination, not yet installed. `path` is what a check command inspects. */
export interface Candidate {
  /** Absolute path of the temporary file, complete with its final mode and owner. */
  readonly path: string;
  /** Absolute path of the destination, as given (a symlink stays a symlink; its target is replaced). */
  readonly destination: string;
  /** Renames the candidate over the destination (after the backup, if asked). Can be called once. */
  commit(): Promise<InstallResult>;
  /** Removes the candidate; the destination is not touched. Does nothing after a commit or a discard. */
  discard(): Promise<void>;
}

/** What {@link Candidate.commit} did. */
export interface InstallResult {
  /** Absolute path of the destination, as given. */
  destination: string;
  /** Where the previous file was kept; undefined without `backup` or when there was no previous file. */
  backupPath?: string;
}

/** Longest part of the file name kept in a temporary name, so that the name stays under NAME_MAX (255). */
const MAX_NAME_PART = 200;
/** Symlink hops followed before giving up, as the kernel's own limit (ELOOP). */
const MAX_SYMLINK_HOPS = 40;

/**
 * Reads the file at `destination` (following symlinks): its bytes, permission bits and owner. Undefined when it
 * does not exist. Rejects with `E_INSTALL` when it is not a regular file or cannot be read.
 */
export async function readCurrent(destination: string): Promise<CurrentFile | undefined> {
  const path = resolve(destination);
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO must not hang; it is refused below like any other non-regular file.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw installError('read', path, `cannot read ${path}`, err);
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw notRegularFile(path, stats);
    const bytes = await handle.readFile();
    return { bytes, mode: stats.mode & 0o7777, uid: stats.uid, gid: stats.gid };
  } catch (err) {
    throw RosterdError.is(err) ? err : installError('read', path, `cannot read ${path}`, err);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Writes `content` to a new temporary file next to `destination`, with its final mode and owner, flushed to
 * disk; missing parent directories are created with mode 0755, whatever the umask. Nothing is installed until
 * `commit()`. `current` is what {@link readCurrent} returned; it supplies the mode and owner to keep.
 */
export async function prepareCandidate(
  destination: string,
  content: string | Buffer,
  options: InstallOptions,
  current: CurrentFile | undefined,
): Promise<Candidate> {
  const dest = resolve(destination);
  const mode = options.perms ?? current?.mode ?? 0o644;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new InstallError('mode', dest, `invalid file mode for ${dest}: ${String(options.perms)}`);
  }
  const target = await resolveTarget(dest);
  const tempPath = await writeTemp(target, dest, content, mode, {
    uid: options.uid ?? current?.uid,
    gid: options.gid ?? current?.gid,
    strict: options.uid !== undefined || options.gid !== undefined,
  });
  return new PreparedCandidate(tempPath, dest, target, options.backup === true);
}

/**
 * Removes the temporary files a killed or crashed rosterd left next to `destination` (a crash loop would
 * otherwise add one full-size file per crash). Only files that are exactly ours are touched: regular files
 * (not symlinks or directories) named `.<name>.rosterd-<8 lowercase hex>` for this destination's file name,
 * unchanged (ctime: a backup's hard link counts as a change) for longer than `olderThanMs`, so that a
 * candidate another process is still checking stays. Best effort: what cannot be listed or removed stays.
 * Several destinations (the files of a fan-out) cost one listing per directory. Returns the paths removed.
 */
export async function removeStaleTemporaries(destination: string | readonly string[], olderThanMs: number): Promise<string[]> {
  const prefixes = new Map<string, Set<string>>();
  for (const path of typeof destination === 'string' ? [destination] : destination) {
    const target = await resolveTarget(resolve(path));
    const inDir = prefixes.get(dirname(target)) ?? new Set<string>();
    inDir.add(tempPrefix(target));
    prefixes.set(dirname(target), inDir);
  }
  const removed: string[] = [];
  for (const [dir, inDir] of prefixes) removed.push(...(await removeStaleIn(dir, inDir, olderThanMs)));
  return removed;
}

async function removeStaleIn(dir: string, prefixes: ReadonlySet<string>, olderThanMs: number): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = /^(.*)[0-9a-f]{8}$/.exec(name);
    if (!match || !match[1]!.endsWith('.rosterd-') || !prefixes.has(match[1]!)) continue;
    const path = join(dir, name);
    try {
      const stats = await lstat(path);
      if (!stats.isFile() || Date.now() - stats.ctimeMs <= olderThanMs) continue;
      await unlink(path);
      removed.push(path);
    } catch {
      // Gone meanwhile, or not ours to remove: leave it.
    }
  }
  return removed;
}

/**
 * Puts `previous` back (atomically, same mode/owner), or removes the destination if there was no previous file.
 * Used to roll back after a failed reload. Restoring the owner is best effort, as when it is kept on install.
 */
export async function restore(destination: string, previous: CurrentFile | undefined): Promise<void> {
  const dest = resolve(destination);
  const target = await resolveTarget(dest);
  if (previous === undefined) {
    try {
      await unlink(target);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw installError('remove', dest, `cannot remove ${dest}`, err);
    }
    await syncDirectory(dirname(target));
    return;
  }
  const tempPath = await writeTemp(target, dest, previous.bytes, previous.mode, {
    uid: previous.uid,
    gid: previous.gid,
    strict: false,
  });
  await new PreparedCandidate(tempPath, dest, target, false).commit();
}

class PreparedCandidate implements Candidate {
  readonly path: string;
  readonly destination: string;
  readonly #target: string;
  readonly #backup: boolean;
  #state: 'ready' | 'committing' | 'committed' | 'discarded' = 'ready';
  /** Set when the candidate still exists after a failed commit (it could not be removed). */
  #leftOver = false;

  constructor(path: string, destination: string, target: string, backup: boolean) {
    this.path = path;
    this.destination = destination;
    this.#target = target;
    this.#backup = backup;
  }

  async commit(): Promise<InstallResult> {
    if (this.#state !== 'ready') {
      throw new InstallError('rename', this.destination, `candidate for ${this.destination} is already ${this.#state}`);
    }
    this.#state = 'committing';
    let backupPath: string | undefined;
    try {
      if (this.#backup) backupPath = await makeBackup(this.#target, this.destination);
      await rename(this.path, this.#target).catch((err: unknown) => {
        throw installError('rename', this.destination, `cannot install ${this.destination}`, err);
      });
    } catch (err) {
      this.#state = 'discarded';
      const leftOver = await removeQuietly(this.path);
      this.#leftOver = leftOver !== undefined;
      throw withLeftOver(err, this.path, leftOver);
    }
    this.#state = 'committed';
    await syncDirectory(dirname(this.#target));
    return backupPath === undefined ? { destination: this.destination } : { destination: this.destination, backupPath };
  }

  async discard(): Promise<void> {
    if (this.#state === 'committed' || this.#state === 'committing') return;
    if (this.#state === 'discarded' && !this.#leftOver) return;
    this.#state = 'discarded';
    const leftOver = await removeQuietly(this.path);
    this.#leftOver = leftOver !== undefined;
    if (leftOver !== undefined) throw installError('remove', this.destination, `cannot remove the candidate ${this.path}`, leftOver);
  }
}

/**
 * Makes `<target>.bak` hold the current file without ever removing the target: hard link (or copy) to a fresh
 * temporary name, then rename over `.bak`. Returns the backup path, or undefined when there is no current file.
 */
async function makeBackup(target: string, destination: string): Promise<string | undefined> {
  const backupPath = `${target}.bak`;
  const temp = tempName(target);
  try {
    await link(target, temp);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return undefined;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'EMLINK' && code !== 'EXDEV') {
      throw installError('backup', destination, `cannot back up ${destination}`, err);
    }
    // No hard links here (some FUSE and network filesystems): a copy is slower but just as safe.
    try {
      await copyFile(target, temp, constants.COPYFILE_EXCL);
    } catch (copyErr) {
      if (errnoCode(copyErr) === 'ENOENT') return undefined;
      throw withLeftOver(installError('backup', destination, `cannot back up ${destination}`, copyErr), temp, await removeQuietly(temp));
    }
  }
  try {
    await rename(temp, backupPath);
  } catch (err) {
    throw withLeftOver(installError('backup', destination, `cannot back up ${destination} to ${backupPath}`, err), temp, await removeQuietly(temp));
  }
  return backupPath;
}

/**
 * Creates the temporary file next to `target` and gives it its content, owner and mode, flushed. Removes it
 * again on any failure. Returns its path.
 */
async function writeTemp(
  target: string,
  destination: string,
  content: string | Buffer,
  mode: number,
  owner: { uid: number | undefined; gid: number | undefined; strict: boolean },
): Promise<string> {
  const dir = dirname(target);
  try {
    const stats = await lstat(target);
    if (!stats.isFile()) throw notRegularFile(destination, stats);
  } catch (err) {
    if (RosterdError.is(err)) throw err;
    if (errnoCode(err) !== 'ENOENT' && errnoCode(err) !== 'ENOTDIR') throw installError('inspect', destination, `cannot inspect ${destination}`, err);
  }
  try {
    const first = await mkdir(dir, { recursive: true, mode: 0o755 });
    // mkdir's mode is filtered by the umask; a reader running as another user needs 0755 all the way down.
    if (first !== undefined) {
      for (let created = dir; ; created = dirname(created)) {
        await chmod(created, 0o755);
        if (created === first || created === dirname(created)) break;
      }
    }
  } catch (err) {
    throw installError('directory', destination, `cannot create the directory of ${destination}`, err);
  }
  const { handle, path } = await openTemp(target, destination);
  let step: InstallStep = 'write';
  try {
    await handle.writeFile(content);
    await setOwner(handle, destination, owner);
    // After the chown, which clears set-user-ID and set-group-ID bits.
    step = 'mode';
    await handle.chmod(mode);
    step = 'write';
    await handle.sync();
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw withLeftOver(
      RosterdError.is(err) ? err : installError(step, destination, `cannot write the candidate for ${destination}`, err),
      path,
      await removeQuietly(path),
    );
  }
  return path;
}

/** Opens a fresh temporary file with O_EXCL; a name clash (one in 4 billion) just draws another name. */
async function openTemp(target: string, destination: string): Promise<{ handle: FileHandle; path: string }> {
  for (let attempt = 0; ; attempt++) {
    const path = tempName(target);
    try {
      // 0600 until the final mode is set, so that nobody reads a half-written file with the wrong permissions.
      return { handle: await open(path, 'wx', 0o600), path };
    } catch (err) {
      if (errnoCode(err) === 'EEXIST' && attempt < 5) continue;
      throw installError('write', destination, `cannot create a temporary file next to ${destination}`, err);
    }
  }
}

async function setOwner(
  handle: FileHandle,
  destination: string,
  owner: { uid: number | undefined; gid: number | undefined; strict: boolean },
): Promise<void> {
  if (owner.uid === undefined && owner.gid === undefined) return;
  const stats = await handle.stat();
  const uid = owner.uid ?? stats.uid;
  const gid = owner.gid ?? stats.gid;
  if (uid === stats.uid && gid === stats.gid) return;
  try {
    await handle.chown(uid, gid);
  } catch (err) {
    const code = errnoCode(err);
    // Keeping someone else's ownership needs privileges we may not have; asking for an owner explicitly does not.
    if (!owner.strict && (code === 'EPERM' || code === 'EINVAL')) return;
    throw installError('owner', destination, `cannot set the owner ${uid}:${gid}`, err);
  }
}

/** `.<name>.rosterd-<8 hex>` in the target's directory. */
function tempName(target: string): string {
  return join(dirname(target), `${tempPrefix(target)}${randomBytes(4).toString('hex')}`);
}

function tempPrefix(target: string): string {
  return `.${basename(target).slice(0, MAX_NAME_PART)}.rosterd-`;
}

/** Follows symlinks on the last path component, dangling ones too, to the file that will actually be replaced. */
async function resolveTarget(path: string): Promise<string> {
  let current = path;
  for (let hops = 0; hops <= MAX_SYMLINK_HOPS; hops++) {
    let stats: Stats;
    try {
      stats = await lstat(current);
    } catch {
      // Missing (or a parent is not a directory): this is the path to create; mkdir or open reports the rest.
      return current;
    }
    if (!stats.isSymbolicLink()) return current;
    try {
      current = resolve(dirname(current), await readlink(current));
    } catch (err) {
      throw installError('symlink', path, `cannot follow the symlink ${current}`, err);
    }
  }
  throw new InstallError('symlink', path, `too many levels of symbolic links at ${path}`);
}

/** Flushes a directory's entries (a rename or an unlink in it) to disk; best effort. */
export async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    await handle.sync();
  } catch {
    // Durability only: the rename is done and visible. Some filesystems refuse fsync on a directory (EINVAL).
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** Removes a temporary file. Returns the error when it still exists afterwards, undefined when it is gone. */
async function removeQuietly(path: string): Promise<unknown> {
  try {
    await unlink(path);
    return undefined;
  } catch (err) {
    return errnoCode(err) === 'ENOENT' ? undefined : err;
  }
}

function withLeftOver(err: unknown, path: string, leftOver: unknown): unknown {
  if (leftOver === undefined || !(err instanceof Error)) return err;
  err.message += ` (the temporary file ${path} could not be removed: ${describe(leftOver)})`;
  return err;
}

function notRegularFile(path: string, stats: Stats): InstallError {
  const kind = stats.isDirectory() ? 'a directory' : 'not a regular file';
  return new InstallError('inspect', path, `${path} is ${kind}`);
}

function installError(step: InstallStep, destination: string, what: string, cause: unknown): InstallError {
  return new InstallError(step, destination, `${what}: ${describe(cause)}`, { cause });
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}
