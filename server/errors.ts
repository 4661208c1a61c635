/**
 * Errors of the running node that are the user's to fix (a busy port, a data
 * dir that does not fit, a bad flag combination): one line saying what is
 * wrong and what to do. The CLI prints them as its own errors.
 * @module
 */

/** A failure the user can fix; the message is one line naming the problem and the fix. */
export class NodeError extends Error {
  /** A node error with a one-line `message`. */
  constructor(message: string) {
    super(message);
    this.name = "NodeError";
  }
}

/** A NodeError caused by how the node was asked to run (flags); the CLI exits 2. */
export class NodeUsageError extends NodeError {
  /** A usage error with a one-line `message`. */
  constructor(message: string) {
    super(message);
    this.name = "NodeUsageError";
  }
}

/** What a missing Deno permission means for the user, in one line (no trailing period). */
export function missingPermission(e: Deno.errors.NotCapable): string {
  return `Seguro lacks a permission (${e.message.replace(/[.\s]+$/, "")}); ` +
    "the seguro binary and 'deno task seguro' grant every permission it needs: use one of them";
}
