/**
 * The SQL of ships' epoch snapshots: `image` (one row per image: its size so
 * far, and its SHA-256 once complete) and `image_chunk` (its bytes, by
 * offset). Constructed by the store only; the rules of what may be written
 * are in cluster/images.ts, and writes happen only inside
 * `Store.applyTransaction`. A chunk applied from the log keeps its bytes in
 * the log entry that carried it (cluster/storage/entry_payloads.ts).
 * @module
 */

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { shipKey } from "../ships.ts";
import type { ImageInfo, ImageTableWriter } from "../images.ts";
import type { EntryPayloads, PayloadRef } from "./entry_payloads.ts";

const NO_BYTES = new Uint8Array(0);

/** Prepared statements over the image tables of one open database. */
export class ImageTables implements ImageTableWriter {
  readonly #get: StatementSync;
  readonly #list: StatementSync;
  readonly #insert: StatementSync;
  readonly #grow: StatementSync;
  readonly #complete: StatementSync;
  readonly #chunk: StatementSync;
  readonly #chunks: StatementSync;
  readonly #insertChunk: StatementSync;
  readonly #deleteImages: StatementSync;
  readonly #putImage: StatementSync;
  readonly #deleteChunks: StatementSync;
  readonly #deleteImagesBefore: StatementSync;
  readonly #deleteChunksBefore: StatementSync;
  readonly #entriesOf: StatementSync;
  readonly #entriesBefore: StatementSync;
  readonly #deleteEpochChunks: StatementSync;
  readonly #payloads: EntryPayloads;

  /** Prepares the statements (the store calls this once per open). */
  constructor(db: DatabaseSync, payloads: EntryPayloads) {
    this.#payloads = payloads;
    this.#deleteEpochChunks = db.prepare("DELETE FROM image_chunk WHERE ship = ? AND epoch = ?");
    this.#entriesOf = db.prepare(
      "SELECT DISTINCT entry_index FROM image_chunk WHERE ship = ? AND data_at >= 0",
    );
    this.#get = db.prepare("SELECT epoch, size, sha256 FROM image WHERE ship = ? AND epoch = ?");
    this.#list = db.prepare("SELECT epoch, size, sha256 FROM image WHERE ship = ? ORDER BY epoch");
    this.#insert = db.prepare("INSERT INTO image (ship, epoch, size) VALUES (?, ?, 0)");
    this.#grow = db.prepare("UPDATE image SET size = size + ? WHERE ship = ? AND epoch = ?");
    this.#complete = db.prepare("UPDATE image SET sha256 = ? WHERE ship = ? AND epoch = ?");
    this.#chunk = db.prepare(
      "SELECT data, entry_index, data_at, data_len FROM image_chunk WHERE ship = ?1 AND epoch = ?2 AND offset = ?3 AND offset < (SELECT size FROM image WHERE ship = ?1 AND epoch = ?2)",
    );
    this.#chunks = db.prepare(
      "SELECT data, entry_index, data_at, data_len FROM image_chunk WHERE ship = ?1 AND epoch = ?2 AND offset < (SELECT size FROM image WHERE ship = ?1 AND epoch = ?2) ORDER BY offset",
    );
    this.#insertChunk = db.prepare(
      "INSERT OR REPLACE INTO image_chunk (ship, epoch, offset, data, entry_index, data_at, data_len) VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    this.#putImage = db.prepare(
      "INSERT OR REPLACE INTO image (ship, epoch, size, sha256) VALUES (?, ?, ?, ?)",
    );
    this.#deleteImages = db.prepare("DELETE FROM image WHERE ship = ?");
    this.#deleteChunks = db.prepare("DELETE FROM image_chunk WHERE ship = ?");
    this.#entriesBefore = db.prepare(
      "SELECT DISTINCT entry_index FROM image_chunk WHERE ship = ? AND epoch < ? AND data_at >= 0",
    );
    this.#deleteImagesBefore = db.prepare("DELETE FROM image WHERE ship = ? AND epoch < ?");
    this.#deleteChunksBefore = db.prepare("DELETE FROM image_chunk WHERE ship = ? AND epoch < ?");
  }

  /** One image, or undefined. */
  get(ship: bigint, epoch: number): ImageInfo | undefined {
    const row = this.#get.get(shipKey(ship), epoch);
    return row === undefined ? undefined : toImage(row);
  }

  /** A ship's images, by epoch. */
  list(ship: bigint): ImageInfo[] {
    return this.#list.all(shipKey(ship)).map(toImage);
  }

  /** The chunk stored at `offset`, or undefined. */
  chunk(ship: bigint, epoch: number, offset: number): Uint8Array | undefined {
    const row = this.#chunk.get(shipKey(ship), epoch, offset);
    return row === undefined ? undefined : this.#bytesOf(row);
  }

  /** Every chunk of an image, in offset order (one at a time: an image may be gigabytes). */
  *chunks(ship: bigint, epoch: number): Generator<Uint8Array> {
    for (const row of this.#chunks.iterate(shipKey(ship), epoch)) yield this.#bytesOf(row);
  }

  /** Starts an image with no bytes (write). */
  insert(ship: bigint, epoch: number): void {
    // Rows a snapshot staged for this image and never installed may cut it elsewhere.
    this.#deleteEpochChunks.run(shipKey(ship), epoch);
    this.#insert.run(shipKey(ship), epoch);
  }

  /**
   * Stores a chunk at `offset` and grows the image by its length (write).
   * With `from`, the bytes stay in the log entry it points into.
   */
  appendChunk(
    ship: bigint,
    epoch: number,
    offset: number,
    data: Uint8Array,
    from?: PayloadRef,
  ): void {
    const key = shipKey(ship);
    if (from === undefined) this.#insertChunk.run(key, epoch, offset, data, 0, -1, 0);
    else {
      this.#payloads.keep(from.entryIndex);
      this.#insertChunk.run(key, epoch, offset, NO_BYTES, from.entryIndex, from.at, from.length);
    }
    this.#grow.run(data.length, key, epoch);
  }

  /**
   * Stages a chunk of a snapshot being received (write): at or past the
   * image's size, where no reader sees it until the install counts it
   * (cluster/storage/snapshot_stage.ts); the row holds its bytes.
   */
  stageChunk(ship: bigint, epoch: number, offset: number, data: Uint8Array): void {
    this.#insertChunk.run(shipKey(ship), epoch, offset, data, 0, -1, 0);
  }

  #bytesOf(row: Record<string, unknown>): Uint8Array {
    const at = Number(row.data_at);
    if (at < 0) return row.data as Uint8Array;
    return this.#payloads.read({
      entryIndex: Number(row.entry_index),
      at,
      length: Number(row.data_len),
    });
  }

  /** Marks an image complete with the SHA-256 of its bytes (write). */
  complete(ship: bigint, epoch: number, digest: Uint8Array): void {
    this.#complete.run(digest, shipKey(ship), epoch);
  }

  /** Writes an image's row (a snapshot's install; its chunks are written apart). */
  putImage(ship: bigint, image: ImageInfo): void {
    const digest = image.sha256 === undefined ? null : unhex(image.sha256);
    this.#putImage.run(shipKey(ship), image.epoch, image.size, digest);
  }

  /** Drops a ship's images of epochs before `epoch` (write; a chop, whose log starts after it). */
  deleteBefore(ship: bigint, epoch: number): void {
    const key = shipKey(ship);
    this.#payloads.release(
      this.#entriesBefore.all(key, epoch).map((r) => Number(r.entry_index)),
    );
    this.#deleteChunksBefore.run(key, epoch);
    this.#deleteImagesBefore.run(key, epoch);
  }

  /** Drops a ship's images (write; with the ship). */
  deleteShip(ship: bigint): void {
    const key = shipKey(ship);
    this.#payloads.release(this.#entriesOf.all(key).map((r) => Number(r.entry_index)));
    this.#deleteChunks.run(key);
    this.#deleteImages.run(key);
  }
}

function unhex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (pair) => parseInt(pair, 16));
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function toImage(row: Record<string, unknown>): ImageInfo {
  const info: ImageInfo = { epoch: Number(row.epoch), size: Number(row.size) };
  if (row.sha256 !== null && row.sha256 !== undefined) info.sha256 = hex(row.sha256 as Uint8Array);
  return info;
}
