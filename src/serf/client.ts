import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { connect as netConnect, type Socket } from 'node:net';
import { DEFAULT_RPC_ADDRESS, formatSerfAddr, parseRpcAddress } from './address.js';
import { SerfError } from './errors.js';
import { MsgpackScanner } from './scanner.js';

/**
 * A client for the Serf agent's RPC protocol (msgpack over TCP, see the agent's `rpc` docs).
 *
 * The protocol has no framing: a request is a header value, optionally followed by a body value, and so is
 * a reply. Whether a body follows is known only from the command, so every reply is paired with its
 * request by `Seq` and the command's entry in `COMMANDS`; stream records carry the `Seq` of their stream.
 * As a safety net, a header is recognised by its shape (a map with exactly `Seq` and `Error`), which no
 * body has. Anything that breaks these rules is a fatal protocol error: the connection is dropped, every
 * pending request fails, and `close` is emitted with the error.
 */

/** Options of `SerfClient.connect()`. */
export interface SerfClientOptions {
  /** The agent's RPC address, `host:port` (`[::1]:7373` for IPv6). @default '127.0.0.1:7373' */
  address?: string;
  /** The agent's `rpc_auth` key. `auth` is sent only when this is a non-empty string. */
  authKey?: string;
  /** Milliseconds allowed for the TCP connection, the handshake and the auth together. @default 5000 */
  connectTimeout?: number;
  /**
   * Milliseconds a request may wait for its reply. The agent answers one request at a time, so a request
   * that times out means the connection is stuck: it is dropped. `0` disables the timeout. @default 30000
   */
  requestTimeout?: number;
  /** Aborts the connection attempt (not the connection once `connect()` has resolved). */
  signal?: AbortSignal;
}

/** Serf member states. `none` exists in the agent's code but is not seen in practice. */
export type SerfMemberStatus = 'alive' | 'leaving' | 'left' | 'failed' | 'none';

/** The protocol versions a member speaks (`ProtocolMin/Max/Cur`, `DelegateMin/Max/Cur`). */
export interface SerfVersionRange {
  /** The oldest version the member understands. */
  min: number;
  /** The newest version the member understands. */
  max: number;
  /** The version the member speaks now. */
  cur: number;
}

/** A cluster member as the agent reports it. */
export interface SerfMember {
  /** The node name, unique in the cluster. */
  name: string;
  /** The member's IP in Go's text form (`10.0.0.1`, `fd00::1`), undefined when the agent sent none. */
  addr: string | undefined;
  /** The gossip port (7946 by default), not a service port. */
  port: number;
  /** The member's tags (`{}` when it has none). A tag named `__proto__` is lost in decoding. */
  tags: Record<string, string>;
  /** One of `SerfMemberStatus`; kept as the agent's text. */
  status: SerfMemberStatus | (string & {});
  /** Gossip protocol versions (`ProtocolMin/Max/Cur`). */
  protocol: SerfVersionRange;
  /** Delegate protocol versions (`DelegateMin/Max/Cur`). */
  delegate: SerfVersionRange;
}

/** The member event types a stream can subscribe to. */
export type SerfMemberEventType = 'member-join' | 'member-leave' | 'member-failed' | 'member-update' | 'member-reap';

/** A member event: the members concerned, as they were when the event fired (not the current state). */
export interface SerfMemberEvent {
  /** What happened. */
  event: SerfMemberEventType;
  /** The members it happened to (one event may carry several). */
  members: SerfMember[];
}

/** A user event (`serf event`). */
export interface SerfUserEvent {
  event: 'user';
  /** The event's Lamport time. */
  ltime: number;
  /** The event's name (`serf event NAME`). */
  name: string;
  /** The payload bytes, or null when there are none. */
  payload: Buffer | null;
  /** Whether agents may keep only the newest event of this name. */
  coalesce: boolean;
}

/** A query seen by the agent (stream `query` or `query:NAME`). Answer it with `respond` on the same client. */
export interface SerfQueryEvent {
  event: 'query';
  /** The query's ID on this connection (what `respond` needs). */
  id: number;
  /** The query's Lamport time. */
  ltime: number;
  /** The query's name. */
  name: string;
  /** The payload bytes, or null when there are none. */
  payload: Buffer | null;
}

/** A query to send to the cluster (`SerfClient.query()`). */
export interface SerfQueryOptions {
  /** The query's name: what `query:NAME` streams subscribe to. */
  name: string;
  payload?: Buffer | string;
  /** Milliseconds until the agent stops collecting answers. Default: the agent's own (from the cluster's size). */
  timeout?: number;
  /** Ask only these nodes. */
  filterNodes?: readonly string[];
  /** Ask only nodes whose tags match (tag → Go regular expression). */
  filterTags?: Record<string, string>;
}

/** One node's answer to a query. */
export interface SerfQueryResponse {
  /** The node name. */
  from: string;
  payload: Buffer;
}

/** A record delivered on a stream. */
export type SerfStreamEvent = SerfMemberEvent | SerfUserEvent | SerfQueryEvent;

/**
 * A `members-filtered` query. Each pattern is a Go (RE2) regular expression that must match the whole
 * value; the client wraps it in `(?:…)` so that an alternation such as `a|b` is anchored as a whole.
 */
export interface SerfMembersFilter {
  /** Tag name → pattern. A member without the tag is matched as if its value were `""`. */
  tags?: Record<string, string>;
  /** Pattern for the status (`alive|failed`). Empty or absent: any status. */
  status?: string;
  /** Pattern for the node name. Empty or absent: any name. */
  name?: string;
}

/** The agent's `stats`: section (`agent`, `runtime`, `serf`, `tags`…) → key → value, all strings. */
export type SerfStats = Record<string, Record<string, string>>;

/** An open event stream or log monitor. */
export interface SerfStream {
  /** The `Seq` the agent tags this stream's records with. */
  readonly seq: number;
  /** Stops the stream. Records the agent had already queued are read and dropped. */
  stop(): Promise<void>;
}

/** The levels a log monitor can ask for, from the most to the least verbose. */
export type SerfLogLevel = 'TRACE' | 'DEBUG' | 'INFO' | 'WARN' | 'ERR';

/** Options of `SerfClient.monitor()`. */
export interface SerfMonitorOptions {
  /**
   * Called with a line's UTF-8 bytes before the line is decoded; a line it refuses is dropped unread. At DEBUG
   * the agent logs its own RPC traffic (dumps of whole replies), so a cheap byte test here saves decoding most
   * of the stream. A record of an unexpected shape is always decoded (and checked) as usual.
   */
  accept?: (line: Buffer) => boolean;
}

/** Events of a `SerfClient`. */
export interface SerfClientEvents {
  /** The connection is gone. `error` is undefined after `close()`, else what ended it. */
  close: [error: SerfError | undefined];
}


/** A Serf RPC connection. Create one with `SerfClient.connect()`. */
export class SerfClient extends EventEmitter<SerfClientEvents> {
  /** The `host:port` this client talks to. */
  readonly address: string;
  readonly #host: string;
  readonly #port: number;
  readonly #requestTimeout: number;
  readonly #socket: Socket;
  readonly #scanner = new MsgpackScanner();
  #seq = 0;
  readonly #pending = new Map<number, Pending>();
  /** Open streams and monitors by Seq: how to parse one of their records, and whom to give it to. */
  readonly #streams = new Map<number, StreamHandler>();
  /** Streams that were stopped: their queued records may still arrive and are dropped. */
  readonly #stopped = new Set<number>();
  /** The last header received, and whether its body has been seen. */
  #last: { seq: number; error: string; awaiting: Pending | undefined; bodySeen: boolean } | undefined;
  #ready = false;
  #failed = false;
  #closed = false;
  #closeError: SerfError | undefined;

  private constructor(address: string, requestTimeout: number) {
    super();
    this.address = address;
    ({ host: this.#host, port: this.#port } = parseRpcAddress(address));
    this.#requestTimeout = requestTimeout;
    this.#socket = netConnect({ host: this.#host, port: this.#port });
    this.#socket.setNoDelay(true);
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('error', (err) => {
      const message = this.#ready
        ? `the connection to the Serf agent at ${this.address} failed: ${err.message}`
        : `cannot connect to the Serf agent at ${this.address}: ${err.message}`;
      this.#fail(new SerfError(this.#ready ? 'closed' : 'connect', message, { cause: err }));
    });
    this.#socket.on('close', () => {
      const cut = this.#scanner.pendingBytes > 0 ? ' in the middle of a message' : '';
      this.#fail(new SerfError(this.#ready ? 'closed' : 'connect', `the Serf agent at ${this.address} closed the connection${cut}`));
      this.#closed = true;
      this.emit('close', this.#closeError);
    });
  }

  /**
   * Connects to an agent, performs the handshake and, when a key is given, authenticates.
   * @throws {SerfError} `reason: 'connect'` when the agent cannot be reached in time; `authFailed: true`
   *   when it refuses the key.
   */
  static async connect(options: SerfClientOptions = {}): Promise<SerfClient> {
    const address = options.address ?? DEFAULT_RPC_ADDRESS;
    const connectTimeout = options.connectTimeout ?? 5000;
    const requestTimeout = options.requestTimeout ?? 30_000;
    const client = new SerfClient(address, requestTimeout);
    const onTimeout = () => client.#fail(new SerfError('connect', `no answer from the Serf agent at ${address} within ${connectTimeout} ms`));
    const timer = setTimeout(onTimeout, connectTimeout);
    const onAbort = () => client.#fail(new SerfError('connect', `connecting to the Serf agent at ${address} was aborted`, { cause: options.signal?.reason }));
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort);
    try {
      await client.#request('handshake', { Version: 1 }, ignoreBody);
      if (options.authKey) await client.#request('auth', { AuthKey: options.authKey }, ignoreBody);
      client.#ready = true;
      return client;
    } catch (err) {
      await client.close();
      if (err instanceof SerfError && err.authFailed) {
        throw new SerfError('agent', `the Serf agent at ${address} refused the auth key (${err.agentError})`, {
          command: 'auth',
          agentError: err.agentError,
        });
      }
      // A failure of the connection itself says more than the request that noticed it.
      throw client.#closeError ?? err;
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** True once the connection is gone (`close` has been emitted). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Every member the agent knows, including `left` and `failed` ones until they are reaped. */
  members(): Promise<SerfMember[]> {
    return this.#request('members', undefined, parseMembersReply);
  }

  /** The members that match a filter, evaluated by the agent. An invalid pattern makes the agent drop the connection. */
  membersFiltered(filter: SerfMembersFilter = {}): Promise<SerfMember[]> {
    const tags: Record<string, string> = {};
    for (const [key, pattern] of Object.entries(filter.tags ?? {})) tags[key] = `(?:${pattern})`;
    const body = { Tags: tags, Status: group(filter.status), Name: group(filter.name) };
    return this.#request('members-filtered', body, parseMembersReply);
  }

  /**
   * Opens an event stream. `types` are Serf filters (`member-join`, `user:deploy`, `*`…), joined with
   * commas; the agent sends only events that happen after it registered the stream, and drops records
   * when the client reads too slowly. `onEvent` is called for each record; it must not throw.
   */
  async stream(types: string | readonly string[], onEvent: (event: SerfStreamEvent) => void): Promise<SerfStream> {
    const handler: StreamHandler = { parse: parseStreamEvent, deliver: onEvent as (record: unknown) => void };
    return this.#openStream('stream', { Type: typeof types === 'string' ? types : types.join(',') }, handler);
  }

  /**
   * Streams the agent's log lines at `level` and above (`monitor`), whatever level the agent itself logs at.
   * The agent first replays the recent lines it keeps (up to 512), then sends each new one as it is written.
   * Log text differs between Serf versions: use it as a hint, not as data. `onLine` must not throw.
   */
  async monitor(level: SerfLogLevel, onLine: (line: string) => void, options: SerfMonitorOptions = {}): Promise<SerfStream> {
    const { accept } = options;
    const handler: StreamHandler = { parse: parseLogRecord, deliver: onLine as (record: unknown) => void };
    if (accept !== undefined) {
      handler.skip = (bytes) => {
        const line = logLineBytes(bytes);
        return line !== undefined && !accept(line);
      };
    }
    return this.#openStream('monitor', { LogLevel: level }, handler);
  }

  /** Stops the stream (or monitor) with this `Seq`. Always succeeds on the agent's side. */
  async stop(seq: number): Promise<void> {
    if (this.#streams.delete(seq)) this.#stopped.add(seq);
    await this.#request('stop', { Stop: seq }, ignoreBody);
  }

  /** The agent's runtime statistics. */
  stats(): Promise<SerfStats> {
    return this.#request('stats', undefined, parseStats);
  }

  /**
   * Asks the agent to join the agents at `addresses` (`host` or `host:port`). Resolves with how many it
   * joined; rejects when it joined none.
   */
  join(addresses: readonly string[], options: { replay?: boolean } = {}): Promise<number> {
    return this.#request('join', { Existing: [...addresses], Replay: options.replay ?? false }, parseJoinReply);
  }

  /** Makes the agent leave the cluster gracefully and shut down. The connection then closes. */
  leave(): Promise<void> {
    return this.#request('leave', undefined, ignoreBody);
  }

  /**
   * Forces a failed member into the `left` state. Unknown and alive members are left alone (no error).
   * `prune` also removes it from the member list at once (agents from 0.8.5 on).
   */
  forceLeave(node: string, options: { prune?: boolean } = {}): Promise<void> {
    return this.#request('force-leave', { Node: node, Prune: options.prune ?? false }, ignoreBody);
  }

  /** Sets and removes tags of the agent's own node. Every member then sees a `member-update`. */
  tags(set: Record<string, string>, remove: readonly string[] = []): Promise<void> {
    return this.#request('tags', { Tags: set, DeleteTags: [...remove] }, ignoreBody);
  }

  /**
   * Answers a query this client received on a stream (`SerfQueryEvent.id`), before the query's deadline. The
   * agent refuses a payload larger than its `query_response_size_limit` (1024 bytes by default).
   */
  respond(id: number, payload: Buffer | string): Promise<void> {
    return this.#request('respond', { ID: id, Payload: payload }, ignoreBody);
  }

  /**
   * Sends a query to the cluster and resolves, once the agent's deadline has passed, with every answer it got
   * (several answers from one node are all kept). With `filterNodes`, it resolves as soon as each of those
   * nodes has answered (the records still due for the query are read and dropped). Rejects when the
   * connection is lost before then.
   */
  async query(options: SerfQueryOptions): Promise<SerfQueryResponse[]> {
    const responses: SerfQueryResponse[] = [];
    const awaited = new Set(options.filterNodes ?? []);
    let settle!: { resolve: () => void; reject: (err: Error) => void };
    let settled = false;
    const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    const finish = (): void => {
      settled = true;
      settle.resolve();
    };
    // Awaited only once the query is sent: a close before that must not count as unhandled.
    done.catch(() => undefined);
    const onClose = (err: SerfError | undefined): void => settle.reject(err ?? new SerfError('closed', `query ${options.name}: the client was closed`));
    this.on('close', onClose);
    let seq: number | undefined;
    const handler: StreamHandler = {
      parse: parseQueryRecord,
      deliver: (record) => {
        const { type, from, payload } = record as { type: string; from: string; payload: Buffer | null };
        if (type === 'response' && !settled) {
          responses.push({ from, payload: payload ?? Buffer.alloc(0) });
          awaited.delete(from);
          if (options.filterNodes?.length && awaited.size === 0) finish();
        }
        if (type !== 'done') return;
        // After `done` the agent sends nothing more for this Seq: it may be used again.
        if (seq !== undefined) this.#streams.delete(seq);
        finish();
      },
    };
    const body = {
      FilterNodes: [...(options.filterNodes ?? [])],
      FilterTags: options.filterTags ?? {},
      RequestAck: false,
      RelayFactor: 0,
      Timeout: Math.round((options.timeout ?? 0) * 1e6),
      Name: options.name,
      Payload: options.payload ?? Buffer.alloc(0),
    };
    try {
      ({ seq } = await this.#openStream('query', body, handler));
      await done;
      return responses;
    } finally {
      this.off('close', onClose);
    }
  }

  /** Sends a user event to the cluster. `coalesce` (default true) lets agents keep only the newest per name. */
  event(name: string, payload?: Buffer | string, options: { coalesce?: boolean } = {}): Promise<void> {
    const body = { Name: name, Payload: payload ?? null, Coalesce: options.coalesce ?? true };
    return this.#request('event', body, ignoreBody);
  }

  /** Closes the connection. Pending requests fail. Resolves once the socket is closed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    const closed = new Promise<void>((resolve) => this.once('close', () => resolve()));
    this.#fail(undefined);
    await closed;
  }

  // --- internal ---

  async #openStream(command: 'stream' | 'monitor' | 'query', body: object, handler: StreamHandler): Promise<SerfStream> {
    const seq = this.#nextSeq();
    // Registered before the request goes out: the agent may send a record before its reply.
    this.#streams.set(seq, handler);
    try {
      await this.#request(command, body, ignoreBody, seq);
    } catch (err) {
      this.#streams.delete(seq);
      throw err;
    }
    return { seq, stop: () => this.stop(seq) };
  }

  #nextSeq(): number {
    do {
      // Kept below 2^31; a Seq held by a pending request or a stream (even a stopped one) is never reused.
      this.#seq = this.#seq >= 0x7fffffff ? 1 : this.#seq + 1;
    } while (this.#pending.has(this.#seq) || this.#streams.has(this.#seq) || this.#stopped.has(this.#seq));
    return this.#seq;
  }

  /** Sends a request and resolves with its parsed reply body (or undefined for commands without one). */
  #request<T>(command: Command, body: object | undefined, parse: (body: unknown) => T, seq = this.#nextSeq()): Promise<T> {
    const spec = COMMANDS[command];
    if (spec.requestBody !== (body !== undefined)) throw new Error(`internal: ${command} ${spec.requestBody ? 'needs' : 'takes no'} body`);
    return new Promise<T>((resolve, reject) => {
      if (this.#failed) {
        reject(this.#closedError(command, this.#closeError));
        return;
      }
      const pending: Pending = { command, seq, replyBody: spec.replyBody, parse, resolve: resolve as (value: unknown) => void, reject, timer: undefined };
      if (this.#requestTimeout > 0) {
        pending.timer = setTimeout(() => {
          pending.reject(new SerfError('timeout', `${command}: no reply from the Serf agent at ${this.address} within ${this.#requestTimeout} ms`, { command }));
          this.#fail(new SerfError('timeout', `a ${command} request got no reply within ${this.#requestTimeout} ms`));
        }, this.#requestTimeout);
      }
      this.#pending.set(seq, pending);
      const { msgpack } = codec();
      const header = msgpack.encode(toWire({ Command: command, Seq: seq }));
      this.#socket.write(body === undefined ? header : Buffer.concat([header, msgpack.encode(toWire(body))]));
    });
  }

  #onData(chunk: Buffer): void {
    if (this.#failed) return;
    try {
      const { msgpack } = codec();
      for (const bytes of this.#scanner.push(chunk)) {
        if (this.#skipUnread(bytes)) continue;
        this.#onValue(msgpack.decode(bytes));
        if (this.#failed) return;
      }
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      const error = err instanceof SerfError ? err : new SerfError('protocol', `invalid data from the Serf agent at ${this.address}: ${detail}`, { cause: err });
      this.#fail(error);
    }
  }

  /** Drops a stream record its handler refuses from its bytes alone (see `SerfMonitorOptions.accept`). */
  #skipUnread(bytes: Buffer): boolean {
    const last = this.#last;
    if (last === undefined || last.bodySeen || last.awaiting !== undefined) return false;
    const skip = this.#streams.get(last.seq)?.skip;
    if (skip === undefined || !skip(bytes)) return false;
    last.bodySeen = true;
    return true;
  }

  #onValue(value: unknown): void {
    if (isHeader(value)) {
      this.#finishLast();
      this.#onHeader(value.Seq, value.Error);
    } else {
      this.#onBody(value);
    }
  }

  #onHeader(seq: number, error: string): void {
    const pending = this.#pending.get(seq);
    if (pending !== undefined) {
      const bodyFollows = pending.replyBody && !BARE_ERRORS.has(error);
      this.#last = { seq, error, awaiting: bodyFollows ? pending : undefined, bodySeen: false };
      if (!bodyFollows) this.#settle(pending, error, undefined);
      return;
    }
    if (this.#streams.has(seq) || this.#stopped.has(seq)) {
      this.#last = { seq, error, awaiting: undefined, bodySeen: false };
      return;
    }
    throw new SerfError('protocol', `the Serf agent at ${this.address} sent a reply for unknown Seq ${seq}`);
  }

  #onBody(body: unknown): void {
    const last = this.#last;
    if (last === undefined || last.bodySeen) {
      throw new SerfError('protocol', `the Serf agent at ${this.address} sent a value where a reply header was expected`);
    }
    last.bodySeen = true;
    if (last.awaiting !== undefined) {
      const pending = last.awaiting;
      last.awaiting = undefined;
      this.#settle(pending, last.error, body);
      return;
    }
    const handler = this.#streams.get(last.seq);
    // Otherwise the body belongs to a stopped stream, or to a reply the command table says has none: dropped.
    if (handler === undefined) return;
    const record = handler.parse(body);
    try {
      handler.deliver(record);
    } catch (err) {
      // A handler's bug must not cost the rest of the chunk; surface it as a listener error would be.
      process.nextTick(() => {
        throw err;
      });
    }
  }

  /** Settles a request whose header said a body would follow but was followed by another header. */
  #finishLast(): void {
    const last = this.#last;
    if (last?.awaiting !== undefined) {
      last.awaiting = undefined;
      const pending = this.#pending.get(last.seq);
      if (pending !== undefined) this.#settle(pending, last.error, undefined);
    }
  }

  #settle(pending: Pending, error: string, body: unknown): void {
    this.#pending.delete(pending.seq);
    clearTimeout(pending.timer);
    const { command } = pending;
    if (error !== '') {
      pending.reject(new SerfError('agent', `${command}: the Serf agent at ${this.address} answered: ${error}`, { command, agentError: error }));
      return;
    }
    if (pending.replyBody && body === undefined) {
      const missing = new SerfError('protocol', `${command}: the Serf agent's reply has no body`, { command });
      pending.reject(missing);
      throw missing;
    }
    let result: unknown;
    try {
      result = pending.parse(body);
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      const malformed = new SerfError('protocol', `${command}: malformed reply from the Serf agent at ${this.address}: ${detail}`, { command, cause: err });
      pending.reject(malformed);
      throw malformed;
    }
    pending.resolve(result);
  }

  /** Ends the connection once: destroys the socket and fails every pending request. */
  #fail(error: SerfError | undefined): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#closeError = error;
    this.#socket.destroy();
    this.#streams.clear();
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(this.#closedError(pending.command, error));
    }
    this.#pending.clear();
  }

  #closedError(command: string, cause: SerfError | undefined): SerfError {
    const why = cause?.message ?? 'the client was closed';
    return new SerfError(cause?.reason ?? 'closed', `${command}: ${why}`, { command, cause });
  }
}


// --- internal ---

type Command = keyof typeof COMMANDS;

/**
 * The commands this client sends: whether the request carries a body (it must, even if empty, or the
 * agent reads the next request as the body) and whether a successful reply does.
 */
const COMMANDS = {
  handshake: { requestBody: true, replyBody: false },
  auth: { requestBody: true, replyBody: false },
  members: { requestBody: false, replyBody: true },
  'members-filtered': { requestBody: true, replyBody: true },
  stream: { requestBody: true, replyBody: false },
  monitor: { requestBody: true, replyBody: false },
  stop: { requestBody: true, replyBody: false },
  join: { requestBody: true, replyBody: true },
  leave: { requestBody: false, replyBody: false },
  'force-leave': { requestBody: true, replyBody: false },
  tags: { requestBody: true, replyBody: false },
  event: { requestBody: true, replyBody: false },
  query: { requestBody: true, replyBody: false },
  respond: { requestBody: true, replyBody: false },
  stats: { requestBody: false, replyBody: true },
} as const;

/** Errors the agent sends as a bare header, even for commands whose reply normally has a body. */
const BARE_ERRORS = new Set(['Handshake required', 'Authentication required', 'Unsupported command']);

const MEMBER_EVENTS = new Set<string>(['member-join', 'member-leave', 'member-failed', 'member-update', 'member-reap']);

/** A stream's or monitor's records: parsed (a malformed one is a protocol error), then delivered. */
interface StreamHandler {
  parse: (body: unknown) => unknown;
  deliver: (record: unknown) => void;
  /** True for a record to drop without decoding it; only ever true for a value that cannot be a header. */
  skip?: (bytes: Buffer) => boolean;
}

interface Pending {
  command: Command;
  seq: number;
  replyBody: boolean;
  parse: (body: unknown) => unknown;
  resolve: (value: unknown) => void;
  reject: (error: SerfError) => void;
  timer: NodeJS.Timeout | undefined;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

function isHeader(value: unknown): value is { Seq: number; Error: string } {
  if (!isMap(value) || typeof value.Seq !== 'number' || typeof value.Error !== 'string') return false;
  return Object.keys(value).length === 2;
}

function group(pattern: string | undefined): string {
  return pattern ? `(?:${pattern})` : '';
}

let loaded: { msgpack: typeof import('msgpack-lite'); int64: typeof import('int64-buffer') } | undefined;

/**
 * msgpack-lite and int64-buffer, required by the first request: a process that only imports rosterd, or
 * has no Serf source, loads neither (msgpack-lite alone took 10-30 ms to import, most of it Node scanning
 * the CommonJS sources of an imported package for export names, which require() skips).
 */
function codec(): NonNullable<typeof loaded> {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  return (loaded = { msgpack: require('msgpack-lite') as typeof import('msgpack-lite'), int64: require('int64-buffer') as typeof import('int64-buffer') });
}

/**
 * msgpack-lite writes integers outside the int32/uint32 range as float64, which the agent rejects (and
 * then drops the connection). Such integers are sent as int64/uint64 instead.
 */
function toWire(value: unknown): unknown {
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || (value >= -0x80000000 && value <= 0x7fffffff)) return value;
    const { int64 } = codec();
    return value < 0 ? new int64.Int64BE(value) : new int64.Uint64BE(value);
  }
  if (Array.isArray(value)) return value.map(toWire);
  if (isMap(value)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) out[key] = toWire(item);
    return out;
  }
  return value;
}

function ignoreBody(): undefined {
  return undefined;
}

function parseMembersReply(body: unknown): SerfMember[] {
  return parseMemberList(isMap(body) ? body.Members : undefined);
}

function parseMemberList(list: unknown): SerfMember[] {
  if (!Array.isArray(list)) throw new Error('Members is not an array');
  return list.map(parseMember);
}

function parseMember(raw: unknown): SerfMember {
  if (!isMap(raw)) throw new Error('a member is not a map');
  const name = text(raw.Name, 'Name');
  const addr = raw.Addr;
  if (addr !== null && addr !== undefined && !Buffer.isBuffer(addr)) throw new Error(`member ${JSON.stringify(name)}: Addr is not bytes`);
  return {
    name,
    addr: formatSerfAddr(addr),
    port: num(raw.Port, 'Port'),
    tags: stringMap(raw.Tags, 'Tags'),
    status: text(raw.Status, 'Status'),
    protocol: { min: num(raw.ProtocolMin, 'ProtocolMin'), max: num(raw.ProtocolMax, 'ProtocolMax'), cur: num(raw.ProtocolCur, 'ProtocolCur') },
    delegate: { min: num(raw.DelegateMin, 'DelegateMin'), max: num(raw.DelegateMax, 'DelegateMax'), cur: num(raw.DelegateCur, 'DelegateCur') },
  };
}

function parseStreamEvent(raw: unknown): SerfStreamEvent {
  if (!isMap(raw)) throw new Error('a stream record is not a map');
  const event = raw.Event;
  if (typeof event === 'string' && MEMBER_EVENTS.has(event)) {
    return { event: event as SerfMemberEventType, members: parseMemberList(raw.Members) };
  }
  if (event === 'user') {
    return { event, ltime: num(raw.LTime, 'LTime'), name: text(raw.Name, 'Name'), payload: bytesOrNull(raw.Payload), coalesce: raw.Coalesce === true };
  }
  if (event === 'query') {
    return { event, id: num(raw.ID, 'ID'), ltime: num(raw.LTime, 'LTime'), name: text(raw.Name, 'Name'), payload: bytesOrNull(raw.Payload) };
  }
  throw new Error(`unknown stream record type ${JSON.stringify(event)}`);
}

function parseQueryRecord(raw: unknown): { type: string; from: string; payload: Buffer | null } {
  if (!isMap(raw)) throw new Error('a query record is not a map');
  return { type: text(raw.Type, 'Type'), from: text(raw.From, 'From'), payload: bytesOrNull(raw.Payload) };
}

/**
 * The line of a log record, `{"Log": "<line>"}`, as bytes, read from the record's own bytes: a map of one key
 * (so never a header, which has two), the key `Log`, a string filling the rest. Undefined for any other shape,
 * which is then decoded and checked as usual.
 */
function logLineBytes(bytes: Buffer): Buffer | undefined {
  // 0x81: a map of one entry; 0xa3 'L' 'o' 'g': the key.
  if (bytes.length < 6 || bytes[0] !== 0x81 || bytes[1] !== 0xa3 || bytes[2] !== 0x4c || bytes[3] !== 0x6f || bytes[4] !== 0x67) return undefined;
  const type = bytes[5]!;
  let start: number;
  let length: number;
  if (type >= 0xa0 && type <= 0xbf) [start, length] = [6, type & 0x1f];
  else if (type === 0xd9 && bytes.length >= 7) [start, length] = [7, bytes[6]!];
  else if (type === 0xda && bytes.length >= 8) [start, length] = [8, bytes.readUInt16BE(6)];
  else if (type === 0xdb && bytes.length >= 10) [start, length] = [10, bytes.readUInt32BE(6)];
  else return undefined;
  return start + length === bytes.length ? bytes.subarray(start) : undefined;
}

function parseLogRecord(raw: unknown): string {
  if (!isMap(raw)) throw new Error('a log record is not a map');
  return text(raw.Log, 'Log');
}

function parseStats(body: unknown): SerfStats {
  if (!isMap(body)) throw new Error('stats is not a map');
  const stats: SerfStats = {};
  for (const [section, values] of Object.entries(body)) stats[section] = stringMap(values, section);
  return stats;
}

function parseJoinReply(body: unknown): number {
  return num(isMap(body) ? body.Num : undefined, 'Num');
}

function text(value: unknown, field: string): string {
  if (typeof value !== 'string') throw new Error(`${field} is not a string`);
  return value;
}

function num(value: unknown, field: string): number {
  if (typeof value !== 'number') throw new Error(`${field} is not a number`);
  return value;
}

function bytesOrNull(value: unknown): Buffer | null {
  if (value === null || value === undefined) return null;
  if (!Buffer.isBuffer(value)) throw new Error('Payload is not bytes');
  return value;
}

/** A Go `map[string]string`; a nil map (msgpack nil) is empty. */
function stringMap(value: unknown, field: string): Record<string, string> {
  if (value === null || value === undefined) return {};
  if (!isMap(value)) throw new Error(`${field} is not a map`);
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'string') throw new Error(`${field}.${key} is not a string`);
  }
  return value as Record<string, string>;
}
