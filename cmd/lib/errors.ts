/**
 * The two kinds of failure a command reports. Both print one line to stderr:
 * what is wrong and what to do.
 * @module
 */

/** Exit code of a failure: the command was well formed but could not be done. */
export const EXIT_FAILURE = 1;
/** Exit code of a usage error: the command line itself is wrong. */
export const EXIT_USAGE = 2;

/** A failure to report to the user (exit 1); the message says what to do. */
export class CliError extends Error {
  /** The exit code: 1, or 2 for a usage error. */
  readonly exitCode: number;

  /** Makes an error whose message is one line: the problem, then the fix. */
  constructor(message: string, exitCode = EXIT_FAILURE) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}

/** A usage error (exit 2): a bad flag value, a missing argument. */
export class UsageError extends CliError {
  /** Makes a usage error; the message names the bad input and the accepted form. */
  constructor(message: string) {
    super(message, EXIT_USAGE);
    this.name = "UsageError";
  }
}

/** An option parser for a whole number of at least 0; `name` is the flag, for the error. */
export function naturalOption(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n)) {
      throw new UsageError(`${name} must be a whole number of at least 0 (got '${value}')`);
    }
    return n;
  };
}

/** An option parser for a whole number of at least 1; `name` is the flag, for the error. */
export function positiveOption(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new UsageError(`${name} must be a whole number of at least 1 (got '${value}')`);
    }
    return n;
  };
}
