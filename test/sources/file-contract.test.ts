import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger } from '../../src/logger.js';
import { createSource } from '../../src/sources/index.js';
import { tempDir } from '../helpers/tmp.js';
import { sourceContract } from './contract.js';

sourceContract('file', async () => {
  const { path: dir, cleanup } = await tempDir();
  const path = join(dir, 'members.json');
  let names = ['a', 'b'];
  let generation = 0;
  let extra: unknown[] = [];
  const write = async (): Promise<void> => {
    const list = [...names.map((name, i) => ({ name, address: `10.0.0.${i + 1}` })), ...extra];
    await writeFile(`${path}.tmp`, JSON.stringify(list));
    await rename(`${path}.tmp`, path);
  };
  await write();
  return {
    // Through the driver, as the runner builds it: the implementation loads when the source starts.
    source: createSource('members', { type: 'file', path }, silentLogger()),
    async change() {
      const added = `n${++generation}`;
      names = [...names, added];
      await write();
      return (members) => members.some((m) => m.name === added);
    },
    touch: write,
    breakBackend: () => rm(path),
    restoreBackend: write,
    async hostile() {
      extra = [{ name: 'evil\nserver x 6.6.6.6:80', address: '10.0.0.66' }, { name: 'evil-2', address: '10.0.0.67', tags: { zone: 'a\u2028b' } }];
      await write();
    },
    cleanup,
  };
});
