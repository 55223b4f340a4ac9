import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import msgpack from 'msgpack-lite';
import { BIN } from '../test/helpers/cli.js';
import { fakeAgent, header, reply } from '../test/helpers/fake-serf.js';
import { serfMemberRecord } from '../test/helpers/serf-wire.js';
import { tempDir } from '../test/helpers/tmp.js';
import { waitFor } from '../test/helpers/wait.js';
import { cpuTicks, TICKS_PER_SECOND } from './proc.js';
import { formatSection, type BenchSection } from './types.js';

/**
 * What the Serf source costs while nothing changes, with the default settings (log hints, a poll every second
 * at most), on 100 and on 10,000 members: the `rosterd run` daemon against a fake agent that answers `members`
 * with that many members and logs nothing. The poll waits longer when a read is costly, so that polling takes
 * at most 2% of the time.
 */

const SIZES = [100, 10_000];
const IDLE_SECONDS = 20;

export async function run(): Promise<BenchSection> {
  const rows: Record<string, string | number>[] = [];
  for (const size of SIZES) rows.push(await idle(size));
  return {
    title: `Serf source, idle: the daemon's CPU with no membership change (default settings, ${IDLE_SECONDS} s)`,
    rows,
    notes: [
      'A fake agent answers `members` with N members (about 180 bytes each, as the agent sends them); the source also has its event stream and log monitor open. Decode: the time the bench process takes to decode one such reply, for scale.',
    ],
  };
}

async function idle(size: number): Promise<Record<string, string | number>> {
  const members = Array.from({ length: size }, (_, i) =>
    serfMemberRecord(`node-${String(i).padStart(5, '0')}`, { addr: [10, 1, (i >> 8) & 255, i & 255], tags: { role: 'web', port: String(8000 + (i % 100)), zone: `z${i % 3}` } }),
  );
  const body = msgpack.encode({ Members: members });
  const decodeStarted = performance.now();
  msgpack.decode(body);
  const decodeMs = performance.now() - decodeStarted;
  const agent = await fakeAgent((request, socket) => {
    if (request.command === 'members') socket.write(Buffer.concat([header(request.seq), body]));
    else socket.write(reply(request.seq));
  });
  const { path: dir, cleanup } = await tempDir('rosterd-bench-serf-idle-');
  try {
    const config = join(dir, 'renderer.config.json');
    await writeFile(
      config,
      JSON.stringify({ sources: { cluster: { type: 'serf', rpcAddr: agent.address } }, templates: [{ contents: '{{ members.size }}\n', destination: 'out.txt' }] }),
    );
    const daemon = spawn(process.execPath, [BIN, 'run', '-c', config, '--log-level', 'warn'], { cwd: dir, stdio: 'ignore' });
    try {
      await waitFor(async () => (await readFile(join(dir, 'out.txt'), 'utf8').catch(() => '')) === `${size}\n`, `the first render of ${size} members`, { timeout: 30_000 });
      // Past start-up: compiling, the first reads.
      await new Promise((resolve) => setTimeout(resolve, 3000));
      const reads = (): number => agent.requests.filter((r) => r.command === 'members').length;
      const [cpuBefore, readsBefore] = [await cpuTicks(daemon.pid!), reads()];
      await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
      const [cpuAfter, readsAfter] = [await cpuTicks(daemon.pid!), reads()];
      const cpuMs = ((cpuAfter.own - cpuBefore.own) * 1000) / TICKS_PER_SECOND;
      return {
        members: size,
        'reply size (KiB)': Math.round((body.length + 13) / 1024),
        'decode (ms)': decodeMs,
        'members reads per second': (readsAfter - readsBefore) / IDLE_SECONDS,
        'idle CPU (ms per second)': cpuMs / IDLE_SECONDS,
        'idle CPU (% of a core)': cpuMs / IDLE_SECONDS / 10,
      };
    } finally {
      const exited = new Promise((resolve) => daemon.once('exit', resolve));
      daemon.kill('SIGTERM');
      await exited;
    }
  } finally {
    await agent.close();
    await cleanup();
  }
}

// Runnable alone: `node --import jiti/register bench/serf-idle.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(formatSection(await run()));
}
