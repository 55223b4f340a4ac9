import { rename, writeFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { masterCliCommand } from './master-cli.js';
import type { DesiredServer, DesiredState, ServerChange } from './server-diff.js';

/**
 * Server changes through HAProxy's runtime API, sent to the current worker over the master CLI (`@1 ...`):
 * add → enable health → enable; update address, port, weight; remove = drain → wait for the server's sessions
 * to end (bounded) → maintenance → delete. Then `show servers state` must match the file.
 *
 * Every command goes on its own connection and its reply is judged against the one success reply that
 * command has: `set severity-output` would be clearer, but it lasts for one CLI session, and the master opens
 * a new session on the worker for every command it forwards (HAProxy 2.6), so it would never apply.
 */

export interface RuntimeOptions {
  masterSocket: string;
  /** Budget for everything, the wait for sessions included, in ms. */
  timeout: number;
  /** The longest wait for a removed server's sessions to end, in ms. */
  drainTimeout: number;
  /** Pause between two looks at a draining server's sessions, in ms. Default 20. */
  pollInterval?: number;
}

/** How the changes went. `ok: false` comes with the reason; some changes may have been made. */
export interface RuntimeResult {
  ok: boolean;
  reason?: string;
  /** Commands sent. */
  commands: number;
}

/** How long `del server` is tried again while connections still hold the server. */
const DELETE_RETRY_MS = 1000;
/** The reply of `del server` to a server that connections still hold. */
const HELD = /still has connections/;
/** `srv_admin_state` bit of a server put in maintenance (`state maint`). */
const FORCED_MAINT = 0x01;

/** What each command answers when it worked (HAProxy 2.6); anything else is an error. */
const SUCCESS = {
  add: /^New server registered\.$/,
  del: /^Server deleted\.$/,
  addr: /changed from|no need to change/,
  empty: /^$/,
};

/** Applies the changes, then checks `show servers state` against the file's servers. */
export async function applyServerChanges(changes: readonly ServerChange[], desired: DesiredState, options: RuntimeOptions): Promise<RuntimeResult> {
  const session = openSession(options);
  const started = await startChanges(session, changes);
  if (started.error !== undefined) return session.fail(started.error);
  return finishChanges(session, changes, desired);
}

/**
 * The part of a batch of changes that takes effect at once: servers added and enabled, addresses and weights
 * set, leaving servers set to drain (out of the balancing; their requests go on). `started` lists the changes
 * made, wholly or in part, in order: what {@link undoServerChanges} takes back. The rest (waiting for the
 * drained servers' sessions, deleting them, verifying) is {@link finishServerChanges}.
 */
export async function startServerChanges(changes: readonly ServerChange[], options: RuntimeOptions): Promise<RuntimeResult & { started: ServerChange[] }> {
  const session = openSession(options);
  const { started, error } = await startChanges(session, changes);
  return error === undefined ? { ok: true, commands: session.commands(), started } : { ...session.fail(error), started };
}

/** Ends what {@link startServerChanges} began: drained servers deleted once their sessions are over, then the check against the file. */
export function finishServerChanges(changes: readonly ServerChange[], desired: DesiredState, options: RuntimeOptions): Promise<RuntimeResult> {
  return finishChanges(openSession(options), changes, desired);
}

/**
 * Takes back changes {@link startServerChanges} made (`started`), newest first, so that the running servers are
 * the file's before them (`previous`) again: an added server is drained, waited for and deleted, an address or
 * weight set back, a drained server made ready. Then `show servers state` must match `previous`.
 * @param reverse the changes from the new file back to the previous one (`diffServers(after, before)`): they
 *   hold the previous addresses, weights and server lines.
 */
export async function undoServerChanges(started: readonly ServerChange[], reverse: readonly ServerChange[], previous: DesiredState, options: RuntimeOptions): Promise<RuntimeResult> {
  const session = openSession(options);
  const back = new Map(reverse.map((c) => [`${c.backend}/${c.name}`, c]));
  const removals: ServerChange[] = [];
  for (const change of [...started].reverse()) {
    const server = `${change.backend}/${change.name}`;
    let error: string | undefined;
    if (change.kind === 'add') {
      error = await session.send(`set server ${server} state drain`, SUCCESS.empty);
      removals.push(change);
    } else if (change.kind === 'remove') {
      error = await session.send(`set server ${server} state ready`, SUCCESS.empty);
    } else {
      const undo = back.get(server);
      if (undo?.kind !== 'update') return session.fail(`no previous address or weight known for ${server}`);
      error = await updateServer(session, undo);
    }
    if (error !== undefined) return session.fail(error);
  }
  return finishChanges(session, removals.map((c) => ({ kind: 'remove', backend: c.backend, name: c.name })), previous);
}
/**
 * Writes the running servers' state to `file` for `load-server-state-from-file`, keeping only the servers the
 * new file has with the same address, port and weight: HAProxy applies a saved port and weight to a server of
 * the same name whatever the file says, so a stale line would undo the change the reload is for.
 */
export async function writeServerState(file: string, desired: readonly DesiredServer[], masterSocket: string, timeout: number): Promise<void> {
  const text = await masterCliCommand(masterSocket, '@1 show servers state', { timeout, retryEmpty: true });
  const state = parseServersState(text);
  const wanted = new Map(desired.map((s) => [`${s.backend}/${s.name}`, s]));
  const kept = state.rows.filter((row) => {
    const server = wanted.get(`${row.backend}/${row.name}`);
    return server !== undefined && agrees(server, row);
  });
  const temp = `${file}.tmp`;
  await writeFile(temp, [state.version, state.header, ...kept.map((row) => row.line), ''].join('\n'));
  await rename(temp, file);
}

// --- internal ---

/** Commands to one master CLI within one deadline, counted. */
interface Session {
  options: RuntimeOptions;
  deadline: number;
  remaining(): number;
  commands(): number;
  /** Sends a command; returns why it failed, or undefined when it answered its success reply. */
  send(command: string, success: RegExp): Promise<string | undefined>;
  fail(reason: string): RuntimeResult;
  /** Counts a command sent by other means (`show servers state` for the verification). */
  count(): void;
}

function openSession(options: RuntimeOptions): Session {
  const deadline = Date.now() + options.timeout;
  let commands = 0;
  const remaining = (): number => Math.max(1, deadline - Date.now());
  return {
    options,
    deadline,
    remaining,
    commands: () => commands,
    count: () => void commands++,
    fail: (reason) => ({ ok: false, reason, commands }),
    async send(command, success) {
      commands++;
      let reply: string;
      try {
        // Never resent: a command that reached the worker must not run twice.
        reply = (await masterCliCommand(options.masterSocket, `@1 ${command}`, { timeout: remaining(), retryAfterSend: false })).trim();
      } catch (err) {
        return `"${command}": ${(err as Error).message}`;
      }
      return success.test(reply) ? undefined : `"${command}": ${reply === '' ? 'no reply' : reply.split('\n')[0]}`;
    },
  };
}

/** Adds, updates and drains; stops at the first error. `started` holds every change a command was sent for. */
async function startChanges(session: Session, changes: readonly ServerChange[]): Promise<{ started: ServerChange[]; error?: string }> {
  const started: ServerChange[] = [];
  for (const change of changes) {
    const server = `${change.backend}/${change.name}`;
    started.push(change);
    let error: string | undefined;
    if (change.kind === 'add') {
      // The enables answer nothing on success: sent on one connection (`;`-separated, each for worker 1), any
      // reply text is an error. One round trip fewer per added server, on the way to serving.
      const enables = [change.health ? `enable health ${server}` : '', change.agent ? `enable agent ${server}` : '', change.disabled ? '' : `enable server ${server}`].filter(Boolean);
      error =
        (await session.send(`add server ${server} ${change.address} ${change.keywords.join(' ')}`.trimEnd(), SUCCESS.add)) ??
        (enables.length > 0 ? await session.send(enables.join('; @1 '), SUCCESS.empty) : undefined);
      // Refused outright: nothing to take back for this one.
      if (error?.startsWith('"add server ')) started.pop();
    } else if (change.kind === 'update') {
      error = await updateServer(session, change);
    } else {
      // Out of the balancing at once; the requests it is serving go on.
      error = await session.send(`set server ${server} state drain`, SUCCESS.empty);
    }
    if (error !== undefined) return { started, error };
  }
  return { started };
}

async function updateServer(session: Session, change: Extract<ServerChange, { kind: 'update' }>): Promise<string | undefined> {
  const server = `${change.backend}/${change.name}`;
  return (
    (change.host !== undefined ? await session.send(`set server ${server} addr ${change.host} port ${change.port}`, SUCCESS.addr) : undefined) ??
    (change.weight !== undefined ? await session.send(`set server ${server} weight ${change.weight}`, SUCCESS.empty) : undefined)
  );
}

/** Waits for the drained servers' sessions, deletes them, then checks the running servers against the file. */
async function finishChanges(session: Session, changes: readonly ServerChange[], desired: DesiredState): Promise<RuntimeResult> {
  const { options, deadline } = session;
  /**
   * `del server`, again for a moment while a connection still holds the server (one that just ended, a client's
   * keep-alive connection it served last). Still held after that, it stays in maintenance, which takes it out of
   * the balancing as surely, and is deleted by a later apply (see `verifyServers`).
   */
  const deleteServer = async (server: string): Promise<string | undefined> => {
    const until = Math.min(deadline, Date.now() + DELETE_RETRY_MS);
    for (;;) {
      const error = await session.send(`del server ${server}`, SUCCESS.del);
      if (error === undefined || !HELD.test(error)) return error;
      if (Date.now() >= until) return undefined;
      await delay(options.pollInterval ?? 20);
    }
  };
  const removals = changes.filter((c) => c.kind === 'remove');
  if (removals.length > 0) {
    const drained = await waitForSessions(removals, options, Math.min(deadline, Date.now() + options.drainTimeout));
    if (drained !== undefined) return session.fail(drained);
    for (const { backend, name } of removals) {
      const server = `${backend}/${name}`;
      const error = (await session.send(`set server ${server} state maint`, SUCCESS.empty)) ?? (await deleteServer(server));
      if (error) return session.fail(error);
    }
  }
  session.count();
  let verdict: Awaited<ReturnType<typeof verifyServers>>;
  try {
    verdict = await verifyServers(desired, options.masterSocket, session.remaining());
  } catch (err) {
    return session.fail(`cannot read "show servers state": ${(err as Error).message}`);
  }
  if (verdict.mismatch !== undefined) return session.fail(verdict.mismatch);
  // Servers removed earlier and still held then: deleted now if they can be, left in maintenance otherwise.
  for (const server of verdict.leftovers) await session.send(`del server ${server}`, SUCCESS.del);
  return { ok: true, commands: session.commands() };
}

interface StateRow {
  backend: string;
  name: string;
  addr: string;
  port: number;
  weight: number;
  admin: number;
  line: string;
}

/** `show servers state`: a version line, a `# field ...` header, one line of fields per server. */
function parseServersState(text: string): { version: string; header: string; rows: StateRow[] } {
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  const headerAt = lines.findIndex((line) => line.startsWith('#'));
  if (headerAt < 0 || !/^\d+$/.test(lines[0]?.trim() ?? '')) throw new Error(`not a "show servers state" reply: ${JSON.stringify(text.slice(0, 80))}`);
  const fields = lines[headerAt]!.replace(/^#\s*/, '').split(/\s+/);
  const at = (name: string): number => {
    const index = fields.indexOf(name);
    if (index < 0) throw new Error(`"show servers state" has no ${name} field`);
    return index;
  };
  const [be, srv, addr, port, weight, admin] = [at('be_name'), at('srv_name'), at('srv_addr'), at('srv_port'), at('srv_uweight'), at('srv_admin_state')];
  const rows = lines.slice(headerAt + 1).map((line) => {
    const values = line.trim().split(/\s+/);
    return { backend: values[be]!, name: values[srv]!, addr: values[addr]!, port: Number(values[port]), weight: Number(values[weight]), admin: Number(values[admin]), line };
  });
  return { version: lines[0]!.trim(), header: lines[headerAt]!, rows };
}

function agrees(server: DesiredServer, row: StateRow): boolean {
  return (server.ip === undefined || server.ip === row.addr) && (server.port === undefined || server.port === row.port) && server.weight === row.weight;
}

/**
 * Waits until none of the servers has a session or a queued request; returns why not by the deadline. Looks
 * again after `pollInterval`, then less and less often (up to {@link SESSION_POLL_MAX_MS}): a drained server
 * takes no new requests, and a long-lived connection to it would otherwise cost a `show stat` every 20 ms for
 * as long as it lasts.
 */
async function waitForSessions(servers: readonly { backend: string; name: string }[], options: RuntimeOptions, deadline: number): Promise<string | undefined> {
  const backends = [...new Set(servers.map((s) => s.backend))];
  let busy: string[] = [];
  let pause = options.pollInterval ?? 20;
  do {
    busy = [];
    for (const backend of backends) {
      const csv = await masterCliCommand(options.masterSocket, `@1 show stat ${backend} 4 -1`, { timeout: Math.max(1, deadline - Date.now()), retryEmpty: true }).catch(() => '');
      const sessions = serverSessions(csv);
      for (const { name } of servers.filter((s) => s.backend === backend)) {
        const count = sessions.get(name);
        if (count === undefined || count > 0) busy.push(`${backend}/${name}${count === undefined ? '' : ` (${count} session(s))`}`);
      }
    }
    if (busy.length === 0) return undefined;
    await delay(Math.min(pause, Math.max(0, deadline - Date.now())));
    pause = Math.min(SESSION_POLL_MAX_MS, pause * 1.5);
  } while (Date.now() < deadline);
  return `sessions still open after ${options.drainTimeout} ms on ${busy.join(', ')}`;
}

/** The longest pause between two looks at a draining server's sessions, in ms. */
const SESSION_POLL_MAX_MS = 100;

/** `show stat` CSV → server name → its current sessions plus queued requests (only the columns it needs are read). */
function serverSessions(text: string): Map<string, number> {
  const sessions = new Map<string, number>();
  const lines = text.split('\n');
  const header = lines[0];
  if (!header?.startsWith('# ')) return sessions;
  const columns = header.slice(2).split(',');
  const [name, scur, qcur] = [columns.indexOf('svname'), columns.indexOf('scur'), columns.indexOf('qcur')];
  if (name < 0 || scur < 0 || qcur < 0) return sessions;
  for (let i = 1; i < lines.length; i++) {
    const values = lines[i]!.split(',', Math.max(name, scur, qcur) + 1);
    if (values.length <= Math.max(name, scur, qcur)) continue;
    sessions.set(values[name]!, Number(values[scur]) + Number(values[qcur]));
  }
  return sessions;
}

/**
 * Compares the running servers with the file's: the first difference, if any, and the servers the file no
 * longer has that are in maintenance (removed, and still held by connections when they were): those are
 * pending deletions, not differences.
 * @throws when `show servers state` cannot be read.
 */
export async function verifyServers(desired: DesiredState, masterSocket: string, timeout: number): Promise<{ mismatch?: string; leftovers: string[] }> {
  const state = parseServersState(await masterCliCommand(masterSocket, '@1 show servers state', { timeout, retryEmpty: true }));
  const running = new Map(state.rows.map((row) => [`${row.backend}/${row.name}`, row]));
  for (const server of desired.servers) {
    if (desired.unverifiable.has(server.backend)) continue;
    const row = running.get(`${server.backend}/${server.name}`);
    if (!row) return { mismatch: `show servers state has no ${server.backend}/${server.name}`, leftovers: [] };
    if (!agrees(server, row)) {
      const file = `${server.ip ?? '(a name)'}:${server.port ?? '-'} weight ${server.weight}`;
      return { mismatch: `show servers state has ${server.backend}/${server.name} at ${row.addr}:${row.port} weight ${row.weight}, the file says ${file}`, leftovers: [] };
    }
  }
  const wanted = new Set(desired.servers.map((s) => `${s.backend}/${s.name}`));
  const leftovers: string[] = [];
  for (const row of state.rows) {
    const server = `${row.backend}/${row.name}`;
    if (!desired.backends.has(row.backend) || desired.unverifiable.has(row.backend) || wanted.has(server)) continue;
    if ((row.admin & FORCED_MAINT) === 0) return { mismatch: `show servers state has ${server}, which the file does not`, leftovers: [] };
    leftovers.push(server);
  }
  return { leftovers };
}
