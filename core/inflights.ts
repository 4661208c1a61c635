/**
 * The bounded window of AppendEntries messages sent to one follower and not
 * yet acknowledged.
 *
 * @module
 */

import { assertInvariant } from "./errors.ts";

/**
 * A FIFO ring of (last index, bytes) for in-flight appends, bounded both by
 * count (`maxInflightMsgs`) and by payload bytes (`maxInflightBytes`).
 */
export class Inflights {
  readonly #maxInflightMsgs: number;
  readonly #maxInflightBytes: number;
  readonly #lastIndexes: number[];
  readonly #bytes: number[];
  #start = 0;
  #count = 0;
  #totalBytes = 0;

  /** Creates an empty window with the given bounds. */
  constructor(maxInflightMsgs: number, maxInflightBytes: number) {
    assertInvariant(
      Number.isInteger(maxInflightMsgs) && maxInflightMsgs >= 1,
      () => `maxInflightMsgs ${maxInflightMsgs} is not a positive integer`,
    );
    this.#maxInflightMsgs = maxInflightMsgs;
    this.#maxInflightBytes = maxInflightBytes;
    this.#lastIndexes = new Array<number>(maxInflightMsgs).fill(0);
    this.#bytes = new Array<number>(maxInflightMsgs).fill(0);
  }

  /** Number of messages in flight. */
  get count(): number {
    return this.#count;
  }

  /** Payload bytes in flight. */
  get totalBytes(): number {
    return this.#totalBytes;
  }

  /** True when no further message may be sent. */
  full(): boolean {
    return this.#count >= this.#maxInflightMsgs || this.#totalBytes >= this.#maxInflightBytes;
  }

  /** Records a sent message whose last entry is `lastIndex`. */
  add(lastIndex: number, bytes: number): void {
    assertInvariant(
      this.#count < this.#maxInflightMsgs,
      () => `inflight window is full (${this.#count} of ${this.#maxInflightMsgs}) on add`,
    );
    if (this.#count > 0) {
      const newest = this.#lastIndexes[(this.#start + this.#count - 1) % this.#maxInflightMsgs];
      assertInvariant(
        lastIndex > newest,
        () => `inflight index ${lastIndex} does not exceed the newest ${newest}`,
      );
    }
    const at = (this.#start + this.#count) % this.#maxInflightMsgs;
    this.#lastIndexes[at] = lastIndex;
    this.#bytes[at] = bytes;
    this.#count++;
    this.#totalBytes += bytes;
  }

  /** Frees every message whose last index is <= `index` (acknowledged). */
  freeLE(index: number): void {
    while (this.#count > 0 && this.#lastIndexes[this.#start] <= index) {
      this.#totalBytes -= this.#bytes[this.#start];
      this.#start = (this.#start + 1) % this.#maxInflightMsgs;
      this.#count--;
    }
    if (this.#count === 0) this.#start = 0;
  }

  /** Forgets everything in flight. */
  reset(): void {
    this.#start = 0;
    this.#count = 0;
    this.#totalBytes = 0;
  }
}
