import { spawn, type ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { tempDir } from './tmp.js';
import { waitFor } from './wait.js';

/**
 * A real `dnsmasq` for tests: in the foreground, on 127.0.0.1 and a port of its own, authoritative for
 * `test` (`--local=/test/`: an unknown name under it is NXDOMAIN at once, a name outside it is REFUSED, as
 * there is no upstream). Records come from the command line (`--host-record`, `--srv-host`) and from the
 * files of a watched hosts directory (`--hostsdir`), which dnsmasq re-reads on its own when a file in it
 * is written: that is how a test changes DNS data without a restart.
 *
 * Readiness is "a query gets an answer" (NXDOMAIN counts), probed with a `Resolver`.
 */

/** An SRV record: `--srv-host=name,target,port,priority,weight`. */
export interface SrvRecord {
  name: string;
  target: string;
  port: number;
  /** @default 0 */
  priority?: number;
  /** @default 0 */
  weight?: number;
}

/** How to start dnsmasq. */
export interface DnsmasqOptions {
  /** `--host-record=name,addr[,addr…]`: A and AAAA records fixed for the life of the process. */
  hostRecords?: { name: string; addresses: string[] }[];
  /** SRV records, in this order on the command line. */
  srvRecords?: SrvRecord[];
  /** Files written into the hosts directory before the start: file name → hosts-file text. */
  hostsFiles?: Record<string, string>;
  /** `--local-ttl`: the TTL of local records, in seconds. dnsmasq's default is 0. */
  localTtl?: number;
  /** `--server=/domain/ip#port`: names under `domain` are asked of another server (answers are forwarded). */
  forward?: { domain: string; server: string }[];
  /** `--cache-size`: 0 keeps forwarded answers out of the cache, and so out of other answers' additional section. */
  cacheSize?: number;
  /** Milliseconds to wait for the first answer. @default 5000 */
  readyTimeout?: number;
}

/** A running dnsmasq. */
export interface Dnsmasq {
  /** `127.0.0.1:P`, as the `servers` option of a dns source takes it. */
  server: string;
  port: number;
  /** The watched hosts directory. */
  hostsDir: string;
  /**
   * Writes a file of the hosts directory (`ip name…` lines), staged outside the directory and renamed in:
   * dnsmasq would read a temporary file inside it as one more hosts file and keep its records.
   */
  writeHosts(file: string, text: string): Promise<void>;
  /** dnsmasq's output so far, for diagnostics. */
  output(): string;
  /** SIGTERM, and waits for the process to exit. Harmless when it is not running. */
  stop(): Promise<void>;
  /** Starts dnsmasq again on the same port with the same records and hosts directory (stopping it first if needed). */
  restart(): Promise<void>;
  /** Stops dnsmasq and removes its directory. */
  cleanup(): Promise<void>;
}

/** The dnsmasq binary: `$DNSMASQ_BIN`, else the Debian package's. */
export const DNSMASQ_BIN = process.env.DNSMASQ_BIN ?? '/usr/sbin/dnsmasq';

const running = new Set<ChildProcess>();

// A test run that dies before its afterAll must not leave dnsmasq behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts dnsmasq and resolves once it answers queries. */
export async function startDnsmasq(options: DnsmasqOptions = {}): Promise<Dnsmasq> {
  const dir = await tempDir('rosterd-dnsmasq-');
  const hostsDir = join(dir.path, 'hosts.d');
  const staging = join(dir.path, 'staging');
  await mkdir(hostsDir);
  await mkdir(staging);
  for (const [file, text] of Object.entries(options.hostsFiles ?? {})) await writeFile(join(hostsDir, file), text);
  const port = await freePort();
  const server = `127.0.0.1:${port}`;

  const args = [
    '--keep-in-foreground',
    '--no-daemon',
    '--conf-file=/dev/null',
    '--no-resolv',
    '--no-hosts',
    '--no-poll',
    `--port=${port}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--user=root',
    '--pid-file=',
    '--log-facility=-',
    '--local=/test/',
    `--hostsdir=${hostsDir}`,
  ];
  if (options.localTtl !== undefined) args.push(`--local-ttl=${options.localTtl}`);
  for (const record of options.hostRecords ?? []) args.push(`--host-record=${[record.name, ...record.addresses].join(',')}`);
  for (const r of options.srvRecords ?? []) args.push(`--srv-host=${r.name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 0}`);
  for (const { domain, server: to } of options.forward ?? []) args.push(`--server=/${domain}/${to.replace(':', '#')}`);
  if (options.cacheSize !== undefined) args.push(`--cache-size=${options.cacheSize}`);

  let output = '';
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  const stop = async (): Promise<void> => {
    const current = child;
    if (current && current.exitCode === null && current.signalCode === null) current.kill('SIGTERM');
    await exited;
  };

  const start = async (): Promise<void> => {
    const next = spawn(DNSMASQ_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = next;
    running.add(next);
    const collect = (chunk: Buffer): void => {
      if (output.length < 1_000_000) output += chunk.toString();
    };
    next.stdout?.on('data', collect);
    next.stderr?.on('data', collect);
    let gone = false;
    exited = new Promise<void>((resolve) => {
      next.once('exit', () => {
        gone = true;
        running.delete(next);
        resolve();
      });
      next.once('error', (err) => {
        output += `spawn failed: ${err.message}\n`;
        gone = true;
        running.delete(next);
        resolve();
      });
    });
    const probe = new Resolver({ timeout: 200, tries: 1 });
    probe.setServers([server]);
    try {
      await waitFor(
        async () => {
          if (gone) throw new Error('dnsmasq exited');
          try {
            await probe.resolve4('readiness-probe.test');
            return true;
          } catch (err) {
            // NXDOMAIN is an answer: the server is up. Anything else (refused, timeout) means not yet.
            return (err as NodeJS.ErrnoException).code === 'ENOTFOUND';
          }
        },
        `dnsmasq to answer on ${server}`,
        { timeout: options.readyTimeout ?? 5_000, interval: 20 },
      );
    } catch (err) {
      await stop();
      throw new Error(`${(err as Error).message}\n--- dnsmasq output ---\n${output}`, { cause: err });
    } finally {
      probe.cancel();
    }
  };

  await start();
  return {
    server,
    port,
    hostsDir,
    async writeHosts(file, text) {
      const temp = join(staging, file);
      await writeFile(temp, text);
      await rename(temp, join(hostsDir, file));
    },
    output: () => output,
    stop,
    async restart() {
      await stop();
      await start();
    },
    async cleanup() {
      await stop();
      await dir.cleanup();
    },
  };
}
