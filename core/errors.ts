/**
 * Errors raised by the Raft core.
 *
 * @module
 */

/**
 * A Raft safety invariant was violated. The message carries the values that
 * broke it. This is never "handled": the node must stop, because continuing
 * could lose or fork committed data.
 */
export class RaftInvariantError extends Error {
  /** Creates the error with a sentence naming the offending values. */
  constructor(message: string) {
    super(message);
    this.name = "RaftInvariantError";
  }
}

/**
 * The caller used the core incorrectly (for example called `ready()` twice
 * without `advance()`, or passed a message addressed to another node).
 */
export class RaftUsageError extends Error {
  /** Creates the error with a sentence saying what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "RaftUsageError";
  }
}

/**
 * Throws a {@linkcode RaftInvariantError} with `message` when `condition` is
 * false. The message is built lazily so hot paths pay nothing.
 */
export function assertInvariant(condition: boolean, message: () => string): asserts condition {
  if (!condition) throw new RaftInvariantError(message());
}
