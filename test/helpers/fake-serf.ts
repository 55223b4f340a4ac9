import { createServer, type Server, type Socket } from 'node:net';
import msgpack from 'msgpack-lite';

/**
 * A fake Serf agent, for what a real one will not do (garbage, cut replies, missing bodies, unknown Seqs) and
 * for clusters too big to start (10,000 members). It decodes requests with msgpack-lite's own stream decoder and pairs headers with bodies from its own
 * statement of which requests carry one, so it also checks what the client sends.
 */

const REQUEST_HAS_BODY = new Set(['handshake', 'auth', 'members-filtered', 'stream', 'monitor', 'stop', 'join', 'force-leave', 'tags', 'event']);

export interface Request {
  command: string;
  seq: number;
  body?: unknown;
}

export interface FakeAgent {
  address: string;
  /** Every request received, across connections. */
  requests: Request[];
  /** Every value received, in order. */
  values: unknown[];
  /** Every byte received, for checks on the encoding. */
  received(): Buffer;
  close(): Promise<void>;
}

export const header = (seq: number, error = '') => msgpack.encode({ Seq: seq, Error: error });
export const reply = (seq: number, body?: unknown) => (body === undefined ? header(seq) : Buffer.concat([header(seq), msgpack.encode(body)]));

/** Starts a fake agent. It answers the handshake itself; `onRequest` handles everything after it. */
export async function fakeAgent(onRequest: (request: Request, socket: Socket) => void): Promise<FakeAgent> {
  const requests: Request[] = [];
  const values: unknown[] = [];
  const chunks: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const decoder = msgpack.Decoder(); // typed as a factory; it also works without `new`
    let waiting: Request | undefined;
    const handle = (request: Request) => {
      requests.push(request);
      if (request.command === 'handshake') socket.write(reply(request.seq));
      else onRequest(request, socket);
    };
    decoder.on('data', (value: Record<string, unknown>) => {
      values.push(value);
      if (waiting) {
        const request = { ...waiting, body: value };
        waiting = undefined;
        handle(request);
        return;
      }
      const request = { command: String(value.Command), seq: Number(value.Seq) };
      if (REQUEST_HAS_BODY.has(request.command)) waiting = request;
      else handle(request);
    });
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      decoder.decode(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    requests,
    values,
    received: () => Buffer.concat(chunks),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
