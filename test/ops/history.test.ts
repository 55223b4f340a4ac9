import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import type { HistoryEntry } from '../../src/ops/history.js';
import { runCli, type Daemon } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { useWorkspace } from '../helpers/workspace.js';

const ws = useWorkspace();
const at = ws.at;

/** Replaces members.json with these members (address 10.0.0.N), tags as given. */
async function members(...list: { name: string; tags?: Record<string, string> }[]): Promise<void> {
  await writeFile(at('members.tmp'), JSON.stringify(list.map((m, i) => ({ address: `10.0.0.${i + 1}`, ...m }))));
  await rename(at('members.tmp'), at('members.json'));
}

async function history(base: string, query = ''): Promise<HistoryEntry[]> {
  const body = (await (await fetch(`${base}/history${query}`)).json()) as { entries: HistoryEntry[] };
  return body.entries;
}

/** Waits until the history holds `count` entries of `template`; returns them. */
function entriesOf(base: string, template: string, count: number): Promise<HistoryEntry[]> {
  return waitFor(async () => {
    const entries = await history(base, `?template=${template}`);
    return entries.length >= count ? entries : undefined;
  }, `${count} history entries of ${template}`);
}

describe('render history', () => {
  it('records every outcome: written, unchanged, guarded, check failed, reload failed with rollback, reload ok; served as JSON and by rosterd history', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const config = {
      sources: { web: { type: 'file', path: 'members.json' } },
      templates: [
        {
          name: 'app',
          contents: '{% for m in members %}server {{ m.name }}\n{% endfor %}',
          destination: 'app.cfg',
          minMembers: 2,
          // Fails, with two output lines (one with a terminal escape), when a member named "bad" is in the candidate.
          check: `if grep -q bad {{candidate}}; then printf 'first line\\n\\033[2Jcheck says: bad member\\n'; exit 1; fi`,
          reload: `if [ -e ${at('fail-reload')} ]; then echo 'reload broke'; exit 3; fi`,
        },
      ],
      http: { listen: `127.0.0.1:${port}` },
      history: { file: 'history.jsonl' },
    };
    await writeFile(at('renderer.config.json'), JSON.stringify(config));
    await members({ name: 'a' }, { name: 'b' });
    const daemon: Daemon = ws.startDaemon();

    let entries = await entriesOf(base, 'app', 1);
    expect(entries[0]).toMatchObject({ template: 'app', outcome: 'written', members: 2, trigger: { kind: 'start' }, reload: { ok: true, path: 'reload' } });
    expect(entries[0]!.reload!.durationMs).toBeGreaterThanOrEqual(0);
    expect(entries[0]!.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(entries[0]!.files).toEqual([
      { path: at('app.cfg'), change: 'created', hash: entries[0]!.hash, diff: expect.stringContaining('+server a\n+server b\n') },
    ]);

    // A tag changes, the output does not: unchanged, and the trigger names the member.
    await members({ name: 'a' }, { name: 'b', tags: { zone: 'x' } });
    entries = await entriesOf(base, 'app', 2);
    expect(entries[1]).toMatchObject({ outcome: 'unchanged', hash: entries[0]!.hash, trigger: { kind: 'members', sources: [{ source: 'web', joined: [], left: [], changed: ['b'] }] } });
    expect(entries[1]!.files).toBeUndefined();

    // minMembers refuses one member.
    await members({ name: 'a' });
    entries = await entriesOf(base, 'app', 3);
    expect(entries[2]).toMatchObject({ outcome: 'guarded', trigger: { sources: [{ left: ['b'] }] } });
    expect(entries[2]!.reason).toContain('minMembers');

    // The check rejects the candidate: the command's last output lines are kept.
    await members({ name: 'a' }, { name: 'bad' });
    entries = await entriesOf(base, 'app', 4);
    expect(entries[3]).toMatchObject({ outcome: 'check-failed', output: ['first line', '\u001b[2Jcheck says: bad member'] });
    expect(entries[3]!.reason).toContain('check');

    // The reload fails: the previous file is put back.
    await writeFile(at('fail-reload'), '');
    await members({ name: 'a' }, { name: 'c' });
    entries = await entriesOf(base, 'app', 5);
    expect(entries[4]).toMatchObject({ outcome: 'reload-failed', output: ['reload broke'], reload: { ok: false, path: 'reload', rolledBack: true } });
    expect(entries[4]!.files![0]!.diff).toContain('+server c');
    expect(await readFile(at('app.cfg'), 'utf8')).toBe('server a\nserver b\n');

    // And works again.
    await rm(at('fail-reload'));
    await members({ name: 'a' }, { name: 'd' });
    entries = await entriesOf(base, 'app', 6);
    expect(entries[5]).toMatchObject({ outcome: 'written', reload: { ok: true } });
    expect(entries[5]!.files![0]!.diff).toMatch(/-server b\n\+server d\n/);
    expect(entries.map((e) => e.seq)).toEqual(entries.map((e) => e.seq).sort((x, y) => x - y));

    // The CLI reads the same history from the running daemon; the terminal escape is shown, not sent.
    const cli = await runCli(['history', '--url', base, '--diff'], { cwd: ws.dir });
    expect(cli.code).toBe(0);
    const text = cli.stdout;
    expect(text).not.toContain('\u001b');
    for (const expected of [
      'app  written, reloaded',
      'app  unchanged',
      'trigger: web: ~1 (b)',
      'app  refused by a guard',
      'app  refused by the check',
      '  | \\u{1b}[2Jcheck says: bad member',
      'reload failed after',
      'rolled back',
      '    +server d',
    ])
      expect(text).toContain(expected);
    // It finds the endpoint in the config too, and narrows by --limit.
    const last = await runCli(['history', '--limit', '1', '--json'], { cwd: ws.dir });
    expect(last.code).toBe(0);
    expect((JSON.parse(last.stdout) as HistoryEntry[]).map((e) => e.seq)).toEqual([entries[5]!.seq]);

    // The file holds every entry, one JSON object a line.
    await waitFor(async () => (await readFile(at('history.jsonl'), 'utf8').catch(() => '')).trim().split('\n').length === 6, 'six lines in the history file');
    const lines = (await readFile(at('history.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as HistoryEntry);
    expect(lines.map((l) => l.outcome)).toEqual(['written', 'unchanged', 'guarded', 'check-failed', 'reload-failed', 'written']);
    expect(await daemon.stop('SIGTERM')).toBe(0);
  });

  it('records each file of a fan-out template, created, modified and removed, with its diff', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    await writeFile(
      at('renderer.config.json'),
      JSON.stringify({
        sources: { web: { type: 'file', path: 'members.json' } },
        templates: [{ name: 'sites', forEach: 'member', prune: true, contents: 'member {{ member.name }} {{ member.tags.v }}\n', destination: 'sites/{{ member.name }}.conf' }],
        http: { listen: `127.0.0.1:${port}` },
      }),
    );
    await members({ name: 'a', tags: { v: '1' } }, { name: 'b', tags: { v: '1' } });
    ws.startDaemon();
    await entriesOf(base, 'sites', 1);
    await members({ name: 'a', tags: { v: '2' } }, { name: 'c', tags: { v: '1' } });
    const entries = await entriesOf(base, 'sites', 2);
    expect(entries[0]!.files!.map((f) => [f.path, f.change])).toEqual([
      [at('sites/a.conf'), 'created'],
      [at('sites/b.conf'), 'created'],
    ]);
    const files = Object.fromEntries(entries[1]!.files!.map((f) => [f.path, f]));
    expect(files[at('sites/a.conf')]).toMatchObject({ change: 'modified', diff: expect.stringMatching(/-member a 1\n\+member a 2\n/) });
    expect(files[at('sites/c.conf')]).toMatchObject({ change: 'created', diff: expect.stringContaining('+member c 1') });
    expect(files[at('sites/b.conf')]).toMatchObject({ change: 'removed', diff: expect.stringContaining('-member b 1') });
    expect(files[at('sites/b.conf')]!.hash).toBeUndefined();
    expect(entries[1]!.trigger.sources[0]).toMatchObject({ joined: ['c'], left: ['b'], changed: ['a'] });
  });

  it('keeps the history file within its bound: rotated to .1 at maxFileBytes, no more files than keepFiles', async () => {
    await writeFile(
      at('renderer.config.json'),
      JSON.stringify({
        sources: { web: { type: 'file', path: 'members.json' } },
        templates: [{ name: 'app', contents: '{% for m in members %}{{ m.name }} {{ m.tags.pad }}\n{% endfor %}', destination: 'app.cfg' }],
        history: { file: 'log/history.jsonl', maxFileBytes: 4096, keepFiles: 1 },
      }),
    );
    const pad = 'x'.repeat(300);
    await members({ name: 'm0', tags: { pad } });
    const daemon = ws.startDaemon();
    // No endpoint: the file alone keeps the history. Each render adds about 1 KB.
    for (let i = 1; i <= 12; i++) {
      await daemon.waitForLog(/^wrote /, { since: 0 });
      const before = daemon.logs.length;
      await members({ name: `m${i}`, tags: { pad } });
      await daemon.waitForLog(/^wrote /, { since: before });
    }
    await waitFor(async () => (await stat(at('log/history.jsonl.1')).catch(() => undefined)) !== undefined, 'a rotated file');
    expect(await daemon.stop('SIGTERM')).toBe(0);
    const current = (await readFile(at('log/history.jsonl'), 'utf8')).trim().split('\n');
    const rotated = (await readFile(at('log/history.jsonl.1'), 'utf8')).trim().split('\n');
    expect((await stat(at('log/history.jsonl'))).size).toBeLessThanOrEqual(4096);
    expect((await stat(at('log/history.jsonl.1'))).size).toBeLessThanOrEqual(4096);
    await expect(stat(at('log/history.jsonl.2'))).rejects.toThrow();
    // The newest entries are in the current file, in order, each line whole.
    const seqs = [...rotated, ...current].map((l) => (JSON.parse(l) as HistoryEntry).seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(seqs.at(-1)).toBe(13);
  });

  it('rosterd history says clearly when no daemon answers', async () => {
    const port = await freePort();
    const run = await runCli(['history', '--url', `http://127.0.0.1:${port}`]);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain(`cannot read the history from http://127.0.0.1:${port}: connect ECONNREFUSED`);
  });
});
