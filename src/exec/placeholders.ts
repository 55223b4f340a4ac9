/**
 * `{{name}}` placeholders in `check` and `reload` commands, and the shell quoting that keeps member data from
 * ever splitting a command or injecting one. Security-critical: a destination or a value comes from config and
 * templates, and may hold spaces, quotes or `$(…)`.
 *
 * - `{{name}}` (spaces inside the braces allowed) whose name is in `placeholders` is replaced in every argv
 *   element as is, and in a shell string as one shell word: inserted as is when the value only has safe
 *   characters, else single-quoted. Write them bare in a shell string, not inside quotes (inside quotes, use
 *   `"$ROSTERD_NAME"`). Other `{{…}}` are left as they are.
 * - Every placeholder is also exported to the command as `ROSTERD_<NAME>` (upper case, characters other than
 *   letters, digits and `_` become `_`).
 */

/** A command: an argv array (run directly) or a string (run with `sh -c`). */
export type CommandSpec = string | readonly string[];

const PLACEHOLDER = /\{\{\s*([A-Za-z_][A-Za-z0-9_-]*)\s*\}\}/g;
const SHELL_SAFE = /^[A-Za-z0-9_./:@%+=,-]+$/;

/**
 * What runs for a command spec: the program, its arguments, and the command line as reported (the shell string
 * after placeholders, or the argv after placeholders, shell-quoted and joined). `file` is undefined for an
 * empty command.
 */
export function resolveSpec(spec: CommandSpec, placeholders: Record<string, string>): { file: string | undefined; args: string[]; command: string } {
  if (typeof spec === 'string') {
    const command = substitute(spec, placeholders, shellQuote);
    return { file: command.trim() === '' ? undefined : '/bin/sh', args: ['-c', command], command };
  }
  const argv = spec.map((arg) => substitute(arg, placeholders, (value) => value));
  const [file, ...args] = argv;
  return { file: file === '' ? undefined : file, args, command: argv.map(shellQuote).join(' ') };
}

/**
 * The command as `runCommand` would report it in `CommandResult.command`: the shell string after
 * placeholders, or the argv after placeholders, shell-quoted and joined. For dry runs and messages.
 */
export function describeCommand(spec: CommandSpec, placeholders: Record<string, string>): string {
  return resolveSpec(spec, placeholders).command;
}

/** The `ROSTERD_<NAME>` environment variables of the placeholders. */
export function placeholderEnv(placeholders: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(placeholders)) {
    env[`ROSTERD_${name.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`] = value;
  }
  return env;
}

/** One shell word: as is when every character is safe, else single-quoted (`'` becomes `'\''`). */
export function shellQuote(value: string): string {
  if (SHELL_SAFE.test(value)) return value;
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

// --- internal ---

function substitute(text: string, placeholders: Record<string, string>, encode: (value: string) => string): string {
  return text.replace(PLACEHOLDER, (match, name: string) => {
    const value = Object.hasOwn(placeholders, name) ? placeholders[name] : undefined;
    return value === undefined ? match : encode(value);
  });
}
