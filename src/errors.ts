/**
 * The rosterd error family. Every error the library raises on purpose is a `RosterdError` with a stable
 * `code`; anything else is a bug and is reported with its stack.
 *
 * Messages say what and where: a file and line, a config path (`templates[0].wait.min`), a source or a
 * template name. Fields carry the same facts for programs.
 */

/** Stable error codes. Scripts may rely on these strings. */
export type RosterdErrorCode =
  /** Bad command-line usage (unknown flag, missing argument). */
  | 'E_USAGE'
  /** The config file could not be found, parsed or validated. `issues` lists every problem. */
  | 'E_CONFIG'
  /** A template does not compile (syntax, unknown filter). */
  | 'E_TEMPLATE'
  /** A template failed while rendering (undefined variable, filter error). */
  | 'E_RENDER'
  /** A guard (`minMembers`, `maxShrink`) refused a render. */
  | 'E_GUARD'
  /** The `check` command rejected the candidate file. */
  | 'E_CHECK_FAILED'
  /** Installing the output file failed (`InstallError`: its `destination` and the `step` that failed). */
  | 'E_INSTALL'
  /** The `reload` command failed (the previous file was restored unless `rollback: false`). */
  | 'E_RELOAD_FAILED'
  /** A source could not look at its backend, or its data could not be read. */
  | 'E_SOURCE'
  /** A source delivered no first snapshot within the timeout. */
  | 'E_SOURCE_TIMEOUT'
  /** A Serf RPC request failed (agent error, closed connection, protocol error). */
  | 'E_SERF'
  /** An HAProxy master CLI exchange failed, or its reply was not what was asked for (`rosterd/haproxy`). */
  | 'E_HAPROXY'
  /** A bug: an error rosterd did not expect. `cause` holds it, with its stack; please report it. */
  | 'E_INTERNAL';

const BRAND = Symbol.for('rosterd.error');

/** Base class of every error rosterd raises on purpose. */
export class RosterdError extends Error {
  readonly code: RosterdErrorCode;
  /** The message without its `[source x]` / `[template y]` prefix, for messages that name the component themselves. */
  readonly detail: string;

  constructor(code: RosterdErrorCode, detail: string, options?: { cause?: unknown; prefix?: string }) {
    super(options?.prefix ? `${options.prefix} ${detail}` : detail, options);
    this.code = code;
    this.detail = detail;
    Object.defineProperty(this, 'name', { value: new.target.name, enumerable: false, configurable: true });
    Object.defineProperty(this, BRAND, { value: true, enumerable: false });
  }

  /** Unlike `instanceof`, this works across duplicate copies of the package. */
  static is(value: unknown): value is RosterdError {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** One problem found in a config: where (`templates[0].wait.min`) and what. */
export interface ConfigIssue {
  path: string;
  message: string;
  /**
   * For a template that does not compile: liquidjs's excerpt of the template around the error, the failing
   * line marked with `>>` (`>> 3| {% for x in y %}`) and a caret under the column.
   */
  excerpt?: string;
}

/** The config is invalid. Every problem is listed in `issues`, not only the first. */
export class ConfigError extends RosterdError {
  readonly file: string | undefined;
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[], file?: string, options?: { cause?: unknown }) {
    super('E_CONFIG', formatConfigIssues(issues, file), options);
    this.file = file;
    this.issues = issues;
  }
}

/** A template does not compile or failed to render. Carries liquidjs's file, line and column, and its excerpt. */
export class TemplateError extends RosterdError {
  readonly template: string;
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly column: number | undefined;
  /**
   * liquidjs's excerpt of the template around the error, when it gives one: a few numbered lines, the failing
   * one marked with `>>`, and a caret under the column. Not part of `message`, which stays one line.
   */
  readonly excerpt: string | undefined;

  constructor(
    code: 'E_TEMPLATE' | 'E_RENDER',
    message: string,
    where: { template: string; file?: string; line?: number; column?: number; excerpt?: string },
    options?: { cause?: unknown },
  ) {
    super(code, message, { ...options, prefix: `[template ${where.template}]` });
    this.template = where.template;
    this.file = where.file;
    this.line = where.line;
    this.column = where.column;
    this.excerpt = where.excerpt;
  }
}

/** A source failed. `retryable: false` means waiting will not help (a missing file, a wrong auth key). */
export class SourceError extends RosterdError {
  readonly source: string;
  readonly retryable: boolean;

  constructor(
    source: string,
    message: string,
    options?: { cause?: unknown; retryable?: boolean; code?: 'E_SOURCE' | 'E_SOURCE_TIMEOUT' },
  ) {
    super(options?.code ?? 'E_SOURCE', message, { cause: options?.cause, prefix: `[source ${source}]` });
    this.source = source;
    this.retryable = options?.retryable ?? true;
  }
}

/** A step of a template's pipeline failed at run time: guard, check or reload (an install fails with an {@link InstallError}). */
export class TemplateRunError extends RosterdError {
  readonly template: string;
  /** Exit code of the failed command, when a command failed. */
  readonly exitCode: number | undefined;
  /** True when the failed command was killed by its timeout. */
  readonly timedOut: boolean;
  /** The end of the failed command's output (untrusted text: it may echo member data). */
  readonly output: string | undefined;

  constructor(
    code: 'E_GUARD' | 'E_CHECK_FAILED' | 'E_INSTALL' | 'E_RELOAD_FAILED',
    template: string,
    message: string,
    options?: { cause?: unknown; exitCode?: number; timedOut?: boolean; output?: string },
  ) {
    super(code, message, { cause: options?.cause, prefix: `[template ${template}]` });
    this.template = template;
    this.exitCode = options?.exitCode;
    this.timedOut = options?.timedOut ?? false;
    this.output = options?.output;
  }
}

/** The step of an install that failed. */
export type InstallStep =
  /** Reading the file on disk, to compare with. */
  | 'read'
  /** Looking at what is at the destination (a directory or another non-regular file is refused). */
  | 'inspect'
  /** Following a symlink at the destination. */
  | 'symlink'
  /** Creating the destination's directory. */
  | 'directory'
  /** Creating, writing and flushing the temporary file next to the destination. */
  | 'write'
  /** Giving the temporary file its owner (`uid`, `gid`). */
  | 'owner'
  /** Giving the temporary file its mode (`perms`). */
  | 'mode'
  /** Keeping the previous file as `<file>.bak`. */
  | 'backup'
  /** Renaming the temporary file over the destination. */
  | 'rename'
  /** Removing a file: a candidate, a restored-away file, or a fan-out's file that `prune` removes. */
  | 'remove'
  /** Reading or writing a fan-out's record of its files. */
  | 'record';

/**
 * Installing a file failed (`E_INSTALL`). The destination keeps its previous bytes, mode and owner. `cause`
 * holds the system error (`EACCES`, `ENOSPC`, ...).
 */
export class InstallError extends RosterdError {
  /** The file being installed (a fan-out: the file, or its directory when no one file is at fault). */
  readonly destination: string;
  /** The step that failed. */
  readonly step: InstallStep;
  /** The template whose file it is; undefined for an error raised below the runner. */
  readonly template: string | undefined;

  constructor(step: InstallStep, destination: string, message: string, options?: { cause?: unknown; template?: string }) {
    super('E_INSTALL', message, { cause: options?.cause, ...(options?.template === undefined ? {} : { prefix: `[template ${options.template}]` }) });
    this.destination = destination;
    this.step = step;
    this.template = options?.template;
  }
}

/** Formats config issues one per line, each prefixed with the file when known. */
function formatConfigIssues(issues: readonly ConfigIssue[], file?: string): string {
  const where = file ? `${file}: ` : '';
  if (issues.length === 1) {
    const only = issues[0]!;
    return `invalid config: ${where}${only.path ? `${only.path}: ` : ''}${only.message}`;
  }
  const lines = issues.map((i) => `  ${i.path ? `${i.path}: ` : ''}${i.message}`);
  return `invalid config: ${where}${issues.length} problems\n${lines.join('\n')}`;
}
