import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { goldenPath } from '../../src/runner/template-test.js';
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

const at = (...names: string[]): string => join(dir, ...names);

/** A config in the temp directory: a file source `web` (never read by `rosterd test`) and the given templates. */
async function setup(templates: Record<string, unknown>[], fixtures: Record<string, string> = { 'web.yaml': '- { name: a, address: 10.0.0.1, port: 80, tags: { zone: z1 } }\n- { name: b, address: 10.0.0.2, port: 81, tags: { zone: z2 } }\n' }): Promise<string> {
  await writeFile(at('renderer.config.json'), JSON.stringify({ sources: { web: { type: 'file', path: 'live-members.json' } }, templates }));
  await mkdir(at('fixtures'), { recursive: true });
  for (const [name, text] of Object.entries(fixtures)) await writeFile(at('fixtures', name), text);
  return at('renderer.config.json');
}

const SERVERS = { contents: '{% for m in members %}server {{ m.name }} {{ m.address }}:{{ m.port }}\n{% endfor %}', destination: 'out/app.cfg' };
const PER_MEMBER = { contents: 'server {{ member.name }} {{ member.address }}\n', destination: 'out/members/{{ member.name | slug }}.cfg', forEach: 'member' };

const test = (config: string, ...extra: string[]) => runCli(['test', '-c', config, '--fixtures', at('fixtures'), ...extra]);

describe('rosterd test', () => {
  it('passes on the quickstart example and its fixtures', async () => {
    const run = await runCli(['test', '-c', join(QUICKSTART, 'renderer.config.yaml'), '--fixtures', join(QUICKSTART, 'fixtures')]);
    expect(run.stdout).toBe(['ok           expected/out/haproxy.cfg', 'ok           expected/out/zones/a.cfg', 'ok           expected/out/zones/b.cfg', '3 output(s): 3 match', ''].join('\n'));
    expect(run.code).toBe(0);
    // Nothing was installed: the example's own output directory is not written by a test.
    await expect(stat(join(QUICKSTART, 'fixtures', 'out'))).rejects.toThrow(/ENOENT/);
  });

  it('--update writes the golden files of every output, fan-out files included, and says which; then the test passes', async () => {
    const config = await setup([SERVERS, PER_MEMBER]);
    const update = await test(config, '--update');
    expect(update.code).toBe(0);
    expect(update.stdout).toContain('updated      expected/out/app.cfg\n');
    expect(update.stdout).toContain('updated      expected/out/members/a.cfg\n');
    expect(update.stdout).toContain('updated      expected/out/members/b.cfg\n');
    expect(update.stdout).toContain('3 output(s): 0 match, 3 updated');
    expect(await readFile(at('fixtures/expected/out/app.cfg'), 'utf8')).toBe('server a 10.0.0.1:80\nserver b 10.0.0.2:81\n');
    expect(await readFile(at('fixtures/expected/out/members/b.cfg'), 'utf8')).toBe('server b 10.0.0.2\n');
    const again = await test(config);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('3 output(s): 3 match');
    // Installs nothing, anywhere.
    await expect(stat(at('out'))).rejects.toThrow(/ENOENT/);
  });

  it('a mismatch exits 1 with a unified diff from the golden file to the output', async () => {
    const config = await setup([SERVERS]);
    await mkdir(at('fixtures/expected/out'), { recursive: true });
    await writeFile(at('fixtures/expected/out/app.cfg'), 'server a 10.0.0.1:80\nserver old 10.0.0.9:80\n');
    const run = await test(config);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('DIFFERS      expected/out/app.cfg\n--- a/out/app.cfg\n+++ b/out/app.cfg\n');
    expect(run.stdout).toContain('-server old 10.0.0.9:80\n+server b 10.0.0.2:81\n');
    expect(run.stdout).toContain('1 output(s): 0 match, 1 failed');
  });

  it('a fan-out file that disappeared from the render is reported, and removed by --update', async () => {
    const config = await setup([PER_MEMBER]);
    expect((await test(config, '--update')).code).toBe(0);
    await writeFile(at('fixtures/web.yaml'), '- { name: a, address: 10.0.0.1 }\n');
    const run = await test(config);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('UNEXPECTED   expected/out/members/b.cfg (a golden file that no output renders)');
    const update = await test(config, '--update');
    expect(update.code).toBe(0);
    expect(update.stdout).toContain('removed      expected/out/members/b.cfg');
    await expect(stat(at('fixtures/expected/out/members/b.cfg'))).rejects.toThrow(/ENOENT/);
  });

  it('runs each template\'s check on its output; a failing check exits 1 and is not written by --update', async () => {
    const checked = at('checked.txt');
    const config = await setup([
      { ...SERVERS, check: `grep -q "server a" {{candidate}} && echo {{destination}} >> ${checked}` },
      { contents: 'broken', destination: 'out/bad.cfg', check: [join(BIN_DIR, 'exit-with'), '1', '[ALERT] bad.cfg:1 : unknown keyword'] },
    ]);
    const run = await test(config, '--update');
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('CHECK FAILED expected/out/bad.cfg: [template bad.cfg] check');
    expect(run.stdout).toContain('unknown keyword');
    expect(run.stdout).toContain('updated      expected/out/app.cfg');
    await expect(stat(at('fixtures/expected/out/bad.cfg'))).rejects.toThrow(/ENOENT/);
    // The check saw the real destination as {{destination}}, and a candidate elsewhere.
    expect(await readFile(checked, 'utf8')).toBe(`${at('out/app.cfg')}\n`);
  });

  it('reloads nothing and reads no live source', async () => {
    const config = await setup([{ ...SERVERS, reload: `touch ${at('reloaded')}` }]);
    const run = await test(config, '--update');
    expect(run.code).toBe(0);
    await expect(stat(at('reloaded'))).rejects.toThrow(/ENOENT/);
  });

  it('exits 2 when a source has no fixture, naming it and the files looked for', async () => {
    const config = await setup([SERVERS], { 'other.yaml': '[]\n' });
    const run = await test(config);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(`rosterd: no fixture in ${at('fixtures')} for source "web" (looked for web.yaml, web.yml, web.json)`);
    expect(run.stdout).toBe('');
  });

  it('exits 2 for a config error and for a broken fixture; --fixtures is required', async () => {
    const config = await setup([{ ...SERVERS, wiat: 1 }]);
    const invalid = await test(config);
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain('templates[0].wiat: unknown key');
    await rm(at('fixtures/web.yaml'));
    const good = await setup([SERVERS], { 'web.json': '[{"name": "a",' });
    const broken = await test(good);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/fixture: \[source web\] .*web\.json:1:\d+: invalid JSON/);
    const usage = await runCli(['test', '-c', good]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("required option '--fixtures <dir>' not specified");
  });

  it('fixture members pass the member gate: a bad member is dropped with a warning', async () => {
    const config = await setup([SERVERS], { 'web.json': JSON.stringify([{ name: 'a', address: '10.0.0.1', port: 80 }, { name: 'evil\nserver x 6.6.6.6', address: '10.0.0.2' }]) });
    const run = await test(config, '--update');
    expect(run.code).toBe(0);
    expect(run.stderr).toContain('dropped: name contains a control character');
    expect(await readFile(at('fixtures/expected/out/app.cfg'), 'utf8')).toBe('server a 10.0.0.1:80\n');
  });

  it('a render error or a guard that would refuse is a failure', async () => {
    const config = await setup([{ contents: '{{ nope }}', destination: 'x.cfg' }, { ...SERVERS, minMembers: 5 }]);
    const run = await test(config, '--update');
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('FAILED       x.cfg: [template x.cfg]');
    expect(run.stdout).toContain('undefined variable: nope');
    expect(run.stdout).toContain('FAILED       app.cfg: [template app.cfg] only 2 member(s), fewer than minMembers 5');
  });

  it('lists fan-out items whose destination is refused, which get no golden file', async () => {
    const config = await setup([{ ...PER_MEMBER, destination: 'out/members/{{ member.name }}.cfg' }], { 'web.yaml': '- { name: "../../escape", address: 10.0.0.1 }\n- { name: ok, address: 10.0.0.2 }\n' });
    const run = await test(config, '--update');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`refused      out/members/{{ member.name }}.cfg: "../../escape" → "out/members/../../escape.cfg": leaves ${at('out/members')}`);
    expect(run.stdout).toContain('updated      expected/out/members/ok.cfg');
  });

  it('maps a destination inside the config directory to its relative path, one outside to its absolute path', async () => {
    expect(goldenPath('/srv/cfg', '/srv/cfg/out/a.cfg')).toBe('out/a.cfg');
    expect(goldenPath('/srv/cfg', '/etc/haproxy/haproxy.cfg')).toBe('etc/haproxy/haproxy.cfg');
    expect(goldenPath('/srv/cfg', '/srv/cfg-other/x')).toBe('srv/cfg-other/x');
    const outside = join(dir, 'elsewhere');
    await mkdir(at('conf'));
    await writeFile(at('conf/renderer.config.json'), JSON.stringify({ sources: { web: { type: 'file', path: 'm.json' } }, templates: [{ ...SERVERS, destination: join(outside, 'app.cfg') }] }));
    await mkdir(at('fixtures'), { recursive: true });
    await writeFile(at('fixtures/web.yaml'), '[]\n');
    const run = await runCli(['test', '-c', at('conf/renderer.config.json'), '--fixtures', at('fixtures'), '--update']);
    expect(run.code).toBe(0);
    expect(await readFile(join(at('fixtures/expected'), outside, 'app.cfg'), 'utf8')).toBe('');
  });
});
