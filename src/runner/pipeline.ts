import { createHash } from 'node:crypto';
import type { EarlyApply, FileChange, Reloader } from '../reload/reloader.js';
import type { ResolvedTemplate } from '../config/load.js';
import { InstallError, RosterdError, TemplateError, TemplateRunError, type InstallStep } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Member } from '../members/model.js';
import { unifiedDiff } from '../output/diff.js';
import { prepareCandidate, readCurrent, restore, type CurrentFile } from '../output/install.js';
import { buildContext } from '../render/context.js';
import type { RenderBackend } from '../render/backend.js';
import { runCheck } from './check.js';
import { guardRefusal } from './guards.js';
import type { FanOutReport } from './events.js';

/** Moved to guards.ts; re-exported so that importers of the pipeline keep working. */

/**
 * The steps of one template's render, up to and including install: context → render → guards →
 * compare with disk → check → atomic install. The reload is the runner's, because templates that share
 * one reload it once per batch.
 */

/** A template's memory between renders in one process. */
export interface TemplateMemory {
  /** Identities (`source/name`) of the members last installed or found already on disk. */
  lastMembers?: ReadonlySet<string>;
  /** SHA-256 of the bytes those members rendered to: tells whether the file is still the one they describe. */
  lastDigest?: string;
  /**
   * A reload failed and the new file stayed in place (rollback off, restore failed, or a reload that was sent
   * but not confirmed): the file on disk may not be what runs, so the next render reloads even if unchanged.
   */
  reloadPending?: boolean;
}

export type StepOutcome =
  | { status: 'unchanged'; members: number; content?: Buffer }
  | { status: 'dry'; members: number; changed: boolean; content: string; diff: string; fanOut?: FanOutReport }
  | {
      status: 'installed';
      members: number;
      /** Every file the render installed or removed, before and after. */
      changes: FileChange[];
      /** Puts back what the render changed, for a failed reload. */
      rollback: () => Promise<void>;
      backupPath?: string;
      /** Fan-out: the files written and removed, and the items whose destinations were refused. */
      fanOut?: FanOutReport;
    }
  | { status: 'failed'; members: number; error: RosterdError; stage: 'render' | 'guard' | 'check' | 'install' };

/** Renders and installs one template from the current snapshots. Never throws for an expected failure. */
export async function renderAndInstall(
  template: ResolvedTemplate,
  snapshots: ReadonlyMap<string, readonly Member[]>,
  memory: TemplateMemory,
  options: {
    dry: boolean;
    reloader: Reloader | undefined;
    /** Where templates render: a child process, so that a runaway template cannot stall or crash the daemon. */
    sandbox: RenderBackend;
    /** Destinations of every template that shares this template's reload, its own included. */
    reloadGroup?: readonly string[];
    logger: Logger;
    /**
     * Applies the change to the running program before the candidate's check, under the reload's lock (the
     * HAProxy runtime mode's server changes): undefined when it applied nothing. Undone here when the candidate
     * is not installed.
     */
    applyEarly?: (change: FileChange) => Promise<EarlyApply | undefined>;
  },
): Promise<StepOutcome> {
  let count = 0;
  const fail = (stage: Extract<StepOutcome, { status: 'failed' }>['stage'], error: unknown): StepOutcome => ({
    status: 'failed',
    members: count,
    stage,
    error: RosterdError.is(error) ? error : unexpected(template, stage, error),
  });

  let context: ReturnType<typeof buildContext>;
  let content: string;
  try {
    context = buildContext(snapshots, template.sources, template.env);
    count = context.members.length;
    content = await options.sandbox.render(template.compiled, context);
  } catch (err) {
    return fail('render', err);
  }

  let current: CurrentFile | undefined;
  try {
    current = await readCurrent(template.destination);
  } catch (err) {
    return fail('install', installFailure(template, 'read', `cannot read ${template.destination}`, err));
  }
  const bytes = Buffer.from(content);
  const changed = !current || !current.bytes.equals(bytes);
  const memberIds = new Set(context.members.map((m) => `${m.source}/${m.name}`));
  if (!changed) {
    // Nothing to write, so nothing to guard; and this is now the baseline for maxShrink.
    if (!options.dry) remember(memory, memberIds, bytes);
    return options.dry ? { status: 'dry', members: count, changed, content, diff: '' } : { status: 'unchanged', members: count, content: bytes };
  }

  // maxShrink compares with what this process installed, as long as the file is still that; a file replaced
  // meanwhile (by `render --once`, say) was accepted by someone, and there is no baseline to compare with.
  const baseline = current && memory.lastDigest === digest(current.bytes) ? memory.lastMembers : undefined;
  const refusal = guardRefusal(template, memberIds, baseline);
  if (refusal) return fail('guard', new TemplateRunError('E_GUARD', template.name, refusal));
  if (options.dry) {
    return { status: 'dry', members: count, changed, content, diff: unifiedDiff(template.destination, current?.bytes.toString(), content) };
  }

  const precheck = await options.reloader?.precheck?.(content, options.reloadGroup ?? [template.destination]);
  if (precheck) return fail('check', new TemplateRunError('E_CHECK_FAILED', template.name, precheck));

  let candidate;
  try {
    candidate = await prepareCandidate(template.destination, bytes, installOptions(template), current);
  } catch (err) {
    return fail('install', installFailure(template, 'write', `cannot write ${template.destination}`, err));
  }
  const change: FileChange = { path: template.destination, before: current?.bytes, after: bytes };
  // Only a file that replaces another can differ from it in server lines alone.
  const early = current === undefined ? undefined : await options.applyEarly?.(change);
  if (early) change.early = early;
  const checkFailure = await runCheck(template, { candidate: candidate.path, destination: template.destination }, options.logger);
  if (checkFailure) {
    await candidate.discard();
    await undoEarly(early, options.logger);
    return fail('check', checkFailure);
  }
  try {
    const installed = await candidate.commit();
    remember(memory, memberIds, bytes);
    const outcome: StepOutcome = { status: 'installed', members: count, changes: [change], rollback: () => restore(template.destination, current) };
    if (installed.backupPath) outcome.backupPath = installed.backupPath;
    return outcome;
  } catch (err) {
    await candidate.discard().catch(() => undefined);
    await undoEarly(early, options.logger);
    return fail('install', installFailure(template, 'rename', `cannot install ${template.destination}`, err));
  }
}

/** Takes back server changes applied before a check or install that then failed. */
async function undoEarly(early: EarlyApply | undefined, logger: Logger): Promise<void> {
  if (!early) return;
  const { ok, how } = await early.undo();
  const log = logger.child({ command: 'reload' });
  const what = `the candidate was not installed; the server changes applied before its check: ${how}`;
  if (ok) log.warn(what);
  else log.error(what);
}

/**
 * An error no step expected. In a render it is the template's failure (a filter that throws); elsewhere it is
 * a bug, reported with its stack (`cause`), not dressed up as an install error.
 */
function unexpected(template: ResolvedTemplate, stage: Extract<StepOutcome, { status: 'failed' }>['stage'], error: unknown): RosterdError {
  const reason = error instanceof Error ? error.message : String(error);
  if (stage === 'render') {
    return new TemplateError('E_RENDER', `${template.compiled.file}: failed to render: ${reason}`, { template: template.name, file: template.compiled.file }, { cause: error });
  }
  return internalError(template.name, stage, error);
}

/**
 * An install step's failure as the template's `InstallError`: the installer's step and file when it says
 * them, else `step` and the destination. `what` and the installer's message make the text, as before. An
 * error that is neither rosterd's nor the system's (no errno `code`) is a bug: `E_INTERNAL`.
 */
export function installFailure(template: Pick<ResolvedTemplate, 'name' | 'destination'>, step: InstallStep, what: string, err: unknown): RosterdError {
  if (!RosterdError.is(err) && typeof (err as NodeJS.ErrnoException | undefined)?.code !== 'string') return internalError(template.name, `${step} of ${template.destination}`, err);
  const known = err instanceof InstallError ? err : undefined;
  // The message, not the detail: the installer adds to it when a temporary file could not be removed.
  const reason = err instanceof Error ? err.message : String(err);
  return new InstallError(known?.step ?? step, known?.destination ?? template.destination, `${what}: ${reason}`, { cause: err, template: template.name });
}

/** A bug: an error that no step expected, outside a render. Its `cause` holds it, with its stack. */
export function internalError(template: string, where: string, error: unknown): RosterdError {
  const reason = error instanceof Error ? error.message : String(error);
  return new RosterdError('E_INTERNAL', `unexpected error (a bug in rosterd) during ${where}: ${reason}`, { cause: error, prefix: `[template ${template}]` });
}

function remember(memory: TemplateMemory, members: ReadonlySet<string>, bytes: Buffer): void {
  memory.lastMembers = members;
  memory.lastDigest = digest(bytes);
}

export function digest(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function installOptions(template: ResolvedTemplate): { perms?: number; uid?: number; gid?: number; backup: boolean } {
  const options: { perms?: number; uid?: number; gid?: number; backup: boolean } = { backup: template.backup };
  if (template.perms !== undefined) options.perms = template.perms;
  if (template.uid !== undefined) options.uid = template.uid;
  if (template.gid !== undefined) options.gid = template.gid;
  return options;
}
