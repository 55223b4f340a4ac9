/**
 * Showing untrusted text (member names, command output, error messages that quote them) to a person. The
 * snapshot gate already drops members with control characters; these functions do not rely on it.
 */

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text as HTML: safe in element content and in quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);
}

/**
 * Characters a terminal acts on instead of showing: C0 and C1 controls (escape sequences, carriage
 * returns that overwrite a line), DEL, line separators, and the bidirectional overrides that reorder what is
 * shown.
 */
// oxlint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Text for a terminal, on one line: every character a terminal would act on is written as `\u{…}`. */
export function forTerminal(text: string): string {
  return text.replace(UNPRINTABLE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
