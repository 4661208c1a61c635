/**
 * Log lines with a machine-readable side. Every component logs a line for
 * people; the lines that tools and tests act on (an election won, a member
 * promoted, an alarm, a loss) also carry a {@linkcode LogEvent}: a stable
 * event name and its fields. `seguro run --log-format json` prints both (see
 * docs/operations.md), so nothing has to parse the prose.
 * @module
 */

/** A log line's machine-readable side: a stable event name and its fields. */
export interface LogEvent {
  /** Stable name, e.g. `leader`, `promoted`, `alarm` (docs/operations.md lists them). */
  event: string;
  /** The event's fields. */
  [field: string]: string | number | boolean | undefined;
}

/** Where a component logs: a line, and for the lines that matter, its event. */
export type LogSink = (line: string, event?: LogEvent) => void;
