import { EventEmitter } from 'node:events';
import type { HistoryConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { Member } from '../members/model.js';
import { boundedDiff } from '../output/diff.js';
import type { FileChange } from '../reload/reloader.js';
import type { RenderReport } from '../runner/events.js';
import type { Renderer } from '../runner/renderer.js';
import { contentHash } from './content-hash.js';
import { createHistoryFile, type HistoryFile, type HistoryFileOptions } from './history-file.js';

/**
 * The render history: per template, the last renders, why each happened, how it ended and what it installed.
 * It only listens to the renderer's `settled` events; the engine does not know it exists. Bounded in memory:
 * `entries` per template, a diff of at most `maxDiffBytes` each, at most {@link MAX_NAMES} member names per
 * list. Member names in it are untrusted text: whoever shows them escapes them.
 */

/** How many member names an entry keeps per list (joined, left, changed); the counts are always complete. */
export const MAX_NAMES = 20;
/** How many of a failed command's last output lines an entry keeps. */
export const OUTPUT_LINES = 20;
/** A diff of a change to more lines than this is not computed (its cost grows with the size of the change). */
export const MAX_DIFF_EDIT_LINES = 2000;
/**
 * The time an entry's diffs may take together, in ms: they are computed on the daemon's thread after the
 * render, so a huge change costs this much at most, then "not computed".
 */
export const DIFF_TIME_MS = 50;

/** The members of one source that differ between two renders of a template, by name. */
export interface SourceChange {
  source: string;
  /** At most {@link MAX_NAMES} names each; `counts` has the totals. */
  joined: string[];
  left: string[];
  /** Same name, another address, port, status or tags. */
  changed: string[];
  counts: { joined: number; left: number; changed: number };
}

/** Why a template rendered. */
export interface Trigger {
  /**
   * `start`: its first render since rosterd started; `config`: its first render after a config reload;
   * `members`: members of its sources changed since its previous render (see `sources`); `none`: its sources
   * are as they were (a render again after a change that was undone meanwhile, a reload retried).
   */
  kind: 'start' | 'config' | 'members' | 'none';
  /** The sources whose members changed, compared with the snapshots the previous render used. */
  sources: SourceChange[];
}

/** One render of a template, as the history keeps it. */
export interface HistoryEntry {
  /** Increases by one with every entry, across templates. */
  seq: number;
  template: string;
  destination: string;
  /** When the render started (ISO 8601). */
  at: string;
  /** Render, compare, check and install. */
  durationMs: number;
  members: number;
  trigger: Trigger;
  /** `written` and `unchanged` with a failed `reload` are `reload-failed`. */
  outcome: 'written' | 'unchanged' | 'guarded' | 'check-failed' | 'reload-failed' | 'failed';
  /** Why it was guarded, or failed. */
  reason?: string;
  /** The last lines of the failed check's or reload's output. */
  output?: string[];
  /** SHA-256 of a single-destination template's rendered content (written, unchanged, or installed before a failed reload). */
  hash?: string;
  /** What was installed or removed, file by file (one file, or a fan-out's many), with bounded diffs. */
  files?: FileDiff[];
  reload?: { ok: boolean; path: 'reload' | 'runtime'; command: string; durationMs: number; fallback?: string; rolledBack?: boolean };
}

/** One file a render installed or removed. */
export interface FileDiff {
  path: string;
  change: 'created' | 'modified' | 'removed';
  /** SHA-256 of the new content (none when removed). */
  hash?: string;
  /** The unified diff, within what is left of the entry's `maxDiffBytes`. */
  diff?: string;
  /** Why `diff` is missing or cut. */
  diffOmitted?: string;
}

/** The `history` block of the config. */
export interface HistoryOptions {
  /** Entries kept per template. */
  entries: number;
  /** The largest diff kept per entry, in bytes. */
  maxDiffBytes: number;
  /** A JSON-lines file every entry is appended to, rotated by size. */
  file?: HistoryFileOptions;
}

/** The history settings of a config, as {@link createHistory} takes them. */
export function historyOptions(config: HistoryConfig): HistoryOptions {
  const options: HistoryOptions = { entries: config.entries, maxDiffBytes: config.maxDiffBytes };
  if (config.file !== undefined) options.file = { path: config.file, maxBytes: config.maxFileBytes, keep: config.keepFiles };
  return options;
}

/** A template's last render and last change, as the status page shows them; kept beyond the entries' bound. */
export interface TemplateSummary {
  last?: HistoryEntry;
  /** When it last wrote new content, and that content's hash. */
  lastChange?: { at: string; hash?: string };
}

export interface HistoryEvents {
  entry: [entry: HistoryEntry];
}

/** A renderer's render history. Create it with {@link createHistory}. */
export class RenderHistory extends EventEmitter<HistoryEvents> {
  readonly #byTemplate = new Map<string, { entries: HistoryEntry[]; snapshots: ReadonlyMap<string, readonly Member[]>; lastChange?: TemplateSummary['lastChange'] }>();
  readonly #renderer: Renderer;
  readonly #options: HistoryOptions;
  readonly #file: HistoryFile | undefined;
  readonly #listener = (report: RenderReport): void => this.#record(report);
  #seq = 0;

  constructor(renderer: Renderer, options: HistoryOptions, logger: Logger) {
    super();
    this.#renderer = renderer;
    this.#options = options;
    this.#file = options.file && createHistoryFile(options.file, logger);
    renderer.on('settled', this.#listener);
  }

  /** Entries, oldest first: of one template, or of all of them in the order they happened; the last `limit`. */
  entries(options: { template?: string; limit?: number } = {}): HistoryEntry[] {
    const lists = options.template === undefined ? [...this.#byTemplate.values()] : [this.#byTemplate.get(options.template)].filter((l) => l !== undefined);
    const all = lists.flatMap((l) => l.entries).sort((a, b) => a.seq - b.seq);
    return options.limit === undefined ? all : all.slice(Math.max(0, all.length - options.limit));
  }

  /** A template's last render and last change; empty before its first render. */
  summary(template: string): TemplateSummary {
    const kept = this.#byTemplate.get(template);
    if (!kept) return {};
    return { last: kept.entries.at(-1), ...(kept.lastChange ? { lastChange: kept.lastChange } : {}) };
  }

  /** Stops listening; resolves once the file holds every entry. */
  async close(): Promise<void> {
    this.#renderer.off('settled', this.#listener);
    await this.#file?.close();
  }

  #record(report: RenderReport): void {
    const kept = this.#byTemplate.get(report.template);
    const entry = toEntry(report, ++this.#seq, kept?.snapshots, this.#options);
    if (!kept) this.#forgetRemovedTemplates();
    const list = kept?.entries ?? [];
    list.push(entry);
    if (list.length > this.#options.entries) list.splice(0, list.length - this.#options.entries);
    const written = entry.outcome === 'written' || (entry.outcome === 'reload-failed' && entry.files !== undefined && !entry.reload?.rolledBack);
    const lastChange = written ? { at: entry.at, ...(entry.hash === undefined ? {} : { hash: entry.hash }) } : kept?.lastChange;
    this.#byTemplate.set(report.template, { entries: list, snapshots: report.snapshots, ...(lastChange ? { lastChange } : {}) });
    this.#file?.append(entry);
    this.emit('entry', entry);
  }

  /** Templates a config reload removed keep no memory: a history is bounded by the templates of the config. */
  #forgetRemovedTemplates(): void {
    const current = new Set(this.#renderer.templateStatus().map((t) => t.template));
    for (const name of this.#byTemplate.keys()) if (!current.has(name)) this.#byTemplate.delete(name);
  }
}

/** Starts recording `renderer`'s renders. */
export function createHistory(renderer: Renderer, options: HistoryOptions, logger: Logger): RenderHistory {
  return new RenderHistory(renderer, options, logger);
}

// --- internal ---

function toEntry(report: RenderReport, seq: number, previous: ReadonlyMap<string, readonly Member[]> | undefined, options: HistoryOptions): HistoryEntry {
  const entry: HistoryEntry = {
    seq,
    template: report.template,
    destination: report.destination,
    at: new Date(report.startedAt).toISOString(),
    durationMs: report.durationMs,
    members: report.members,
    trigger: trigger(report, previous),
    outcome: report.outcome,
  };
  const failure = report.reload?.error ?? report.error;
  if (failure) {
    entry.reason = failure.detail;
    const output = lastLines((failure as { output?: string }).output ?? '');
    if (output.length > 0) entry.output = output;
  }
  if (report.content) entry.hash = contentHash(report.content);
  if (report.outcome === 'written' && report.changes) entry.files = fileDiffs(report.changes, options.maxDiffBytes);
  if (report.reload) {
    const { ok, path, command, durationMs, fallback, rolledBack } = report.reload;
    entry.reload = { ok, path, command, durationMs, ...(fallback === undefined ? {} : { fallback }), ...(rolledBack === undefined ? {} : { rolledBack }) };
    if (!ok) entry.outcome = 'reload-failed';
  }
  return entry;
}

/**
 * Each file's change with its diff, in the order of their paths, the diffs sharing one budget of `maxBytes`:
 * an entry's size is bounded however many files a fan-out wrote.
 */
function fileDiffs(changes: readonly FileChange[], maxBytes: number): FileDiff[] {
  let budget = maxBytes;
  const deadline = performance.now() + DIFF_TIME_MS;
  // By path: a fan-out installs its files concurrently, and the same render must read the same.
  const byPath = [...changes].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return byPath.map((c) => {
    const file: FileDiff = { path: c.path, change: c.after === undefined ? 'removed' : c.before === undefined ? 'created' : 'modified' };
    if (c.after) file.hash = contentHash(c.after);
    const timeoutMs = Math.ceil(deadline - performance.now());
    if (budget <= 0 || timeoutMs <= 0) {
      file.diffOmitted = maxBytes === 0 ? 'diffs are off (history.maxDiffBytes: 0)' : budget <= 0 ? `the entry's diffs reached ${maxBytes} bytes` : `the entry's diffs took ${DIFF_TIME_MS} ms`;
      return file;
    }
    const diff = boundedDiff(c.path, c.before?.toString('utf8'), c.after?.toString('utf8'), { maxBytes: budget, maxEditLines: MAX_DIFF_EDIT_LINES, timeoutMs });
    if (diff.text !== undefined) {
      file.diff = diff.text;
      budget -= Buffer.byteLength(diff.text);
    }
    if (diff.omitted !== undefined) file.diffOmitted = diff.omitted;
    return file;
  });
}

function trigger(report: RenderReport, previous: ReadonlyMap<string, readonly Member[]> | undefined): Trigger {
  if (report.first) return { kind: previous === undefined ? 'start' : 'config', sources: [] };
  const sources: SourceChange[] = [];
  for (const [source, members] of report.snapshots) {
    const change = compareMembers(source, previous?.get(source), members);
    if (change) sources.push(change);
  }
  return { kind: sources.length > 0 ? 'members' : 'none', sources };
}

/** Who joined, left or changed in one source between two snapshots; undefined when nobody did. */
function compareMembers(source: string, before: readonly Member[] | undefined, after: readonly Member[]): SourceChange | undefined {
  // The roster keeps a snapshot until the source delivers a different one: the same list is no change.
  if (before === after) return undefined;
  const change: SourceChange = { source, joined: [], left: [], changed: [], counts: { joined: 0, left: 0, changed: 0 } };
  const note = (kind: 'joined' | 'left' | 'changed', name: string): void => {
    if (change.counts[kind]++ < MAX_NAMES) change[kind].push(name);
  };
  const old = new Map((before ?? []).map((m) => [m.name, m]));
  for (const member of after) {
    const was = old.get(member.name);
    if (was === undefined) note('joined', member.name);
    else {
      old.delete(member.name);
      if (!sameMember(was, member)) note('changed', member.name);
    }
  }
  for (const name of old.keys()) note('left', name);
  const { joined, left, changed } = change.counts;
  return joined + left + changed > 0 ? change : undefined;
}

function sameMember(a: Member, b: Member): boolean {
  if (a.address !== b.address || a.port !== b.port || a.status !== b.status) return false;
  const keys = Object.keys(a.tags);
  return keys.length === Object.keys(b.tags).length && keys.every((k) => Object.hasOwn(b.tags, k) && a.tags[k] === b.tags[k]);
}

function lastLines(output: string): string[] {
  const lines = output.split(/\r?\n/).filter((l) => l.trim() !== '');
  return lines.slice(Math.max(0, lines.length - OUTPUT_LINES));
}
