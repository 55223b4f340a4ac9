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
  const deadline = Date.now() + options.timeout;
  const remaining = (): number => Math.max(1, deadline - Date.now());
  let commands = 0;
  const send = async (command: string, success: RegExp): Promise<string | undefined> => {
    commands++;
    let reply: string;
    try {
      // Never resent: a command that reached the worker must not run twice.
      reply = (await masterCliCommand(options.masterSocket, `@1 ${command}`, { timeout: remaining(), retryAfterSend: false })).trim();
    } catch (err) {
      return `"${command}": ${(err as Error).message}`;
    }
    return success.test(reply) ? undefined : `"${command}": ${reply === '' ? 'no reply' : reply.split('\n')[0]}`;
  };
  const fail = (reason: string): RuntimeResult => ({ ok: false, reason, commands });
  /**
   * `del server`, again for a moment while a connection still holds the server (one that just ended, a client's
   * keep-alive connection it served last). Still held after that, it stays in maintenance, which takes it out of
   * the balancing as surely, and is deleted by a later apply (see `verifyServers`).
   */
  const deleteServer = async (server: string): Promise<string | undefined> => {
    const until = Math.min(deadline, Date.now() + DELETE_RETRY_MS);
    for (;;) {
      const error = await send(`del server ${server}`, SUCCESS.del);
      if (error === undefined || !HELD.test(error)) return error;
      if (Date.now() >= until) return undefined;
      await delay(options.pollInterval ?? 20);
    }
  };

  const removals = changes.filter((c) => c.kind === 'remove');
  for (const change of changes) {
    const server = `${change.backend}/${change.name}`;
    if (change.kind === 'add') {
      const error =
        (await send(`add server ${server} ${change.address} ${change.keywords.join(' ')}`.trimEnd(), SUCCESS.add)) ??
        (change.health ? await send(`enable health ${server}`, SUCCESS.empty) : undefined) ??
        (change.agent ? await send(`enable agent ${server}`, SUCCESS.empty) : undefined) ??
        (change.disabled ? undefined : await send(`enable server ${server}`, SUCCESS.empty));
      if (error) return fail(error);
    } else if (change.kind === 'update') {
      const error =
        (change.host !== undefined ? await send(`set server ${server} addr ${change.host} port ${change.port}`, SUCCESS.addr) : undefined) ??
        (change.weight !== undefined ? await send(`set server ${server} weight ${change.weight}`, SUCCESS.empty) : undefined);
      if (error) return fail(error);
    } else {
      // Out of the balancing at once; the requests it is serving go on.
      const error = await send(`set server ${server} state drain`, SUCCESS.empty);
      if (error) return fail(error);
    }
  }
  if (removals.length > 0) {
    const drained = await waitForSessions(removals, options, Math.min(deadline, Date.now() + options.drainTimeout));
    if (drained !== undefined) return fail(drained);
    for (const { backend, name } of removals) {
      const server = `${backend}/${name}`;
      const error = (await send(`set server ${server} state maint`, SUCCESS.empty)) ?? (await deleteServer(server));
      if (error) return fail(error);
    }
  }
  commands++;
  let verdict: Awaited<ReturnType<typeof verifyServers>>;
  try {
    verdict = await verifyServers(desired, options.masterSocket, remaining());
  } catch (err) {
    return fail(`cannot read "show servers state": ${(err as Error).message}`);
  }
  if (verdict.mismatch !== undefined) return fail(verdict.mismatch);
  // Servers removed earlier and still held then: deleted now if they can be, left in maintenance otherwise.
  for (const server of verdict.leftovers) await send(`del server ${server}`, SUCCESS.del);
  return { ok: true, commands };
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

/** Waits until none of the servers has a session or a queued request; returns why not by the deadline. */
async function waitForSessions(servers: readonly { backend: string; name: string }[], options: RuntimeOptions, deadline: number): Promise<string | undefined> {
  const backends = [...new Set(servers.map((s) => s.backend))];
  let busy: string[] = [];
  do {
    busy = [];
    for (const backend of backends) {
      const csv = await masterCliCommand(options.masterSocket, `@1 show stat ${backend} 4 -1`, { timeout: Math.max(1, deadline - Date.now()), retryEmpty: true }).catch(() => '');
      const rows = parseCsv(csv);
      for (const { name } of servers.filter((s) => s.backend === backend)) {
        const row = rows.find((r) => r.svname === name);
        if (row === undefined || Number(row.scur) > 0 || Number(row.qcur) > 0) busy.push(`${backend}/${name}${row ? ` (${row.scur} session(s))` : ''}`);
      }
    }
    if (busy.length === 0) return undefined;
    await delay(options.pollInterval ?? 20);
  } while (Date.now() < deadline);
  return `sessions still open after ${options.drainTimeout} ms on ${busy.join(', ')}`;
}

function parseCsv(text: string): Record<string, string>[] {
  const [header, ...lines] = text.split('\n').filter((l) => l.trim() !== '');
  if (!header?.startsWith('# ')) return [];
  const columns = header.slice(2).split(',');
  return lines.map((line) => Object.fromEntries(line.split(',').map((v, i) => [columns[i], v])));
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
