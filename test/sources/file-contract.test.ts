import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { createFileSource } from '../../src/sources/file.js';
import { tempDir } from '../helpers/tmp.js';
import { sourceContract } from './contract.js';

sourceContract('file', async () => {
  const { path: dir, cleanup } = await tempDir();
  const path = join(dir, 'members.json');
  let names = ['a', 'b'];
  let generation = 0;
  const write = async (): Promise<void> => {
    const list = names.map((name, i) => ({ name, address: `10.0.0.${i + 1}` }));
    await writeFile(`${path}.tmp`, JSON.stringify(list));
    await rename(`${path}.tmp`, path);
  };
  await write();
  return {
    source: createFileSource('members', { type: 'file', path }, { logger: pino({ level: 'silent' }) }),
    async change() {
      const added = `n${++generation}`;
      names = [...names, added];
      await write();
      return (members) => members.some((m) => m.name === added);
    },
    touch: write,
    breakBackend: () => rm(path),
    restoreBackend: write,
    cleanup,
  };
});
