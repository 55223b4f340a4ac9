import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { masterCliCommand, MasterCliError } from '../../src/haproxy/master-cli.js';
import { parseShowProc } from '../../src/haproxy/show-proc.js';
import { haproxyConfig, startHaproxy, type HaproxyProcess } from '../helpers/haproxy.js';
import { freePort } from '../helpers/ports.js';
import { tempDir } from '../helpers/tmp.js';
import { waitFor } from '../helpers/wait.js';

let dir: { path: string; cleanup: () => Promise<void> };
const servers: Server[] = [];
const sockets = new Set<Socket>();

beforeEach(async () => {
  dir = await tempDir('rosterd-mcli-');
});

afterEach(async () => {
  for (const socket of sockets) socket.destroy();
  sockets.clear();
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  await dir.cleanup();
});

/**
 * A stand-in master CLI that answers like HAProxy's only once the client has half-closed: it collects
 * the request until 'end', then writes the reply and closes.
 */
async function fakeCli(path: string, reply: (command: string) => string | undefined): Promise<{ received: string[] }> {
  const received: string[] = [];
  const server = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    let request = '';
    socket.on('data', (chunk: Buffer) => (request += chunk.toString()));
    socket.on('end', () => {
      received.push(request);
      const text = reply(request);
      if (text !== undefined) socket.end(text); // undefined: never answer
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return { received };
}

describe('masterCliCommand', () => {
  it('writes the command, half-closes, and returns the whole reply', async () => {
    const path = join(dir.path, 'cli.sock');
    const big = 'x'.repeat(200_000);
    const fake = await fakeCli(path, (command) => `you said ${JSON.stringify(command)}\n${big}\n`);
    const reply = await masterCliCommand(path, 'show proc', { timeout: 2_000 });
    expect(fake.received).toEqual(['show proc\n']);
    expect(reply).toBe(`you said "show proc\\n"\n${big}\n`);
  });

  it('with retryEmpty, asks again after an empty reply (a master closing as it re-executes)', async () => {
    const path = join(dir.path, 'cli.sock');
    let calls = 0;
    const fake = await fakeCli(path, () => (++calls < 3 ? '' : 'state\n'));
    expect(await masterCliCommand(path, 'show proc', { timeout: 2_000, retryEmpty: true })).toBe('state\n');
    expect(fake.received).toHaveLength(3);
  });

  it('returns an empty reply as an empty string', async () => {
    const path = join(dir.path, 'cli.sock');
    await fakeCli(path, () => '');
    await expect(masterCliCommand(path, 'reload', { timeout: 2_000 })).resolves.toBe('');
  });

  it('retries a missing socket (ENOENT) until it appears', async () => {
    const path = join(dir.path, 'late.sock');
    const errnos: string[] = [];
    let started: Promise<unknown> | undefined;
    const reply = await masterCliCommand(path, 'show proc', {
      timeout: 5_000,
      retryDelay: 10,
      onRetry: (error) => {
        errnos.push(error.errno ?? '?');
        // The socket shows up after the client has failed twice.
        if (errnos.length === 2) started = fakeCli(path, () => 'here now\n');
      },
    });
    await started;
    expect(reply).toBe('here now\n');
    expect(errnos.length).toBeGreaterThanOrEqual(2);
    expect(errnos.slice(0, 2)).toEqual(['ENOENT', 'ENOENT']);
  });

  it('retries a socket file nobody listens on (ECONNREFUSED) until a server is back', async () => {
    const path = join(dir.path, 'stale.sock');
    // A listener killed with SIGKILL leaves its socket file behind: connecting to it is refused.
    const holder = spawn(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => console.log('ready'))", path], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    holder.kill('SIGKILL');
    await new Promise((resolve) => holder.once('exit', resolve));

    const errnos: string[] = [];
    let restarted: Promise<unknown> | undefined;
    const reply = await masterCliCommand(path, 'show proc', {
      timeout: 5_000,
      retryDelay: 10,
      onRetry: (error) => {
        errnos.push(error.errno ?? '?');
        if (errnos.length === 2) restarted = rm(path).then(() => fakeCli(path, () => 'back\n'));
      },
    });
    await restarted;
    expect(reply).toBe('back\n');
    expect(errnos.slice(0, 2)).toEqual(['ECONNREFUSED', 'ECONNREFUSED']);
  });

  it('gives up at the deadline with a MasterCliError', async () => {
    const path = join(dir.path, 'never.sock');
    const started = Date.now();
    const error = await masterCliCommand(path, 'show proc', { timeout: 200, retryDelay: 10 }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(MasterCliError);
    const cliError = error as MasterCliError;
    expect(cliError.code).toBe('E_HAPROXY');
    expect(cliError.errno).toBe('ENOENT');
    expect(cliError.sent).toBe(false);
    expect(cliError.attempts).toBeGreaterThan(1);
    expect(cliError.message).toContain(path);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('times out when the server never answers, and reports that the command went out', async () => {
    const path = join(dir.path, 'mute.sock');
    await fakeCli(path, () => undefined);
    const error = (await masterCliCommand(path, 'reload', { timeout: 150 }).catch((err: unknown) => err)) as MasterCliError;
    expect(error).toBeInstanceOf(MasterCliError);
    expect(error.errno).toBe('ETIMEDOUT');
    expect(error.sent).toBe(true);
  });

  it('refuses a command with a line break', async () => {
    await expect(masterCliCommand(join(dir.path, 'x.sock'), 'show proc\nreload')).rejects.toThrow(RangeError);
  });
});

describe('masterCliCommand against HAProxy', () => {
  let haproxy: HaproxyProcess | undefined;

  afterEach(async () => {
    await haproxy?.stop();
    haproxy = undefined;
  });

  it('rides out the socket closing while the master re-executes', async () => {
    haproxy = await startHaproxy({ dir: dir.path, config: haproxyConfig({ port: await freePort(), gen: 1 }) });
    const before = parseShowProc(await masterCliCommand(haproxy.masterSocket, 'show proc'));
    expect(before.master.pid).toBe(haproxy.pid);

    process.kill(haproxy.pid, 'SIGUSR2');
    const errnos: string[] = [];
    const onRetry = (error: MasterCliError): void => void errnos.push(error.errno ?? '?');
    // Until the counter moves, the reply may come from the master before it re-executed.
    const socket = haproxy.masterSocket;
    const after = await waitFor(
      async () => {
        const state = parseShowProc(await masterCliCommand(socket, 'show proc', { timeout: 5_000, retryDelay: 5, onRetry }));
        return state.master.reloads > before.master.reloads ? state : undefined;
      },
      'the reload counter to move',
      { timeout: 5_000, interval: 1 },
    );
    expect(after.master.reloads).toBe(before.master.reloads + 1);
    expect(errnos.length).toBeGreaterThan(0);
    for (const errno of errnos) expect(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE']).toContain(errno);
  });
});
