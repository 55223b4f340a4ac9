import { lstat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import type { FileChange, Reloader } from '../reload/reloader.js';
import type { FanOutConfig, ResolvedTemplate } from '../config/load.js';
import type { ForEach } from '../config/schema.js';
import { RosterdError, TemplateError, TemplateRunError, type InstallStep } from '../errors.js';
import type { Logger } from '../logger.js';
import { unifiedDiff } from '../output/diff.js';
import { prepareCandidate, readCurrent, removeStaleTemporaries, restore, type Candidate, type CurrentFile } from '../output/install.js';
import { MANIFEST_NAME, readManifest, removeOutput, writeManifest } from '../output/prune.js';
import type { Member } from '../members/model.js';
import { CONTROL, printable } from '../members/text.js';
import { buildContext } from '../render/context.js';
import { groupByTag } from '../render/filters.js';
import type { RenderBackend } from '../render/backend.js';
import { runCheck } from './check.js';
import type { FanOutFile, FanOutReport, RefusedItem, TemplateResult } from './events.js';
import { guardRefusal } from './guards.js';
import { digest, installFailure, installOptions, type StepOutcome, type TemplateMemory } from './pipeline.js';

/**
 * Fan-out templates (`forEach`): one file per member, or one per value of a tag, each at a destination
 * rendered from the item's data. Every file goes through the steps of a single output (compare with disk,
 * guards, check on its candidate, atomic install only on change, mode, owner, backup); the template stays one
 * unit: its files are checked before any is installed, and one reload follows for all of them.
 *
 * Member data is untrusted, and here it names files. A rendered destination must stay strictly inside the
 * template's directory (the destination's part before its first `{{`, fixed by the config) once `..` is
 * resolved, must not pass through a symlink below that directory, and must not be empty, end in `/`, hold a
 * control character, be longer than a file system allows, collide with another item's file (or its `.bak`),
 * be another template's destination, or be a file this template did not write. An item whose destination is
 * refused is left out, with a warning, and the others go on, as the member gate drops a bad member: one
 * hostile name must not stop every other file's updates.
 */

/** One file of a fan-out: who it is for, and its variables over the template's context. */
export interface FanOutItem {
  /** The member's name, or the tag's value. */
  name: string;
  /** How errors and warnings name it: `member "web-1"`, `group "a"`. */
  label: string;
  /** What the template (and the destination) sees besides the template's context. */
  vars: Record<string, unknown>;
}

/** A fan-out's files as rendered, before anything on disk is looked at. */
export interface FanOutRender {
  /** Every member of the template's sources (what `minMembers` and `maxShrink` count). */
  members: Member[];
  /** One per accepted item, in item order: `destination` is absolute, `rendered` as the template rendered it. */
  files: { item: string; destination: string; rendered: string; content: string }[];
  refused: RefusedItem[];
}

/**
 * The items of a fan-out. `member`: one per member of the template's sources, which sees `member` (and still
 * `members`, every member). `groupBy`: one per value of the tag, sorted by value, which sees `group` (the value)
 * and `members` and `sources.<name>` holding that group's members only; members without the tag are left out.
 */
export function fanOutItems(forEach: ForEach, context: { members: Member[]; sources: Record<string, Member[]> }): FanOutItem[] {
  if (forEach === 'member') return context.members.map((member) => ({ name: member.name, label: `member ${printable(member.name)}`, vars: { member } }));
  return groupByTag(context.members, forEach.groupBy).map(({ name, items }) => {
    const sources: Record<string, Member[]> = {};
    for (const source of Object.keys(context.sources)) sources[source] = items.filter((m) => m.source === source);
    return { name, label: `group ${printable(name)}`, vars: { group: name, members: items, sources } };
  });
}

/**
 * Renders every file of a fan-out template in the render process: each item's destination, then each item's
 * content (one `slug` scope for all of them). Destinations are checked without looking at the disk; refused
 * items are left out. Throws a `TemplateError` when a render fails.
 */
export async function renderFanOut(
  template: Pick<ResolvedTemplate, 'name' | 'sources' | 'env' | 'compiled' | 'backup'> & { fanOut: FanOutConfig },
  snapshots: ReadonlyMap<string, readonly Member[]>,
  sandbox: RenderBackend,
): Promise<FanOutRender> {
  const context = buildContext(snapshots, template.sources, template.env);
  const items = fanOutItems(template.fanOut.forEach, context);
  const [destinations = [], contents = []] = items.length === 0 ? [] : await sandbox.renderEach([template.fanOut.destination, template.compiled], context, items);
  const taken = new Map<string, string>();
  const files: FanOutRender['files'] = [];
  const refused: RefusedItem[] = [];
  items.forEach((item, i) => {
    const rendered = destinations[i]!;
    const checked = checkDestination(template.fanOut, rendered);
    const clash = 'path' in checked ? taken.get(checked.path) : undefined;
    if ('reason' in checked || clash !== undefined) {
      refused.push({ item: item.name, destination: rendered, reason: 'reason' in checked ? checked.reason : `collides with the file of ${clash}` });
      return;
    }
    // The first item in order keeps a contested name; with backups, `<file>.bak` is taken too.
    taken.set(checked.path, item.label);
    if (template.backup) taken.set(`${checked.path}.bak`, `${item.label} (its backup)`);
    files.push({ item: item.name, destination: checked.path, rendered, content: contents[i]! });
  });
  return { members: context.members, files, refused };
}

/** Renders a fan-out template and installs the files that changed; removes the files of gone items with `prune`. */
export async function renderAndInstallFanOut(
  template: ResolvedTemplate,
  snapshots: ReadonlyMap<string, readonly Member[]>,
  memory: TemplateMemory,
  options: { dry: boolean; reloader: Reloader | undefined; sandbox: RenderBackend; reloadGroup?: readonly string[]; logger: Logger },
): Promise<StepOutcome> {
  const fanOut = template.fanOut!;
  const directory = fanOut.directory;
  let count = 0;
  const fail = (stage: Extract<StepOutcome, { status: 'failed' }>['stage'], error: RosterdError): StepOutcome => ({ status: 'failed', members: count, stage, error });
  const installError = (step: InstallStep, what: string, err: unknown): RosterdError => installFailure({ name: template.name, destination: directory }, step, what, err);

  let rendered: FanOutRender;
  try {
    rendered = await renderFanOut({ ...template, fanOut }, snapshots, options.sandbox);
  } catch (err) {
    if (RosterdError.is(err)) return fail('render', err);
    return fail('render', new TemplateError('E_RENDER', `${template.compiled.file}: failed to render: ${(err as Error).message}`, { template: template.name }, { cause: err }));
  }
  count = rendered.members.length;

  let owned: Set<string>;
  try {
    owned = await readManifest(directory);
  } catch (err) {
    return fail('install', installError('record', `cannot read the record of ${directory}`, err));
  }

  // What is on disk at each accepted destination; a file this template did not write is not replaced.
  const refused = [...rendered.refused];
  const lstats = new Map<string, Promise<Awaited<ReturnType<typeof lstat>> | undefined>>();
  const looked = await mapLimited(rendered.files, IO_CONCURRENCY, async (file) => {
    const problem = await pathProblem(directory, file.destination, lstats);
    if (problem) return { file, refusal: problem };
    let current: CurrentFile | undefined;
    try {
      current = await readCurrent(file.destination);
    } catch (err) {
      return { file, refusal: RosterdError.is(err) ? err.detail : (err as Error).message };
    }
    const bytes = Buffer.from(file.content);
    const same = current !== undefined && current.bytes.equals(bytes);
    if (current && !same && !owned.has(file.destination)) {
      return { file, refusal: `${file.destination} exists and was not written by this template (it is not in ${MANIFEST_NAME}): move it away to let rosterd write it` };
    }
    return { file, current, bytes, same };
  });
  const files: Planned[] = [];
  for (const entry of looked) {
    if ('refusal' in entry) refused.push({ item: entry.file.item, destination: entry.file.rendered, reason: entry.refusal! });
    else files.push({ item: entry.file.item, destination: entry.file.destination, current: entry.current, bytes: entry.bytes, same: entry.same });
  }
  warnRefused(memory, refused, options.logger);

  const produced = new Set(files.map((f) => f.destination));
  const changed = files.filter((f) => !f.same);
  // With prune, the listed files no item produces any more; those already gone only leave the record.
  const listedGone = template.prune ? [...owned].filter((path) => !produced.has(path)) : [];
  const present = await mapLimited(listedGone, IO_CONCURRENCY, (path) => lstat(path).then(() => true, () => false));
  const gone = listedGone.filter((_, i) => present[i]);
  const vanished = new Set(listedGone.filter((_, i) => !present[i]));
  const memberIds = new Set(rendered.members.map((m) => `${m.source}/${m.name}`));
  const report = (removed: string[]): FanOutReport => ({ files: files.map((f) => ({ destination: f.destination, item: f.item, changed: !f.same })), removed, refused });
  // The template's files from now on: those listed (less those gone by themselves), and every file it renders
  // (a file not listed is accepted above only when it already holds what the template renders).
  const known = new Set([...owned, ...produced].filter((path) => !vanished.has(path)));
  const recordChanged = known.size !== owned.size || [...known].some((path) => !owned.has(path));

  if (changed.length === 0 && gone.length === 0) {
    if (options.dry) return { status: 'dry', members: count, changed: false, content: '', diff: '', fanOut: withDry(report([]), files) };
    try {
      if (recordChanged) await writeManifest(directory, template.name, known);
    } catch (err) {
      return fail('install', installError('record', `cannot write the record of ${directory}`, err));
    }
    remember(memory, memberIds, known);
    return { status: 'unchanged', members: count };
  }

  // As for a single file, maxShrink compares with this process's last render while the record still lists
  // what it left; removed files count as well as members.
  const baseline = memory.lastDigest === listDigest(owned);
  const refusal = guardRefusal(template, memberIds, baseline ? memory.lastMembers : undefined) ?? fileShrinkRefusal(template, gone.length, baseline ? owned.size : 0);
  if (refusal) return fail('guard', new TemplateRunError('E_GUARD', template.name, refusal));

  if (options.dry) {
    const removedNow = await mapLimited(gone, IO_CONCURRENCY, async (path) => ({ path, current: await readCurrent(path).catch(() => undefined) }));
    const diffs = [...changed.map((f) => unifiedDiff(f.destination, f.current?.bytes.toString(), f.bytes.toString())), ...removedNow.map((r) => (r.current ? unifiedDiff(r.path, r.current.bytes.toString(), undefined) : ''))];
    return { status: 'dry', members: count, changed: true, content: '', diff: diffs.join(''), fanOut: withDry(report(gone), files) };
  }

  if (!swept.has(memory)) {
    swept.add(memory);
    const removed = await removeStaleTemporaries(files.map((f) => f.destination), template.timeout > 0 ? 2 * template.timeout : 3_600_000).catch(() => []);
    if (removed.length > 0) options.logger.info({ removed }, `removed ${removed.length} temporary file(s) left by an earlier run in ${directory}`);
  }

  // Every changed file is checked before any is installed: the template is installed whole or not at all.
  const candidates: Candidate[] = [];
  const discardAll = (): Promise<unknown> => Promise.allSettled(candidates.map((c) => c.discard()));
  // The HAProxy bind guard, once for all changed files, against every file this HAProxy reads now: the
  // template's own files included, so that a bind a file already had, or one that moves between files, is no clash.
  const precheck = await options.reloader?.precheck?.(changed.map((f) => f.bytes.toString()).join('\n'), [...(options.reloadGroup ?? []), ...known]);
  if (precheck) return fail('check', new TemplateRunError('E_CHECK_FAILED', template.name, precheck));
  try {
    await mapLimited(changed, IO_CONCURRENCY, async (file, i) => {
      candidates[i] = await prepareCandidate(file.destination, file.bytes, installOptions(template), file.current);
    });
  } catch (err) {
    await discardAll();
    return fail('install', installError('write', `cannot write a file in ${directory}`, err));
  }
  const checks = await mapLimited(changed, CHECK_CONCURRENCY, (file, i) => runCheck(template, { candidate: candidates[i]!.path, destination: file.destination }, options.logger));
  const checkFailure = checks.find((c) => c !== undefined);
  if (checkFailure) {
    await discardAll();
    return fail('check', checkFailure);
  }

  // The record first lists every file this render may leave, so that none is ever on disk unlisted.
  try {
    if (recordChanged) await writeManifest(directory, template.name, known);
  } catch (err) {
    await discardAll();
    return fail('install', installError('record', `cannot write the record of ${directory}`, err));
  }
  const installed: { file: Planned; backupPath: string | undefined }[] = [];
  try {
    await mapLimited(changed, IO_CONCURRENCY, async (file, i) => {
      const result = await candidates[i]!.commit();
      installed.push({ file, backupPath: result.backupPath });
    });
  } catch (err) {
    await discardAll();
    // Installed whole or not at all: put back the files this render already replaced.
    await Promise.allSettled(installed.map(({ file }) => restore(file.destination, file.current)));
    return fail('install', installError('rename', `cannot install a file in ${directory}`, err));
  }

  const listedBefore = new Set(known);
  const removed: { path: string; previous: CurrentFile }[] = [];
  for (const path of gone) {
    try {
      const previous = await removeOutput(path, { backup: template.backup });
      if (previous) removed.push({ path, previous });
      known.delete(path);
    } catch (err) {
      // It stays listed: the next render tries again. Nothing is lost by a file that stays.
      options.logger.warn(`not pruned: ${RosterdError.is(err) ? err.detail : (err as Error).message}`);
    }
  }
  try {
    if (gone.length > 0) await writeManifest(directory, template.name, known);
  } catch (err) {
    // The record still lists the removed files, which is safe: a file that is gone is not removed again.
    options.logger.warn(`cannot update the record of ${directory}: ${(err as Error).message}`);
  }
  remember(memory, memberIds, known);

  const changes: FileChange[] = [
    ...installed.map(({ file }) => ({ path: file.destination, before: file.current?.bytes, after: file.bytes })),
    ...removed.map(({ path, previous }) => ({ path, before: previous.bytes, after: undefined })),
  ];
  const rollback = async (): Promise<void> => {
    for (const { file } of installed) await restore(file.destination, file.current);
    for (const { path, previous } of removed) await restore(path, previous);
    // The restored files are listed again; new files removed again stay listed, which is harmless.
    await writeManifest(directory, template.name, listedBefore);
  };
  const outcome: StepOutcome = { status: 'installed', members: count, changes, rollback, fanOut: report(removed.map((r) => r.path)) };
  const backupPath = installed.find((i) => i.backupPath)?.backupPath;
  if (backupPath) outcome.backupPath = backupPath;
  return outcome;
}

/** The fan-out fields of a template's result: every file, the removed ones and the refused items. */
export function fanOutResult(report: FanOutReport | undefined): Pick<TemplateResult, 'files' | 'removed' | 'refused'> {
  return report ? { files: report.files, removed: report.removed, refused: report.refused } : {};
}

/**
 * The absolute path an item's rendered destination names (relative to the config's directory), or why it is
 * refused. Only the text is looked at; what is on disk there is `pathProblem`'s.
 */
export function checkDestination(fanOut: Pick<FanOutConfig, 'directory' | 'baseDir' | 'reserved'>, rendered: string): { path: string } | { reason: string } {
  const refuse = (reason: string): { reason: string } => ({ reason });
  if (rendered.trim() === '') return refuse('the destination rendered empty');
  if (rendered.includes('\u0000')) return refuse('holds a NUL character');
  if (CONTROL.test(rendered)) return refuse('holds a control character');
  if (/(?:^|\/)\.{0,2}$/.test(rendered)) return refuse('ends in "/" (or "/." or "/.."): it names a directory, not a file');
  const path = resolve(fanOut.baseDir, rendered);
  if (!path.startsWith(fanOut.directory + sep)) return refuse(`leaves ${fanOut.directory}`);
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return refuse(`is longer than ${MAX_PATH_BYTES} bytes`);
  const parts = relative(fanOut.directory, path).split(sep);
  const long = parts.find((part) => Buffer.byteLength(part) > MAX_NAME_BYTES);
  if (long !== undefined) return refuse(`has a name of ${Buffer.byteLength(long)} bytes (at most ${MAX_NAME_BYTES}, so that its .bak fits in 255)`);
  if (parts.some((part) => part.includes('.rosterd-'))) return refuse('names holding ".rosterd-" are rosterd\'s own (temporary files, the record of a fan-out)');
  if (fanOut.reserved.includes(path)) return refuse("is another template's destination");
  return { path };
}

// --- internal ---

/** Reads, checks and writes at most this many files at once: 1,000 members must not mean 1,000 open files. */
const IO_CONCURRENCY = 16;
/** Check commands running at once. */
const CHECK_CONCURRENCY = Math.max(1, availableParallelism());
/** The longest file name most file systems allow (NAME_MAX), less room for `.bak`. */
const MAX_NAME_BYTES = 255 - '.bak'.length;
/** The longest path Linux accepts (PATH_MAX, with its terminating NUL). */
const MAX_PATH_BYTES = 4095;

/** A file of the render with what is on disk there now. */
interface Planned {
  item: string;
  destination: string;
  current: CurrentFile | undefined;
  bytes: Buffer;
  /** The file on disk already holds these bytes. */
  same: boolean;
}

/** Templates whose directories were looked at for stale temporary files (once per process, before the first write). */
const swept = new WeakSet<TemplateMemory>();

/** The items already warned about, per template: a refusal that stays is reported once, not on every render. */
const warnedRefusals = new WeakMap<TemplateMemory, Set<string>>();

function warnRefused(memory: TemplateMemory, refused: readonly RefusedItem[], logger: Logger): void {
  const before = warnedRefusals.get(memory) ?? new Set<string>();
  const now = new Set<string>();
  for (const r of refused) {
    const key = `${r.item}\u0000${r.destination}\u0000${r.reason}`;
    now.add(key);
    if (!before.has(key)) logger.warn({ item: r.item, destination: r.destination, reason: r.reason }, `${printable(r.item)}: destination ${printable(r.destination)} refused: ${r.reason}; no file for it`);
  }
  warnedRefusals.set(memory, now);
}

/**
 * Why a destination inside `directory` is unsafe on disk, or undefined: a symlink on the way or at the end (a
 * link planted there would make rosterd write elsewhere), or something other than a directory on the way.
 */
async function pathProblem(directory: string, path: string, lstats: Map<string, Promise<Awaited<ReturnType<typeof lstat>> | undefined>>): Promise<string | undefined> {
  const parts = relative(directory, path).split(sep);
  let current = directory;
  for (const [i, part] of parts.entries()) {
    current = join(current, part);
    let stats = lstats.get(current);
    if (!stats) {
      stats = lstat(current).catch(() => undefined);
      lstats.set(current, stats);
    }
    const found = await stats;
    if (!found) return undefined;
    const last = i === parts.length - 1;
    if (found.isSymbolicLink()) return last ? `${current} is a symlink` : `${current} is a symlink (a directory on the way must be a real directory)`;
    if (!last && !found.isDirectory()) return `${current} is not a directory`;
    if (last && !found.isFile()) return `${current} is not a regular file`;
  }
  return undefined;
}

/** `maxShrink` over files: a render that removes more than that fraction of the template's files is refused. */
function fileShrinkRefusal(template: Pick<ResolvedTemplate, 'maxShrink'>, gone: number, last: number): string | undefined {
  if (template.maxShrink === undefined || last === 0 || gone / last <= template.maxShrink) return undefined;
  return `${gone} of ${last} file(s) would be removed at once (${Math.round((gone / last) * 100)}% > maxShrink ${Math.round(template.maxShrink * 100)}%); keeping the previous files`;
}

function withDry(report: FanOutReport, files: readonly Planned[]): FanOutReport {
  const byPath = new Map(files.map((f) => [f.destination, f]));
  const dry = report.files.map((f): FanOutFile => {
    const planned = byPath.get(f.destination)!;
    return { ...f, content: planned.bytes.toString(), diff: planned.same ? '' : unifiedDiff(f.destination, planned.current?.bytes.toString(), planned.bytes.toString()) };
  });
  return { ...report, files: dry };
}

function remember(memory: TemplateMemory, members: ReadonlySet<string>, files: ReadonlySet<string>): void {
  memory.lastMembers = members;
  memory.lastDigest = listDigest(files);
}

/** Identifies a set of files, to tell whether the record still lists what this process left. */
function listDigest(files: ReadonlySet<string>): string {
  return digest(Buffer.from([...files].sort().join('\u0000')));
}

/**
 * Maps `items` with at most `limit` calls of `fn` running at once; results in order. After a failure no new
 * call starts, and the calls under way are waited for before it is thrown: nothing runs on behind the caller's back.
 */
async function mapLimited<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failure) {
      const index = next++;
      try {
        results[index] = await fn(items[index]!, index);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
  return results;
}
