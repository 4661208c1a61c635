/**
 * Urbit nouns and their byte-exact codecs: `jam`, `cue` and `mug`, compatible
 * with vere (pkg/noun/serial.c, pkg/noun/retrieve.c). Nothing here recurses:
 * nouns in the wild are 100,000+ levels deep, so every walk uses an explicit
 * stack.
 *
 * @example
 * ```ts
 *
 * const n = cell(1n, 2n);
 * jam(n); // Uint8Array [0x31, 0x12]
 * mug(cue(jam(n))) === mug(n); // true
 * ```
 * @module
 */

/** A noun: an atom (an unsigned integer of any size) or a cell (a pair of nouns). */
export type Noun = bigint | Cell;

/** A pair of nouns. Immutable; caches its mug after the first `mug()` of it. */
export class Cell {
  /** The left noun. */
  readonly head: Noun;
  /** The right noun. */
  readonly tail: Noun;
  /** Cached mug; 0 means not yet computed (a real mug is never 0). */
  mugCache = 0;

  /** Makes the cell `[head tail]`. */
  constructor(head: Noun, tail: Noun) {
    this.head = head;
    this.tail = tail;
  }
}

/** Thrown when bytes do not hold a valid jammed noun, or a noun has the wrong shape. */
export class NounError extends Error {
  /** Makes a NounError with a complete-sentence message. */
  constructor(message: string) {
    super(message);
    this.name = "NounError";
  }
}

/** Largest input `cue` accepts: bit offsets must stay exact in 32-bit arithmetic. */
export const CUE_BYTES_MAX = 2 ** 29;

/** Returns the cell `[head tail]`. */
export function cell(head: Noun, tail: Noun): Cell {
  return new Cell(head, tail);
}

/** True when `noun` is a cell. */
export function isCell(noun: Noun): noun is Cell {
  return typeof noun !== "bigint";
}

/**
 * Builds a right-nested tuple `[a b c]` = `[a [b c]]` from two or more nouns.
 * Use {@linkcode list} for a null-terminated list.
 */
export function tuple(...items: Noun[]): Noun {
  if (items.length === 0) throw new NounError("A tuple needs at least one item");
  let out = items[items.length - 1];
  for (let i = items.length - 2; i >= 0; i--) out = new Cell(items[i], out);
  return out;
}

/** Builds the null-terminated list `[a b c ~]`. */
export function list(items: readonly Noun[]): Noun {
  let out: Noun = 0n;
  for (let i = items.length - 1; i >= 0; i--) out = new Cell(items[i], out);
  return out;
}

/** Returns the items of a null-terminated list, or throws NounError if `noun` is not one. */
export function listItems(noun: Noun, what = "list"): Noun[] {
  const out: Noun[] = [];
  let cur = noun;
  while (isCell(cur)) {
    out.push(cur.head);
    cur = cur.tail;
  }
  if (cur !== 0n) throw new NounError(`The ${what} does not end in ~ (it ends in ${cur})`);
  return out;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** The cord (text atom) of `text`: its UTF-8 bytes read little-endian (`%fast` = 0x74736166). */
export function cord(text: string): bigint {
  return bytesToAtom(textEncoder.encode(text));
}

/** The text of a cord, or undefined when its bytes are not valid UTF-8. */
export function cordText(atom: bigint): string | undefined {
  try {
    return textDecoder.decode(atomToBytes(atom));
  } catch {
    return undefined;
  }
}

// Hex text is the fast bridge between bytes and bigint (V8 parses and prints
// power-of-two radixes in linear time). Two tables move a byte pair at once:
// HEX_PAIR maps a byte to its two ASCII digits as one little-endian u16, and
// PAIR_VALUE maps two ASCII digits (as that u16) back to the byte.
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const DIGITS = "0123456789abcdef";
const HEX_PAIR = new Uint16Array(256);
const PAIR_VALUE = new Uint8Array(65536);
for (let b = 0; b < 256; b++) {
  const hi = DIGITS.charCodeAt(b >>> 4);
  const lo = DIGITS.charCodeAt(b & 15);
  const pair = LITTLE_ENDIAN ? hi | (lo << 8) : (hi << 8) | lo;
  HEX_PAIR[b] = pair;
  PAIR_VALUE[pair] = b;
}
const latin1 = new TextDecoder("latin1");
const ascii = new TextEncoder();

/** The atom whose little-endian bytes are `bytes` (trailing zero bytes are allowed). */
export function bytesToAtom(bytes: Uint8Array): bigint {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  if (end === 0) return 0n;
  if (end <= 6) {
    let n = 0;
    for (let i = end - 1; i >= 0; i--) n = n * 256 + bytes[i];
    return BigInt(n);
  }
  const text = new Uint16Array(end + 1);
  text[0] = LITTLE_ENDIAN ? 0x7830 : 0x3078; // "0x"
  for (let i = 1; i <= end; i++) text[i] = HEX_PAIR[bytes[end - i]];
  return BigInt(latin1.decode(text));
}

/** The minimal little-endian bytes of the atom held in `count` (> 0) bits of `bytes` from bit `from`. */
function bitsToBytes(bytes: Uint8Array, from: number, count: number): Uint8Array {
  const out = new Uint8Array((count + 7) >>> 3);
  bitsToBytesInto(out, bytes, from, count, 0, out.length);
  return out;
}

/**
 * Bytes `i0` to `i1` (exclusive) of the atom in `count` bits of `bytes` from
 * bit `from`, written into `out` (the atom's length in bytes): a long atom is
 * copied a slice at a time, with the event loop free in between.
 */
function bitsToBytesInto(
  out: Uint8Array,
  bytes: Uint8Array,
  from: number,
  count: number,
  i0: number,
  i1: number,
): void {
  const len = out.length;
  const off = from & 7;
  const first = from >>> 3;
  if (off === 0) out.set(bytes.subarray(first + i0, first + i1), i0);
  else {
    const back = 8 - off;
    let i = i0;
    // Four bytes a step while five input bytes are there (a 1 KiB job is ~4x faster to copy).
    const wordsEnd = Math.min(i1, bytes.length - first - 4);
    if (wordsEnd - i >= 16) {
      const src = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
      const dst = new DataView(out.buffer, out.byteOffset, out.length);
      const backWord = 32 - off;
      for (; i + 4 <= wordsEnd; i += 4) {
        const k = first + i;
        dst.setUint32(i, (src.getUint32(k, true) >>> off) | (bytes[k + 4] << backWord), true);
      }
    }
    for (; i < i1; i++) {
      out[i] = ((bytes[first + i] >>> off) | (bytes[first + i + 1] << back)) & 0xff;
    }
  }
  if (i1 === len) {
    const topBits = count - (len - 1) * 8; // 1..8: the rest of the last byte is not the atom's
    out[len - 1] &= (1 << topBits) - 1;
  }
}

/** Reused text buffer of bitsToAtom: large atoms would otherwise each allocate one. */
let hexScratch = new Uint16Array(4096);
const HEX_SCRATCH_MAX = 1 << 21; // 4 MiB of u16

/** The atom held in `count` (> 0) bits of `bytes` from bit `from`, read without a copy. */
function bitsToAtom(bytes: Uint8Array, from: number, count: number): bigint {
  const len = (count + 7) >>> 3;
  const off = from & 7;
  const first = from >>> 3;
  if (hexScratch.length < len + 1 && len + 1 <= HEX_SCRATCH_MAX) {
    hexScratch = new Uint16Array(
      Math.min(HEX_SCRATCH_MAX, Math.max(len + 1, hexScratch.length * 2)),
    );
  }
  // Beyond the cap, a one-off buffer: a huge atom must not pin its size in memory.
  const text = len + 1 <= hexScratch.length ? hexScratch : new Uint16Array(len + 1);
  text[0] = LITTLE_ENDIAN ? 0x7830 : 0x3078; // "0x"
  // Every byte but the top one, highest first in the text.
  if (off === 0) {
    for (let i = 0, t = len; i < len - 1; i++, t--) text[t] = HEX_PAIR[bytes[first + i]];
  } else {
    const back = 8 - off;
    for (let i = 0, t = len; i < len - 1; i++, t--) {
      const k = first + i;
      text[t] = HEX_PAIR[((bytes[k] >>> off) | (bytes[k + 1] << back)) & 0xff];
    }
  }
  // The top byte holds 1..8 bits of the atom; the byte after it may hold some.
  const topFrom = from + (len - 1) * 8;
  const topBits = count - (len - 1) * 8;
  const k = topFrom >>> 3;
  const word = bytes[k] | (k + 1 < bytes.length ? bytes[k + 1] << 8 : 0);
  text[1] = HEX_PAIR[(word >>> (topFrom & 7)) & ((1 << topBits) - 1)];
  return BigInt(latin1.decode(text.subarray(0, len + 1)));
}

/** The minimal little-endian bytes of an atom (0 gives no bytes). */
export function atomToBytes(atom: bigint): Uint8Array {
  if (atom < 0n) throw new NounError(`An atom cannot be negative (got ${atom})`);
  if (atom < 0x1_0000_0000n) {
    let n = Number(atom);
    const len = n === 0 ? 0 : n < 0x100 ? 1 : n < 0x10000 ? 2 : n < 0x1000000 ? 3 : 4;
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) {
      out[i] = n & 0xff;
      n = n >>> 8;
    }
    return out;
  }
  let hex = atom.toString(16);
  if (hex.length & 1) hex = "0" + hex;
  let text = ascii.encode(hex);
  if (text.byteOffset & 1) text = text.slice(); // a u16 view needs an even offset
  const pairs = new Uint16Array(text.buffer, text.byteOffset, text.length >> 1);
  const len = pairs.length;
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = PAIR_VALUE[pairs[len - 1 - i]];
  return out;
}

/** The number of bits in an atom (`met 0`): 0 for 0. */
export function bitLength(atom: bigint): number {
  if (atom < 0x1_0000_0000n) return 32 - Math.clz32(Number(atom));
  const bytes = atomToBytes(atom);
  return (bytes.length - 1) * 8 + (32 - Math.clz32(bytes[bytes.length - 1]));
}

function bitLengthOfNumber(n: number): number {
  if (n < 0x1_0000_0000) return 32 - Math.clz32(n);
  return 32 + (32 - Math.clz32(Math.floor(n / 0x1_0000_0000)));
}

// ---------------------------------------------------------------- mug

function murmur3(key: Uint8Array, len: number, seed: number): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed | 0;
  const blocks = len & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = key[i] | (key[i + 1] << 8) | (key[i + 2] << 16) | (key[i + 3] << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const rest = len & 3;
  if (rest > 0) {
    let k = key[blocks];
    if (rest > 1) k ^= key[blocks + 1] << 8;
    if (rest > 2) k ^= key[blocks + 2] << 16;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function mum(seed: number, fallback: number, key: Uint8Array, len: number): number {
  for (let i = 0; i < 8; i++) {
    const h = murmur3(key, len, (seed + i) >>> 0);
    const r = (h >>> 31) ^ (h & 0x7fffffff);
    if (r !== 0) return r;
  }
  return fallback;
}

const mugScratch = new Uint8Array(8);

function mugOfAtom(atom: bigint): number {
  if (atom < 0x1_0000_0000n) {
    let n = Number(atom);
    let len = 0;
    while (n !== 0) {
      mugScratch[len++] = n & 0xff;
      n = n >>> 8;
    }
    return mum(0xcafebabe, 0x7fff, mugScratch, len);
  }
  const bytes = atomToBytes(atom);
  return mum(0xcafebabe, 0x7fff, bytes, bytes.length);
}

function mugOfPair(headMug: number, tailMug: number): number {
  mugScratch[0] = headMug & 0xff;
  mugScratch[1] = (headMug >>> 8) & 0xff;
  mugScratch[2] = (headMug >>> 16) & 0xff;
  mugScratch[3] = headMug >>> 24;
  let len = 4;
  let t = tailMug;
  while (t !== 0) {
    mugScratch[len++] = t & 0xff;
    t = t >>> 8;
  }
  return mum(0xdeadbeef, 0xfffe, mugScratch, len);
}

/**
 * The 31-bit hash vere stores with every event. Cells cache their mug, so a
 * subtree shared by many parents is hashed once.
 */
export function mug(noun: Noun): number {
  if (!isCell(noun)) return mugOfAtom(noun);
  if (noun.mugCache !== 0) return noun.mugCache;
  const stack: Cell[] = [noun];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const { head, tail } = top;
    if (isCell(head) && head.mugCache === 0) {
      stack.push(head);
      continue;
    }
    if (isCell(tail) && tail.mugCache === 0) {
      stack.push(tail);
      continue;
    }
    const headMug = isCell(head) ? head.mugCache : mugOfAtom(head);
    const tailMug = isCell(tail) ? tail.mugCache : mugOfAtom(tail);
    top.mugCache = mugOfPair(headMug, tailMug);
    stack.pop();
  }
  return noun.mugCache;
}

/** Structural equality of two nouns, without recursion. */
export function nounEqual(a: Noun, b: Noun): boolean {
  const left: Noun[] = [a];
  const right: Noun[] = [b];
  while (left.length > 0) {
    const x = left.pop()!;
    const y = right.pop()!;
    if (x === y) continue;
    if (!isCell(x) || !isCell(y)) return false;
    if (x.mugCache !== 0 && y.mugCache !== 0 && x.mugCache !== y.mugCache) return false;
    left.push(x.tail, x.head);
    right.push(y.tail, y.head);
  }
  return true;
}

// ---------------------------------------------------------------- jam

class BitWriter {
  bytes = new Uint8Array(1024);
  bitPos = 0;

  private reserve(bits: number): void {
    const need = ((this.bitPos + bits) >>> 3) + 1;
    if (need <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < need) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes);
    this.bytes = grown;
  }

  /** Writes the low `count` bits of `value` (count <= 32). */
  bits(value: number, count: number): void {
    this.reserve(count);
    let pos = this.bitPos;
    let left = count;
    let v = value;
    while (left > 0) {
      const off = pos & 7;
      const take = Math.min(8 - off, left);
      this.bytes[pos >>> 3] |= (v & ((1 << take) - 1)) << off;
      v = v >>> take;
      pos += take;
      left -= take;
    }
    this.bitPos = pos;
  }

  /** Writes the low `count` bits of the little-endian bytes `src`. */
  byteBits(src: Uint8Array, count: number): void {
    this.reserve(count);
    const whole = count >>> 3;
    if ((this.bitPos & 7) === 0) {
      this.bytes.set(src.subarray(0, whole), this.bitPos >>> 3);
      this.bitPos += whole * 8;
    } else {
      for (let i = 0; i < whole; i++) this.bits(src[i], 8);
    }
    const rest = count & 7;
    if (rest > 0) this.bits(src[whole], rest);
  }

  /** Writes `mat(atom)`: the self-delimiting length-prefixed encoding of an atom. */
  mat(atom: bigint): void {
    if (atom === 0n) {
      this.bits(1, 1);
      return;
    }
    if (atom < 0x1_0000_0000n) {
      this.matNumber(Number(atom));
      return;
    }
    const bytes = atomToBytes(atom);
    const b = (bytes.length - 1) * 8 + (32 - Math.clz32(bytes[bytes.length - 1]));
    this.matLength(b);
    this.byteBits(bytes, b);
  }

  /** `mat` of an exact non-negative integer below 2^53. */
  matNumber(n: number): void {
    if (n === 0) {
      this.bits(1, 1);
      return;
    }
    const b = bitLengthOfNumber(n);
    this.matLength(b);
    if (b <= 32) {
      this.bits(n, b);
    } else {
      this.bits(n % 0x1_0000_0000, 32);
      this.bits(Math.floor(n / 0x1_0000_0000), b - 32);
    }
  }

  /** The length prefix of mat for a value of `b` (>= 1) bits. */
  private matLength(b: number): void {
    const c = bitLengthOfNumber(b);
    this.bits(0, c); // zero bits are already zero; bits() only advances
    this.bits(1, 1);
    this.bits(b % 2 ** (c - 1), c - 1);
  }

  finish(): Uint8Array {
    let len = (this.bitPos + 7) >>> 3;
    while (len > 0 && this.bytes[len - 1] === 0) len--;
    return this.bytes.slice(0, len);
  }
}

/**
 * Serializes a noun exactly as vere's `jam` does: pre-order, cells and large
 * atoms seen before become back-references to their first bit position.
 */
export function jam(noun: Noun): Uint8Array {
  const out = new BitWriter();
  const atomPos = new Map<bigint, number>();
  const cellPos = new Map<Cell, number>(); // identity fast path
  const cellsByMug = new Map<number, Cell[]>(); // structural dedup, as vere's hash table
  const stack: Noun[] = [noun];
  while (stack.length > 0) {
    const n = stack.pop()!;
    const here = out.bitPos;
    if (!isCell(n)) {
      const seen = atomPos.get(n);
      if (seen === undefined) {
        atomPos.set(n, here);
        out.bits(0, 1);
        out.mat(n);
      } else if (bitLength(n) <= bitLengthOfNumber(seen)) {
        out.bits(0, 1);
        out.mat(n);
      } else {
        out.bits(3, 2);
        out.matNumber(seen);
      }
      continue;
    }
    let seen = cellPos.get(n);
    if (seen === undefined) {
      const m = mug(n);
      const bucket = cellsByMug.get(m);
      if (bucket === undefined) {
        cellsByMug.set(m, [n]);
      } else {
        for (const other of bucket) {
          if (nounEqual(other, n)) {
            seen = cellPos.get(other);
            break;
          }
        }
        if (seen === undefined) bucket.push(n);
      }
    }
    if (seen !== undefined) {
      out.bits(3, 2);
      out.matNumber(seen);
      continue;
    }
    cellPos.set(n, here);
    out.bits(1, 2);
    stack.push(n.tail, n.head);
  }
  return out.finish();
}

// ---------------------------------------------------------------- cue

/** Bit reader over a jammed noun; its methods keep one optimized shape across calls. */
class CueReader {
  /** The input plus 8 zero bytes of slack, so a 32-bit window never reads out of bounds. */
  readonly buf: Uint8Array;
  /** Bits of input, up to the last non-zero byte; reads past it are errors. */
  readonly totalBits: number;
  /** Next bit to read. */
  pos = 0;

  /** Reads `end` bytes of `bytes`: a copy with slack, or `bytes` itself when `slackGiven` (zeros after `end`). */
  constructor(bytes: Uint8Array, end: number, slackGiven = false) {
    if (slackGiven) {
      if (bytes.length < end + 8) {
        throw new Error(`A reader needs 8 bytes of slack after ${end}; it got ${bytes.length}`);
      }
      this.buf = bytes;
    } else {
      this.buf = new Uint8Array(end + 8);
      this.buf.set(bytes.subarray(0, end));
    }
    this.totalBits = end * 8;
  }

  truncated(what: string): NounError {
    return new NounError(
      `The input ends inside ${what} at bit ${this.pos} of ${this.totalBits}: the jammed noun is truncated`,
    );
  }

  /** The 32 bits from bit `at`, as an unsigned number (zeros past the end). */
  window32(at: number): number {
    const buf = this.buf;
    const i = at >>> 3;
    const off = at & 7;
    const lo = (buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24)) >>> 0;
    return off === 0 ? lo : ((lo >>> off) | (buf[i + 4] << (32 - off))) >>> 0;
  }

  /** Reads `count` (<= 53) bits as a number; the caller has checked they exist. */
  readNumber(count: number): number {
    const pos = this.pos;
    this.pos = pos + count;
    if (count <= 32) {
      const w = this.window32(pos);
      return count === 32 ? w : w & (2 ** count - 1);
    }
    return this.window32(pos) + (this.window32(pos + 32) & (2 ** (count - 32) - 1)) * 0x1_0000_0000;
  }

  /** Reads the length prefix of mat: the bit length of the atom that follows. */
  rubLength(): number {
    const from = this.pos;
    const w = this.window32(from);
    if (w === 0) {
      if (from + 32 >= this.totalBits) throw this.truncated("an atom's length prefix");
      throw new NounError(
        `The length prefix at bit ${from} declares an atom of more than 2^31 bits: the input is garbage`,
      );
    }
    const zeros = 31 - Math.clz32(w & -w); // trailing zero bits
    this.pos = from + zeros + 1;
    if (zeros === 0) return 0;
    if (this.pos + zeros - 1 > this.totalBits) throw this.truncated("an atom's length prefix");
    return this.readNumber(zeros - 1) + 2 ** (zeros - 1);
  }

  /** Reads a mat-encoded atom of at most the remaining input. */
  rub(what: string): bigint {
    const b = this.rubBits(what);
    if (b === 0) return 0n;
    if (b <= 53) return BigInt(this.readNumber(b));
    const atom = bitsToAtom(this.buf, this.pos, b);
    this.pos += b;
    return atom;
  }

  /**
   * Reads a mat length prefix and checks that many bits remain; returns the
   * atom's bit length, the reader left at its first bit.
   */
  rubBits(what: string): number {
    const from = this.pos;
    const b = this.rubLength();
    const left = this.totalBits - this.pos;
    if (b > left) {
      throw new NounError(
        `The ${what} at bit ${from} declares ${b} bits but only ${left} remain: the input is truncated or garbage`,
      );
    }
    return b;
  }

  /** Reads the bit position of a back-reference, which must precede `here`. */
  rubPosition(here: number): number {
    const from = this.pos;
    const b = this.rubLength();
    if (b > this.totalBits - this.pos) {
      throw new NounError(
        `The back-reference at bit ${from} declares ${b} bits but only ${
          this.totalBits - this.pos
        } remain: the input is truncated or garbage`,
      );
    }
    const ref = b === 0 ? 0 : b <= 53 ? this.readNumber(b) : Number.MAX_SAFE_INTEGER;
    if (ref >= here) {
      throw new NounError(
        `The back-reference at bit ${here} points forward to bit ${ref}: the input is garbage`,
      );
    }
    return ref;
  }
}

/** Finds the noun that began at bit `ref`; `starts` is sorted. */
function lookupStart(
  starts: readonly number[],
  nouns: readonly (Noun | undefined)[],
  ref: number,
  at: number,
): Noun {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const s = starts[mid];
    if (s < ref) lo = mid + 1;
    else if (s > ref) hi = mid - 1;
    else {
      const found = nouns[mid];
      if (found === undefined) {
        throw new NounError(
          `The back-reference at bit ${at} points to bit ${ref}, a cell that contains it: the input is garbage`,
        );
      }
      return found;
    }
  }
  throw new NounError(
    `The back-reference at bit ${at} points to bit ${ref}, where no earlier noun starts: the input is garbage`,
  );
}

/** A reader over a jammed noun, after the checks every input gets (size, not all zero). */
function readerOf(bytes: Uint8Array): CueReader {
  return new CueReader(bytes, jamEnd(bytes));
}

/** The length of a jammed noun without its zero padding, after the checks every input gets. */
function jamEnd(bytes: Uint8Array): number {
  if (bytes.length > CUE_BYTES_MAX) {
    throw new NounError(
      `The input is ${bytes.length} bytes, above the ${CUE_BYTES_MAX}-byte limit for one noun`,
    );
  }
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  if (end === 0) {
    throw new NounError("The input is empty (or all zero), which is not a jammed noun");
  }
  return end;
}

/**
 * Deserializes a jammed noun. Throws {@linkcode NounError} on any malformed
 * input (truncated, a bad back-reference, an over-long atom, trailing
 * garbage); each step consumes at least one bit, so it always terminates.
 */
export function cue(bytes: Uint8Array): Noun {
  const r = readerOf(bytes);
  const end = r.totalBits >>> 3;
  const totalBits = r.totalBits;

  // Start positions of every atom and cell, in increasing order, and the
  // noun begun there (undefined while a cell is still being read).
  const starts: number[] = [];
  const nouns: (Noun | undefined)[] = [];
  // Cells being read: index into starts/nouns, and the head once known.
  const frameIndex: number[] = [];
  const frameHead: (Noun | undefined)[] = [];

  let root: Noun;
  while (true) {
    const here = r.pos;
    let done: Noun;
    if (here >= totalBits) throw r.truncated("a tag");
    const tag = r.window32(here) & 3;
    if ((tag & 1) === 0) {
      r.pos = here + 1;
      done = r.rub("atom");
      starts.push(here);
      nouns.push(done);
    } else if (here + 1 >= totalBits) {
      r.pos = here + 1;
      throw r.truncated("a tag");
    } else if (tag === 1) {
      r.pos = here + 2;
      frameIndex.push(starts.length);
      frameHead.push(undefined);
      starts.push(here);
      nouns.push(undefined);
      continue;
    } else {
      r.pos = here + 2;
      done = lookupStart(starts, nouns, r.rubPosition(here), here);
    }
    // Hand the finished noun to the cells waiting for it.
    while (frameIndex.length > 0) {
      const top = frameIndex.length - 1;
      const head = frameHead[top];
      if (head === undefined) {
        frameHead[top] = done;
        break;
      }
      done = new Cell(head, done);
      nouns[frameIndex[top]] = done;
      frameIndex.pop();
      frameHead.pop();
    }
    if (frameIndex.length === 0) {
      root = done;
      break;
    }
  }
  const used = (r.pos + 7) >>> 3;
  if (used < end) {
    throw new NounError(
      `The noun ends at byte ${used} but the input has ${end} non-zero-padded bytes: trailing garbage`,
    );
  }
  return root;
}

/** An atom of {@linkcode cueAtomTuple}: a bigint, or the little-endian bytes of a long one. */
export type TupleAtom = bigint | Uint8Array;

/**
 * Reads a jammed noun that must be an atom or a right-nested tuple of atoms
 * `[a b ... z]` of at most `atomsMax` atoms, such as a runtime's message, in
 * one linear pass: an atom of more than `bytesFrom` bytes comes back as its
 * little-endian bytes, copied with shifts and never made a bigint (a bigint
 * costs tens of ms per MiB), and a shorter one as a bigint. Back-references
 * to atoms are followed. Throws {@linkcode NounError} at the first thing that
 * is not such a tuple (a cell where an atom belongs, a back-reference to a
 * cell, more atoms than `atomsMax`), and on what {@linkcode cue} refuses.
 */
export function cueAtomTuple(bytes: Uint8Array, atomsMax: number, bytesFrom: number): TupleAtom[] {
  return tupleOf(readerOf(bytes), atomsMax, bytesFrom, slabBitsToBytes);
}

/**
 * Long atoms up to this size are copied into a shared slab, not each into a
 * buffer of its own: a runtime plans thousands of 1 KiB jobs a second, and a
 * buffer each cost an allocation, its zeroing and its sweep by the garbage
 * collector. A slab lives while any atom cut from it does.
 */
const SLAB_ATOM_BYTES_MAX = 16 * 1024;
const SLAB_BYTES = 256 * 1024;
let slab = new Uint8Array(0);
let slabUsed = 0;

/** {@linkcode bitsToBytes}, into the current slab when the atom is small enough. */
function slabBitsToBytes(bytes: Uint8Array, from: number, count: number): Uint8Array {
  const len = (count + 7) >>> 3;
  if (len > SLAB_ATOM_BYTES_MAX) return bitsToBytes(bytes, from, count);
  if (slabUsed + len > slab.length) {
    slab = new Uint8Array(SLAB_BYTES);
    slabUsed = 0;
  }
  const out = slab.subarray(slabUsed, slabUsed + len);
  slabUsed += len;
  bitsToBytesInto(out, bytes, from, count, 0, len);
  return out;
}

/** A long atom of a sliced read: where its bits are, until they are copied. */
interface BitSpan {
  readonly out: Uint8Array;
  readonly from: number;
  readonly bits: number;
}

/**
 * {@linkcode cueAtomTuple} for a large input given as `parts` (in order, as
 * a stream delivered them), in slices of `sliceBytes` with `pause()` awaited
 * between them (the caller's event loop then runs): joining the parts and
 * copying each long atom out are the costs that grow with the input, and
 * both are sliced; the parse between them reads a few hundred bits.
 */
export async function cueAtomTupleSliced(
  parts: readonly Uint8Array[],
  atomsMax: number,
  bytesFrom: number,
  options: { sliceBytes: number; pause: () => Promise<void> },
): Promise<TupleAtom[]> {
  const { sliceBytes, pause } = options;
  if (!(sliceBytes >= 1)) throw new RangeError(`A slice is at least 1 byte (got ${sliceBytes})`);
  const total = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(total + 8);
  let at = 0;
  let sincePause = 0;
  for (const part of parts) {
    for (let i = 0; i < part.length;) {
      // Up to the next multiple of sliceBytes of the whole input: a pause at each.
      const piece = part.subarray(i, i + sliceBytes - sincePause);
      buf.set(piece, at);
      at += piece.length;
      i += piece.length;
      sincePause += piece.length;
      if (sincePause === sliceBytes) {
        sincePause = 0;
        await pause();
      }
    }
  }
  // The parts are in memory already: their copy is checked as cue checks any input.
  const end = jamEnd(buf.subarray(0, total));
  const spans: BitSpan[] = [];
  // The zero padding after `end` is slack the reader may look into.
  const atoms = tupleOf(new CueReader(buf, end, true), atomsMax, bytesFrom, (_b, from, bits) => {
    const span = { out: new Uint8Array((bits + 7) >>> 3), from, bits };
    spans.push(span);
    return span.out;
  });
  for (const { out, from, bits } of spans) {
    for (let i = 0; i < out.length; i += sliceBytes) {
      bitsToBytesInto(out, buf, from, bits, i, Math.min(out.length, i + sliceBytes));
      await pause();
    }
  }
  return atoms;
}

function tupleOf(
  r: CueReader,
  atomsMax: number,
  bytesFrom: number,
  long: (buf: Uint8Array, from: number, bits: number) => Uint8Array,
): TupleAtom[] {
  const end = r.totalBits >>> 3;
  const atomAt = new Map<number, TupleAtom>();
  const cellAt = new Set<number>();
  const out: TupleAtom[] = [];
  /** The atom (or reference to one) at the reader's position; undefined at a cell. */
  const atom = (): TupleAtom | undefined => {
    const here = r.pos;
    if (here >= r.totalBits) throw r.truncated("a tag");
    const tag = r.window32(here) & 3;
    if ((tag & 1) === 0) {
      r.pos = here + 1;
      const bits = r.rubBits("atom");
      let value: TupleAtom;
      if (bits === 0) value = 0n;
      else if ((bits + 7) >>> 3 > bytesFrom) {
        value = long(r.buf, r.pos, bits);
        r.pos += bits;
      } else if (bits <= 53) value = BigInt(r.readNumber(bits));
      else {
        value = bitsToAtom(r.buf, r.pos, bits);
        r.pos += bits;
      }
      atomAt.set(here, value);
      return value;
    }
    if (here + 1 >= r.totalBits) throw r.truncated("a tag");
    if (tag === 1) return undefined; // a cell: the caller decides
    r.pos = here + 2;
    const ref = r.rubPosition(here);
    const found = atomAt.get(ref);
    if (found !== undefined) return found;
    throw new NounError(
      cellAt.has(ref)
        ? `The back-reference at bit ${here} names a cell where an atom belongs`
        : `The back-reference at bit ${here} points to bit ${ref}, where no earlier noun starts: the input is garbage`,
    );
  };
  while (true) {
    const here = r.pos;
    const spine = atom();
    if (spine !== undefined) {
      out.push(spine);
      break;
    }
    // A cell of the spine: its head must be an atom.
    cellAt.add(here);
    r.pos = here + 2;
    const headAt = r.pos;
    const head = atom();
    if (head === undefined) {
      throw new NounError(
        `A cell at bit ${headAt} is where an atom belongs (field ${out.length + 1})`,
      );
    }
    out.push(head);
    if (out.length >= atomsMax) {
      throw new NounError(`The tuple has more than ${atomsMax} atoms`);
    }
  }
  const used = (r.pos + 7) >>> 3;
  if (used < end) {
    throw new NounError(
      `The noun ends at byte ${used} but the input has ${end} non-zero-padded bytes: trailing garbage`,
    );
  }
  return out;
}
