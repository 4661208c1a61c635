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
 *
 * The SQL is in cluster/storage/image_tables.ts; this module holds the rules.
 * @module
 */

import type { PayloadRef } from "./storage/entry_payloads.ts";
import { createHash } from "node:crypto";
import { sameBytes } from "./codec.ts";

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

/** The images as everything but the state machine sees them: read only. */
export interface ImageReader {
  /** One image, or undefined. */
  get(ship: bigint, epoch: number): ImageInfo | undefined;
  /** A ship's images, by epoch. */
  list(ship: bigint): ImageInfo[];
  /** The chunk stored at `offset`, or undefined. */
  chunk(ship: bigint, epoch: number, offset: number): Uint8Array | undefined;
}

/** The image tables as the rules below write them (cluster/storage/image_tables.ts). */
export interface ImageTableWriter extends ImageReader {
  /** Every chunk of an image, in offset order. */
  chunks(ship: bigint, epoch: number): Iterable<Uint8Array>;
  /** Starts an image with no bytes. */
  insert(ship: bigint, epoch: number): void;
  /** Stores a chunk at `offset` and grows the image by its length (`from`: where it lies in the log). */
  appendChunk(
    ship: bigint,
    epoch: number,
    offset: number,
    data: Uint8Array,
    from?: PayloadRef,
  ): void;
  /** Marks an image complete with the SHA-256 of its bytes. */
  complete(ship: bigint, epoch: number, digest: Uint8Array): void;
}

/**
 * Applies one chunk (inside an apply transaction): returns undefined when
 * stored or already held with the same bytes, else the reason it is refused.
 */
export function applyImageChunk(
  tables: ImageTableWriter,
  ship: bigint,
  chunk: { epoch: number; offset: number; sha256: Uint8Array; data: Uint8Array },
  from?: PayloadRef,
): string | undefined {
  const { epoch, offset, data } = chunk;
  if (data.length === 0 || data.length > IMAGE_CHUNK_BYTES) {
    return `an image chunk holds 1 to ${IMAGE_CHUNK_BYTES} bytes, not ${data.length}`;
  }
  if (!sameBytes(sha256(data), chunk.sha256)) {
    return `image chunk at offset ${offset} of epoch ${epoch} does not match its checksum`;
  }
  let image = tables.get(ship, epoch);
  if (image === undefined) {
    tables.insert(ship, epoch);
    image = { epoch, size: 0 };
  }
  if (offset < image.size) {
    const stored = tables.chunk(ship, epoch, offset);
    if (stored !== undefined && sameBytes(stored, data)) return undefined;
    return `epoch ${epoch}'s image already has other bytes at offset ${offset}`;
  }
  if (image.sha256 !== undefined) return `epoch ${epoch}'s image is complete`;
  if (offset !== image.size) {
    return `epoch ${epoch}'s image has ${image.size} bytes; a chunk at ${offset} would leave a gap`;
  }
  tables.appendChunk(ship, epoch, offset, data, from);
  return undefined;
}

/**
 * Completes an image (inside an apply transaction): its stored size and
 * SHA-256 must be `size` and `sha256`. Returns undefined when complete (now
 * or before), else the reason.
 */
export function applyImageDone(
  tables: ImageTableWriter,
  ship: bigint,
  done: { epoch: number; size: number; sha256: Uint8Array },
): string | undefined {
  const { epoch, size } = done;
  const image = tables.get(ship, epoch);
  if (image === undefined) return `epoch ${epoch} has no image chunks`;
  if (image.size !== size) {
    return `epoch ${epoch}'s image has ${image.size} bytes, not the ${size} announced`;
  }
  if (image.sha256 !== undefined) {
    return image.sha256 === hex(done.sha256)
      ? undefined
      : `epoch ${epoch}'s image is complete with another checksum`;
  }
  const hash = createHash("sha256");
  for (const data of tables.chunks(ship, epoch)) hash.update(data);
  const digest = new Uint8Array(hash.digest());
  if (!sameBytes(digest, done.sha256)) {
    return `epoch ${epoch}'s image does not match the SHA-256 announced; import it again`;
  }
  tables.complete(ship, epoch, digest);
  return undefined;
}
