import { parseDuration } from '../config/duration.js';
import { RosterdError } from '../errors.js';

/** The environment variable `rosterd announce` reads the etcd password from. */
export const PASSWORD_ENV = 'ROSTERD_ETCD_PASSWORD';

/** A usage error: printed in one line, exit code 2. */
export function usageError(message: string): RosterdError {
  return new RosterdError('E_USAGE', message);
}

/** A commander argument parser for a duration flag (`--timeout 5s`). */
export function durationOption(flag: string): (value: string) => number {
  return (value) => {
    const parsed = parseDuration(value);
    if (typeof parsed === 'number') return parsed;
    throw usageError(`${flag}: ${parsed.error}`);
  };
}

/** A commander argument parser for a count flag (`--limit 5`): a positive whole number. */
export function countOption(flag: string): (value: string) => number {
  return (value) => {
    if (!/^\d{1,9}$/.test(value) || Number(value) === 0) throw usageError(`${flag}: "${value}" is not a positive whole number`);
    return Number(value);
  };
}
