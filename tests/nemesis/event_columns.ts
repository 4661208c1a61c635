/**
 * Events stored column by column (numbers in typed arrays, job bytes in one
 * growing arena), so that a long nemesis run can hold millions of them: the
 * runtime client's copy of the log, the events it released, and each node's
 * final log.
 * @module
 */

/** One event: its number, its mug and its jam bytes. */
export interface LoggedEvent {
  /** Event number, from 1. */
  eve: number;
  /** Mug after the event. */
  mug: number;
  /** The event's jam bytes. */
  job: Uint8Array;
}

/** Read access to a ship's log whose events are 1..lastEve. */
export interface EventLogView {
  /** Number of the last event (0: none). */
  readonly lastEve: number;
  /** Event `eve`, or undefined past the end. */
  event(eve: number): LoggedEvent | undefined;
}

/** Equal bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Equal events: number, mug and job bytes. */
export function sameEvent(a: LoggedEvent, b: LoggedEvent): boolean {
  return a.eve === b.eve && a.mug === b.mug && sameBytes(a.job, b.job);
}

/** A growing list of events with a numeric tag each (a connection id, or 0). */
export class EventColumns {
  #eves = new Float64Array(1024);
  #mugs = new Uint32Array(1024);
  #tags = new Uint32Array(1024);
  #starts = new Float64Array(1025);
  #arena = new Uint8Array(64 * 1024);
  #count = 0;

  /** Number of events held. */
  get length(): number {
    return this.#count;
  }

  /** Appends an event (its bytes are copied). */
  push(e: LoggedEvent, tag = 0): void {
    if (this.#count === this.#eves.length) this.#growRows();
    const at = this.#starts[this.#count];
    if (at + e.job.length > this.#arena.length) {
      const next = new Uint8Array(Math.max(2 * this.#arena.length, at + e.job.length));
      next.set(this.#arena.subarray(0, at));
      this.#arena = next;
    }
    this.#arena.set(e.job, at);
    this.#eves[this.#count] = e.eve;
    this.#mugs[this.#count] = e.mug;
    this.#tags[this.#count] = tag;
    this.#count++;
    this.#starts[this.#count] = at + e.job.length;
  }

  #growRows(): void {
    const n = this.#eves.length * 2;
    const eves = new Float64Array(n);
    eves.set(this.#eves);
    const mugs = new Uint32Array(n);
    mugs.set(this.#mugs);
    const tags = new Uint32Array(n);
    tags.set(this.#tags);
    const starts = new Float64Array(n + 1);
    starts.set(this.#starts);
    this.#eves = eves;
    this.#mugs = mugs;
    this.#tags = tags;
    this.#starts = starts;
  }

  /** Keeps the first `count` events. */
  truncate(count: number): void {
    if (count < 0 || count > this.#count) {
      throw new RangeError(`Cannot truncate ${this.#count} events to ${count}`);
    }
    this.#count = count;
  }

  /** Event number of row `i`. */
  eveAt(i: number): number {
    this.#check(i);
    return this.#eves[i];
  }

  /** Mug of row `i`. */
  mugAt(i: number): number {
    this.#check(i);
    return this.#mugs[i];
  }

  /** Tag of row `i`. */
  tagAt(i: number): number {
    this.#check(i);
    return this.#tags[i];
  }

  /** A copy of the job bytes of row `i`. */
  jobAt(i: number): Uint8Array {
    this.#check(i);
    return this.#arena.slice(this.#starts[i], this.#starts[i + 1]);
  }

  /** Row `i` as an event (its job copied). */
  at(i: number): LoggedEvent {
    return { eve: this.eveAt(i), mug: this.mugAt(i), job: this.jobAt(i) };
  }

  /** True when row `i` holds exactly `e`. */
  holds(i: number, e: LoggedEvent): boolean {
    this.#check(i);
    if (this.#eves[i] !== e.eve || this.#mugs[i] !== e.mug) return false;
    const start = this.#starts[i];
    if (this.#starts[i + 1] - start !== e.job.length) return false;
    for (let k = 0; k < e.job.length; k++) if (this.#arena[start + k] !== e.job[k]) return false;
    return true;
  }

  /** Rows in order, as events with their tag. */
  *[Symbol.iterator](): IterableIterator<LoggedEvent & { tag: number }> {
    for (let i = 0; i < this.#count; i++) yield { ...this.at(i), tag: this.#tags[i] };
  }

  #check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.#count) {
      throw new RangeError(`Row ${i} is outside 0..${this.#count - 1}`);
    }
  }
}

/** A ship's log: events 1..lastEve in rows 0..lastEve - 1 (numbers are checked on append). */
export class ShipLog implements EventLogView {
  readonly #rows = new EventColumns();

  /** Number of the last event (0: none). */
  get lastEve(): number {
    return this.#rows.length;
  }

  /** Appends the next event; its number must be lastEve + 1. */
  append(e: LoggedEvent): void {
    if (e.eve !== this.lastEve + 1) {
      throw new RangeError(`Event ${e.eve} does not follow event ${this.lastEve}`);
    }
    this.#rows.push(e);
  }

  /** Keeps events 1..eve. */
  truncate(eve: number): void {
    this.#rows.truncate(eve);
  }

  /** Event `eve`, or undefined outside 1..lastEve. */
  event(eve: number): LoggedEvent | undefined {
    return eve >= 1 && eve <= this.lastEve ? this.#rows.at(eve - 1) : undefined;
  }

  /** True when event `e.eve` here is exactly `e`. */
  holds(e: LoggedEvent): boolean {
    return e.eve >= 1 && e.eve <= this.lastEve && this.#rows.holds(e.eve - 1, e);
  }

  /** Mug of event `eve` (1..lastEve). */
  mugOf(eve: number): number {
    return this.#rows.mugAt(eve - 1);
  }

  /** A log holding `events` (numbered 1..n). */
  static of(events: readonly LoggedEvent[]): ShipLog {
    const log = new ShipLog();
    for (const e of events) log.append(e);
    return log;
  }
}
