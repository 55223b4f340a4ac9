import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load.js';
import { createRenderer, type Renderer } from '../src/runner/renderer.js';
import type { Member, Source } from '../src/sources/types.js';
import { median, type BenchSection } from './types.js';

const COUNT = 1_000;
const ROUNDS = 12;
const SERVER = 'server {{ m.name | slug }} {{ m.address }}:{{ m.port }} check weight {{ m.tags.weight | default: "1" | slug }}';

/** A source whose snapshot the benchmark sets. */
function settableSource(name: string): Source & { set(members: Member[]): void } {
  let emit: ((members: Member[]) => void) | undefined;
  let current: Member[] = [];
  return {
    name,
    async start(onSnapshot) {
      emit = onSnapshot;
      onSnapshot(current);
    },
    async stop() {
      emit = undefined;
    },
    set(members) {
      current = members;
      emit?.(members);
    },
  };
}

function members(portBase: number, changedPort: number): Member[] {
  return Array.from({ length: COUNT }, (_, i) => ({
    name: `web-${i}`,
    address: `10.0.${i >> 8}.${i & 255}`,
    port: i === 0 ? changedPort : portBase + i,
    tags: { zone: `z${i % 3}` },
    status: 'alive',
    source: 'cluster',
  }));
}

/** A running renderer over one settable source, and a way to time one batch from a snapshot to its event. */
async function side(dir: string, template: { contents: string; destination: string; forEach?: 'member' }) {
  const source = settableSource('cluster');
  source.set(members(20_000, 1));
  const renderer: Renderer = await createRenderer(await loadConfig({ sources: { cluster: source }, templates: [template] }, { baseDir: dir }));
  const done = (): Promise<number> =>
    new Promise((resolve) => {
      const finish = (e: { durationMs: number }): void => {
        renderer.off('rendered', finish);
        resolve(e.durationMs);
      };
      renderer.on('rendered', finish);
    });
  const first = done();
  await renderer.start();
  await first;
  return {
    renderer,
    /** Sets the snapshot and resolves with the wall time until the batch installed its files (ms). */
    async batch(next: Member[]): Promise<number> {
      const finished = done();
      const started = performance.now();
      source.set(next);
      await finished;
      return performance.now() - started;
    },
  };
}

/** Files under `dir` whose inode or mtime changed between two listings. */
async function snapshotFiles(dir: string): Promise<Map<string, string>> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.cfg'));
  const stats = await Promise.all(names.map(async (n) => [n, await stat(join(dir, n))] as const));
  return new Map(stats.map(([n, s]) => [n, `${s.ino}:${s.mtimeMs}`]));
}

/**
 * A fan-out of 1,000 members into 1,000 files against one file rendered from the same members, in the same
 * run, alternating: the time of a daemon batch (snapshot in, files installed) when every member changed, and
 * when one did.
 */
export async function run(): Promise<BenchSection> {
  const dir = await mkdtemp(join(tmpdir(), 'rosterd-bench-fan-out-'));
  const fan = await side(dir, { contents: `${SERVER.replaceAll('m.', 'member.')}\n`, destination: 'fan/{{ member.name | slug }}.cfg', forEach: 'member' });
  const single = await side(dir, { contents: `{% for m in members %}${SERVER}\n{% endfor %}`, destination: 'single/all.cfg' });
  const times = { fanAll: [] as number[], singleAll: [] as number[], fanOne: [] as number[], singleOne: [] as number[] };
  let writtenOnOneChange = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Every member's port moves: every file changes.
      const all = members(30_000 + (round % 2) * 1_000, 1);
      times.fanAll.push(await fan.batch(all));
      times.singleAll.push(await single.batch(all));
      // Then only web-0's port: one file of the fan-out changes.
      const before = await snapshotFiles(join(dir, 'fan'));
      const one = members(30_000 + (round % 2) * 1_000, 2 + round);
      times.fanOne.push(await fan.batch(one));
      times.singleOne.push(await single.batch(one));
      const after = await snapshotFiles(join(dir, 'fan'));
      writtenOnOneChange = Math.max(writtenOnOneChange, [...after].filter(([n, s]) => before.get(n) !== s).length);
    }
  } finally {
    await fan.renderer.stop();
    await single.renderer.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const row = (what: string, fanMs: number, singleMs: number, written: string): Record<string, string | number> => ({
    batch: what,
    'fan-out, 1,000 files (ms)': fanMs,
    'one file, same members (ms)': singleMs,
    'fan-out / one file': `${(fanMs / singleMs).toFixed(1)}×`,
    'files written by the fan-out': written,
  });
  return {
    title: `Fan-out: ${COUNT} members into ${COUNT} files vs one file, daemon batch time (median of ${ROUNDS})`,
    rows: [
      row('every member changed', median(times.fanAll), median(times.singleAll), String(COUNT)),
      row('one member changed', median(times.fanOne), median(times.singleOne), `${writtenOnOneChange} (most in any round)`),
    ],
    notes: [
      'A batch is timed from the snapshot handed to the renderer to its `rendered` event: render of every item in the render process, a read of every destination, then a candidate, rename and directory fsync per changed file, and the record of the files.',
      'No check and no reload: with them, a fan-out runs its check once per changed file and its reload once per batch.',
    ],
  };
}
