/**
 * A command's output: the end of stdout and stderr combined (where errors usually are), for results and logs,
 * and each stream split into lines as it arrives, for a listener.
 */
import { StringDecoder } from 'node:string_decoder';

/** Called with every line of output as it arrives (without its line ending); a last partial line at exit. */
export type LineListener = (stream: 'stdout' | 'stderr', line: string) => void;

/** How much output a result keeps (the end of it, where errors usually are). */
export const OUTPUT_LIMIT = 8 * 1024;
/** A line longer than this is passed to the listener in pieces, so that output without newlines cannot grow memory. */
const MAX_LINE = 64 * 1024;

/** Keeps the end of the combined output and splits each stream into lines for the listener. */
export class OutputCollector {
  readonly #onLine: LineListener | undefined;
  readonly #decoders = { stdout: new StringDecoder('utf8'), stderr: new StringDecoder('utf8') };
  readonly #partial = { stdout: '', stderr: '' };
  #tail = '';

  constructor(onLine: LineListener | undefined) {
    this.#onLine = onLine;
  }

  /** The last {@link OUTPUT_LIMIT} characters of the combined output. */
  get output(): string {
    let tail = this.#tail.length > OUTPUT_LIMIT ? this.#tail.slice(-OUTPUT_LIMIT) : this.#tail;
    // Do not start with half of a surrogate pair.
    if (/^[\uDC00-\uDFFF]/.test(tail)) tail = tail.slice(1);
    return tail;
  }

  push(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    this.#append(stream, this.#decoders[stream].write(chunk));
  }

  /** Flushes the decoders and the last partial lines. */
  end(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      this.#append(stream, this.#decoders[stream].end());
      const rest = this.#partial[stream];
      this.#partial[stream] = '';
      if (rest !== '') this.#emit(stream, rest);
    }
  }

  #append(stream: 'stdout' | 'stderr', text: string): void {
    if (text === '') return;
    this.#tail += text;
    if (this.#tail.length > 2 * OUTPUT_LIMIT) this.#tail = this.#tail.slice(-OUTPUT_LIMIT);
    if (this.#onLine === undefined) return;
    const lines = (this.#partial[stream] + text).split('\n');
    let rest = lines.pop() ?? '';
    for (const line of lines) this.#emit(stream, line);
    while (rest.length > MAX_LINE) {
      this.#emit(stream, rest.slice(0, MAX_LINE));
      rest = rest.slice(MAX_LINE);
    }
    this.#partial[stream] = rest;
  }

  #emit(stream: 'stdout' | 'stderr', line: string): void {
    try {
      this.#onLine?.(stream, line.endsWith('\r') ? line.slice(0, -1) : line);
    } catch {
      // A failing listener must not break the run (this is inside a stream event handler).
    }
  }
}
