import { RosterdError } from '../errors.js';

/** Exit codes: part of the public contract. */
export const ExitCode = {
  /** Success: every template written or unchanged. */
  OK: 0,
  /** A template failed at run time: render error, guard refused, check failed, install or reload failed. */
  TEMPLATE_FAILED: 1,
  /** Usage or configuration error: bad flag, invalid config, template that does not compile. */
  CONFIG: 2,
  /** A source gave no first snapshot (missing member file at once; unreachable backend after --timeout). */
  SOURCE: 3,
} as const;

type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code for an error that ends a command. */
export function exitCodeFor(error: unknown): ExitCodeValue {
  if (!RosterdError.is(error)) return ExitCode.TEMPLATE_FAILED;
  switch (error.code) {
    case 'E_USAGE':
    case 'E_CONFIG':
    case 'E_TEMPLATE':
      return ExitCode.CONFIG;
    case 'E_SOURCE':
    case 'E_SOURCE_TIMEOUT':
    case 'E_SERF':
      return ExitCode.SOURCE;
    // HAProxy is what a reload talks to: its failure is the template's, like a failed reload.
    case 'E_HAPROXY':
    // A bug in rosterd: the command failed, like an unexpected error that is not a RosterdError.
    case 'E_INTERNAL':
      return ExitCode.TEMPLATE_FAILED;
    default:
      return ExitCode.TEMPLATE_FAILED;
  }
}
