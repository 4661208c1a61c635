/**
 * What a node spends on strangers: connections that have not finished the
 * handshake are capped, in all and per address, and refusals and failed
 * handshakes are logged at a bounded rate. Beyond the caps a new connection
 * is closed before anything is read or allocated for it.
 * @module
 */

import type { LogSink } from "./log_event.ts";

/** Connections in their handshake at once, from all addresses. */
export const HANDSHAKING_MAX = 64;
/** Connections in their handshake at once from one address. */
export const HANDSHAKING_PER_ADDRESS_MAX = 16;
/** Lines a {@linkcode RateLimitedLog} writes per window before it only counts. */
export const LOG_LINES_PER_WINDOW = 5;
/** The window of a {@linkcode RateLimitedLog}. */
export const LOG_WINDOW_MS = 10_000;

/** Counts connections in their handshake; refuses past the caps. */
export class Admission {
  readonly #perAddress = new Map<string, number>();
  #total = 0;
  readonly #max: number;
  readonly #perAddressMax: number;

  /** Caps default to {@linkcode HANDSHAKING_MAX} and {@linkcode HANDSHAKING_PER_ADDRESS_MAX}. */
  constructor(max = HANDSHAKING_MAX, perAddressMax = HANDSHAKING_PER_ADDRESS_MAX) {
    this.#max = max;
    this.#perAddressMax = perAddressMax;
  }

  /**
   * Admits a connection from `address` into its handshake, or says why not.
   * An admitted one must be {@linkcode done} exactly once.
   */
  admit(address: string): string | undefined {
    const mine = this.#perAddress.get(address) ?? 0;
    if (this.#total >= this.#max) {
      return `${this.#max} connections are already in their handshake`;
    }
    if (mine >= this.#perAddressMax) {
      return `${this.#perAddressMax} connections from ${address} are already in their handshake`;
    }
    this.#perAddress.set(address, mine + 1);
    this.#total++;
    return undefined;
  }

  /** The handshake of a connection from `address` ended (either way). */
  done(address: string): void {
    const mine = this.#perAddress.get(address) ?? 0;
    if (mine <= 0 || this.#total <= 0) {
      throw new Error(
        `invariant: admission released for ${address} with ${mine} admitted from it and ${this.#total} in all`,
      );
    }
    if (mine === 1) this.#perAddress.delete(address);
    else this.#perAddress.set(address, mine - 1);
    this.#total--;
  }

  /** Connections in their handshake now. */
  get handshaking(): number {
    return this.#total;
  }
}

/**
 * A log that writes at most {@linkcode LOG_LINES_PER_WINDOW} lines per
 * window and then counts; the first line after a window with dropped lines
 * says how many were dropped. Time comes from `now` (milliseconds).
 */
export class RateLimitedLog {
  readonly #log: LogSink;
  readonly #now: () => number;
  #windowStart = -Infinity;
  #written = 0;
  #dropped = 0;

  /** Wraps `log`. */
  constructor(log: LogSink, now: () => number = () => performance.now()) {
    this.#log = log;
    this.#now = now;
  }

  /** Writes the line, or counts it when this window's lines are spent. */
  line(...args: Parameters<LogSink>): void {
    const now = this.#now();
    if (now - this.#windowStart >= LOG_WINDOW_MS) {
      if (this.#dropped > 0) {
        this.#log(
          `(${this.#dropped} more such lines in ${LOG_WINDOW_MS / 1000} s were not logged)`,
          { event: "log_lines_dropped", count: this.#dropped },
        );
      }
      this.#windowStart = now;
      this.#written = 0;
      this.#dropped = 0;
    }
    if (this.#written < LOG_LINES_PER_WINDOW) {
      this.#written++;
      this.#log(...args);
    } else {
      this.#dropped++;
    }
  }
}
