/**
 * The signals `rosterd run` handles, caught from the first line of the CLI. Until a handler is installed,
 * Node leaves SIGHUP, SIGTERM and SIGINT to their default action, which ends the process: a `systemctl
 * reload` right after `systemctl start` would kill the daemon while it loads its modules and config. This
 * module has no imports, so that `bin.ts` can install it before loading anything else.
 */

/** The signals `rosterd run` handles. */
export const DAEMON_SIGNALS = ['SIGHUP', 'SIGTERM', 'SIGINT'] as const;

let caught: NodeJS.Signals[] | undefined;
const record = (signal: NodeJS.Signals): void => {
  caught?.push(signal);
};

/** Starts catching the signals: they are remembered, in order, until {@link takeEarlySignals}. */
export function catchEarlySignals(): void {
  if (caught) return;
  caught = [];
  for (const signal of DAEMON_SIGNALS) process.on(signal, record);
}

/**
 * Stops catching and returns what was caught (nothing when catching never started). Install the real
 * handlers first: between the two, a signal would get its default action.
 */
export function takeEarlySignals(): NodeJS.Signals[] {
  const taken = caught ?? [];
  caught = undefined;
  for (const signal of DAEMON_SIGNALS) process.off(signal, record);
  return taken;
}

/** For commands other than `run`: stops catching, and lets a signal caught meanwhile have its default action. */
export function releaseEarlySignals(): void {
  const [first] = takeEarlySignals();
  if (first !== undefined) process.kill(process.pid, first);
}
