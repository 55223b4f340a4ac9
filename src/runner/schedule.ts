/** Quiescence for one template, as consul-template's `wait`: both values in milliseconds. */
interface Wait {
  min: number;
  max: number;
}

/** Debounces changes into renders. */
export interface Schedule {
  /** A change happened: push the render to `min` after now, but never past `max` after the first change. */
  poke(): void;
  /** Drops a pending render. */
  cancel(): void;
  /** True while a render is waiting to fire. */
  readonly pending: boolean;
}

/**
 * Creates a schedule that calls `fire` once the changes have been quiet for `wait.min`, or `wait.max`
 * after the first of them, whichever comes first. With `wait: false` it fires on the next turn of the
 * event loop, which still merges changes made in the same turn (several sources updating at once).
 */
export function createSchedule(wait: Wait | false, fire: () => void): Schedule {
  let timer: NodeJS.Timeout | undefined;
  let deadline = 0;
  const run = (): void => {
    timer = undefined;
    fire();
  };
  return {
    poke() {
      const now = Date.now();
      if (!wait) {
        timer ??= setTimeout(run, 0);
        return;
      }
      if (timer === undefined) {
        deadline = now + wait.max;
        timer = setTimeout(run, Math.min(wait.min, wait.max));
        return;
      }
      clearTimeout(timer);
      timer = setTimeout(run, Math.max(0, Math.min(wait.min, deadline - now)));
    },
    cancel() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
    get pending() {
      return timer !== undefined;
    },
  };
}
