import { createRequire } from 'node:module';

// Required on the first diff, not imported: its twenty modules would load with every render, and most never diff.
let diffModule: typeof import('diff') | undefined;
const loadDiff = (): typeof import('diff') => (diffModule ??= createRequire(import.meta.url)('diff') as typeof import('diff'));

/**
 * A unified diff of a rendered file, for `render --once --diff`, labelled as git does: `--- a/<path>` and
 * `+++ b/<path>`, with leading slashes dropped from `path` (so `/etc/x.cfg` reads `a/etc/x.cfg` and the patch
 * applies with `patch -p1 -d /`). A file that does not exist yet (`before` undefined) is `--- /dev/null`, a
 * file to be removed (`after` undefined) is `+++ /dev/null`. Returns the empty string when the contents are
 * equal; a file that does not exist yet differs from any content, even an empty one.
 */
export function unifiedDiff(path: string, before: string | undefined, after: string | undefined): string {
  return patch(path, before, after)!;
}

/** A {@link unifiedDiff} kept within bounds, for records that live in memory (the render history). */
export interface BoundedDiff {
  /** The diff, cut at a line boundary to at most `maxBytes`; undefined when not computed (see `omitted`). */
  text?: string;
  /** Why the diff is missing or incomplete. */
  omitted?: string;
}

/**
 * A unified diff of at most `maxBytes` (UTF-8), given up when more than `maxEditLines` lines changed or after
 * `timeoutMs`: the diff algorithm's cost grows with the size of the file times the size of the change (1,000
 * changed lines of 10,000 take about half a second), and such a diff says little more than "rewritten".
 */
export function boundedDiff(
  path: string,
  before: string | undefined,
  after: string | undefined,
  limits: { maxBytes: number; maxEditLines: number; timeoutMs: number },
): BoundedDiff {
  const started = performance.now();
  const text = patch(path, before, after, { maxEditLength: limits.maxEditLines, timeout: limits.timeoutMs });
  if (text === undefined) {
    const tooSlow = performance.now() - started >= limits.timeoutMs;
    return { omitted: tooSlow ? `not computed within ${limits.timeoutMs} ms` : `more than ${limits.maxEditLines} lines changed` };
  }
  const bytes = Buffer.byteLength(text);
  if (bytes <= limits.maxBytes) return { text };
  // Cut at the last line end within the limit: a character split by the byte limit is after it.
  let cut = Buffer.from(text).subarray(0, limits.maxBytes).toString('utf8');
  cut = cut.slice(0, cut.lastIndexOf('\n') + 1);
  return { text: cut, omitted: `cut at ${limits.maxBytes} bytes of ${bytes}` };
}

/** The diff of {@link unifiedDiff}; undefined when a bound was reached. */
function patch(path: string, before: string | undefined, after: string | undefined, bounds: { maxEditLength?: number; timeout?: number } = {}): string | undefined {
  if (before === after) return '';
  const label = path.replace(/^\/+/, '');
  const { createTwoFilesPatch, FILE_HEADERS_ONLY } = loadDiff();
  return createTwoFilesPatch(before === undefined ? '/dev/null' : `a/${label}`, after === undefined ? '/dev/null' : `b/${label}`, before ?? '', after ?? '', undefined, undefined, {
    headerOptions: FILE_HEADERS_ONLY,
    ...bounds,
  });
}
