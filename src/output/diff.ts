import { createTwoFilesPatch, FILE_HEADERS_ONLY } from 'diff';

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
 * A unified diff of at most `maxBytes` (UTF-8), given up when more than `maxEditLines` lines changed: the
 * diff algorithm's cost grows with the size of the change, and such a diff says little more than "rewritten".
 */
export function boundedDiff(path: string, before: string | undefined, after: string | undefined, limits: { maxBytes: number; maxEditLines: number }): BoundedDiff {
  const text = patch(path, before, after, limits.maxEditLines);
  if (text === undefined) return { omitted: `more than ${limits.maxEditLines} lines changed` };
  const bytes = Buffer.byteLength(text);
  if (bytes <= limits.maxBytes) return { text };
  // Cut at the last line end within the limit: a character split by the byte limit is after it.
  let cut = Buffer.from(text).subarray(0, limits.maxBytes).toString('utf8');
  cut = cut.slice(0, cut.lastIndexOf('\n') + 1);
  return { text: cut, omitted: `cut at ${limits.maxBytes} bytes of ${bytes}` };
}

/** The diff of {@link unifiedDiff}; undefined when more than `maxEditLength` lines changed. */
function patch(path: string, before: string | undefined, after: string | undefined, maxEditLength?: number): string | undefined {
  if (before === after) return '';
  const label = path.replace(/^\/+/, '');
  return createTwoFilesPatch(before === undefined ? '/dev/null' : `a/${label}`, after === undefined ? '/dev/null' : `b/${label}`, before ?? '', after ?? '', undefined, undefined, {
    headerOptions: FILE_HEADERS_ONLY,
    ...(maxEditLength === undefined ? {} : { maxEditLength }),
  });
}
