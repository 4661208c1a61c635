/**
 * The Raft log as one node holds it: a snapshot (the compacted prefix), the
 * entries after it, how far they are durable, how far committed and applied,
 * and the membership each `conf` entry installs.
 *
 * Entries up to `persistedIndex` are durable; entries from `unstableFrom`
 * have not yet been handed to storage in a Ready; the ones in between are
 * being written.
 *
 * @module
 */

import { decodeConfChangeRecord } from "./confchange.ts";
import { assertInvariant } from "./errors.ts";
import type { ConfState, Entry, SnapshotMeta } from "./messages.ts";

/** Payload bytes an entry is charged for in size limits (data plus a fixed header). */
export function entrySizeBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/** Fixed per-entry cost in size limits (index, term, type on the wire). */
export const ENTRY_OVERHEAD_BYTES = 24;

interface ConfAt {
  readonly index: number;
  readonly conf: ConfState;
}

/** One node's log. Positions are 1-based Raft indexes. */
export class RaftLog {
  #snapshot: SnapshotMeta;
  #entries: Entry[];
  /** A snapshot installed from a leader and not yet handed out in a Ready. */
  #pendingSnapshot: SnapshotMeta | undefined;
  /** Membership changes in `#entries`, ascending by index. */
  #confs: ConfAt[] = [];
  /** Size of `#entries` as {@linkcode entrySizeBytes} counts it. */
  #bytes = 0;
  #persistedIndex: number;
  #unstableFrom: number;
  #committed: number;
  #applied: number;

  /**
   * Restores a log from durable state: `entries` must follow `snapshot`
   * contiguously; all of it counts as durable.
   */
  constructor(snapshot: SnapshotMeta, entries: readonly Entry[], committed: number) {
    this.#snapshot = snapshot;
    this.#entries = [];
    this.#pendingSnapshot = undefined;
    this.#persistedIndex = snapshot.index;
    this.#unstableFrom = snapshot.index + 1;
    this.#committed = snapshot.index;
    this.#applied = snapshot.index;
    if (entries.length > 0) this.append(entries);
    this.#persistedIndex = this.lastIndex();
    this.#unstableFrom = this.lastIndex() + 1;
    assertInvariant(
      committed <= this.lastIndex(),
      () => `restored commit index ${committed} is past the last index ${this.lastIndex()}`,
    );
    this.#committed = Math.max(committed, snapshot.index);
  }

  /** The compacted prefix (or the installed snapshot). */
  get snapshot(): SnapshotMeta {
    return this.#snapshot;
  }

  /** Highest index durable on this node. */
  get persistedIndex(): number {
    return this.#persistedIndex;
  }

  /** Highest committed index (never decreases, never passes `persistedIndex`). */
  get committed(): number {
    return this.#committed;
  }

  /** Highest index handed to the application. */
  get applied(): number {
    return this.#applied;
  }

  /** Bytes the held entries take, as {@linkcode entrySizeBytes} counts them. */
  heldBytes(): number {
    return this.#bytes;
  }

  /** First index still held as an entry. */
  firstIndex(): number {
    return this.#snapshot.index + 1;
  }

  /** Index of the last entry (the snapshot index when there are none). */
  lastIndex(): number {
    return this.#snapshot.index + this.#entries.length;
  }

  /** Term of the last entry. */
  lastTerm(): number {
    const n = this.#entries.length;
    return n === 0 ? this.#snapshot.term : this.#entries[n - 1].term;
  }

  /** Term at `index`, or undefined when compacted away or past the end. */
  termAt(index: number): number | undefined {
    const s = this.#snapshot.index;
    if (index === s) return this.#snapshot.term;
    if (index < s || index > this.lastIndex()) return undefined;
    return this.#entries[index - s - 1].term;
  }

  /** The entry at `index` (must be held). */
  entry(index: number): Entry {
    const e = this.#entries[index - this.#snapshot.index - 1];
    assertInvariant(
      e !== undefined,
      () => `entry ${index} is not held (first ${this.firstIndex()}, last ${this.lastIndex()})`,
    );
    return e;
  }

  /** True when the entry at `index` has term `term`. */
  matchTerm(index: number, term: number): boolean {
    return this.termAt(index) === term;
  }

  /** True when a log ending at (`lastIndex`, `lastTerm`) is at least as up to date as this one. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const myTerm = this.lastTerm();
    return lastTerm > myTerm || (lastTerm === myTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Entries in [`lo`, `hi`), cut so their size stays within `maxBytes` (at
   * least one entry is returned when the range is not empty).
   */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    assertInvariant(
      lo >= this.firstIndex() && hi <= this.lastIndex() + 1 && lo <= hi,
      () =>
        `slice [${lo}, ${hi}) is outside the held entries [${this.firstIndex()}, ${
          this.lastIndex() + 1
        })`,
    );
    const base = this.#snapshot.index + 1;
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.#entries[i - base];
      bytes += entrySizeBytes(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  /**
   * Appends entries that follow the current last index (leader path, or
   * after truncation).
   */
  append(entries: readonly Entry[]): void {
    for (const e of entries) {
      const expected = this.lastIndex() + 1;
      assertInvariant(
        e.index === expected,
        () => `appended entry index ${e.index} does not follow the last index ${expected - 1}`,
      );
      assertInvariant(
        e.term >= this.lastTerm(),
        () => `appended entry ${e.index} has term ${e.term} below the last term ${this.lastTerm()}`,
      );
      this.#entries.push(e);
      this.#bytes += entrySizeBytes(e);
      if (e.type === "conf") {
        this.#confs.push({ index: e.index, conf: decodeConfChangeRecord(e.data).conf });
      }
    }
  }

  /**
   * Follower append: if the entry at `prevIndex` has term `prevTerm`, merges
   * `entries` (truncating a conflicting suffix) and returns the index of the
   * last new entry; otherwise returns undefined. Log matching is asserted:
   * an entry already held with the same index and term must carry the same
   * bytes, and no committed entry is ever truncated.
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: readonly Entry[]): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + entries.length;
    let k = 0;
    for (; k < entries.length; k++) {
      const e = entries[k];
      assertInvariant(
        e.index === prevIndex + 1 + k,
        () => `append carries entry ${e.index} at position ${prevIndex + 1 + k}`,
      );
      if (e.index < this.firstIndex()) continue; // covered by the snapshot
      const t = this.termAt(e.index);
      if (t === undefined) break;
      if (t !== e.term) {
        assertInvariant(
          e.index > this.#committed,
          () =>
            `append would truncate committed entry ${e.index} (term ${t}, commit ${this.#committed}) for term ${e.term}`,
        );
        this.#truncateFrom(e.index);
        break;
      }
      const held = this.entry(e.index);
      assertInvariant(
        held.type === e.type && bytesEqual(held.data, e.data),
        () => `log matching broken: entry ${e.index} term ${e.term} differs from the held entry`,
      );
    }
    if (k < entries.length) this.append(entries.slice(k));
    return lastNew;
  }

  /**
   * The last (index, term) at or below `index` whose term is <= `term`, used
   * for fast backtracking. Stops at the snapshot.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    while (i > this.#snapshot.index) {
      const t = this.termAt(i)!;
      if (t <= term) return { index: i, term: t };
      i--;
    }
    return { index: this.#snapshot.index, term: this.#snapshot.term };
  }

  /** Advances the commit index; asserts it neither decreases nor passes the durable index. */
  commitTo(index: number): void {
    assertInvariant(
      index >= this.#committed,
      () => `commit index would decrease from ${this.#committed} to ${index}`,
    );
    assertInvariant(
      index <= this.#persistedIndex,
      () => `commit index ${index} would pass the last durable index ${this.#persistedIndex}`,
    );
    this.#committed = index;
  }

  /** Entries not yet handed to storage; marks them handed. */
  takeUnstableEntries(): Entry[] {
    const from = this.#unstableFrom;
    const last = this.lastIndex();
    if (from > last) return [];
    this.#unstableFrom = last + 1;
    const base = this.#snapshot.index + 1;
    return this.#entries.slice(from - base);
  }

  /** True when entries or a snapshot wait to be handed to storage. */
  hasUnstable(): boolean {
    return this.#unstableFrom <= this.lastIndex() || this.#pendingSnapshot !== undefined;
  }

  /** The installed snapshot not yet handed to storage; marks it handed. */
  takePendingSnapshot(): SnapshotMeta | undefined {
    const s = this.#pendingSnapshot;
    this.#pendingSnapshot = undefined;
    return s;
  }

  /** Storage reports entries up to (`index`, `term`) durable. */
  persistedTo(index: number, term: number): void {
    if (index > this.#persistedIndex && this.matchTerm(index, term)) {
      // Only entries handed out can be durable.
      this.#persistedIndex = Math.min(index, this.#unstableFrom - 1);
    }
  }

  /** Storage reports `snapshot` durable (and installed by the application). */
  snapshotPersisted(snapshot: SnapshotMeta): void {
    if (snapshot.index === this.#snapshot.index && snapshot.term === this.#snapshot.term) {
      if (snapshot.index > this.#persistedIndex) this.#persistedIndex = snapshot.index;
      if (snapshot.index > this.#applied) this.#applied = snapshot.index;
    }
  }

  /** Entries in (`applied`, `committed`], bounded by `maxBytes` (at least one). */
  nextCommittedEntries(maxBytes: number): Entry[] {
    const lo = Math.max(this.#applied + 1, this.firstIndex());
    if (lo > this.#committed) return [];
    return this.slice(lo, this.#committed + 1, maxBytes);
  }

  /** True when committed entries wait to be applied. */
  hasCommittedToApply(): boolean {
    return this.#committed > this.#applied && this.#committed >= this.firstIndex();
  }

  /** The application applied entries up to `index`. */
  appliedTo(index: number): void {
    assertInvariant(
      index <= this.#committed,
      () => `applied index ${index} would pass the commit index ${this.#committed}`,
    );
    if (index > this.#applied) this.#applied = index;
  }

  /** Sets the applied index on restart (the application's durable applied point). */
  restoreApplied(index: number): void {
    assertInvariant(
      index >= this.#snapshot.index && index <= this.#committed,
      () =>
        `restored applied index ${index} is outside [${this.#snapshot.index}, ${this.#committed}]`,
    );
    this.#applied = index;
  }

  /**
   * Replaces the whole log with `snapshot` (a follower far behind). The
   * snapshot becomes durable, and `persistedIndex` its index, only when
   * storage reports it; until then nothing past the old commit counts as durable.
   */
  restore(snapshot: SnapshotMeta): void {
    assertInvariant(
      snapshot.index > this.#committed && snapshot.index > this.#snapshot.index,
      () =>
        `snapshot ${snapshot.index} does not pass the commit index ${this.#committed} and the held snapshot ${this.#snapshot.index}`,
    );
    this.#snapshot = snapshot;
    this.#entries = [];
    this.#bytes = 0;
    this.#confs = [];
    this.#pendingSnapshot = snapshot;
    this.#persistedIndex = Math.min(this.#persistedIndex, this.#committed);
    this.#unstableFrom = snapshot.index + 1;
  }

  /**
   * Drops entries up to `index` (already applied); the snapshot now names
   * `index`. Returns the new snapshot.
   */
  compact(index: number): SnapshotMeta {
    assertInvariant(
      index <= this.#applied,
      () => `compaction index ${index} passes the applied index ${this.#applied}`,
    );
    if (index <= this.#snapshot.index) return this.#snapshot;
    const snapshot: SnapshotMeta = { index, term: this.termAt(index)!, conf: this.confAt(index) };
    const dropped = index - this.#snapshot.index;
    for (let i = 0; i < dropped; i++) this.#bytes -= entrySizeBytes(this.#entries[i]);
    this.#entries = this.#entries.slice(dropped);
    this.#confs = this.#confs.filter((c) => c.index > index);
    this.#snapshot = snapshot;
    return snapshot;
  }

  /** Membership in force: the last `conf` entry's, else the snapshot's. */
  conf(): ConfState {
    const n = this.#confs.length;
    return n === 0 ? this.#snapshot.conf : this.#confs[n - 1].conf;
  }

  /** Index of the entry that installed the membership in force (snapshot index if none held). */
  confIndex(): number {
    const n = this.#confs.length;
    return n === 0 ? this.#snapshot.index : this.#confs[n - 1].index;
  }

  /** Membership in force at `index` (>= the snapshot index). */
  confAt(index: number): ConfState {
    assertInvariant(
      index >= this.#snapshot.index,
      () => `membership at ${index} is asked for below the snapshot index ${this.#snapshot.index}`,
    );
    let conf = this.#snapshot.conf;
    for (const c of this.#confs) {
      if (c.index > index) break;
      conf = c.conf;
    }
    return conf;
  }

  #truncateFrom(index: number): void {
    const keep = index - this.#snapshot.index - 1;
    for (let i = keep; i < this.#entries.length; i++) {
      this.#bytes -= entrySizeBytes(this.#entries[i]);
    }
    this.#entries.length = index - this.#snapshot.index - 1;
    while (this.#confs.length > 0 && this.#confs[this.#confs.length - 1].index >= index) {
      this.#confs.pop();
    }
    if (this.#unstableFrom > index) this.#unstableFrom = index;
    if (this.#persistedIndex >= index) this.#persistedIndex = index - 1;
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}
