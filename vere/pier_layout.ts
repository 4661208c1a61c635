/**
 * The three layouts of a pier's log that vere has written, and the snapshot
 * files of each (docs/pier-formats.md):
 *
 * | layout    | vere   | log                                   | snapshot                          |
 * | --------- | ------ | ------------------------------------- | --------------------------------- |
 * | `log1`    | < 3.0  | `.urb/log/data.mdb` (META v1, EVENTS) | `.urb/chk/{north,south}.bin`      |
 * | `epochs1` | 3.x    | `.urb/log/0i<N>/`, `epoc.txt` = 1     | `0i<N>/{north,south}.bin`, N > 0  |
 * | `epochs2` | 4.x    | `.urb/log/0i<N>/`, `epoc.txt` = 2     | `0i<N>/image.bin`, N > 0          |
 *
 * On the cluster a snapshot is one image (bytes) per epoch. An epochs-2
 * snapshot is its `image.bin` as it is. A north/south snapshot travels in a
 * small container ({@linkcode encodeSnapshotHeader}): a 24-byte header (the
 * magic `SGNS`, the layout, both files' sizes), then `north.bin`, then
 * `south.bin`. An `image.bin` starts with its loom version (a small number),
 * never with `SGNS`, so an image says what it is.
 * @module
 */

import { join } from "node:path";
import { Env } from "./lmdb.ts";
import { exists, listEpochs, logDir, PierError, readMeta } from "./pier.ts";

/** A layout of a pier's log; the same union as cluster/machine.ts `ShipLayout`. */
export type PierLayout = "log1" | "epochs1" | "epochs2";

/** Every layout, oldest first. */
export const PIER_LAYOUTS: readonly PierLayout[] = ["log1", "epochs1", "epochs2"];

/** The vere versions that write (and boot) each layout, for messages. */
export const LAYOUT_VERE: Readonly<Record<PierLayout, string>> = {
  log1: "vere 1.x (before 3.0)",
  epochs1: "vere 3.x",
  epochs2: "vere 4.x",
};

/** `epoc.txt` of each epochs layout. */
export const EPOCH_FORMAT: Readonly<Record<"epochs1" | "epochs2", number>> = {
  epochs1: 1,
  epochs2: 2,
};

/** META `version` of a log-1 pier (`U3D_VER1`). */
export const LOG1_VERSION = 1;

/**
 * Which layout the pier at `pierDir` has: META `version` 1 is log 1;
 * version 3 with epochs is epochs 1 or 2 by the newest epoch's `epoc.txt`.
 * Anything else is a PierError naming what was found.
 */
export function detectLayout(pierDir: string): PierLayout {
  const env = Env.open(logDir(pierDir), { readOnly: true });
  let version: number;
  try {
    version = readMeta(env).version;
  } finally {
    env.close();
  }
  if (version === LOG1_VERSION) return "log1";
  const epochs = listEpochs(pierDir);
  if (epochs.length === 0) {
    throw new PierError(
      `${pierDir} has a log of version ${version} but no epoch (.urb/log/0i<N>); it is not a pier vere wrote`,
    );
  }
  const newest = epochs[epochs.length - 1];
  let text: string;
  try {
    text = Deno.readTextFileSync(join(newest.dir, "epoc.txt")).trim();
  } catch {
    throw new PierError(
      `${newest.dir} has no epoc.txt; vere deletes such a half-made epoch on start: start the ship once with its vere, then import`,
    );
  }
  if (text === "1") return "epochs1";
  if (text === "2") return "epochs2";
  throw new PierError(
    `${newest.dir}/epoc.txt says '${
      text.slice(0, 20)
    }', an epoch format newer than 2 (vere 4.x); update Seguro`,
  );
}

/** The files of one north/south snapshot. */
export interface NorthSouth {
  /** `north.bin`. */
  north: string;
  /** `south.bin`. */
  south: string;
}

/** The north/south files in `dir` (an epoch, or `.urb/chk`), or undefined unless both are there. */
export function northSouthIn(dir: string): NorthSouth | undefined {
  const north = join(dir, "north.bin");
  const south = join(dir, "south.bin");
  try {
    if (!Deno.statSync(north).isFile || !Deno.statSync(south).isFile) return undefined;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
  return { north, south };
}

/** `.urb/chk`: where a running vere keeps its live snapshot. */
export function checkpointDir(pierDir: string): string {
  return join(pierDir, ".urb", "chk");
}

const MAGIC = [0x53, 0x47, 0x4e, 0x53]; // "SGNS"
/** Bytes of a north/south container's header. */
export const SNAPSHOT_HEADER_BYTES = 24;
const LAYOUT_CODE: Readonly<Record<"log1" | "epochs1", number>> = { log1: 1, epochs1: 2 };

/** What a container header says. */
export interface SnapshotHeader {
  /** The layout whose vere wrote the snapshot (their looms differ). */
  layout: "log1" | "epochs1";
  /** Bytes of `north.bin`, which follows the header. */
  northBytes: number;
  /** Bytes of `south.bin`, which follows `north.bin`. */
  southBytes: number;
}

/** The 24-byte header of a north/south container. */
export function encodeSnapshotHeader(h: SnapshotHeader): Uint8Array {
  for (const n of [h.northBytes, h.southBytes]) {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new PierError(`A snapshot file of ${n} bytes cannot be sent; it is damaged`);
    }
  }
  const out = new Uint8Array(SNAPSHOT_HEADER_BYTES);
  out.set(MAGIC);
  out[4] = LAYOUT_CODE[h.layout];
  const view = new DataView(out.buffer);
  view.setBigUint64(8, BigInt(h.northBytes), true);
  view.setBigUint64(16, BigInt(h.southBytes), true);
  return out;
}

/**
 * The header of an image that is a north/south container, or undefined when
 * the image is an epochs-2 `image.bin` (no `SGNS` magic). A container whose
 * header is damaged is a PierError.
 */
export function decodeSnapshotHeader(
  first: Uint8Array,
  imageBytes: number,
): SnapshotHeader | undefined {
  if (first.length < 4 || MAGIC.some((b, i) => first[i] !== b)) return undefined;
  if (first.length < SNAPSHOT_HEADER_BYTES) {
    throw new PierError(`A snapshot container of ${first.length} bytes is shorter than its header`);
  }
  const layout = first[4] === 1 ? "log1" : first[4] === 2 ? "epochs1" : undefined;
  const view = new DataView(first.buffer, first.byteOffset, SNAPSHOT_HEADER_BYTES);
  const northBytes = Number(view.getBigUint64(8, true));
  const southBytes = Number(view.getBigUint64(16, true));
  if (layout === undefined || SNAPSHOT_HEADER_BYTES + northBytes + southBytes !== imageBytes) {
    throw new PierError(
      `A snapshot container's header (layout ${
        first[4]
      }, ${northBytes} + ${southBytes} bytes) does not match its ${imageBytes} bytes; it is damaged`,
    );
  }
  return { layout, northBytes, southBytes };
}

/**
 * The layout a snapshot image belongs to: a container's own layout, else
 * epochs 2 (an `image.bin`). `first` is at least the image's first 24 bytes.
 */
export function snapshotLayout(first: Uint8Array, imageBytes: number): PierLayout {
  return decodeSnapshotHeader(first, imageBytes)?.layout ?? "epochs2";
}

/**
 * Splits the container at `path` into `north.bin` and `south.bin` in `dir`
 * (which must not hold them yet), fsynced, and removes the container.
 */
export function splitSnapshot(path: string, dir: string): NorthSouth {
  const file = Deno.openSync(path, { read: true });
  try {
    const size = file.statSync().size;
    const head = new Uint8Array(SNAPSHOT_HEADER_BYTES);
    readFully(file, head);
    const header = decodeSnapshotHeader(head, size);
    if (header === undefined) {
      throw new PierError(`${path} is an image.bin, not a north/south snapshot`);
    }
    const out = { north: join(dir, "north.bin"), south: join(dir, "south.bin") };
    copyRange(file, out.north, header.northBytes);
    copyRange(file, out.south, header.southBytes);
    Deno.removeSync(path);
    return out;
  } finally {
    file.close();
  }
}

const COPY_BYTES = 1 << 20;

function readFully(file: Deno.FsFile, into: Uint8Array): void {
  let got = 0;
  while (got < into.length) {
    const n = file.readSync(into.subarray(got));
    if (n === null) throw new PierError("A snapshot container ends early; it is damaged");
    got += n;
  }
}

function copyRange(from: Deno.FsFile, to: string, bytes: number): void {
  const out = Deno.openSync(to, { write: true, createNew: true, mode: 0o600 });
  try {
    const buf = new Uint8Array(COPY_BYTES);
    for (let left = bytes; left > 0;) {
      const chunk = buf.subarray(0, Math.min(left, COPY_BYTES));
      readFully(from, chunk);
      let written = 0;
      while (written < chunk.length) written += out.writeSync(chunk.subarray(written));
      left -= chunk.length;
    }
    out.syncSync();
  } finally {
    out.close();
  }
}

/** Bytes of a loom page in north/south snapshots (vere 1.x and 3.x: 4,096 words). */
const LOOM_PAGE_BYTES = 16 * 1024;

/**
 * The event a north/south snapshot holds the state after: vere's `u3A->eve_d`,
 * a u64 24 bytes before the end of the loom's top page, which is the first
 * page of `south.bin` (the last word of the loom is its version). Checked with
 * the real vere 1.16 (loom version 1) and 3.0 (version 3).
 */
export function snapshotEvent(south: string): number {
  const page = new Uint8Array(LOOM_PAGE_BYTES);
  const file = Deno.openSync(south, { read: true });
  try {
    readFully(file, page);
  } finally {
    file.close();
  }
  const view = new DataView(page.buffer);
  const loom = view.getUint32(LOOM_PAGE_BYTES - 4, true);
  const eve = view.getBigUint64(LOOM_PAGE_BYTES - 24, true);
  if (loom < 1 || loom > 4 || eve > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new PierError(
      `${south} is not a vere snapshot Seguro knows (loom version ${loom}, event ${eve}); it may be damaged`,
    );
  }
  return Number(eve);
}

/**
 * One snapshot of a pier as the cluster stores it: the image of `epoch`,
 * whose bytes are `parts` in order (bytes given, or whole files).
 */
export interface SnapshotSource {
  /** The event the snapshot holds the state after (the epoch's base). */
  epoch: number;
  /** The image's bytes: a container header and files, or an `image.bin`. */
  parts: readonly (Uint8Array | string)[];
  /** Where it is, for messages. */
  where: string;
}

/**
 * The snapshots of a pier that go to the cluster, oldest first: each epoch's
 * (`image.bin`, or north/south in a container), or for a log-1 pier its one
 * snapshot in `.urb/chk`, at the event it holds.
 */
export function pierSnapshots(pierDir: string, layout: PierLayout): SnapshotSource[] {
  if (layout === "log1") {
    const chk = northSouthIn(checkpointDir(pierDir));
    if (chk === undefined) return [];
    return [northSouthSource(snapshotEvent(chk.south), chk, "log1", checkpointDir(pierDir))];
  }
  const out: SnapshotSource[] = [];
  for (const epoch of listEpochs(pierDir)) {
    if (layout === "epochs2") {
      const image = join(epoch.dir, "image.bin");
      if (epoch.hasImage && exists(image)) {
        out.push({ epoch: epoch.base, parts: [image], where: image });
      }
      continue;
    }
    const ns = northSouthIn(epoch.dir);
    if (ns !== undefined) out.push(northSouthSource(epoch.base, ns, "epochs1", epoch.dir));
  }
  return out;
}

function northSouthSource(
  epoch: number,
  ns: NorthSouth,
  layout: "log1" | "epochs1",
  where: string,
): SnapshotSource {
  const header = encodeSnapshotHeader({
    layout,
    northBytes: Deno.statSync(ns.north).size,
    southBytes: Deno.statSync(ns.south).size,
  });
  return { epoch, parts: [header, ns.north, ns.south], where: `${where}/{north,south}.bin` };
}

/** Reads a {@linkcode SnapshotSource}'s bytes in order, one part after another. */
export class SnapshotReader {
  /** Total bytes of the image. */
  readonly size: number;
  readonly #parts: readonly (Uint8Array | string)[];
  #index = 0;
  #offset = 0;
  #file: Deno.FsFile | undefined;

  /** Opens nothing yet; sizes the parts. */
  constructor(source: SnapshotSource) {
    this.#parts = source.parts;
    this.size = source.parts.reduce(
      (sum, p) => sum + (typeof p === "string" ? Deno.statSync(p).size : p.length),
      0,
    );
  }

  /** Fills as much of `buf` as the image has left; returns the bytes read (0 at the end). */
  readSync(buf: Uint8Array): number {
    let got = 0;
    while (got < buf.length && this.#index < this.#parts.length) {
      const part = this.#parts[this.#index];
      if (typeof part === "string") {
        this.#file ??= Deno.openSync(part, { read: true });
        const n = this.#file.readSync(buf.subarray(got));
        if (n === null || n === 0) this.#nextPart();
        else got += n;
        continue;
      }
      const n = Math.min(buf.length - got, part.length - this.#offset);
      buf.set(part.subarray(this.#offset, this.#offset + n), got);
      got += n;
      this.#offset += n;
      if (this.#offset === part.length) this.#nextPart();
    }
    return got;
  }

  #nextPart(): void {
    this.#file?.close();
    this.#file = undefined;
    this.#index++;
    this.#offset = 0;
  }

  /** Closes the open file, if any. */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}
