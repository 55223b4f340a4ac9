import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InstallError, RosterdError } from '../../src/errors.js';
import { prepareCandidate } from '../../src/output/install.js';
import { installFailure } from '../../src/runner/pipeline.js';
import { tempDir } from '../helpers/tmp.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await dir.cleanup();
});

describe('installFailure', () => {
  it("keeps the installer's step and file, and names the template", async () => {
    const destination = join(dir.path, 'out.cfg');
    await mkdir(destination);
    const cause = await prepareCandidate(destination, 'x', {}, undefined).catch((err: unknown) => err);
    const error = installFailure({ name: 'web', destination }, 'write', `cannot write ${destination}`, cause);
    expect(error).toBeInstanceOf(InstallError);
    expect(error).toMatchObject({ code: 'E_INSTALL', step: 'inspect', destination, template: 'web', cause });
    expect(error.message).toBe(`[template web] cannot write ${destination}: ${destination} is a directory`);
  });

  it('takes the given step for a system error the installer did not wrap', () => {
    const cause = Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
    const error = installFailure({ name: 'web', destination: '/x/out.cfg' }, 'rename', 'cannot install /x/out.cfg', cause);
    expect(error).toMatchObject({ code: 'E_INSTALL', step: 'rename', destination: '/x/out.cfg', template: 'web' });
  });

  it('reports an error that is neither rosterd\'s nor the system\'s as a bug (E_INTERNAL), not E_INSTALL', () => {
    const cause = new TypeError("Cannot read properties of undefined (reading 'path')");
    const error = installFailure({ name: 'web', destination: '/x/out.cfg' }, 'write', 'cannot write /x/out.cfg', cause);
    expect(RosterdError.is(error)).toBe(true);
    expect(error).not.toBeInstanceOf(InstallError);
    expect(error.code).toBe('E_INTERNAL');
    expect(error.cause).toBe(cause);
    expect(error.message).toMatch(/^\[template web\] unexpected error \(a bug in rosterd\) during write of \/x\/out\.cfg: Cannot read/);
  });
});
