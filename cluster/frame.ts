/**
 * Length-prefixed frames over one byte stream (TLS, or plain TCP with
 * `--insecure-plaintext`; cluster/byte_stream.ts), with a bounded send queue.
 *
 * ```
 * frame := length:u32 (big-endian; bytes after it, >= 1) type:u8 body
 * ```
 * A frame longer than the connection's current limit (small until the peer
 * has authenticated) closes the connection. Writes are queued, coalesced
 * into large socket writes, and bounded: when the queue is full, `send`
 * refuses (Raft messages are dropped and retried by the core).
 * @module
 */

import { WireError } from "./codec.ts";
import type { ByteStream } from "./byte_stream.ts";

/** What a frame carries. */
export const FrameType = {
  /** First frame of each side: who it is (cluster/handshake.ts). */
  hello: 1,
  /** Proof of the cluster secret (cluster/handshake.ts). */
  auth: 2,
  /** One Raft message (cluster/wire.ts). */
  raft: 3,
  /** A client request (cluster/api.ts). */
  request: 4,
  /** The answer to a request (cluster/api.ts). */
  response: 5,
  /** Why the sender is closing the connection (UTF-8 text). */
  goodbye: 6,
  /**
   * To a peer, after authentication: "you were removed from the cluster"
   * (empty body); the sender has applied that peer's committed removal.
   */
  removed: 7,
} as const;

/** Largest frame after authentication: room for a multi-megabyte event and headers. */
export const FRAME_BYTES_MAX = 64 * 1024 * 1024;
/** Largest frame before authentication: a stranger cannot make a node allocate much. */
export const HANDSHAKE_FRAME_BYTES_MAX = 4096;
/** Default bound on bytes waiting to be written on one connection. */
export const SEND_QUEUE_BYTES_MAX = 64 * 1024 * 1024;
/** Socket writes gather queued frames up to this size. */
const WRITE_BATCH_BYTES = 256 * 1024;
const READ_CHUNK_BYTES = 64 * 1024;

/** One received frame. */
export interface Frame {
  /** A {@linkcode FrameType} value. */
  type: number;
  /** The bytes after the type. */
  body: Uint8Array;
}

/** Encodes one frame: length, type, body. */
export function encodeFrame(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + body.length);
  new DataView(out.buffer).setUint32(0, 1 + body.length);
  out[4] = type;
  out.set(body, 5);
  return out;
}

/** A connection that reads and writes frames. */
export class FrameConn {
  /** The underlying byte stream. */
  readonly stream: ByteStream;
  /** Frames larger than this close the connection; raise it after authentication. */
  frameBytesMax = HANDSHAKE_FRAME_BYTES_MAX;
  /** Bytes queued for writing, bounded by `queueBytesMax`. */
  queuedBytes = 0;
  readonly #queueBytesMax: number;
  /** Frames waiting: their types and bodies (the header is written at the copy into a write). */
  #types: number[] = [];
  #bodies: Uint8Array[] = [];
  #writing = false;
  #closed = false;
  #buf = new Uint8Array(READ_CHUNK_BYTES);
  #start = 0;
  #end = 0;
  #onClose: (() => void)[] = [];
  #drained: (() => void)[] = [];

  /** Reads and writes frames on `stream`. */
  constructor(stream: ByteStream, queueBytesMax = SEND_QUEUE_BYTES_MAX) {
    this.stream = stream;
    this.#queueBytesMax = queueBytesMax;
  }

  /** True once closed by either side. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Remote address as host:port. */
  get remote(): string {
    return this.stream.remote;
  }

  /** Calls `f` once when the connection closes. */
  onClose(f: () => void): void {
    if (this.#closed) f();
    else this.#onClose.push(f);
  }

  /**
   * Queues a frame. Returns false (and queues nothing) when the queue is
   * full or the connection is closed.
   */
  send(type: number, body: Uint8Array): boolean {
    if (this.#closed) return false;
    const bytes = 5 + body.length;
    if (this.queuedBytes + bytes > this.#queueBytesMax) return false;
    this.#types.push(type);
    this.#bodies.push(body);
    this.queuedBytes += bytes;
    if (!this.#writing) {
      // Written after the current task: every frame it sends (one Ready's to this
      // peer) goes out in one write.
      this.#writing = true;
      queueMicrotask(() => this.#drain());
    }
    return true;
  }

  async #drain(): Promise<void> {
    try {
      const types = this.#types;
      const bodies = this.#bodies;
      while (bodies.length > 0 && !this.#closed) {
        // Gather small frames into one write; send a big one alone.
        let take = 0;
        let size = 0;
        while (
          take < bodies.length &&
          (take === 0 || size + 5 + bodies[take].length <= WRITE_BATCH_BYTES)
        ) {
          size += 5 + bodies[take].length;
          take++;
        }
        const chunk = new Uint8Array(size);
        const view = new DataView(chunk.buffer);
        let at = 0;
        for (let i = 0; i < take; i++) {
          const body = bodies[i];
          view.setUint32(at, 1 + body.length);
          chunk[at + 4] = types[i];
          chunk.set(body, at + 5);
          at += 5 + body.length;
        }
        types.splice(0, take);
        bodies.splice(0, take);
        let written = 0;
        while (written < chunk.length) written += await this.stream.write(chunk.subarray(written));
        this.queuedBytes -= size;
      }
    } catch {
      this.close();
    } finally {
      this.#writing = false;
      for (const f of this.#drained.splice(0)) f();
    }
  }

  /** Resolves when everything queued so far is written (or the connection closed). */
  flush(): Promise<void> {
    if (!this.#writing || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#drained.push(resolve));
  }

  /**
   * Reads the next frame; null at a clean end of stream. Throws WireError
   * for a frame over the limit or a stream that ends inside a frame.
   */
  async read(): Promise<Frame | null> {
    while (true) {
      const have = this.#end - this.#start;
      if (have >= 4) {
        const view = new DataView(this.#buf.buffer, this.#buf.byteOffset + this.#start, 4);
        const length = view.getUint32(0);
        if (length < 1 || length > this.frameBytesMax) {
          throw new WireError(
            `A frame of ${length} bytes is outside the limit of 1..${this.frameBytesMax}`,
          );
        }
        if (have >= 4 + length) {
          const type = this.#buf[this.#start + 4];
          const from = this.#start + 5;
          this.#start += 4 + length;
          if (this.#start === this.#end && this.#buf.length > READ_CHUNK_BYTES) {
            // Done with a large buffer (a big frame's): the connection takes a new small
            // one. A body that fills most of it keeps it, not a copy of megabytes; a small
            // one is copied, so it cannot pin a big buffer (a log entry lives on).
            const large = 2 * length >= this.#buf.length;
            const body = large
              ? this.#buf.subarray(from, this.#start)
              : this.#buf.slice(from, this.#start);
            this.#buf = new Uint8Array(READ_CHUNK_BYTES);
            this.#start = this.#end = 0;
            return { type, body };
          }
          // The buffer is read into again: the body is a copy.
          return { type, body: this.#buf.slice(from, this.#start) };
        }
        this.#makeRoom(4 + length);
      } else {
        this.#makeRoom(4);
      }
      const n = await this.#readMore();
      if (n === null) {
        if (this.#end === this.#start) return null;
        throw new WireError(
          `The connection ended inside a frame (${this.#end - this.#start} bytes)`,
        );
      }
    }
  }

  #makeRoom(frameBytes: number): void {
    if (this.#start + frameBytes <= this.#buf.length) return;
    const have = this.#end - this.#start;
    const size = Math.max(READ_CHUNK_BYTES, frameBytes);
    const next = size <= this.#buf.length ? this.#buf : new Uint8Array(size);
    if (next === this.#buf) this.#buf.copyWithin(0, this.#start, this.#end);
    else next.set(this.#buf.subarray(this.#start, this.#end));
    this.#buf = next;
    this.#start = 0;
    this.#end = have;
  }

  async #readMore(): Promise<number | null> {
    if (this.#end === this.#buf.length) this.#makeRoom(this.#buf.length * 2);
    try {
      const n = await this.stream.read(this.#buf.subarray(this.#end));
      if (n === null) return null;
      this.#end += n;
      return n;
    } catch (e) {
      if (this.#closed) return null;
      throw e;
    }
  }

  /** Sends a goodbye frame with the reason, then closes once it is written. */
  async goodbye(reason: string): Promise<void> {
    this.send(FrameType.goodbye, new TextEncoder().encode(reason));
    await this.flush();
    this.close();
  }

  /** Closes the connection; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#types = [];
    this.#bodies = [];
    this.queuedBytes = 0;
    this.stream.close();
    for (const f of this.#onClose.splice(0)) f();
    for (const f of this.#drained.splice(0)) f();
  }
}
