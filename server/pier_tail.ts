/**
 * The pier tail: replicates what a runtime writes to a pier. It reads the
 * pier's events after the last one the cluster holds, in batches of at most
 * {@linkcode TAIL_BATCH_BYTES_MAX} bytes of jobs, proposes each batch and
 * waits for it to be applied before it reads the next. One loop, two users:
 * `seguro ship attach` (a client beside a live vere: it proposes through the
 * admin client) and the exec supervisor (it tails the standby pier its
 * runtime writes and proposes through its own node). Both give the read and
 * the propose step as functions.
 *
 * It never skips an event: a read that finds a gap, or a batch the cluster
 * refuses (a pier event that differs from the cluster's at the same number),
 * stops it with a {@linkcode PierTailError}.
 *
 * When it has read everything, it waits for the pier to change. Given the
 * pier's LMDB data file, it watches it (`Deno.watchFs`: vere opens its LMDB
 * env without `MDB_WRITEMAP`, so it commits with `pwrite` and every commit is
 * a modification of that file, whose last write, the meta page, is what makes
 * the commit visible to readers), with a slow timer as a backstop for lost
 * notifications (a full inotify queue, a file system that sends none).
 * Without a file, or when the watch cannot be set up, it polls on a timer.
 *
 * @example
 * ```ts ignore
 * const tail = new PierTail({
 *   after: 120,
 *   read: (after, maxBytes) => standby.readHeld(ship, after, maxBytes),
 *   propose: (firstEve, events) => node.proposeEvents(ship, firstEve, events),
 *   pollMs: 5,
 * });
 * await tail.run(); // until tail.stop(), or a PierTailError
 * ```
 * @module
 */

import type { PlannedEvent } from "../cluster/machine.ts";
import { type PierEvent, readEvents } from "../vere/pier.ts";

/** Bytes of jobs per proposal (a batch holds at least one event, whatever its size). */
export const TAIL_BATCH_BYTES_MAX = 4 * 1024 * 1024;

/** Read-to-commit delays kept for {@linkcode PierTail.delayQuantile}: the last this many batches. */
export const TAIL_DELAYS_KEPT = 1000;

/**
 * Reads a pier's events after `after`: contiguous from `after + 1`, at most
 * `maxBytes` of jobs but at least one event when there is one, none when the
 * pier has no more. Throws when the pier cannot be read or has a gap.
 */
export type ReadPier = (after: number, maxBytes: number) => PierEvent[];

/**
 * Proposes `events`, numbered from `firstEve`, to the cluster; resolves once
 * they are committed and applied, rejects when they are refused or cannot be
 * proposed.
 */
export type ProposeEvents = (firstEve: number, events: PlannedEvent[]) => Promise<unknown>;

/**
 * The reader of a pier another process writes (a live vere): each read opens
 * its newest epochs read-only, in short read transactions, so vere's writer
 * is never blocked; epochs vere adds meanwhile are followed.
 */
export function readLivePier(pier: string): ReadPier {
  return (after, maxBytes) => {
    const out: PierEvent[] = [];
    let bytes = 0;
    for (const e of readEvents(pier, { from: after + 1 })) {
      out.push(e);
      bytes += e.job.length;
      if (bytes >= maxBytes) break;
    }
    return out;
  };
}

/** One batch the tail got committed. */
export interface TailBatch {
  /** Its first event. */
  firstEve: number;
  /** Its last event: everything up to it is committed. */
  lastEve: number;
  /** Milliseconds from the start of its read to its commit. */
  delayMs: number;
}

/** Options of {@linkcode PierTail}. */
export interface PierTailOptions {
  /** The last event the cluster holds: the tail reads after it. */
  after: number;
  /** Reads the pier. */
  read: ReadPier;
  /** Proposes a batch. */
  propose: ProposeEvents;
  /** How often to read when nothing says the pier changed (ms), when it is not watched. */
  pollMs: number;
  /**
   * A file whose modification means the pier may have new events (its LMDB
   * `data.mdb`), watched with `Deno.watchFs`; then the pier is read on each
   * change and every `backstopMs` besides. If it cannot be watched, the tail
   * polls every `pollMs`.
   */
  watch?: { path: string; backstopMs: number };
  /** Bytes of jobs per proposal. Default {@linkcode TAIL_BATCH_BYTES_MAX}. */
  batchBytes?: number;
  /** Called after each committed batch. */
  onBatch?: (batch: TailBatch) => void;
  /** Told when the watch cannot be set up or fails (the tail then polls). */
  log?: (line: string) => void;
}

/** Why a tail stopped: its read failed, or its proposal of `eve` onward was refused. */
export class PierTailError extends Error {
  /** The first event the tail could not get committed. */
  readonly eve: number;
  /** True when reading the pier failed; false when the proposal did. */
  readonly reading: boolean;

  /** The failure `cause` of the read or the proposal of events from `eve`. */
  constructor(eve: number, reading: boolean, cause: unknown) {
    const message = cause instanceof Error ? cause.message : String(cause);
    super(message, { cause });
    this.name = "PierTailError";
    this.eve = eve;
    this.reading = reading;
  }
}

/** Replicates a pier's new events, batch after batch, until stopped or refused. */
export class PierTail {
  readonly #o: PierTailOptions;
  readonly #batchBytes: number;
  #committed: number;
  /** The last {@linkcode TAIL_DELAYS_KEPT} delays, as a ring. */
  readonly #delays: number[] = [];
  #batches = 0;
  #stopping = false;
  /** Something said the pier may have changed since the last read began. */
  #poked = false;
  /** Ends the current wait, if the loop waits. */
  #wake: (() => void) | undefined;
  #watcher: Deno.FsWatcher | undefined;
  #watching: Promise<void> | undefined;
  #loop: Promise<void> | undefined;

  /** A tail after `options.after`; {@linkcode run} starts it. */
  constructor(options: PierTailOptions) {
    if (!Number.isSafeInteger(options.after) || options.after < 0) {
      throw new RangeError(`The tail's first event follows ${options.after}, not an event number`);
    }
    if (!(options.pollMs > 0)) throw new RangeError(`The poll of ${options.pollMs} ms is not > 0`);
    this.#o = options;
    this.#batchBytes = options.batchBytes ?? TAIL_BATCH_BYTES_MAX;
    this.#committed = options.after;
  }

  /** The last event committed: the tail reads after it. */
  get committed(): number {
    return this.#committed;
  }

  /** Batches committed so far. */
  get batches(): number {
    return this.#batches;
  }

  /** True while the pier's data file is watched (false: the tail polls). */
  get watching(): boolean {
    return this.#watcher !== undefined;
  }

  /**
   * The read-to-commit delay (ms) of the last {@linkcode TAIL_DELAYS_KEPT}
   * batches at quantile `q` (0.5: the median), undefined before the first batch.
   */
  delayQuantile(q: number): number | undefined {
    if (this.#delays.length === 0) return undefined;
    const sorted = [...this.#delays].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  /**
   * Runs the tail: resolves once {@linkcode stop} (or {@linkcode drain}) has
   * stopped it, after the batch in flight; rejects with a
   * {@linkcode PierTailError} when a read or a proposal fails. Call it once.
   */
  run(): Promise<void> {
    if (this.#loop !== undefined) throw new Error("PierTail.run was called twice; call it once");
    this.#watch();
    this.#loop = this.#run().finally(() => this.#unwatch());
    return this.#loop;
  }

  /** Says the pier may have changed: the tail reads it now rather than at its next timer. */
  poke(): void {
    this.#poked = true;
    this.#wake?.();
  }

  /**
   * Stops the tail after the batch in flight; resolves once it has stopped
   * (a failure is not thrown here: {@linkcode run} rejects with it).
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    if (this.#loop === undefined) return;
    try {
      await this.#loop;
    } catch { /* run() reports it */ }
  }

  /**
   * Stops the background loop, then reads and proposes until the pier has
   * no event after {@linkcode committed}, or until `proceed` answers false
   * before a batch. Resolves with the number of events it got committed;
   * rejects with a {@linkcode PierTailError} when a read or a proposal fails.
   */
  async drain(proceed: () => boolean = () => true): Promise<number> {
    await this.stop();
    const from = this.#committed;
    while (proceed() && await this.#once() > 0) { /* next batch */ }
    return this.#committed - from;
  }

  async #run(): Promise<void> {
    while (!this.#stopping) {
      this.#poked = false;
      if (await this.#once() > 0) continue;
      // A change noticed while reading: read again before waiting.
      if (this.#poked || this.#stopping) continue;
      await this.#sleep();
    }
  }

  /** Reads one batch and gets it committed; returns its number of events (0: none to read). */
  async #once(): Promise<number> {
    const started = performance.now();
    const first = this.#committed + 1;
    let events: PierEvent[];
    try {
      events = this.#o.read(this.#committed, this.#batchBytes);
      events.forEach((e, i) => {
        if (e.eve !== first + i) {
          throw new Error(`the pier's read returned event ${e.eve} where ${first + i} belongs`);
        }
      });
    } catch (e) {
      throw new PierTailError(first, true, e);
    }
    if (events.length === 0) return 0;
    try {
      await this.#o.propose(first, events.map((e) => ({ mug: e.mug, job: e.job })));
    } catch (e) {
      throw new PierTailError(first, false, e);
    }
    this.#committed += events.length;
    const delayMs = performance.now() - started;
    this.#delays[this.#batches % TAIL_DELAYS_KEPT] = delayMs;
    this.#batches++;
    this.#o.onBatch?.({ firstEve: first, lastEve: this.#committed, delayMs });
    return events.length;
  }

  /** Waits for a poke, a stop, or the timer (the backstop while watching, else the poll). */
  #sleep(): Promise<void> {
    const ms = this.#watcher !== undefined ? this.#o.watch!.backstopMs : this.#o.pollMs;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#wake?.(), ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  #watch(): void {
    const watch = this.#o.watch;
    if (watch === undefined) return;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(watch.path, { recursive: false });
    } catch (e) {
      this.#o.log?.(
        `cannot watch ${watch.path} (${
          (e as Error).message
        }); reading it every ${this.#o.pollMs} ms`,
      );
      return;
    }
    this.#watcher = watcher;
    this.#watching = (async () => {
      try {
        for await (const event of watcher) {
          // Opening the file is no news; a write, a rename or anything unknown may be.
          if (event.kind !== "access") this.poke();
        }
      } catch (e) {
        if (this.#watcher === watcher && !this.#stopping) {
          this.#o.log?.(
            `the watch of ${watch.path} failed (${
              (e as Error).message
            }); reading it every ${this.#o.pollMs} ms`,
          );
        }
      }
      // Ended by a failure (or by #unwatch): the timer alone goes on, at the poll.
      if (this.#watcher === watcher) this.#watcher = undefined;
      this.poke();
    })();
  }

  async #unwatch(): Promise<void> {
    const watcher = this.#watcher;
    this.#watcher = undefined;
    try {
      watcher?.close();
    } catch { /* closed */ }
    await this.#watching;
  }
}
