import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli, type Daemon } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { useWorkspace } from '../helpers/workspace.js';

const BIN_DIR = fileURLToPath(new URL('../fixtures/bin/', import.meta.url));

const ws = useWorkspace();
const at = ws.at;
let daemon: Daemon | undefined;
const SECRET_NAME = 'member-name-that-must-not-leak';


/** Reads one sample of a metric from Prometheus text, e.g. `rosterd_renders_total{template="app"}`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('status endpoint', () => {
  it('serves /health, /ready and /metrics; counters move; /ready follows the sources; no member data in metrics', async () => {
    await ws.writeMembers(SECRET_NAME, 'b');
    const port = await freePort();
    const config = {
      sources: { web: { type: 'file', path: 'members.json' } },
      templates: [
        { name: 'app', contents: '{% for m in members %}{{ m.name }}\n{% endfor %}', destination: 'app.cfg', minMembers: 2 },
        { name: 'flaky', contents: '{{ members | size }}', destination: 'flaky.cfg', reload: [join(BIN_DIR, 'exit-with'), '1'] },
      ],
      http: { listen: `127.0.0.1:${port}` },
    };
    await writeFile(at('renderer.config.json'), JSON.stringify(config));
    daemon = ws.startDaemon();
    const base = `http://127.0.0.1:${port}`;
    const metrics = async (): Promise<string> => (await fetch(`${base}/metrics`)).text();

    await waitFor(async () => (await readFile(at('app.cfg'), 'utf8').catch(() => '')).includes('b'), 'the first render');
    expect((await fetch(`${base}/health`)).status).toBe(200);

    await waitFor(async () => sample(await metrics(), 'rosterd_reload_failures_total{template="flaky"}') === 1, 'a reload failure counted');
    let text = await metrics();
    expect(sample(text, 'rosterd_renders_total{template="app"}')).toBe(1);
    expect(sample(text, 'rosterd_source_members{source="web"}')).toBe(2);
    expect(sample(text, 'rosterd_source_up{source="web"}')).toBe(1);
    // Every counter series exists from the start, at 0.
    expect(sample(text, 'rosterd_check_failures_total{template="app"}')).toBe(0);
    expect(sample(text, 'rosterd_source_errors_total{source="web"}')).toBe(0);
    expect(text).toContain('rosterd_process_resident_memory_bytes');
    expect(text).toContain('rosterd_render_duration_seconds_bucket{le="0.005",template="app"}');
    // "flaky" failed its reload: not ready.
    const notReady = await fetch(`${base}/ready`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ ready: false, templates: [{ template: 'app', ok: true }, { template: 'flaky', ok: false }] });

    // A guard refusal is counted.
    await ws.writeMembers('b');
    await waitFor(async () => sample(await metrics(), 'rosterd_guard_refusals_total{template="app"}') === 1, 'a guard refusal counted');

    // Without the failing template, readiness follows the source.
    await writeFile(at('renderer.config.json'), JSON.stringify({ ...config, templates: [{ ...config.templates[0], minMembers: 0 }] }));
    daemon.child.kill('SIGHUP');
    await waitFor(async () => (await fetch(`${base}/ready`)).status === 200, '/ready once every template rendered');
    await rm(at('members.json'));
    await waitFor(async () => (await fetch(`${base}/ready`)).status === 503, '/ready after the source went down');
    // The state /ready saw is the state the next scrape shows: no cached numbers from before.
    expect(sample(await metrics(), 'rosterd_source_up{source="web"}')).toBe(0);
    await ws.writeMembers('c', 'd');
    await waitFor(async () => (await fetch(`${base}/ready`)).status === 200, '/ready after the source came back');

    text = await metrics();
    expect(text).not.toContain(SECRET_NAME);
    expect(text).not.toContain('10.0.0.');
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    expect(await daemon.stop('SIGTERM')).toBe(0);
  });

  it('a scrape right after a render shows it, while a flood of scrapes goes on', async () => {
    await ws.writeMembers('a');
    const port = await freePort();
    await writeFile(
      at('renderer.config.json'),
      JSON.stringify({ sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ name: 'app', contents: '{{ members | size }}', destination: 'app.cfg' }], http: { listen: `127.0.0.1:${port}` } }),
    );
    daemon = ws.startDaemon();
    const url = `http://127.0.0.1:${port}/metrics`;
    await daemon.waitForLog(/^wrote /);
    let flooding = true;
    let scrapes = 0;
    const flood = (async () => {
      while (flooding) {
        await Promise.all(Array.from({ length: 10 }, async () => (await fetch(url)).text()));
        scrapes += 10;
      }
    })();
    for (let n = 2; n <= 4; n++) {
      await waitFor(() => scrapes > 20 * n, 'scrapes of the flood');
      const since = daemon.logs.length;
      await ws.writeMembers(...Array.from({ length: n }, (_, i) => `m${i}`));
      // The log line is written just before the event: the next scrape must count the render.
      await daemon.waitForLog(/^wrote /, { since });
      const text = await (await fetch(url)).text();
      expect(sample(text, 'rosterd_renders_total{template="app"}')).toBe(n);
      expect(sample(text, 'rosterd_source_members{source="web"}')).toBe(n);
    }
    flooding = false;
    await flood;
    expect(await daemon.stop('SIGTERM')).toBe(0);
  });

  it('refuses an address it cannot listen on with a config error', async () => {
    await ws.writeMembers('a');
    await writeFile(at('renderer.config.json'), JSON.stringify({ sources: { web: { type: 'file', path: 'members.json' } }, templates: [{ contents: 'x', destination: 'o' }] }));
    const run = await runCli(['run', '--listen', 'not-an-address'], { cwd: ws.dir });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--listen: listen address "not-an-address" is not "host:port"');
  });
});

describe('waiting warnings', () => {
  it('the daemon warns while a template waits for a source, naming the template, the source and its error', async () => {
    const port = await freePort(); // nothing listens there
    await writeFile(
      at('renderer.config.json'),
      JSON.stringify({
        sources: { cluster: { type: 'serf', rpcAddr: `127.0.0.1:${port}` } },
        templates: [{ name: 'lb', contents: 'x', destination: 'o' }],
        warnInterval: '200ms',
      }),
    );
    daemon = ws.startDaemon();
    const first = await daemon.waitForLog(/^waiting for source cluster/);
    expect(first).toMatchObject({ template: 'lb', source: 'cluster', level: 40 });
    expect(String(first.lastError)).toContain('ECONNREFUSED');
    await daemon.waitForLog(/^waiting for source cluster/, { since: daemon.logs.indexOf(first) + 1 });
  });

  it('render --once warns while a template waits for a source, naming it, then exits 3 after --timeout', async () => {
    const port = await freePort(); // nothing listens there
    await writeFile(
      at('renderer.config.json'),
      JSON.stringify({
        sources: { cluster: { type: 'serf', rpcAddr: `127.0.0.1:${port}` } },
        templates: [{ name: 'lb', contents: 'x', destination: 'o' }],
        warnInterval: '200ms',
      }),
    );
    const run = await runCli(['render', '--once', '--timeout', '1s', '--log-format', 'json'], { cwd: ws.dir });
    expect(run.code).toBe(3);
    const warnings = run.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => String(l.msg).startsWith('waiting for source cluster'));
    expect(warnings.length).toBeGreaterThanOrEqual(2);
    expect(warnings[0]).toMatchObject({ template: 'lb', source: 'cluster', level: 40 });
    expect(String(warnings[0]!.msg)).toMatch(/no first snapshot after \d+ms; last error: .*ECONNREFUSED/);
    expect(run.stderr).toContain('no first snapshot within 1000 ms');
  });
});
