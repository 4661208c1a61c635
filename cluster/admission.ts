/**
 * What a node spends on strangers: connections that have not finished the
 * handshake are capped, in all and per address (past a cap the oldest is
 * closed), and evictions and failed handshakes are logged at a bounded rate.
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

/** A connection in its handshake, as {@linkcode Admission} holds it. */
export interface Handshaking {
  readonly address: string;
  /** Closes the connection (the admission evicts it). */
  readonly close: () => void;
}

/**
 * Counts connections in their handshake. Past a cap, the OLDEST one (of
 * that address, or of all) is closed to make room: a stranger who opens
 * connections and goes silent holds nothing for long, and a client that
 * arrives during a burst still gets its turn.
 */
export class Admission {
  /** In arrival order (a Set keeps insertion order): the oldest first. */
  readonly #all = new Set<Handshaking>();
  readonly #perAddress = new Map<string, Set<Handshaking>>();
  readonly #max: number;
  readonly #perAddressMax: number;

  /** Caps default to {@linkcode HANDSHAKING_MAX} and {@linkcode HANDSHAKING_PER_ADDRESS_MAX}. */
  constructor(max = HANDSHAKING_MAX, perAddressMax = HANDSHAKING_PER_ADDRESS_MAX) {
    this.#max = max;
    this.#perAddressMax = perAddressMax;
  }

  /**
   * Admits `h` into its handshake; returns the connections evicted to make
   * room (already closed and forgotten). `h` must be {@linkcode done} once.
   */
  admit(h: Handshaking): Handshaking[] {
    const evicted: Handshaking[] = [];
    const mine = this.#perAddress.get(h.address);
    if (mine !== undefined && mine.size >= this.#perAddressMax) {
      evicted.push(mine.values().next().value!);
    } else if (this.#all.size >= this.#max) {
      evicted.push(this.#all.values().next().value!);
    }
    for (const old of evicted) {
      this.done(old);
      old.close();
    }
    this.#all.add(h);
    const set = this.#perAddress.get(h.address) ?? new Set();
    set.add(h);
    this.#perAddress.set(h.address, set);
    return evicted;
  }

  /** The handshake of `h` ended (either way); a second call, or after an eviction, does nothing. */
  done(h: Handshaking): void {
    if (!this.#all.delete(h)) return;
    const set = this.#perAddress.get(h.address);
    if (set === undefined || !set.delete(h)) {
      throw new Error(
        `invariant: a handshaking connection from ${h.address} is not listed under it`,
      );
    }
    if (set.size === 0) this.#perAddress.delete(h.address);
  }

  /** Connections in their handshake now. */
  get handshaking(): number {
    return this.#all.size;
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
