/**
 * Cuts a MessagePack byte stream into whole values without building them.
 *
 * The agent writes values back to back with no length prefix, so the only way to know where one ends is to
 * walk its type and length bytes. msgpack-lite's streaming decoder does that by decoding again from the start
 * of an incomplete value on every chunk, which is quadratic on a large `members` reply. This scanner keeps
 * its place instead: each byte is looked at once, and a complete value is handed out as its own bytes, ready
 * for a one-shot `msgpack.decode()`.
 */

/** The largest value the scanner accepts unless told otherwise: far above any Serf reply (~700 B a member). */
const DEFAULT_MAX_VALUE_BYTES = 128 * 1024 * 1024;
/**
 * The deepest nesting accepted unless told otherwise. Serf's deepest value (a member's tags inside the member
 * list inside a reply) is 4 levels; each open level costs the scanner memory, and the decoder stack.
 */
const DEFAULT_MAX_DEPTH = 32;

/** The byte stream is not MessagePack, or holds a value larger or deeper than allowed. */
export class MsgpackScanError extends Error {
  /** Offset of the offending byte from the start of the stream. */
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(`${message} at stream offset ${offset}`);
    this.name = 'MsgpackScanError';
    this.offset = offset;
  }
}

/**
 * A resumable MessagePack value scanner. Feed it chunks in order with `push()`; it returns every value
 * completed by that chunk. After it throws, the stream is out of step for good: discard the scanner.
 */
export class MsgpackScanner {
  readonly #maxValueBytes: number;
  readonly #maxDepth: number;
  /** Bytes received and not yet handed out, in `#buf[0, #len)`. Grows by doubling, so appends are amortised O(1). */
  #buf: Buffer = Buffer.alloc(0);
  #len = 0;
  /** Start of the value being scanned. */
  #start = 0;
  /** Next byte to look at. Everything in `[#start, #pos)` has been walked. */
  #pos = 0;
  /** Payload bytes (of a str, bin or ext) still to skip before the current item is complete. */
  #skip = 0;
  /** Items still to walk in each open array or map, innermost last. */
  #open: number[] = [];
  /** Bytes handed out or dropped so far, for error offsets. */
  #consumed = 0;

  constructor(options: { maxValueBytes?: number; maxDepth?: number } = {}) {
    this.#maxValueBytes = options.maxValueBytes ?? DEFAULT_MAX_VALUE_BYTES;
    this.#maxDepth = options.maxDepth ?? DEFAULT_MAX_DEPTH;
  }

  /** Bytes held for a value that is not complete yet. */
  get pendingBytes(): number {
    return this.#len - this.#start;
  }

  /**
   * Adds a chunk and returns the values it completes, in order, each as a copy of its bytes. Both limits are
   * checked at every step, so a hostile chunk is refused as soon as it crosses one, not after it was walked.
   * @throws {MsgpackScanError} on the never-used type byte 0xc1, a value over `maxValueBytes`, or containers
   *   nested deeper than `maxDepth`.
   */
  push(chunk: Uint8Array): Buffer[] {
    this.#append(chunk);
    const values: Buffer[] = [];
    while (this.#step()) {
      if (this.#skip === 0 && this.#completeItem()) {
        values.push(Buffer.from(this.#buf.subarray(this.#start, this.#pos)));
        this.#consumed += this.#pos - this.#start;
        this.#start = this.#pos;
      }
    }
    if (this.#len - this.#start > this.#maxValueBytes) {
      throw new MsgpackScanError(`value larger than ${this.#maxValueBytes} bytes`, this.#consumed);
    }
    return values;
  }

  // --- internal ---

  /** Appends a chunk after moving the unfinished value to the front of the buffer. */
  #append(chunk: Uint8Array): void {
    if (this.#start > 0) {
      // At most one chunk's worth is moved: after the first move the unfinished value starts at 0.
      this.#buf.copyWithin(0, this.#start, this.#len);
      this.#len -= this.#start;
      this.#pos -= this.#start;
      this.#start = 0;
    }
    const needed = this.#len + chunk.length;
    if (needed > this.#buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.#buf.length * 2, 4096));
      this.#buf.copy(grown, 0, 0, this.#len);
      this.#buf = grown;
    }
    this.#buf.set(chunk, this.#len);
    this.#len = needed;
  }

  /**
   * Advances over one type head or over the payload being skipped. Returns false when more bytes are
   * needed. A head is read whole or not at all (it is at most 9 bytes), so a split head is read again.
   */
  #step(): boolean {
    if (this.#skip > 0) {
      const available = this.#len - this.#pos;
      if (available === 0) return false;
      const n = Math.min(available, this.#skip);
      this.#pos += n;
      this.#skip -= n;
      if (this.#pos - this.#start > this.#maxValueBytes) this.#tooLarge();
      return true;
    }
    if (this.#pos >= this.#len) return false;
    const head = this.#readHead(this.#pos);
    if (head === undefined) return false;
    this.#pos += head.size;
    if (this.#pos - this.#start > this.#maxValueBytes) this.#tooLarge();
    if (head.payload > this.#maxValueBytes) this.#tooLarge(head.payload);
    this.#skip = head.payload;
    if (head.items > 0) {
      if (head.items > this.#maxValueBytes) this.#tooLarge(head.items);
      if (this.#open.length >= this.#maxDepth) {
        throw new MsgpackScanError(`value nested deeper than ${this.#maxDepth} levels`, this.#consumed + this.#pos - head.size - this.#start);
      }
      this.#open.push(head.items + 1); // +1: completeItem() below counts the container itself as done
    }
    return true;
  }

  /**
   * Marks the current item complete and closes every container it fills up.
   * Returns true when that completes a top-level value.
   */
  #completeItem(): boolean {
    for (;;) {
      const top = this.#open.length - 1;
      if (top < 0) return true;
      const remaining = this.#open[top]! - 1;
      if (remaining > 0) {
        this.#open[top] = remaining;
        return false;
      }
      this.#open.pop();
    }
  }

  /** Decodes the type head at `at`: its size, payload bytes and child count. Undefined if cut short. */
  #readHead(at: number): { size: number; payload: number; items: number } | undefined {
    const buf = this.#buf;
    const type = buf[at]!;
    const avail = this.#len - at;
    const need = (size: number) => avail >= size;
    // Single-byte heads.
    if (type <= 0x7f || type >= 0xe0 || type === 0xc0 || type === 0xc2 || type === 0xc3) return { size: 1, payload: 0, items: 0 };
    if (type <= 0x8f) return { size: 1, payload: 0, items: (type & 0x0f) * 2 }; // fixmap
    if (type <= 0x9f) return { size: 1, payload: 0, items: type & 0x0f }; // fixarray
    if (type <= 0xbf) return { size: 1, payload: type & 0x1f, items: 0 }; // fixstr
    switch (type) {
      case 0xc1:
        throw new MsgpackScanError('invalid MessagePack type byte 0xc1 (never used)', this.#consumed + at - this.#start);
      case 0xc4: // bin 8
      case 0xd9: // str 8
        return need(2) ? { size: 2, payload: buf[at + 1]!, items: 0 } : undefined;
      case 0xc5: // bin 16
      case 0xda: // str 16
        return need(3) ? { size: 3, payload: buf.readUInt16BE(at + 1), items: 0 } : undefined;
      case 0xc6: // bin 32
      case 0xdb: // str 32
        return need(5) ? { size: 5, payload: buf.readUInt32BE(at + 1), items: 0 } : undefined;
      case 0xc7: // ext 8: length, type, data
        return need(3) ? { size: 3, payload: buf[at + 1]!, items: 0 } : undefined;
      case 0xc8: // ext 16
        return need(4) ? { size: 4, payload: buf.readUInt16BE(at + 1), items: 0 } : undefined;
      case 0xc9: // ext 32
        return need(6) ? { size: 6, payload: buf.readUInt32BE(at + 1), items: 0 } : undefined;
      case 0xca: // float 32
        return { size: 1, payload: 4, items: 0 };
      case 0xcb: // float 64
        return { size: 1, payload: 8, items: 0 };
      case 0xcc: // uint 8
      case 0xd0: // int 8
        return { size: 1, payload: 1, items: 0 };
      case 0xcd: // uint 16
      case 0xd1: // int 16
        return { size: 1, payload: 2, items: 0 };
      case 0xce: // uint 32
      case 0xd2: // int 32
        return { size: 1, payload: 4, items: 0 };
      case 0xcf: // uint 64
      case 0xd3: // int 64
        return { size: 1, payload: 8, items: 0 };
      case 0xd4: // fixext 1, 2, 4, 8, 16: type byte + data
        return { size: 1, payload: 2, items: 0 };
      case 0xd5:
        return { size: 1, payload: 3, items: 0 };
      case 0xd6:
        return { size: 1, payload: 5, items: 0 };
      case 0xd7:
        return { size: 1, payload: 9, items: 0 };
      case 0xd8:
        return { size: 1, payload: 17, items: 0 };
      case 0xdc: // array 16
        return need(3) ? { size: 3, payload: 0, items: buf.readUInt16BE(at + 1) } : undefined;
      case 0xdd: // array 32
        return need(5) ? { size: 5, payload: 0, items: buf.readUInt32BE(at + 1) } : undefined;
      case 0xde: // map 16
        return need(3) ? { size: 3, payload: 0, items: buf.readUInt16BE(at + 1) * 2 } : undefined;
      default: // 0xdf map 32
        return need(5) ? { size: 5, payload: 0, items: buf.readUInt32BE(at + 1) * 2 } : undefined;
    }
  }

  /** `size`: the length a head announced, when that is what is too large. */
  #tooLarge(size?: number): never {
    throw new MsgpackScanError(`value larger than ${this.#maxValueBytes} bytes${size === undefined ? '' : ` (a length of ${size})`}`, this.#consumed);
  }
}
