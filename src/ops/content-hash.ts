import { createHash } from 'node:crypto';

/** Hashes already computed, by buffer: the history and the fleet view both hash every render's content. */
const computed = new WeakMap<Buffer, string>();

/** The SHA-256 of rendered content, in hex: the same bytes give the same hash on every machine. */
export function contentHash(bytes: Buffer): string {
  let hash = computed.get(bytes);
  if (hash === undefined) {
    hash = createHash('sha256').update(bytes).digest('hex');
    computed.set(bytes, hash);
  }
  return hash;
}
