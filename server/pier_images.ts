/**
 * Moving epoch snapshots (an `image.bin`, or north/south files in a
 * container: vere/pier_layout.ts) between a pier and the cluster:
 * streamed in checksummed chunks (cluster/images.ts), resumable, and never
 * held whole in memory. Used by server/pier_import.ts and pier_export.ts.
 * @module
 */

import { createHash } from "node:crypto";
import type { ClusterClient, ShipClient } from "../cluster/api.ts";
import { IMAGE_CHUNK_BYTES, type ImageInfo, sha256 } from "../cluster/images.ts";
import { SnapshotReader, type SnapshotSource } from "../vere/pier_layout.ts";
import { NodeError } from "./errors.ts";

/** How often an image upload reports its bytes, at most. */
const IMAGE_PROGRESS_MS = 1000;

/** How far an image upload has come. */
export type ImageProgress =
  /** About once a second while an image is sent: `bytes` of its `size` read. */
  | { kind: "imageBytes"; epoch: number; bytes: number; size: number }
  /** An image sent whole: the cluster stored it and checked its SHA-256. */
  | { kind: "imageStored"; epoch: number; size: number; seconds: number };

/** Options of {@linkcode importImages}. */
export interface ImportImagesOptions {
  /** The pier's snapshots (vere/pier_layout.ts `pierSnapshots`). */
  snapshots: readonly SnapshotSource[];
  /** The images the cluster holds of the ship already (complete or in part). */
  held: readonly ImageInfo[];
  /** Told how the upload goes. */
  progress?: (p: ImageProgress) => void;
  /** Told of every chunk the cluster stored: its bytes (for a caller that counts or retries). */
  stored?: (bytes: number) => void;
}

/** What {@linkcode importImages} needs of a client: its writes. */
export interface ImageWriter {
  /** The ship operations; only `write` is used. */
  readonly ships: Pick<ShipClient, "write">;
}

/**
 * Sends every snapshot the cluster does not hold completely yet,
 * resuming after the bytes it holds. Each file is read once: the part the
 * cluster holds is only hashed, the rest is hashed and sent. Returns the
 * bytes sent; a pier that does not match what the cluster holds is a NodeError.
 */
export async function importImages(
  client: ImageWriter,
  ship: bigint,
  options: ImportImagesOptions,
): Promise<number> {
  let sent = 0;
  for (const snapshot of options.snapshots) {
    const epoch = { base: snapshot.epoch };
    const path = snapshot.where;
    const have = options.held.find((i) => i.epoch === epoch.base);
    const file = new SnapshotReader(snapshot);
    const whole = createHash("sha256");
    const started = performance.now();
    let shown = started;
    let size: number;
    try {
      size = file.size;
      const resumeAt = have?.sha256 !== undefined ? size : have?.size ?? 0;
      if (resumeAt > size) {
        throw new NodeError(
          `the cluster holds more of epoch ${epoch.base}'s image than ${path} has`,
        );
      }
      const buf = new Uint8Array(IMAGE_CHUNK_BYTES);
      for (let offset = 0; offset < size;) {
        // Chunks on the cluster start at multiples of IMAGE_CHUNK_BYTES: so do these.
        const n = file.readSync(buf.subarray(0, Math.min(buf.length, size - offset)));
        if (n === 0) throw new NodeError(`${path} shrank while it was read; stop vere and retry`);
        const data = buf.subarray(0, n);
        whole.update(data);
        if (offset >= resumeAt) {
          // write() encodes (copies) `data` before the await: the buffer may be reused after.
          await client.ships.write({
            kind: "imageChunk",
            ship,
            epoch: epoch.base,
            offset,
            sha256: sha256(data),
            data,
          });
          sent += n;
          options.stored?.(n);
          if (performance.now() - shown > IMAGE_PROGRESS_MS) {
            shown = performance.now();
            options.progress?.({ kind: "imageBytes", epoch: epoch.base, bytes: offset + n, size });
          }
        }
        offset += n;
      }
    } finally {
      file.close();
    }
    const digest = new Uint8Array(whole.digest());
    if (have?.sha256 !== undefined) {
      if (have.sha256 !== Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("")) {
        throw new NodeError(
          `the cluster holds another image for epoch ${epoch.base} (SHA-256 ${
            have.sha256.slice(0, 16)
          }...); this pier does not match it`,
        );
      }
      continue;
    }
    await client.ships.write({ kind: "imageDone", ship, epoch: epoch.base, size, sha256: digest });
    options.progress?.({
      kind: "imageStored",
      epoch: epoch.base,
      size,
      seconds: (performance.now() - started) / 1000,
    });
  }
  return sent;
}

/** What {@linkcode downloadImage} downloads, and where to. */
export interface ImageDownload {
  /** The image, complete on the cluster (`sha256` set). */
  image: ImageInfo;
  /** The file to write: a new one. */
  path: string;
}

/**
 * Writes the complete image `download.image` of `ship` from the cluster to
 * `download.path` (a new file), checking its SHA-256 against the one the
 * cluster recorded; fsynced. A missing chunk or another hash is a NodeError.
 */
export async function downloadImage(
  client: ClusterClient,
  ship: bigint,
  download: ImageDownload,
): Promise<void> {
  const { image, path } = download;
  const hash = createHash("sha256");
  const file = Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
  try {
    for (let offset = 0; offset < image.size;) {
      const data = await client.ships.imageChunk(ship, image.epoch, offset);
      if (data.length === 0) {
        throw new NodeError(`the node has no chunk at ${offset} of epoch ${image.epoch}'s image`);
      }
      hash.update(data);
      for (let w = 0; w < data.length;) w += file.writeSync(data.subarray(w));
      offset += data.length;
    }
    file.syncSync();
  } finally {
    file.close();
  }
  const digest = hash.digest("hex");
  if (digest !== image.sha256) {
    throw new NodeError(
      `epoch ${image.epoch}'s image read back with SHA-256 ${digest.slice(0, 16)}..., not the ${
        image.sha256?.slice(0, 16)
      }... recorded; run 'seguro log verify' and retry`,
    );
  }
}
