/**
 * Alarms: what a running node reports when a side job (a standby pier, the
 * exec supervisor) fails. A side job's failure never stops the Raft node; it
 * raises an alarm, logged once when it is raised or changes and once when it
 * clears, and shown by `seguro status` until it clears.
 * @module
 */

import type { LogSink } from "../cluster/log_event.ts";
import { missingPermission } from "./errors.ts";

/** The node's active alarms, keyed by what raised them (e.g. `standby ~zod`). */
export class Alarms {
  readonly #log: LogSink;
  readonly #active = new Map<string, string>();

  /** Alarms that log through `log`. */
  constructor(log: LogSink) {
    this.#log = log;
  }

  /** Raises (or updates) the alarm `key`; logs only when its message changes. */
  raise(key: string, message: string): void {
    if (this.#active.get(key) === message) return;
    this.#active.set(key, message);
    this.#log(`ALARM ${key}: ${message}`, { event: "alarm", key, message });
  }

  /** Clears the alarm `key`, if raised. */
  clear(key: string): void {
    if (this.#active.delete(key)) {
      this.#log(`alarm cleared: ${key}`, { event: "alarm_cleared", key });
    }
  }

  /** Active alarms, as `key: message` lines. */
  list(): string[] {
    return [...this.#active].map(([key, message]) => `${key}: ${message}`);
  }
}

/** What a side job's error says, in one line: a missing permission names the fix. */
export function describeFailure(e: unknown): string {
  if (e instanceof Deno.errors.NotCapable) return missingPermission(e);
  return e instanceof Error ? e.message : String(e);
}
