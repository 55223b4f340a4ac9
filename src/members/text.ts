/**
 * Member data is untrusted text from the network. These are the characters it must never carry into a
 * file, a log line or a terminal, and the one way to show such a value safely.
 */

/**
 * C0 (U+0000–U+001F), DEL and C1 (U+007F–U+009F), and the line and paragraph separators U+2028 and U+2029:
 * anything that could start a new line or confuse a terminal, a log viewer or a config parser.
 */
// oxlint-disable-next-line no-control-regex
export const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** The same, to replace every one of them (`String.replace` only: a global regex is stateful in `test`). */
export const CONTROL_CHARACTERS = new RegExp(CONTROL.source, 'g');

/**
 * A value as JSON, with the control characters JSON leaves as they are (DEL, C1, U+2028, U+2029) escaped too:
 * what a warning prints about a bad member cannot start a line of its own.
 */
export function printable(value: unknown): string {
  return String(JSON.stringify(value)).replace(CONTROL_CHARACTERS, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
