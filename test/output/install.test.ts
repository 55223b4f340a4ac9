import { execFile } from 'node:child_process';
import { chmod, chown, copyFile, lstat, mkdir, readdir, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InstallError, RosterdError } from '../../src/errors.js';
import { prepareCandidate, readCurrent, removeStaleTemporaries, restore, type InstallOptions } from '../../src/output/install.js';
import { tempDir } from '../helpers/tmp.js';

/** Lets a test make `rename` fail for chosen paths, to reach failure paths that root cannot otherwise hit. */
const inject = vi.hoisted(() => ({ renameFails: undefined as ((from: string, to: string) => boolean) | undefined }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...actual,
    rename: async (from: string, to: string) => {
      if (inject.renameFails?.(String(from), String(to))) {
        throw Object.assign(new Error(`EIO: i/o error (injected), rename '${from}' -> '${to}'`), { code: 'EIO' });
      }
      return actual.rename(from, to);
    },
  };
});

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;

let dir: { path: string; cleanup: () => Promise<void> };

beforeEach(async () => {
  dir = await tempDir();
});

afterEach(async () => {
  inject.renameFails = undefined;
  await dir.cleanup();
});

/** Temporary files left in a directory. */
async function leftovers(path: string): Promise<string[]> {
  return (await readdir(path)).filter((name) => name.includes('.rosterd-'));
}

const modeOf = async (path: string): Promise<number> => (await stat(path)).mode & 0o7777;
const inodeOf = async (path: string): Promise<number> => (await stat(path)).ino;

async function expectInstallError(promise: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(RosterdError.is(err)).toBe(true);
  expect((err as RosterdError).code).toBe('E_INSTALL');
  expect((err as RosterdError).message).toMatch(message);
}

/** Installs `content` the way the pipeline does: read what is there, prepare, commit. */
async function install(destination: string, content: string | Buffer, options: InstallOptions = {}) {
  const candidate = await prepareCandidate(destination, content, options, await readCurrent(destination));
  return candidate.commit();
}

describe('readCurrent', () => {
  it('returns undefined for a missing file', async () => {
    expect(await readCurrent(join(dir.path, 'missing.cfg'))).toBeUndefined();
  });

  it('returns bytes, permission bits and owner', async () => {
    const path = join(dir.path, 'x.cfg');
    await writeFile(path, Buffer.from([0xff, 0x00, 0x41]));
    await chmod(path, 0o640);
    const stats = await stat(path);
    expect(await readCurrent(path)).toEqual({
      bytes: Buffer.from([0xff, 0x00, 0x41]),
      mode: 0o640,
      uid: stats.uid,
      gid: stats.gid,
    });
  });

  it('refuses a directory', async () => {
    await expectInstallError(readCurrent(dir.path), /is a directory/);
  });
});

describe('prepareCandidate and commit', () => {
  it('creates a new file with mode 0644 whatever the umask, creating parent directories', async () => {
    const destination = join(dir.path, 'a', 'b', 'out.cfg');
    const previousUmask = process.umask(0o077);
    try {
      const candidate = await prepareCandidate(destination, 'hello\n', {}, undefined);
      expect(candidate.destination).toBe(destination);
      expect(await readdir(join(dir.path, 'a', 'b'))).toEqual([basename(candidate.path)]);
      expect(await candidate.commit()).toEqual({ destination });
    } finally {
      process.umask(previousUmask);
    }
    expect(await readFile(destination, 'utf8')).toBe('hello\n');
    expect(await modeOf(destination)).toBe(0o644);
    expect(await modeOf(join(dir.path, 'a'))).toBe(0o755);
    expect(await modeOf(join(dir.path, 'a', 'b'))).toBe(0o755);
    expect(await modeOf(dir.path)).toBe(0o700);
    expect(await readdir(join(dir.path, 'a', 'b'))).toEqual(['out.cfg']);
  });

  it('writes a complete candidate, with its final mode, next to the destination under a recognisable name', async () => {
    const destination = join(dir.path, 'haproxy.cfg');
    const candidate = await prepareCandidate(destination, 'global\n', { perms: 0o640 }, undefined);
    expect(candidate.path.startsWith(`${dir.path}/`)).toBe(true);
    expect(candidate.path.slice(dir.path.length + 1)).toMatch(/^\.haproxy\.cfg\.rosterd-[0-9a-f]{8}$/);
    expect(await readFile(candidate.path, 'utf8')).toBe('global\n');
    expect(await modeOf(candidate.path)).toBe(0o640);
    await expect(stat(destination)).rejects.toMatchObject({ code: 'ENOENT' });
    await candidate.commit();
    await expect(stat(candidate.path)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('applies perms exactly (octal), ignoring the umask', async () => {
    const destination = join(dir.path, 'out.cfg');
    await install(destination, 'a', { perms: 0o600 });
    expect(await modeOf(destination)).toBe(0o600);
    await install(destination, 'b', { perms: 0o666 });
    expect(await modeOf(destination)).toBe(0o666);
    await install(destination, 'c', { perms: 0o2750 });
    expect(await modeOf(destination)).toBe(0o2750);
  });

  it('keeps the mode of the existing file unless perms is given', async () => {
    const destination = join(dir.path, 'out.cfg');
    await writeFile(destination, 'old');
    await chmod(destination, 0o640);
    await install(destination, 'new');
    expect(await modeOf(destination)).toBe(0o640);
    await install(destination, 'newer', { perms: 0o600 });
    expect(await modeOf(destination)).toBe(0o600);
  });

  it('refuses an invalid mode before writing anything', async () => {
    const destination = join(dir.path, 'out.cfg');
    await expectInstallError(prepareCandidate(destination, 'x', { perms: 0o10000 }, undefined), /invalid file mode/);
    await expectInstallError(prepareCandidate(destination, 'x', { perms: 1.5 }, undefined), /invalid file mode/);
    expect(await readdir(dir.path)).toEqual([]);
  });

  it('writes a Buffer byte for byte', async () => {
    const destination = join(dir.path, 'bin.dat');
    const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x0a, 0x0d]);
    await install(destination, bytes);
    expect(await readFile(destination)).toEqual(bytes);
  });

  it('replaces the inode on commit; discard leaves the old inode and bytes untouched', async () => {
    const destination = join(dir.path, 'out.cfg');
    await writeFile(destination, 'old');
    const oldInode = await inodeOf(destination);

    const discarded = await prepareCandidate(destination, 'new', {}, await readCurrent(destination));
    await discarded.discard();
    await discarded.discard();
    expect(await inodeOf(destination)).toBe(oldInode);
    expect(await readFile(destination, 'utf8')).toBe('old');
    expect(await readdir(dir.path)).toEqual(['out.cfg']);
    await expectInstallError(discarded.commit(), /already discarded/);

    const committed = await prepareCandidate(destination, 'new', {}, await readCurrent(destination));
    const candidateInode = await inodeOf(committed.path);
    await committed.commit();
    expect(await inodeOf(destination)).toBe(candidateInode);
    expect(await inodeOf(destination)).not.toBe(oldInode);
    expect(await readFile(destination, 'utf8')).toBe('new');
    await expectInstallError(committed.commit(), /already committed/);
    await committed.discard();
    expect(await readFile(destination, 'utf8')).toBe('new');
  });

  it('gives concurrent candidates distinct names; the last commit wins', async () => {
    const destination = join(dir.path, 'out.cfg');
    const first = await prepareCandidate(destination, 'first', {}, undefined);
    const second = await prepareCandidate(destination, 'second', {}, undefined);
    expect(first.path).not.toBe(second.path);
    await first.commit();
    await second.commit();
    expect(await readFile(destination, 'utf8')).toBe('second');
    expect(await readdir(dir.path)).toEqual(['out.cfg']);
  });

  it('keeps the previous file as .bak, a link to the old inode, replaced on every install', async () => {
    const destination = join(dir.path, 'out.cfg');
    expect(await install(destination, 'v1', { backup: true })).toEqual({ destination });
    expect(await readdir(dir.path)).toEqual(['out.cfg']);

    const v1Inode = await inodeOf(destination);
    expect(await install(destination, 'v2', { backup: true })).toEqual({
      destination,
      backupPath: `${destination}.bak`,
    });
    expect(await readFile(destination, 'utf8')).toBe('v2');
    expect(await readFile(`${destination}.bak`, 'utf8')).toBe('v1');
    expect(await inodeOf(`${destination}.bak`)).toBe(v1Inode);

    await install(destination, 'v3', { backup: true });
    expect(await readFile(`${destination}.bak`, 'utf8')).toBe('v2');
    expect((await readdir(dir.path)).sort()).toEqual(['out.cfg', 'out.cfg.bak']);
  });

  it('writes through a symlink: the link stays, its target is replaced, .bak sits next to the target', async () => {
    const realDir = join(dir.path, 'real');
    await mkdir(realDir);
    const target = join(realDir, 'haproxy.cfg');
    const link = join(dir.path, 'haproxy.cfg');
    await writeFile(target, 'old');
    await symlink('real/haproxy.cfg', link);

    expect((await readCurrent(link))?.bytes.toString()).toBe('old');
    const candidate = await prepareCandidate(link, 'new', { backup: true }, await readCurrent(link));
    expect(candidate.path.startsWith(`${realDir}/.haproxy.cfg.rosterd-`)).toBe(true);
    expect(await candidate.commit()).toEqual({ destination: link, backupPath: `${target}.bak` });

    expect((await lstat(link)).isSymbolicLink()).toBe(true);
    expect(await readlink(link)).toBe('real/haproxy.cfg');
    expect(await readFile(target, 'utf8')).toBe('new');
    expect(await readFile(`${target}.bak`, 'utf8')).toBe('old');
    expect((await readdir(realDir)).sort()).toEqual(['haproxy.cfg', 'haproxy.cfg.bak']);
  });

  it('creates the target of a dangling symlink', async () => {
    const link = join(dir.path, 'out.cfg');
    await symlink('sub/real.cfg', link);
    expect(await readCurrent(link)).toBeUndefined();
    await install(link, 'new');
    expect((await lstat(link)).isSymbolicLink()).toBe(true);
    expect(await readFile(join(dir.path, 'sub', 'real.cfg'), 'utf8')).toBe('new');
  });

  it('sets an explicit owner when privileged, and refuses it otherwise', async () => {
    const destination = join(dir.path, 'out.cfg');
    const attempt = install(destination, 'x', { uid: NOBODY, gid: NOBODY });
    if (isRoot) {
      await attempt;
      expect(await stat(destination)).toMatchObject({ uid: NOBODY, gid: NOBODY });
    } else {
      await expectInstallError(attempt, /cannot set the owner/);
      expect(await readdir(dir.path)).toEqual([]);
    }
  });

  it('keeps the owner of the existing file', async () => {
    const destination = join(dir.path, 'out.cfg');
    await writeFile(destination, 'old');
    // Only root can give a file away, so only root can hold a file owned by someone else to keep.
    if (isRoot) await chown(destination, NOBODY, NOBODY);
    const before = await stat(destination);
    await install(destination, 'new');
    const after = await stat(destination);
    expect(after.ino).not.toBe(before.ino);
    if (isRoot) {
      // The new inode was created by root: it is nobody's only because the installer gave it away.
      expect({ uid: after.uid, gid: after.gid }).toEqual({ uid: NOBODY, gid: NOBODY });
    } else {
      // Not root: the existing owner is this process, so all there is to check is that the file stays ours.
      expect({ uid: after.uid, gid: after.gid }).toEqual({ uid: process.getuid!(), gid: before.gid });
    }
  });
});

describe('install errors', () => {
  it('are InstallErrors naming the destination and the step that failed', async () => {
    const destination = join(dir.path, 'out.cfg');
    const stepOf = async (promise: Promise<unknown>): Promise<{ step: string; destination: string } | undefined> => {
      const err = await promise.then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(InstallError);
      expect((err as InstallError).code).toBe('E_INSTALL');
      return { step: (err as InstallError).step, destination: (err as InstallError).destination };
    };
    expect(await stepOf(prepareCandidate(destination, 'x', { perms: 0o10000 }, undefined))).toEqual({ step: 'mode', destination });
    await mkdir(destination);
    expect(await stepOf(prepareCandidate(destination, 'x', {}, undefined))).toEqual({ step: 'inspect', destination });
    expect(await stepOf(readCurrent(destination))).toEqual({ step: 'inspect', destination });
    await rm(destination, { recursive: true });
    await writeFile(destination, 'old');
    await mkdir(`${destination}.bak`);
    await writeFile(join(`${destination}.bak`, 'keep'), '');
    const backedUp = await prepareCandidate(destination, 'new', { backup: true }, await readCurrent(destination));
    expect(await stepOf(backedUp.commit())).toEqual({ step: 'backup', destination });
    const renamed = await prepareCandidate(destination, 'new', {}, await readCurrent(destination));
    await rm(destination);
    await mkdir(destination);
    await writeFile(join(destination, 'inside'), 'kept');
    expect(await stepOf(renamed.commit())).toEqual({ step: 'rename', destination });
    const file = join(dir.path, 'file');
    await writeFile(file, 'x');
    expect(await stepOf(prepareCandidate(join(file, 'out.cfg'), 'x', {}, undefined))).toEqual({ step: 'directory', destination: join(file, 'out.cfg') });
  });
});

describe('failures leave the old file and no temporary file', () => {
  it('refuses a destination that is a directory', async () => {
    const destination = join(dir.path, 'out.cfg');
    await mkdir(destination);
    await expectInstallError(prepareCandidate(destination, 'x', {}, undefined), /is a directory/);
    expect(await readdir(dir.path)).toEqual(['out.cfg']);
  });

  it('fails when a parent is a regular file', async () => {
    await writeFile(join(dir.path, 'file'), 'x');
    await expectInstallError(prepareCandidate(join(dir.path, 'file', 'out.cfg'), 'x', {}, undefined), /ENOTDIR|EEXIST/);
    expect(await readdir(dir.path)).toEqual(['file']);
  });

  it('fails when .bak cannot be replaced (it is a directory): destination and inode unchanged', async () => {
    const destination = join(dir.path, 'out.cfg');
    await writeFile(destination, 'old');
    await mkdir(`${destination}.bak`);
    await writeFile(join(`${destination}.bak`, 'keep'), '');
    const oldInode = await inodeOf(destination);
    const candidate = await prepareCandidate(destination, 'new', { backup: true }, await readCurrent(destination));
    await expectInstallError(candidate.commit(), /cannot back up/);
    expect(await readFile(destination, 'utf8')).toBe('old');
    expect(await inodeOf(destination)).toBe(oldInode);
    expect(await leftovers(dir.path)).toEqual([]);
    await candidate.discard();
  });

  it('fails when the destination became a directory after prepare', async () => {
    const destination = join(dir.path, 'out.cfg');
    await writeFile(destination, 'old');
    const candidate = await prepareCandidate(destination, 'new', {}, await readCurrent(destination));
    await rm(destination);
    await mkdir(destination);
    await writeFile(join(destination, 'inside'), 'kept');
    await expectInstallError(candidate.commit(), /cannot install/);
    expect(await readFile(join(destination, 'inside'), 'utf8')).toBe('kept');
    expect(await leftovers(dir.path)).toEqual([]);
  });

  it('fails when the final rename fails after the backup: old bytes, old inode, .bak = old bytes', async () => {
    const destination = join(dir.path, 'out.cfg');
    await writeFile(destination, 'old');
    await chmod(destination, 0o600);
    const oldInode = await inodeOf(destination);
    const candidate = await prepareCandidate(destination, 'new', { backup: true }, await readCurrent(destination));
    inject.renameFails = (from, to) => from === candidate.path && to === destination;
    await expectInstallError(candidate.commit(), /cannot install .*EIO/);
    expect(await readFile(destination, 'utf8')).toBe('old');
    expect(await inodeOf(destination)).toBe(oldInode);
    expect(await modeOf(destination)).toBe(0o600);
    expect(await readFile(`${destination}.bak`, 'utf8')).toBe('old');
    expect(await leftovers(dir.path)).toEqual([]);
  });

  it('fails when the backup link cannot be renamed into place: no temporary link left', async () => {
    const destination = join(dir.path, 'out.cfg');
    await writeFile(destination, 'old');
    const candidate = await prepareCandidate(destination, 'new', { backup: true }, await readCurrent(destination));
    inject.renameFails = (_from, to) => to === `${destination}.bak`;
    await expectInstallError(candidate.commit(), /cannot back up/);
    expect(await readFile(destination, 'utf8')).toBe('old');
    expect(await readdir(dir.path)).toEqual(['out.cfg']);
  });

  describe('as an unprivileged user (root ignores directory permissions)', () => {
    /**
     * Runs one scenario in a child process that is not root, against the built module (test/global-setup.ts
     * builds it), copied next to the work directory: the unprivileged user may not be able to read the
     * repository itself.
     */
    async function runUnprivileged(scenario: 'read-only before prepare' | 'read-only before commit') {
      const work = join(dir.path, 'work');
      await mkdir(work);
      const modules = join(dir.path, 'module');
      await mkdir(join(modules, 'output'), { recursive: true });
      await copyFile(join(ROOT, 'dist/output/install.js'), join(modules, 'output/install.js'));
      await copyFile(join(ROOT, 'dist/errors.js'), join(modules, 'errors.js'));
      await writeFile(join(work, 'out.cfg'), 'old');
      if (isRoot) {
        await chmod(dir.path, 0o755);
        await chown(work, NOBODY, NOBODY);
        await chown(join(work, 'out.cfg'), NOBODY, NOBODY);
      }
      const script = `
        const [modulePath, work, scenario] = process.argv.slice(1);
        const { chmod, readdir, readFile } = await import('node:fs/promises');
        const loaded = await import(modulePath);
        const api = loaded.prepareCandidate ? loaded : loaded.default;
        const destination = work + '/out.cfg';
        const report = {};
        const failed = (e) => ({ code: e.code, message: e.message });
        if (scenario === 'read-only before prepare') {
          await chmod(work, 0o555);
          try { await api.prepareCandidate(destination, 'new', {}, await api.readCurrent(destination)); }
          catch (e) { report.error = failed(e); }
          await chmod(work, 0o755);
        } else {
          const candidate = await api.prepareCandidate(destination, 'new', {}, await api.readCurrent(destination));
          await chmod(work, 0o555);
          try { await candidate.commit(); } catch (e) { report.error = failed(e); }
          report.filesAfterFailure = (await readdir(work)).sort();
          await chmod(work, 0o755);
          await candidate.discard();
        }
        report.bytes = await readFile(destination, 'utf8');
        report.files = await readdir(work);
        console.log(JSON.stringify(report));
      `;
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--input-type=module', '-e', script, join(modules, 'output/install.js'), work, scenario],
        { cwd: dir.path, ...(isRoot ? { uid: NOBODY, gid: NOBODY } : {}) },
      );
      return JSON.parse(stdout) as {
        error?: { code: string; message: string };
        filesAfterFailure?: string[];
        bytes: string;
        files: string[];
      };
    }

    it('a read-only directory fails prepare cleanly', async () => {
      const report = await runUnprivileged('read-only before prepare');
      expect(report.error?.code).toBe('E_INSTALL');
      expect(report.error?.message).toMatch(/cannot create a temporary file next to .*EACCES/);
      expect(report.bytes).toBe('old');
      expect(report.files).toEqual(['out.cfg']);
    });

    it('a directory made read-only after prepare fails commit; the stuck candidate goes with discard', async () => {
      const report = await runUnprivileged('read-only before commit');
      expect(report.error?.code).toBe('E_INSTALL');
      expect(report.error?.message).toMatch(/cannot install .*EACCES.*could not be removed/);
      // Nothing can be removed from a read-only directory, so the candidate stays until discard().
      expect(report.filesAfterFailure).toHaveLength(2);
      expect(report.bytes).toBe('old');
      expect(report.files).toEqual(['out.cfg']);
    });
  });
});

describe('restore', () => {
  it('puts back the previous bytes, mode and owner, atomically', async () => {
    const destination = join(dir.path, 'out.cfg');
    await writeFile(destination, 'previous');
    await chmod(destination, 0o600);
    if (isRoot) await chown(destination, NOBODY, NOBODY);
    const previous = await readCurrent(destination);
    await install(destination, 'broken', { perms: 0o644, uid: process.getuid?.(), gid: process.getgid?.() });
    const brokenInode = await inodeOf(destination);

    await restore(destination, previous);
    const after = await stat(destination);
    expect(await readFile(destination, 'utf8')).toBe('previous');
    expect(after.mode & 0o7777).toBe(0o600);
    expect({ uid: after.uid, gid: after.gid }).toEqual({ uid: previous?.uid, gid: previous?.gid });
    expect(after.ino).not.toBe(brokenInode);
    expect(await readdir(dir.path)).toEqual(['out.cfg']);
  });

  it('removes the destination when there was no previous file, and tolerates it being gone', async () => {
    const destination = join(dir.path, 'out.cfg');
    await install(destination, 'new');
    await restore(destination, undefined);
    expect(await readdir(dir.path)).toEqual([]);
    await restore(destination, undefined);
    expect(await readdir(dir.path)).toEqual([]);
  });
});

describe('removeStaleTemporaries', () => {
  it('removes only regular files named exactly as ours for this destination, once they are old enough', async () => {
    const out = join(dir.path, 'out.cfg');
    await writeFile(out, 'current\n');
    const ours = ['.out.cfg.rosterd-0123abcd', '.out.cfg.rosterd-ffffffff'];
    const notOurs = ['.out.cfg.rosterd-0123abcd.keep', '.out.cfg.rosterd-0123ABCD', '.out.cfg.rosterd-0123abc', 'out.cfg.rosterd-0123abcd', '.other.cfg.rosterd-0123abcd', '.out.cfg.bak'];
    for (const name of [...ours, ...notOurs]) await writeFile(join(dir.path, name), 'x');
    await mkdir(join(dir.path, '.out.cfg.rosterd-dddddddd'));
    await symlink(out, join(dir.path, '.out.cfg.rosterd-eeeeeeee'));
    expect(await removeStaleTemporaries(out, 60_000)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await removeStaleTemporaries(out, 10)).sort()).toEqual(ours.map((name) => join(dir.path, name)));
    expect((await readdir(dir.path)).sort()).toEqual([...notOurs, '.out.cfg.rosterd-dddddddd', '.out.cfg.rosterd-eeeeeeee', 'out.cfg'].sort());
    expect(await readFile(out, 'utf8')).toBe('current\n');
  });

  it('looks next to the file a symlinked destination points to, and tolerates a missing directory', async () => {
    await mkdir(join(dir.path, 'real'));
    await writeFile(join(dir.path, 'real', 'target.cfg'), 'x');
    await symlink(join(dir.path, 'real', 'target.cfg'), join(dir.path, 'link.cfg'));
    await writeFile(join(dir.path, 'real', '.target.cfg.rosterd-00000000'), 'left over');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await removeStaleTemporaries(join(dir.path, 'link.cfg'), 10)).toEqual([join(dir.path, 'real', '.target.cfg.rosterd-00000000')]);
    expect(await removeStaleTemporaries(join(dir.path, 'nowhere', 'out.cfg'), 10)).toEqual([]);
  });
});
