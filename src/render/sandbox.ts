import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { TemplateError, type RosterdErrorCode } from '../errors.js';
import { RENDER_LIMITS, type CompiledTemplate, type RenderLimits } from './engine.js';

/**
 * Renders templates in a worker thread, one render at a time. A template is code the daemon runs on every
 * change: rendering it on the main thread would let a runaway template block the event loop (no `/health`, no
 * SIGTERM) or take the whole process down with it when the heap runs out. In the worker, liquidjs's own limits
 * end most runaways with a precise error; what they miss, the sandbox ends: a render still running
 * `KILL_GRACE_MS` after its time limit terminates the worker, and the worker's heap is bounded
 * (`resourceLimits`). Either way only that render fails, the previous file stays, and the next render gets a
 * fresh worker.
 */

/** How long after the time limit a render that liquidjs did not stop is ended by terminating its worker. */
const KILL_GRACE_MS = 2000;

/** A render sent to the worker. */
export interface RenderRequest {
  id: number;
  template: { id: number; name: string; file: string; text: string; root: string; strict: boolean; limits: RenderLimits };
  context: object;
}

/** The worker's answer: the output, or the render's error as plain data. */
export type RenderReply =
  | { id: number; output: string; error?: undefined }
  | {
      id: number;
      output?: undefined;
      error: { code: RosterdErrorCode; detail: string; file: string | undefined; line: number | undefined; column: number | undefined };
    };

interface Pending {
  request: RenderRequest;
  template: CompiledTemplate;
  resolve: (output: string) => void;
  reject: (error: Error) => void;
}

/** A render worker and its queue. Idle, it does not keep the process alive; `close()` ends it. */
export class RenderSandbox {
  readonly #limits: RenderLimits;
  #worker: Worker | undefined;
  #current: (Pending & { timer: NodeJS.Timeout }) | undefined;
  readonly #queue: Pending[] = [];
  #nextId = 0;

  constructor(limits: Partial<RenderLimits> = {}) {
    this.#limits = { ...RENDER_LIMITS, ...limits };
  }

  /** Renders `template` with `context` (which is copied to the worker). Rejects with a `TemplateError`. */
  render(template: CompiledTemplate, context: object): Promise<string> {
    const { id, name, file, text, root, strict } = template;
    const request: RenderRequest = { id: ++this.#nextId, template: { id, name, file, text, root, strict, limits: this.#limits }, context };
    return new Promise<string>((resolve, reject) => {
      this.#queue.push({ request, template, resolve, reject });
      this.#next();
    });
  }

  /** Ends the worker: the render under way and the queued ones fail. The next render starts a new worker. */
  async close(): Promise<void> {
    const stopped = (p: Pending) => renderError(p.template, 'stopped: the renderer is stopping');
    for (const pending of this.#queue.splice(0)) pending.reject(stopped(pending));
    const current = this.#current;
    if (current) this.#finish(current.request.id, () => current.reject(stopped(current)));
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }

  // --- internal ---

  /** Starts the next queued render, if none is under way; an idle worker no longer keeps the process alive. */
  #next(): void {
    if (this.#current) return;
    const pending = this.#queue.shift();
    if (!pending) {
      this.#worker?.unref();
      return;
    }
    const worker = this.#spawn();
    worker.ref();
    const timer = setTimeout(() => {
      this.#fail(`did not finish within ${(this.#limits.timeMs + KILL_GRACE_MS) / 1000} s (the time limit is ${this.#limits.timeMs / 1000} s); stopped`);
    }, this.#limits.timeMs + KILL_GRACE_MS);
    this.#current = { ...pending, timer };
    try {
      worker.postMessage(pending.request);
    } catch (err) {
      // A context that cannot be copied (a function in a plugged-in source's member, say).
      this.#finish(pending.request.id, () => pending.reject(renderError(pending.template, (err as Error).message)));
      this.#next();
    }
  }

  #spawn(): Worker {
    if (this.#worker) return this.#worker;
    const worker = startWorker(this.#limits.heapMb);
    worker.on('message', (reply: RenderReply) => {
      const current = this.#current;
      if (this.#worker !== worker || !current) return;
      const settled = this.#finish(reply.id, () => {
        if (reply.error === undefined) current.resolve(reply.output);
        else current.reject(rebuild(current.template, reply.error));
      });
      if (settled) this.#next();
    });
    worker.on('error', (err: Error & { code?: string }) => {
      if (this.#worker !== worker) return;
      this.#fail(err.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `ran out of memory (the limit is ${this.#limits.heapMb} MiB); stopped` : `the render worker failed: ${err.message}`);
    });
    worker.on('exit', () => {
      if (this.#worker === worker) this.#fail('the render worker exited');
    });
    this.#worker = worker;
    return worker;
  }

  /** Fails the render under way with `reason` and ends its worker; the queue goes on with a new one. */
  #fail(reason: string): void {
    const worker = this.#worker;
    this.#worker = undefined;
    void worker?.terminate();
    const current = this.#current;
    if (current) this.#finish(current.request.id, () => current.reject(renderError(current.template, reason)));
    this.#next();
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
 * Starts the worker: the built `worker.js` next to this file, or, when rosterd runs from its TypeScript
 * sources (its own tests), `worker.ts` through jiti, as configs are loaded.
 */
function startWorker(heapMb: number): Worker {
  const resourceLimits = { maxOldGenerationSizeMb: heapMb };
  const built = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(built))) return new Worker(built, { resourceLimits });
  const source = fileURLToPath(new URL('./worker.ts', import.meta.url));
  const jiti = createRequire(import.meta.url).resolve('jiti');
  const bootstrap = `require(${JSON.stringify(jiti)}).createJiti(${JSON.stringify(source)}).import(${JSON.stringify(source)});`;
  return new Worker(bootstrap, { eval: true, resourceLimits });
}

function renderError(template: CompiledTemplate, reason: string): TemplateError {
  return new TemplateError('E_RENDER', `${template.file}: failed to render: ${reason}`, { template: template.name, file: template.file });
}

/** The worker's error as the `TemplateError` a render on this thread would have thrown. */
function rebuild(template: CompiledTemplate, error: Extract<RenderReply, { error: object }>['error']): TemplateError {
  const where: { template: string; file?: string; line?: number; column?: number } = { template: template.name };
  if (error.file !== undefined) where.file = error.file;
  if (error.line !== undefined) where.line = error.line;
  if (error.column !== undefined) where.column = error.column;
  const code = error.code === 'E_TEMPLATE' ? 'E_TEMPLATE' : 'E_RENDER';
  return new TemplateError(code, error.detail, where);
}
