import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { SourceError } from '../../src/errors.js';
import { createFileSource, readMemberFile } from '../../src/sources/file.js';
import type { Member, Source } from '../../src/sources/types.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

let dir: string;
let cleanup: () => Promise<void>;
let source: Source | undefined;
beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir());
});
afterEach(async () => {
  await source?.stop();
  source = undefined;
  await cleanup();
});

async function readError(path: string): Promise<SourceError> {
  const error = await readMemberFile('m', path).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(SourceError);
  return error as SourceError;
}

function start(path: string) {
  const snapshots: Member[][] = [];
  const errors: Error[] = [];
  source = createFileSource('m', { type: 'file', path }, { logger: pino({ level: 'silent' }) });
  const started = source.start(
    (members) => snapshots.push(members),
    (err) => errors.push(err),
  );
  return { snapshots, errors, started };
}

/** Replaces a file the way editors and config tools do: write a temp file, then rename it over. */
async function replace(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

describe('member file format', () => {
  it('reads a JSON list', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, JSON.stringify([{ name: 'a', address: '10.0.0.1', port: 80 }]));
    expect(await readMemberFile('m', path)).toEqual([{ name: 'a', address: '10.0.0.1', port: 80 }]);
  });

  it('reads YAML with { members: [...] }, turning scalar tags into strings and numeric ports into numbers', async () => {
    const path = join(dir, 'm.yaml');
    await writeFile(path, 'members:\n  - name: a\n    address: 10.0.0.1\n    port: "8080"\n    tags: { weight: 10, canary: true, zone: a }\n');
    expect(await readMemberFile('m', path)).toEqual([{ name: 'a', address: '10.0.0.1', port: 8080, tags: { weight: '10', canary: 'true', zone: 'a' } }]);
  });

  it('names the file, line and column of a JSON syntax error', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, '[\n  {"name": "a",\n   "address": "10.0.0.1",,\n  }\n]\n');
    const error = await readError(path);
    expect(error.message).toMatch(new RegExp(`^\\[source m\\] ${path}:3:\\d+: invalid JSON`));
    expect(error.retryable).toBe(false);
  });

  it('names the file, line and column of a YAML syntax error', async () => {
    const path = join(dir, 'm.yaml');
    await writeFile(path, 'members:\n  - name: a\n    address: [10.0.0.1\n');
    const error = await readError(path);
    expect(error.message).toMatch(new RegExp(`${path}:\\d+:\\d+: invalid YAML`));
  });

  it('refuses a file that is neither a list nor { members }', async () => {
    const path = join(dir, 'm.yaml');
    await writeFile(path, 'name: a\n');
    expect((await readError(path)).message).toContain('expected a list of members or { members: [...] }');
  });

  it('treats an empty file as an error, not as no members', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, '  \n');
    expect((await readError(path)).message).toContain('is empty (write [] for no members)');
    await writeFile(path, '[]');
    expect(await readMemberFile('m', path)).toEqual([]);
  });

  it('a missing file is an error waiting cannot fix', async () => {
    const error = await readError(join(dir, 'nope.yaml'));
    expect(error.message).toContain('does not exist');
    expect(error.retryable).toBe(false);
  });
});

describe('file source', () => {
  it('delivers the file at start, then follows an atomic replace and an in-place write', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, JSON.stringify([{ name: 'a', address: '10.0.0.1' }]));
    const { snapshots, started } = start(path);
    await started;
    await waitFor(() => snapshots.length === 1, 'first snapshot');
    await replace(path, JSON.stringify([{ name: 'b', address: '10.0.0.2' }]));
    await waitFor(() => snapshots.at(-1)?.[0]?.name === 'b', 'snapshot after an atomic replace');
    await writeFile(path, JSON.stringify([{ name: 'c', address: '10.0.0.3' }]));
    await waitFor(() => snapshots.at(-1)?.[0]?.name === 'c', 'snapshot after an in-place write');
  });

  it('keeps quiet on a parse error (reports it) and recovers when the file is fixed', async () => {
    const path = join(dir, 'm.yaml');
    await writeFile(path, '- { name: a, address: 10.0.0.1 }\n');
    const { snapshots, errors, started } = start(path);
    await started;
    await waitFor(() => snapshots.length === 1, 'first snapshot');
    await replace(path, '- { name: a, address: [\n');
    await waitFor(() => errors.length > 0, 'a parse error');
    expect(errors[0]!.message).toContain('invalid YAML');
    expect(snapshots).toHaveLength(1);
    await replace(path, '- { name: b, address: 10.0.0.2 }\n');
    await waitFor(() => snapshots.length === 2, 'a snapshot after the fix');
  });

  it('reports a deleted file, keeps the last members, and reads it again when it comes back', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, '[{"name":"a","address":"10.0.0.1"}]');
    const { snapshots, errors, started } = start(path);
    await started;
    await waitFor(() => snapshots.length === 1, 'first snapshot');
    await rm(path);
    await waitFor(() => errors.some((e) => e.message.includes('was removed')), 'a removal error');
    expect(snapshots).toHaveLength(1);
    await writeFile(path, '[{"name":"b","address":"10.0.0.2"}]');
    await waitFor(() => snapshots.length === 2, 'a snapshot after the file came back');
  });

  it('reports a missing file at start and delivers once it is created', async () => {
    const path = join(dir, 'later.json');
    const { snapshots, errors, started } = start(path);
    await started;
    await waitFor(() => errors.length === 1, 'a missing-file error');
    expect((errors[0] as SourceError).retryable).toBe(false);
    await writeFile(path, '[]');
    await waitFor(() => snapshots.length === 1, 'a snapshot once the file exists');
    expect(snapshots[0]).toEqual([]);
  });
});

describe('file source, edge cases', () => {
  it('follows a member file that is a symlink into a directory swapped as a whole (as a ConfigMap is)', async () => {
    await mkdir(join(dir, 'v1'));
    await writeFile(join(dir, 'v1', 'm.json'), '[{"name":"a","address":"10.0.0.1"}]');
    await symlink('v1', join(dir, '..data'));
    await symlink('..data/m.json', join(dir, 'm.json'));
    const { snapshots, started } = start(join(dir, 'm.json'));
    await started;
    await waitFor(() => snapshots.length === 1, 'the first snapshot');
    await mkdir(join(dir, 'v2'));
    await writeFile(join(dir, 'v2', 'm.json'), '[{"name":"b","address":"10.0.0.2"}]');
    await symlink('v2', join(dir, '..data_tmp'));
    await rename(join(dir, '..data_tmp'), join(dir, '..data'));
    await waitFor(() => snapshots.at(-1)?.[0]?.name === 'b', 'the swapped content');
  });

  it('sees a symlink swapped to a good file after it dangled, and a file → directory → file sequence', async () => {
    const path = join(dir, 'm.json');
    await writeFile(join(dir, 'v1.json'), '[{"name":"a","address":"10.0.0.1"}]');
    await writeFile(join(dir, 'v2.json'), '[{"name":"b","address":"10.0.0.2"}]');
    await symlink('v1.json', path);
    const { snapshots, errors, started } = start(path);
    await started;
    await waitFor(() => snapshots.length === 1, 'the first snapshot');
    const swapLink = async (target: string) => {
      await symlink(target, join(dir, 'link.tmp'));
      await rename(join(dir, 'link.tmp'), path);
    };
    await swapLink('missing.json');
    await waitFor(() => errors.length > 0, 'the dangling link reported');
    await swapLink('v2.json');
    await waitFor(() => snapshots.at(-1)?.[0]?.name === 'b', 'the file behind the swapped link');
    await rm(path);
    await mkdir(path);
    await waitFor(() => errors.some((e) => e.message.includes('is not a regular file (it is a directory)')), 'the directory reported');
    await rm(path, { recursive: true });
    await replace(path, '[{"name":"c","address":"10.0.0.3"}]');
    await waitFor(() => snapshots.at(-1)?.[0]?.name === 'c', 'the file after the directory');
  });

  it('a stop before the watcher is ready ends start() too', async () => {
    const path = join(dir, 'm.json');
    await writeFile(path, '[]');
    const { snapshots, started } = start(path);
    await source!.stop();
    await started;
    expect(snapshots).toEqual([]);
  });
});
