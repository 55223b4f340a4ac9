import { RosterdError, SourceError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Member } from '../members/model.js';
import { createSnapshotGate } from '../sources/snapshot.js';
import type { Source } from '../sources/types.js';

/** What is known about one source right now. */
export interface SourceStatus {
  readonly name: string;
  /** The last good snapshot; undefined until the first one. */
  readonly members: readonly Member[] | undefined;
  /** False after an error, true again after the next good snapshot (or an unchanged look). */
  readonly up: boolean;
  readonly lastError: Error | undefined;
  /** When the source last looked successfully, whether or not the members changed (ms since epoch). */
  readonly lastSnapshotAt: number | undefined;
  /** When the source was started (ms since epoch). */
  readonly startedAt: number;
}

interface Entry {
  source: Source;
  status: { -readonly [K in keyof SourceStatus]: SourceStatus[K] };
}

/**
 * Holds the running sources and their last good snapshots. Every snapshot goes through the member gate
 * (validation, sorting, no event when nothing changed); an error marks the source down but keeps its
 * snapshot. Listeners learn which source changed; they read the snapshots from here.
 */
export class Roster {
  private readonly entries = new Map<string, Entry>();
  private readonly changeListeners: ((source: string) => void)[] = [];
  private readonly errorListeners: ((source: string, error: Error) => void)[] = [];
  private readonly firstWaiters = new Set<() => void>();

  constructor(private readonly logger: Logger) {}

  /** Calls `listener` with a source's name each time its snapshot changes (including the first). */
  onChange(listener: (source: string) => void): void {
    this.changeListeners.push(listener);
  }

  /** Calls `listener` each time a source reports an error. */
  onError(listener: (source: string, error: Error) => void): void {
    this.errorListeners.push(listener);
  }

  /** Names of the sources in the roster. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  /** The source object registered under `name`. */
  source(name: string): Source | undefined {
    return this.entries.get(name)?.source;
  }

  /** Last good snapshots by source name (sources without a first snapshot are absent). */
  snapshots(): Map<string, readonly Member[]> {
    const map = new Map<string, readonly Member[]>();
    for (const [name, entry] of this.entries) if (entry.status.members) map.set(name, entry.status.members);
    return map;
  }

  status(name: string): SourceStatus | undefined {
    return this.entries.get(name)?.status;
  }

  /** True when every named source has delivered a first snapshot. */
  ready(names: readonly string[]): boolean {
    return names.every((name) => this.entries.get(name)?.status.members !== undefined);
  }

  /** Starts `source` under `name`. A source that throws from `start()` is reported like any source error. */
  async add(name: string, source: Source): Promise<void> {
    const entry: Entry = {
      source,
      status: { name, members: undefined, up: false, lastError: undefined, lastSnapshotAt: undefined, startedAt: Date.now() },
    };
    this.entries.set(name, entry);
    const log = this.logger.child({ source: name });
    const gate = createSnapshotGate(
      name,
      (members) => {
        entry.status.members = members;
        for (const listener of this.changeListeners) listener(name);
      },
      (dropped) => log.warn({ member: dropped.member, reason: dropped.reason }, `member ${dropped.member} dropped: ${dropped.reason}`),
    );
    const onSnapshot = (members: Member[]): void => {
      // A source removed by a config reload may still deliver: it no longer counts.
      if (this.entries.get(name) !== entry) return;
      const first = entry.status.members === undefined;
      gate(members);
      // Every good look counts, changed or not: it is how fresh the snapshot is, and the source is up.
      entry.status.lastSnapshotAt = Date.now();
      if (!entry.status.up) {
        log.info({ members: entry.status.members?.length }, first ? 'first snapshot' : 'source is back');
        entry.status.up = true;
        entry.status.lastError = undefined;
      }
      this.wakeWaiters();
    };
    const onError = (error: Error): void => {
      if (this.entries.get(name) !== entry) return;
      const wrapped = RosterdError.is(error) ? error : new SourceError(name, error.message, { cause: error });
      entry.status.up = false;
      entry.status.lastError = wrapped;
      for (const listener of this.errorListeners) listener(name, wrapped);
      this.wakeWaiters();
    };
    try {
      await source.start(onSnapshot, onError);
    } catch (err) {
      onError(err as Error);
    }
  }

  /** Stops and forgets one source. */
  async remove(name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) return;
    this.entries.delete(name);
    await entry.source.stop();
  }

  /** Stops every source; resolves when all have stopped. */
  async stop(): Promise<void> {
    const names = [...this.entries.keys()];
    // Every source gets its stop, even when another one's fails; the first failure is reported after.
    const stopped = await Promise.allSettled(names.map((name) => this.remove(name)));
    this.wakeWaiters();
    const failure = stopped.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failure) throw failure.reason;
  }

  /**
   * Waits until every named source has a first snapshot. Rejects at once when one of them reports an
   * error that waiting cannot fix (`retryable: false`), and after `timeout` ms with `E_SOURCE_TIMEOUT`
   * naming the sources still missing and their last error.
   */
  async waitForFirst(names: readonly string[], timeout: number): Promise<void> {
    const check = (): Error | true | undefined => {
      if (this.ready(names)) return true;
      for (const name of names) {
        const status = this.entries.get(name)?.status;
        if (status?.members === undefined && status?.lastError instanceof SourceError && !status.lastError.retryable) {
          return status.lastError;
        }
      }
      return undefined;
    };
    await new Promise<void>((resolve, reject) => {
      const settle = (): void => {
        const outcome = check();
        if (outcome === undefined) return;
        clearTimeout(timer);
        this.firstWaiters.delete(settle);
        if (outcome === true) resolve();
        else reject(outcome);
      };
      const timer = setTimeout(() => {
        this.firstWaiters.delete(settle);
        const missing = names.filter((name) => this.entries.get(name)?.status.members === undefined);
        const first = missing[0] ?? '';
        const lastError = this.entries.get(first)?.status.lastError;
        const detail = lastError ? `: ${RosterdError.is(lastError) ? lastError.detail : lastError.message}` : '';
        reject(
          new SourceError(first, `no first snapshot within ${timeout} ms${detail}`, {
            code: 'E_SOURCE_TIMEOUT',
            cause: lastError,
          }),
        );
      }, timeout);
      this.firstWaiters.add(settle);
      settle();
    });
  }

  private wakeWaiters(): void {
    for (const waiter of this.firstWaiters) waiter();
  }
}
