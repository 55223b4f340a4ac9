import type { FileChange } from '../reload/reloader.js';
import type { RosterdError, SourceError, TemplateRunError } from '../errors.js';
import type { Member } from '../members/model.js';

/** One template's outcome in a render pass (`renderOnce` returns one per template). */
export interface TemplateResult {
  template: string;
  destination: string;
  /**
   * `written`: new content installed (and reloaded, if configured). `unchanged`: the file already held
   * these bytes; nothing was written or run. `dry`: a dry run; `content` (and `diff`) say what would be
   * written. `failed`: see `error`; the previous file is in place.
   */
  status: 'written' | 'unchanged' | 'dry' | 'failed';
  /** True when the rendered content differs from the file on disk. */
  changed: boolean;
  /** Number of members the template was rendered with. */
  members: number;
  /** The rendered text, for dry runs. */
  content?: string;
  /** A unified diff against the file on disk, for dry runs. */
  diff?: string;
  /** Where the previous file was kept, when `backup` is on and a file was replaced. */
  backupPath?: string;
  error?: RosterdError;
  durationMs: number;
  /**
   * A fan-out template (`forEach`): `destination` is its directory, and this lists every file of the render,
   * in order; dry runs give each one's `content` and `diff`.
   */
  files?: FanOutFile[];
  /** Fan-out with `prune`: the files removed (dry runs: that would be removed). */
  removed?: string[];
  /** Fan-out: the items left out because their destination was refused, and why. */
  refused?: RefusedItem[];
}

/** One file of a fan-out render. */
export interface FanOutFile {
  /** Absolute path. */
  destination: string;
  /** The member's name (`forEach: member`) or the tag's value (`groupBy`). */
  item: string;
  /** The rendered content differs from the file on disk. */
  changed: boolean;
  /** Dry runs: the rendered text. */
  content?: string;
  /** Dry runs: a unified diff against the file on disk. */
  diff?: string;
}

/** An item of a fan-out whose rendered destination was refused: it gets no file, the others go on. */
export interface RefusedItem {
  /** The member's name or the tag's value. */
  item: string;
  /** The destination as rendered. */
  destination: string;
  reason: string;
}

/** What a fan-out render did, beside the template's status. */
export interface FanOutReport {
  files: FanOutFile[];
  removed: string[];
  refused: RefusedItem[];
}

/** How a reload that covered a template went, as part of a {@link RenderReport}. */
export interface ReloadReport {
  ok: boolean;
  /** The reload as shown in logs (`haproxy master CLI reload via …`, the command line). */
  command: string;
  /** How the content reached the program: a `reload`, or HAProxy's `runtime` API. */
  path: 'reload' | 'runtime';
  durationMs: number;
  /** Runtime mode: why it reloaded instead. */
  fallback?: string;
  /** When it failed: why (its `output` holds the end of the command's output). */
  error?: TemplateRunError;
  /** When it failed: whether the previous files were put back. */
  rolledBack?: boolean;
}

/**
 * Everything about one template's render in a batch, once its reload (if any) is over: what it was rendered
 * from, how it ended, what it installed. One per template and batch (none for dry runs), emitted after the
 * narrower events of the same render. For observers that keep a record (the render history, the fleet view).
 */
export interface RenderReport {
  template: string;
  destination: string;
  /** When the render started (ms since epoch). */
  startedAt: number;
  /** The template's first render since the renderer started, or since a config reload replaced it. */
  first: boolean;
  /** Render, compare, check and install; the reload's time is in `reload`. */
  durationMs: number;
  members: number;
  /** The snapshots of the template's sources this render used, by source name. */
  snapshots: ReadonlyMap<string, readonly Member[]>;
  /** `failed`: a render or install error (see `error`). */
  outcome: 'written' | 'unchanged' | 'guarded' | 'check-failed' | 'failed';
  /** Why it was guarded, rejected by the check (with the command's `output`), or failed. */
  error?: RosterdError;
  /** A single-destination template's rendered bytes, when written or unchanged. */
  content?: Buffer;
  /** Every file the render installed or removed, with its bytes before and after (a fan-out's many files). */
  changes?: readonly FileChange[];
  /** The reload that covered this template, when one ran. */
  reload?: ReloadReport;
}

/** A template's state in a running renderer: one element of `Renderer.templateStatus()`. */
export interface TemplateStatus {
  template: string;
  /** Absolute path; a fan-out template's directory. */
  destination: string;
  /** Written or found unchanged since start, and the last render succeeded (what `/ready` reports). */
  ready: boolean;
  /** The last render's error; undefined after a success (written or unchanged). */
  lastError: RosterdError | undefined;
  /** The sources the template renders from. */
  sources: readonly string[];
  /** A change waits for its render (`wait`, or the render under way). */
  pending: boolean;
  /** A render is under way. */
  rendering: boolean;
}

/**
 * `rendered`: new content was installed (before its reload, if any). A fan-out template emits one per render:
 * `destination` is its directory, `files` the files written and `removed` those pruned.
 */
export interface RenderedEvent {
  template: string;
  destination: string;
  members: number;
  /** Where the previous file was kept, with `backup`. */
  backupPath?: string;
  durationMs: number;
  /** Fan-out: the files written. */
  files?: string[];
  /** Fan-out with `prune`: the files removed. */
  removed?: string[];
}

/** `unchanged`: a render produced exactly what the file already holds; nothing written, nothing run. */
export interface UnchangedEvent {
  template: string;
  destination: string;
  members: number;
  durationMs: number;
}

/** `guarded`: a guard (`minMembers`, `maxShrink`) refused the render; the previous file stays. */
export interface GuardedEvent {
  template: string;
  /** Why, as in the error's message (`only 1 member(s), fewer than minMembers 2; …`). */
  reason: string;
  /** `E_GUARD`. */
  error: TemplateRunError;
}

/** `checkFailed`: the check command rejected the candidate; it was not installed. */
export interface CheckFailedEvent {
  template: string;
  /** `E_CHECK_FAILED`, with the command's `exitCode`, `timedOut` and `output`. */
  error: TemplateRunError;
}

/**
 * `reloaded`: a reload ran and succeeded, once for all the templates listed. `group` names every template of
 * the config that shares this reload, sorted: it does not change from batch to batch.
 */
export interface ReloadedEvent {
  /** The templates of this batch the reload covered. */
  templates: string[];
  /** Every template of the config that shares this reload, sorted. */
  group: string[];
  /** The reload as shown in logs (the command line, `haproxy master CLI reload via …`). */
  command: string;
  durationMs: number;
  /** How the new content reached the program: `reload`, or `runtime` (HAProxy's runtime API, no reload). */
  path: 'reload' | 'runtime';
  /** Why a runtime-mode reloader reloaded instead. */
  fallback?: string;
}

/**
 * `reloadFailed`: a reload failed; each template's previous file was restored unless `rollback: false` or the
 * reload may still take effect. A file left in place is reloaded again by its next render, even when unchanged.
 */
export interface ReloadFailedEvent {
  /** The templates of this batch the reload covered. */
  templates: string[];
  /** Every template of the config that shares this reload, sorted. */
  group: string[];
  command: string;
  /** `E_RELOAD_FAILED`, with the command's `exitCode`, `timedOut` and `output`. */
  error: TemplateRunError;
  /** Whether every template's previous file was put back. */
  rolledBack: boolean;
}

/** `sourceError`: a source could not look at its backend; its last good snapshot is kept. */
export interface SourceErrorEvent {
  source: string;
  error: SourceError | RosterdError;
}

/** `error`: any other failure of a template (render error, install error, a bug). */
export interface RendererErrorEvent {
  template?: string;
  error: RosterdError | Error;
}

/** The events a renderer emits, with their payloads. */
export interface RendererEvents {
  /** New content was installed (before its reload, if any): see {@link RenderedEvent}. */
  rendered: [event: RenderedEvent];
  /** A render produced exactly what the file already holds: nothing written, nothing run. */
  unchanged: [event: UnchangedEvent];
  /** A guard (`minMembers`, `maxShrink`) refused the render; the previous file stays. */
  guarded: [event: GuardedEvent];
  /** The check command rejected the candidate; it was not installed. */
  checkFailed: [event: CheckFailedEvent];
  /** A reload ran and succeeded, once for all the templates listed: see {@link ReloadedEvent}. */
  reloaded: [event: ReloadedEvent];
  /** A reload failed: see {@link ReloadFailedEvent}. */
  reloadFailed: [event: ReloadFailedEvent];
  /** One template's render is over, its reload included: see {@link RenderReport}. */
  settled: [report: RenderReport];
  /** A source could not look at its backend; its last good snapshot is kept. */
  sourceError: [event: SourceErrorEvent];
  /**
   * Any other failure of a template (render error, install error). Emitted only when someone listens, so an
   * unhandled `error` event never crashes the process.
   */
  error: [event: RendererErrorEvent];
}
