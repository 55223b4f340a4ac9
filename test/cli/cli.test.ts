import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

const BIN_DIR = fileURLToPath(new URL('../fixtures/bin/', import.meta.url));
const QUICKSTART = fileURLToPath(new URL('../../examples/quickstart/', import.meta.url));

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir());
});
afterEach(async () => cleanup());

const at = (name: string): string => join(dir, name);

async function setup(template: Record<string, unknown> = {}, membersJson = '[{"name":"a","address":"10.0.0.1","port":80}]'): Promise<string> {
  await writeFile(at('members.json'), membersJson);
  const config = {
    sources: { web: { type: 'file', path: 'members.json' } },
    templates: [{ contents: '{% for m in members %}server {{ m.name }} {{ m.address }}:{{ m.port }}\n{% endfor %}', destination: 'out.cfg', ...template }],
  };
  await writeFile(at('renderer.config.json'), JSON.stringify(config));
  return at('renderer.config.json');
}

/** Runs the CLI in-process with captured streams. */
async function inProcess(args: string[], cwd = dir): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (c: Buffer) => (out += c.toString()));
  stderr.on('data', (c: Buffer) => (err += c.toString()));
  const code = await main(args, { stdout, stderr, cwd, handleSignals: false });
  return { code, stdout: out, stderr: err };
}

describe('rosterd CLI', () => {
  it('render --once: exit 0, the file is written; stdout stays empty', async () => {
    await setup();
    const run = await runCli(['render', '--once'], { cwd: dir });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('');
    expect(await readFile(at('out.cfg'), 'utf8')).toBe('server a 10.0.0.1:80\n');
  });

  it('render --once --dry prints path and content to stdout and touches nothing', async () => {
    const config = await setup();
    const run = await runCli(['render', '--once', '--dry', '-c', config], { cwd: dir });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`==> ${at('out.cfg')} (would change) <==\nserver a 10.0.0.1:80\n`);
    await expect(stat(at('out.cfg'))).rejects.toThrow(/ENOENT/);
  });

  it('render --once --diff prints a unified diff against the file on disk', async () => {
    const config = await setup();
    await writeFile(at('out.cfg'), 'server old 10.0.0.9:80\n');
    const run = await runCli(['render', '--once', '--diff', '-c', config]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('-server old 10.0.0.9:80');
    expect(run.stdout).toContain('+server a 10.0.0.1:80');
    expect(await readFile(at('out.cfg'), 'utf8')).toBe('server old 10.0.0.9:80\n');
  });

  it('render --once --no-reload installs after the check and runs no reload', async () => {
    await setup({ check: `test -s {{candidate}}`, reload: `touch ${at('reloaded')}` });
    const run = await runCli(['render', '--once', '--no-reload'], { cwd: dir });
    expect(run.code).toBe(0);
    expect(await readFile(at('out.cfg'), 'utf8')).toBe('server a 10.0.0.1:80\n');
    await expect(stat(at('reloaded'))).rejects.toThrow(/ENOENT/);
  });

  it('a failed check names the line that says why, and logs the command output', async () => {
    await setup({ check: ['sh', '-c', 'echo "[NOTICE] starting"; echo "[ALERT] config : [x.cfg:3] : bad server" >&2; echo "Fatal errors found"; exit 1'] });
    const run = await runCli(['render', '--once', '--log-format', 'json'], { cwd: dir });
    expect(run.code).toBe(1);
    const logs = run.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const failure = logs.find((l) => l.code === 'E_CHECK_FAILED');
    expect(String(failure?.msg)).toContain('exited with code 1: [ALERT] config : [x.cfg:3] : bad server');
    // The command's own output goes to the log, tagged with the template and the command.
    expect(logs.find((l) => l.msg === 'Fatal errors found')).toMatchObject({ template: 'out.cfg', command: 'check', level: 40 });
  });

  it('exit 1 when a template fails at run time (check refused it), and the old file stays', async () => {
    await setup({ check: [join(BIN_DIR, 'exit-with'), '1', 'config check failed'] });
    await writeFile(at('out.cfg'), 'old\n');
    const run = await runCli(['render', '--once'], { cwd: dir });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('config check failed');
    expect(await readFile(at('out.cfg'), 'utf8')).toBe('old\n');
  });

  it('exit 2 for an invalid config; validate names the exact key and suggests the right one', async () => {
    await setup({ wiat: { min: '1s' } });
    const run = await runCli(['validate'], { cwd: dir });
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`rosterd: invalid config: ${at('renderer.config.json')}: templates[0].wiat: unknown key — did you mean "wait"?\n`);
    expect(run.stderr).not.toContain('    at ');
  });

  it('exit 2 for a template that does not compile, naming file and line', async () => {
    await writeFile(at('t.liquid'), 'ok\n{{ x | bogus }}\n');
    await setup({ contents: undefined, source: 't.liquid' });
    const run = await runCli(['validate'], { cwd: dir });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`templates[0].source: ${at('t.liquid')}:2:`);
    expect(run.stderr).toContain('bogus');
  });

  it('validate shows the template around a compile error, the failing line marked >>', async () => {
    await writeFile(at('t.liquid'), 'ok\n{{ x | bogus }}\nlast\n');
    await setup({ contents: undefined, source: 't.liquid' });
    const run = await runCli(['validate'], { cwd: dir });
    expect(run.code).toBe(2);
    const lines = run.stderr.split('\n');
    expect(lines).toContain('templates[0].source:');
    expect(lines).toContain('  >> 2| {{ x | bogus }}');
    expect(lines).toContain('     1| ok');
    expect(run.stderr).not.toContain('    at ');
  });

  it('a bug (E_INTERNAL) is printed with the stack of what was thrown, and exits 1', async () => {
    const { describeFailure } = await import('../../src/cli/main.js');
    const { exitCodeFor } = await import('../../src/cli/exit-codes.js');
    const { RosterdError } = await import('../../src/errors.js');
    const bug = new RosterdError('E_INTERNAL', 'unexpected error (a bug in rosterd) during a render: boom', { cause: new TypeError('boom') });
    const text = describeFailure(bug);
    expect(text).toMatch(/^rosterd: unexpected error \(a bug in rosterd\) during a render: boom\nTypeError: boom\n\s+at /);
    expect(exitCodeFor(bug)).toBe(1);
    expect(exitCodeFor(new RosterdError('E_HAPROXY', 'master CLI refused'))).toBe(1);
  });

  it('exit 2 for usage errors: unknown flag, render without --once, bad duration', async () => {
    await setup();
    expect((await inProcess(['render', '--once', '--bogus'])).code).toBe(2);
    const noOnce = await inProcess(['render']);
    expect(noOnce.code).toBe(2);
    expect(noOnce.stderr).toContain('render needs --once');
    const badTimeout = await inProcess(['render', '--once', '--timeout', 'soon']);
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr).toContain('--timeout: "soon" is not a duration');
  });

  it('validate exits 0 on a valid config', async () => {
    await setup();
    const run = await inProcess(['validate', '--log-format', 'json']);
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('is valid: 1 template(s), 1 source(s)');
  });

  it('exit 3 at once when the member file is missing', async () => {
    await setup();
    await writeFile(at('renderer.config.json'), JSON.stringify({ sources: { web: { type: 'file', path: 'nope.json' } }, templates: [{ contents: 'x', destination: 'out.cfg' }] }));
    const started = Date.now();
    const run = await runCli(['render', '--once', '--timeout', '20s'], { cwd: dir });
    expect(run.code).toBe(3);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(run.stderr).toContain(`member file ${at('nope.json')} does not exist`);
  });

  it('members prints a table, and JSON with --json; dropped members are warned about on stderr', async () => {
    await setup({}, '[{"name":"b","address":"10.0.0.2","tags":{"zone":"x","role":"web"}},{"name":"a","address":"10.0.0.1","port":80},{"name":"bad\\nname","address":"10.0.0.3"}]');
    const table = await inProcess(['members']);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')).toEqual([
      'SOURCE  NAME  ADDRESS   PORT  STATUS  TAGS',
      'web     a     10.0.0.1  80    alive   -',
      'web     b     10.0.0.2  -     alive   role=web,zone=x',
      '',
    ]);
    expect(table.stderr).toContain('"bad\\nname"');
    expect(table.stderr).toContain('name contains a control character');
    const json = await inProcess(['members', '--json']);
    expect(JSON.parse(json.stdout)).toEqual({
      web: [
        { name: 'a', address: '10.0.0.1', port: 80, tags: {}, status: 'alive', source: 'web' },
        { name: 'b', address: '10.0.0.2', tags: { zone: 'x', role: 'web' }, status: 'alive', source: 'web' },
      ],
    });
  });

  it('prints the version and help with exit 0', async () => {
    const version = await inProcess(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    const help = await inProcess(['render', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--dry');
  });

  it('render --once --dry prints each file of a fan-out, and what prune would remove', async () => {
    await setup({ contents: 'server {{ member.name }}\n', destination: 'out/{{ member.name }}.cfg', forEach: 'member', prune: true });
    await writeFile(at('members.json'), '[{"name":"a","address":"10.0.0.1"},{"name":"b","address":"10.0.0.2"}]');
    expect((await runCli(['render', '--once'], { cwd: dir })).code).toBe(0);
    await writeFile(at('members.json'), '[{"name":"a","address":"10.0.0.1"}]');
    const run = await runCli(['render', '--once', '--dry'], { cwd: dir });
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(`==> ${at('out/a.cfg')} (unchanged) <==\nserver a\n==> ${at('out/b.cfg')} (would be removed) <==\n`);
    expect(await readFile(at('out/b.cfg'), 'utf8')).toBe('server b\n');
  });

  it('renders the quickstart example with nothing but Node', async () => {
    const run = await runCli(['render', '--once', '--dry', '-c', join(QUICKSTART, 'renderer.config.yaml')]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('backend web');
    expect(run.stdout).toMatch(/server web-1 127\.0\.0\.1:8081 check/);
    expect(run.stdout).toMatch(/server web_2-[0-9a-f]{6} 127\.0\.0\.1:8082 check/);
    expect(run.stdout).not.toContain('web-3');
    expect(run.stdout).not.toContain('metrics');
  });
});
