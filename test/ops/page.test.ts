import { EventEmitter } from 'node:events';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { defineConfig } from '../../src/config/define.js';
import type { FleetState } from '../../src/fleet/monitor.js';
import type { FleetView } from '../../src/fleet/survey.js';
import { silentLogger } from '../../src/logger.js';
import { createHistory } from '../../src/ops/history.js';
import { startStatusServer } from '../../src/ops/http.js';
import { createMetrics } from '../../src/ops/metrics.js';
import { createRenderer } from '../../src/runner/renderer.js';
import type { Member, Source } from '../../src/sources/types.js';
import { launchBrowser } from '../helpers/browser.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';
import { useWorkspace } from '../helpers/workspace.js';

/** The screenshot in docs/operations.md, written by the first test below. */
const SCREENSHOT = fileURLToPath(new URL('../../docs/images/status-page.png', import.meta.url));
/** A member name that is markup: the page must show it as these characters. */
const HOSTILE = '<img src=x onerror="window.pwned=1">web-3';

const ws = useWorkspace();
let browser: Browser;
beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
});

describe('the status page in Chromium', () => {
  it('shows sources, templates, the fleet and the history with diffs; member names as text; updates itself (and writes the docs screenshot)', async () => {
    // A fixed directory and clock, and a source fed by the test: the screenshot is the same on every run.
    const demo = join(tmpdir(), 'rosterd-status-page');
    await rm(demo, { recursive: true, force: true });
    await mkdir(demo, { recursive: true });
    let push: (members: Member[]) => void = () => undefined;
    const source: Source = {
      name: 'web',
      async start(onSnapshot) {
        push = onSnapshot;
      },
      async stop() {},
    };
    const member = (name: string, i: number, tags: Record<string, string> = {}): Member => ({ name, address: `10.0.0.${i}`, port: 8080, tags, status: 'alive', source: 'web' });
    const renderer = await createRenderer(
      defineConfig({
        sources: { web: source },
        templates: [
          {
            name: 'haproxy',
            contents: 'backend web\n{% for m in members %}  server {{ m.name | slug }} {{ m.address }}:{{ m.port }} check\n{% endfor %}',
            destination: join(demo, 'haproxy.cfg'),
            minMembers: 2,
          },
        ],
      }),
    );
    const history = createHistory(renderer, { entries: 100, maxDiffBytes: 65_536 }, silentLogger());
    const metrics = createMetrics(renderer, 'test');
    const view = (lb3: 'differs' | 'ok'): FleetView => {
      const good = 'a1b2c3d4e5f6'.repeat(5) + 'a1b2';
      const other = '9f8e7d6c5b4a'.repeat(5) + '9f8e';
      const node = (name: string, state: 'ok' | 'differs') => ({
        node: name,
        valid: true,
        omitted: 0,
        flagged: state !== 'ok',
        lagging: false,
        templates: [{ template: 'haproxy', hash: state === 'ok' ? good : other, members: state === 'ok' ? 3 : 2, changedAt: Date.UTC(2026, 5, 1, 9, 0), state }],
      });
      return {
        askedAt: Date.UTC(2026, 5, 1, 9, 3),
        lagMs: 30_000,
        nodes: [node('lb-1', 'ok'), node('lb-2', 'ok'), node('lb-3', lb3)],
        templates: [{ template: 'haproxy', majority: good, majoritySince: Date.UTC(2026, 5, 1, 9, 0), split: false, ok: lb3 === 'ok' ? 3 : 2, differing: lb3 === 'ok' ? 0 : 1, lagging: 0 }],
      };
    };
    const fleet = Object.assign(new EventEmitter<{ update: [] }>(), { view: view('differs'), self: 'lb-1', lastError: undefined, source: 'cluster' } satisfies FleetState);

    // The renders happen on a fixed clock (Date and performance, so durations are 0 ms).
    vi.useFakeTimers({ toFake: ['Date', 'performance'], now: Date.UTC(2026, 5, 1, 9, 0) });
    let server: Awaited<ReturnType<typeof startStatusServer>> | undefined;
    try {
      await renderer.start();
      const settled = (count: number) => waitFor(() => history.entries().length >= count, `${count} renders`);
      push([member('web-1', 1), member('web-2', 2)]);
      await settled(1);
      vi.setSystemTime(Date.UTC(2026, 5, 1, 9, 1));
      push([member('web-1', 1), member('web-2', 2, { zone: 'b' }), member(HOSTILE, 3)]);
      await settled(2);
      vi.setSystemTime(Date.UTC(2026, 5, 1, 9, 2));
      push([member('web-1', 1)]);
      await settled(3);
      vi.useRealTimers();

      server = await startStatusServer({ listen: `127.0.0.1:${await freePort()}`, renderer, metrics, logger: silentLogger(), history, fleet, version: '1.0.0' });
      const page = await browser.newPage({ viewport: { width: 1100, height: 800 } });
      const response = await page.goto(`http://${server.address}/`);
      expect(response?.headers()['content-security-policy']).toContain("default-src 'none'");
      await page.locator('#live', { hasText: 'live' }).waitFor();

      // What a person sees: the sections, the states, the trigger in words.
      for (const heading of ['Sources', 'Templates', 'Fleet', 'History']) await expect(page.getByRole('heading', { name: heading }).isVisible()).resolves.toBe(true);
      const templates = page.locator('#templates tbody tr');
      await expect(templates.innerText()).resolves.toMatch(/haproxy\s+.*haproxy\.cfg\s+failing\s+2026-06-01 09:02:00 guarded\s+2026-06-01 09:01:00/);
      const entries = page.locator('#history details');
      await expect(entries.count()).resolves.toBe(3);
      await expect(entries.nth(0).locator('summary').innerText()).resolves.toContain('haproxy refused by a guard');
      await expect(entries.nth(1).locator('summary').innerText()).resolves.toContain(`web: +1 (${HOSTILE}) ~1 (web-2)`);

      // The hostile name is text: no element was made of it, no script ran.
      await page.locator('#members-web summary').click();
      await expect(page.locator('#members-web li').allInnerTexts()).resolves.toEqual(['web-1']);
      await entries.nth(1).locator('summary').click();
      const diff = entries.nth(1).locator('pre');
      await expect(diff.innerText()).resolves.toContain('+  server _img_src_x_onerror__window.pwned_1__web-3-6af13b 10.0.0.3:8080 check');
      await expect(page.locator('img').count()).resolves.toBe(0);
      await expect(page.evaluate('typeof window.pwned')).resolves.toBe('undefined');

      // The fleet: lb-3 disagrees with the majority.
      const lb3 = page.locator('#fleet tr', { hasText: 'lb-3' });
      await expect(lb3.innerText()).resolves.toContain('disagrees');
      await expect(page.locator('#fleet tr', { hasText: 'lb-1' }).innerText()).resolves.toContain('(this rosterd)');
      await page.screenshot({ path: SCREENSHOT, fullPage: true });
      // /fleet serves the same survey as JSON.
      await expect((await fetch(`http://${server.address}/fleet`)).json()).resolves.toEqual({ source: 'cluster', self: 'lb-1', lastError: null, view: view('differs') });

      // Live: the fleet heals and a render happens, and the open page shows both without a reload.
      fleet.view = view('ok');
      fleet.emit('update');
      await page.locator('#fleet', { hasText: '3 ok, 0 differ' }).waitFor({ timeout: 10_000 });
      await expect(page.locator('#fleet').innerText()).resolves.not.toContain('disagrees');
      push([member('web-1', 1), member('web-4', 4)]);
      await page.locator('#history details').nth(3).waitFor({ timeout: 10_000 });
      await expect(page.locator('#history details').first().innerText()).resolves.toContain('haproxy written · web: +1 (web-4) · 2 members');
      // The entry opened before the update stays open.
      await expect(page.locator('#history details[open]').count()).resolves.toBe(1);
      await page.close();
    } finally {
      vi.useRealTimers();
      await server?.close();
      await history.close();
      metrics.close();
      await renderer.stop();
      await rm(demo, { recursive: true, force: true });
    }
  });

  it("a daemon's page is readable without JavaScript, names its sources and says there is no fleet without Serf", async () => {
    const port = await freePort();
    await writeFile(
      join(ws.dir, 'renderer.config.json'),
      JSON.stringify({
        sources: { web: { type: 'file', path: 'members.json' } },
        templates: [
          { name: 'app', contents: '{% for m in members %}{{ m.name }}\n{% endfor %}', destination: 'app.cfg' },
          { name: 'big', contents: '{% for i in (1..2000) %}line {{ i }}\n{% endfor %}', destination: 'big.cfg' },
        ],
        http: { listen: `127.0.0.1:${port}` },
      }),
    );
    const writeMembers = async (names: string[]): Promise<void> => {
      await writeFile(ws.at('m.tmp'), JSON.stringify(names.map((name, i) => ({ name, address: `10.0.0.${i + 1}` }))));
      await rename(ws.at('m.tmp'), ws.at('members.json'));
    };
    await writeMembers(['a', HOSTILE]);
    const daemon = ws.startDaemon();
    await daemon.waitForLog(/^wrote /);

    const context = await browser.newContext({ javaScriptEnabled: false });
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${port}/`);
    await expect(page.locator('#live').innerText()).resolves.toBe('static');
    await expect(page.locator('#sources tbody').innerText()).resolves.toMatch(/web\s+file\s+up\s+2/);
    await expect(page.locator('#fleet').innerText()).resolves.toContain('no Serf source, no fleet');
    await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${port}/history`)).json()) as { entries: unknown[] }).entries.length === 2, 'both first renders');
    await page.reload();
    await expect(page.locator('#history summary', { hasText: 'app' }).innerText()).resolves.toContain('app written · start · 2 members');
    // A long diff is cut on the page, which points to /history for the rest.
    const big = page.locator('#history details', { hasText: 'big written' });
    // Opened by a click; the page without JavaScript refreshes itself every 10 s, which closes it again, so
    // a slow machine may need another click.
    await waitFor(async () => {
      if (!(await big.locator('pre').isVisible())) await big.locator('summary').click();
      return big.locator('pre').isVisible();
    }, 'the diff of big shown');
    const diff = await big.textContent();
    expect(diff).toMatch(/line 700\n[\s\S]*\d+ more characters in \/history/);
    expect(diff).not.toContain('line 2000');
    // Closed <details> hide their text from a person; the names are there as text once opened.
    await expect(page.locator('#members-web li').allTextContents()).resolves.toEqual([HOSTILE, 'a']);
    await expect(page.locator('img').count()).resolves.toBe(0);
    await context.close();

    // /fleet says the same as JSON.
    await expect((await fetch(`http://127.0.0.1:${port}/fleet`)).json()).resolves.toEqual({ source: null, view: null });
    // With JavaScript, the page follows the daemon.
    const live = await browser.newPage();
    await live.goto(`http://127.0.0.1:${port}/`);
    await live.locator('#live', { hasText: 'live' }).waitFor();
    await writeMembers(['a', 'b']);
    // Without a reload of the page: the new entry arrives over /events.
    await live.locator('#history summary', { hasText: 'app written · web: +1 (b)' }).waitFor({ timeout: 10_000 });
    await live.close();
    expect(await daemon.stop('SIGTERM')).toBe(0);
  }, 90_000); // a daemon, two browser contexts and a dozen page steps: slow on a busy machine
});
