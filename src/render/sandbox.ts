import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TemplateError, type RosterdErrorCode } from '../errors.js';
import type { RenderBackend } from './backend.js';
import { RENDER_LIMITS, type CompiledTemplate, type RenderLimits } from './engine.js';

/**
 * Renders templates in a child process, one render at a time. A template is code the daemon runs on every
 * change: rendering it in the daemon would let a runaway template block the event loop (no `/health`, no
 * SIGTERM) or take the whole process down with it when the heap runs out. A worker thread is not enough for
 * the second: a single large allocation that exceeds a worker's heap limit aborts the whole process (Node
 * issue 47224). In the child, liquidjs's own limits end most runaways with a precise error; what they miss,
 * the sandbox ends: a render still running `KILL_GRACE_MS` after its time limit is killed, and the child's
 * heap is bounded (`--max-old-space-size`), so that it, not the daemon, runs out of memory. Either way only
 * that render fails, the previous file stays, and the next render gets a fresh child.
 */

/** How long after the time limit a render that liquidjs did not stop is ended by killing its process. */
const KILL_GRACE_MS = 2000;
/** How long a new render process may take to start and to receive a render, before the time limit counts. */
const START_ALLOWANCE_MS = 30_000;

/** A template as the render process compiles it. */
type TemplateSpec = { id: number; name: string; file: string; text: string; root: string; strict: boolean; limits: RenderLimits };

/** A render sent to the render process. */
export interface RenderRequest {
  id: number;
  template: TemplateSpec;
  context: object;
  /**
   * A fan-out: render each of `templates` once per item, over `context` with the item's variables, all with one
   * `slug` scope (each template for every item before the next template). The reply's `outputs[t][i]`.
   */
  each?: { templates: TemplateSpec[]; items: object[] };
}

/** The render process's messages: a render started, or its output, or its error as plain data. */
export type RenderReply =
  | { id: number; started: true; output?: undefined; error?: undefined }
  | { id: number; output: string | string[][]; started?: undefined; error?: undefined }
  | {
      id: number;
      started?: undefined;
      output?: undefined;
      /** `item`: the index of the fan-out item whose render failed. */
      error: { code: RosterdErrorCode; detail: string; file: string | undefined; line: number | undefined; column: number | undefined; excerpt?: string | undefined; item?: number };
    };

interface Pending {
  request: RenderRequest;
  template: CompiledTemplate;
  /** Fan-out: how each item is named in an error (`member "web-1"`). */
  labels?: readonly string[];
  resolve: (output: string | string[][]) => void;
  reject: (error: Error) => void;
}

/** A render process and its queue. Idle, it does not keep the daemon alive; `close()` ends it. */
export class RenderSandbox implements RenderBackend {
  readonly #limits: RenderLimits;
  #child: ChildProcess | undefined;
  /** The end of what the render process wrote on stderr, and whether V8 said there that the heap ran out. */
  #stderr = '';
  #outOfMemory = false;
  #current: (Pending & { timer: NodeJS.Timeout }) | undefined;
  readonly #queue: Pending[] = [];
  #nextId = 0;

  constructor(limits: Partial<RenderLimits> = {}) {
    this.#limits = { ...RENDER_LIMITS, ...limits };
  }

  /** Renders `template` with `context` (which is copied to the render process). Rejects with a `TemplateError`. */
  render(template: CompiledTemplate, context: object): Promise<string> {
    const request: RenderRequest = { id: ++this.#nextId, template: this.#spec(template), context };
    return new Promise<string>((resolve, reject) => {
      this.#queue.push({ request, template, resolve: resolve as (output: unknown) => void, reject });
      this.#next();
    });
  }

  /**
   * Renders each of `templates` once per item, over `context` with the item's `vars`, in one request: the
   * shared context is copied once, and the limits apply to the whole. Returns `outputs[template][item]`. A
   * failure names the item by its `label`.
   */
  renderEach(templates: readonly CompiledTemplate[], context: object, items: readonly { vars: object; label: string }[]): Promise<string[][]> {
    const template = templates.at(-1)!;
    const each = { templates: templates.map((t) => this.#spec(t)), items: items.map((item) => item.vars) };
    const request: RenderRequest = { id: ++this.#nextId, template: this.#spec(template), context, each };
    return new Promise<string[][]>((resolve, reject) => {
      this.#queue.push({ request, template, labels: items.map((item) => item.label), resolve: resolve as (output: unknown) => void, reject });
      this.#next();
    });
  }

  /** Ends the render process: the render under way and the queued ones fail. The next render starts a new one. */
  async close(): Promise<void> {
    const stopped = (p: Pending) => renderError(p.template, 'stopped: the renderer is stopping');
    for (const pending of this.#queue.splice(0)) pending.reject(stopped(pending));
    const current = this.#current;
    if (current) this.#finish(current.request.id, () => current.reject(stopped(current)));
    await this.#kill();
  }

  // --- internal ---

  #spec({ id, name, file, text, root, strict }: CompiledTemplate): TemplateSpec {
    return { id, name, file, text, root, strict, limits: this.#limits };
  }

  /** Starts the next queued render, if none is under way; an idle render process no longer keeps the daemon alive. */
  #next(): void {
    if (this.#current) return;
    const pending = this.#queue.shift();
    if (!pending) {
      if (this.#child) keepAlive(this.#child, false);
      return;
    }
    const child = this.#spawn();
    keepAlive(child, true);
    this.#current = { ...pending, timer: this.#deadline(START_ALLOWANCE_MS + this.#limits.timeMs + KILL_GRACE_MS) };
    child.send(pending.request, (err) => {
      // A context that cannot be copied (a function in a plugged-in source's member, say), or a child gone.
      if (err && this.#finish(pending.request.id, () => pending.reject(renderError(pending.template, err.message)))) this.#next();
    });
  }

  /** A timer that kills the render under way after `ms`. */
  #deadline(ms: number): NodeJS.Timeout {
    return setTimeout(() => {
      this.#fail(`did not finish within ${(this.#limits.timeMs + KILL_GRACE_MS) / 1000} s (the time limit is ${this.#limits.timeMs / 1000} s); stopped`);
    }, ms);
  }

  #spawn(): ChildProcess {
    if (this.#child) return this.#child;
    const child = startRenderProcess(this.#limits.heapMb);
    this.#stderr = '';
    this.#outOfMemory = false;
    child.stderr?.on('data', (chunk: Buffer) => {
      // Kept short, with enough of the previous chunk for the message to match across a cut.
      this.#stderr = this.#stderr.slice(-100) + chunk.toString();
      if (/JavaScript heap out of memory/.test(this.#stderr)) this.#outOfMemory = true;
    });
    child.on('message', (reply: RenderReply) => {
      const current = this.#current;
      if (this.#child !== child || !current || reply.id !== current.request.id) return;
      if (reply.started) {
        // Received and under way: from now on the time limit counts.
        clearTimeout(current.timer);
        current.timer = this.#deadline(this.#limits.timeMs + KILL_GRACE_MS);
        return;
      }
      const settled = this.#finish(reply.id, () => {
        if (reply.error === undefined) current.resolve(reply.output);
        else current.reject(rebuild(current.template, reply.error, current.labels));
      });
      if (settled) this.#next();
    });
    child.on('error', (err) => {
      if (this.#child === child) this.#fail(`the render process failed: ${err.message}`);
    });
    // 'close', not 'exit': stderr is read to its end by then, and it says whether the heap ran out.
    child.on('close', (code, signal) => {
      if (this.#child !== child) return;
      this.#child = undefined;
      this.#fail(this.#outOfMemory ? `ran out of memory (the limit is ${this.#limits.heapMb} MiB); stopped` : `the render process exited (${signal ?? `code ${code}`})`);
    });
    this.#child = child;
    return child;
  }

  /** Fails the render under way with `reason` and kills its process; the queue goes on with a new one. */
  #fail(reason: string): void {
    void this.#kill();
    const current = this.#current;
    if (current) this.#finish(current.request.id, () => current.reject(renderError(current.template, reason)));
    this.#next();
  }

  /** Kills the render process, if any, and waits for it to be gone. */
  async #kill(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    // Waited for: an idle child no longer holds the event loop, and the wait must.
    keepAlive(child, true);
    child.kill('SIGKILL');
    await gone;
  }

  /** Settles the render under way, if it is still `id`. */
  #finish(id: number, settle: () => void): boolean {
    const current = this.#current;
    if (!current || current.request.id !== id) return false;
    clearTimeout(current.timer);
    this.#current = undefined;
    settle();
    return true;
  }
}

// --- internal ---

/**
 * Starts the render process: the built `child.js` next to this file, or, when rosterd runs from its
 * TypeScript sources (its own tests), `child.ts` through jiti, as configs are loaded. Messages are copied
 * with the structured clone algorithm; stdout is not used, stderr is kept for why it
 * ended.
 */
function startRenderProcess(heapMb: number): ChildProcess {
  const built = fileURLToPath(new URL('./child.js', import.meta.url));
  const fromSource = !existsSync(built);
  // `jiti/register` has no `require` export to resolve; it sits next to the package's main file.
  const register = (): string => pathToFileURL(join(dirname(createRequire(import.meta.url).resolve('jiti')), 'jiti-register.mjs')).href;
  const jiti = fromSource ? ['--import', register()] : [];
  const module = fromSource ? fileURLToPath(new URL('./child.ts', import.meta.url)) : built;
  return fork(module, [], {
    execArgv: [`--max-old-space-size=${heapMb}`, ...jiti],
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
}

/** Whether the render process (its handle, its IPC channel and its stderr pipe) keeps the daemon's event loop alive. */
function keepAlive(child: ChildProcess, keep: boolean): void {
  const handles = [child, child.channel, child.stderr as (NodeJS.ReadableStream & { ref?: () => void; unref?: () => void }) | null];
  for (const handle of handles) {
    if (keep) handle?.ref?.();
    else handle?.unref?.();
  }
}

function renderError(template: CompiledTemplate, reason: string): TemplateError {
  return new TemplateError('E_RENDER', `${template.file}: failed to render: ${reason}`, { template: template.name, file: template.file });
}

/** The render process's error as the `TemplateError` a render in this process would have thrown. */
function rebuild(template: CompiledTemplate, error: Extract<RenderReply, { error: object }>['error'], labels: readonly string[] | undefined): TemplateError {
  const where: { template: string; file?: string; line?: number; column?: number; excerpt?: string } = { template: template.name };
  const item = error.item === undefined ? undefined : labels?.[error.item];
  if (error.file !== undefined) where.file = error.file;
  if (error.line !== undefined) where.line = error.line;
  if (error.column !== undefined) where.column = error.column;
  if (error.excerpt !== undefined) where.excerpt = error.excerpt;
  const code = error.code === 'E_TEMPLATE' ? 'E_TEMPLATE' : 'E_RENDER';
  return new TemplateError(code, item === undefined ? error.detail : `${error.detail} (rendering the file of ${item})`, where);
}
