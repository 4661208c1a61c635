/**
 * Epoch snapshots of ships (vere's `image.bin`, possibly gigabytes), in the
 * node's SQLite database (tables `image` and `image_chunk`, schema version
 * 3). They travel as many `imageChunk` commands of at most
 * {@linkcode IMAGE_CHUNK_BYTES} each, every one carrying the SHA-256 of its
 * bytes, and end with an `imageDone` carrying the size and SHA-256 of the
 * whole file, which every node checks against what it stored before it
 * marks the image complete. So an image is committed and replicated with the
 * same durability as the log, never as one huge Raft entry.
 *
 * Invariants (checked when applying, identically on every node):
 * - an image's chunks are contiguous from offset 0; `size` is their total;
 * - a complete image (`sha256` set) never changes;
 * - a chunk already stored with the same bytes is skipped (resumable imports).
 * @module
 */

import { createHash } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { sameBytes } from "./codec.ts";
import { shipKey } from "./ships.ts";

/** Largest chunk of an image in one command. */
export const IMAGE_CHUNK_BYTES = 1024 * 1024;

/** An epoch snapshot as the cluster holds it. */
export interface ImageInfo {
  /** The epoch base N: the snapshot after event N (`.urb/log/0iN/image.bin`). */
  epoch: number;
  /** Bytes stored so far. */
  size: number;
  /** SHA-256 (hex) of the whole file once complete; undefined while chunks arrive. */
  sha256?: string;
}

/** SHA-256 of `data`. */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Prepared statements over the image tables. Writes happen only inside an apply transaction. */
export class ImageTables {
  readonly #get: StatementSync;
  readonly #list: StatementSync;
  readonly #insert: StatementSync;
  readonly #grow: StatementSync;
  readonly #complete: StatementSync;
  readonly #chunk: StatementSync;
  readonly #chunks: StatementSync;
  readonly #insertChunk: StatementSync;
  readonly #deleteImages: StatementSync;
  readonly #deleteChunks: StatementSync;

  /** Prepares the statements. */
  constructor(db: DatabaseSync) {
    this.#get = db.prepare("SELECT epoch, size, sha256 FROM image WHERE ship = ? AND epoch = ?");
    this.#list = db.prepare("SELECT epoch, size, sha256 FROM image WHERE ship = ? ORDER BY epoch");
    this.#insert = db.prepare("INSERT INTO image (ship, epoch, size) VALUES (?, ?, 0)");
    this.#grow = db.prepare("UPDATE image SET size = size + ? WHERE ship = ? AND epoch = ?");
    this.#complete = db.prepare("UPDATE image SET sha256 = ? WHERE ship = ? AND epoch = ?");
    this.#chunk = db.prepare(
      "SELECT data FROM image_chunk WHERE ship = ? AND epoch = ? AND offset = ?",
    );
    this.#chunks = db.prepare(
      "SELECT data FROM image_chunk WHERE ship = ? AND epoch = ? ORDER BY offset",
    );
    this.#insertChunk = db.prepare(
      "INSERT INTO image_chunk (ship, epoch, offset, data) VALUES (?, ?, ?, ?)",
    );
    this.#deleteImages = db.prepare("DELETE FROM image WHERE ship = ?");
    this.#deleteChunks = db.prepare("DELETE FROM image_chunk WHERE ship = ?");
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
    return row === undefined ? undefined : row.data as Uint8Array;
  }

  /**
   * Applies one chunk: returns undefined when stored or already held with
   * the same bytes, else the reason it is refused.
   */
  applyChunk(
    ship: bigint,
    epoch: number,
    offset: number,
    checksum: Uint8Array,
    data: Uint8Array,
  ): string | undefined {
    if (data.length === 0 || data.length > IMAGE_CHUNK_BYTES) {
      return `an image chunk holds 1 to ${IMAGE_CHUNK_BYTES} bytes, not ${data.length}`;
    }
    if (!sameBytes(sha256(data), checksum)) {
      return `image chunk at offset ${offset} of epoch ${epoch} does not match its checksum`;
    }
    const key = shipKey(ship);
    let image = this.get(ship, epoch);
    if (image === undefined) {
      this.#insert.run(key, epoch);
      image = { epoch, size: 0 };
    }
    if (offset < image.size) {
      const stored = this.chunk(ship, epoch, offset);
      if (stored !== undefined && sameBytes(stored, data)) return undefined;
      return `epoch ${epoch}'s image already has other bytes at offset ${offset}`;
    }
    if (image.sha256 !== undefined) return `epoch ${epoch}'s image is complete`;
    if (offset !== image.size) {
      return `epoch ${epoch}'s image has ${image.size} bytes; a chunk at ${offset} would leave a gap`;
    }
    this.#insertChunk.run(key, epoch, offset, data);
    this.#grow.run(data.length, key, epoch);
    return undefined;
  }

  /**
   * Completes an image: its stored size and SHA-256 must be `size` and
   * `checksum`. Returns undefined when complete (now or before), else the reason.
   */
  applyDone(ship: bigint, epoch: number, size: number, checksum: Uint8Array): string | undefined {
    const image = this.get(ship, epoch);
    if (image === undefined) return `epoch ${epoch} has no image chunks`;
    if (image.size !== size) {
      return `epoch ${epoch}'s image has ${image.size} bytes, not the ${size} announced`;
    }
    if (image.sha256 !== undefined) {
      return image.sha256 === hex(checksum)
        ? undefined
        : `epoch ${epoch}'s image is complete with another checksum`;
    }
    const hash = createHash("sha256");
    for (const row of this.#chunks.iterate(shipKey(ship), epoch)) {
      hash.update(row.data as Uint8Array);
    }
    const digest = new Uint8Array(hash.digest());
    if (!sameBytes(digest, checksum)) {
      return `epoch ${epoch}'s image does not match the SHA-256 announced; import it again`;
    }
    this.#complete.run(digest, shipKey(ship), epoch);
    return undefined;
  }

  /** Drops a ship's images (with the ship). */
  deleteShip(ship: bigint): void {
    const key = shipKey(ship);
    this.#deleteChunks.run(key);
    this.#deleteImages.run(key);
  }
}

function toImage(row: Record<string, unknown>): ImageInfo {
  const info: ImageInfo = { epoch: Number(row.epoch), size: Number(row.size) };
  if (row.sha256 !== null && row.sha256 !== undefined) info.sha256 = hex(row.sha256 as Uint8Array);
  return info;
}
