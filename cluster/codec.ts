/**
 * Little binary reader and writer used by every codec in cluster/: big-endian
 * fixed-width integers, u64 as exact JavaScript numbers (< 2^53), and
 * length-prefixed byte strings. Every read is bounds-checked and throws
 * {@linkcode WireError}, so a malformed frame can never crash a node.
 * @module
 */

/** A frame or field that does not decode. The connection that sent it is closed. */
export class WireError extends Error {
  /** Makes a WireError; the message names the field and what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "WireError";
  }
}

const TWO_32 = 0x1_0000_0000;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** Appends fields to a growable buffer. */
export class ByteWriter {
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;

  /** Makes a writer with room for `capacityBytes` before it grows. */
  constructor(capacityBytes = 256) {
    this.#buf = new Uint8Array(capacityBytes);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#len;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.#buf.subarray(0, this.#len));
    this.#buf = grown;
    this.#view = new DataView(grown.buffer);
  }

  /** Writes one byte. */
  u8(n: number): this {
    this.#reserve(1);
    this.#view.setUint8(this.#len, n);
    this.#len += 1;
    return this;
  }

  /** Writes a big-endian u16. */
  u16(n: number): this {
    this.#reserve(2);
    this.#view.setUint16(this.#len, n);
    this.#len += 2;
    return this;
  }

  /** Writes a big-endian u32. */
  u32(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n >= TWO_32) {
      throw new RangeError(`u32 field out of range: ${n}`);
    }
    this.#reserve(4);
    this.#view.setUint32(this.#len, n);
    this.#len += 4;
    return this;
  }

  /** Writes a non-negative safe integer as a big-endian u64. */
  u64(n: number): this {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`u64 field out of range: ${n}`);
    this.#reserve(8);
    this.#view.setUint32(this.#len, Math.floor(n / TWO_32));
    this.#view.setUint32(this.#len + 4, n >>> 0);
    this.#len += 8;
    return this;
  }

  /** Writes raw bytes, no length. */
  raw(bytes: Uint8Array): this {
    this.#reserve(bytes.length);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
    return this;
  }

  /** Writes a u32 length, then the bytes. */
  bytes(bytes: Uint8Array): this {
    return this.u32(bytes.length).raw(bytes);
  }

  /** Writes a u32 length, then the UTF-8 text. */
  text(text: string): this {
    return this.bytes(textEncoder.encode(text));
  }

  /** The bytes written (a copy-free view; do not write after taking it). */
  finish(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

/** Reads fields from a byte array, checking every bound. */
export class ByteReader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  #pos = 0;

  /** Reads `bytes` from its start. */
  constructor(bytes: Uint8Array) {
    this.#buf = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Bytes not read yet. */
  get remaining(): number {
    return this.#buf.length - this.#pos;
  }

  #need(n: number, what: string): void {
    if (this.#pos + n > this.#buf.length) {
      throw new WireError(
        `The ${what} needs ${n} bytes at offset ${this.#pos} but the frame has ${this.remaining} left`,
      );
    }
  }

  /** Reads one byte. */
  u8(what = "u8 field"): number {
    this.#need(1, what);
    return this.#view.getUint8(this.#pos++);
  }

  /** Reads a big-endian u16. */
  u16(what = "u16 field"): number {
    this.#need(2, what);
    const n = this.#view.getUint16(this.#pos);
    this.#pos += 2;
    return n;
  }

  /** Reads a big-endian u32. */
  u32(what = "u32 field"): number {
    this.#need(4, what);
    const n = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return n;
  }

  /** Reads a big-endian u64 that must be below 2^53. */
  u64(what = "u64 field"): number {
    this.#need(8, what);
    const hi = this.#view.getUint32(this.#pos);
    const lo = this.#view.getUint32(this.#pos + 4);
    this.#pos += 8;
    if (hi >= 0x20_0000) throw new WireError(`The ${what} is ${hi} * 2^32 + ${lo}, above 2^53`);
    return hi * TWO_32 + lo;
  }

  /** Reads `n` raw bytes (a view into the frame, not a copy). */
  raw(n: number, what = "byte field"): Uint8Array {
    this.#need(n, what);
    const out = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  /** Reads a u32 length, then that many bytes (a view). */
  bytes(what = "byte string"): Uint8Array {
    const n = this.u32(`${what} length`);
    return this.raw(n, what);
  }

  /** Reads a u32 length, then UTF-8 text. */
  text(what = "text"): string {
    const bytes = this.bytes(what);
    try {
      return textDecoder.decode(bytes);
    } catch {
      throw new WireError(`The ${what} is not valid UTF-8`);
    }
  }

  /** Throws unless every byte was read: trailing bytes mean a malformed frame. */
  end(what: string): void {
    if (this.remaining !== 0) {
      throw new WireError(`The ${what} has ${this.remaining} unexpected trailing bytes`);
    }
  }
}

/** True when `a` and `b` hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
