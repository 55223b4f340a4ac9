import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import { startDaemon, type Daemon } from './cli.js';
import { tempDir } from './tmp.js';

/** A fresh directory per test, with a member file and daemons that are killed after the test. */
export interface Workspace {
  /** The directory of the current test. */
  readonly dir: string;
  /** A path inside it. */
  at(name: string): string;
  /** Replaces `members.json` atomically with members named `names` (addresses 10.0.0.1, 10.0.0.2…). */
  writeMembers(...names: string[]): Promise<void>;
  /** Starts `rosterd run` in the directory; it is killed after the test if still running. */
  startDaemon(args?: readonly string[]): Daemon;
}

/** Registers the hooks of a workspace for the tests of the calling file or `describe`. */
export function useWorkspace(): Workspace {
  let dir = '';
  let cleanup: (() => Promise<void>) | undefined;
  const daemons: Daemon[] = [];
  beforeEach(async () => {
    ({ path: dir, cleanup } = await tempDir());
  });
  afterEach(async () => {
    for (const daemon of daemons.splice(0)) await daemon.stop('SIGKILL').catch(() => undefined);
    await cleanup?.();
  });
  const at = (name: string): string => join(dir, name);
  return {
    get dir() {
      return dir;
    },
    at,
    async writeMembers(...names) {
      const list = names.map((name, i) => ({ name, address: `10.0.0.${i + 1}` }));
      await writeFile(at('members.json.tmp'), JSON.stringify(list));
      await rename(at('members.json.tmp'), at('members.json'));
    },
    startDaemon(args = []) {
      const daemon = startDaemon(args, { cwd: dir });
      daemons.push(daemon);
      return daemon;
    },
  };
}
