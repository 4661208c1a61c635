/**
 * Events and image chunks stored once: their bytes stay in the log entry
 * that carried them (table `log_entry`), and the applied row (`event`,
 * `image_chunk`) points into it. An entry some row points into is listed in
 * `entry_ref`, and compaction keeps it (cluster/store.ts): after compaction
 * such entries are no longer part of the Raft log (they lie at or below the
 * snapshot index, and a restart does not read them), only of the state.
 *
 * A row installed from a snapshot holds its bytes itself.
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";

/** Where a payload lies: bytes [at, at + length) of entry `entryIndex`'s data. */
export interface PayloadRef {
  /** The entry. */
  readonly entryIndex: number;
  /** Offset in its data. */
  readonly at: number;
  /** Bytes. */
  readonly length: number;
}

/** Thrown when a row points at an entry that is not there (a bug, or a damaged database). */
export class PayloadError extends Error {
  /** Creates the error; `message` names the values. */
  constructor(message: string) {
    super(message);
    this.name = "PayloadError";
  }
}

/** Reads and keeps the log entries that applied rows point into. */
export class EntryPayloads {
  readonly #group: number;
  readonly #data: StatementSync;
  readonly #keep: StatementSync;
  readonly #unref: StatementSync;
  readonly #dropArchived: StatementSync;
  /** The last entry read (rows of one entry are read one after another). */
  #cached: { index: number; data: Uint8Array } | undefined;
  /** The last entry kept (an entry's events are appended one after another: one row for all). */
  #lastKept = 0;

  /** Prepares the statements for group `group`. */
  constructor(db: DatabaseSync, group: number) {
    this.#group = group;
    this.#data = db.prepare("SELECT data FROM log_entry WHERE group_id = ? AND idx = ?");
    this.#keep = db.prepare("INSERT OR IGNORE INTO entry_ref (group_id, idx) VALUES (?, ?)");
    this.#unref = db.prepare("DELETE FROM entry_ref WHERE group_id = ? AND idx = ?");
    // Entries at or below the snapshot index are only state: they go with their rows.
    // Entries after it are still the Raft log: compaction drops them once unreferenced.
    this.#dropArchived = db.prepare(
      "DELETE FROM log_entry WHERE group_id = ?1 AND idx = ?2 AND idx <= (SELECT idx FROM snapshot_meta WHERE group_id = ?1)",
    );
  }

  /**
   * Where `part` (a view into `entry`, the data of entry `entryIndex`) lies;
   * asserts it is one.
   */
  static locate(entryIndex: number, entry: Uint8Array, part: Uint8Array): PayloadRef {
    const at = part.byteOffset - entry.byteOffset;
    if (part.buffer !== entry.buffer || at < 0 || at + part.length > entry.length) {
      throw new PayloadError(
        `a payload of ${part.length} bytes is not a view into entry ${entryIndex}'s ${entry.length} bytes`,
      );
    }
    return { entryIndex, at, length: part.length };
  }

  /** Keeps entry `entryIndex` through compaction (inside an apply transaction). */
  keep(entryIndex: number): void {
    if (entryIndex === this.#lastKept) return;
    this.#keep.run(this.#group, entryIndex);
    this.#lastKept = entryIndex;
  }

  /** The bytes `ref` points at. */
  read(ref: PayloadRef): Uint8Array {
    let cached = this.#cached;
    if (cached?.index !== ref.entryIndex) {
      const row = this.#data.get(this.#group, ref.entryIndex);
      if (row === undefined) {
        throw new PayloadError(
          `log entry ${ref.entryIndex}, which holds applied data, is missing; run 'seguro doctor', then remove this node and join it again`,
        );
      }
      cached = { index: ref.entryIndex, data: row.data as Uint8Array };
      this.#cached = cached;
    }
    if (ref.at + ref.length > cached.data.length) {
      throw new PayloadError(
        `bytes ${ref.at}..${
          ref.at + ref.length
        } are past the ${cached.data.length} bytes of entry ${ref.entryIndex}`,
      );
    }
    return cached.data.subarray(ref.at, ref.at + ref.length);
  }

  /** No row points into these entries any more (their ship went): drop them when only state. */
  release(entryIndexes: Iterable<number>): void {
    for (const idx of entryIndexes) {
      if (idx === this.#lastKept) this.#lastKept = 0;
      this.#unref.run(this.#group, idx);
      this.#dropArchived.run(this.#group, idx);
    }
  }
}
