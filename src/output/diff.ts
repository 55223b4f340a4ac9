import { createTwoFilesPatch, FILE_HEADERS_ONLY } from 'diff';

/**
 * A unified diff of a rendered file, for `render --once --diff`, labelled as git does: `--- a/<path>` and
 * `+++ b/<path>`, with leading slashes dropped from `path` (so `/etc/x.cfg` reads `a/etc/x.cfg` and the patch
 * applies with `patch -p1 -d /`). A file that does not exist yet (`before` undefined) is `--- /dev/null`, a
 * file to be removed (`after` undefined) is `+++ /dev/null`. Returns the empty string when the contents are
 * equal; a file that does not exist yet differs from any content, even an empty one.
 */
export function unifiedDiff(path: string, before: string | undefined, after: string | undefined): string {
  if (before === after) return '';
  const label = path.replace(/^\/+/, '');
  return createTwoFilesPatch(
    before === undefined ? '/dev/null' : `a/${label}`,
    after === undefined ? '/dev/null' : `b/${label}`,
    before ?? '',
    after ?? '',
    undefined,
    undefined,
    { headerOptions: FILE_HEADERS_ONLY },
  );
}
