import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import msgpack from 'msgpack-lite';
import { freePort } from './ports.js';
import { tempDir } from './tmp.js';
import { waitFor } from './wait.js';

/**
 * Real `serf agent` processes for tests, on 127.0.0.1 with explicit ports. Readiness is probed with a
 * raw RPC handshake (not with the client under test), so the helper also serves tests of other parts.
 */

/** How to start an agent. Everything is optional. */
export interface SerfAgentOptions {
  /** Node name. @default a unique `node-<n>` */
  name?: string;
  /** `-tag k=v` flags. */
  tags?: Record<string, string>;
  /** Gossip port (`-bind=127.0.0.1:P`); give the old one to restart a node on the same ports. @default a free port */
  bindPort?: number;
  /** RPC port (`-rpc-addr=127.0.0.1:R`). @default a free port */
  rpcPort?: number;
  /** Sets `rpc_auth` in the config file. */
  authKey?: string;
  /** `-join` addresses (`127.0.0.1:P`), joined at start-up (the agent exits if none answers). */
  join?: string[];
  /** More config-file settings, merged over the short reap timers. */
  config?: Record<string, unknown>;
  /** Milliseconds to wait for the RPC to answer. @default 15000 */
  readyTimeout?: number;
}

/** A running agent. */
export interface SerfAgent {
  name: string;
  /** `127.0.0.1:R`, for RPC clients. */
  rpcAddr: string;
  /** `127.0.0.1:P`, for other agents to join. */
  bindAddr: string;
  rpcPort: number;
  bindPort: number;
  /** The agent's output so far (stdout and stderr), for diagnostics. */
  output(): string;
  /** Sends `signal` (SIGINT: graceful leave, which takes a few seconds) and waits for the process to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** SIGKILL (the node fails, no leave) and waits for the process to exit. */
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();
let counter = 0;

// A test run that dies before its afterAll must not leave agents behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts `serf agent` and resolves once its RPC answers a handshake. */
export async function startSerfAgent(options: SerfAgentOptions = {}): Promise<SerfAgent> {
  const name = options.name ?? `node-${process.pid}-${++counter}`;
  const bindPort = options.bindPort ?? (await freePort());
  const rpcPort = options.rpcPort ?? (await freePort());
  const dir = await tempDir('rosterd-serf-');
  const config: Record<string, unknown> = { reconnect_timeout: '30s', tombstone_timeout: '30s', ...options.config };
  if (options.authKey !== undefined) config.rpc_auth = options.authKey;
  const configFile = join(dir.path, 'agent.json');
  await writeFile(configFile, JSON.stringify(config));

  const args = ['agent', `-node=${name}`, `-bind=127.0.0.1:${bindPort}`, `-rpc-addr=127.0.0.1:${rpcPort}`, `-config-file=${configFile}`];
  for (const [key, value] of Object.entries(options.tags ?? {})) args.push('-tag', `${key}=${value}`);
  for (const address of options.join ?? []) args.push(`-join=${address}`);

  const child = spawn('serf', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running.delete(child);
      void dir.cleanup().then(resolve, resolve);
    });
  });
  let hasExited = false;
  void exited.then(() => (hasExited = true));

  const signalAndWait = async (signal: NodeJS.Signals) => {
    if (!hasExited) child.kill(signal);
    await exited;
  };
  const agent: SerfAgent = {
    name,
    rpcAddr: `127.0.0.1:${rpcPort}`,
    bindAddr: `127.0.0.1:${bindPort}`,
    rpcPort,
    bindPort,
    output: () => output,
    stop: (signal = 'SIGINT') => signalAndWait(signal),
    kill: () => signalAndWait('SIGKILL'),
  };

  try {
    await waitFor(
      async () => {
        if (hasExited) throw new Error(`serf agent ${name} exited:\n${output}`);
        return rpcAnswers(rpcPort);
      },
      `serf agent ${name} to answer RPC on 127.0.0.1:${rpcPort}`,
      { timeout: options.readyTimeout ?? 15_000, interval: 50 },
    );
  } catch (err) {
    await agent.kill();
    throw new Error(`${(err as Error).message}\n--- agent output ---\n${output}`, { cause: err });
  }
  return agent;
}

/** True when a handshake on 127.0.0.1:port gets a reply without an error. Resolves once its socket is closed. */
function rpcAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let answer = false;
    socket.once('close', () => resolve(answer));
    const done = (ok: boolean) => {
      answer = ok;
      socket.destroy();
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (chunk: Buffer) => {
      try {
        const reply = msgpack.decode(chunk) as { Error?: unknown };
        done(reply.Error === '');
      } catch {
        done(false);
      }
    });
    socket.write(Buffer.concat([msgpack.encode({ Command: 'handshake', Seq: 1 }), msgpack.encode({ Version: 1 })]));
  });
}
