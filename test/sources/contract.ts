import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SourceError } from '../../src/errors.js';
import { CONTROL } from '../../src/members/text.js';
import { createSnapshotGate, type DroppedMember } from '../../src/sources/snapshot.js';
import type { Member, Source } from '../../src/sources/types.js';
import { waitFor } from '../helpers/wait.js';

/**
 * The behaviour every source promises (see `Source` in src/sources/types.ts), checked against a real
 * backend. Snapshots go through `createSnapshotGate`, as the runner passes them.
 */

/** A started-able source and the means to act on its backend. */
export interface SourceHarness {
  /** The source under test, not started yet. */
  source: Source;
  /**
   * Makes a change in the backend that shows in the member list (a new member, a changed tag…). Resolves
   * to a test that the first snapshot reflecting this change passes, and earlier ones fail.
   */
  change(): Promise<(members: Member[]) => boolean>;
  /** Touches the backend without changing the member list (rewrites the same data, sets a tag to its value). */
  touch(): Promise<void>;
  /** Makes the backend unreachable or unreadable (stops the server, removes the file…). */
  breakBackend(): Promise<void>;
  /** Brings the backend back (its content may differ from before the break, but must not be empty). */
  restoreBackend(): Promise<void>;
  /**
   * Puts hostile data in the backend next to the good members: a control character (a line break) in a
   * member's name, address or tag, as an attacker who can register a member would. Left out only where the
   * backend cannot carry such data at all (DNS names are labels the resolver checks).
   */
  hostile?(): Promise<void>;
  /** Removes everything the harness started or created. The source has been stopped already. */
  cleanup(): Promise<void>;
}

export interface ContractOptions {
  /** Milliseconds to wait for a snapshot or an error. @default 20000 */
  timeout?: number;
}

/** How long a library's own short timer may outlive `stop()`. */
const LIBRARY_TIMER_GRACE = 1500;

/** The kinds of handle a source may hold; none may remain after `stop()`. */
const HANDLE_KINDS = ['TCPSocketWrap', 'TCPServerWrap', 'UDPWrap', 'Timeout', 'Immediate', 'FSEventWrap', 'StatWatcher', 'GetAddrInfoReqWrap', 'QueryReqWrap'];

function countHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of HANDLE_KINDS) counts[kind] = 0;
  for (const kind of process.getActiveResourcesInfo()) if (kind in counts) counts[kind]! += 1;
  return counts;
}

/** Runs the source contract. The cases build on each other and run in order. */
export function sourceContract(title: string, setup: () => Promise<SourceHarness>, options: ContractOptions = {}): void {
  const timeout = options.timeout ?? 20_000;
  const wait = { timeout };

  describe(`source contract: ${title}`, () => {
    let harness: SourceHarness | undefined;
    let baseline: Record<string, number>;
    const snapshots: Member[][] = [];
    const errors: Error[] = [];
    const dropped: DroppedMember[] = [];

    const source = () => harness!.source;
    /** Waits for the first snapshot after `from` that passes `test`, and returns every snapshot up to it. */
    const snapshotsUntil = async (from: number, test: (members: Member[]) => boolean, what: string) => {
      await waitFor(() => snapshots.slice(from).some(test), what, wait);
      const index = snapshots.findIndex((members, i) => i >= from && test(members));
      return snapshots.slice(from, index + 1);
    };

    beforeAll(async () => {
      harness = await setup();
      baseline = countHandles();
      const gate = createSnapshotGate(source().name, (members) => snapshots.push(members), (d) => dropped.push(d));
      // start() resolves: whatever goes wrong later is reported through onError, never thrown.
      await source().start(gate, (err) => errors.push(err));
    }, 60_000);

    afterAll(async () => {
      if (harness === undefined) return;
      await harness.source.stop();
      await harness.cleanup();
    }, 60_000);

    it('delivers a first snapshot of valid members', async () => {
      await waitFor(() => snapshots.length > 0, 'the first snapshot', wait);
      const [first] = snapshots;
      expect(first!.length).toBeGreaterThan(0);
      for (const member of first!) expect(member.source).toBe(source().name);
      expect(errors).toEqual([]);
    });

    it('gives exactly one new snapshot for one change', async () => {
      for (let round = 0; round < 2; round++) {
        const before = snapshots.length;
        const shows = await harness!.change();
        const seen = await snapshotsUntil(before, shows, `the snapshot of change ${round + 1}`);
        // Nothing in between: the change arrives as one snapshot. (The next round checks nothing came after it.)
        expect(seen).toHaveLength(1);
        expect(shows(snapshots[before - 1]!)).toBe(false);
      }
    });

    it('gives no snapshot for a touch that changes nothing', async () => {
      const before = snapshots.length;
      await harness!.touch();
      // A real change after the touch is the barrier: its snapshot must be the only new one.
      const shows = await harness!.change();
      const seen = await snapshotsUntil(before, shows, 'the snapshot of the change after the touch');
      expect(seen).toHaveLength(1);
    });

    it('reports backend loss as an error, emits nothing meanwhile, and recovers when the backend is back', async () => {
      const snapshotsBefore = snapshots.length;
      const errorsBefore = errors.length;
      await harness!.breakBackend();
      await waitFor(() => errors.length > errorsBefore, 'an error after the backend broke', wait);
      for (const err of errors.slice(errorsBefore)) {
        expect(err).toBeInstanceOf(SourceError);
        expect(err).toMatchObject({ code: 'E_SOURCE', source: source().name });
      }
      expect(snapshots.length).toBe(snapshotsBefore);

      await harness!.restoreBackend();
      const shows = await harness!.change();
      await snapshotsUntil(snapshotsBefore, shows, 'a snapshot after the backend came back');
      // Whatever came after the break is a real answer: never an empty list for "could not look".
      for (const members of snapshots.slice(snapshotsBefore)) expect(members.length).toBeGreaterThan(0);
    });

    it('passes hostile member data to the gate only: it is dropped there, and no control character reaches a snapshot', async () => {
      const { hostile } = harness!;
      // Checked for every source whose backend can hold such data (see SourceHarness.hostile).
      if (hostile === undefined) return;
      const droppedBefore = dropped.length;
      await hostile.call(harness);
      await waitFor(() => dropped.length > droppedBefore, 'the hostile member dropped by the gate', wait);
      for (const d of dropped) expect(d.member).not.toMatch(CONTROL);
      // The source goes on: a real change still comes through.
      const before = snapshots.length;
      const shows = await harness!.change();
      await snapshotsUntil(before, shows, 'a snapshot after the hostile data');
      for (const members of snapshots) for (const m of members) for (const text of [m.name, m.address, ...Object.keys(m.tags), ...Object.values(m.tags)]) expect(text).not.toMatch(CONTROL);
    });

    it('stop() resolves with no socket, watcher or timer of the source left', async () => {
      await source().stop();
      const leftover = (): string[] => {
        const after = countHandles();
        return HANDLE_KINDS.filter((kind) => after[kind]! > baseline[kind]!);
      };
      // A library the source uses may leave a short timer of its own that fires and ends by itself (chokidar
      // throttles directory reads for 1 s): allow that much, never a handle that stays.
      await waitFor(() => leftover().length === 0, `no handles left (still: ${leftover().join(', ')})`, { timeout: LIBRARY_TIMER_GRACE });
      await source().stop(); // a second stop is harmless
    });
  });
}
