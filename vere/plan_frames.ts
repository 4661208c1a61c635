/**
 * `%plan` frames of one ship and one job, encoded fast for a load generator.
 * Jam writes a noun pre-order, so the body of `[%plan ship eve mug job]` is
 * the bits of `[%plan [ship [` (the same for every event), then eve, a cell,
 * mug, and last the job atom: `0 mat(job)` wherever it lands, unless it
 * equals an earlier atom and becomes a back-reference, which a job longer
 * than 16 bytes (the longest ship) cannot. So the job's bits are shifted
 * once for each of the 8 bit offsets, and a frame costs writing two small
 * atoms as jam does (a back-reference when an earlier equal atom is
 * shorter to point at) and one copy of the job's bytes, not a jam of the
 * whole noun (about 40 us for a 1 KiB job). Shorter jobs take the whole jam.
 * The bytes are exactly those of `encodeFrame(encodeRuntimeMessage(plan))`
 * (docs/runtime-protocol.md); plan_frames_test.ts checks that for any fields.
 *
 * @example
 * ```ts ignore
 * const encoder = new PlanFrameEncoder(0n, job);
 * const run = encoder.frames(1, 100, (eve) => eve); // one buffer, frames back to back
 * conn.write(run.bytes.subarray(run.starts[0], run.starts[10])); // events 1 to 10
 * ```
 * @module
 */

import {
  encodeFrameBytes,
  NEWT_FRAME_BYTES_LIMIT,
  NEWT_HEADER_BYTES,
  NEWT_VERSION,
} from "./newt.ts";
import { bytesToAtom, type Cell, cell, jam } from "./noun.ts";
import { encodeRuntimeMessage } from "./runtime_protocol.ts";

/**
 * Jobs of at most this many bytes are jammed with the message each time: as
 * atoms they may equal the ship (up to 128 bits), eve or mug, and jam would
 * write a back-reference.
 */
const SPLICE_JOB_BYTES_MIN = 17;

/**
 * Most bits of eve and mug as jam writes them after the fixed head: eve
 * below 2^53 is at most `0` and `mat` of 53 bits (1 + 2 * 6 + 53), the cell
 * 2, mug below 2^32 at most 1 + 2 * 6 + 32.
 */
const EVE_MUG_BITS_MAX = 66 + 2 + 45;

/** Bits up to and including the highest set bit of `bytes` (jam output never ends in a zero byte). */
function bitsOf(bytes: Uint8Array): number {
  if (bytes.length === 0 || bytes[bytes.length - 1] === 0) {
    throw new Error(`invariant: jam output is non-empty and ends in a non-zero byte`);
  }
  return (bytes.length - 1) * 8 + (32 - Math.clz32(bytes[bytes.length - 1]));
}

/** Bits of a non-negative integer below 2^53 (`met 0`): 0 for 0. */
function bitLength(n: number): number {
  if (n < 0x1_0000_0000) return 32 - Math.clz32(n);
  return 64 - Math.clz32(Math.floor(n / 0x1_0000_0000));
}

/**
 * ORs the low `count` (at most 32) bits of `value` into `out` from bit `pos`
 * on, least significant first as jam writes; returns the bit after them.
 * The bits there must be zero.
 */
function putBits(out: Uint8Array, pos: number, value: number, count: number): number {
  let v = value >>> 0;
  let left = count;
  while (left > 0) {
    const off = pos & 7;
    const take = Math.min(8 - off, left);
    out[pos >>> 3] |= (v & ((1 << take) - 1)) << off;
    v = v >>> take;
    pos += take;
    left -= take;
  }
  return pos;
}

/** Writes `mat(n)`, n below 2^53, from bit `pos`, as vere's jam; returns the bit after it. */
function putMat(out: Uint8Array, pos: number, n: number): number {
  if (n === 0) return putBits(out, pos, 1, 1);
  const b = bitLength(n);
  const c = bitLength(b);
  pos += c; // c zero bits
  pos = putBits(out, pos, 1, 1);
  pos = putBits(out, pos, b % 2 ** (c - 1), c - 1);
  if (b <= 32) return putBits(out, pos, n, b);
  pos = putBits(out, pos, n % 0x1_0000_0000, 32);
  return putBits(out, pos, Math.floor(n / 0x1_0000_0000), b - 32);
}

/**
 * Writes atom `n` (below 2^53) from bit `pos` as jam does when an equal atom
 * was first written at bit `seen` (undefined: none): the atom itself (`0
 * mat(n)`) unless a back-reference (`1 1 mat(seen)`) is shorter.
 */
function putAtom(out: Uint8Array, pos: number, n: number, seen: number | undefined): number {
  if (seen !== undefined && bitLength(n) > bitLength(seen)) {
    return putMat(out, putBits(out, pos, 3, 2), seen);
  }
  return putMat(out, putBits(out, pos, 0, 1), n);
}

/** Plan frames laid out back to back in one buffer. */
export interface PlanFrameRun {
  /** The frames of events `first` to `first + count - 1`, in order (a view of the run's buffer). */
  bytes: Uint8Array;
  /** Where each frame starts in `bytes`; `starts[count]` is `bytes.length`. */
  starts: Uint32Array;
  /** The first event. */
  first: number;
  /** Frames in the run. */
  count: number;
}

/** Encodes `%plan` frames of one ship and one job; see the module comment. */
export class PlanFrameEncoder {
  readonly #ship: bigint;
  readonly #job: Uint8Array;
  /** The job's jam (`0 mat(job)`) shifted left by 0 to 7 bits; undefined when the job is short. */
  readonly #jobShifted: Uint8Array[] | undefined;
  /** Bits of the job's jam. */
  readonly #jobBits: number = 0;
  /** The bits of `[%plan [ship [` as jam writes them, and how many. */
  readonly #head: Uint8Array = new Uint8Array(0);
  readonly #headBits: number = 0;
  /** Where jam wrote the tag and the ship (bit 2 and after the tag), by value, for back-references. */
  readonly #firstAt = new Map<number, number>();

  /** An encoder for plans of `ship` carrying the jam bytes `job`. */
  constructor(ship: bigint, job: Uint8Array) {
    this.#ship = ship;
    this.#job = job;
    // Validates ship and job as the protocol does; a bad one throws here, once.
    const message = encodeRuntimeMessage({ type: "plan", ship, eve: 1, mug: 0, job }) as Cell;
    if (job.length < SPLICE_JOB_BYTES_MIN) {
      this.#jobShifted = undefined;
      return;
    }
    const tag = message.head as bigint;
    // `[%plan [ship 0]]` ends in the atom 0, bits `0 1`: in its place the cell `[eve ...]` starts, bits `1 0`.
    const headJam = jam(cell(tag, cell(ship, 0n)));
    this.#headBits = bitsOf(headJam);
    this.#head = new Uint8Array(headJam.length);
    this.#head.set(headJam);
    const last = this.#headBits - 2;
    for (let b = last; b < last + 2; b++) this.#head[b >>> 3] &= ~(1 << (b & 7));
    const end = putBits(this.#head, last, 1, 2);
    if (end !== this.#headBits) throw new Error(`invariant: head of ${this.#headBits} bits`);
    // The tag, a cord below 2^32, is at bit 2; the ship right after it and the cell before it.
    const tagNumber = Number(tag);
    this.#firstAt.set(tagNumber, 2);
    const shipAt = 2 + 1 + (putMat(new Uint8Array(16), 0, tagNumber)) + 2;
    if (ship < BigInt(Number.MAX_SAFE_INTEGER) && !this.#firstAt.has(Number(ship))) {
      this.#firstAt.set(Number(ship), shipAt);
    }
    const alone = jam(bytesToAtom(job));
    this.#jobBits = bitsOf(alone);
    this.#jobShifted = [];
    for (let s = 0; s < 8; s++) {
      const out = new Uint8Array((this.#jobBits + s + 7) >>> 3);
      let carry = 0;
      for (let i = 0; i < alone.length; i++) {
        out[i] = ((alone[i] << s) | carry) & 0xff;
        carry = alone[i] >>> (8 - s);
      }
      if (alone.length < out.length) out[alone.length] = carry;
      this.#jobShifted.push(out);
    }
  }

  /** The most bytes one frame takes in a run (a few more than the frames of short eves and mugs). */
  get frameBytesMax(): number {
    if (this.#jobShifted === undefined) {
      return NEWT_HEADER_BYTES + jam(encodeRuntimeMessage({
        type: "plan",
        ship: this.#ship,
        eve: Number.MAX_SAFE_INTEGER,
        mug: 0xffff_ffff,
        job: this.#job,
      })).length;
    }
    return NEWT_HEADER_BYTES + ((this.#headBits + EVE_MUG_BITS_MAX + this.#jobBits + 7) >>> 3);
  }

  /** The newt frame of `[%plan ship eve mug job]`. */
  frame(eve: number, mug: number): Uint8Array {
    return this.frames(eve, 1, () => mug).bytes;
  }

  /**
   * The frames of events `first` to `first + count - 1`, event `e` with mug
   * `mugOf(e)`, in one buffer: `into` if given (what it held is overwritten;
   * it needs `count * frameBytesMax` bytes), else a new one. Reusing a buffer
   * spares the page faults of fresh memory, several microseconds a frame.
   */
  frames(
    first: number,
    count: number,
    mugOf: (eve: number) => number,
    into?: Uint8Array,
  ): PlanFrameRun {
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new Error(`A run of plan frames needs a positive count (got ${count})`);
    }
    const frameBytesMax = this.frameBytesMax;
    if (count * frameBytesMax > 0xffff_ffff) {
      throw new Error(`A run of ${count} plan frames may exceed 4 GiB; make it shorter`);
    }
    if (into !== undefined && into.length < count * frameBytesMax) {
      throw new Error(
        `A run of ${count} plan frames needs ${
          count * frameBytesMax
        } bytes; the buffer has ${into.length}`,
      );
    }
    if (this.#jobShifted === undefined) return this.#framesJammed(first, count, mugOf, into);
    const lastEve = first + count - 1;
    // Validates the first and last eve and their mugs as the protocol does (eves between are too).
    encodeRuntimeMessage({ type: "plan", ship: 0n, eve: first, mug: mugOf(first), job: this.#job });
    encodeRuntimeMessage({
      type: "plan",
      ship: 0n,
      eve: lastEve,
      mug: mugOf(lastEve),
      job: this.#job,
    });
    const bytes = into ?? new Uint8Array(count * frameBytesMax);
    // Bits are ORed in: the bytes of head, eve and mug start out zero.
    const prefixBytesMax = ((this.#headBits + EVE_MUG_BITS_MAX) >>> 3) + 1;
    const view = new DataView(bytes.buffer);
    const starts = new Uint32Array(count + 1);
    const head = this.#head;
    const headBits = this.#headBits;
    const firstAt = this.#firstAt;
    let at = 0;
    for (let i = 0; i < count; i++) {
      const eve = first + i;
      const mug = mugOf(eve);
      if (!Number.isInteger(mug) || mug < 0 || mug > 0xffff_ffff) {
        throw new Error(
          `The mug of event ${eve} must be an integer from 0 to 0xffffffff (got ${mug})`,
        );
      }
      starts[i] = at;
      const body = at + NEWT_HEADER_BYTES;
      const out = bytes.subarray(body, at + frameBytesMax);
      if (into !== undefined) out.fill(0, 0, prefixBytesMax);
      out.set(head);
      const eveSeen = firstAt.get(eve);
      let pos = putAtom(out, headBits, eve, eveSeen);
      pos = putBits(out, pos, 1, 2);
      pos = putAtom(out, pos, mug, mug === eve ? eveSeen ?? headBits : firstAt.get(mug));
      const whole = pos >>> 3;
      const job = this.#jobShifted[pos & 7];
      // The last partial byte of eve and mug shares its high bits with the job's first ones.
      const partial = out[whole];
      out.set(job, whole);
      out[whole] |= partial;
      const bodyBytes = whole + job.length;
      if (bodyBytes > NEWT_FRAME_BYTES_LIMIT || pos - headBits > EVE_MUG_BITS_MAX) {
        throw new Error(
          `invariant: a plan frame body of ${bodyBytes} bytes, ${pos} bits before the job`,
        );
      }
      bytes[at] = NEWT_VERSION;
      view.setUint32(at + 1, bodyBytes, true);
      at = body + bodyBytes;
    }
    starts[count] = at;
    return { bytes: bytes.subarray(0, at), starts, first, count };
  }

  /** Frames of a short job: the whole message jammed each time. */
  #framesJammed(
    first: number,
    count: number,
    mugOf: (eve: number) => number,
    into: Uint8Array | undefined,
  ): PlanFrameRun {
    const starts = new Uint32Array(count + 1);
    const frames: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < count; i++) {
      const eve = first + i;
      const body = jam(encodeRuntimeMessage({
        type: "plan",
        ship: this.#ship,
        eve,
        mug: mugOf(eve),
        job: this.#job,
      }));
      const f = encodeFrameBytes(body);
      frames.push(f);
      starts[i] = total;
      total += f.length;
    }
    starts[count] = total;
    const bytes = into?.subarray(0, total) ?? new Uint8Array(total);
    for (let i = 0; i < count; i++) bytes.set(frames[i], starts[i]);
    return { bytes, starts, first, count };
  }
}
