import { parseDuration } from '../config/duration.js';
import { RosterdError } from '../errors.js';

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
