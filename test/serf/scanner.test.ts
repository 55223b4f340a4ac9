import msgpack from 'msgpack-lite';
import { describe, expect, it } from 'vitest';
import { MsgpackScanError, MsgpackScanner } from '../../src/serf/scanner.js';

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/**
 * One value of every MessagePack format, as raw bytes. The 16/32-bit length forms are written by hand with
 * small lengths (legal, if not minimal), so that splitting the stream at every byte stays cheap.
 */
const FORMATS: [string, Buffer][] = [
  ['positive fixint', hex('00')],
  ['positive fixint 0x7f', hex('7f')],
  ['negative fixint', hex('e0')],
  ['nil', hex('c0')],
  ['false', hex('c2')],
  ['true', hex('c3')],
  ['float 32', hex('ca 3f800000')],
  ['float 64', msgpack.encode(1.5)],
  ['uint 8', hex('cc ff')],
  ['uint 16', hex('cd ffff')],
  ['uint 32', hex('ce ffffffff')],
  ['uint 64', hex('cf 0000010000000000')],
  ['int 8', hex('d0 80')],
  ['int 16', hex('d1 8000')],
  ['int 32', hex('d2 80000000')],
  ['int 64', hex('d3 ffffff0000000000')],
  ['fixstr', msgpack.encode('Seq')],
  ['empty fixstr', hex('a0')],
  ['str 8', msgpack.encode('x'.repeat(40))],
  ['str 16', hex('da 0003 616263')],
  ['str 32', hex('db 00000003 616263')],
  ['bin 8', hex('c4 04 7f000001')],
  ['bin 16', hex('c5 0002 abcd')],
  ['bin 32', hex('c6 00000002 abcd')],
  ['fixext 1', hex('d4 05 01')],
  ['fixext 2', hex('d5 05 0102')],
  ['fixext 4', hex('d6 05 01020304')],
  ['fixext 8', hex('d7 05 0102030405060708')],
  ['fixext 16', hex('d8 05 0102030405060708090a0b0c0d0e0f10')],
  ['ext 8', hex('c7 03 05 010203')],
  ['ext 16', hex('c8 0003 05 010203')],
  ['ext 32', hex('c9 00000003 05 010203')],
  ['empty ext 8', hex('c7 00 05')],
  ['empty fixarray', hex('90')],
  ['empty fixmap', hex('80')],
  ['fixarray', msgpack.encode([1, 'a', null])],
  ['fixmap', msgpack.encode({ Seq: 1, Error: '' })],
  ['array 16', hex('dc 0002 01 02')],
  ['array 32', hex('dd 00000002 a161 c3')],
  ['map 16', hex('de 0001 a16b 01')],
  ['map 32', hex('df 00000002 a161 01 a162 90')],
  ['empty array 32', hex('dd 00000000')],
  ['nested containers', msgpack.encode({ Members: [{ Name: 'a', Addr: Buffer.from([127, 0, 0, 1]), Tags: { role: 'web' } }, [[[]], {}]] })],
  ['nested 32-bit containers', hex('dd 00000001 df 00000001 a16b dd 00000001 c6 00000001 ff')],
];

const STREAM = Buffer.concat(FORMATS.map(([, bytes]) => bytes));
const EXPECTED = FORMATS.map(([, bytes]) => bytes);

/** Feeds the chunks to a new scanner and returns every value it handed out. */
function scan(chunks: Uint8Array[]): Buffer[] {
  const scanner = new MsgpackScanner();
  return chunks.flatMap((chunk) => scanner.push(chunk));
}

describe('MsgpackScanner', () => {
  it.each(FORMATS)('hands out a whole %s value', (_, bytes) => {
    const values = scan([bytes]);
    expect(values).toEqual([bytes]);
  });

  it('cuts a stream of every format into the same values, in order', () => {
    expect(scan([STREAM])).toEqual(EXPECTED);
  });

  it('gives the same values whichever byte the stream is split at', () => {
    for (let at = 0; at <= STREAM.length; at++) {
      const values = scan([STREAM.subarray(0, at), STREAM.subarray(at)]);
      expect(values, `split at byte ${at}`).toEqual(EXPECTED);
    }
  });

  it('gives the same values when split at any two places', () => {
    // Compared by hand and reported at the end: tens of thousands of expect() calls would be slow.
    const same = (values: Buffer[]) => values.length === EXPECTED.length && values.every((v, i) => v.equals(EXPECTED[i]!));
    const wrong: string[] = [];
    for (let a = 0; a <= STREAM.length; a++) {
      for (let b = a; b <= STREAM.length; b++) {
        if (!same(scan([STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)]))) wrong.push(`${a}/${b}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('gives the same values when fed one byte at a time', () => {
    const chunks = [...STREAM].map((byte) => Uint8Array.of(byte));
    expect(scan(chunks)).toEqual(EXPECTED);
  });

  it('hands out each value as soon as its last byte arrives, and keeps nothing after it', () => {
    const scanner = new MsgpackScanner();
    const header = msgpack.encode({ Seq: 1, Error: '' });
    expect(scanner.push(header.subarray(0, 5))).toEqual([]);
    expect(scanner.pendingBytes).toBe(5);
    expect(scanner.push(header.subarray(5))).toEqual([header]);
    expect(scanner.pendingBytes).toBe(0);
  });

  it('handles large values in the full-size formats (str 32, bin 32, array 16, map 16) in small chunks', () => {
    const big = {
      text: 'é'.repeat(40_000), // 80,000 bytes: str 32
      bytes: Buffer.alloc(70_000, 7), // bin 32
      list: Array.from({ length: 300 }, (_, i) => i * 1000), // array 16
      map: Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])), // map 16
    };
    const encoded = msgpack.encode(big);
    const chunks: Buffer[] = [];
    for (let at = 0; at < encoded.length; at += 1000) chunks.push(encoded.subarray(at, at + 1000));
    const values = scan(chunks);
    expect(values).toHaveLength(1);
    expect(msgpack.decode(values[0]!)).toEqual(big);
  });

  it('returns copies that later chunks do not overwrite', () => {
    const scanner = new MsgpackScanner();
    const [first] = scanner.push(msgpack.encode('first'));
    scanner.push(msgpack.encode('second-value'));
    expect(msgpack.decode(first!)).toBe('first');
  });

  it('throws a clear error on the never-used byte 0xc1, with its stream offset', () => {
    const scanner = new MsgpackScanner();
    expect(scanner.push(hex('01 02'))).toEqual([hex('01'), hex('02')]);
    expect(() => scanner.push(hex('92 01 c1'))).toThrow(MsgpackScanError);
    const again = new MsgpackScanner();
    again.push(hex('01 02'));
    try {
      again.push(hex('92 01 c1'));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(MsgpackScanError);
      expect((err as MsgpackScanError).message).toMatch(/0xc1/);
      expect((err as MsgpackScanError).offset).toBe(4);
    }
  });

  it('refuses a value larger than maxValueBytes, from its length alone or as it grows', () => {
    expect(() => new MsgpackScanner().push(hex('db 7fffffff'))).toThrow(/larger than/);
    expect(() => new MsgpackScanner().push(hex('dd 7fffffff'))).toThrow(/larger than/);
    const small = new MsgpackScanner({ maxValueBytes: 100 });
    expect(() => small.push(Buffer.concat([hex('dc 00c8'), Buffer.alloc(150, 1)]))).toThrow(/larger than 100 bytes/);
  });

  it('refuses a value as soon as its walked bytes cross maxValueBytes, whatever each head announced', () => {
    const small = new MsgpackScanner({ maxValueBytes: 100 });
    // 100 strings of 50 bytes: each head is within the limit, the value is not.
    const item = Buffer.concat([hex('d9 32'), Buffer.alloc(50, 0x61)]);
    const chunk = Buffer.concat([hex('dc 0064'), ...Array.from({ length: 100 }, () => item)]);
    expect(() => small.push(chunk)).toThrow(/^value larger than 100 bytes at stream offset 0$/);
  });

  it('refuses containers nested deeper than maxDepth at the first level too many, whatever follows', () => {
    const bomb = Buffer.alloc(8 << 20, 0x91); // [[[[…]]]]: 8 MiB of one-element arrays
    expect(() => new MsgpackScanner().push(bomb)).toThrow(/^value nested deeper than 32 levels at stream offset 32$/);
    const shallow = new MsgpackScanner({ maxDepth: 3 });
    expect(shallow.push(hex('91 91 91 c0'))).toEqual([hex('91 91 91 c0')]);
    expect(() => shallow.push(hex('91 91 91 91 c0'))).toThrow(/nested deeper than 3 levels at stream offset 7/);
  });
});
