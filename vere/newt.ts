/**
 * Vere's "newt" framing (pkg/vere/newt.c), which Seguro's runtime socket
 * speaks so that vere's own C code can talk to it. A frame is one byte `0x00`
 * (a version tag), a u32 little-endian length `L >= 1`, then `L` bytes: the
 * jam of one noun.
 *
 * ```
 * 00 | 02 00 00 00 | 31 12      the frame of [1 2]
 * ```
 *
 * @example
 * ```ts
 *
 * import { cell, cue } from "./noun.ts";
 * const decoder = new NewtDecoder();
 * decoder.push(encodeFrame(cell(1n, 2n))); // Uint8Array [0, 2, 0, 0, 0, 0x31, 0x12]
 * cue(decoder.next()!); // [1 2]
 * decoder.next(); // undefined: no further complete frame
 * ```
 * @module
 */

import { jam, type Noun } from "./noun.ts";

/** Bytes before a frame's body: the version tag and the u32 length. */
export const NEWT_HEADER_BYTES = 5;

/** The only version tag vere writes or accepts. */
export const NEWT_VERSION = 0x00;

/** The largest body the u32 length field can express. */
export const NEWT_FRAME_BYTES_LIMIT = 0xffff_ffff;

/** Default upper bound on one frame's body in {@linkcode NewtDecoder}: 64 MiB. */
export const NEWT_FRAME_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;

/** Thrown when a byte stream breaks the newt framing. The stream cannot be resynchronized. */
export class NewtError extends Error {
  /** Makes a NewtError with a complete-sentence message. */
  constructor(message: string) {
    super(message);
    this.name = "NewtError";
  }
}

/** The newt frame carrying the jam of `noun`. */
export function encodeFrame(noun: Noun): Uint8Array {
  return encodeFrameBytes(jam(noun));
}

/**
 * The newt frame carrying `jamBytes` as its body (copied once, after the
 * header). Throws {@linkcode NewtError} when the body is empty or longer than
 * a u32 length can say.
 */
export function encodeFrameBytes(jamBytes: Uint8Array): Uint8Array {
  const bodyBytes = jamBytes.length;
  if (bodyBytes === 0) {
    throw new NewtError("A newt frame cannot carry an empty body: vere rejects length 0");
  }
  if (bodyBytes > NEWT_FRAME_BYTES_LIMIT) {
    throw new NewtError(
      `A newt frame body of ${bodyBytes} bytes does not fit the u32 length field`,
    );
  }
  const frame = new Uint8Array(NEWT_HEADER_BYTES + bodyBytes);
  frame[0] = NEWT_VERSION;
  // DataView writes the length little-endian whatever the host's byte order.
  new DataView(frame.buffer).setUint32(1, bodyBytes, true);
  frame.set(jamBytes, NEWT_HEADER_BYTES);
  return frame;
}

/** Options of {@linkcode NewtDecoder}. */
export interface NewtDecoderOptions {
  /**
   * Largest body accepted, in bytes (1 to 2^32 - 1); a header announcing more
   * is an error. Default {@linkcode NEWT_FRAME_BYTES_MAX_DEFAULT}.
   */
  frameBytesMax?: number;
}

/** A body given as parts ({@linkcode NewtDecoder.nextParts}) as one array: a copy only when there are several. */
export function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A streaming newt parser: {@linkcode NewtDecoder.push} the bytes as they
 * arrive, in chunks of any size (one byte at a time works), then call
 * {@linkcode NewtDecoder.next} until it returns `undefined`.
 *
 * Memory: the decoder holds the pushed chunks that are not yet returned, by
 * reference, and allocates a frame's buffer only when the whole frame has
 * arrived, so a header announcing a large frame costs nothing until its bytes
 * do. A frame lying inside one pushed chunk is returned as a `subarray` of it
 * (zero copy); a frame spread over several chunks is copied once.
 *
 * Ownership: `push` does not copy. The caller must not modify a chunk after
 * pushing it (pass fresh buffers, as `ReadableStream` readers do), and a
 * returned frame may share memory with a pushed chunk.
 *
 * Errors: a bad version byte, a zero length or a length above
 * `frameBytesMax` makes `next` throw {@linkcode NewtError}. The stream cannot
 * be resynchronized after that, so the decoder is then unusable: every later
 * `push` or `next` throws too. The connection must be closed.
 *
 * A stream cut in the middle of a frame just yields no frame; see
 * {@linkcode NewtDecoder.bufferedBytes} to tell a clean end from a truncated one.
 */
export class NewtDecoder {
  readonly #frameBytesMax: number;
  /** Pushed chunks not yet fully consumed; those before #chunkIndex are done. */
  #chunks: Uint8Array[] = [];
  #chunkIndex = 0;
  /** Bytes of #chunks[#chunkIndex] already consumed. */
  #chunkOffset = 0;
  /** Bytes pushed and not yet consumed. */
  #buffered = 0;
  /** Body length of the frame whose header was consumed, or -1 while awaiting a header. */
  #bodyBytes = -1;
  /** The first error, rethrown on every later call. */
  #failure: NewtError | undefined;

  /** Makes a decoder awaiting the first frame's header. */
  constructor(options: NewtDecoderOptions = {}) {
    const max = options.frameBytesMax ?? NEWT_FRAME_BYTES_MAX_DEFAULT;
    if (!Number.isSafeInteger(max) || max < 1 || max > NEWT_FRAME_BYTES_LIMIT) {
      throw new RangeError(
        `frameBytesMax must be an integer from 1 to ${NEWT_FRAME_BYTES_LIMIT} (got ${max})`,
      );
    }
    this.#frameBytesMax = max;
  }

  /**
   * Bytes pushed but not yet returned in a frame, headers included. After the
   * peer closes the stream, a non-zero value means its last frame was cut short.
   */
  get bufferedBytes(): number {
    return this.#bodyBytes < 0 ? this.#buffered : this.#buffered + NEWT_HEADER_BYTES;
  }

  /** Appends bytes from the stream, without copying them (see the class notes on ownership). */
  push(chunk: Uint8Array): void {
    this.#checkUsable();
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /**
   * The body (the jam bytes) of the next complete frame, or `undefined` when
   * the bytes pushed so far do not complete one. Throws {@linkcode NewtError}
   * on broken framing, after which the decoder is unusable.
   */
  next(): Uint8Array | undefined {
    const parts = this.nextParts();
    return parts === undefined ? undefined : joinParts(parts);
  }

  /**
   * Like {@linkcode next}, but the body comes as the pushed chunks' views
   * that hold it, in order, never copied: a caller that copies a large body
   * anyway (in slices) need not have it joined first.
   */
  nextParts(): Uint8Array[] | undefined {
    this.#checkUsable();
    if (this.#bodyBytes < 0) {
      if (this.#buffered === 0) return undefined;
      // Reject a bad version byte at once rather than after four more bytes.
      const version = this.#peekByte();
      if (version !== NEWT_VERSION) {
        this.#fail(
          `The frame starts with byte 0x${hex2(version)}, not the newt version byte 0x00`,
        );
      }
      if (this.#buffered < NEWT_HEADER_BYTES) return undefined;
      this.#takeByte();
      // Little-endian u32; `>>> 0` keeps the top byte's value unsigned.
      const b0 = this.#takeByte();
      const b1 = this.#takeByte();
      const b2 = this.#takeByte();
      const b3 = this.#takeByte();
      const bodyBytes = (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)) >>> 0;
      if (bodyBytes === 0) this.#fail("The frame announces a body of 0 bytes, which vere rejects");
      if (bodyBytes > this.#frameBytesMax) {
        this.#fail(
          `The frame announces a body of ${bodyBytes} bytes, above the limit of ${this.#frameBytesMax} bytes`,
        );
      }
      this.#bodyBytes = bodyBytes;
    }
    if (this.#buffered < this.#bodyBytes) return undefined;
    const body = this.#takeParts(this.#bodyBytes);
    this.#bodyBytes = -1;
    return body;
  }

  #checkUsable(): void {
    if (this.#failure !== undefined) {
      throw new NewtError(
        `The decoder is unusable after an earlier framing error (${this.#failure.message})`,
      );
    }
  }

  #fail(message: string): never {
    this.#failure = new NewtError(message);
    // Drop the buffered bytes: nothing will read them again.
    this.#chunks = [];
    this.#chunkIndex = 0;
    this.#chunkOffset = 0;
    this.#buffered = 0;
    throw this.#failure;
  }

  /** The next unconsumed byte; there must be one. */
  #peekByte(): number {
    return this.#chunks[this.#chunkIndex][this.#chunkOffset];
  }

  /** Consumes one byte; there must be one. */
  #takeByte(): number {
    const chunk = this.#chunks[this.#chunkIndex];
    const byte = chunk[this.#chunkOffset];
    this.#chunkOffset++;
    this.#buffered--;
    if (this.#chunkOffset === chunk.length) this.#dropChunk();
    return byte;
  }

  /** Consumes `count` (>= 1, <= #buffered) bytes: a subarray if one chunk holds them, else one copy. */
  #takeParts(count: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    let filled = 0;
    while (filled < count) {
      const chunk = this.#chunks[this.#chunkIndex];
      const n = Math.min(chunk.length - this.#chunkOffset, count - filled);
      out.push(chunk.subarray(this.#chunkOffset, this.#chunkOffset + n));
      filled += n;
      this.#chunkOffset += n;
      this.#buffered -= n;
      if (this.#chunkOffset === chunk.length) this.#dropChunk();
    }
    return out;
  }

  /** Moves past the fully consumed current chunk, compacting the queue now and then. */
  #dropChunk(): void {
    // Release the chunk now: a consumed prefix must not pin large buffers.
    this.#chunks[this.#chunkIndex] = EMPTY;
    this.#chunkIndex++;
    this.#chunkOffset = 0;
    if (this.#chunkIndex === this.#chunks.length) {
      this.#chunks = [];
      this.#chunkIndex = 0;
    } else if (this.#chunkIndex >= 1024 && this.#chunkIndex * 2 >= this.#chunks.length) {
      // Amortized O(1): splice only once the consumed prefix is at least half the queue.
      this.#chunks = this.#chunks.slice(this.#chunkIndex);
      this.#chunkIndex = 0;
    }
  }
}

const EMPTY = new Uint8Array(0);

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}
