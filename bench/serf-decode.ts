import { pathToFileURL } from 'node:url';
import msgpack from 'msgpack-lite';
import { MsgpackScanner } from '../src/serf/scanner.js';
import { serfMemberRecord } from '../test/helpers/serf-wire.js';
import { formatSection, median, type BenchSection } from './types.js';

const MEMBERS = 20_000;
const CHUNK = 16 * 1024;

/** A `members` reply (header + body) as the agent writes it: bin `Addr`, a few string tags per member. */
function membersReply(count: number): Buffer {
  const members = Array.from({ length: count }, (_, i) =>
    serfMemberRecord(`node-${String(i).padStart(5, '0')}.dc1.example.internal`, {
      addr: [10, (i >> 16) & 255, (i >> 8) & 255, i & 255],
      tags: { role: i % 3 === 0 ? 'db' : 'web', zone: `eu-west-${i % 3}`, port: String(8000 + (i % 100)), version: '2.14.1' },
    }),
  );
  return Buffer.concat([msgpack.encode({ Seq: 2, Error: '' }), msgpack.encode({ Members: members })]);
}

function chunksOf(bytes: Buffer, size: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.subarray(at, at + size));
  return chunks;
}

/** The client's path: cut whole values with the scanner, decode each once. */
function decodeWithScanner(chunks: readonly Buffer[]): unknown[] {
  const scanner = new MsgpackScanner();
  const values: unknown[] = [];
  for (const chunk of chunks) for (const bytes of scanner.push(chunk)) values.push(msgpack.decode(bytes));
  return values;
}

/** msgpack-lite's own streaming decoder, fed the same chunks. */
function decodeWithStockDecoder(chunks: readonly Buffer[]): unknown[] {
  const decoder = msgpack.Decoder(); // typed as a factory; it also works without `new`
  const values: unknown[] = [];
  decoder.on('data', (value: unknown) => values.push(value));
  for (const chunk of chunks) decoder.decode(chunk);
  return values;
}

function time(action: () => unknown[]): { ms: number; values: unknown[] } {
  const started = performance.now();
  const values = action();
  return { ms: performance.now() - started, values };
}

/** Checks that a run decoded the header and a body with every member. */
function check(values: unknown[], what: string): void {
  const body = values[1] as { Members?: unknown[] } | undefined;
  if (values.length !== 2 || body?.Members?.length !== MEMBERS) throw new Error(`${what} decoded the wrong values`);
}

/**
 * Decoding a 20,000-member `members` reply that arrives in 16 KiB chunks: the client's scanner + one-shot
 * `msgpack.decode()` against msgpack-lite's streaming `Decoder`, on the same bytes, in the same run.
 */
export async function run(): Promise<BenchSection> {
  const reply = membersReply(MEMBERS);
  const chunks = chunksOf(reply, CHUNK);
  const scannerRounds = 7;
  const stockRounds = 3; // the stock decoder takes seconds per round
  const ours: number[] = [];
  const stock: number[] = [];
  const whole: number[] = [];

  check(decodeWithScanner(chunks), 'the scanner');
  for (let i = 0; i < scannerRounds; i++) {
    // Alternated, so that noise on a shared machine hits every path alike.
    const a = time(() => decodeWithScanner(chunks));
    check(a.values, 'the scanner');
    ours.push(a.ms);
    const c = time(() => decodeWithScanner([reply]));
    whole.push(c.ms);
    if (i < stockRounds) {
      const b = time(() => decodeWithStockDecoder(chunks));
      check(b.values, 'the stock decoder');
      stock.push(b.ms);
    }
  }

  const oursMs = median(ours);
  const stockMs = median(stock);
  return {
    title: `Serf members reply: ${MEMBERS.toLocaleString('en')} members, ${(reply.length / 1024 / 1024).toFixed(1)} MiB in ${chunks.length} chunks of 16 KiB (median ms)`,
    rows: [
      { decoder: 'scanner + msgpack.decode (client)', 'ms': oursMs, runs: scannerRounds, 'vs stock': `${(stockMs / oursMs).toFixed(1)}× faster` },
      { decoder: 'msgpack-lite Decoder (stock streaming)', 'ms': stockMs, runs: stockRounds, 'vs stock': '1×' },
      { decoder: 'scanner + msgpack.decode, reply in one piece', 'ms': median(whole), runs: scannerRounds, 'vs stock': '' },
    ],
    notes: [`Goal: the client's path ≤ 250 ms and ≥ 10× faster than the stock decoder. Here: ${oursMs.toFixed(0)} ms, ${(stockMs / oursMs).toFixed(1)}×.`],
  };
}

// Runnable alone: `node --import jiti/register bench/serf-decode.ts`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(formatSection(await run()));
}
